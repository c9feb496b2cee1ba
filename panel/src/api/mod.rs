//! The operator API and the agent endpoints: every row of the interface contract's table,
//! plus `POST /api/events/ticket` and the agent WebSocket `/ws/agents`.
//!
//! Handlers are thin: check the rate limit and the admin token, validate input with `proto`,
//! do the durable write (on a blocking thread) *before* answering, talk to agents through the
//! [`Hub`]. Failures are mapped to wire codes in one place each: [`hub_error`],
//! [`auth_error`], [`storage_error`], and [`agent_answer`] for an agent's own error
//! (passed through with 502, its code and message unchanged).

mod agents;
mod live;
mod servers;
mod system;

pub use servers::{Candidate, place};

use parking_lot::Mutex;
use serde_json::json;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use proto::ErrorCode;

use crate::auth::{Auth, AuthError};
use crate::events::Events;
use crate::http::{Method, Reply, Request, Response, Router, ServerStats, handler};
use crate::hub::{Hub, HubError};
use crate::panel_metrics::PanelMetrics;
use crate::ratelimit::KeyedLimiter;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// Most distinct client IPs the API limiter tracks at once (idle ones are evicted).
const MAX_LIMITER_KEYS: usize = 100_000;

/// Everything the handlers share.
pub struct Api {
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
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
    placement: Mutex<()>,
}

impl Api {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        auth: Arc<Auth>,
        hub: Arc<Hub>,
        events: Arc<Events>,
        metrics: Arc<PanelMetrics>,
        http_stats: Arc<ServerStats>,
        shutdown: Shutdown,
        base_url: String,
        max_frame: usize,
        admin_rate: f64,
        admin_burst: f64,
    ) -> Arc<Api> {
        Arc::new(Api {
            store,
            auth,
            hub,
            events,
            metrics,
            http_stats,
            shutdown,
            base_url,
            max_frame,
            limiter: KeyedLimiter::new(admin_rate, admin_burst, MAX_LIMITER_KEYS),
            placement: Mutex::new(()),
        })
    }

    /// The per-client-IP request budget of the operator API.
    #[allow(clippy::result_large_err)]
    fn limit(&self, req: &Request) -> Result<(), Response> {
        if self.limiter.check(&req.peer.ip(), Instant::now()) {
            Ok(())
        } else {
            self.metrics.rate_limited_api.inc();
            Err(Response::error(
                ErrorCode::RateLimited,
                "too many requests from this client; slow down",
            )
            .with_header("retry-after", "1"))
        }
    }

    /// Rate limit, then `Authorization: Bearer <admin token>`.
    #[allow(clippy::result_large_err)]
    fn admin(&self, req: &Request) -> Result<(), Response> {
        self.limit(req)?;
        self.auth.check_admin(req.bearer()).map_err(auth_error)
    }
}

/// `AuthError` → 401 `AUTH_FAILED` (or 500 for a storage failure behind it).
pub(crate) fn auth_error(e: AuthError) -> Response {
    match e.code() {
        ErrorCode::InternalError => {
            log::error!("auth: {e}");
            Response::error(ErrorCode::InternalError, "internal error (see panel log)")
        }
        code => Response::error(code, e.to_string()),
    }
}

/// A storage failure: logged in full, answered without details.
pub(crate) fn storage_error(e: StoreError) -> Response {
    log::error!("{e}");
    Response::error(
        ErrorCode::InternalError,
        "storage error (see panel log); nothing was changed",
    )
}

/// A command that got no usable answer: 503 `AGENT_OFFLINE`, 504 `TIMEOUT`, 502.
pub(crate) fn hub_error(e: HubError) -> Response {
    Response::error_with_status(e.http_status(), e.code().as_str(), e.to_string())
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

fn add<F, Fut>(r: &mut Router, api: &Arc<Api>, method: Method, pattern: &str, f: F)
where
    F: Fn(Arc<Api>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let api = api.clone();
    r.route(method, pattern, handler(move |req| f(api.clone(), req)));
}

/// The whole route table.
pub fn router(api: &Arc<Api>) -> Router {
    let mut r = Router::new();
    add(&mut r, api, Method::Get, "/healthz", system::healthz);
    add(&mut r, api, Method::Get, "/metrics", system::metrics);
    add(
        &mut r,
        api,
        Method::Post,
        "/api/agents/register",
        agents::register,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/agents/refresh",
        agents::refresh,
    );
    add(&mut r, api, Method::Get, "/api/agents", agents::list);
    add(&mut r, api, Method::Get, "/ws/agents", agents::websocket);
    add(&mut r, api, Method::Post, "/api/servers", servers::create);
    add(&mut r, api, Method::Get, "/api/servers", servers::list);
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}",
        servers::status,
    );
    add(
        &mut r,
        api,
        Method::Delete,
        "/api/servers/{id}",
        servers::delete,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/servers/{id}/power",
        servers::power,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/servers/{id}/command",
        servers::console,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/files",
        servers::list_files,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/files/content",
        servers::get_file,
    );
    add(
        &mut r,
        api,
        Method::Put,
        "/api/servers/{id}/files/content",
        servers::write_file,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/events/ticket",
        live::ticket,
    );
    add(&mut r, api, Method::Get, "/api/events", live::subscribe);
    r
}
