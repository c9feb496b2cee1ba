//! The egg library: imported eggs (`proto::eggs::StoredEgg`) by id, with the format they came
//! in, the warnings of their import and, for eggs made from an `eggConfig`, its ports,
//! limits, query and user as defaults for new servers.

use parking_lot::RwLock;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use proto::eggs::StoredEgg;

use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};

pub(super) const EGGS: JsonTable = JsonTable::new("eggs");
/// Set once the example egg was offered, so deleting it is final.
const SEEDED: &str = "eggs_seeded";

/// The in-memory copy of [`EGGS`] (small: an egg is at most 1 MiB, a library tens of eggs).
pub(super) type Mirror = RwLock<HashMap<String, EggRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(EGGS)?))
}

/// One egg of the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EggRecord {
    pub id: String,
    /// `ctrl`, `eggConfig`, `PTDL_v1`, `PTDL_v2`, `PLCN_v1`..`PLCN_v3`.
    pub source: String,
    /// Unix seconds.
    pub created_at: u64,
    pub egg: StoredEgg,
    /// What the import reported (ignored rules, undefined placeholders, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// For an egg made from an `eggConfig`: its `ports`, `limits`, `query` and `user`
    /// (a JSON object), which new servers get unless the request says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<serde_json::Value>,
}

impl Store {
    /// Stores a new egg; `false` if the id is taken.
    pub fn insert_egg(&self, rec: &EggRecord) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if self.eggs.read().contains_key(&rec.id) {
            return Ok(false);
        }
        w.commit(|txn| put_json(txn, EGGS, &rec.id, rec))?;
        self.eggs.write().insert(rec.id.clone(), rec.clone());
        Ok(true)
    }

    /// Removes an egg; `false` if there was none.
    pub fn remove_egg(&self, id: &str) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if !self.eggs.read().contains_key(id) {
            return Ok(false);
        }
        w.commit(|txn| remove(txn, EGGS, id))?;
        self.eggs.write().remove(id);
        Ok(true)
    }

    pub fn egg(&self, id: &str) -> Option<EggRecord> {
        self.eggs.read().get(id).cloned()
    }

    /// Every egg, by name then id.
    pub fn eggs(&self) -> Vec<EggRecord> {
        let mut v: Vec<_> = self.eggs.read().values().cloned().collect();
        v.sort_by(|a, b| (&a.egg.name, &a.id).cmp(&(&b.egg.name, &b.id)));
        v
    }

    /// Stores `first` unless the library was seeded before (in one transaction with the
    /// mark): the example egg appears on the first start only.
    pub fn seed_eggs(&self, first: &[EggRecord]) -> Result<bool, StoreError> {
        let w = self.db.writer();
        let seeded = w.commit(|txn| {
            let mut meta = txn.open_table(super::meta::META)?;
            if meta.get(SEEDED)?.is_some() {
                return Ok(false);
            }
            meta.insert(SEEDED, [1u8].as_slice())?;
            drop(meta);
            for rec in first {
                put_json(txn, EGGS, &rec.id, rec)?;
            }
            Ok(true)
        })?;
        if seeded {
            let mut mirror = self.eggs.write();
            for rec in first {
                mirror.insert(rec.id.clone(), rec.clone());
            }
        }
        Ok(seeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_dir;

    #[test]
    fn eggs_are_durable_and_the_example_is_offered_once() {
        let dir = temp_dir("store-eggs");
        let example = crate::eggs::example(1).unwrap();
        {
            let s = Store::open(&dir).unwrap();
            assert!(s.seed_eggs(std::slice::from_ref(&example)).unwrap());
            assert!(!s.seed_eggs(std::slice::from_ref(&example)).unwrap());
            let mut other = example.clone();
            other.id = "egg-2".into();
            other.egg.name = "another".into();
            assert!(s.insert_egg(&other).unwrap());
            assert!(!s.insert_egg(&other).unwrap(), "ids are unique");
            assert_eq!(s.eggs().len(), 2);
            // Deleting the example is final: it does not come back.
            assert!(s.remove_egg(crate::eggs::EXAMPLE_EGG_ID).unwrap());
            assert!(!s.remove_egg(crate::eggs::EXAMPLE_EGG_ID).unwrap());
        }
        let s = Store::open(&dir).unwrap();
        assert!(!s.seed_eggs(std::slice::from_ref(&example)).unwrap());
        assert_eq!(s.eggs().len(), 1);
        assert_eq!(s.egg("egg-2").unwrap().egg.name, "another");
        assert_eq!(s.egg("egg-2").unwrap().defaults, example.defaults);
        std::fs::remove_dir_all(dir).ok();
    }
}
