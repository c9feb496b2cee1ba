//! The operator API and the agent endpoints: every row of the interface contract's table,
//! plus `POST /api/events/ticket` and the agent WebSocket `/ws/agents`.
//!
//! Handlers are thin: check the rate limit and the admin token, validate input with `proto`,
//! do the durable write (on a blocking thread) *before* answering, talk to agents through the
//! [`Hub`]. They return `Result<Reply, ApiError>`: failures are mapped to wire codes once, in
//! [`ApiError::into_response`]; an agent's own error is its answer, passed through with 502
//! and its code and message unchanged by [`agent_answer`].

mod access;
mod agents;
mod auth;
pub(crate) mod backup_run;
mod backup_sweep;
mod backups;
mod drain;
mod eggs;
mod error;
mod failover;
mod files;
mod gate;
mod live;
mod move_recovery;
mod moves;
pub(crate) mod placing;
mod servers;
mod system;
mod transfer;
mod users;

pub use backup_sweep::{Swept, sweep as sweep_backups};
pub use backups::schedule_loop;
pub use error::ApiError;
pub use gate::{Caller, Need, REG_TOKEN_PREFIX};
pub use move_recovery::recover_all as recover_transfers;
/// A whole transfer of a server to another agent, for panel-side callers (drain, failover).
pub(crate) use moves::transfer_server;

use parking_lot::Mutex;
use serde_json::json;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use proto::ErrorCode;

use crate::auth::Auth;
use crate::events::{Events, Owner, Scope};
use crate::health::NodeHooks;
use crate::http::{Method, Reply, Request, Response, Router, ServerStats, handler};
use crate::hub::Hub;
use crate::node_metrics::NodeMetrics;
use crate::panel_metrics::PanelMetrics;
use crate::placement::Strategy;
use crate::ratelimit::KeyedLimiter;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::users::rights::{Perm, ServerRight};
use crate::users::{Principal, SessionPolicy, Users, Via};
use gate::gate;

/// How often expired sessions are swept (and their live sockets closed).
const SESSION_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Most distinct client IPs the API limiter tracks at once (idle ones are evicted).
const MAX_LIMITER_KEYS: usize = 100_000;

/// Everything the handlers share.
pub struct Api {
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    pub users: Arc<Users>,
    pub hub: Arc<Hub>,
    pub events: Arc<Events>,
    pub metrics: Arc<PanelMetrics>,
    pub http_stats: Arc<ServerStats>,
    pub shutdown: Shutdown,
    /// `https://host:port` agents and operators use.
    pub base_url: String,
    /// Largest agent WebSocket message.
    pub max_frame: usize,
    limiter: KeyedLimiter<IpAddr>,
    /// Serialises placement with the insert of the placed server, so two concurrent creates
    /// cannot both take the last free memory of an agent.
    pub(crate) placement: Mutex<()>,
    /// File transfers in progress (see `transfer.rs`), bounded so their buffers are.
    transfers: std::sync::atomic::AtomicUsize,
    /// Node health and resource history.
    pub nodes: NodeHooks,
    pub node_metrics: Arc<NodeMetrics>,
    /// `--placement`.
    pub strategy: Strategy,
    /// The backup store (`DATA/backups`) and its retention.
    pub backups: BackupSettings,
    /// Servers with a backup, restore or transfer in progress (one at a time each).
    busy: Mutex<std::collections::HashSet<String>>,
    /// Automatic failover: its pause switch, work in flight, counters (`crate::failover`).
    pub failover: Arc<crate::failover::Failover>,
    /// Drain migrations (see `drain.rs`), by agent.
    migrations: drain::Migrations,
}

/// Where backups are kept and how many per server.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub dir: std::path::PathBuf,
    pub keep: usize,
}

impl Api {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        auth: Arc<Auth>,
        users: Arc<Users>,
        hub: Arc<Hub>,
        events: Arc<Events>,
        metrics: Arc<PanelMetrics>,
        http_stats: Arc<ServerStats>,
        shutdown: Shutdown,
        base_url: String,
        max_frame: usize,
        admin_rate: f64,
        admin_burst: f64,
        nodes: NodeHooks,
        node_metrics: Arc<NodeMetrics>,
        strategy: Strategy,
        backups: BackupSettings,
    ) -> Arc<Api> {
        events.set_scoper(scoper(store.clone(), users.policy));
        Arc::new(Api {
            store,
            auth,
            users,
            hub,
            events,
            metrics,
            http_stats,
            shutdown,
            base_url,
            max_frame,
            limiter: KeyedLimiter::new(admin_rate, admin_burst, MAX_LIMITER_KEYS),
            placement: Mutex::new(()),
            transfers: std::sync::atomic::AtomicUsize::new(0),
            nodes,
            node_metrics,
            strategy,
            backups,
            busy: Mutex::new(Default::default()),
            failover: Default::default(),
            migrations: drain::Migrations::default(),
        })
    }

    /// The per-client-IP request budget of the operator API.
    fn limit(&self, req: &Request) -> Result<(), ApiError> {
        if self.limiter.check(&req.peer.ip(), Instant::now()) {
            Ok(())
        } else {
            self.metrics.rate_limited_api.inc();
            Err(ApiError::RateLimited)
        }
    }

    /// What `who` may see on `/api/events` (a user's scope is computed again, under the
    /// events lock, by the scoper set in [`Api::new`]).
    pub(crate) fn scope_of(&self, who: &Principal) -> Scope {
        match who.user() {
            Some(u) => scope_for(&self.store, &u.id, u.admin),
            None => Scope::All,
        }
    }

    /// Housekeeping, every [`SESSION_SWEEP`] (or the idle limit if shorter) until shutdown: ends expired sessions and
    /// closes the live event sockets opened with them.
    pub async fn sweep_sessions(self: Arc<Self>) {
        let every = SESSION_SWEEP
            .min(self.users.policy.idle)
            .max(std::time::Duration::from_secs(1));
        let mut tick = async_io::Timer::interval(every);
        loop {
            let stop = futures_lite::future::or(
                async {
                    futures_lite::StreamExt::next(&mut tick).await;
                    false
                },
                async {
                    self.shutdown.wait().await;
                    true
                },
            )
            .await;
            if stop {
                return;
            }
            let (store, policy) = (self.store.clone(), self.users.policy);
            let now = proto::time::unix_now();
            match blocking(move || store.prune_sessions(|s| policy.expired(s, now))).await {
                Ok(users) => users.iter().for_each(|u| self.rescope(u)),
                Err(e) => log::error!("pruning expired sessions: {e}"),
            }
        }
    }

    /// Applies a change of `user_id`'s rights (or credentials) to their live event sockets:
    /// re-indexed with the new rights, or closed when the user, session or key is gone.
    pub(crate) fn rescope(&self, user_id: &str) {
        self.events.rescope(user_id);
    }
}

/// The events a user may see: everything for an admin, else their servers (`true` where
/// they hold `console.read`).
fn scope_for(store: &Store, user_id: &str, admin: bool) -> Scope {
    if admin {
        return Scope::All;
    }
    Scope::Servers(
        store
            .visible_to(user_id)
            .into_iter()
            .map(|(id, p)| (id, p.has(ServerRight::Perm(Perm::ConsoleRead))))
            .collect(),
    )
}

/// The events scoper: the scope of a subscriber's user, `None` once the user, the session
/// (or its expiry) or the API key it was opened with is gone.
fn scoper(store: Arc<Store>, policy: SessionPolicy) -> crate::events::Scoper {
    Box::new(move |owner: &Owner| {
        let user = store.user(&owner.user_id)?;
        let alive = match &owner.credential {
            Via::Session(key) => store
                .session(key)
                .is_some_and(|s| !policy.expired(&s, proto::time::unix_now())),
            Via::Key(id) => store
                .api_key(id)
                .is_some_and(|k| k.user_id == owner.user_id),
        };
        alive.then(|| scope_for(&store, &user.id, user.admin))
    })
}

/// The request body as JSON; `INVALID_MESSAGE` if it is not what `T` expects.
pub(crate) fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidMessage, format!("invalid JSON body: {e}")))
}

/// An agent's answer: `{"success":true,"data":...}`, or its error passed through with 502.
pub(crate) fn agent_answer(r: &proto::message::Response<'_>) -> Response {
    if r.success {
        let mut body = json!({"success": true, "data": r.data.clone().unwrap_or(json!({}))});
        if let Some(m) = &r.message {
            body["message"] = json!(m);
        }
        Response::json(200, &body)
    } else {
        match &r.error {
            Some(e) => Response::error_with_status(502, &e.code, e.message.to_string()),
            None => Response::error_with_status(
                502,
                ErrorCode::InternalError.as_str(),
                "the agent reported a failure without an error body",
            ),
        }
    }
}

/// Runs blocking work (redb commits) off the executor.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    smol::unblock(f).await
}

/// A route handler: the request and its checked [`Caller`].
trait Handle: Send + Sync + 'static {
    fn call(&self, api: Arc<Api>, req: Request, caller: Caller) -> BoxFuture;
}

type BoxFuture = futures_lite::future::Boxed<Result<Reply, ApiError>>;

impl<F, Fut> Handle for F
where
    F: Fn(Arc<Api>, Request, Caller) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    fn call(&self, api: Arc<Api>, req: Request, caller: Caller) -> BoxFuture {
        Box::pin(self(api, req, caller))
    }
}

/// Adds a route that needs `need` (checked by [`gate`] before `f` runs).
fn add(r: &mut Router, api: &Arc<Api>, method: Method, pattern: &str, need: Need, f: impl Handle) {
    r.route(method, pattern, api_handler(api, need, f));
}

/// [`add`] for a route that streams its request body (uploads).
fn add_streaming(
    r: &mut Router,
    api: &Arc<Api>,
    method: Method,
    pattern: &str,
    need: Need,
    f: impl Handle,
) {
    r.route_streaming(method, pattern, api_handler(api, need, f));
}

fn api_handler(api: &Arc<Api>, need: Need, f: impl Handle) -> crate::http::Handler {
    let api = api.clone();
    let f = Arc::new(f);
    handler(move |req| {
        let (api, f) = (api.clone(), f.clone());
        async move {
            let reply = match gate(&api, &req, need).await {
                Ok(caller) => f.call(api, req, caller).await,
                Err(e) => Err(e),
            };
            reply.unwrap_or_else(|e| e.into_response().into())
        }
    })
}

/// The whole route table, with the right each route needs. This table is the one place
/// where access is decided (panel/README.md shows it).
pub fn router(api: &Arc<Api>) -> Router {
    use Method::{Delete, Get, Patch, Post, Put};
    use Need::{Admin, Events, Login, Monitor, Open, Register};
    use ServerRight::{Manage, View};
    let perm = |p: Perm| Need::Server(ServerRight::Perm(p));
    let server = Need::Server;
    let r = &mut Router::new();
    add(r, api, Get, "/healthz", Open, system::healthz);
    add(r, api, Get, "/metrics", Monitor, system::metrics);
    // Agents and registration: admins (and registration tokens).
    add(
        r,
        api,
        Post,
        "/api/agents/register",
        Register,
        agents::register,
    );
    add(r, api, Post, "/api/agents/refresh", Open, agents::refresh);
    add(
        r,
        api,
        Post,
        "/api/agents/registration-tokens",
        Admin,
        agents::registration_token,
    );
    add(r, api, Get, "/api/agents", Admin, agents::list);
    add(r, api, Get, "/api/agents/{id}", Admin, agents::get);
    add(r, api, Post, "/api/agents/{id}/drain", Admin, agents::drain);
    add(
        r,
        api,
        Post,
        "/api/agents/{id}/undrain",
        Admin,
        agents::undrain,
    );
    add(r, api, Get, "/api/agents/{id}/stats", Admin, agents::stats);
    add(
        r,
        api,
        Get,
        "/api/agents/{id}/migration",
        Admin,
        agents::migration,
    );
    add(r, api, Get, "/ws/agents", Open, agents::websocket);
    // Sessions, the caller's own account and keys.
    add(r, api, Post, "/api/auth/login", Open, auth::login);
    add(r, api, Post, "/api/auth/logout", Login, auth::logout);
    add(r, api, Get, "/api/auth/me", Login, auth::me);
    add(r, api, Post, "/api/auth/password", Login, auth::password);
    add(r, api, Get, "/api/auth/keys", Login, auth::list_keys);
    add(r, api, Post, "/api/auth/keys", Login, auth::create_key);
    add(
        r,
        api,
        Delete,
        "/api/auth/keys/{id}",
        Login,
        auth::delete_key,
    );
    // Users: admins.
    add(r, api, Post, "/api/users", Admin, users::create);
    add(r, api, Get, "/api/users", Admin, users::list);
    add(r, api, Delete, "/api/users/{id}", Admin, users::delete);
    add(
        r,
        api,
        Post,
        "/api/users/{id}/password",
        Admin,
        users::reset_password,
    );
    // The egg library: admins.
    add(r, api, Post, "/api/eggs", Admin, eggs::create);
    add(r, api, Get, "/api/eggs", Admin, eggs::list);
    add(r, api, Get, "/api/eggs/{id}", Admin, eggs::get);
    add(r, api, Delete, "/api/eggs/{id}", Admin, eggs::delete);
    // Servers: create, delete and re-own are admin; the rest per right on the server.
    add(r, api, Get, "/api/failover", Admin, failover::status);
    add(
        r,
        api,
        Post,
        "/api/failover/resume",
        Admin,
        failover::resume,
    );
    add(r, api, Post, "/api/servers", Admin, servers::create);
    add(r, api, Get, "/api/servers", Login, servers::list);
    add(
        r,
        api,
        Get,
        "/api/servers/{id}",
        server(View),
        servers::status,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/info",
        server(View),
        access::info,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/stats",
        server(View),
        servers::stats,
    );
    add(
        r,
        api,
        Patch,
        "/api/servers/{id}",
        server(ServerRight::Admin),
        access::patch,
    );
    add(
        r,
        api,
        Delete,
        "/api/servers/{id}",
        server(ServerRight::Admin),
        servers::delete,
    );
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/power",
        perm(Perm::Power),
        servers::power,
    );
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/command",
        perm(Perm::ConsoleWrite),
        servers::console,
    );
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/reinstall",
        server(Manage),
        servers::reinstall,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/logs",
        perm(Perm::ConsoleRead),
        servers::logs,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/users",
        server(Manage),
        access::subusers,
    );
    add(
        r,
        api,
        Put,
        "/api/servers/{id}/users/{userId}",
        server(Manage),
        access::put_subuser,
    );
    add(
        r,
        api,
        Delete,
        "/api/servers/{id}/users/{userId}",
        server(Manage),
        access::delete_subuser,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/files",
        perm(Perm::FilesRead),
        files::list,
    );
    add(
        r,
        api,
        Delete,
        "/api/servers/{id}/files",
        perm(Perm::FilesWrite),
        files::delete,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/files/download",
        perm(Perm::FilesRead),
        files::download,
    );
    add_streaming(
        r,
        api,
        Put,
        "/api/servers/{id}/files/upload",
        perm(Perm::FilesWrite),
        files::upload,
    );
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/files/rename",
        perm(Perm::FilesWrite),
        files::rename,
    );
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/files/mkdir",
        perm(Perm::FilesWrite),
        files::mkdir,
    );
    add(
        r,
        api,
        Get,
        "/api/servers/{id}/files/content",
        perm(Perm::FilesRead),
        servers::get_file,
    );
    add(
        r,
        api,
        Put,
        "/api/servers/{id}/files/content",
        perm(Perm::FilesWrite),
        servers::write_file,
    );
    backups::routes(r, api);
    // Live events: filtered per caller.
    add(r, api, Post, "/api/events/ticket", Login, live::ticket);
    add(r, api, Get, "/api/events", Events, live::subscribe);
    std::mem::take(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_does_not_fit_is_invalid_message() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            a: u32,
        }
        let mut req = Request {
            method: Method::Post,
            path: "/".into(),
            query: String::new(),
            headers: Vec::new(),
            body: br#"{"a":"x"}"#.to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
            params: Vec::new(),
            stream: None,
        };
        let r = body::<B>(&req).unwrap_err().into_response();
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "INVALID_MESSAGE");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid type")
        );
        req.body = br#"{"a":5}"#.to_vec();
        assert_eq!(body::<B>(&req).unwrap().a, 5);
    }
}
