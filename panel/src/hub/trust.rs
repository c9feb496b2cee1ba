//! What an agent is trusted with: only itself and its own servers.
//!
//! A frame that names another agent, or an event or response about a server placed on
//! another agent, is dropped and counted (`frames_foreign`) — one compromised node must not
//! be able to speak for another. A response to another agent's command is refused the same
//! way where the waiter is claimed ([`super::waiters::Claim::Foreign`]).

use proto::Envelope;
use proto::message::MessageType;

use crate::store::Store;

/// Whether `agent_id` may send a frame with this envelope.
pub(super) fn trusted(store: &Store, agent_id: &str, env: &Envelope<'_>) -> bool {
    if env.agent_id.as_deref().is_some_and(|a| a != agent_id) {
        return false;
    }
    let about_a_server = matches!(env.kind, MessageType::Event | MessageType::Response);
    !about_a_server
        || env
            .server_id
            .as_deref()
            .is_none_or(|s| store.owns(agent_id, s))
}
