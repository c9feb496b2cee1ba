//! Node health: every agent is `healthy`, `degraded`, `offline`, `dead` or `draining`, with
//! machine-readable reasons and a human message, since when, and its heartbeat round trip.
//!
//! - [`state`]: the decision itself (pure);
//! - [`rtt`]: the heartbeat round trip and what is usual for a node;
//! - [`watch`]: the once-a-second pass that gathers what the hub and the store know and
//!   applies [`Health::evaluate`].
//!
//! A change of state (or of the set of reasons) is a *transition*: it goes to
//! `/api/events` as `agent_health_changed`, to the transition counters of `/metrics`, and
//! to every in-process subscriber ([`Health::subscribe`]: failover, for one). Other parts ask
//! "how is agent X" with [`Health::state`] / [`Health::view`].

mod rtt;
mod state;
mod watch;

pub use state::{Reason, State};
pub use watch::{observe, run};

use async_tungstenite::tungstenite::Message as WsMessage;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use proto::message::PongData;
use proto::time::{format_rfc3339, now_rfc3339};

use crate::events::Events;
use crate::node_metrics::NodeMetrics;
use rtt::Rtt;

/// What the hub feeds with each heartbeat and each `resource_update`.
#[derive(Clone)]
pub struct NodeHooks {
    pub health: Arc<Health>,
    pub history: Arc<crate::history::History>,
    /// Each server's last-known status (from its status events and `get_status` answers).
    pub statuses: Arc<crate::last_status::LastStatus>,
}

/// Transitions an in-process subscriber may fall behind by before it misses some.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// How one agent is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub state: State,
    pub reasons: Vec<Reason>,
    /// Unix seconds of the last transition (or of the connection / last contact when the
    /// panel first saw the agent).
    pub since: u64,
    pub rtt_ms: Option<u64>,
}

impl View {
    /// The human message: every reason's message, `; `-joined.
    pub fn message(&self) -> String {
        if self.reasons.is_empty() {
            return "connected and reporting no condition".into();
        }
        self.reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn codes(&self) -> Vec<&str> {
        self.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    /// `health` of `GET /api/agents`.
    pub fn to_json(&self) -> Value {
        json!({
            "state": self.state,
            "reasons": self.codes(),
            "message": self.message(),
            "since": format_rfc3339(self.since),
            "rttMs": self.rtt_ms,
        })
    }
}

/// One change of an agent's health.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub agent_id: String,
    pub previous: State,
    pub view: View,
}

/// What the panel knows about one agent at one moment (see [`observe`]).
#[derive(Debug, Clone)]
pub struct Observation {
    pub agent_id: String,
    pub connected_at: Option<u64>,
    pub pong: Option<PongData<'static>>,
    /// Last heard from (live value, else the end of the last connection).
    pub last_seen: Option<u64>,
    pub registered_at: u64,
    pub draining: bool,
}

#[derive(Default)]
struct Node {
    /// The last ping sent: its number and when.
    ping: Option<(u64, Instant)>,
    rtt: Rtt,
    view: Option<View>,
}

/// Every agent's health.
pub struct Health {
    dead_after_secs: u64,
    nodes: Mutex<HashMap<String, Node>>,
    subs: Mutex<Vec<async_channel::Sender<Transition>>>,
    events: Arc<Events>,
    metrics: Arc<NodeMetrics>,
}

impl Health {
    pub fn new(
        dead_after_secs: u64,
        events: Arc<Events>,
        metrics: Arc<NodeMetrics>,
    ) -> Arc<Health> {
        Arc::new(Health {
            dead_after_secs,
            nodes: Mutex::new(HashMap::new()),
            subs: Mutex::new(Vec::new()),
            events,
            metrics,
        })
    }

    /// The heartbeat queued ping `n` for `agent_id`.
    pub fn pinged(&self, agent_id: &str, n: u64) {
        let mut nodes = self.nodes.lock();
        let node = match nodes.get_mut(agent_id) {
            Some(n) => n,
            None => nodes.entry(agent_id.to_owned()).or_default(),
        };
        node.ping = Some((n, Instant::now()));
    }

    /// A pong echoed ping `n`: if it is the last one sent, its round trip counts.
    pub fn ponged(&self, agent_id: &str, n: u64) {
        if let Some(node) = self.nodes.lock().get_mut(agent_id)
            && let Some((sent, at)) = node.ping
            && sent == n
        {
            let ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
            node.rtt.observe(ms);
        }
    }

    /// The agent's current state (`None`: not evaluated yet, e.g. registered this second).
    /// The agent's state, without copying its view (the failover loop asks for every
    /// agent twice a second).
    pub fn state(&self, agent_id: &str) -> Option<State> {
        Some(self.nodes.lock().get(agent_id)?.view.as_ref()?.state)
    }

    pub fn is_healthy(&self, agent_id: &str) -> bool {
        self.state(agent_id) == Some(State::Healthy)
    }

    pub fn is_dead(&self, agent_id: &str) -> bool {
        self.state(agent_id) == Some(State::Dead)
    }

    pub fn view(&self, agent_id: &str) -> Option<View> {
        self.nodes.lock().get(agent_id)?.view.clone()
    }

    /// Every transition from now on, in order, on a bounded channel ([`SUBSCRIBER_QUEUE`];
    /// a subscriber that falls further behind misses transitions, never blocks the panel).
    /// Drop the receiver to unsubscribe.
    pub fn subscribe(&self) -> async_channel::Receiver<Transition> {
        let (tx, rx) = async_channel::bounded(SUBSCRIBER_QUEUE);
        self.subs.lock().push(tx);
        rx
    }

    /// Decides every observed agent's state at `now` and reports the transitions. Safe to
    /// call concurrently: each agent's change is decided under the lock, so it is reported
    /// once.
    pub fn evaluate(&self, observations: &[Observation], now: u64) {
        let mut changes = Vec::new();
        {
            let mut nodes = self.nodes.lock();
            for o in observations {
                // No copy of the id for agents already known (every agent, every second).
                let node = match nodes.get_mut(&o.agent_id) {
                    Some(node) => node,
                    None => nodes.entry(o.agent_id.clone()).or_default(),
                };
                if let Some(t) = self.decide(node, o, now) {
                    changes.push(t);
                }
            }
        }
        for t in changes {
            self.report(t);
        }
    }

    fn decide(&self, node: &mut Node, o: &Observation, now: u64) -> Option<Transition> {
        let connected = o.connected_at.is_some();
        let silent_from = o.last_seen.unwrap_or(o.registered_at);
        let rtt_high = if connected {
            node.rtt.far_above()
        } else {
            None
        };
        let (state, reasons) = state::assess(&state::Inputs {
            connected,
            silent_secs: now.saturating_sub(silent_from),
            dead_after_secs: self.dead_after_secs,
            ever_seen: o.last_seen.is_some(),
            draining: o.draining,
            pong: o.pong.as_ref(),
            rtt_high: rtt_high.as_deref(),
        });
        if !connected {
            node.ping = None;
        }
        let rtt_ms = if connected { node.rtt.last_ms() } else { None };
        let codes = |r: &[Reason]| r.iter().map(|r| r.code.clone()).collect::<Vec<_>>();
        match &mut node.view {
            Some(v) if v.state == state && codes(&v.reasons) == codes(&reasons) => {
                v.reasons = reasons;
                v.rtt_ms = rtt_ms;
                None
            }
            Some(v) => {
                let previous = v.state;
                *v = View {
                    state,
                    reasons,
                    since: now,
                    rtt_ms,
                };
                Some(Transition {
                    agent_id: o.agent_id.clone(),
                    previous,
                    view: v.clone(),
                })
            }
            None => {
                // First sight (panel start, new agent): no transition, and `since` is when
                // the present state began as far as the panel can tell.
                let since = match state {
                    State::Offline => silent_from,
                    State::Dead => silent_from.saturating_add(self.dead_after_secs),
                    _ => o.connected_at.unwrap_or(now),
                };
                node.view = Some(View {
                    state,
                    reasons,
                    since,
                    rtt_ms,
                });
                None
            }
        }
    }

    fn report(&self, t: Transition) {
        if t.previous != t.view.state {
            log::info!(
                "agent {} {} → {}: {}",
                t.agent_id,
                t.previous.as_str(),
                t.view.state.as_str(),
                t.view.message()
            );
        }
        self.metrics.transition(t.view.state);
        let frame = json!({
            "type": "event",
            "event": "agent_health_changed",
            "agentId": t.agent_id,
            "timestamp": now_rfc3339(),
            "data": {
                "state": t.view.state,
                "reasons": t.view.codes(),
                "previousState": t.previous,
                "message": t.view.message(),
                "since": format_rfc3339(t.view.since),
                "rttMs": t.view.rtt_ms,
            },
        });
        // No server: only subscribers who see every event (admins) get it.
        self.events.publish(
            &t.agent_id,
            None,
            Some("agent_health_changed"),
            &WsMessage::Text(frame.to_string().into()),
        );
        self.subs.lock().retain(|tx| match tx.try_send(t.clone()) {
            Ok(()) => true,
            Err(async_channel::TrySendError::Full(_)) => {
                log::warn!("a health subscriber is {SUBSCRIBER_QUEUE} transitions behind");
                true
            }
            Err(async_channel::TrySendError::Closed(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel_metrics::PanelMetrics;
    use proto::message::{Condition, SystemLoad};

    fn health() -> Arc<Health> {
        let events = Events::new(16, Arc::new(PanelMetrics::default()));
        Health::new(60, events, Arc::new(NodeMetrics::default()))
    }

    fn obs(connected: bool, conditions: &[&str]) -> Observation {
        Observation {
            agent_id: "a1".into(),
            connected_at: connected.then_some(100),
            pong: Some(PongData {
                agent_status: "healthy".into(),
                active_servers: 0,
                system_load: SystemLoad {
                    cpu: 0.0,
                    memory: 0.0,
                    disk: 0.0,
                },
                conditions: conditions
                    .iter()
                    .map(|c| Condition {
                        code: (*c).into(),
                        message: "m".into(),
                    })
                    .collect(),
            })
            .filter(|_| connected),
            last_seen: Some(100),
            registered_at: 1,
            draining: false,
        }
    }

    #[test]
    fn transitions_are_reported_once_each_with_their_previous_state() {
        let h = health();
        let rx = h.subscribe();
        h.evaluate(&[obs(true, &[])], 100);
        assert_eq!(h.state("a1"), Some(State::Healthy));
        assert!(rx.try_recv().is_err(), "first sight is no transition");
        h.evaluate(&[obs(true, &["docker_unreachable"])], 105);
        h.evaluate(&[obs(true, &["docker_unreachable"])], 106);
        let t = rx.try_recv().unwrap();
        assert_eq!(
            (t.previous, t.view.state),
            (State::Healthy, State::Degraded)
        );
        assert_eq!(t.view.codes(), ["docker_unreachable"]);
        assert_eq!(t.view.since, 105);
        assert!(rx.try_recv().is_err(), "no change, no transition");
        // Another reason is a change too.
        h.evaluate(&[obs(true, &["docker_unreachable", "disk_full"])], 107);
        assert_eq!(rx.try_recv().unwrap().previous, State::Degraded);
        h.evaluate(&[obs(false, &[])], 110);
        assert_eq!(rx.try_recv().unwrap().view.state, State::Offline);
        h.evaluate(&[obs(false, &[])], 160);
        let t = rx.try_recv().unwrap();
        assert_eq!((t.previous, t.view.state), (State::Offline, State::Dead));
        assert!(h.is_dead("a1") && !h.is_healthy("a1"));
        assert_eq!(h.metrics.transitions(State::Dead), 1);
        assert_eq!(h.metrics.transitions(State::Degraded), 2);
    }

    #[test]
    fn first_sight_of_an_offline_agent_dates_from_its_last_contact() {
        let h = health();
        h.evaluate(&[obs(false, &[])], 130);
        let v = h.view("a1").unwrap();
        assert_eq!((v.state, v.since), (State::Offline, 100));
        let h = health();
        h.evaluate(&[obs(false, &[])], 1000);
        let v = h.view("a1").unwrap();
        assert_eq!((v.state, v.since), (State::Dead, 160));
    }

    #[test]
    fn round_trips_count_only_for_the_last_ping() {
        let h = health();
        h.pinged("a1", 1);
        h.pinged("a1", 2);
        h.ponged("a1", 1);
        h.evaluate(&[obs(true, &[])], 100);
        assert_eq!(h.view("a1").unwrap().rtt_ms, None);
        h.ponged("a1", 2);
        h.evaluate(&[obs(true, &[])], 101);
        assert!(h.view("a1").unwrap().rtt_ms.is_some());
    }
}
