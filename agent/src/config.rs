//! The agent's persistent identity (`agent.json`) and its run-time options.
//!
//! `agent.json` holds secrets (the access and refresh tokens), so it is always written with
//! mode 0600, and always atomically (temp file, fsync, rename, fsync of the directory): the
//! panel invalidates the old refresh token the moment it rotates, so a torn or lost write
//! would lock the agent out for good.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `register` writes and `run` reads the identity by default.
pub const DEFAULT_CONFIG: &str = "./agent.json";
/// Where `run` keeps server volumes and metadata by default.
pub const DEFAULT_DATA_DIR: &str = "./agent-data";
/// How often `resource_update` events are sent per running server by default.
pub const DEFAULT_RESOURCE_INTERVAL: Duration = Duration::from_secs(5);

/// Larger than any real `agent.json`; refuses to slurp a wrong path.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Errors loading or saving `agent.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source} (run `agent register` first?)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid agent config: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The identity the panel gave this agent at registration, plus where to find the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub token: String,
    pub refresh_token: String,
    pub websocket_url: String,
    /// The panel's base URL (`https://host:port`), used for token refresh.
    pub panel_url: String,
    /// A PEM file of CA certificates to trust for the panel; `None` = the system store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl AgentConfig {
    /// Reads and checks `agent.json`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "file is larger than 1 MiB".into(),
            });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "{} is readable by other users; it holds secrets (chmod 600 it)",
                path.display()
            );
        }
        let mut bytes = std::fs::read(path).map_err(read_err)?;
        let cfg: AgentConfig =
            simd_json::serde::from_slice(&mut bytes).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        cfg.check().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        proto::validate::id(proto::validate::IdKind::Agent, &self.id).map_err(|e| e.to_string())?;
        if self.token.is_empty() || self.refresh_token.is_empty() {
            return Err("token and refreshToken must not be empty".into());
        }
        ctrl_io::Url::parse(&self.websocket_url).map_err(|e| format!("websocketUrl: {e}"))?;
        ctrl_io::Url::parse(&self.panel_url).map_err(|e| format!("panelUrl: {e}"))?;
        Ok(())
    }

    /// Writes the config atomically with mode 0600 ([`ctrl_io::atomic_write`]): a crash
    /// leaves either the old or the new file, never a torn one.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        ctrl_io::atomic_write(path, &json).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `--fence-after-secs` default: well below the panel's default `--dead-after-secs` (300),
/// so a partitioned node has stopped its failover servers before the panel starts them
/// elsewhere.
pub const DEFAULT_FENCE_AFTER: Duration = Duration::from_secs(120);

/// Everything `agent run` needs besides the identity.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub docker_socket: PathBuf,
    pub data_dir: PathBuf,
    /// The operator's node policy (`--node-config`); `None`: the defaults.
    pub node_config: Option<PathBuf>,
    /// Interval between `resource_update` events per running server.
    pub resource_interval: Duration,
    /// Containers are named `<prefix><serverId>` (`--name-prefix`, default `ctrl-`).
    pub name_prefix: String,
    /// Self-fencing: stop the failover-enabled servers after this long without reaching the
    /// panel (`--fence-after-secs`; `0` turns it off).
    pub fence_after: Duration,
}

impl RunOptions {
    /// Defaults per the interface contract; the Docker socket honours `DOCKER_HOST`.
    pub fn with_defaults() -> Result<RunOptions, crate::docker::DockerError> {
        Ok(RunOptions {
            config_path: PathBuf::from(DEFAULT_CONFIG),
            docker_socket: crate::docker::socket_from_env()?,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            node_config: None,
            resource_interval: DEFAULT_RESOURCE_INTERVAL,
            name_prefix: crate::servers::DEFAULT_NAME_PREFIX.into(),
            fence_after: DEFAULT_FENCE_AFTER,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AgentConfig {
        AgentConfig {
            id: "agent-1".into(),
            name: "node-01".into(),
            token: "a.b.c".into(),
            refresh_token: "r".into(),
            websocket_url: "wss://127.0.0.1:8443/ws/agents".into(),
            panel_url: "https://127.0.0.1:8443".into(),
            ca_cert: Some(PathBuf::from("/tmp/ca.pem")),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "agent-config-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_with_mode_0600_and_camel_case() {
        let dir = tempdir("rt");
        let path = dir.join("agent.json");
        sample().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"refreshToken\""), "{text}");
        assert!(text.contains("\"websocketUrl\""), "{text}");
        assert_eq!(AgentConfig::load(&path).unwrap(), sample());
        // Overwrite keeps the mode and leaves no temp files behind.
        let mut next = sample();
        next.refresh_token = "r2".into();
        next.save(&path).unwrap();
        assert_eq!(AgentConfig::load(&path).unwrap().refresh_token, "r2");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_missing_and_invalid_files_with_clear_errors() {
        let dir = tempdir("bad");
        let e = AgentConfig::load(&dir.join("nope.json")).unwrap_err();
        assert!(e.to_string().contains("agent register"), "{e}");
        let path = dir.join("agent.json");
        std::fs::write(&path, b"{\"id\": 1}").unwrap();
        assert!(matches!(
            AgentConfig::load(&path),
            Err(ConfigError::Invalid { .. })
        ));
        let mut bad = sample();
        bad.websocket_url = "http://x".into();
        bad.save(&path).unwrap();
        let e = AgentConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("websocketUrl"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
