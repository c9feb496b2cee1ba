//! People who log in: name, admin flag and an Argon2id PHC string (never the password).
//!
//! Removing a user or changing their password cascades in the same transaction: their
//! sessions (and, on removal, their API keys and every server access) go with it, so there
//! is no moment where a deleted user's cookie still works.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError, access, api_keys, sessions};

pub(super) const USERS: JsonTable = JsonTable::new("users");

/// The in-memory copy of [`USERS`] (read on every authenticated request).
pub(super) type Mirror = RwLock<HashMap<String, UserRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(USERS)?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub admin: bool,
    /// Argon2id in PHC string format (algorithm, parameters, salt, hash).
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: u64,
}

impl Store {
    pub fn user(&self, id: &str) -> Option<UserRecord> {
        self.users.read().get(id).cloned()
    }

    pub fn user_by_name(&self, name: &str) -> Option<UserRecord> {
        self.users.read().values().find(|u| u.name == name).cloned()
    }

    /// Every user, oldest first.
    pub fn users(&self) -> Vec<UserRecord> {
        let mut v: Vec<_> = self.users.read().values().cloned().collect();
        v.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        v
    }

    pub fn has_users(&self) -> bool {
        !self.users.read().is_empty()
    }

    /// Stores a new user; `false` if the name or id is taken.
    pub fn insert_user(&self, rec: &UserRecord) -> Result<bool, StoreError> {
        let w = self.db.writer();
        {
            let users = self.users.read();
            if users.contains_key(&rec.id) || users.values().any(|u| u.name == rec.name) {
                return Ok(false);
            }
        }
        w.commit(|txn| put_json(txn, USERS, &rec.id, rec))?;
        self.users.write().insert(rec.id.clone(), rec.clone());
        Ok(true)
    }

    /// Replaces the password hash and ends every session of the user except `keep` (the
    /// session that made the change, if any). `false` if there is no such user.
    pub fn set_password_hash(
        &self,
        user_id: &str,
        hash: String,
        keep: Option<&str>,
    ) -> Result<bool, StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.user(user_id) else {
            return Ok(false);
        };
        rec.password_hash = hash;
        let ended = sessions::of_user(&self.sessions, user_id, keep);
        w.commit(|txn| {
            put_json(txn, USERS, user_id, &rec)?;
            sessions::remove_all(txn, &ended)
        })?;
        self.users.write().insert(user_id.to_owned(), rec);
        sessions::forget(&self.sessions, &ended);
        Ok(true)
    }

    /// Removes a user with their sessions, API keys and server access (servers they own
    /// lose their owner and keep running). `false` if there was none.
    pub fn remove_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if !self.users.read().contains_key(user_id) {
            return Ok(false);
        }
        let ended = sessions::of_user(&self.sessions, user_id, None);
        let keys = api_keys::of_user(&self.api_keys, user_id);
        let changed = access::without_user(&self.access, user_id);
        w.commit(|txn| {
            remove(txn, USERS, user_id)?;
            sessions::remove_all(txn, &ended)?;
            api_keys::remove_all(txn, &keys)?;
            access::put_all(txn, &changed)
        })?;
        self.users.write().remove(user_id);
        sessions::forget(&self.sessions, &ended);
        api_keys::forget(&self.api_keys, &keys);
        access::replace_all(&self.access, changed);
        Ok(true)
    }
}
