//! Agent endpoints: registration, token refresh, the agent list, and the `/ws/agents`
//! upgrade (refused with 401 before any WebSocket frame unless the agent token verifies).

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

use proto::ErrorCode;
use proto::rest::{
    RefreshRequest, RefreshResponse, RefreshedAgent, RegisterRequest, RegisterResponse,
    RegisteredAgent,
};
use proto::time::{format_rfc3339, unix_now};
use proto::validate::ValidationError;

use super::{Api, ApiError, Caller, REG_TOKEN_PREFIX, blocking, body};
use crate::auth::AuthError;
use crate::history::{Kind, Range};
use crate::http::{Reply, Request, Response};
use crate::store::AgentRecord;
use crate::users::secret;

/// A random UUID (version 4) for a new agent: valid as a protocol id, unguessable.
fn new_agent_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random number generator failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `POST /api/agents/register` (admin, or a registration token: see [`registration_token`]).
pub(super) async fn register(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let body: RegisterRequest = body(&req)?;
    body.validate().map_err(|e| {
        let message = match &e.0 {
            ValidationError::Egg { field, reason } => format!("{field}: {reason}"),
            other => other.to_string(),
        };
        ApiError::new(e.code(), message)
    })?;
    let id = new_agent_id();
    let now = unix_now();
    let (tokens, pair) = api.auth.new_family(&id, now);
    let rec = AgentRecord {
        id: id.clone(),
        name: body.name,
        hostname: body.hostname,
        port: body.port,
        capabilities: body.capabilities,
        registered_at: now,
        tokens,
        labels: body.labels,
        draining: false,
    };
    let store = api.store.clone();
    blocking(move || store.put_agent(&rec)).await?;
    log::info!("agent {id} registered");
    let ws = match api.base_url.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}/ws/agents"),
        None => format!("{}/ws/agents", api.base_url),
    };
    Ok(Response::json(
        200,
        &RegisterResponse {
            success: true,
            agent: RegisteredAgent {
                id,
                token: pair.token,
                websocket_url: ws,
                refresh_token: pair.refresh_token,
            },
        },
    )
    .into())
}

/// How long a registration token stays valid.
const REG_TOKEN_TTL: u64 = 3600;

/// `POST /api/agents/registration-tokens` (admin): a single-use token that
/// `POST /api/agents/register` accepts instead of the admin token, for [`REG_TOKEN_TTL`].
pub(super) async fn registration_token(
    api: Arc<Api>,
    _: Request,
    _: Caller,
) -> Result<Reply, ApiError> {
    let token = format!("{REG_TOKEN_PREFIX}{}", secret::token(32));
    let now = unix_now();
    let expires = now.saturating_add(REG_TOKEN_TTL);
    let (store, key) = (api.store.clone(), secret::digest(&token));
    if !blocking(move || store.insert_reg_token(&key, expires, now)).await? {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many unused registration tokens; wait for some to expire",
        ));
    }
    Ok(Response::json(
        200,
        &serde_json::json!({"success": true, "token": token, "expiresAt": format_rfc3339(expires)}),
    )
    .with_header("cache-control", "no-store")
    .into())
}

/// `POST /api/agents/refresh` (no admin token: the refresh token is the credential).
pub(super) async fn refresh(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    api.limit(&req)?;
    let body: RefreshRequest = body(&req)?;
    let auth = api.auth.clone();
    let pair = blocking(move || auth.refresh(&body.refresh_token, unix_now()))
        .await
        .inspect_err(|e| {
            if let AuthError::Reused(agent) = e {
                log::warn!("refresh token reuse for agent {agent}: token family revoked");
                api.hub.kick(agent, 1008, "token family revoked");
            }
        })?;
    Ok(Response::json(
        200,
        &RefreshResponse {
            success: true,
            agent: RefreshedAgent {
                id: pair.agent_id,
                token: pair.token,
                refresh_token: pair.refresh_token,
            },
        },
    )
    .into())
}

/// `GET /api/agents` (admin): every agent, its health and its last pong.
pub(super) async fn list(api: Arc<Api>, _req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let servers = servers_per_agent(&api);
    let agents: Vec<Value> = api
        .store
        .agents()
        .iter()
        .map(|a| agent_json(&api, a, &servers))
        .collect();
    Ok(Response::json(200, &json!({"success": true, "agents": agents})).into())
}

/// `GET /api/agents/{id}` (admin): one agent, as in the list.
pub(super) async fn get(api: Arc<Api>, req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let a = admin_agent(&api, &req)?;
    let servers = servers_per_agent(&api);
    Ok(Response::json(
        200,
        &json!({"success": true, "agent": agent_json(&api, &a, &servers)}),
    )
    .into())
}

fn servers_per_agent(api: &Api) -> HashMap<String, usize> {
    let mut servers: HashMap<String, usize> = HashMap::new();
    for s in api.store.servers() {
        *servers.entry(s.agent_id).or_default() += 1;
    }
    servers
}

/// The agent named in the path (`NOT_FOUND`); the route table checked the caller is admin.
fn admin_agent(api: &Api, req: &Request) -> Result<AgentRecord, ApiError> {
    let id = req.param("id").unwrap_or_default();
    api.store
        .agent(id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no agent `{id}`")))
}

fn agent_json(api: &Api, a: &AgentRecord, servers: &HashMap<String, usize>) -> Value {
    let live = api.hub.live(&a.id);
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "hostname": a.hostname,
        "port": a.port,
        "status": if live.is_some() { "online" } else { "offline" },
        "lastSeen": api.hub.last_seen(&a.id).map(format_rfc3339),
        "registeredAt": format_rfc3339(a.registered_at),
        "capabilities": a.capabilities,
        "servers": servers.get(&a.id).copied().unwrap_or(0),
        "labels": a.labels,
        "draining": a.draining,
    });
    if let Some(h) = api.nodes.health.view(&a.id) {
        v["health"] = h.to_json();
    }
    if a.tokens.revoked {
        v["tokensRevoked"] = json!(true);
    }
    if let Some(live) = live {
        v["connectedAt"] = json!(format_rfc3339(live.connected_at));
        if let Some(p) = live.pong {
            v["agentStatus"] = json!(p.agent_status);
            v["activeServers"] = json!(p.active_servers);
            v["systemLoad"] = json!(p.system_load);
            if !p.conditions.is_empty() {
                v["conditions"] = json!(p.conditions);
            }
        }
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    migrate: bool,
}

/// `POST /api/agents/{id}/drain` (admin), body optional `{"migrate": bool}`: the agent takes
/// no new servers (durably) and shows `draining`; its servers keep running. With
/// `"migrate": true` every server on it is also transferred away, in the background
/// (`drain.rs`): `202` with the plan (`"migration"`), `CONFLICT` if one is already running.
pub(super) async fn drain(api: Arc<Api>, req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let a = admin_agent(&api, &req)?;
    let body: DrainBody = if req.body.iter().all(u8::is_ascii_whitespace) {
        DrainBody::default()
    } else {
        body(&req)?
    };
    if body.migrate
        && let Some(m) = api.migrations.get(&a.id)
        && m.state == "running"
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("agent {} is already being drained with migration", a.id),
        ));
    }
    let mut answer = set_draining(&api, a.id.clone(), true).await?;
    if !body.migrate {
        return Ok(Response::json(200, &answer).into());
    }
    let m = super::drain::start(&api, &a.id)?;
    answer["migration"] = json!(m);
    Ok(Response::json(202, &answer).into())
}

/// `POST /api/agents/{id}/undrain` (admin): the agent takes new servers again (a drain
/// migration in progress moves no further server).
pub(super) async fn undrain(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let a = admin_agent(&api, &req)?;
    let answer = set_draining(&api, a.id, false).await?;
    Ok(Response::json(200, &answer).into())
}

/// `GET /api/agents/{id}/migration` (admin): the node's drain migration in progress, or the
/// last one since the panel started (`NOT_FOUND` if none).
pub(super) async fn migration(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let a = admin_agent(&api, &req)?;
    let m = api.migrations.get(&a.id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "agent {} has not been drained with migration since the panel started",
                a.id
            ),
        )
    })?;
    Ok(Response::json(200, &json!({"success": true, "migration": m})).into())
}

async fn set_draining(api: &Arc<Api>, id: String, on: bool) -> Result<Value, ApiError> {
    let store = api.store.clone();
    let rec = blocking(move || store.set_draining(&id, on))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the agent was removed"))?;
    // Decide at once, so the answer (and the next GET) shows the new state.
    api.nodes
        .health
        .evaluate(&crate::health::observe(&api.hub, &api.store), unix_now());
    let servers = servers_per_agent(api);
    Ok(json!({"success": true, "agent": agent_json(api, &rec, &servers)}))
}

/// `GET /api/agents/{id}/stats?range=1h|24h` (admin): the node's history
/// (`{"t","cpu","memory","disk","servers"}` points; percentages but `servers`).
pub(super) async fn stats(api: Arc<Api>, req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let a = admin_agent(&api, &req)?;
    let range = stats_range(&req)?;
    let points = api
        .nodes
        .history
        .points(Kind::Node, &a.id, range, unix_now());
    Ok(Response::json(200, &json!({"success": true, "points": points})).into())
}

/// `?range=` of the stats routes: `1h` (default) or `24h`.
pub(super) fn stats_range(req: &Request) -> Result<Range, ApiError> {
    match req.query_param("range") {
        None => Ok(Range::Hour),
        Some(r) => Range::parse(&r).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidMessage,
                format!("range `{r}` is not 1h or 24h"),
            )
        }),
    }
}

/// `GET /ws/agents`: `Authorization: Bearer <agent token>` and `X-Agent-ID` must match.
pub(super) async fn websocket(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let token = req
        .bearer()
        .ok_or_else(|| ApiError::new(ErrorCode::AuthFailed, "missing bearer token"))?;
    let agent_id = req
        .header("x-agent-id")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::new(ErrorCode::AuthFailed, "missing X-Agent-ID header"))?;
    let claims = api.auth.verify_agent(token, &agent_id, unix_now())?;
    let family = claims.fam.unwrap_or_default();
    // The hub never sends an agent a frame larger than it accepts from one.
    let config = crate::http::socket_config(api.max_frame, api.max_frame);
    let hub = api.hub.clone();
    // Before the 101: a shutdown racing the upgrade then still waits for (and closes) it.
    let admitted = hub.admit();
    let shutdown = api.shutdown.clone();
    Ok(Reply::Upgrade {
        config,
        run: Box::new(move |ws| {
            Box::pin(hub.serve_agent_admitted(admitted, ws, agent_id, family, shutdown))
        }),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn agent_ids_are_valid_protocol_ids_and_distinct() {
        let a = super::new_agent_id();
        let b = super::new_agent_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        proto::validate::id(proto::validate::IdKind::Agent, &a).unwrap();
    }
}
