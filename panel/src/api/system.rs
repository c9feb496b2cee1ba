//! `GET /healthz` (no auth) and `GET /metrics` (admin bearer, Prometheus text).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Api, ApiError, Caller};
use crate::http::{Reply, Request, Response};
use crate::metrics::{write_counter, write_gauge};
use crate::node_metrics::{NodeGauges, ServerGauges};
use proto::quantity::Bytes;

/// `GET /healthz`: liveness, no auth, no rate limit.
pub(super) async fn healthz(
    _api: Arc<Api>,
    _req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    Ok(Response::json(200, &serde_json::json!({"success": true})).into())
}

/// `GET /metrics` (admin bearer). Not subject to the API rate limit: monitoring must keep
/// working while a client is being throttled.
pub(super) async fn metrics(
    api: Arc<Api>,
    _req: Request,
    _caller: Caller,
) -> Result<Reply, ApiError> {
    let mut out = String::with_capacity(8 * 1024);
    api.metrics.render(&mut out);
    node_metrics(&api, &mut out);
    api.failover.render(&mut out);
    let s = &api.http_stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    write_gauge(
        &mut out,
        "panel_http_connections_open",
        "Open client connections, including WebSockets.",
        &[],
        get(&s.connections_open),
    );
    for (name, help, c) in [
        (
            "panel_http_connections_total",
            "Connections accepted.",
            &s.connections_total,
        ),
        (
            "panel_http_connections_rejected_total",
            "Connections refused by the global or per-IP cap.",
            &s.connections_rejected,
        ),
        (
            "panel_http_connections_evicted_total",
            "Connections closed before their first request to make room for a newer one of the same IP.",
            &s.connections_evicted,
        ),
        (
            "panel_http_tls_failures_total",
            "Failed or timed-out TLS handshakes.",
            &s.tls_failures,
        ),
        (
            "panel_http_tls_handshakes_total",
            "Completed TLS handshakes.",
            &s.tls_handshakes,
        ),
        (
            "panel_http_tls_resumed_total",
            "Completed TLS handshakes that resumed a session from a ticket.",
            &s.tls_resumed,
        ),
        (
            "panel_http_requests_total",
            "HTTP requests received and dispatched.",
            &s.requests_total,
        ),
        (
            "panel_http_requests_rejected_total",
            "HTTP requests refused by the parser (400/413/431/...).",
            &s.requests_rejected,
        ),
        (
            "panel_http_request_timeouts_total",
            "Requests cut off for arriving too slowly (408).",
            &s.request_timeouts,
        ),
        (
            "panel_http_upgrades_total",
            "Successful WebSocket upgrades.",
            &s.upgrades_total,
        ),
    ] {
        write_counter(&mut out, name, help, &[], get(c));
    }
    Ok(Response::text(200, "text/plain; version=0.0.4; charset=utf-8", out).into())
}

/// Per-node and per-server gauges, from the registered agents and servers as they are now
/// (a deleted server has no series).
fn node_metrics(api: &Api, out: &mut String) {
    let now = proto::time::unix_now();
    let committed = api.store.memory_committed();
    let cpu_committed = api.store.cpu_committed();
    let nodes: Vec<NodeGauges> = api
        .store
        .agents()
        .into_iter()
        .map(|a| NodeGauges {
            state: api.nodes.health.state(&a.id),
            load: api
                .hub
                .live(&a.id)
                .and_then(|l| l.pong)
                .map(|p| p.system_load),
            memory_capacity: Bytes::parse(&a.capabilities.max_memory)
                .map(|b| b.0)
                .unwrap_or(0),
            memory_committed: committed.get(&a.id).copied().unwrap_or(0),
            cpu_capacity_millis: u64::from(a.capabilities.max_cpu_cores) * 1000,
            cpu_committed_millis: cpu_committed.get(&a.id).copied().unwrap_or(0),
            agent_id: a.id,
        })
        .collect();
    let history = &api.nodes.history;
    let servers: Vec<ServerGauges> = api
        .store
        .servers()
        .into_iter()
        .filter_map(|s| {
            let players = history.players(&s.server_id);
            let f = history.server_now(&s.server_id, now);
            if f.is_none() && players.is_none() {
                return None;
            }
            Some(ServerGauges {
                cpu: f.map_or(0.0, |f| f.cpu),
                memory: f.map_or(0, |f| f.memory),
                disk: f.map_or(0, |f| f.disk),
                players,
                server_id: s.server_id,
            })
        })
        .collect();
    crate::node_metrics::render(out, &api.node_metrics, &nodes, &servers);
}
