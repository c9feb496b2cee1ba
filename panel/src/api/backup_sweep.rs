//! What the backup store must not keep: a deleted server's backups, and the leftovers of a
//! panel that stopped in the middle of a backup.
//!
//! - [`forget_server`]: when a server is deleted, its backups go with it (records first,
//!   then `DATA/backups/<serverId>/`, so a listed backup always has its file), and its
//!   schedule. Backups are copies of a server's state for restoring *that server*; a
//!   deleted server cannot be restored onto, and kept archives would fill the disk unseen.
//!   Download them before deleting the server if they are wanted.
//! - [`sweep`], once at start-up before serving: removes every `*.part` (a backup the stop
//!   interrupted), every archive without a record (a stop between rename and record), the
//!   records and files of servers that no longer exist (a stop between the server's
//!   deletion and its backups'). Names the store did not write are left alone.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::backup_run::server_dir;
use super::{Api, ApiError, blocking};
use crate::store::{Store, StoreError};

/// Removes every backup (records, then files) and the schedule of `server`.
pub(super) async fn forget_server(api: &Arc<Api>, server: &str) -> Result<(), ApiError> {
    let (store, sid) = (api.store.clone(), server.to_owned());
    blocking(move || {
        for b in store.backups_of(&sid) {
            store.remove_backup(&sid, &b.id)?;
        }
        store.set_schedule(&sid, None)
    })
    .await?;
    let dir = server_dir(api, server);
    match blocking(move || std::fs::remove_dir_all(dir)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            log::error!("backups of deleted server {server}: {e}");
            Err(ApiError::new(
                proto::ErrorCode::InternalError,
                "the server is deleted but its backup files were not (see the panel log)",
            ))
        }
    }
}

/// What [`sweep`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// `*.part` files.
    pub partial: usize,
    /// Archives without a record.
    pub unrecorded: usize,
    /// Records and directories of servers that no longer exist.
    pub orphaned: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("backup store {0}: {1}")]
    Io(String, io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Cleans the backup store `dir` (see the module docs). Blocking.
pub fn sweep(store: &Store, dir: &Path) -> Result<Swept, SweepError> {
    let mut out = Swept::default();
    let io = |what: &Path, e: io::Error| SweepError::Io(what.display().to_string(), e);
    for b in store.all_backups() {
        if store.server(&b.server_id).is_none() {
            store.remove_backup(&b.server_id, &b.id)?;
            out.orphaned += 1;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let Some(sid) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
            continue;
        }
        if store.server(&sid).is_none() {
            std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
            out.orphaned += 1;
            continue;
        }
        for file in std::fs::read_dir(&path).map_err(|e| io(&path, e))? {
            let file = file.map_err(|e| io(&path, e))?;
            let fpath = file.path();
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            if !file.file_type().map_err(|e| io(&fpath, e))?.is_file() {
                continue;
            }
            let remove = if name.ends_with(".part") {
                out.partial += 1;
                true
            } else if let Some(bid) = name.strip_suffix(".tar.gz") {
                let unrecorded = store.backup(&sid, bid).is_none();
                out.unrecorded += usize::from(unrecorded);
                unrecorded
            } else {
                false
            };
            if remove {
                std::fs::remove_file(&fpath).map_err(|e| io(&fpath, e))?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackupRecord;
    use crate::store::tests::{server, temp_dir};

    fn backup(sid: &str, id: &str) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            server_id: sid.into(),
            size: 3,
            sha256: "00".into(),
            created_at: 1,
        }
    }

    #[test]
    fn the_sweep_removes_partial_unrecorded_and_orphaned_but_keeps_the_rest() {
        let data = temp_dir("sweep");
        let store = Store::open(&data).unwrap();
        store.put_server(&server("srv-live", "a", 64)).unwrap();
        let dir = data.join("backups");
        let live = dir.join("srv-live");
        let gone = dir.join("srv-gone");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&gone).unwrap();
        for f in [
            "bk-kept.tar.gz",
            "bk-stray.tar.gz",
            "bk-cut.part",
            "notes.txt",
        ] {
            std::fs::write(live.join(f), b"abc").unwrap();
        }
        std::fs::write(gone.join("bk-old.tar.gz"), b"abc").unwrap();
        store.put_backup(&backup("srv-live", "bk-kept")).unwrap();
        store.put_backup(&backup("srv-gone", "bk-old")).unwrap();

        let swept = sweep(&store, &dir).unwrap();
        assert_eq!(
            swept,
            Swept {
                partial: 1,
                unrecorded: 1,
                orphaned: 2
            }
        );
        let mut left: Vec<_> = std::fs::read_dir(&live)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["bk-kept.tar.gz", "notes.txt"]);
        assert!(!gone.exists());
        assert!(store.backup("srv-gone", "bk-old").is_none());
        assert!(store.backup("srv-live", "bk-kept").is_some());
        // Nothing more the second time; a missing store directory is not an error.
        assert_eq!(sweep(&store, &dir).unwrap(), Swept::default());
        assert_eq!(
            sweep(&store, &data.join("nowhere")).unwrap(),
            Swept::default()
        );
    }
}
