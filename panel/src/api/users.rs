//! Users (admin only): create, list, delete, reset a password.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use proto::ErrorCode;
use proto::time::unix_now;

use super::auth::{check_new_password, user_json};
use super::{Api, ApiError, Caller, blocking, body};
use crate::http::{Reply, Request, Response};
use crate::store::UserRecord;
use crate::users::{password, secret, valid_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    admin: bool,
}

/// The password to set: the one given (checked) or a generated one (returned to show once).
fn chosen_password(given: Option<String>) -> Result<(String, Option<String>), ApiError> {
    match given.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_new_password(&p)?;
            Ok((p, None))
        }
        None => {
            let p = password::generate();
            Ok((p.clone(), Some(p)))
        }
    }
}

/// `POST /api/users` `{"name","password"?,"admin"?}`.
pub(super) async fn create(api: Arc<Api>, req: Request, _: Caller) -> Result<Reply, ApiError> {
    let b: CreateBody = body(&req)?;
    if !valid_name(&b.name) {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "a user name has 1 to 64 letters, digits, dots, dashes or underscores",
        ));
    }
    if api.store.user_by_name(&b.name).is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("a user named `{}` exists", b.name),
        ));
    }
    let (pw, shown) = chosen_password(b.password)?;
    let rec = UserRecord {
        id: secret::id("u-"),
        name: b.name,
        admin: b.admin,
        password_hash: api.users.hasher.hash(pw).await?,
        created_at: unix_now(),
    };
    let (store, stored) = (api.store.clone(), rec.clone());
    if !blocking(move || store.insert_user(&stored)).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("a user named `{}` exists", rec.name),
        ));
    }
    log::info!("user {} ({}) created", rec.name, rec.id);
    let mut out = json!({"success": true, "user": user_json(&rec)});
    if let Some(p) = shown {
        out["password"] = json!(p);
    }
    Ok(Response::json(200, &out)
        .with_header("cache-control", "no-store")
        .into())
}

/// `GET /api/users`.
pub(super) async fn list(api: Arc<Api>, _: Request, _: Caller) -> Result<Reply, ApiError> {
    let users: Vec<Value> = api.store.users().iter().map(user_json).collect();
    Ok(Response::json(200, &json!({"success": true, "users": users})).into())
}

fn no_user(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no user `{id}`"))
}

/// `DELETE /api/users/{id}`: the user, their sessions, keys and server access go; servers
/// they own keep running without an owner. An admin cannot delete themself.
pub(super) async fn delete(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let id = req.param("id").unwrap_or_default().to_owned();
    if caller.who()?.user().is_some_and(|u| u.id == id) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "you cannot delete your own account",
        ));
    }
    let store = api.store.clone();
    let uid = id.clone();
    if !blocking(move || store.remove_user(&uid)).await? {
        return Err(no_user(&id));
    }
    api.rescope(&id);
    log::info!("user {id} deleted");
    Ok(Response::json(200, &json!({"success": true})).into())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[serde(default)]
    password: Option<String>,
}

/// `POST /api/users/{id}/password` `{"password"?}`: sets (or generates, shown once) a new
/// password; every session of the user ends.
pub(super) async fn reset_password(
    api: Arc<Api>,
    req: Request,
    _: Caller,
) -> Result<Reply, ApiError> {
    let id = req.param("id").unwrap_or_default().to_owned();
    if api.store.user(&id).is_none() {
        return Err(no_user(&id));
    }
    let b: ResetBody = if req.body.is_empty() {
        ResetBody::default()
    } else {
        body(&req)?
    };
    let (pw, shown) = chosen_password(b.password)?;
    let hash = api.users.hasher.hash(pw).await?;
    let (store, uid) = (api.store.clone(), id.clone());
    if !blocking(move || store.set_password_hash(&uid, hash, None)).await? {
        return Err(no_user(&id));
    }
    api.rescope(&id);
    let mut out = json!({"success": true});
    if let Some(p) = shown {
        out["password"] = json!(p);
    }
    Ok(Response::json(200, &out)
        .with_header("cache-control", "no-store")
        .into())
}
