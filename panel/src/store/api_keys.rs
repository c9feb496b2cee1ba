//! API keys for scripts: by key id, with the SHA-256 of the key's secret (the secret is
//! shown once, at creation, and never stored). A key carries its user's rights.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const API_KEYS: JsonTable = JsonTable::new("api_keys");

pub(super) type Mirror = RwLock<HashMap<String, ApiKeyRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(API_KEYS)?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    /// Hex SHA-256 of the secret part of the token.
    pub secret_sha256: String,
    /// What the user called it (optional).
    #[serde(default)]
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
}

pub(super) fn of_user(m: &Mirror, user_id: &str) -> Vec<String> {
    m.read()
        .values()
        .filter(|k| k.user_id == user_id)
        .map(|k| k.id.clone())
        .collect()
}

pub(super) fn remove_all(txn: &redb::WriteTransaction, ids: &[String]) -> Result<(), StoreError> {
    ids.iter().try_for_each(|k| remove(txn, API_KEYS, k))
}

pub(super) fn forget(m: &Mirror, ids: &[String]) {
    let mut m = m.write();
    for k in ids {
        m.remove(k);
    }
}

impl Store {
    pub fn api_key(&self, id: &str) -> Option<ApiKeyRecord> {
        self.api_keys.read().get(id).cloned()
    }

    /// The keys of one user, oldest first.
    pub fn api_keys_of(&self, user_id: &str) -> Vec<ApiKeyRecord> {
        let mut v: Vec<_> = self
            .api_keys
            .read()
            .values()
            .filter(|k| k.user_id == user_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    /// Stores a new key; `false` if the id is taken.
    pub fn insert_api_key(&self, rec: &ApiKeyRecord) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if self.api_keys.read().contains_key(&rec.id) {
            return Ok(false);
        }
        w.commit(|txn| put_json(txn, API_KEYS, &rec.id, rec))?;
        self.api_keys.write().insert(rec.id.clone(), rec.clone());
        Ok(true)
    }

    /// Revokes a key; `false` if there was none.
    pub fn remove_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if !self.api_keys.read().contains_key(id) {
            return Ok(false);
        }
        w.commit(|txn| remove(txn, API_KEYS, id))?;
        self.api_keys.write().remove(id);
        Ok(true)
    }
}
