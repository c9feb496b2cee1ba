//! The agent-facing REST calls: registration (`POST /api/agents/register`, admin token) and
//! token refresh (`POST /api/agents/refresh`). The real agent, the loadtest's simulated
//! agents and the tests all register through here. Answers are checked against the protocol
//! before anyone persists them: a registered id must be a valid agent id and its
//! `websocketUrl` a `wss://` URL; refreshed tokens must not be empty.

use proto::rest::{
    Capabilities, RefreshRequest, RefreshResponse, RefreshedAgent, RegisterRequest,
    RegisterResponse, RegisteredAgent,
};

use crate::{ClientError, Rest, Scheme, Url};

/// The registration body of a simulated agent (loadtest, tests): a plausible 8-core,
/// 16 GB amd64 node.
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
        labels: Default::default(),
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

/// `POST /api/agents/register` with a caller-built body. A non-2xx answer, or one with
/// `"success": false`, is [`ClientError::Rejected`]; an answer that breaks the protocol is
/// [`ClientError::Json`].
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
    let agent = expect_ok::<RegisterResponse>(status, &answer)?.agent;
    proto::validate::id(proto::validate::IdKind::Agent, &agent.id)
        .map_err(|e| bad_answer(format!("agent id: {e}")))?;
    Url::parse_as(&agent.websocket_url, Scheme::Wss)
        .map_err(|e| bad_answer(format!("websocketUrl: {e}")))?;
    Ok(agent)
}

/// `POST /api/agents/refresh`: trades the refresh token for a new pair. The old refresh
/// token is dead once this succeeds, so the caller must persist the answer before use.
pub async fn refresh(rest: &Rest, refresh_token: &str) -> Result<RefreshedAgent, ClientError> {
    let body = serde_json::to_vec(&RefreshRequest {
        refresh_token: refresh_token.to_owned(),
    })?;
    let (status, answer) = rest
        .request("POST", "/api/agents/refresh", None, Some(&body))
        .await?;
    let agent = expect_ok::<RefreshResponse>(status, &answer)?.agent;
    if agent.token.is_empty() || agent.refresh_token.is_empty() {
        return Err(bad_answer("empty token in the refresh answer".into()));
    }
    Ok(agent)
}

fn bad_answer(why: String) -> ClientError {
    ClientError::Json(format!("the panel's answer breaks the protocol: {why}"))
}

fn expect_ok<T: serde::de::DeserializeOwned + HasSuccess>(
    status: u16,
    answer: &[u8],
) -> Result<T, ClientError> {
    let rejected = || ClientError::Rejected {
        status,
        body: String::from_utf8_lossy(answer).into_owned(),
    };
    if !(200..300).contains(&status) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_status_and_success() {
        let ok = br#"{"success":true,"agent":{"id":"a","token":"t","refreshToken":"r"}}"#;
        assert_eq!(expect_ok::<RefreshResponse>(200, ok).unwrap().agent.id, "a");
        let e = expect_ok::<RefreshResponse>(
            401,
            br#"{"success":false,"error":{"code":"AUTH_FAILED","message":"bad token"}}"#,
        )
        .unwrap_err();
        assert!(e.is_auth_failure());
        assert!(e.to_string().contains("bad token"), "{e}");
        let e = expect_ok::<RefreshResponse>(500, b"oops").unwrap_err();
        assert!(!e.is_auth_failure());
        assert!(e.to_string().contains("oops"), "{e}");
        let e = expect_ok::<RefreshResponse>(200, b"{").unwrap_err();
        assert!(matches!(e, ClientError::Json(_)), "{e}");
        let e = expect_ok::<RefreshResponse>(
            200,
            br#"{"success":false,"agent":{"id":"a","token":"t","refreshToken":"r"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(e, ClientError::Rejected { status: 200, .. }),
            "{e}"
        );
    }

    #[test]
    fn the_simulated_node_is_a_valid_registration() {
        registration_request("lt-0").validate().unwrap();
    }
}
