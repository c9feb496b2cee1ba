//! Who may use each server: its owner and its subusers with their rights, by server id.
//!
//! Kept in its own table (not in the server record) so that rights change without
//! rewriting placement data, and read from a mirror: every request on a server and every
//! events subscription asks it.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::servers::{SERVERS, ServerRecord};
use super::txn::{Db, JsonTable, put_json, remove};
use super::{Store, StoreError};
use crate::users::rights::{Perm, Perms};

pub(super) const ACCESS: JsonTable = JsonTable::new("server_access");

pub(super) type Mirror = RwLock<HashMap<String, ServerAccess>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(ACCESS)?))
}

/// The owner and subusers of one server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerAccess {
    #[serde(default)]
    pub owner_id: Option<String>,
    /// User id → the rights granted.
    #[serde(default)]
    pub subusers: BTreeMap<String, Vec<Perm>>,
}

impl ServerAccess {
    /// What `user_id` may do here (admins are decided by the caller).
    pub fn perms_of(&self, user_id: &str) -> Perms {
        if self.owner_id.as_deref() == Some(user_id) {
            return Perms::ALL;
        }
        self.subusers
            .get(user_id)
            .map_or(Perms::NONE, |p| Perms::subuser(p))
    }

    fn mentions(&self, user_id: &str) -> bool {
        self.owner_id.as_deref() == Some(user_id) || self.subusers.contains_key(user_id)
    }
}

/// The access records that change when `user_id` disappears, already changed.
pub(super) fn without_user(m: &Mirror, user_id: &str) -> Vec<(String, ServerAccess)> {
    m.read()
        .iter()
        .filter(|(_, a)| a.mentions(user_id))
        .map(|(id, a)| {
            let mut a = a.clone();
            if a.owner_id.as_deref() == Some(user_id) {
                a.owner_id = None;
            }
            a.subusers.remove(user_id);
            (id.clone(), a)
        })
        .collect()
}

pub(super) fn put_all(
    txn: &redb::WriteTransaction,
    changed: &[(String, ServerAccess)],
) -> Result<(), StoreError> {
    changed
        .iter()
        .try_for_each(|(id, a)| put_json(txn, ACCESS, id, a))
}

pub(super) fn replace_all(m: &Mirror, changed: Vec<(String, ServerAccess)>) {
    let mut m = m.write();
    for (id, a) in changed {
        m.insert(id, a);
    }
}

impl Store {
    /// The owner and subusers of a server (empty when none were set).
    pub fn access(&self, server_id: &str) -> ServerAccess {
        self.access
            .read()
            .get(server_id)
            .cloned()
            .unwrap_or_default()
    }

    /// What `user_id` (not an admin) may do on `server_id`.
    pub fn perms_of(&self, user_id: &str, server_id: &str) -> Perms {
        self.access
            .read()
            .get(server_id)
            .map_or(Perms::NONE, |a| a.perms_of(user_id))
    }

    /// Every server `user_id` (not an admin) has any access to, with the rights.
    pub fn visible_to(&self, user_id: &str) -> Vec<(String, Perms)> {
        let servers = self.servers.read();
        self.access
            .read()
            .iter()
            .filter(|(id, _)| servers.contains_key(*id))
            .map(|(id, a)| (id.clone(), a.perms_of(user_id)))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }

    /// Inserts a server and its owner in one transaction unless the id exists (`false`).
    pub fn insert_owned_server(
        &self,
        rec: &ServerRecord,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        let w = self.db.writer();
        if self.servers.read().contains_key(&rec.server_id) {
            return Ok(false);
        }
        let access = ServerAccess {
            owner_id: owner.map(str::to_owned),
            subusers: BTreeMap::new(),
        };
        w.commit(|txn| {
            put_json(txn, SERVERS, &rec.server_id, rec)?;
            put_json(txn, ACCESS, &rec.server_id, &access)
        })?;
        self.servers
            .write()
            .insert(rec.server_id.clone(), rec.clone());
        self.access.write().insert(rec.server_id.clone(), access);
        Ok(true)
    }

    /// Changes a server's access with `f` and stores the result; the access before.
    pub fn update_access(
        &self,
        server_id: &str,
        f: impl FnOnce(&mut ServerAccess),
    ) -> Result<ServerAccess, StoreError> {
        let w = self.db.writer();
        let before = self.access(server_id);
        let mut after = before.clone();
        f(&mut after);
        if after != before {
            w.commit(|txn| put_json(txn, ACCESS, server_id, &after))?;
            self.access.write().insert(server_id.to_owned(), after);
        }
        Ok(before)
    }

    /// Forgets a server's access (with the server, in [`Store::remove_server`]).
    pub(super) fn forget_access(txn: &redb::WriteTransaction, id: &str) -> Result<(), StoreError> {
        remove(txn, ACCESS, id)
    }
}
