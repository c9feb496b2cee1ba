//! Durable state in redb (`DATA/panel.redb`), one module per kind of record over one shared
//! transaction layer ([`txn`]):
//!
//! - [`agents`]: registered agents, their capabilities and token family;
//! - [`eggs`]: the egg library (imported Pterodactyl/Pelican eggs and our own);
//! - [`servers`]: servers placed on agents (egg, desired state, memory and CPU limits);
//! - [`history`]: resource history rows (servers and nodes), read back at start-up;
//! - [`last_seen`]: when each agent was last heard from (written when a connection ends);
//! - [`meta`]: panel-wide values (the admin token's hash);
//! - [`users`], [`sessions`], [`api_keys`], [`reg_tokens`]: people, their logins, their
//!   script keys and agent registration tokens (secrets only as SHA-256 or Argon2id);
//! - [`access`]: each server's owner and subusers with their rights.

//! - [`backups`]: stored backups (size, SHA-256) and per-server backup schedules.
//!
//! Every write is its own transaction committed with `Durability::Immediate` and returns only
//! after the commit, so an API handler that awaits a write before answering never
//! acknowledges something a `kill -9` could lose. Reads come from in-memory mirrors updated
//! after each commit under the same writer turn. Methods are synchronous and may fsync:
//! async callers run them through `smol::unblock`.
//!
//! A new kind of record is a new module: its table, its mirror (if it is read on a hot
//! path), an `impl Store` block with its operations, and one line in [`Store::open`].

mod access;
mod agents;
mod api_keys;

mod backups;
mod eggs;
mod history;
mod last_seen;
mod meta;
mod reg_tokens;
mod servers;
mod sessions;
mod txn;
mod users;

pub use access::ServerAccess;
pub use agents::{AgentRecord, Rotation, TokenFamily};
pub use api_keys::ApiKeyRecord;

pub use backups::{BackupRecord, Schedule};
pub use eggs::EggRecord;
pub use servers::{
    DesiredState, FailoverInfo, MAX_QUARANTINED, MovePhase, Moving, Quarantined, ServerRecord,
    StaleCopy,
};
pub use sessions::{SessionRecord, TOUCH_EVERY};
pub use users::UserRecord;

use std::path::Path;

use txn::Db;

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
    #[error("storage record `{key}` cannot be encoded: {source}")]
    Encode {
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

/// The panel's database and its in-memory mirrors.
pub struct Store {
    db: Db,
    agents: agents::Mirror,
    eggs: eggs::Mirror,
    servers: servers::Mirror,
    last_seen: last_seen::Mirror,
    users: users::Mirror,
    sessions: sessions::Mirror,
    api_keys: api_keys::Mirror,
    access: access::Mirror,

    backups: backups::Mirror,
}

impl Store {
    /// Opens (or creates) `DIR/panel.redb` and loads the mirrors.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let db = Db::open(&data_dir.join("panel.redb"))?;
        // Every table exists, so that read transactions never see "missing table".
        db.writer().commit(|txn| {
            txn.open_table(agents::AGENTS)?;
            txn.open_table(eggs::EGGS)?;
            txn.open_table(servers::SERVERS)?;
            txn.open_table(meta::META)?;
            txn.open_table(last_seen::LAST_SEEN)?;
            txn.open_table(history::HISTORY)?;
            txn.open_table(users::USERS)?;
            txn.open_table(sessions::SESSIONS)?;
            txn.open_table(api_keys::API_KEYS)?;
            txn.open_table(reg_tokens::REG_TOKENS)?;
            txn.open_table(access::ACCESS)?;

            txn.open_table(backups::BACKUPS)?;
            txn.open_table(backups::SCHEDULES)?;
            Ok(())
        })?;
        Ok(Store {
            agents: agents::load(&db)?,
            eggs: eggs::load(&db)?,
            servers: servers::load(&db)?,
            last_seen: last_seen::load(&db)?,
            users: users::load(&db)?,
            sessions: sessions::load(&db)?,
            api_keys: api_keys::load(&db)?,
            access: access::load(&db)?,

            backups: backups::load(&db)?,
            db,
        })
    }

    /// A durability barrier for shutdown: an empty commit with `Durability::Immediate`
    /// (every earlier write was already committed the same way).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.writer().commit(|_| Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proto::rest::Capabilities;

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
            labels: Default::default(),
            draining: false,
        }
    }

    pub(crate) fn server(id: &str, agent: &str, mem_mib: u64) -> ServerRecord {
        ServerRecord {
            server_id: id.into(),
            agent_id: agent.into(),
            egg_config: serde_json::json!({"name": "x"}),
            desired_state: DesiredState::Created,
            memory_bytes: mem_mib << 20,
            cpu_millis: 500,
            created_at: 2,
            egg_id: None,
            epoch: 0,
            handover: None,
            moving: None,
            failover: Default::default(),
            constraints: Default::default(),
        }
    }

    #[test]
    fn failover_state_is_durable_and_older_records_read_without_it() {
        let dir = temp_dir("store-failover");
        {
            let s = Store::open(&dir).unwrap();
            assert!(s.insert_server(&server("srv-1", "a1", 64)).unwrap());
            let epoch = s
                .update_server("srv-1", |r| {
                    r.failover.enabled = true;
                    r.failover.stale.push(StaleCopy {
                        agent_id: "a1".into(),
                        epoch: r.epoch,
                    });
                    r.agent_id = "a2".into();
                    r.epoch += 1;
                    r.epoch
                })
                .unwrap();
            assert_eq!(epoch, Some(1));
            assert_eq!(s.update_server("nope", |_| ()).unwrap(), None);
        }
        let s = Store::open(&dir).unwrap();
        let r = s.server("srv-1").unwrap();
        assert!(r.failover.enabled);
        assert_eq!((r.agent_id.as_str(), r.epoch), ("a2", 1));
        assert_eq!(r.failover.stale[0].agent_id, "a1");
        assert_eq!(
            s.epoch_for("a1", "srv-1"),
            Some(1),
            "the stale copy's node gets the new epoch"
        );
        let old: ServerRecord = serde_json::from_value(serde_json::json!({
            "serverId": "s", "agentId": "a", "eggConfig": {}, "desiredState": "created",
            "memoryBytes": 1, "createdAt": 1
        }))
        .unwrap();
        assert_eq!(old.failover, FailoverInfo::default());
        std::fs::remove_dir_all(dir).ok();
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
        assert!(!a.draining);
        assert!(s.set_draining("a1", true).unwrap().unwrap().draining);
        assert_eq!(s.set_draining("nobody", true).unwrap(), None);
        let srv = s.server("srv-1").unwrap();
        assert_eq!(srv.desired_state, DesiredState::Running);
        assert_eq!(srv.agent_id, "a1");
        assert!(s.server("srv-2").is_none());
        assert_eq!(s.servers().len(), 1);
        assert!(s.owns("a1", "srv-1"));
        assert!(!s.owns("a2", "srv-1"));
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert!(s.agent("a1").unwrap().draining, "drain is durable");
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
    fn a_record_from_before_cpu_millis_takes_its_cpu_from_the_egg() {
        let old = serde_json::json!({
            "serverId": "s1", "agentId": "a1", "desiredState": "running",
            "memoryBytes": 1024, "createdAt": 5,
            "eggConfig": {"name": "x", "limits": {"cpu": "1.5"}},
        });
        let rec: ServerRecord = serde_json::from_value(old).unwrap();
        assert_eq!(rec.cpu_millis, 1500);
        // Written back, it carries the field.
        let again = serde_json::to_value(&rec).unwrap();
        assert_eq!(again["cpuMillis"], 1500);
        let rec: ServerRecord = serde_json::from_value(again).unwrap();
        assert_eq!(rec.cpu_millis, 1500);
    }

    #[test]
    fn cpu_committed_sums_the_field_per_agent() {
        let dir = temp_dir("store-cpu");
        let s = Store::open(&dir).unwrap();
        let mut a = server("s1", "a1", 1);
        a.cpu_millis = 250;
        let mut b = server("s2", "a1", 1);
        b.cpu_millis = 1000;
        s.put_server(&a).unwrap();
        s.put_server(&b).unwrap();
        s.put_server(&server("s3", "a2", 1)).unwrap();
        let c = s.cpu_committed();
        assert_eq!(c["a1"], 1250);
        assert_eq!(c["a2"], 500);
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
        // A server moving to a2 counts there too until the commit, then only there.
        let mut moving = server("s4", "a1", 10);
        moving.moving = Some(Moving {
            phase: MovePhase::Copying,
            was_running: true,
            target: Some("a2".into()),
        });
        s.put_server(&moving).unwrap();
        let m = s.memory_committed();
        assert_eq!((m["a1"], m["a2"]), (310 << 20, 60 << 20));
        moving.agent_id = "a2".into();
        moving.moving = Some(Moving {
            phase: MovePhase::Removing,
            was_running: true,
            target: None,
        });
        s.put_server(&moving).unwrap();
        let m = s.memory_committed();
        assert_eq!((m["a1"], m["a2"]), (300 << 20, 60 << 20));
        // A failover in progress marks only `handover`: its target counts it too.
        let mut failing_over = server("s5", "a1", 5);
        failing_over.handover = Some("a2".into());
        s.put_server(&failing_over).unwrap();
        let m = s.memory_committed();
        assert_eq!((m["a1"], m["a2"]), (305 << 20, 65 << 20));
        std::fs::remove_dir_all(dir).ok();
    }
}
