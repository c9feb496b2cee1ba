//! Typed helpers for the agent-facing REST calls: registration, token refresh, and the
//! headers an agent's WebSocket connection carries.

use std::sync::Arc;

use proto::rest::{
    Capabilities, RefreshRequest, RefreshResponse, RefreshedAgent, RegisterRequest,
    RegisterResponse, RegisteredAgent,
};

use super::{ClientError, Rest, Ws, WsOptions, ws_connect, ws_connect_with};

/// The registration body a simulated agent sends: a plausible 8-core, 16 GB amd64 node.
pub fn registration_request(name: &str) -> RegisterRequest {
    RegisterRequest {
        name: name.to_owned(),
        hostname: "127.0.0.1".to_owned(),
        port: 8080,
        capabilities: Capabilities {
            max_memory: "16GB".to_owned(),
            max_cpu_cores: 8,
            docker_version: "24.0.0".to_owned(),
            supported_architectures: vec!["amd64".to_owned()],
        },
    }
}

/// `POST /api/agents/register` with [`registration_request`]`(name)`.
pub async fn register(
    rest: &Rest,
    admin_token: &str,
    name: &str,
) -> Result<RegisteredAgent, ClientError> {
    register_with(rest, admin_token, &registration_request(name)).await
}

/// `POST /api/agents/register` with a caller-built body. Anything but 200 with
/// `"success": true` is [`ClientError::Rejected`].
pub async fn register_with(
    rest: &Rest,
    admin_token: &str,
    body: &RegisterRequest,
) -> Result<RegisteredAgent, ClientError> {
    let bytes = serde_json::to_vec(body)?;
    let (status, answer) = rest
        .request(
            "POST",
            "/api/agents/register",
            Some(admin_token),
            Some(&bytes),
        )
        .await?;
    let parsed: RegisterResponse = expect_ok(status, &answer)?;
    Ok(parsed.agent)
}

/// `POST /api/agents/refresh`: rotates both tokens.
pub async fn refresh(rest: &Rest, refresh_token: &str) -> Result<RefreshedAgent, ClientError> {
    let body = serde_json::to_vec(&RefreshRequest {
        refresh_token: refresh_token.to_owned(),
    })?;
    let (status, answer) = rest
        .request("POST", "/api/agents/refresh", None, Some(&body))
        .await?;
    let parsed: RefreshResponse = expect_ok(status, &answer)?;
    Ok(parsed.agent)
}

fn expect_ok<T: serde::de::DeserializeOwned + HasSuccess>(
    status: u16,
    answer: &[u8],
) -> Result<T, ClientError> {
    let rejected = || ClientError::Rejected {
        status,
        body: String::from_utf8_lossy(answer).into_owned(),
    };
    if status != 200 {
        return Err(rejected());
    }
    let parsed: T = serde_json::from_slice(answer).map_err(|e| {
        ClientError::Json(format!(
            "unexpected answer ({e}): {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        ))
    })?;
    if !parsed.success() {
        return Err(rejected());
    }
    Ok(parsed)
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

/// Connects an agent's WebSocket (`Authorization: Bearer <token>`, `X-Agent-ID: <id>`) to
/// `url` — normally `rest.wss_url("/ws/agents")` or the registration's `websocketUrl`.
pub async fn connect_agent(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    agent_id: &str,
    token: &str,
) -> Result<Ws, ClientError> {
    let bearer = format!("Bearer {token}");
    ws_connect(
        url,
        tls,
        &[("Authorization", &bearer), ("X-Agent-ID", agent_id)],
    )
    .await
}

/// [`connect_agent`] with explicit options.
pub async fn connect_agent_with(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    agent_id: &str,
    token: &str,
    options: WsOptions,
) -> Result<Ws, ClientError> {
    let bearer = format!("Bearer {token}");
    ws_connect_with(
        url,
        tls,
        &[("Authorization", &bearer), ("X-Agent-ID", agent_id)],
        options,
    )
    .await
}
