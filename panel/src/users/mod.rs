//! People: users, their sessions and API keys, login throttling, rights on servers, and
//! who is calling ([`Principal`]). Storage is in `crate::store` (users, sessions, api_keys,
//! reg_tokens, access); this module holds the rules.
//!
//! - Sessions: a random 256-bit id in the `ctrl_session` cookie; the store keeps only its
//!   SHA-256. A session ends after [`SessionPolicy::idle`] without use or
//!   [`SessionPolicy::absolute`] after login, at logout, at a password change (the other
//!   sessions) and when the user is deleted.
//! - API keys: `ck_<id>_<secret>` bearer tokens; the store keeps the id and the secret's
//!   SHA-256.
//! - Login: failures are counted per client IP and per account name; over either budget the
//!   answer is `429 RATE_LIMITED` before any hashing.

pub mod cli;
pub mod password;
pub mod principal;
pub mod rights;
pub mod secret;

pub use principal::{Principal, UserPrincipal, Via};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::time::unix_now;

use crate::auth::{Auth, AuthError};
use crate::http::Request;
use crate::ratelimit::KeyedLimiter;
use crate::store::{SessionRecord, Store, StoreError, UserRecord};
use password::{Busy, Hasher};

/// The session cookie's name.
pub const COOKIE: &str = "ctrl_session";
/// Prefix of API key tokens.
pub const KEY_PREFIX: &str = "ck_";
/// Most distinct IPs / account names the login throttle tracks.
const MAX_THROTTLE_KEYS: usize = 100_000;
/// Failed logins per client IP: a burst, then one per this many seconds.
const IP_BURST: f64 = 10.0;
const IP_EVERY_SECS: f64 = 6.0;
/// Failed logins per account name.
const ACCOUNT_BURST: f64 = 10.0;
const ACCOUNT_EVERY_SECS: f64 = 30.0;

/// When sessions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Without a request for this long.
    pub idle: Duration,
    /// This long after login, whatever happens.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(12 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl SessionPolicy {
    pub fn expired(&self, s: &SessionRecord, now: u64) -> bool {
        now.saturating_sub(s.last_seen) >= self.idle.as_secs()
            || now.saturating_sub(s.created_at) >= self.absolute.as_secs()
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: one answer for both.
    #[error("wrong user name or password")]
    Failed,
    #[error("too many failed logins; wait a minute")]
    Throttled,
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The users service.
pub struct Users {
    store: Arc<Store>,
    pub hasher: Hasher,
    pub policy: SessionPolicy,
    ip_failures: KeyedLimiter<IpAddr>,
    account_failures: KeyedLimiter<String>,
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

impl Users {
    pub fn new(store: Arc<Store>, policy: SessionPolicy) -> Users {
        Users {
            store,
            hasher: Hasher::default(),
            policy,
            ip_failures: KeyedLimiter::new(1.0 / IP_EVERY_SECS, IP_BURST, MAX_THROTTLE_KEYS),
            account_failures: KeyedLimiter::new(
                1.0 / ACCOUNT_EVERY_SECS,
                ACCOUNT_BURST,
                MAX_THROTTLE_KEYS,
            ),
        }
    }

    /// The caller, from `Authorization: Bearer` (admin token or API key) or the session
    /// cookie; `None` when the request carries neither. A credential that is presented but
    /// not valid is an error (401), never "anonymous".
    pub fn resolve(&self, auth: &Auth, req: &Request) -> Result<Option<Principal>, AuthError> {
        if let Some(b) = req.bearer() {
            if let Some(rest) = b.strip_prefix(KEY_PREFIX) {
                return self.by_key(rest).map(Some);
            }
            auth.check_admin(Some(b))?;
            return Ok(Some(Principal::AdminToken));
        }
        match cookie(req, COOKIE) {
            Some(id) => self.by_session(id).map(Some),
            None => Ok(None),
        }
    }

    fn user_principal(&self, user_id: &str, via: Via) -> Result<Principal, AuthError> {
        let u = self.store.user(user_id).ok_or(AuthError::BadCredentials)?;
        Ok(Principal::User(UserPrincipal {
            id: u.id,
            name: u.name,
            admin: u.admin,
            via,
        }))
    }

    fn by_key(&self, token: &str) -> Result<Principal, AuthError> {
        let (id, secret) = token.split_once('_').ok_or(AuthError::BadCredentials)?;
        let key = self
            .store
            .api_key(&format!("k-{id}"))
            .ok_or(AuthError::BadCredentials)?;
        if !secret::same(&secret::digest(secret), &key.secret_sha256) {
            return Err(AuthError::BadCredentials);
        }
        self.user_principal(&key.user_id, Via::Key(key.id))
    }

    fn by_session(&self, id: &str) -> Result<Principal, AuthError> {
        if id.len() > 128 {
            return Err(AuthError::BadCredentials);
        }
        let key = secret::digest(id);
        let s = self.store.session(&key).ok_or(AuthError::BadCredentials)?;
        if self.policy.expired(&s, unix_now()) {
            return Err(AuthError::BadCredentials);
        }
        self.user_principal(&s.user_id, Via::Session(key))
    }

    /// Checks a name and password (the same work and answer for an unknown name and a
    /// wrong password); failures count against the client IP and the account name.
    pub async fn authenticate(
        &self,
        ip: IpAddr,
        name: &str,
        password: String,
    ) -> Result<UserRecord, LoginError> {
        let now = Instant::now();
        let account = name.to_owned();
        if !self.ip_failures.allows(&ip, now) || !self.account_failures.allows(&account, now) {
            return Err(LoginError::Throttled);
        }
        let user = self.store.user_by_name(name);
        let ok = password.len() <= password::MAX_PASSWORD
            && self
                .hasher
                .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
                .await?;
        match (ok, user) {
            (true, Some(u)) => Ok(u),
            _ => {
                self.ip_failures.check(&ip, now);
                self.account_failures.check(&account, now);
                Err(LoginError::Failed)
            }
        }
    }

    /// Opens a session for `user_id`: the session id for the cookie (only its hash is
    /// stored). Expired sessions are pruned by `Api::sweep_sessions`.
    pub async fn open_session(&self, user_id: &str) -> Result<String, StoreError> {
        let id = secret::token(32);
        let key = secret::digest(&id);
        let store = self.store.clone();
        let user_id = user_id.to_owned();
        smol::unblock(move || {
            let t = unix_now();
            store.insert_session(
                &key,
                &SessionRecord {
                    user_id,
                    created_at: t,
                    last_seen: t,
                },
            )
        })
        .await?;
        Ok(id)
    }

    /// The `Set-Cookie` value for a new session.
    pub fn session_cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
            self.policy.absolute.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
    }
}

/// Whether `name` is a valid user name: 1 to 64 ASCII letters, digits, `.`, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether a cookie-authenticated request comes from the panel's own pages: a same-origin
/// `Origin` (the `Host` it was sent to, or `base_url`), or `Sec-Fetch-Site: same-origin`.
pub fn same_origin(req: &Request, base_url: &str) -> bool {
    if req
        .header("sec-fetch-site")
        .is_some_and(|v| v.eq_ignore_ascii_case("same-origin"))
    {
        return true;
    }
    let Some(origin) = req.header("origin") else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    origin.eq_ignore_ascii_case(base_url.trim_end_matches('/'))
        || req
            .header("host")
            .is_some_and(|h| origin.eq_ignore_ascii_case(&format!("https://{h}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Post,
            path: "/api/servers".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            params: Vec::new(),
            stream: None,
        }
    }

    #[test]
    fn same_origin_rules() {
        let base = "https://panel.example:8443";
        assert!(same_origin(
            &req(&[("sec-fetch-site", "same-origin")]),
            base
        ));
        assert!(!same_origin(
            &req(&[("sec-fetch-site", "cross-site")]),
            base
        ));
        assert!(same_origin(
            &req(&[("origin", "https://panel.example:8443")]),
            base
        ));
        assert!(same_origin(
            &req(&[
                ("origin", "https://10.0.0.5:8443"),
                ("host", "10.0.0.5:8443")
            ]),
            base
        ));
        assert!(!same_origin(
            &req(&[
                ("origin", "https://evil.example"),
                ("host", "10.0.0.5:8443")
            ]),
            base
        ));
        assert!(!same_origin(
            &req(&[
                ("origin", "http://10.0.0.5:8443"),
                ("host", "10.0.0.5:8443")
            ]),
            base
        ));
        assert!(!same_origin(&req(&[("origin", "null")]), base));
        assert!(!same_origin(&req(&[]), base));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let r = req(&[("cookie", "a=1; ctrl_session=abc ; b=2")]);
        assert_eq!(cookie(&r, COOKIE), Some("abc"));
        assert_eq!(cookie(&req(&[("cookie", "ctrl_session=")]), COOKIE), None);
        assert_eq!(cookie(&req(&[]), COOKIE), None);
    }

    #[test]
    fn sessions_expire_idle_or_absolute() {
        let p = SessionPolicy {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(100),
        };
        let s = |created_at, last_seen| SessionRecord {
            user_id: "u".into(),
            created_at,
            last_seen,
        };
        assert!(!p.expired(&s(0, 95), 99));
        assert!(p.expired(&s(0, 95), 105));
        assert!(p.expired(&s(0, 99), 100));
    }
}
