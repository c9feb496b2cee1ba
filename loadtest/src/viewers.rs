//! Console tabs as distinct users (`--filtered-subscribers N`, `--subscriber-auth`): for each
//! filtered subscriber loadtest creates a user of its own (`POST /api/users`, admin) and logs
//! it in as a browser does (`POST /api/auth/login` with the page's `Origin`, keeping the
//! `ctrl_session` cookie; with `--subscriber-auth key` it then trades the session for an API
//! key) — [`Setup::account`], before the crowd connects — and, once the servers exist, makes
//! it a subuser of exactly the one server its tab watches with `console.read`
//! (`PUT /api/servers/{id}/users/{userId}`, [`Setup::grant`]). The subscriber then opens
//! `/api/events[?serverId=]` with those credentials — the cookie plus `Origin`, as a page of
//! the panel's own origin sends them — so the panel routes each event by the user's rights
//! (and the filter). The users are deleted after the run (best effort, counted).
//!
//! Creating and logging in a user costs the panel two Argon2id hashes (19 MiB each, two
//! hashing threads, 32 queued), so the set-up runs a few users at a time and retries the
//! panel's `429` (hasher queue or `--admin-rate`) with a short backoff.

use std::sync::Arc;
use std::time::Duration;

use ctrl_io::http::{HttpConn, ReadOptions, head};
use ctrl_io::{ClientError, Rest, Url, connect_tls, with_deadline};

use crate::logins::{LoginUser, password};
use crate::stats::Errors;

/// How a filtered subscriber authenticates on `/api/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberAuth {
    /// Its own user's session cookie and the panel's `Origin` (a browser tab).
    Session,
    /// Its own user's API key (`Authorization: Bearer ck_…`).
    Key,
    /// The admin token (every subscriber the same caller; sees every server).
    Admin,
}

impl SubscriberAuth {
    pub fn parse(s: &str) -> Option<SubscriberAuth> {
        match s {
            "session" => Some(SubscriberAuth::Session),
            "key" => Some(SubscriberAuth::Key),
            "admin" => Some(SubscriberAuth::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberAuth::Session => "session",
            SubscriberAuth::Key => "key",
            SubscriberAuth::Admin => "admin",
        }
    }
}

/// Users set up at once (each costs the panel two Argon2id hashes; it hashes two at a time
/// and queues 32).
pub const SETUP_CONCURRENCY: usize = 8;
/// Attempts per request answered `429` before the viewer is given up.
const ATTEMPTS_ON_429: u32 = 20;
/// Deadline of one login or key request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// One filtered subscriber's user and the headers its socket presents.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: LoginUser,
    /// `(name, value)` headers for the `/api/events` upgrade.
    pub headers: Vec<(String, String)>,
}

/// What the set-up of one viewer needs.
pub struct Setup {
    pub rest: Arc<Rest>,
    pub admin_token: String,
    pub auth: SubscriberAuth,
    /// `https://host:port`: the panel's own origin.
    pub origin: String,
    pub url: Url,
    pub errors: Arc<Errors>,
}

/// An answer, with every header kept.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Setup {
    /// A request on a connection of its own with `headers` (the REST client sends only a
    /// bearer token; a browser's cookie and `Origin` need this).
    async fn browser(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let mut msg = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ctrl-loadtest\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.url.authority()
        );
        for (k, v) in headers {
            msg.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        msg.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut msg = msg.into_bytes();
        msg.extend_from_slice(&body);
        let exchange = async {
            let mut conn = HttpConn::new(connect_tls(&self.url, self.rest.tls()).await?);
            conn.send(&msg).await.map_err(ClientError::Io)?;
            conn.read_response(ReadOptions {
                head_request: false,
                max_body: 1 << 20,
                keep_head: true,
            })
            .await
        };
        let r = with_deadline(REQUEST_TIMEOUT, exchange).await?;
        let headers = head::headers(&r.head)
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        Ok(Answer {
            status: r.status,
            headers,
            body,
        })
    }

    /// `f` again while it answers `429` (with a growing pause), up to [`ATTEMPTS_ON_429`].
    async fn retrying<F, Fut>(&self, what: &str, f: F) -> Result<Answer, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Answer, ClientError>>,
    {
        let mut pause = Duration::from_millis(50);
        for _ in 0..ATTEMPTS_ON_429 {
            match f().await {
                Ok(a) if a.status == 429 => {
                    self.errors.add(format!("viewers.{what}_retried_429"));
                    async_io::Timer::after(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Ok(a) => return Ok(a),
                Err(e) => return Err(format!("viewers.{what}_{}", e.kind())),
            }
        }
        Err(format!("viewers.{what}_http_429"))
    }

    /// Creates the user `lt-<run>-t<k>` and logs it in (then makes a key, for
    /// [`SubscriberAuth::Key`]). On failure, the user (if created) is returned with the error
    /// so it is deleted all the same. Needs no server: the run does this before its crowd
    /// connects, while the panel has the cores to itself for the hashing.
    pub async fn account(
        &self,
        run: &str,
        k: usize,
    ) -> Result<Viewer, (Option<LoginUser>, String)> {
        let user = self.create(run, k).await.map_err(|e| (None, e))?;
        match self.login(&user).await {
            Ok(headers) => Ok(Viewer { user, headers }),
            Err(e) => Err((Some(user), e)),
        }
    }

    /// Makes `user_id` a `console.read` subuser of `server_id`: the only server it may see.
    pub async fn grant(&self, user_id: &str, server_id: &str) -> Result<(), String> {
        let bearer = [("Authorization", format!("Bearer {}", self.admin_token))];
        let grant = serde_json::json!({"permissions": ["console.read"]});
        let path = format!("/api/servers/{server_id}/users/{user_id}");
        let a = self
            .retrying("grant", || {
                self.browser("PUT", &path, &bearer, Some(&grant))
            })
            .await?;
        if !(200..300).contains(&a.status) {
            return Err(format!("viewers.grant_http_{}_{}", a.status, code(&a.body)));
        }
        Ok(())
    }

    async fn create(&self, run: &str, k: usize) -> Result<LoginUser, String> {
        let name = format!("lt-{run}-t{k}");
        let password = password();
        let body = serde_json::json!({"name": name, "password": password, "admin": false});
        let bearer = [("Authorization", format!("Bearer {}", self.admin_token))];
        let a = self
            .retrying("create_user", || {
                self.browser("POST", "/api/users", &bearer, Some(&body))
            })
            .await?;
        match a.status {
            200 | 201 if a.body["success"] == true => Ok(LoginUser {
                id: a.body["user"]["id"].as_str().unwrap_or_default().to_owned(),
                name,
                password,
            }),
            status => Err(format!(
                "viewers.create_user_http_{status}_{}",
                code(&a.body)
            )),
        }
    }

    async fn login(&self, user: &LoginUser) -> Result<Vec<(String, String)>, String> {
        let origin = [("Origin", self.origin.clone())];
        let login = serde_json::json!({"username": user.name, "password": user.password});
        let a = self
            .retrying("login", || {
                self.browser("POST", "/api/auth/login", &origin, Some(&login))
            })
            .await?;
        if a.status != 200 {
            return Err(format!("viewers.login_http_{}_{}", a.status, code(&a.body)));
        }
        let session = a
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| session_cookie(v))
            .ok_or("viewers.login_no_session_cookie")?;
        let cookie = format!("ctrl_session={session}");
        match self.auth {
            SubscriberAuth::Session | SubscriberAuth::Admin => Ok(vec![
                ("Cookie".into(), cookie),
                ("Origin".into(), self.origin.clone()),
            ]),
            SubscriberAuth::Key => {
                let headers = [("Cookie", cookie), ("Origin", self.origin.clone())];
                let body = serde_json::json!({"name": "loadtest"});
                let a = self
                    .retrying("key", || {
                        self.browser("POST", "/api/auth/keys", &headers, Some(&body))
                    })
                    .await?;
                match a.body["key"]["token"].as_str() {
                    Some(token) if (200..300).contains(&a.status) => {
                        Ok(vec![("Authorization".into(), format!("Bearer {token}"))])
                    }
                    _ => Err(format!("viewers.key_http_{}_{}", a.status, code(&a.body))),
                }
            }
        }
    }
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("no_code")
}

/// The session id of a `Set-Cookie: ctrl_session=<id>; …` value.
fn session_cookie(set_cookie: &str) -> Option<String> {
    let id = set_cookie
        .strip_prefix("ctrl_session=")?
        .split(';')
        .next()?
        .trim();
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_comes_from_its_cookie_only() {
        assert_eq!(
            session_cookie("ctrl_session=abc123; HttpOnly; Secure; SameSite=Strict; Path=/"),
            Some("abc123".into())
        );
        assert_eq!(session_cookie("other=1; Path=/"), None);
        assert_eq!(session_cookie("ctrl_session=; Path=/"), None);
    }

    #[test]
    fn auth_modes_round_trip() {
        for a in [
            SubscriberAuth::Session,
            SubscriberAuth::Key,
            SubscriberAuth::Admin,
        ] {
            assert_eq!(SubscriberAuth::parse(a.as_str()), Some(a));
        }
        assert_eq!(SubscriberAuth::parse("cookie"), None);
    }
}
