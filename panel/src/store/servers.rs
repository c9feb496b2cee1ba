//! Servers the panel placed on agents: where, with which egg, in which desired state, and
//! the limits placement needs (memory and CPU, as numbers — never re-read from the egg).

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const SERVERS: JsonTable = JsonTable::new("servers");

/// The in-memory copy of [`SERVERS`] (the hub asks "who owns this server?" for every frame).
pub(super) type Mirror = RwLock<HashMap<String, ServerRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(SERVERS)?))
}

/// What the operator wants a server to be; the agent reports what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Created (or being created), never started.
    Created,
    Running,
    Stopped,
}

/// A server the panel placed on an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "Stored")]
pub struct ServerRecord {
    pub server_id: String,
    pub agent_id: String,
    /// The validated egg exactly as the operator sent it.
    pub egg_config: serde_json::Value,
    pub desired_state: DesiredState,
    /// Memory limit in bytes, kept for placement.
    pub memory_bytes: u64,
    /// CPU limit in millicores, kept for placement.
    pub cpu_millis: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// The library egg it was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egg_id: Option<String>,
    /// Incremented on every move to another agent (transfer): the start of fencing.
    #[serde(default)]
    pub epoch: u64,
    /// The other agent of a transfer in progress, which may also speak for the server (the
    /// hub's trust check): the target until the move is committed, then the source until
    /// its copy is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<String>,
    /// Failover: opted in or not, copies left behind on dead nodes and those fenced off.
    #[serde(default)]
    pub failover: FailoverInfo,
    /// How far the transfer in progress got, written with `handover`, so that a panel
    /// restarted in its middle can undo or finish it (`api/move_recovery.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<Moving>,
    /// The labels its node must carry (`"constraints"` at create): transfers and failovers
    /// place it under them too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, String>,
}

/// A transfer in progress, as the panel must know it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Moving {
    pub phase: MovePhase,
    /// The server ran on the source when the move began (so an undo starts it again).
    pub was_running: bool,
    /// The agent it moves to, until the commit: its memory and CPU are counted there too,
    /// so that placement does not give them away meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Before or after the commit point of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MovePhase {
    /// Stopping and backing up on the source; no target copy yet (`handover` unset).
    Preparing,
    /// `agentId` is still the source; `handover` (the target) may hold a partial copy.
    Copying,
    /// Committed: `agentId` is the target; `handover` (the source) still has its old copy.
    Removing,
}

/// A server's failover state (see `crate::failover`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverInfo {
    /// `"failover": true`: recreated elsewhere from its latest backup when its node dies.
    #[serde(default)]
    pub enabled: bool,
    /// Copies left on dead nodes by a failover, to quarantine when those nodes return.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleCopy>,
    /// Copies that were quarantined on a returning node (newest last, bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Quarantined>,
}

/// Most quarantine entries a record keeps (the oldest go first).
pub const MAX_QUARANTINED: usize = 32;

/// A copy of the server on `agent_id` for an assignment older than the record's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleCopy {
    pub agent_id: String,
    /// The epoch that copy was for.
    pub epoch: u64,
}

/// A stale copy the returning node stopped and set aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    pub agent_id: String,
    pub epoch: u64,
    /// Unix seconds.
    pub at: u64,
    /// Where the node keeps its files (`DATA/quarantine/...`), as the agent answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A server record as stored, including records written before `cpuMillis` existed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    server_id: String,
    agent_id: String,
    egg_config: serde_json::Value,
    desired_state: DesiredState,
    memory_bytes: u64,
    cpu_millis: Option<u64>,
    created_at: u64,
    #[serde(default)]
    egg_id: Option<String>,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    handover: Option<String>,
    #[serde(default)]
    moving: Option<Moving>,
    #[serde(default)]
    failover: FailoverInfo,
    #[serde(default)]
    constraints: BTreeMap<String, String>,
}

impl From<Stored> for ServerRecord {
    fn from(s: Stored) -> ServerRecord {
        let cpu_millis = s
            .cpu_millis
            .unwrap_or_else(|| egg_cpu_millis(&s.egg_config));
        ServerRecord {
            server_id: s.server_id,
            agent_id: s.agent_id,
            egg_config: s.egg_config,
            desired_state: s.desired_state,
            memory_bytes: s.memory_bytes,
            cpu_millis,
            created_at: s.created_at,
            egg_id: s.egg_id,
            epoch: s.epoch,
            handover: s.handover,
            moving: s.moving,
            failover: s.failover,
            constraints: s.constraints,
        }
    }
}

/// The CPU limit of a stored egg (validated when it was stored), for records older than the
/// `cpuMillis` field; 0 if it cannot be read.
fn egg_cpu_millis(egg: &serde_json::Value) -> u64 {
    let text = match &egg["limits"]["cpu"] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    proto::quantity::MilliCpu::parse(&text).map_or(0, |m| u64::from(m.0))
}

impl ServerRecord {
    /// A transfer is in progress, or was when the panel stopped (its mark is set).
    pub fn in_transfer(&self) -> bool {
        self.handover.is_some() || self.moving.is_some()
    }

    /// A copy may run on a transfer's target (before the commit): the source must not start.
    pub fn move_uncommitted(&self) -> bool {
        match &self.moving {
            Some(m) => m.phase != MovePhase::Removing,
            None => self.handover.is_some(),
        }
    }
}

impl Store {
    pub fn put_server(&self, rec: &ServerRecord) -> Result<(), StoreError> {
        let w = self.db.writer();
        w.commit(|txn| put_json(txn, SERVERS, &rec.server_id, rec))?;
        self.servers
            .write()
            .insert(rec.server_id.clone(), rec.clone());
        Ok(())
    }

    /// Inserts `rec` unless a server with that id exists; `false` when it does.
    pub fn insert_server(&self, rec: &ServerRecord) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if self.servers.read().contains_key(&rec.server_id) {
            return Ok(false);
        }
        w.commit(|txn| put_json(txn, SERVERS, &rec.server_id, rec))?;
        self.servers
            .write()
            .insert(rec.server_id.clone(), rec.clone());
        Ok(true)
    }

    pub fn set_desired_state(
        &self,
        server_id: &str,
        state: DesiredState,
    ) -> Result<(), StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.server(server_id) else {
            return Ok(());
        };
        if rec.desired_state == state {
            return Ok(());
        }
        rec.desired_state = state;
        w.commit(|txn| put_json(txn, SERVERS, server_id, &rec))?;
        self.servers.write().insert(server_id.to_owned(), rec);
        Ok(())
    }

    /// Applies `f` to the record of `server_id` and stores it, atomically with respect to
    /// other writers; `None` when there is no such server.
    pub fn update_server<T>(
        &self,
        server_id: &str,
        f: impl FnOnce(&mut ServerRecord) -> T,
    ) -> Result<Option<T>, StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.server(server_id) else {
            return Ok(None);
        };
        let out = f(&mut rec);
        w.commit(|txn| put_json(txn, SERVERS, server_id, &rec))?;
        self.servers.write().insert(server_id.to_owned(), rec);
        Ok(Some(out))
    }

    pub fn remove_server(&self, server_id: &str) -> Result<(), StoreError> {
        let w = self.db.writer();
        w.commit(|txn| {
            remove(txn, SERVERS, server_id)?;
            Store::forget_access(txn, server_id)
        })?;
        self.servers.write().remove(server_id);
        self.access.write().remove(server_id);
        Ok(())
    }

    pub fn server(&self, id: &str) -> Option<ServerRecord> {
        self.servers.read().get(id).cloned()
    }

    /// Every server, ordered by creation time then id.
    pub fn servers(&self) -> Vec<ServerRecord> {
        let mut v: Vec<_> = self.servers.read().values().cloned().collect();
        v.sort_by(|a, b| (a.created_at, &a.server_id).cmp(&(b.created_at, &b.server_id)));
        v
    }

    /// The servers `f` selects (only those are copied), ordered like [`Store::servers`].
    pub fn servers_where(&self, f: impl Fn(&ServerRecord) -> bool) -> Vec<ServerRecord> {
        let mut v: Vec<_> = self
            .servers
            .read()
            .values()
            .filter(|s| f(s))
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.server_id).cmp(&(b.created_at, &b.server_id)));
        v
    }

    /// Whether any server satisfies `f` (nothing copied).
    pub fn any_server(&self, f: impl Fn(&ServerRecord) -> bool) -> bool {
        self.servers.read().values().any(f)
    }

    /// Whether `server_id` is placed on `agent_id`, or `agent_id` is the other end of its
    /// transfer in progress (the hub's trust check).
    pub fn owns(&self, agent_id: &str, server_id: &str) -> bool {
        self.servers
            .read()
            .get(server_id)
            .is_some_and(|s| s.agent_id == agent_id || s.handover.as_deref() == Some(agent_id))
    }

    /// Whether `server_id` is placed on `agent_id` (not merely the other end of a transfer).
    pub fn placed_on(&self, agent_id: &str, server_id: &str) -> bool {
        self.servers
            .read()
            .get(server_id)
            .is_some_and(|s| s.agent_id == agent_id)
    }

    /// The epoch a command to `agent_id` about `server_id` carries (fencing): the record's,
    /// one more for the other end of a transfer in progress (the target's new copy is
    /// created for the next epoch; the source's old copy is older still). `None` for a
    /// server the panel does not know.
    pub fn epoch_for(&self, agent_id: &str, server_id: &str) -> Option<u64> {
        let servers = self.servers.read();
        let s = servers.get(server_id)?;
        let other_end = s.handover.as_deref() == Some(agent_id) && s.agent_id != agent_id;
        Some(s.epoch.saturating_add(u64::from(other_end)))
    }

    /// Per agent, the sum of the memory limits (bytes) of the servers placed on it.
    pub fn memory_committed(&self) -> HashMap<String, u64> {
        self.committed(|s| s.memory_bytes)
    }

    /// Per agent, the sum of the CPU limits (millicores) of the servers placed on it.
    pub fn cpu_committed(&self) -> HashMap<String, u64> {
        self.committed(|s| s.cpu_millis)
    }

    /// Per agent, `of` summed over the servers placed on it and those moving to it.
    fn committed(&self, of: impl Fn(&ServerRecord) -> u64) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for s in self.servers.read().values() {
            // A transfer names its target in `moving`; a failover marks only `handover`.
            let target = match &s.moving {
                Some(m) => m.target.as_ref(),
                None => s.handover.as_ref(),
            };
            for agent in std::iter::once(&s.agent_id).chain(target) {
                let sum = out.entry(agent.clone()).or_default();
                *sum = sum.saturating_add(of(s));
            }
        }
        out
    }
}
