//! Agent registration tokens: single use, short-lived, stored as the SHA-256 of the token
//! with their expiry. Taking one removes it in the same transaction that checks it, so two
//! registrations racing with one token cannot both succeed.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::txn::{JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const REG_TOKENS: JsonTable = JsonTable::new("registration_tokens");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegToken {
    /// Unix seconds.
    expires_at: u64,
}

/// At most this many unexpired tokens exist at once.
pub const MAX_REG_TOKENS: usize = 1000;

impl Store {
    /// Stores a token hash valid until `expires_at`, dropping expired ones first; `false`
    /// when [`MAX_REG_TOKENS`] are outstanding.
    pub fn insert_reg_token(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let w = self.db.writer();
        w.commit(|txn| {
            let all = self.db_reg_tokens(txn)?;
            let mut live = 0;
            for (k, t) in &all {
                if t.expires_at <= now {
                    remove(txn, REG_TOKENS, k)?;
                } else {
                    live += 1;
                }
            }
            if live >= MAX_REG_TOKENS {
                return Ok(false);
            }
            put_json(txn, REG_TOKENS, key, &RegToken { expires_at })?;
            Ok(true)
        })
    }

    /// Consumes the token stored under `key`: `true` once, before it expires.
    pub fn take_reg_token(&self, key: &str, now: u64) -> Result<bool, StoreError> {
        let w = self.db.writer();
        w.commit(|txn| {
            let found: Option<RegToken> = {
                let t = txn.open_table(REG_TOKENS)?;
                let v = t.get(key)?;
                v.and_then(|v| serde_json::from_slice(v.value()).ok())
            };
            if found.is_some() {
                remove(txn, REG_TOKENS, key)?;
            }
            Ok(found.is_some_and(|t| t.expires_at > now))
        })
    }

    fn db_reg_tokens(
        &self,
        txn: &redb::WriteTransaction,
    ) -> Result<Vec<(String, RegToken)>, StoreError> {
        let t = txn.open_table(REG_TOKENS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if let Ok(tok) = serde_json::from_slice(v.value()) {
                out.push((k.value().to_owned(), tok));
            }
        }
        Ok(out)
    }
}
