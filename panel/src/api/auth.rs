//! The caller's own account: login, logout, who am I, password change, API keys.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use proto::ErrorCode;
use proto::time::{format_rfc3339, unix_now};

use super::{Api, ApiError, Caller, blocking, body};
use crate::http::{Reply, Request, Response};
use crate::store::{ApiKeyRecord, UserRecord};
use crate::users::password::{MAX_PASSWORD, MIN_PASSWORD};
use crate::users::{KEY_PREFIX, Principal, UserPrincipal, Users, Via, same_origin, secret};

/// Most API keys one user may hold.
const MAX_KEYS_PER_USER: usize = 100;

/// `{"id","name","admin"}` of a user.
pub(super) fn user_json(u: &UserRecord) -> Value {
    json!({"id": u.id, "name": u.name, "admin": u.admin, "createdAt": format_rfc3339(u.created_at)})
}

/// The caller as a user; API keys and passwords belong to users, not to the admin token.
fn as_user<'a>(caller: &'a Caller, what: &str) -> Result<&'a UserPrincipal, ApiError> {
    caller.who()?.user().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidMessage,
            format!("{what} belongs to a user; the admin token has none"),
        )
    })
}

/// A new password's length, checked before any hashing.
pub(super) fn check_new_password(p: &str) -> Result<(), ApiError> {
    if p.len() < MIN_PASSWORD || p.len() > MAX_PASSWORD {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} bytes"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/auth/login` `{"username","password"}`: a session cookie.
pub(super) async fn login(api: Arc<Api>, req: Request, _: Caller) -> Result<Reply, ApiError> {
    api.limit(&req)?;
    // A page elsewhere must not log the browser into an account of its choosing.
    if req.header("origin").is_some() && !same_origin(&req, &api.base_url) {
        return Err(ApiError::CrossOrigin);
    }
    let b: LoginBody = body(&req)?;
    let user = api
        .users
        .authenticate(req.peer.ip(), &b.username, b.password)
        .await?;
    let id = api.users.open_session(&user.id).await?;
    Ok(
        Response::json(200, &json!({"success": true, "user": user_json(&user)}))
            .with_header("set-cookie", &api.users.session_cookie(&id))
            .with_header("cache-control", "no-store")
            .into(),
    )
}

/// `POST /api/auth/logout`: ends the caller's session (and its live sockets).
pub(super) async fn logout(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    if let Some(UserPrincipal {
        id,
        via: Via::Session(key),
        ..
    }) = caller.who()?.user()
    {
        let (store, key) = (api.store.clone(), key.clone());
        blocking(move || store.remove_session(&key)).await?;
        api.rescope(id);
    }
    Ok(Response::json(200, &json!({"success": true}))
        .with_header("set-cookie", &Users::clear_cookie())
        .into())
}

/// `GET /api/auth/me`.
pub(super) async fn me(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let user = match caller.who()? {
        Principal::AdminToken => json!({"id": null, "name": "admin token", "admin": true}),
        Principal::User(u) => match api.store.user(&u.id) {
            Some(rec) => user_json(&rec),
            None => return Err(crate::auth::AuthError::BadCredentials.into()),
        },
    };
    Ok(Response::json(200, &json!({"success": true, "user": user})).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

/// `POST /api/auth/password` `{"current","new"}`: the caller's other sessions end.
pub(super) async fn password(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let me = as_user(&caller, "a password")?;
    let b: PasswordBody = body(&req)?;
    check_new_password(&b.new)?;
    api.users
        .authenticate(req.peer.ip(), &me.name, b.current)
        .await
        .map_err(|e| match e {
            crate::users::LoginError::Failed => {
                ApiError::new(ErrorCode::PermissionDenied, "the current password is wrong")
            }
            other => other.into(),
        })?;
    let hash = api.users.hasher.hash(b.new).await?;
    let keep = match &me.via {
        Via::Session(k) => Some(k.clone()),
        Via::Key(_) => None,
    };
    let (store, id) = (api.store.clone(), me.id.clone());
    blocking(move || store.set_password_hash(&id, hash, keep.as_deref())).await?;
    api.rescope(&me.id);
    Ok(Response::json(200, &json!({"success": true})).into())
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({"id": k.id, "name": k.name, "createdAt": format_rfc3339(k.created_at)})
}

/// `GET /api/auth/keys`: the caller's keys (never their tokens).
pub(super) async fn list_keys(
    api: Arc<Api>,
    _: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let me = as_user(&caller, "an API key")?;
    let keys: Vec<Value> = api.store.api_keys_of(&me.id).iter().map(key_json).collect();
    Ok(Response::json(200, &json!({"success": true, "keys": keys})).into())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    #[serde(default)]
    name: String,
}

/// `POST /api/auth/keys` `{"name"?}`: a new key; its token is in this answer only.
pub(super) async fn create_key(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let me = as_user(&caller, "an API key")?;
    let b: KeyBody = if req.body.is_empty() {
        KeyBody::default()
    } else {
        body(&req)?
    };
    if b.name.len() > 100 {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "a key name has at most 100 bytes",
        ));
    }
    if api.store.api_keys_of(&me.id).len() >= MAX_KEYS_PER_USER {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("at most {MAX_KEYS_PER_USER} API keys per user; delete one first"),
        ));
    }
    let id = secret::id("k-");
    let secret_part = secret::token(32);
    let token = format!("{KEY_PREFIX}{}_{secret_part}", &id[2..]);
    let rec = ApiKeyRecord {
        id,
        user_id: me.id.clone(),
        secret_sha256: secret::digest(&secret_part),
        name: b.name,
        created_at: unix_now(),
    };
    let (store, stored) = (api.store.clone(), rec.clone());
    if !blocking(move || store.insert_api_key(&stored)).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "key id clash; try again",
        ));
    }
    let mut key = key_json(&rec);
    key["token"] = json!(token);
    Ok(Response::json(200, &json!({"success": true, "key": key}))
        .with_header("cache-control", "no-store")
        .into())
}

/// `DELETE /api/auth/keys/{id}`: revokes one of the caller's keys (admins: anyone's).
pub(super) async fn delete_key(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let who = caller.who()?;
    let id = req.param("id").unwrap_or_default();
    let key = api
        .store
        .api_key(id)
        .filter(|k| who.is_admin() || who.user().is_some_and(|u| u.id == k.user_id))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no API key `{id}`")))?;
    let (store, kid) = (api.store.clone(), key.id.clone());
    blocking(move || store.remove_api_key(&kid)).await?;
    api.rescope(&key.user_id);
    Ok(Response::json(200, &json!({"success": true})).into())
}
