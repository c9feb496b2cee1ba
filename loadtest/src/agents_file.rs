//! A saved set of registered agents (`--agents-file`), so repeated runs against the same
//! panel skip registration. JSON, mode 0600: it holds live tokens.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedAgent {
    pub name: String,
    pub id: String,
    pub token: String,
    pub refresh_token: String,
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentsFile {
    /// The panel these agents are registered with.
    pub panel: String,
    pub agents: Vec<SavedAgent>,
}

impl AgentsFile {
    /// Loads `path`; a missing file is `Ok(None)`.
    pub fn load(path: &Path) -> Result<Option<AgentsFile>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: not an agents file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes atomically with mode 0600 ([`ctrl_io::atomic_write`]).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec(self).map_err(|e| format!("{}: {e}", path.display()))?;
        ctrl_io::atomic_write(path, &json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_mode() {
        let dir = std::env::temp_dir().join(format!("lt-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agents.json");
        assert_eq!(AgentsFile::load(&path).unwrap(), None);
        let file = AgentsFile {
            panel: "https://127.0.0.1:8443".into(),
            agents: vec![SavedAgent {
                name: "lt-0".into(),
                id: "a".into(),
                token: "t".into(),
                refresh_token: "r".into(),
            }],
        };
        file.save(&path).unwrap();
        assert_eq!(AgentsFile::load(&path).unwrap(), Some(file));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "nope").unwrap();
        assert!(AgentsFile::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
