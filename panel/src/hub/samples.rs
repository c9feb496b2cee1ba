//! `resource_update` events, already trusted and forwarded, decoded once more and copied
//! into the resource history (`crate::history`). Only this event kind pays the full decode.

use proto::Decoder;
use proto::message::{EventKind, Message};
use proto::time::unix_now;

use super::Hub;

impl Hub {
    /// `agent_id` sent `bytes`: only figures of its own servers count (the data's
    /// `serverId`, which the envelope check does not cover, is checked here).
    pub(super) fn sample(&self, agent_id: &str, decoder: &mut Decoder, bytes: &[u8]) {
        if let Ok(Message::Event(e)) = decoder.message(bytes)
            && let EventKind::ResourceUpdate(u) = &e.kind
            && self.store.owns(agent_id, &u.server_id)
        {
            self.nodes.history.server_sample(u, unix_now());
        }
    }
}
