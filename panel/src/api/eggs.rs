//! The egg library (admin): `POST /api/eggs` (a Pterodactyl/Pelican export as it is, our own
//! egg, or an `eggConfig`), `GET /api/eggs`, `GET`/`DELETE /api/eggs/{id}`. The import and
//! its checks are `crate::eggs`; records live in `store::eggs`.

use serde_json::json;
use std::sync::Arc;

use proto::ErrorCode;
use proto::time::unix_now;

use super::{Api, ApiError, Caller, blocking};
use crate::eggs;
use crate::http::{Reply, Request, Response};
use crate::store::EggRecord;

fn new_egg_id() -> String {
    let r: String = proto::jwt::random_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("egg-{}", r.to_ascii_lowercase())
}

impl From<eggs::Refused> for ApiError {
    fn from(r: eggs::Refused) -> ApiError {
        ApiError::new(r.code, r.message)
    }
}

/// The egg named in the path (the route gate has checked the caller is an admin).
fn admin_egg(api: &Api, req: &Request) -> Result<EggRecord, ApiError> {
    let id = req.param("id").unwrap_or_default();
    api.store
        .egg(id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no egg `{id}` on this panel")))
}

/// `POST /api/eggs` (admin): the body is the egg document itself (JSON or YAML).
pub(super) async fn create(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let imported = eggs::import(&req.body)?;
    let rec = imported.into_record(new_egg_id(), unix_now());
    let stored = rec.clone();
    let store = api.store.clone();
    if !blocking(move || store.insert_egg(&stored)).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "egg id collision; retry",
        ));
    }
    log::info!("egg {} imported ({}, {})", rec.id, rec.egg.name, rec.source);
    Ok(Response::json(
        200,
        &json!({"success": true, "egg": eggs::to_json(&rec, true), "warnings": rec.warnings}),
    )
    .into())
}

/// `GET /api/eggs` (admin): summaries (no scripts or config files).
pub(super) async fn list(api: Arc<Api>, _req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let eggs: Vec<_> = api
        .store
        .eggs()
        .iter()
        .map(|e| eggs::to_json(e, false))
        .collect();
    Ok(Response::json(200, &json!({"success": true, "eggs": eggs})).into())
}

/// `GET /api/eggs/{id}` (admin): the whole egg.
pub(super) async fn get(api: Arc<Api>, req: Request, _caller: Caller) -> Result<Reply, ApiError> {
    let rec = admin_egg(&api, &req)?;
    Ok(Response::json(
        200,
        &json!({"success": true, "egg": eggs::to_json(&rec, true)}),
    )
    .into())
}

/// `DELETE /api/eggs/{id}` (admin). Servers created from it keep running.
pub(super) async fn delete(
    api: Arc<Api>,
    req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = admin_egg(&api, &req)?;
    let store = api.store.clone();
    let id = rec.id.clone();
    blocking(move || store.remove_egg(&id)).await?;
    Ok(Response::json(200, &json!({"success": true})).into())
}
