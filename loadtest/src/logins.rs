//! Browser logins (`--login-rate`): `POST /api/auth/login` at a fixed rate (open loop), each
//! timed, over a few users loadtest creates for the run (`POST /api/users`, admin only) and
//! deletes afterwards. A panel without the users routes (404/405 on `POST /api/users`) is
//! reported as such, not as failed logins.

use std::rc::Rc;
use std::sync::Arc;

use crate::commands::{RequestStats, Timed, open_loop};
use crate::stats::Errors;
use ctrl_io::Rest;

/// Users the logins rotate over.
pub const LOGIN_USERS: usize = 20;
/// Most logins in flight before new ones are skipped (and counted).
const MAX_IN_FLIGHT: u64 = 512;

/// A user created for the run.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub id: String,
    pub name: String,
    pub password: String,
}

/// Why there are no users to log in with.
#[derive(Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The panel has no `POST /api/users` (the users routes are not there).
    NoUsersRoutes,
    Failed(String),
}

/// A random password of 24 letters and digits.
pub(crate) fn password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..24)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Creates `n` users named `lt-<run>-u<i>` with random passwords.
pub async fn create_users(
    rest: &Rest,
    admin_token: &str,
    run: &str,
    n: usize,
) -> Result<Vec<LoginUser>, Unavailable> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("lt-{run}-u{i}");
        let password = password();
        let body = serde_json::json!({"name": name, "password": password, "admin": false});
        let answer = rest
            .json("POST", "/api/users", Some(admin_token), Some(&body))
            .await;
        match answer {
            Ok((200 | 201, v)) if v["success"] == true => {
                let id = v["user"]["id"].as_str().unwrap_or_default().to_owned();
                users.push(LoginUser { id, name, password });
            }
            Ok((404 | 405, _)) => return Err(Unavailable::NoUsersRoutes),
            Ok((status, v)) => {
                let code = v["error"]["code"].as_str().unwrap_or("no_code");
                return Err(Unavailable::Failed(format!("users.http_{status}_{code}")));
            }
            Err(e) => return Err(Unavailable::Failed(format!("users.{}", e.kind()))),
        }
    }
    Ok(users)
}

/// Deletes the users loadtest made (best effort: failures are counted in `errors`); returns
/// how many were deleted.
pub async fn delete_users(
    rest: &Rest,
    admin_token: &str,
    users: &[LoginUser],
    errors: &Errors,
) -> usize {
    let mut deleted = 0;
    for u in users.iter().filter(|u| !u.id.is_empty()) {
        let path = format!("/api/users/{}", u.id);
        match rest.json("DELETE", &path, Some(admin_token), None).await {
            Ok((200 | 204, _)) => deleted += 1,
            Ok((status, _)) => errors.add(format!("users.delete_http_{status}")),
            Err(e) => errors.add(format!("users.delete_{}", e.kind())),
        }
    }
    deleted
}

/// Logs in at `rate` per second, the users in turn, until `stop` is closed.
pub async fn drive(
    ex: Rc<smol::LocalExecutor<'static>>,
    rest: Arc<Rest>,
    users: Rc<Vec<LoginUser>>,
    rate: f64,
    stats: Arc<RequestStats>,
    errors: Arc<Errors>,
    stop: async_channel::Receiver<()>,
) {
    if users.is_empty() {
        return;
    }
    let timed = Timed {
        ex: &ex,
        rest: &rest,
        stats: &stats,
        errors: &errors,
        max_in_flight: MAX_IN_FLIGHT,
        label: "login",
    };
    open_loop(rate, &stop, |i| {
        let user = &users[(i % users.len() as u64) as usize];
        timed.issue(|| {
            let body = serde_json::json!({"username": user.name, "password": user.password});
            ("POST", "/api/auth/login".to_owned(), None, Some(body))
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_are_long_and_differ() {
        let (a, b) = (password(), password());
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn login_failures_are_named() {
        assert_eq!(
            crate::commands::classify("login", Ok((200, json!({"success": true})))),
            Ok(())
        );
        assert_eq!(
            crate::commands::classify(
                "login",
                Ok((
                    401,
                    json!({"success": false, "error": {"code": "AUTH_FAILED"}})
                ))
            ),
            Err("login.http_401_AUTH_FAILED".into())
        );
    }
}
