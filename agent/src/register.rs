//! `agent register`: detect what this node offers, register with the panel (through
//! `ctrl-io`'s registration client), write the identity to `agent.json`. Also builds the
//! REST client the token refresh uses.

use crate::config::{AgentConfig, ConfigError};
use crate::docker::{DockerClient, DockerError};
use ctrl_io::{ClientError, Rest, Scheme, Url};
use proto::rest::{Capabilities, RegisterRequest};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Deadline of one REST call.
pub const REST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest REST answer accepted (registration answers are a few hundred bytes).
pub const MAX_ANSWER: usize = 1 << 20;
/// The `port` reported at registration when none is given (the spec's example value; the
/// agent itself listens on nothing, the panel treats it as informational).
pub const DEFAULT_REPORTED_PORT: u16 = 8080;

/// Errors of registration and refresh.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot detect Docker (needed for the capabilities): {0}")]
    Docker(#[from] DockerError),
    #[error("cannot read {what}: {reason}")]
    Detect { what: &'static str, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid registration: {0}")]
    Invalid(String),
}

impl RegisterError {
    /// True when the panel said the credentials are no good (401 / `AUTH_FAILED`): retrying
    /// the same call cannot succeed.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, RegisterError::Client(e) if e.is_auth_failure())
    }
}

/// What `agent register` was asked to do.
#[derive(Debug, Clone)]
pub struct RegisterArgs {
    pub panel: String,
    pub admin_token: String,
    pub name: String,
    pub ca_cert: Option<PathBuf>,
    pub config: PathBuf,
    pub docker_socket: PathBuf,
    /// Reported address of this node; defaults to the system host name.
    pub hostname: Option<String>,
    pub port: u16,
    /// Extension (node health): `--label KEY=VALUE`, repeatable.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Detects the node's capabilities: memory (from `/proc/meminfo`), CPU cores, Docker version
/// and architectures (from Docker's `/info`).
pub async fn detect_capabilities(docker: &DockerClient) -> Result<Capabilities, RegisterError> {
    let info = docker.info().await?;
    let memory = match memory_total() {
        Ok(m) => m,
        Err(reason) if info.mem_total > 0 => {
            log::warn!("/proc/meminfo: {reason}; using Docker's MemTotal");
            info.mem_total
        }
        Err(reason) => {
            return Err(RegisterError::Detect {
                what: "/proc/meminfo",
                reason,
            });
        }
    };
    let cores = if info.ncpu > 0 {
        info.ncpu
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    };
    let docker_version = if info.server_version.is_empty() {
        docker.version().await?.version
    } else {
        info.server_version
    };
    Ok(Capabilities {
        max_memory: format_memory(memory),
        max_cpu_cores: cores,
        docker_version,
        supported_architectures: vec![map_arch(&info.architecture)],
    })
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn memory_total() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    parse_meminfo(&text, "MemTotal:").ok_or_else(|| "no MemTotal line".to_owned())
}

/// A `Key:   123 kB` line of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut fields = line[key.len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | Some("KB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Memory as the spec writes capabilities: whole GiB as `"16GB"`, or MiB below 1 GiB.
pub fn format_memory(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB {
        format!("{}GB", bytes / GIB)
    } else {
        format!("{}MB", (bytes / MIB).max(1))
    }
}

/// Docker's `Architecture` (kernel names) to image platform names.
pub fn map_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "amd64" => "amd64".into(),
        "aarch64" | "arm64" | "armv8" | "armv8l" => "arm64".into(),
        "armv7l" | "armv7" | "armhf" => "arm".into(),
        "i386" | "i686" | "x86" => "386".into(),
        other => {
            let clean: String = other
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(32)
                .collect();
            if clean.is_empty() {
                "unknown".into()
            } else {
                clean.to_ascii_lowercase()
            }
        }
    }
}

/// The system host name when it is a valid registration hostname, else `localhost`.
fn system_hostname() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
    if ok { name } else { "localhost".into() }
}

/// The REST client the agent talks to the panel with: `panel_url` is the panel's base URL
/// (`https://host:port[/prefix]`).
pub fn rest_client(panel_url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Rest, ClientError> {
    Ok(Rest::new(panel_url, tls)?
        .with_timeout(REST_TIMEOUT)
        .with_max_body(MAX_ANSWER)
        .with_user_agent(concat!("ctrl-agent/", env!("CARGO_PKG_VERSION"))))
}

/// Runs `agent register`: detect, call the panel, write `--config`. Returns what it wrote.
pub async fn register(args: &RegisterArgs) -> Result<AgentConfig, RegisterError> {
    let panel = Url::parse_as(&args.panel, Scheme::Https)
        .map_err(|e| RegisterError::Invalid(format!("--panel: {e}")))?;
    let ca_cert = args
        .ca_cert
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let tls = ctrl_io::tls_config(ca_cert.as_deref())?;
    let rest = rest_client(&args.panel, tls)?;
    let docker = DockerClient::connect(&args.docker_socket).await?;
    let capabilities = detect_capabilities(&docker).await?;
    let request = RegisterRequest {
        name: args.name.clone(),
        hostname: args.hostname.clone().unwrap_or_else(system_hostname),
        port: args.port,
        capabilities,
        labels: args.labels.clone(),
    };
    request
        .validate()
        .map_err(|e| RegisterError::Invalid(e.to_string()))?;
    log::info!(
        "registering `{}` with {} ({} of memory, {} cores, Docker {}, {:?})",
        request.name,
        panel,
        request.capabilities.max_memory,
        request.capabilities.max_cpu_cores,
        request.capabilities.docker_version,
        request.capabilities.supported_architectures
    );
    let agent = ctrl_io::register_with(&rest, &args.admin_token, &request).await?;
    let config = AgentConfig {
        id: agent.id,
        name: args.name.clone(),
        token: agent.token,
        refresh_token: agent.refresh_token,
        websocket_url: agent.websocket_url,
        panel_url: panel.to_string(),
        ca_cert,
    };
    config.save(&args.config)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       16314168 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(text, "MemTotal:"), Some(16_314_168 * 1024));
        assert_eq!(parse_meminfo(text, "MemAvailable:"), None);
        assert_eq!(parse_meminfo("MemTotal: x kB", "MemTotal:"), None);
        assert!(memory_total().unwrap() > 0);
    }

    #[test]
    fn memory_is_formatted_as_a_quantity_proto_accepts() {
        assert_eq!(format_memory(16 << 30), "16GB");
        assert_eq!(format_memory((16 << 30) + (900 << 20)), "16GB");
        assert_eq!(format_memory(512 << 20), "512MB");
        for b in [1u64, 512 << 20, 16 << 30] {
            let q = proto::quantity::Bytes::parse(&format_memory(b)).unwrap();
            assert!(q.0 > 0 && q.0 <= b.max(1 << 20));
        }
    }

    #[test]
    fn architectures_map_to_platform_names() {
        assert_eq!(map_arch("x86_64"), "amd64");
        assert_eq!(map_arch("aarch64"), "arm64");
        assert_eq!(map_arch("armv7l"), "arm");
        assert_eq!(map_arch("s390x"), "s390x");
        assert_eq!(map_arch("weird/\u{0}"), "weird");
        assert_eq!(map_arch(""), "unknown");
    }

    #[test]
    fn system_hostname_is_always_acceptable() {
        let h = system_hostname();
        let req = RegisterRequest {
            name: "n".into(),
            hostname: h,
            port: 8080,
            capabilities: Capabilities {
                max_memory: "1GB".into(),
                max_cpu_cores: 1,
                docker_version: "20.10".into(),
                supported_architectures: vec!["amd64".into()],
            },
            labels: Default::default(),
        };
        req.validate().unwrap();
    }
}
