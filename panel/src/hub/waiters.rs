//! Commands and their waiters.
//!
//! A command gets a fresh id (a per-process random prefix and a counter, so ids never repeat
//! across restarts) and a one-shot waiter keyed by that id; the reader finds the waiter when
//! the response arrives. A waiter ends in exactly one way: the response, the command timeout
//! (`TIMEOUT`), or the connection going away (`AGENT_OFFLINE`, at once — the connection's
//! detach drops the waiter's sender). Commands wait for room in a full queue, bounded by the
//! same timeout.

use async_io::Timer;
use futures_lite::future;
use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proto::message::{Action, Command, Response};
use proto::time::now_rfc3339;
use proto::{Message, encode};

use super::registry::Conn;
use super::{Hub, HubError, text};
use crate::panel_metrics::Outcome;

/// What a waiter receives.
pub(super) type Answer = Result<Response<'static>, HubError>;

struct Waiter {
    agent_id: String,
    conn_id: u64,
    tx: async_channel::Sender<Answer>,
}

/// Where a response goes.
pub(super) enum Claim {
    /// The waiting command's sender.
    Mine(async_channel::Sender<Answer>),
    /// A command sent to another agent: not this agent's to answer.
    Foreign,
    /// No command is waiting for this id (answered late, or never sent).
    Unmatched,
}

/// In-flight commands by id.
pub(super) struct Waiters {
    map: Mutex<HashMap<String, Waiter>>,
    next_id: AtomicU64,
    /// Random per process, so command ids never repeat across restarts.
    prefix: String,
}

impl Waiters {
    pub fn new() -> Waiters {
        Waiters {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            prefix: proto::jwt::random_id().chars().take(8).collect(),
        }
    }

    fn next_id(&self) -> String {
        format!(
            "cmd_{}_{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Takes the waiter of `id` if it belongs to `agent_id`.
    pub fn claim(&self, id: &str, agent_id: &str) -> Claim {
        let mut map = self.map.lock();
        match map.get(id) {
            Some(w) if w.agent_id == agent_id => map
                .remove(id)
                .map_or(Claim::Unmatched, |w| Claim::Mine(w.tx)),
            Some(_) => Claim::Foreign,
            None => Claim::Unmatched,
        }
    }

    /// Whether a command of `agent_id` waits for the answer `id`.
    pub fn awaits(&self, id: &str, agent_id: &str) -> bool {
        self.map
            .lock()
            .get(id)
            .is_some_and(|w| w.agent_id == agent_id)
    }

    /// Fails every command waiting on connection `conn_id` (their senders are dropped).
    pub fn fail_connection(&self, conn_id: u64) {
        self.map.lock().retain(|_, w| w.conn_id != conn_id);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }
}

/// Removes a waiter when the command future ends (answered, timed out or dropped).
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.waiters.map.lock().remove(self.id);
    }
}

impl Hub {
    /// Sends a command to `agent_id` and waits for its response. A response with
    /// `success: false` is still `Ok`: it is the agent's answer, passed through by the API.
    pub async fn command(
        &self,
        agent_id: &str,
        server_id: Option<&str>,
        action: Action<'static>,
    ) -> Result<Response<'static>, HubError> {
        let started = Instant::now();
        let name = action.known_name();
        let action_str = action.name().to_owned();
        let result = self
            .exchange(agent_id, server_id, action, &action_str)
            .await;
        if let Some(name) = name {
            let outcome = match &result {
                Ok(r) if r.success => Outcome::Ok,
                Ok(_) => Outcome::AgentError,
                Err(e) => e.outcome(),
            };
            self.metrics
                .command_done(name, outcome, started.elapsed().as_secs_f64());
        }
        result
    }

    /// Queues the command on the agent's connection and waits for its waiter to end.
    async fn exchange(
        &self,
        agent_id: &str,
        server_id: Option<&str>,
        action: Action<'static>,
        action_str: &str,
    ) -> Result<Response<'static>, HubError> {
        let Some(conn) = self.registry.get(agent_id) else {
            return Err(HubError::Offline(agent_id.to_owned()));
        };
        let waiters = &self.waiters;
        let id = waiters.next_id();
        let about = match &action {
            Action::CreateServer(c) => Some(&*c.server_id),
            _ => server_id,
        };
        let epoch = about.and_then(|s| self.store.epoch_for(agent_id, s));
        let frame = text(encode(&Message::Command(Command {
            id: Cow::Borrowed(&id),
            timestamp: now_rfc3339().into(),
            agent_id: Some(Cow::Borrowed(agent_id)),
            server_id: server_id.map(Cow::Borrowed),
            epoch,
            action,
        })));
        // The agent would close its socket on a frame over its limit, failing every command
        // in flight; and the socket's write buffer is sized for frames up to this limit.
        let max = self.settings.max_frame;
        if frame.len() > max {
            return Err(HubError::TooLarge {
                action: action_str.to_owned(),
                len: frame.len(),
                max,
            });
        }
        let (tx, rx) = async_channel::bounded(1);
        waiters.map.lock().insert(
            id.clone(),
            Waiter {
                agent_id: agent_id.to_owned(),
                conn_id: conn.id,
                tx,
            },
        );
        let _guard = WaiterGuard { waiters, id: &id };
        // The connection may have gone between the lookup and the insert: its detach
        // would then have missed this waiter.
        if conn.kill.is_triggered() {
            return Err(HubError::Offline(agent_id.to_owned()));
        }
        // The agent's task goes first while this command waits: its writer sends the
        // command and its reader routes the answer ahead of the events fan-out.
        let _urgent = conn.lane.as_ref().map(crate::exec::Lane::raise);
        let timeout = self.settings.command_timeout;
        future::or(send_and_wait(conn, frame, rx, agent_id), async {
            Timer::after(timeout).await;
            Err(HubError::Timeout {
                agent: agent_id.to_owned(),
                action: action_str.to_owned(),
                secs: timeout.as_secs(),
            })
        })
        .await
    }
}

async fn send_and_wait(
    conn: std::sync::Arc<Conn>,
    frame: async_tungstenite::tungstenite::Message,
    rx: async_channel::Receiver<Answer>,
    agent_id: &str,
) -> Answer {
    if conn.queue.push(frame).await.is_err() {
        return Err(HubError::Offline(agent_id.to_owned()));
    }
    drop(conn);
    match rx.recv().await {
        Ok(answer) => answer,
        // The waiter was removed because the connection closed after the command went out.
        Err(_) => Err(HubError::Lost(agent_id.to_owned())),
    }
}
