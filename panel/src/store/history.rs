//! Resource history rows (see `crate::history`): binary points under
//! `<kind><resolution>/<id>/<slot>` keys, one row per series and coarse slot. The history
//! keeps its own memory copy; this table is only read at start-up.

use redb::{ReadableTable, TableDefinition};

use super::{Store, StoreError};

pub(super) const HISTORY: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("history");

impl Store {
    /// Every history row, in key order.
    pub fn history_rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.read()?;
        let t = txn.open_table(HISTORY)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// One commit: `puts` written, `deletes` removed, and every key starting with one of
    /// `prefixes` removed.
    pub fn history_write(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
        prefixes: &[String],
    ) -> Result<(), StoreError> {
        self.db.writer().commit(|txn| {
            let mut t = txn.open_table(HISTORY)?;
            for (k, v) in puts {
                t.insert(k.as_str(), v.as_slice())?;
            }
            for k in deletes {
                t.remove(k.as_str())?;
            }
            for p in prefixes {
                let keys: Vec<String> = t
                    .range(p.as_str()..)?
                    .map_while(|row| {
                        let key = row.ok()?.0.value().to_owned();
                        key.starts_with(p.as_str()).then_some(key)
                    })
                    .collect();
                for k in keys {
                    t.remove(k.as_str())?;
                }
            }
            Ok(())
        })
    }
}
