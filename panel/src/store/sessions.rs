//! Login sessions, keyed by the SHA-256 of the session id: the id itself (the cookie) is
//! never stored, so a copy of the database does not log anyone in.
//!
//! `lastSeen` feeds the idle expiry; it is written at most once per [`TOUCH_EVERY`] seconds
//! per session (more often only when the idle limit is shorter), so browsing does not cost a
//! durable commit per request.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const SESSIONS: JsonTable = JsonTable::new("sessions");

/// Seconds between two durable `lastSeen` updates of one session.
pub const TOUCH_EVERY: u64 = 60;

pub(super) type Mirror = RwLock<HashMap<String, SessionRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(SESSIONS)?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub user_id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub last_seen: u64,
}

/// The keys of `user_id`'s sessions, except `keep`.
pub(super) fn of_user(m: &Mirror, user_id: &str, keep: Option<&str>) -> Vec<String> {
    m.read()
        .iter()
        .filter(|(k, s)| s.user_id == user_id && Some(k.as_str()) != keep)
        .map(|(k, _)| k.clone())
        .collect()
}

pub(super) fn remove_all(txn: &redb::WriteTransaction, keys: &[String]) -> Result<(), StoreError> {
    keys.iter().try_for_each(|k| remove(txn, SESSIONS, k))
}

pub(super) fn forget(m: &Mirror, keys: &[String]) {
    let mut m = m.write();
    for k in keys {
        m.remove(k);
    }
}

impl Store {
    /// The session stored under `key` (the hex SHA-256 of its id).
    pub fn session(&self, key: &str) -> Option<SessionRecord> {
        self.sessions.read().get(key).cloned()
    }

    pub fn insert_session(&self, key: &str, rec: &SessionRecord) -> Result<(), StoreError> {
        let w = self.db.writer();
        w.commit(|txn| put_json(txn, SESSIONS, key, rec))?;
        self.sessions.write().insert(key.to_owned(), rec.clone());
        Ok(())
    }

    /// Records activity at `now` if the stored `lastSeen` is `every` seconds old.
    pub fn touch_session(&self, key: &str, now: u64, every: u64) -> Result<(), StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.session(key) else {
            return Ok(());
        };
        if now.saturating_sub(rec.last_seen) < every {
            return Ok(());
        }
        rec.last_seen = now;
        w.commit(|txn| put_json(txn, SESSIONS, key, &rec))?;
        self.sessions.write().insert(key.to_owned(), rec);
        Ok(())
    }

    /// Ends one session; its record if there was one.
    pub fn remove_session(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let w = self.db.writer();
        let Some(rec) = self.session(key) else {
            return Ok(None);
        };
        w.commit(|txn| remove(txn, SESSIONS, key))?;
        self.sessions.write().remove(key);
        Ok(Some(rec))
    }

    /// Removes every session `expired` says is over (at login and by the periodic
    /// housekeeping); the users whose sessions ended.
    pub fn prune_sessions(
        &self,
        expired: impl Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let w = self.db.writer();
        let (keys, users): (Vec<String>, Vec<String>) = self
            .sessions
            .read()
            .iter()
            .filter(|(_, s)| expired(s))
            .map(|(k, s)| (k.clone(), s.user_id.clone()))
            .unzip();
        if keys.is_empty() {
            return Ok(users);
        }
        w.commit(|txn| remove_all(txn, &keys))?;
        forget(&self.sessions, &keys);
        Ok(users)
    }
}
