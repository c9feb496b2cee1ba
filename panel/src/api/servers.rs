//! Server endpoints: create (validate, place, record durably, `create_server`), list, status,
//! power, console, files, delete.
//!
//! The server record is written before `create_server` is sent, so the agent's answer (which
//! names the server) passes the hub's ownership check. If the agent refuses or is offline the
//! record is removed again; on a timeout, or a connection lost after the command went out,
//! it is kept (the agent may have acted: a restarted agent adopts the container) and the
//! operator can `DELETE` it.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use proto::ErrorCode;
use proto::egg::EggConfig;
use proto::message::{
    Action, ContentEncoding, CreateServer, DeleteServer, GetLogs, KillServer, LogLines,
    PathPayload, SendCommand, ServerState, StopServer, WriteFile,
};
use proto::time::{format_rfc3339, unix_now};
use proto::validate::{self, IdKind};

use super::placing::{self, Placing};
use super::{Api, ApiError, Caller, agent_answer, blocking, body};
use crate::eggs;
use crate::history::Kind;
use crate::http::{Reply, Request, Response};
use crate::hub::HubError;
use crate::placement::Need;
use crate::store::{DesiredState, ServerRecord};
use crate::users::rights::Perms;

fn new_server_id() -> String {
    let r: String = proto::jwt::random_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("srv-{}", r.to_ascii_lowercase())
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// The body of `POST /api/servers`, field by field (shape errors name the field): an
/// `eggConfig`, or an `eggId` of the library with the choices `crate::eggs::FromEgg` names.
struct CreateBody {
    agent_id: Option<String>,
    server_id: Option<String>,
    owner_id: Option<String>,
    egg_value: Value,
    egg_id: Option<String>,
    constraints: BTreeMap<String, String>,
    failover: bool,
}

impl CreateBody {
    fn parse(api: &Api, req: &Request) -> Result<CreateBody, ApiError> {
        let body: Value = body(req)?;
        let Value::Object(mut obj) = body else {
            return Err(refused(
                ErrorCode::InvalidMessage,
                "body must be a JSON object",
            ));
        };
        let constraints = placing::constraints(obj.remove("constraints"))?;
        let failover = super::access::failover_field(&mut obj)?.unwrap_or(false);
        let mut str_field = |k: &str| -> Result<Option<String>, ApiError> {
            match obj.remove(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(refused(
                    ErrorCode::InvalidMessage,
                    format!("{k} must be a string"),
                )),
            }
        };
        let agent_id = str_field("agentId")?;
        let server_id = str_field("serverId")?;
        let owner_id = str_field("ownerId")?;
        if let Some(o) = &owner_id
            && api.store.user(o).is_none()
        {
            return Err(refused(ErrorCode::NotFound, format!("no user `{o}`")));
        }
        let egg_id = str_field("eggId")?;
        let egg_value = match (&egg_id, obj.remove("eggConfig")) {
            (None, Some(egg)) => egg,
            (Some(id), None) => from_egg(api, id, &mut obj)?,
            (Some(_), Some(_)) => {
                return Err(refused(
                    ErrorCode::ConfigInvalid,
                    "give either eggConfig or eggId, not both",
                ));
            }
            (None, None) => {
                return Err(refused(
                    ErrorCode::ConfigInvalid,
                    "eggConfig (or eggId) is required",
                ));
            }
        };
        Ok(CreateBody {
            agent_id,
            server_id,
            owner_id,
            egg_value,
            egg_id,
            constraints,
            failover,
        })
    }
}

/// The `eggConfig` of a server created from the library's egg `id` with the request's
/// `image`, `startup`, `environment`, `ports` and `limits`.
fn from_egg(api: &Api, id: &str, obj: &mut Map<String, Value>) -> Result<Value, ApiError> {
    let rec = api
        .store
        .egg(id)
        .ok_or_else(|| refused(ErrorCode::NotFound, format!("no egg `{id}` on this panel")))?;
    let mut text = |k: &str| -> Result<Option<String>, ApiError> {
        match obj.remove(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(refused(
                ErrorCode::ConfigInvalid,
                format!("{k} must be a string"),
            )),
        }
    };
    let image = text("image")?;
    let startup = text("startup")?;
    let environment = match obj.remove("environment") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(refused(
                ErrorCode::ConfigInvalid,
                "environment must be an object",
            ));
        }
    };
    let req = eggs::FromEgg {
        image,
        startup,
        environment,
        ports: obj.remove("ports").filter(|v| !v.is_null()),
        limits: obj.remove("limits").filter(|v| !v.is_null()),
    };
    Ok(eggs::egg_config(&rec, &req)?)
}

/// `POST /api/servers` (admin).
pub(super) async fn create(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let CreateBody {
        agent_id,
        server_id,
        owner_id,
        egg_value,
        egg_id,
        constraints,
        failover,
    } = CreateBody::parse(&api, &req)?;
    // Typed decode of the egg from its own text, so that shape errors are CONFIG_INVALID.
    let egg_text = egg_value.to_string();
    let egg: EggConfig<'_> = serde_json::from_str(&egg_text)
        .map_err(|e| refused(ErrorCode::ConfigInvalid, format!("eggConfig: {e}")))?;
    let valid = validate::egg(&egg)?;
    if let Some(a) = &agent_id {
        validate::id(IdKind::Agent, a)?;
        if api.store.agent(a).is_none() {
            return Err(refused(ErrorCode::NotFound, format!("no agent `{a}`")));
        }
        if !api.hub.is_online(a) {
            return Err(refused(
                ErrorCode::AgentOffline,
                format!("agent {a} is not connected"),
            ));
        }
    }
    let server_id = server_id.unwrap_or_else(new_server_id);
    validate::id(IdKind::Server, &server_id)?;
    let need = Need {
        memory: valid.limits.memory.0,
        cpu: u64::from(valid.limits.cpu.0),
        ports: valid.ports.iter().map(|p| (p.host, p.protocol)).collect(),
        constraints,
    };

    // Place and record in one critical section (on a blocking thread: it commits).
    let rec = {
        let api = api.clone();
        let placing = Placing {
            server_id,
            agent_id,
            egg: egg_value,
            egg_id,
            owner: owner_id.clone(),
            need,
        };
        blocking(move || placing::place_and_record(&api, placing)).await?
    };
    if let Some(o) = &owner_id {
        api.rescope(o);
    }

    let action = Action::CreateServer(CreateServer {
        server_id: Cow::Owned(rec.server_id.clone()),
        egg_config: Box::new(egg.into_owned()),
        skip_install: false,
    });
    let result = api.hub.command(&rec.agent_id, None, action).await;
    // Forgotten only when the agent surely did nothing: it refused, or never got the command.
    let forget =
        matches!(&result, Ok(r) if !r.success) || matches!(result, Err(HubError::Offline(_)));
    if forget {
        let store = api.store.clone();
        let id = rec.server_id.clone();
        blocking(move || store.remove_server(&id)).await?;
        // The owner's live sockets were indexed for it: not any more.
        if let Some(o) = &owner_id {
            api.rescope(o);
        }
    }
    let r = result?;
    if !r.success {
        return Ok(agent_answer(&r).into());
    }
    let rec = if failover {
        super::access::set_failover(&api, &rec.server_id, true).await?;
        api.store.server(&rec.server_id).unwrap_or(rec)
    } else {
        rec
    };
    Ok(Response::json(
        200,
        &json!({
            "success": true,
            "server": server_json(&api, &rec, Perms::ALL),
            "data": r.data,
        }),
    )
    .into())
}

/// A server as the API shows it, with its owner, the caller's `permissions` on it, its
/// last-known `status` (extension; `null` until its agent said one since the panel started)
/// and its latest `resources` while they are fresh (extension; else `null`).
pub(super) fn server_json(api: &Api, s: &ServerRecord, perms: Perms) -> Value {
    let seen = api.nodes.statuses.get(&s.server_id);
    let figures = api.nodes.history.server_now(&s.server_id, unix_now());
    json!({
        "serverId": s.server_id,
        "agentId": s.agent_id,
        "desiredState": s.desired_state,
        "agentOnline": api.hub.is_online(&s.agent_id),
        "createdAt": format_rfc3339(s.created_at),
        "eggId": s.egg_id,
        "eggConfig": s.egg_config,
        "ownerId": api.store.access(&s.server_id).owner_id,
        "permissions": perms.names(),
        "epoch": s.epoch,
        "status": seen.map(|x| x.status.as_str()),
        "statusAt": seen.map(|x| format_rfc3339(x.at)),
        "resources": figures.map(|f| json!({
            "cpu": f.cpu,
            "memory": f.memory,
            "disk": f.disk,
            "at": format_rfc3339(f.at),
        })),
        "transfer": s.moving.as_ref().map(|m| json!({
            "phase": m.phase,
            "otherAgentId": s.handover,
            "wasRunning": m.was_running,
        })),
        "failover": s.failover.enabled,
        "quarantined": s.failover.quarantined.iter().map(|q| json!({
            "agentId": q.agent_id,
            "epoch": q.epoch,
            "at": format_rfc3339(q.at),
            "path": q.path,
        })).collect::<Vec<_>>(),
        "staleCopies": s.failover.stale,
    })
}

/// `GET /api/servers`: the servers the caller has any access to.
pub(super) async fn list(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let who = caller.who()?;
    let servers: Vec<Value> = api
        .store
        .servers()
        .iter()
        .filter_map(|s| {
            let perms = who.perms_on(&api.store, &s.server_id);
            (!perms.is_empty()).then(|| server_json(&api, s, perms))
        })
        .collect();
    Ok(Response::json(200, &json!({"success": true, "servers": servers})).into())
}

/// Sends `action` about the server in the path and answers with the agent's reply; on
/// success, records `desired` (durably) first.
pub(super) async fn relay(
    api: &Api,
    rec: &ServerRecord,
    action: Action<'static>,
    desired: Option<DesiredState>,
) -> Result<Reply, ApiError> {
    let r = api
        .hub
        .command(&rec.agent_id, Some(&rec.server_id), action)
        .await?;
    if let (true, Some(state)) = (r.success, desired) {
        let store = api.store.clone();
        let id = rec.server_id.clone();
        blocking(move || store.set_desired_state(&id, state)).await?;
    }
    Ok(agent_answer(&r).into())
}

/// `GET /api/servers/{id}` (view): `get_status` (its status is kept as the last-known one,
/// its player count for `/metrics`).
pub(super) async fn status(
    api: Arc<Api>,
    _req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let r = api
        .hub
        .command(&rec.agent_id, Some(&rec.server_id), Action::GetStatus)
        .await?;
    let status = r
        .data
        .as_ref()
        .and_then(|d| ServerState::deserialize(d.get("status")?).ok());
    if let Some(st) = status.filter(|_| r.success) {
        api.nodes.statuses.set(&rec.server_id, st, unix_now());
    }
    let online = r
        .data
        .as_ref()
        .and_then(|d| d.get("players")?.get("online")?.as_u64());
    if let Some(n) = online.filter(|_| r.success) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        api.nodes.history.set_players(&rec.server_id, n);
    }
    Ok(agent_answer(&r).into())
}

/// `GET /api/servers/{id}/stats?range=1h|24h` (view): the server's resource history,
/// `{"t","cpu","memory","disk","networkRx","networkTx"}` points (cpu in percent of one
/// core, memory and disk in bytes, network in bytes/s).
pub(super) async fn stats(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let range = super::agents::stats_range(&req)?;
    let points = api
        .nodes
        .history
        .points(Kind::Server, &rec.server_id, range, unix_now());
    Ok(Response::json(200, &json!({"success": true, "points": points})).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerBody {
    action: String,
    #[serde(default)]
    signal: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// Longest stop timeout accepted (seconds).
const MAX_STOP_TIMEOUT: u64 = 3600;

/// `POST /api/servers/{id}/power` (admin).
pub(super) async fn power(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let body: PowerBody = body(&req)?;
    let signal = match body.signal.as_deref().map(validate::signal) {
        None => None,
        Some(checked) => Some(Cow::Borrowed(checked?.0)),
    };
    if body.timeout.is_some_and(|t| t > MAX_STOP_TIMEOUT) {
        return Err(refused(
            ErrorCode::InvalidMessage,
            format!("timeout must be at most {MAX_STOP_TIMEOUT} seconds"),
        ));
    }
    let stop = (signal.is_some() || body.timeout.is_some()).then(|| StopServer {
        signal: signal.clone(),
        timeout: body.timeout,
    });
    let (action, desired) = match body.action.as_str() {
        "start" => (Action::StartServer, DesiredState::Running),
        "stop" => (Action::StopServer(stop), DesiredState::Stopped),
        "restart" => (Action::RestartServer(stop), DesiredState::Running),
        "kill" => (
            Action::KillServer(signal.map(|s| KillServer { signal: Some(s) })),
            DesiredState::Stopped,
        ),
        other => {
            return Err(refused(
                ErrorCode::UnknownAction,
                format!("action `{other}` is not one of start, stop, restart, kill"),
            ));
        }
    };
    // Before a move's commit a copy may run on the target: no second one on the source.
    if rec.move_uncommitted() && desired == DesiredState::Running {
        return Err(refused(
            ErrorCode::Conflict,
            format!(
                "server {} is being moved between agents; start it once the transfer ends",
                rec.server_id
            ),
        ));
    }
    relay(&api, rec, action, Some(desired)).await
}

/// `POST /api/servers/{id}/reinstall` (admin): `reinstall_server` (the egg's install script
/// again; the server must be stopped).
pub(super) async fn reinstall(
    api: Arc<Api>,
    _req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    relay(&api, rec, Action::ReinstallServer, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleBody {
    command: String,
}

/// `POST /api/servers/{id}/command` (admin): one console line.
pub(super) async fn console(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let body: ConsoleBody = body(&req)?;
    validate::console_line(&body.command)?;
    let action = Action::SendCommand(SendCommand {
        command: Cow::Owned(body.command),
    });
    relay(&api, rec, action, None).await
}

/// `GET /api/servers/{id}/logs[?lines=N]` (admin): the last console lines the agent kept
/// (`get_logs`; 150 by default, at most 1000), as `{"success":true,"lines":[…]}`.
pub(super) async fn logs(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let lines = match req.query_param("lines") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| refused(ErrorCode::InvalidMessage, "lines: must be 1 to 1000"))?,
        ),
    };
    validate::log_lines(lines)?;
    let r = api
        .hub
        .command(
            &rec.agent_id,
            Some(&rec.server_id),
            Action::GetLogs(Some(GetLogs { lines })),
        )
        .await?;
    if !r.success {
        return Ok(agent_answer(&r).into());
    }
    let data: LogLines = r.data_as().map_err(|e| {
        refused(
            ErrorCode::InternalError,
            format!("the agent's get_logs answer is malformed: {e}"),
        )
    })?;
    Ok(Response::json(200, &json!({"success": true, "lines": data.lines})).into())
}

/// The `path` query parameter, validated (`INVALID_PATH`); `default` when absent.
pub(super) fn path_param(req: &Request, default: Option<&str>) -> Result<String, ApiError> {
    let path = match (req.query_param("path"), default) {
        (Some(p), _) => p,
        (None, Some(d)) => d.to_owned(),
        (None, None) => {
            return Err(refused(
                ErrorCode::InvalidPath,
                "the `path` query parameter is required",
            ));
        }
    };
    validate::server_path(&path)?;
    Ok(path)
}

/// `GET /api/servers/{id}/files/content?path=P` (admin).
pub(super) async fn get_file(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, None)?;
    let action = Action::GetFile(PathPayload {
        path: Cow::Owned(path),
    });
    relay(&api, rec, action, None).await
}

/// Body of `PUT /api/servers/{id}/files/content?path=P`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    content: String,
    #[serde(default)]
    encoding: ContentEncoding,
}

/// `PUT /api/servers/{id}/files/content?path=P` (admin), body
/// `{"content": "...", "encoding"?: "utf8"|"base64"}`: sends `write_file`.
pub(super) async fn write_file(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, None)?;
    let body: WriteBody = body(&req)?;
    let action = Action::WriteFile(WriteFile {
        path: Cow::Owned(path),
        content: Cow::Owned(body.content),
        encoding: body.encoding,
    });
    relay(&api, rec, action, None).await
}

/// `DELETE /api/servers/{id}[?purge=true][&force=true]` (admin): `delete_server`, then the
/// record goes, and its backups with it. `force=true` forgets the server even if its agent
/// is gone or refuses. Refused (`BUSY`) while a backup, restore or transfer runs, and
/// (`CONFLICT`, unless `force`) while an interrupted transfer is being recovered.
pub(super) async fn delete(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let flag = |k: &str| {
        req.query_param(k)
            .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
    };
    let (purge, force) = (flag("purge"), flag("force"));
    let _busy = super::backup_run::BusyGuard::take(&api, &rec.server_id)?;
    if rec.in_transfer() && !force {
        return Err(refused(
            ErrorCode::Conflict,
            format!(
                "server {} is between two agents (an interrupted transfer is being recovered); \
                 retry later, or force=true to forget it (a copy may stay on either agent)",
                rec.server_id
            ),
        ));
    }
    let action = Action::DeleteServer(Some(DeleteServer { purge }));
    let result = api
        .hub
        .command(&rec.agent_id, Some(&rec.server_id), action)
        .await;
    // An agent that does not know the server has nothing left to delete (a create lost
    // with the connection may never have reached it).
    let ok = matches!(&result, Ok(r) if r.success
        || r.error.as_ref().is_some_and(|e| e.code == ErrorCode::ServerNotFound.as_str()));
    if ok || force {
        let access = api.store.access(&rec.server_id);
        let store = api.store.clone();
        let id = rec.server_id.clone();
        blocking(move || store.remove_server(&id)).await?;
        super::backup_sweep::forget_server(&api, &rec.server_id).await?;
        api.nodes.history.forget(Kind::Server, &rec.server_id);
        api.nodes.statuses.forget(&rec.server_id);
        for uid in access.owner_id.iter().chain(access.subusers.keys()) {
            api.rescope(uid);
        }
        return Ok(Response::json(200, &json!({"success": true})).into());
    }
    Ok(agent_answer(&result?).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn generated_server_ids_are_valid() {
        let mut seen = HashMap::new();
        for _ in 0..100 {
            let id = new_server_id();
            validate::id(IdKind::Server, &id).unwrap();
            assert!(seen.insert(id, ()).is_none());
        }
    }
}
