//! Durable state in redb (`DATA/panel.redb`): agents with their capabilities and token
//! family, servers (id, agent, egg config, desired state), the admin token hash, and when
//! each agent was last seen (written when a connection ends, never per heartbeat).
//!
//! Every write is its own transaction committed with `Durability::Immediate` and returns only
//! after the commit, so an API handler that awaits a write before answering never
//! acknowledges something a `kill -9` could lose. Reads come from an in-memory mirror that is
//! updated after each commit (the hub asks "who owns this server?" for every frame). Methods
//! are synchronous and may fsync: async callers run them through `smol::unblock`.

use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

use proto::rest::Capabilities;

const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Agent id → Unix seconds it was last heard from, as of its last disconnect.
const LAST_SEEN: TableDefinition<&str, u64> = TableDefinition::new("last_seen");
const ADMIN_TOKEN_HASH: &str = "admin_token_sha256";

/// A storage failure. Never shown to API clients beyond "storage error".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Boxed: redb's error is large and this travels through every `Result`.
    #[error("storage: {0}")]
    Db(Box<redb::Error>),
    #[error("storage record `{key}` is corrupt: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("no such agent `{0}`")]
    UnknownAgent(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub capabilities: Capabilities,
    /// Unix seconds.
    pub registered_at: u64,
    pub tokens: TokenFamily,
}

/// The agent's token family: every token issued to it carries `family`; only the refresh
/// token whose `jti` is `refresh_jti` may be used, once. Revocation kills the whole family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenFamily {
    pub family: String,
    pub refresh_jti: String,
    pub revoked: bool,
    /// Unix seconds of the last issue (registration or rotation).
    pub issued_at: u64,
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
#[serde(rename_all = "camelCase")]
pub struct ServerRecord {
    pub server_id: String,
    pub agent_id: String,
    /// The validated egg exactly as the operator sent it.
    pub egg_config: serde_json::Value,
    pub desired_state: DesiredState,
    /// Memory limit in bytes, kept for placement.
    pub memory_bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the family now expects `new_jti`.
    Rotated,
    /// The token was valid once but already used: the family is now revoked.
    ReuseDetected,
    /// The family was already revoked, or belongs to an older registration.
    Revoked,
}

/// The panel's database and its in-memory mirror.
pub struct Store {
    db: Database,
    /// Serialises writers so that the mirror is updated in commit order.
    write: Mutex<()>,
    agents: RwLock<HashMap<String, AgentRecord>>,
    servers: RwLock<HashMap<String, ServerRecord>>,
    last_seen: RwLock<HashMap<String, u64>>,
}

impl Store {
    /// Opens (or creates) `DIR/panel.redb` and loads the mirror.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let db = Database::create(data_dir.join("panel.redb"))?;
        // Make sure every table exists so that read transactions never see "missing table".
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            txn.open_table(AGENTS)?;
            txn.open_table(SERVERS)?;
            txn.open_table(META)?;
            txn.open_table(LAST_SEEN)?;
        }
        txn.commit()?;
        let agents = load(&db, AGENTS)?;
        let servers = load(&db, SERVERS)?;
        let last_seen = {
            let txn = db.begin_read()?;
            let t = txn.open_table(LAST_SEEN)?;
            let mut out = HashMap::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.insert(k.value().to_owned(), v.value());
            }
            out
        };
        Ok(Store {
            db,
            write: Mutex::new(()),
            agents: RwLock::new(agents),
            servers: RwLock::new(servers),
            last_seen: RwLock::new(last_seen),
        })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        let bytes = value.map(|v| serde_json::to_vec(v).expect("records always serialise"));
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut t = txn.open_table(table)?;
            match &bytes {
                Some(b) => {
                    t.insert(key, b.as_slice())?;
                }
                None => {
                    t.remove(key)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A durability barrier for shutdown: an empty commit with `Durability::Immediate`
    /// (every earlier write was already committed the same way).
    pub fn sync(&self) -> Result<(), StoreError> {
        let _w = self.write.lock();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.commit()?;
        Ok(())
    }

    // --- admin token ---------------------------------------------------------------------

    pub fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get(ADMIN_TOKEN_HASH)?
            .and_then(|v| v.value().try_into().ok()))
    }

    pub fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        let _w = self.write.lock();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut t = txn.open_table(META)?;
            t.insert(ADMIN_TOKEN_HASH, hash.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    // --- agents --------------------------------------------------------------------------

    pub fn put_agent(&self, rec: &AgentRecord) -> Result<(), StoreError> {
        let _w = self.write.lock();
        self.put(AGENTS, &rec.id, Some(rec))?;
        self.agents.write().insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    pub fn agent(&self, id: &str) -> Option<AgentRecord> {
        self.agents.read().get(id).cloned()
    }

    /// Every agent, ordered by registration time then id.
    pub fn agents(&self) -> Vec<AgentRecord> {
        let mut v: Vec<_> = self.agents.read().values().cloned().collect();
        v.sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
        v
    }

    /// Whether tokens of `family` are still honoured for `agent_id`.
    pub fn family_active(&self, agent_id: &str, family: &str) -> bool {
        self.agents
            .read()
            .get(agent_id)
            .is_some_and(|a| !a.tokens.revoked && a.tokens.family == family)
    }

    /// Presents refresh token `jti` of `family`: if it is the current one, `new_jti` becomes
    /// current (durably) and [`Rotation::Rotated`] is returned; if it is an older one the whole
    /// family is revoked (durably).
    pub fn rotate_refresh(
        &self,
        agent_id: &str,
        family: &str,
        jti: &str,
        new_jti: &str,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let _w = self.write.lock();
        let Some(mut rec) = self.agent(agent_id) else {
            return Err(StoreError::UnknownAgent(agent_id.to_owned()));
        };
        if rec.tokens.revoked || rec.tokens.family != family {
            return Ok(Rotation::Revoked);
        }
        let outcome = if rec.tokens.refresh_jti == jti {
            rec.tokens.refresh_jti = new_jti.to_owned();
            rec.tokens.issued_at = now;
            Rotation::Rotated
        } else {
            rec.tokens.revoked = true;
            Rotation::ReuseDetected
        };
        self.put(AGENTS, &rec.id, Some(&rec))?;
        self.agents.write().insert(rec.id.clone(), rec);
        Ok(outcome)
    }

    /// When `agent_id` was last heard from, as of its last recorded disconnect.
    pub fn last_seen(&self, agent_id: &str) -> Option<u64> {
        self.last_seen.read().get(agent_id).copied()
    }

    /// Records last-seen times (agent id, Unix seconds) in one commit, so that many agents
    /// dropping at once (a panel shutdown, a network cut) cost one fsync, not one each. A
    /// time older than the stored one is ignored; nothing is committed if nothing changes.
    pub fn record_last_seen(&self, seen: &[(String, u64)]) -> Result<(), StoreError> {
        let _w = self.write.lock();
        let newer: Vec<&(String, u64)> = {
            let known = self.last_seen.read();
            seen.iter()
                .filter(|(id, t)| known.get(id).is_none_or(|old| old < t))
                .collect()
        };
        if newer.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut t = txn.open_table(LAST_SEEN)?;
            for (id, at) in &newer {
                t.insert(id.as_str(), *at)?;
            }
        }
        txn.commit()?;
        let mut known = self.last_seen.write();
        for (id, at) in newer {
            let slot = known.entry(id.clone()).or_insert(*at);
            *slot = (*slot).max(*at);
        }
        Ok(())
    }

    // --- servers -------------------------------------------------------------------------

    pub fn put_server(&self, rec: &ServerRecord) -> Result<(), StoreError> {
        let _w = self.write.lock();
        self.put(SERVERS, &rec.server_id, Some(rec))?;
        self.servers
            .write()
            .insert(rec.server_id.clone(), rec.clone());
        Ok(())
    }

    /// Inserts `rec` unless a server with that id exists; `false` when it does.
    pub fn insert_server(&self, rec: &ServerRecord) -> Result<bool, StoreError> {
        let _w = self.write.lock();
        if self.servers.read().contains_key(&rec.server_id) {
            return Ok(false);
        }
        self.put(SERVERS, &rec.server_id, Some(rec))?;
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
        let _w = self.write.lock();
        let Some(mut rec) = self.server(server_id) else {
            return Ok(());
        };
        if rec.desired_state == state {
            return Ok(());
        }
        rec.desired_state = state;
        self.put(SERVERS, server_id, Some(&rec))?;
        self.servers.write().insert(server_id.to_owned(), rec);
        Ok(())
    }

    pub fn remove_server(&self, server_id: &str) -> Result<(), StoreError> {
        let _w = self.write.lock();
        self.put::<ServerRecord>(SERVERS, server_id, None)?;
        self.servers.write().remove(server_id);
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

    /// Whether `server_id` is placed on `agent_id` (the hub's trust check).
    pub fn owns(&self, agent_id: &str, server_id: &str) -> bool {
        self.servers
            .read()
            .get(server_id)
            .is_some_and(|s| s.agent_id == agent_id)
    }

    /// Sum of the memory limits of the servers placed on each agent.
    /// Per agent, the CPU limits (millicores) of the servers placed on it, read from the
    /// stored eggs (which were validated when they were stored).
    pub fn cpu_committed(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for s in self.servers.read().values() {
            let cpu = &s.egg_config["limits"]["cpu"];
            let text = match cpu {
                serde_json::Value::String(t) => t.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if let Ok(m) = proto::quantity::MilliCpu::parse(&text) {
                *out.entry(s.agent_id.clone()).or_default() += u64::from(m.0);
            }
        }
        out
    }

    pub fn memory_committed(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for s in self.servers.read().values() {
            *out.entry(s.agent_id.clone()).or_default() += s.memory_bytes;
        }
        out
    }
}

fn load<T: serde::de::DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
) -> Result<HashMap<String, T>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(table)?;
    let mut out = HashMap::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let key = k.value().to_owned();
        let rec = serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
            key: key.clone(),
            source,
        })?;
        out.insert(key, rec);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_dir(tag: &str) -> std::path::PathBuf {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("panel-{tag}-{}-{nanos}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub(crate) fn agent(id: &str, mem: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            name: format!("node-{id}"),
            hostname: "10.0.0.1".into(),
            port: 8080,
            capabilities: Capabilities {
                max_memory: mem.into(),
                max_cpu_cores: 4,
                docker_version: "24.0.0".into(),
                supported_architectures: vec!["amd64".into()],
            },
            registered_at: 1,
            tokens: TokenFamily {
                family: "fam1".into(),
                refresh_jti: "r1".into(),
                revoked: false,
                issued_at: 1,
            },
        }
    }

    pub(crate) fn server(id: &str, agent: &str, mem_mib: u64) -> ServerRecord {
        ServerRecord {
            server_id: id.into(),
            agent_id: agent.into(),
            egg_config: serde_json::json!({"name": "x"}),
            desired_state: DesiredState::Created,
            memory_bytes: mem_mib << 20,
            created_at: 2,
        }
    }

    #[test]
    fn reopen_after_drop_keeps_everything() {
        let dir = temp_dir("store-reopen");
        {
            let s = Store::open(&dir).unwrap();
            s.set_admin_token_hash(&[7; 32]).unwrap();
            s.put_agent(&agent("a1", "8g")).unwrap();
            assert!(s.insert_server(&server("srv-1", "a1", 1024)).unwrap());
            assert!(s.insert_server(&server("srv-2", "a1", 512)).unwrap());
            s.set_desired_state("srv-1", DesiredState::Running).unwrap();
            s.remove_server("srv-2").unwrap();
            assert_eq!(
                s.rotate_refresh("a1", "fam1", "r1", "r2", 5).unwrap(),
                Rotation::Rotated
            );
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.admin_token_hash().unwrap(), Some([7; 32]));
        let a = s.agent("a1").unwrap();
        assert_eq!(a.tokens.refresh_jti, "r2");
        assert_eq!(a.tokens.issued_at, 5);
        assert_eq!(a.capabilities.max_memory, "8g");
        let srv = s.server("srv-1").unwrap();
        assert_eq!(srv.desired_state, DesiredState::Running);
        assert_eq!(srv.agent_id, "a1");
        assert!(s.server("srv-2").is_none());
        assert_eq!(s.servers().len(), 1);
        assert!(s.owns("a1", "srv-1"));
        assert!(!s.owns("a2", "srv-1"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn last_seen_is_durable_batched_and_never_goes_back() {
        let dir = temp_dir("store-seen");
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(s.last_seen("a1"), None);
            s.record_last_seen(&[("a1".into(), 100), ("a2".into(), 50)])
                .unwrap();
            // An older time (a replaced connection finishing late) does not win.
            s.record_last_seen(&[("a1".into(), 90), ("a2".into(), 60)])
                .unwrap();
            assert_eq!(s.last_seen("a1"), Some(100));
            assert_eq!(s.last_seen("a2"), Some(60));
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.last_seen("a1"), Some(100));
        assert_eq!(s.last_seen("a2"), Some(60));
        assert_eq!(s.last_seen("a3"), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn duplicate_server_ids_are_refused() {
        let dir = temp_dir("store-dup");
        let s = Store::open(&dir).unwrap();
        assert!(s.insert_server(&server("srv-1", "a1", 1)).unwrap());
        assert!(!s.insert_server(&server("srv-1", "a2", 1)).unwrap());
        assert_eq!(s.server("srv-1").unwrap().agent_id, "a1");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn refresh_reuse_revokes_the_family_durably() {
        let dir = temp_dir("store-reuse");
        {
            let s = Store::open(&dir).unwrap();
            s.put_agent(&agent("a1", "8g")).unwrap();
            assert_eq!(
                s.rotate_refresh("a1", "fam1", "r1", "r2", 2).unwrap(),
                Rotation::Rotated
            );
            // r1 again: it was valid once, so this is theft or a replay.
            assert_eq!(
                s.rotate_refresh("a1", "fam1", "r1", "r3", 3).unwrap(),
                Rotation::ReuseDetected
            );
            assert!(!s.family_active("a1", "fam1"));
            // Even the current token is dead now.
            assert_eq!(
                s.rotate_refresh("a1", "fam1", "r2", "r4", 4).unwrap(),
                Rotation::Revoked
            );
        }
        let s = Store::open(&dir).unwrap();
        assert!(!s.family_active("a1", "fam1"));
        assert!(matches!(
            s.rotate_refresh("nobody", "f", "j", "k", 1),
            Err(StoreError::UnknownAgent(_))
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn memory_committed_sums_per_agent() {
        let dir = temp_dir("store-mem");
        let s = Store::open(&dir).unwrap();
        s.put_server(&server("s1", "a1", 100)).unwrap();
        s.put_server(&server("s2", "a1", 200)).unwrap();
        s.put_server(&server("s3", "a2", 50)).unwrap();
        let m = s.memory_committed();
        assert_eq!(m["a1"], 300 << 20);
        assert_eq!(m["a2"], 50 << 20);
        std::fs::remove_dir_all(dir).ok();
    }
}
