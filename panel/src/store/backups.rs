//! Backups the panel keeps (`DATA/backups/<serverId>/<backupId>.tar.gz`): their size,
//! SHA-256 and time, by server; and the per-server backup schedules.
//!
//! The archive files live beside the database; a record is written only after its file was
//! fsynced and renamed into place, and removed before its file is deleted, so a listed
//! backup always has its file.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const BACKUPS: JsonTable = JsonTable::new("backups");
pub(super) const SCHEDULES: JsonTable = JsonTable::new("backup_schedules");

/// The in-memory copies: backups by `<serverId>/<backupId>`, schedules by server.
pub(super) struct Mirror {
    backups: RwLock<HashMap<String, BackupRecord>>,
    schedules: RwLock<HashMap<String, Schedule>>,
}

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(Mirror {
        backups: RwLock::new(db.load_json(BACKUPS)?),
        schedules: RwLock::new(db.load_json(SCHEDULES)?),
    })
}

/// One stored backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    pub id: String,
    pub server_id: String,
    /// Bytes of the archive (compressed).
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// A server's backup schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub interval_secs: u64,
    /// Unix seconds of the next run.
    pub next_at: u64,
}

fn key(server_id: &str, backup_id: &str) -> String {
    format!("{server_id}/{backup_id}")
}

impl Store {
    pub fn put_backup(&self, rec: &BackupRecord) -> Result<(), StoreError> {
        let k = key(&rec.server_id, &rec.id);
        let w = self.db.writer();
        w.commit(|txn| put_json(txn, BACKUPS, &k, rec))?;
        self.backups.backups.write().insert(k, rec.clone());
        Ok(())
    }

    pub fn remove_backup(&self, server_id: &str, backup_id: &str) -> Result<(), StoreError> {
        let k = key(server_id, backup_id);
        let w = self.db.writer();
        w.commit(|txn| remove(txn, BACKUPS, &k))?;
        self.backups.backups.write().remove(&k);
        Ok(())
    }

    pub fn backup(&self, server_id: &str, backup_id: &str) -> Option<BackupRecord> {
        self.backups
            .backups
            .read()
            .get(&key(server_id, backup_id))
            .cloned()
    }

    /// A server's backups, newest first.
    pub fn backups_of(&self, server_id: &str) -> Vec<BackupRecord> {
        let mut v: Vec<_> = self
            .backups
            .backups
            .read()
            .values()
            .filter(|b| b.server_id == server_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        v
    }

    /// Every stored backup, of every server (the start-up sweep).
    pub fn all_backups(&self) -> Vec<BackupRecord> {
        self.backups.backups.read().values().cloned().collect()
    }

    /// Sets (`Some`) or removes (`None`) a server's schedule.
    pub fn set_schedule(&self, server_id: &str, s: Option<Schedule>) -> Result<(), StoreError> {
        let w = self.db.writer();
        match s {
            Some(s) => {
                w.commit(|txn| put_json(txn, SCHEDULES, server_id, &s))?;
                self.backups
                    .schedules
                    .write()
                    .insert(server_id.to_owned(), s);
            }
            None => {
                w.commit(|txn| remove(txn, SCHEDULES, server_id))?;
                self.backups.schedules.write().remove(server_id);
            }
        }
        Ok(())
    }

    pub fn schedule(&self, server_id: &str) -> Option<Schedule> {
        self.backups.schedules.read().get(server_id).copied()
    }

    /// The servers whose schedule is due at `now`.
    pub fn due_schedules(&self, now: u64) -> Vec<(String, Schedule)> {
        self.backups
            .schedules
            .read()
            .iter()
            .filter(|(_, s)| s.next_at <= now)
            .map(|(k, s)| (k.clone(), *s))
            .collect()
    }
}
