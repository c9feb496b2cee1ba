//! The node's policy: what this agent allows its servers, whatever the panel asks.
//!
//! Set by the operator of the node in a JSON file (`agent run --node-config PATH`), never by
//! the panel: a compromised panel must not be able to widen it. Every field is optional;
//! the defaults are the safe choice. Unknown fields are refused so a typo is not silently a
//! default. See agent/README.md for the documented list.

use proto::quantity::Bytes;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Larger than any real node config; refuses to slurp a wrong path.
const MAX_NODE_CONFIG_BYTES: u64 = 1 << 20;

/// Why the node config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("cannot read the node config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the node config {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Commands the agent accepts per second, per server and in total (token buckets).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RateLimits {
    /// Sustained commands per second for one server.
    pub per_server: f64,
    /// Commands one server may receive at once.
    pub per_server_burst: f64,
    /// Sustained commands per second for the whole agent.
    pub total: f64,
    /// Commands the agent may receive at once.
    pub total_burst: f64,
    /// Sustained file chunks (`read_file_chunk`, `write_file_chunk`) per second for one
    /// server: transfers have their own buckets, so a download neither waits behind nor
    /// starves the other commands.
    pub chunks_per_server: f64,
    pub chunks_per_server_burst: f64,
    /// Sustained file chunks per second for the whole agent.
    pub chunks_total: f64,
    pub chunks_total_burst: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_server: 20.0,
            per_server_burst: 50.0,
            total: 200.0,
            total_burst: 400.0,
            chunks_per_server: 400.0,
            chunks_per_server_burst: 400.0,
            chunks_total: 1000.0,
            chunks_total_burst: 1000.0,
        }
    }
}

/// Default pace of the frames sent to the panel (its `--agent-rate` default is 1,000/s,
/// burst 2,000: a tenth below, for the panel's clock and ours to disagree a little).
pub const DEFAULT_FRAME_RATE: f64 = 900.0;
pub const DEFAULT_FRAME_BURST: f64 = 1800.0;

/// The node policy (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodePolicy {
    /// The address published ports bind to (the node's allocation IP); unspecified = every
    /// interface.
    pub host_ip: IpAddr,
    /// Servers this agent runs at most.
    pub max_servers: usize,
    /// The pids limit of each server's container.
    pub pids_per_server: u32,
    /// Sum of the servers' pids limits; `None`: half of the kernel's `pid_max`.
    pub max_total_pids: Option<u64>,
    /// Sum of the servers' disk limits (a quantity such as `"500g"`); `None`: the size of
    /// the filesystem holding the data directory.
    pub max_disk: Option<String>,
    /// Allow host ports below 1024.
    pub allow_low_ports: bool,
    /// Allow eggs whose `user` names group 0.
    pub allow_group_zero: bool,
    /// Registries (`host` or `host:port`) the agent may pull from even though they resolve
    /// to loopback, link-local or private addresses. Public registries need no entry.
    pub allowed_registries: Vec<String>,
    /// The Docker network the servers join (created on demand, inter-container traffic off).
    pub network: String,
    /// `max-size` of each container's json-file log.
    pub log_max_size: String,
    /// `max-file` of each container's json-file log.
    pub log_max_files: u32,
    /// Command rate limits.
    pub rate: RateLimits,
    /// Seconds between two disk measurements of a running server.
    pub disk_check_secs: u64,
    /// Seconds a running server may stay over its disk limit before the agent stops it.
    pub disk_grace_secs: u64,
    /// Largest frame the agent sends (the panel refuses larger ones; its default is 1 MiB).
    pub max_frame_bytes: usize,
    /// Seconds an egg's install script may run before it is killed (`install_failed`).
    pub install_timeout_secs: u64,
    /// Console lines per second all servers together may send (a token bucket shared by
    /// every console, above each server's own throttle; lines beyond it are dropped and
    /// counted in their console's `dropped`). Keep it below the panel's `--agent-rate`.
    pub console_rate: f64,
    pub console_burst: f64,
    /// Frames per second the agent sends the panel at most, whatever they are: the link
    /// waits for a token before each one (events queue meanwhile), so a backlog sent after
    /// a reconnect does not exceed the panel's `--agent-rate`/`--agent-burst` either. At
    /// least `consoleRate`/`consoleBurst`.
    pub frame_rate: f64,
    pub frame_burst: f64,
}

impl Default for NodePolicy {
    fn default() -> Self {
        NodePolicy {
            host_ip: IpAddr::from([0, 0, 0, 0]),
            max_servers: 100,
            pids_per_server: 1024,
            max_total_pids: None,
            max_disk: None,
            allow_low_ports: false,
            allow_group_zero: false,
            allowed_registries: Vec::new(),
            network: "ctrl-servers".into(),
            log_max_size: "16m".into(),
            log_max_files: 3,
            rate: RateLimits::default(),
            disk_check_secs: 5,
            disk_grace_secs: 30,
            max_frame_bytes: proto::codec::DEFAULT_MAX_FRAME,
            install_timeout_secs: 3600,
            console_rate: crate::logs::DEFAULT_NODE_RATE,
            console_burst: crate::logs::DEFAULT_NODE_BURST,
            frame_rate: DEFAULT_FRAME_RATE,
            frame_burst: DEFAULT_FRAME_BURST,
        }
    }
}

impl NodePolicy {
    /// Reads the node config, or the defaults when no path is given.
    pub fn load(path: Option<&Path>) -> Result<NodePolicy, NodeConfigError> {
        let Some(path) = path else {
            return Ok(NodePolicy::default());
        };
        let read_err = |source| NodeConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |message: String| NodeConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_NODE_CONFIG_BYTES {
            return Err(invalid("file is larger than 1 MiB".into()));
        }
        let text = std::fs::read(path).map_err(read_err)?;
        let policy: NodePolicy =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        policy.check().map_err(invalid)?;
        Ok(policy)
    }

    /// Values that parse but make no sense.
    pub fn check(&self) -> Result<(), String> {
        if self.max_servers == 0 {
            return Err("maxServers must be at least 1".into());
        }
        if self.pids_per_server < 16 {
            return Err("pidsPerServer must be at least 16".into());
        }
        if let Some(d) = &self.max_disk {
            Bytes::parse(d).map_err(|e| format!("maxDisk: {e}"))?;
        }
        for r in &self.allowed_registries {
            proto::validate::registry_host(r).map_err(|e| format!("allowedRegistries: {e}"))?;
        }
        proto::validate::id(proto::validate::IdKind::Agent, &self.network)
            .map_err(|_| format!("network `{}` is not a valid network name", self.network))?;
        Bytes::parse(&self.log_max_size).map_err(|e| format!("logMaxSize: {e}"))?;
        if self.log_max_files == 0 {
            return Err("logMaxFiles must be at least 1".into());
        }
        let r = &self.rate;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(positive(r.per_server)
            && positive(r.total)
            && positive(r.chunks_per_server)
            && positive(r.chunks_total)
            && r.per_server_burst >= 1.0
            && r.total_burst >= 1.0
            && r.chunks_per_server_burst >= 1.0
            && r.chunks_total_burst >= 1.0)
        {
            return Err("rate limits must be positive and bursts at least 1".into());
        }
        if !(positive(self.console_rate)
            && positive(self.frame_rate)
            && self.console_burst >= 1.0
            && self.frame_burst >= 1.0)
        {
            return Err("consoleRate and frameRate must be positive and bursts at least 1".into());
        }
        if self.console_rate > self.frame_rate || self.console_burst > self.frame_burst {
            // The link would queue lines faster than it sends them, and the outbox evicts
            // what does not fit without counting it in any console's `dropped`.
            return Err("consoleRate/consoleBurst may not exceed frameRate/frameBurst".into());
        }
        if self.disk_check_secs == 0 {
            return Err("diskCheckSecs must be at least 1".into());
        }
        if self.max_frame_bytes < 64 * 1024 {
            return Err("maxFrameBytes must be at least 65536".into());
        }
        if self.install_timeout_secs == 0 {
            return Err("installTimeoutSecs must be at least 1".into());
        }
        Ok(())
    }

    pub fn disk_check(&self) -> Duration {
        Duration::from_secs(self.disk_check_secs)
    }

    pub fn install_timeout(&self) -> Duration {
        Duration::from_secs(self.install_timeout_secs)
    }

    pub fn disk_grace(&self) -> Duration {
        Duration::from_secs(self.disk_grace_secs)
    }

    /// `log_max_size` as Docker writes it (`"16m"`: bytes with a unit it understands).
    pub fn log_max_size_docker(&self) -> String {
        Bytes::parse(&self.log_max_size)
            .map(|b| b.0.to_string())
            .unwrap_or_else(|_| "16777216".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "agent-node-{name}-{}-{}.json",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_are_the_safe_choice() {
        let p = NodePolicy::load(None).unwrap();
        assert!(!p.allow_low_ports && !p.allow_group_zero);
        assert!(p.allowed_registries.is_empty());
        assert!(p.host_ip.is_unspecified());
        assert_eq!(p.max_frame_bytes, 1 << 20);
        p.check().unwrap();
    }

    #[test]
    fn a_file_overrides_some_fields_and_keeps_the_rest() {
        let path = temp(
            "ok",
            r#"{"hostIp": "10.0.0.5", "maxServers": 3, "allowedRegistries": ["registry.lan:5000"],
                "rate": {"perServer": 1, "perServerBurst": 2, "total": 5, "totalBurst": 5}}"#,
        );
        let p = NodePolicy::load(Some(&path)).unwrap();
        assert_eq!(p.host_ip, IpAddr::from([10, 0, 0, 5]));
        assert_eq!(p.max_servers, 3);
        assert_eq!(p.allowed_registries, vec!["registry.lan:5000".to_string()]);
        assert_eq!(p.rate.per_server_burst, 2.0);
        assert_eq!(p.network, "ctrl-servers");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn typos_and_nonsense_are_refused() {
        for text in [
            r#"{"maxServer": 3}"#,
            r#"{"maxServers": 0}"#,
            r#"{"allowedRegistries": ["not a host"]}"#,
            r#"{"rate": {"perServer": 0}}"#,
            r#"{"logMaxSize": "lots"}"#,
            r#"{"network": "../x"}"#,
            r#"{"installTimeoutSecs": 0}"#,
            r#"{"consoleRate": 0}"#,
            r#"{"consoleRate": 2000}"#,
            r#"{"frameBurst": 0.5}"#,
            "not json",
        ] {
            let path = temp("bad", text);
            let e = NodePolicy::load(Some(&path)).unwrap_err();
            assert!(matches!(e, NodeConfigError::Invalid { .. }), "{text}: {e}");
            std::fs::remove_file(path).unwrap();
        }
        assert!(matches!(
            NodePolicy::load(Some(Path::new("/nonexistent/node.json"))),
            Err(NodeConfigError::Read { .. })
        ));
    }
}
