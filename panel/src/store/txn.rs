//! The transaction layer every record kind shares.
//!
//! One writer at a time ([`Db::writer`]): a kind holds the writer while it commits *and*
//! while it updates its in-memory mirror, so mirrors change in commit order. Every commit uses
//! `Durability::Immediate` and returns only once durable, so a caller that awaits a write
//! before answering never acknowledges something a `kill -9` could lose. Records are JSON
//! under a string key; a record that does not serialise is an error ([`StoreError::Encode`]),
//! never a panic.

use parking_lot::{Mutex, MutexGuard};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::Path;

use super::StoreError;

/// A table of JSON records by string key.
pub(super) type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

/// The database and its single-writer lock.
pub(super) struct Db {
    db: Database,
    write: Mutex<()>,
}

/// The right to write, held across a commit and the mirror update that follows it.
pub(super) struct Writer<'a> {
    db: &'a Database,
    _turn: MutexGuard<'a, ()>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            db: Database::create(path)?,
            write: Mutex::new(()),
        })
    }

    /// Waits for the write turn.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            db: &self.db,
            _turn: self.write.lock(),
        }
    }

    pub fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Every record of `table`, decoded.
    pub fn load_json<T: DeserializeOwned>(
        &self,
        table: JsonTable,
    ) -> Result<HashMap<String, T>, StoreError> {
        let txn = self.db.begin_read()?;
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
}

impl Writer<'_> {
    /// Runs `f` in one write transaction and commits it durably; nothing is committed if
    /// `f` fails.
    pub fn commit<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

/// Stores `value` as JSON under `key`.
pub(super) fn put_json<T: Serialize>(
    txn: &WriteTransaction,
    table: JsonTable,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })?;
    txn.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Removes `key` (absent is fine).
pub(super) fn remove(
    txn: &WriteTransaction,
    table: JsonTable,
    key: &str,
) -> Result<(), StoreError> {
    txn.open_table(table)?.remove(key)?;
    Ok(())
}
