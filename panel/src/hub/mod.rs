//! Connected agents and command routing.
//!
//! One live WebSocket per agent (a new connection replaces the old one). Each connection has
//! a reader (the task that called [`Hub::serve_agent`]), a writer fed by a bounded
//! [`Outbox`](crate::outbox::Outbox) (empty, hence nearly free, while the agent is idle; the
//! writer sends what is queued with one flush per batch), and a heartbeat. The pieces, one
//! idea per file:
//!
//! - [`registry`]: agent id → its live connection ([`registry::Conn`]), what the API shows;
//! - [`kill`]: the per-connection "end it" signal (small: one per agent);
//! - [`connection`]: one connection's life: attach, reader/writer/heartbeat, detach (a drop
//!   guard, so a panic cannot leave a dead agent "online");
//! - [`waiters`]: commands, their ids and waiters (answer, `TIMEOUT` or `AGENT_OFFLINE`);
//! - [`routing`]: the reader — every agent frame routed on its envelope;
//! - [`trust`]: an agent speaks only for itself and its own servers;
//! - [`heartbeat`]: pings, pongs, missed heartbeats, revoked token families (and the
//!   round trips node health measures);
//! - [`samples`]: `resource_update` events copied into the resource history, status
//!   changes into the last-known status;
//! - [`writer`]: the writer;
//! - [`last_seen`]: when each agent was last heard from, committed when a connection ends;
//! - [`error`]: [`HubError`] and its wire codes.
//!
//! Locks (the registry, waiters, per-connection state) are held only for a map operation,
//! never across an `.await`.

mod connection;
mod error;
mod heartbeat;
mod kill;
mod last_seen;
mod registry;
mod routing;
mod samples;
mod trust;
mod waiters;
mod writer;

#[cfg(test)]
mod tests;

pub use error::HubError;
pub use registry::LiveAgent;

use async_io::Timer;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_lite::future;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::events::Events;
use crate::health::NodeHooks;
use crate::panel_metrics::PanelMetrics;
use crate::store::Store;
use crate::tracker::Tracker;
use last_seen::LastSeen;
use registry::Registry;
use waiters::Waiters;

/// Pings without a pong after which an agent is offline.
pub const MAX_MISSED_PONGS: u32 = 3;
/// Close code for a connection replaced by a newer one of the same agent.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code for an agent that missed [`MAX_MISSED_PONGS`] heartbeats.
pub const CLOSE_HEARTBEAT: u16 = 4001;
/// How long a close handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Tunables of the hub (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub heartbeat: Duration,
    pub command_timeout: Duration,
    pub max_frame: usize,
    pub agent_rate: f64,
    pub agent_burst: f64,
    pub queue: usize,
}

/// The registry of connected agents and in-flight commands.
pub struct Hub {
    registry: Registry,
    waiters: Waiters,
    last_seen: LastSeen,
    settings: HubSettings,
    store: Arc<Store>,
    auth: Arc<Auth>,
    events: Arc<Events>,
    metrics: Arc<PanelMetrics>,
    tracker: Tracker,
    /// Node health and resource history (heartbeat round trips, `resource_update`s).
    nodes: NodeHooks,
}

/// A text frame of encoded JSON.
fn text(frame: Vec<u8>) -> WsMessage {
    // Our encoder writes JSON, which is always UTF-8.
    WsMessage::Text(
        String::from_utf8(frame)
            .expect("encoded JSON is UTF-8")
            .into(),
    )
}

impl Hub {
    pub fn new(
        settings: HubSettings,
        store: Arc<Store>,
        auth: Arc<Auth>,
        events: Arc<Events>,
        metrics: Arc<PanelMetrics>,
        nodes: NodeHooks,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            registry: Registry::default(),
            waiters: Waiters::new(),
            last_seen: LastSeen::new(store.clone()),
            settings,
            store,
            auth,
            events,
            metrics,
            tracker: Tracker::new(),
            nodes,
        })
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        self.registry.contains(agent_id)
    }

    pub fn live(&self, agent_id: &str) -> Option<LiveAgent> {
        self.registry.live(agent_id)
    }

    /// The id of the agent's live connection (unique per panel process; a new connection,
    /// even within the same second, has a new one), if connected. Cheap: no copy.
    pub fn connection_id(&self, agent_id: &str) -> Option<u64> {
        self.registry.get(agent_id).map(|c| c.id)
    }

    /// When the agent was last heard from: the live value while connected, else the end of
    /// its last connection (kept across panel restarts by the store); `None` if never.
    pub fn last_seen(&self, agent_id: &str) -> Option<u64> {
        self.registry
            .last_seen(agent_id)
            .or_else(|| self.last_seen.get(agent_id))
    }

    pub fn online_count(&self) -> usize {
        self.registry.len()
    }

    fn update_online(&self) {
        self.metrics.agents_online.set(self.registry.len() as i64);
    }

    /// Closes an agent's live socket, if any (e.g. its token family was revoked).
    pub fn kick(&self, agent_id: &str, code: u16, reason: &str) {
        if let Some(c) = self.registry.get(agent_id) {
            c.kick(CloseCode::from(code), reason);
        }
    }

    /// Shutdown: closes every agent socket with 1001 and waits (bounded) for their tasks.
    pub async fn close_all(&self, grace: Duration) {
        self.registry
            .kick_all(CloseCode::Away, "panel shutting down");
        future::or(self.tracker.idle(), async {
            Timer::after(grace).await;
        })
        .await;
    }
}
