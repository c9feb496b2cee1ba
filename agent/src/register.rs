//! `agent register`: detect what this node offers, register with the panel, write the
//! identity to `agent.json`. Also the token refresh call `agent run` uses.

use crate::config::{AgentConfig, ConfigError};
use crate::docker::{DockerClient, DockerError};
use crate::https::{self, HttpError};
use crate::net::{self, NetError, Scheme, Url};
use proto::ErrorCode;
use proto::rest::{
    ApiError, Capabilities, RefreshRequest, RefreshResponse, RefreshedAgent, RegisterRequest,
    RegisterResponse,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Deadline of one REST call.
pub const REST_TIMEOUT: Duration = Duration::from_secs(30);
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
    Net(#[from] NetError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the panel refused the request (HTTP {status}, {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the panel's answer is not what the protocol says: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid registration: {0}")]
    Invalid(String),
}

impl RegisterError {
    /// True when the panel said the credentials are no good (401 / `AUTH_FAILED`): retrying
    /// the same call cannot succeed.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, RegisterError::Rejected { status: 401, .. })
            || matches!(self, RegisterError::Rejected { code, .. } if code == ErrorCode::AuthFailed.as_str())
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

/// The panel's base URL with `path` appended to its own path prefix.
pub fn panel_endpoint(panel: &Url, path: &str) -> Url {
    let base = panel
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    panel.with_path(&format!("{base}{path}"))
}

/// Runs `agent register`: detect, call the panel, write `--config`. Returns what it wrote.
pub async fn register(args: &RegisterArgs) -> Result<AgentConfig, RegisterError> {
    let panel = Url::parse(&args.panel)?;
    if panel.scheme != Scheme::Https {
        return Err(RegisterError::Invalid(
            "--panel must be an https:// URL".into(),
        ));
    }
    let ca_cert = args
        .ca_cert
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let tls = net::client_config(ca_cert.as_deref())?;
    let docker = DockerClient::connect(&args.docker_socket).await?;
    let capabilities = detect_capabilities(&docker).await?;
    let request = RegisterRequest {
        name: args.name.clone(),
        hostname: args.hostname.clone().unwrap_or_else(system_hostname),
        port: args.port,
        capabilities,
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
    let body = serde_json::to_vec(&request).map_err(|e| RegisterError::Invalid(e.to_string()))?;
    let url = panel_endpoint(&panel, "/api/agents/register");
    let resp = https::post_json(&tls, &url, Some(&args.admin_token), &body, REST_TIMEOUT).await?;
    let answer: RegisterResponse = parse_success(resp)?;
    let agent = answer.agent;
    proto::validate::id(proto::validate::IdKind::Agent, &agent.id)
        .map_err(|e| RegisterError::BadAnswer(e.to_string()))?;
    let ws = Url::parse(&agent.websocket_url)
        .map_err(|e| RegisterError::BadAnswer(format!("websocketUrl: {e}")))?;
    if ws.scheme != Scheme::Wss {
        return Err(RegisterError::BadAnswer(
            "websocketUrl must be wss://".into(),
        ));
    }
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

/// `POST /api/agents/refresh`: trades the refresh token for a new pair. The old refresh
/// token is dead once this succeeds, so the caller must persist the answer before use.
pub async fn refresh(
    tls: &Arc<rustls::ClientConfig>,
    panel_url: &str,
    refresh_token: &str,
) -> Result<RefreshedAgent, RegisterError> {
    let panel = Url::parse(panel_url)?;
    let url = panel_endpoint(&panel, "/api/agents/refresh");
    let body = serde_json::to_vec(&RefreshRequest {
        refresh_token: refresh_token.to_owned(),
    })
    .map_err(|e| RegisterError::Invalid(e.to_string()))?;
    let resp = https::post_json(tls, &url, None, &body, REST_TIMEOUT).await?;
    let answer: RefreshResponse = parse_success(resp)?;
    if answer.agent.token.is_empty() || answer.agent.refresh_token.is_empty() {
        return Err(RegisterError::BadAnswer(
            "empty token in refresh answer".into(),
        ));
    }
    Ok(answer.agent)
}

/// A 2xx answer with `"success": true` decoded as `T`; anything else as a clear error.
fn parse_success<T: serde::de::DeserializeOwned + HasSuccess>(
    resp: https::HttpResponse,
) -> Result<T, RegisterError> {
    if !resp.is_success() {
        let (code, message) = match serde_json::from_slice::<ApiError>(&resp.body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                "HTTP_ERROR".to_owned(),
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(256)]).into_owned(),
            ),
        };
        return Err(RegisterError::Rejected {
            status: resp.status,
            code,
            message,
        });
    }
    let value: T =
        serde_json::from_slice(&resp.body).map_err(|e| RegisterError::BadAnswer(e.to_string()))?;
    if !value.success() {
        return Err(RegisterError::BadAnswer("\"success\" is false".into()));
    }
    Ok(value)
}

trait HasSuccess {
    fn success(&self) -> bool;
}

impl HasSuccess for RegisterResponse {
    fn success(&self) -> bool {
        self.success
    }
}

impl HasSuccess for RefreshResponse {
    fn success(&self) -> bool {
        self.success
    }
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
    fn endpoints_keep_the_panels_path_prefix() {
        let p = Url::parse("https://h:8443").unwrap();
        assert_eq!(
            panel_endpoint(&p, "/api/agents/register").to_string(),
            "https://h:8443/api/agents/register"
        );
        let p = Url::parse("https://h/panel/").unwrap();
        assert_eq!(
            panel_endpoint(&p, "/api/agents/refresh").path,
            "/panel/api/agents/refresh"
        );
    }

    #[test]
    fn rejections_carry_the_panels_code_and_message() {
        let resp = https::HttpResponse {
            status: 401,
            body: br#"{"success":false,"error":{"code":"AUTH_FAILED","message":"bad token"}}"#
                .to_vec(),
        };
        let e = parse_success::<RefreshResponse>(resp).unwrap_err();
        assert!(e.is_auth_failure());
        assert!(e.to_string().contains("bad token"), "{e}");
        let resp = https::HttpResponse {
            status: 500,
            body: b"oops".to_vec(),
        };
        let e = parse_success::<RefreshResponse>(resp).unwrap_err();
        assert!(!e.is_auth_failure());
        assert!(e.to_string().contains("oops"), "{e}");
        let resp = https::HttpResponse {
            status: 200,
            body: br#"{"success":true,"agent":{"id":"a","token":"t","refreshToken":"r"}}"#.to_vec(),
        };
        assert_eq!(
            parse_success::<RefreshResponse>(resp).unwrap().agent.id,
            "a"
        );
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
        };
        req.validate().unwrap();
    }
}
