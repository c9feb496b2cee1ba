//! When each agent was last heard from, kept across disconnects and panel restarts.
//!
//! While connected, the live connection's clock answers (updated on every frame, in memory
//! only). When a connection ends its time moves here and is committed to the store — once
//! per ended connection, never per heartbeat — by whichever task gets the write turn, which
//! takes everything pending: connections that end together (a shutdown, a network cut)
//! share one commit.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use crate::store::Store;

pub(super) struct LastSeen {
    /// Agents no longer connected → when they were last heard from.
    seen: Mutex<HashMap<String, u64>>,
    /// Times of ended connections not yet committed.
    unsaved: Mutex<HashMap<String, u64>>,
    /// One store write at a time.
    saving: smol::lock::Mutex<()>,
    store: Arc<Store>,
}

impl LastSeen {
    pub fn new(store: Arc<Store>) -> LastSeen {
        LastSeen {
            seen: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            saving: smol::lock::Mutex::new(()),
            store,
        }
    }

    /// A connection of `agent_id` ended; `at` is when it was last heard from.
    pub fn ended(&self, agent_id: &str, at: u64) {
        self.seen.lock().insert(agent_id.to_owned(), at);
        let mut unsaved = self.unsaved.lock();
        let slot = unsaved.entry(agent_id.to_owned()).or_insert(at);
        *slot = (*slot).max(at);
    }

    /// The end of the agent's last connection in this process, else what the store kept.
    pub fn get(&self, agent_id: &str) -> Option<u64> {
        if let Some(t) = self.seen.lock().get(agent_id).copied() {
            return Some(t);
        }
        self.store.last_seen(agent_id)
    }

    /// Commits every pending time (off the executor).
    pub async fn save(&self) {
        let _turn = self.saving.lock().await;
        let batch: Vec<(String, u64)> = self.unsaved.lock().drain().collect();
        if batch.is_empty() {
            return;
        }
        let store = self.store.clone();
        let n = batch.len();
        if let Err(e) = smol::unblock(move || store.record_last_seen(&batch)).await {
            log::warn!("cannot record when {n} agent(s) were last seen: {e}");
        }
    }
}
