//! The operator API and the agent endpoints: every row of the interface contract's table,
//! plus `POST /api/events/ticket` and the agent WebSocket `/ws/agents`.
//!
//! Handlers are thin: check the rate limit and the admin token, validate input with `proto`,
//! do the durable write (on a blocking thread) *before* answering, talk to agents through the
//! [`Hub`]. They return `Result<Reply, ApiError>`: failures are mapped to wire codes once, in
//! [`ApiError::into_response`]; an agent's own error is its answer, passed through with 502
//! and its code and message unchanged by [`agent_answer`].

mod agents;
mod backup_run;
mod backups;
mod eggs;
mod error;
mod files;
mod live;
mod moves;
mod placing;
mod servers;
mod system;
mod transfer;

pub use backups::schedule_loop;
pub use error::ApiError;

use parking_lot::Mutex;
use serde_json::json;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use proto::ErrorCode;

use crate::auth::Auth;
use crate::events::Events;
use crate::health::NodeHooks;
use crate::http::{Method, Reply, Request, Response, Router, ServerStats, handler};
use crate::hub::Hub;
use crate::node_metrics::NodeMetrics;
use crate::panel_metrics::PanelMetrics;
use crate::placement::Strategy;
use crate::ratelimit::KeyedLimiter;
use crate::shutdown::Shutdown;
use crate::store::Store;

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
            transfers: std::sync::atomic::AtomicUsize::new(0),
            nodes,
            node_metrics,
            strategy,
            backups,
            busy: Mutex::new(Default::default()),
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

    /// Rate limit, then `Authorization: Bearer <admin token>`.
    fn admin(&self, req: &Request) -> Result<(), ApiError> {
        self.limit(req)?;
        Ok(self.auth.check_admin(req.bearer())?)
    }
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

fn add<F, Fut>(r: &mut Router, api: &Arc<Api>, method: Method, pattern: &str, f: F)
where
    F: Fn(Arc<Api>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    r.route(method, pattern, api_handler(api, f));
}

/// [`add`] for a route that streams its request body (uploads).
fn add_streaming<F, Fut>(r: &mut Router, api: &Arc<Api>, method: Method, pattern: &str, f: F)
where
    F: Fn(Arc<Api>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    r.route_streaming(method, pattern, api_handler(api, f));
}

fn api_handler<F, Fut>(api: &Arc<Api>, f: F) -> crate::http::Handler
where
    F: Fn(Arc<Api>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    let api = api.clone();
    handler(move |req| {
        let reply = f(api.clone(), req);
        async move { reply.await.unwrap_or_else(|e| e.into_response().into()) }
    })
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
    add(&mut r, api, Method::Get, "/api/agents/{id}", agents::get);
    add(
        &mut r,
        api,
        Method::Post,
        "/api/agents/{id}/drain",
        agents::drain,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/agents/{id}/undrain",
        agents::undrain,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/agents/{id}/stats",
        agents::stats,
    );
    add(&mut r, api, Method::Get, "/ws/agents", agents::websocket);
    add(&mut r, api, Method::Post, "/api/eggs", eggs::create);
    add(&mut r, api, Method::Get, "/api/eggs", eggs::list);
    add(&mut r, api, Method::Get, "/api/eggs/{id}", eggs::get);
    add(&mut r, api, Method::Delete, "/api/eggs/{id}", eggs::delete);
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
        Method::Post,
        "/api/servers/{id}/reinstall",
        servers::reinstall,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/logs",
        servers::logs,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/stats",
        servers::stats,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/files",
        files::list,
    );
    add(
        &mut r,
        api,
        Method::Delete,
        "/api/servers/{id}/files",
        files::delete,
    );
    add(
        &mut r,
        api,
        Method::Get,
        "/api/servers/{id}/files/download",
        files::download,
    );
    add_streaming(
        &mut r,
        api,
        Method::Put,
        "/api/servers/{id}/files/upload",
        files::upload,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/servers/{id}/files/rename",
        files::rename,
    );
    add(
        &mut r,
        api,
        Method::Post,
        "/api/servers/{id}/files/mkdir",
        files::mkdir,
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
    backups::routes(&mut r, api);
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
