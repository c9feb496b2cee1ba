//! `resource_update` and `server_status_changed` events, already trusted and forwarded,
//! decoded once more: figures go into the resource history (`crate::history`), statuses
//! into the last-known status (`crate::last_status`). Only these two event kinds pay the
//! full decode (status changes are rare; samples come every few seconds per server).

use proto::Decoder;
use proto::message::{EventKind, Message, ServerState};
use proto::time::unix_now;

use super::Hub;

impl Hub {
    /// `agent_id` sent `bytes`: only events of its own servers count (the data's
    /// `serverId`, which the envelope check does not cover, is checked here).
    pub(super) fn sample(&self, agent_id: &str, decoder: &mut Decoder, bytes: &[u8]) {
        let Ok(Message::Event(e)) = decoder.message(bytes) else {
            return;
        };
        match &e.kind {
            EventKind::ResourceUpdate(u) if self.store.owns(agent_id, &u.server_id) => {
                self.nodes.history.server_sample(u, unix_now());
            }
            // During a transfer both ends speak for the server: the target's new copy
            // (starting, running) counts, but not a copy's removal at the end it leaves.
            EventKind::ServerStatusChanged(s)
                if self.store.owns(agent_id, &s.server_id)
                    && (s.current_status != ServerState::Deleted
                        || self.store.placed_on(agent_id, &s.server_id)) =>
            {
                self.nodes
                    .statuses
                    .set(&s.server_id, s.current_status, unix_now());
            }
            _ => {}
        }
    }
}
