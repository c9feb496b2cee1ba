//! The body of `POST /containers/create`, serialized exactly as Docker names things.
//!
//! [`CreateSpec::new`] starts from a locked-down default (every capability dropped,
//! `no-new-privileges`, a small noexec `/tmp`, no restart policy: the agent restarts servers
//! itself); callers fill in the rest.

use super::error::DockerError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Capabilities a spec may add back after `CapDrop: ["ALL"]`. Enough for images that switch
/// to an unprivileged user or bind low ports, nothing that reaches outside the container.
pub const CAP_ADD_ALLOWLIST: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSpec {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `uid[:gid]` or a user name known to the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The signal `docker stop` sends first (default SIGTERM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    /// "25565/tcp" → `{}`; filled by [`CreateSpec::publish`].
    pub exposed_ports: BTreeMap<String, Empty>,
    pub host_config: HostConfig,
}

/// Docker's `{}` placeholder in `ExposedPorts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    pub mounts: Vec<Mount>,
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// Memory + swap in bytes; equal to `memory` disables swap, -1 = unlimited swap.
    pub memory_swap: i64,
    /// CPU quota in billionths of a CPU; 0 = unlimited.
    pub nano_cpus: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub readonly_rootfs: bool,
    /// Mount point → mount options.
    pub tmpfs: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    /// The network to join (`bridge` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// How Docker keeps the container's output (the daemon's default when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_config: Option<LogConfig>,
}

/// `HostConfig.LogConfig`: a log driver and its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

impl LogConfig {
    /// The json-file driver, rotated: at most `max_files` files of `max_size` each.
    pub fn json_file(max_size: &str, max_files: u32) -> LogConfig {
        LogConfig {
            kind: "json-file".into(),
            config: BTreeMap::from([
                ("max-size".to_string(), max_size.to_string()),
                ("max-file".to_string(), max_files.to_string()),
            ]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// "" for all interfaces.
    pub host_ip: String,
    pub host_port: String,
}

/// A bind mount. Unlike `Binds`, `Mounts` fails when the host path is missing instead of
/// silently creating it as root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// Always "bind" here.
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    pub fn bind(source: impl Into<String>, target: impl Into<String>, read_only: bool) -> Self {
        Self {
            kind: "bind".into(),
            source: source.into(),
            target: target.into(),
            read_only,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl CreateSpec {
    /// A spec for `image` with the hardened defaults described in the module docs, stdin
    /// open and attachable (console input), no TTY (so output is multiplexed and stderr
    /// stays distinguishable).
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            stop_signal: None,
            open_stdin: true,
            stdin_once: false,
            attach_stdin: true,
            attach_stdout: true,
            attach_stderr: true,
            tty: false,
            exposed_ports: BTreeMap::new(),
            host_config: HostConfig {
                port_bindings: BTreeMap::new(),
                mounts: Vec::new(),
                memory: 0,
                memory_swap: 0,
                nano_cpus: 0,
                pids_limit: None,
                cap_drop: vec!["ALL".into()],
                cap_add: Vec::new(),
                security_opt: vec!["no-new-privileges".into()],
                readonly_rootfs: false,
                tmpfs: BTreeMap::from([(
                    "/tmp".to_string(),
                    "rw,noexec,nosuid,size=64m".to_string(),
                )]),
                restart_policy: RestartPolicy {
                    name: "no".into(),
                    maximum_retry_count: 0,
                },
                network_mode: None,
                log_config: None,
            },
        }
    }

    /// Exposes `container_port/proto` and publishes it on `host_ip:host_port`
    /// (`host_ip` "" = all interfaces). Several calls for one port add bindings.
    pub fn publish(
        &mut self,
        container_port: u16,
        proto: Protocol,
        host_ip: &str,
        host_port: u16,
    ) -> &mut Self {
        let key = format!("{container_port}/{}", proto.as_str());
        self.exposed_ports.insert(key.clone(), Empty {});
        self.host_config
            .port_bindings
            .entry(key)
            .or_default()
            .push(PortBinding {
                host_ip: host_ip.to_string(),
                host_port: host_port.to_string(),
            });
        self
    }

    /// Refuses what the agent must never ask Docker for, before Docker sees it.
    pub fn validate(&self) -> Result<(), DockerError> {
        if self.image.trim().is_empty() {
            return Err(DockerError::InvalidArgument(
                "the image name is empty".into(),
            ));
        }
        if let Some(cap) = self
            .host_config
            .cap_add
            .iter()
            .find(|c| !CAP_ADD_ALLOWLIST.contains(&c.trim_start_matches("CAP_")))
        {
            return Err(DockerError::InvalidArgument(format!(
                "capability {cap} is not allowed (allowed: {})",
                CAP_ADD_ALLOWLIST.join(", ")
            )));
        }
        if let Some(e) = self.env.iter().find(|e| !e.contains('=')) {
            return Err(DockerError::InvalidArgument(format!(
                "environment entry {e:?} is not KEY=value"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_dockers_names() {
        let mut spec = CreateSpec::new("img:1");
        spec.cmd = Some(vec!["/bin/sh".into(), "-c".into(), "run".into()]);
        spec.env.push("A=1".into());
        spec.labels.insert("ctrl.server".into(), "s1".into());
        spec.publish(25565, Protocol::Tcp, "127.0.0.1", 30000)
            .publish(25565, Protocol::Udp, "", 30000);
        spec.host_config.memory = 1 << 30;
        spec.host_config.memory_swap = 1 << 30;
        spec.host_config.nano_cpus = 1_500_000_000;
        spec.host_config.pids_limit = Some(256);
        spec.host_config
            .mounts
            .push(Mount::bind("/data/v/s1", "/server", false));
        let v: serde_json::Value = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["Image"], "img:1");
        assert_eq!(v["Cmd"][2], "run");
        assert!(v.get("Entrypoint").is_none());
        assert_eq!(v["Labels"]["ctrl.server"], "s1");
        assert_eq!(v["OpenStdin"], true);
        assert_eq!(v["StdinOnce"], false);
        assert_eq!(v["Tty"], false);
        assert_eq!(v["ExposedPorts"]["25565/tcp"], serde_json::json!({}));
        assert_eq!(v["ExposedPorts"]["25565/udp"], serde_json::json!({}));
        let hc = &v["HostConfig"];
        assert_eq!(hc["PortBindings"]["25565/tcp"][0]["HostIp"], "127.0.0.1");
        assert_eq!(hc["PortBindings"]["25565/tcp"][0]["HostPort"], "30000");
        assert_eq!(hc["Memory"], 1 << 30);
        assert_eq!(hc["NanoCpus"], 1_500_000_000i64);
        assert_eq!(hc["PidsLimit"], 256);
        assert_eq!(hc["CapDrop"][0], "ALL");
        assert_eq!(hc["SecurityOpt"][0], "no-new-privileges");
        assert_eq!(hc["ReadonlyRootfs"], false);
        assert_eq!(hc["Tmpfs"]["/tmp"], "rw,noexec,nosuid,size=64m");
        assert_eq!(hc["RestartPolicy"]["Name"], "no");
        assert_eq!(hc["Mounts"][0]["Type"], "bind");
        assert_eq!(hc["Mounts"][0]["Target"], "/server");
        assert_eq!(hc["Mounts"][0]["ReadOnly"], false);
        assert!(hc.get("NetworkMode").is_none() && hc.get("LogConfig").is_none());
        spec.host_config.network_mode = Some("ctrl-servers".into());
        spec.host_config.log_config = Some(LogConfig::json_file("16777216", 3));
        let v: serde_json::Value = serde_json::to_value(&spec).unwrap();
        let hc = &v["HostConfig"];
        assert_eq!(hc["NetworkMode"], "ctrl-servers");
        assert_eq!(hc["LogConfig"]["Type"], "json-file");
        assert_eq!(hc["LogConfig"]["Config"]["max-size"], "16777216");
        assert_eq!(hc["LogConfig"]["Config"]["max-file"], "3");
    }

    #[test]
    fn validation_rejects_unsafe_or_broken_specs() {
        let mut spec = CreateSpec::new("img");
        assert!(spec.validate().is_ok());
        spec.host_config.cap_add = vec!["CAP_CHOWN".into(), "SETUID".into()];
        assert!(spec.validate().is_ok());
        spec.host_config.cap_add.push("SYS_ADMIN".into());
        let e = spec.validate().unwrap_err();
        assert!(e.to_string().contains("SYS_ADMIN"), "{e}");
        assert_eq!(e.code(), proto::ErrorCode::ConfigInvalid);

        let mut spec = CreateSpec::new("img");
        spec.env.push("NOEQUALS".into());
        assert!(spec.validate().is_err());
        assert!(CreateSpec::new(" ").validate().is_err());
    }
}
