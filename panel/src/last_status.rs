//! Each server's last-known status, kept in memory from its agent's `server_status_changed`
//! events and `get_status` answers, so `GET /api/servers` can say how every server was
//! last seen without asking each agent (the dashboard would otherwise ask them one by one).
//!
//! It is a memory of what was said, not the truth: after a panel restart a server has no
//! status until its agent says something, and an agent that went away leaves the status it
//! last reported (the API shows `agentOnline` beside it). Bounded by the servers the panel
//! knows: only servers their agent owns are recorded, and a deleted server is forgotten.

use parking_lot::Mutex;
use std::collections::HashMap;

use proto::message::ServerState;

/// A status and when it was learnt (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub status: ServerState,
    pub at: u64,
}

#[derive(Default)]
pub struct LastStatus {
    by_server: Mutex<HashMap<String, Seen>>,
}

impl LastStatus {
    /// Records `status` of `server_id` (the caller checked the reporting agent owns it).
    pub fn set(&self, server_id: &str, status: ServerState, at: u64) {
        let seen = Seen { status, at };
        let mut map = self.by_server.lock();
        match map.get_mut(server_id) {
            Some(slot) => *slot = seen,
            None => {
                map.insert(server_id.to_owned(), seen);
            }
        }
    }

    pub fn get(&self, server_id: &str) -> Option<Seen> {
        self.by_server.lock().get(server_id).copied()
    }

    /// A deleted server.
    pub fn forget(&self, server_id: &str) {
        self.by_server.lock().remove(server_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_and_forgets() {
        let s = LastStatus::default();
        assert_eq!(s.get("a"), None);
        s.set("a", ServerState::Starting, 1);
        s.set("a", ServerState::Running, 2);
        s.set("b", ServerState::Stopped, 3);
        assert_eq!(
            s.get("a"),
            Some(Seen {
                status: ServerState::Running,
                at: 2
            })
        );
        s.forget("a");
        assert_eq!(s.get("a"), None);
        assert_eq!(s.get("b").map(|x| x.status), Some(ServerState::Stopped));
    }
}
