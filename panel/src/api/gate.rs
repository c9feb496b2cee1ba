//! The one place where a request's rights are checked: every route declares the [`Need`]
//! it has, and [`gate`] resolves the caller once, applies the API rate limit, the
//! same-origin rule for cookie-authenticated requests, and the right — before the handler
//! runs. A server the caller has no access to is `404` (its existence is not leaked); a
//! right the caller lacks is `403 PERMISSION_DENIED`.

use std::time::Instant;

use proto::ErrorCode;
use proto::time::unix_now;

use super::{Api, ApiError, blocking};
use crate::auth::AuthError;
use crate::http::{Method, Request};
use crate::store::{ServerRecord, TOUCH_EVERY};
use crate::users::rights::{Perms, ServerRight};
use crate::users::{Principal, Via, same_origin, secret};

/// Prefix of agent registration tokens.
pub const REG_TOKEN_PREFIX: &str = "rt_";

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the handler checks its own credential (refresh token, agent token, login)
    /// and its own rate limit.
    Open,
    /// Any authenticated caller.
    Login,
    /// The admin token or an admin user.
    Admin,
    /// [`Need::Admin`] without the API rate limit (monitoring must keep working).
    Monitor,
    /// An admin, or a registration token (consumed).
    Register,
    /// Any authenticated caller, or a `?ticket=` from `POST /api/events/ticket`.
    Events,
    /// A right on the server named by the path's `{id}`.
    Server(ServerRight),
}

/// The checked caller of a request.
#[derive(Debug, Default)]
pub struct Caller {
    /// `None` on [`Need::Open`] routes and for a registration token.
    pub principal: Option<Principal>,
    /// The server in the path, on [`Need::Server`] routes.
    server: Option<ServerRecord>,
    /// The caller's rights on that server.
    pub perms: Perms,
}

impl Caller {
    /// The authenticated caller (a route that needs one always has it).
    pub fn who(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or(ApiError::Auth(AuthError::BadCredentials))
    }

    /// The server of a [`Need::Server`] route.
    pub fn server(&self) -> Result<&ServerRecord, ApiError> {
        self.server
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::InternalError, "route has no server"))
    }
}

fn denied(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PermissionDenied,
        format!("{what} requires a right you do not have"),
    )
}

fn changes_state(req: &Request) -> bool {
    !matches!(req.method, Method::Get | Method::Head | Method::Options)
}

/// Checks `need` for `req`.
pub async fn gate(api: &Api, req: &Request, need: Need) -> Result<Caller, ApiError> {
    match need {
        Need::Open => return Ok(Caller::default()),
        Need::Monitor => {}
        _ => api.limit(req)?,
    }
    if need == Need::Register
        && let Some(t) = req.bearer().filter(|b| b.starts_with(REG_TOKEN_PREFIX))
    {
        let (store, key) = (api.store.clone(), secret::digest(t));
        return if blocking(move || store.take_reg_token(&key, unix_now())).await? {
            Ok(Caller::default())
        } else {
            Err(AuthError::BadCredentials.into())
        };
    }
    let principal = match api.users.resolve(&api.auth, req)? {
        Some(p) => p,
        None => match req.query_param("ticket") {
            Some(t) if need == Need::Events => api.auth.redeem_ticket(&t, Instant::now())?,
            _ => return Err(AuthError::BadCredentials.into()),
        },
    };
    // A browser sends cookies with cross-site requests it was tricked into (and with
    // WebSocket handshakes): state changes and sockets must come from our own pages.
    if principal.by_cookie()
        && (changes_state(req) || need == Need::Events)
        && !same_origin(req, &api.base_url)
    {
        return Err(ApiError::CrossOrigin);
    }
    touch_session(api, &principal).await?;
    match need {
        Need::Admin | Need::Monitor | Need::Register if !principal.is_admin() => {
            Err(denied(&format!("{} {}", req.method, req.path)))
        }
        Need::Server(right) => {
            let id = req.param("id").unwrap_or_default();
            let not_found = || {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("no server `{id}` on this panel"),
                )
            };
            let rec = api.store.server(id).ok_or_else(not_found)?;
            let perms = principal.perms_on(&api.store, id);
            if perms.is_empty() {
                return Err(not_found());
            }
            if !perms.has(right) {
                return Err(denied(&format!("{} {}", req.method, req.path)));
            }
            Ok(Caller {
                principal: Some(principal),
                server: Some(rec),
                perms,
            })
        }
        _ => Ok(Caller {
            principal: Some(principal),
            ..Caller::default()
        }),
    }
}

/// Records session activity for the idle expiry, durably at most once a minute.
async fn touch_session(api: &Api, who: &Principal) -> Result<(), ApiError> {
    let Some(Via::Session(key)) = who.user().map(|u| &u.via) else {
        return Ok(());
    };
    let now = unix_now();
    // Often enough that the idle limit is honoured to a quarter of itself.
    let every = TOUCH_EVERY.min(api.users.policy.idle.as_secs() / 4);
    let stale = api
        .store
        .session(key)
        .is_some_and(|s| now.saturating_sub(s.last_seen) >= every);
    if stale {
        let (store, key) = (api.store.clone(), key.clone());
        blocking(move || store.touch_session(&key, now, every)).await?;
    }
    Ok(())
}
