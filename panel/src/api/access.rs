//! Who may use a server: `GET /api/servers/{id}/info` (the record with the caller's
//! rights), `PATCH /api/servers/{id}` (admin: `ownerId`, `failover`; other engineers'
//! fields join the same body), and the subusers `GET/PUT/DELETE /api/servers/{id}/users[/{userId}]` (owner
//! or admin). Every change is applied to the affected users' live event sockets.

use serde_json::{Map, Value, json};
use std::sync::Arc;

use proto::ErrorCode;

use super::servers::server_json;
use super::{Api, ApiError, Caller, blocking, body};
use crate::http::{Reply, Request, Response};
use crate::users::rights::Perm;

/// `GET /api/servers/{id}/info` (view): the stored record, `ownerId` and the caller's
/// `permissions`, without asking the agent.
pub(super) async fn info(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let server = server_json(&api, rec, caller.perms);
    Ok(Response::json(200, &json!({"success": true, "server": server})).into())
}

fn no_user(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no user `{id}`"))
}

/// The `ownerId` of a PATCH body: `Some(None)` clears it, `Some(Some(id))` sets it.
fn owner_field(obj: &mut Map<String, Value>) -> Result<Option<Option<String>>, ApiError> {
    match obj.remove("ownerId") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "ownerId must be a user id or null",
        )),
    }
}

/// The `failover` of a PATCH (or create) body.
pub(super) fn failover_field(obj: &mut Map<String, Value>) -> Result<Option<bool>, ApiError> {
    match obj.remove("failover") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "failover must be true or false",
        )),
    }
}

/// Records a server's `failover` flag and sends its node the new list (a node offline now
/// gets it on connection).
pub(super) async fn set_failover(api: &Api, server_id: &str, on: bool) -> Result<(), ApiError> {
    let (store, sid) = (api.store.clone(), server_id.to_owned());
    let agent = blocking(move || {
        store.update_server(&sid, |r| {
            r.failover.enabled = on;
            r.agent_id.clone()
        })
    })
    .await?;
    if let Some(agent) = agent {
        crate::failover::send_list(api, &agent).await;
    }
    Ok(())
}

/// `PATCH /api/servers/{id}` (admin) `{"ownerId"?: id|null, "failover"?: bool}`.
pub(super) async fn patch(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let id = rec.server_id.clone();
    let Value::Object(mut obj) = body(&req)? else {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "body must be a JSON object",
        ));
    };
    let owner = owner_field(&mut obj)?;
    let failover = failover_field(&mut obj)?;
    if let Some(k) = obj.keys().next() {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            format!("unknown field `{k}` (known: ownerId, failover)"),
        ));
    }
    if let Some(Some(uid)) = &owner
        && api.store.user(uid).is_none()
    {
        return Err(no_user(uid));
    }
    if let Some(new_owner) = owner {
        let (store, sid, set) = (api.store.clone(), id.clone(), new_owner.clone());
        let before = blocking(move || store.update_access(&sid, |a| a.owner_id = set)).await?;
        for uid in before.owner_id.iter().chain(new_owner.iter()) {
            api.rescope(uid);
        }
    }
    if let Some(on) = failover {
        set_failover(&api, &id, on).await?;
    }
    let rec = api.store.server(&id).unwrap_or_else(|| rec.clone());
    let server = server_json(&api, &rec, caller.perms);
    Ok(Response::json(200, &json!({"success": true, "server": server})).into())
}

fn subuser_json(api: &Api, user_id: &str, perms: &[Perm]) -> Value {
    json!({
        "userId": user_id,
        "name": api.store.user(user_id).map(|u| u.name),
        "permissions": perms.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
    })
}

/// `GET /api/servers/{id}/users` (owner or admin).
pub(super) async fn subusers(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let access = api.store.access(&rec.server_id);
    let users: Vec<Value> = access
        .subusers
        .iter()
        .map(|(uid, p)| subuser_json(&api, uid, p))
        .collect();
    Ok(Response::json(
        200,
        &json!({"success": true, "ownerId": access.owner_id, "users": users}),
    )
    .into())
}

/// The rights of a PUT body, checked and in canonical order.
fn permissions(v: &Value) -> Result<Vec<Perm>, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidMessage,
            "permissions must be a list drawn from console.read, console.write, power, \
             files.read, files.write",
        )
    };
    let list = v
        .get("permissions")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        out.push(p.as_str().and_then(Perm::parse).ok_or_else(bad)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `PUT /api/servers/{id}/users/{userId}` (owner or admin) `{"permissions":[...]}`.
pub(super) async fn put_subuser(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let uid = req.param("userId").unwrap_or_default().to_owned();
    let perms = permissions(&body::<Value>(&req)?)?;
    if api.store.user(&uid).is_none() {
        return Err(no_user(&uid));
    }
    if api.store.access(&rec.server_id).owner_id.as_deref() == Some(uid.as_str()) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "that user owns the server and holds every right",
        ));
    }
    let (store, sid, u, p) = (
        api.store.clone(),
        rec.server_id.clone(),
        uid.clone(),
        perms.clone(),
    );
    blocking(move || store.update_access(&sid, |a| drop(a.subusers.insert(u, p)))).await?;
    api.rescope(&uid);
    Ok(Response::json(
        200,
        &json!({"success": true, "user": subuser_json(&api, &uid, &perms)}),
    )
    .into())
}

/// `DELETE /api/servers/{id}/users/{userId}` (owner or admin).
pub(super) async fn delete_subuser(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let uid = req.param("userId").unwrap_or_default().to_owned();
    let (store, sid, u) = (api.store.clone(), rec.server_id.clone(), uid.clone());
    let before =
        blocking(move || store.update_access(&sid, |a| drop(a.subusers.remove(&u)))).await?;
    if !before.subusers.contains_key(&uid) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("`{uid}` is not a subuser of this server"),
        ));
    }
    api.rescope(&uid);
    Ok(Response::json(200, &json!({"success": true})).into())
}
