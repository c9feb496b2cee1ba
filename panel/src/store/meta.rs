//! Panel-wide single values: the admin token's hash.

use redb::TableDefinition;

use super::{Store, StoreError};

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ADMIN_TOKEN_HASH: &str = "admin_token_sha256";

impl Store {
    pub fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.db.read()?;
        let t = txn.open_table(META)?;
        Ok(t.get(ADMIN_TOKEN_HASH)?
            .and_then(|v| v.value().try_into().ok()))
    }

    pub fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.db.writer().commit(|txn| {
            txn.open_table(META)?
                .insert(ADMIN_TOKEN_HASH, hash.as_slice())?;
            Ok(())
        })
    }
}
