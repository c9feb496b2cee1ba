//! What the agent keeps of a server's egg beyond its container: the install script, the
//! config files edited before every start, the done strings, and the egg's environment
//! (what the install container gets and what `{{env.NAME}}` placeholders name).
//!
//! The container's `ctrl.meta` label holds the small facts a re-adoption needs; these can
//! be large (a 64 KiB script, hundreds of edits) and Docker hands labels back on every
//! inspect, so they live in `DATA/eggs/<serverId>.json` (0600, written atomically) and are
//! read back when the server is re-adopted. A server without the file has none of them.

use proto::EggConfig;
use proto::eggs::{ConfigFile, InstallScript};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Larger than any file the agent writes (a create frame is at most a few MiB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The egg's extensions of one server (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Extras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallScript>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<ConfigFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// The egg's own environment, in its order (without the agent's `SERVER_*`).
    #[serde(default)]
    pub environment: Vec<(String, String)>,
}

impl Extras {
    /// The extensions of a validated egg.
    pub fn from_egg(egg: &EggConfig<'_>) -> Extras {
        Extras {
            install: egg.install.clone(),
            config_files: egg.config_files.clone(),
            done: egg.done.clone(),
            environment: egg
                .environment
                .0
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether the egg uses none of the extensions (then nothing is stored).
    pub fn is_empty(&self) -> bool {
        self.install.is_none() && self.config_files.is_empty() && self.done.is_empty()
    }

    fn path(dir: &Path, server_id: &str) -> PathBuf {
        dir.join(format!("{server_id}.json"))
    }

    /// Stores the extensions of `server_id` in `dir` (created 0700 when missing); an egg
    /// without any removes a stale file instead.
    pub fn save(&self, dir: &Path, server_id: &str) -> std::io::Result<()> {
        if self.is_empty() {
            return Self::remove(dir, server_id);
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        ctrl_io::atomic_write(&Self::path(dir, server_id), &bytes)
    }

    /// The stored extensions of `server_id`; none when there is no file, and none (logged)
    /// when it cannot be read.
    pub fn load(dir: &Path, server_id: &str) -> Extras {
        let path = Self::path(dir, server_id);
        let read = || -> Result<Extras, String> {
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            use std::io::Read;
            file.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())?;
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err("the file is too large".into());
            }
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())
        };
        match read() {
            Ok(x) => x,
            Err(_) if !path.exists() => Extras::default(),
            Err(e) => {
                log::warn!(
                    "server {server_id}: cannot read its egg extensions ({e}); \
                     no install, config edits or done line"
                );
                Extras::default()
            }
        }
    }

    /// Forgets the extensions of a deleted server.
    pub fn remove(dir: &Path, server_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(Self::path(dir, server_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egg() -> EggConfig<'static> {
        serde_json::from_str::<EggConfig<'_>>(
            r#"{"name":"x","image":"img","limits":{"memory":"64m","cpu":"1","disk":"1g"},
                "startup":"run","environment":{"B":"2","A":"1"},
                "install":{"image":"inst:1","entrypoint":"ash","script":"echo hi"},
                "configFiles":[{"path":"server.properties","parser":"properties",
                  "edits":[{"match":"server-port","value":"{{server.allocations.default.port}}"}]}],
                "done":[")! For help"]}"#,
        )
        .unwrap()
        .into_owned()
    }

    #[test]
    fn saved_extras_read_back_and_empty_ones_leave_no_file() {
        let dir = std::env::temp_dir().join(format!("ctrl-extras-{}", std::process::id()));
        let x = Extras::from_egg(&egg());
        assert_eq!(x.environment[0], ("B".to_string(), "2".to_string()));
        x.save(&dir, "s1").unwrap();
        let mode = std::fs::metadata(dir.join("s1.json")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        assert_eq!(Extras::load(&dir, "s1"), x);
        Extras::default().save(&dir, "s1").unwrap();
        assert!(!dir.join("s1.json").exists());
        assert_eq!(Extras::load(&dir, "s1"), Extras::default());
        std::fs::write(dir.join("s2.json"), "not json").unwrap();
        assert_eq!(Extras::load(&dir, "s2"), Extras::default());
        Extras::remove(&dir, "s2").unwrap();
        Extras::remove(&dir, "s2").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
