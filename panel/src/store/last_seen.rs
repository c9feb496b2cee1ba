//! When each agent was last heard from, as of its last disconnect (written when a connection
//! ends, never per heartbeat).

use parking_lot::RwLock;
use redb::{ReadableTable, TableDefinition};
use std::collections::HashMap;

use super::txn::Db;
use super::{Store, StoreError};

/// Agent id → Unix seconds it was last heard from.
pub(super) const LAST_SEEN: TableDefinition<&str, u64> = TableDefinition::new("last_seen");

/// The in-memory copy of [`LAST_SEEN`].
pub(super) type Mirror = RwLock<HashMap<String, u64>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    let txn = db.read()?;
    let t = txn.open_table(LAST_SEEN)?;
    let mut out = HashMap::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.insert(k.value().to_owned(), v.value());
    }
    Ok(RwLock::new(out))
}

impl Store {
    /// When `agent_id` was last heard from, as of its last recorded disconnect.
    pub fn last_seen(&self, agent_id: &str) -> Option<u64> {
        self.last_seen.read().get(agent_id).copied()
    }

    /// Records last-seen times (agent id, Unix seconds) in one commit, so that many agents
    /// dropping at once (a panel shutdown, a network cut) cost one fsync, not one each. A
    /// time older than the stored one is ignored; nothing is committed if nothing changes.
    pub fn record_last_seen(&self, seen: &[(String, u64)]) -> Result<(), StoreError> {
        let w = self.db.writer();
        let newer: Vec<&(String, u64)> = {
            let known = self.last_seen.read();
            seen.iter()
                .filter(|(id, t)| known.get(id).is_none_or(|old| old < t))
                .collect()
        };
        if newer.is_empty() {
            return Ok(());
        }
        w.commit(|txn| {
            let mut t = txn.open_table(LAST_SEEN)?;
            for (id, at) in &newer {
                t.insert(id.as_str(), *at)?;
            }
            Ok(())
        })?;
        let mut known = self.last_seen.write();
        for (id, at) in newer {
            let slot = known.entry(id.clone()).or_insert(*at);
            *slot = (*slot).max(*at);
        }
        Ok(())
    }
}
