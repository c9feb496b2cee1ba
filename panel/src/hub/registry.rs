//! The registry of live agent connections: one [`Conn`] per agent id, replaced by a newer
//! connection of the same agent. Map operations only; the lock is never held across an
//! `.await`.

use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::message::PongData;
use proto::time::unix_now;

use super::kill::Kill;
use crate::outbox::Outbox;

/// One live agent connection.
pub(super) struct Conn {
    pub id: u64,
    pub agent_id: String,
    /// The token family it authenticated with (checked again at every heartbeat).
    pub family: String,
    /// Frames for the writer.
    pub queue: Outbox<WsMessage>,
    /// Fired to end the connection (reader, writer and heartbeat all watch it).
    pub kill: Kill,
    close_frame: Mutex<Option<CloseFrame>>,
    /// Number of the last heartbeat ping sent (`hb_<n>`).
    pub pinged: AtomicU64,
    /// Number of the last ping answered by a pong with its id.
    pub answered: AtomicU64,
    /// Unix seconds of the last frame received.
    pub last_seen: AtomicU64,
    pub connected_at: u64,
    /// The data of the last pong.
    pub pong: Mutex<Option<PongData<'static>>>,
    /// The priority of the connection's task (raised while a command waits for this agent).
    pub lane: Option<crate::exec::Lane>,
}

impl Conn {
    pub fn new(id: u64, agent_id: String, family: String, queue: usize) -> Conn {
        let now = unix_now();
        Conn {
            id,
            agent_id,
            family,
            queue: Outbox::sparse(queue),
            kill: Kill::new(),
            close_frame: Mutex::new(None),
            pinged: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            last_seen: AtomicU64::new(now),
            connected_at: now,
            pong: Mutex::new(None),
            // Built inside the connection's task: its lane is the current one.
            lane: crate::exec::current_lane(),
        }
    }

    /// Ends the connection with `code`/`reason` (the first reason wins).
    pub fn kick(&self, code: CloseCode, reason: &str) {
        {
            let mut f = self.close_frame.lock();
            if f.is_none() && !self.kill.is_triggered() {
                *f = Some(CloseFrame {
                    code,
                    reason: reason.to_owned().into(),
                });
            }
        }
        self.kill.trigger();
    }

    /// The close frame to send, once (the reason given to the first [`kick`](Self::kick)).
    pub fn take_close_frame(&self) -> Option<CloseFrame> {
        self.close_frame.lock().take()
    }

    pub fn touch(&self) {
        self.last_seen.store(unix_now(), Ordering::Relaxed);
    }

    /// Pings sent and not answered since the last answered one.
    pub fn missed(&self) -> u64 {
        let pinged = self.pinged.load(Ordering::Relaxed);
        pinged.saturating_sub(self.answered.load(Ordering::Relaxed))
    }

    /// Queues a frame if there is room; used for frames that may be lost (error replies,
    /// pings — a ping lost to a full queue simply counts as missed).
    pub fn try_queue(&self, frame: WsMessage) {
        let _ = self.queue.try_push(frame);
    }
}

/// What the operator API shows about a connected agent.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAgent {
    pub connected_at: u64,
    pub last_seen: u64,
    pub pong: Option<PongData<'static>>,
}

/// Agent id → its live connection.
#[derive(Default)]
pub(super) struct Registry {
    conns: RwLock<HashMap<String, Arc<Conn>>>,
    next_conn: AtomicU64,
}

impl Registry {
    /// A fresh connection id (never reused in this process).
    pub fn next_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self, agent_id: &str) -> Option<Arc<Conn>> {
        self.conns.read().get(agent_id).cloned()
    }

    pub fn contains(&self, agent_id: &str) -> bool {
        self.conns.read().contains_key(agent_id)
    }

    pub fn len(&self) -> usize {
        self.conns.read().len()
    }

    /// Makes `conn` its agent's live connection; returns the one it replaces.
    pub fn attach(&self, conn: Arc<Conn>) -> Option<Arc<Conn>> {
        self.conns.write().insert(conn.agent_id.clone(), conn)
    }

    /// Removes `conn` if it is still its agent's live connection (a replaced connection
    /// ending late must not remove its successor).
    pub fn remove(&self, conn: &Conn) {
        let mut conns = self.conns.write();
        if conns.get(&conn.agent_id).is_some_and(|c| c.id == conn.id) {
            conns.remove(&conn.agent_id);
        }
    }

    pub fn live(&self, agent_id: &str) -> Option<LiveAgent> {
        let c = self.get(agent_id)?;
        let pong = c.pong.lock().clone();
        Some(LiveAgent {
            connected_at: c.connected_at,
            last_seen: c.last_seen.load(Ordering::Relaxed),
            pong,
        })
    }

    pub fn last_seen(&self, agent_id: &str) -> Option<u64> {
        self.conns
            .read()
            .get(agent_id)
            .map(|c| c.last_seen.load(Ordering::Relaxed))
    }

    /// Kicks every live connection (shutdown).
    pub fn kick_all(&self, code: CloseCode, reason: &str) {
        for c in self.conns.read().values() {
            c.kick(code, reason);
        }
    }
}
