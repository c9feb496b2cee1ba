//! Uploads larger than one frame: chunks appended, in order, to a temp file beneath the
//! volume, which the last chunk puts in place atomically.
//!
//! - The temp file is `/server/.ctrl-uploads/<uploadId>`, created `O_EXCL | O_NOFOLLOW`
//!   (mode 0600) and written only through the fd the agent holds, so whatever the server
//!   does to the name meanwhile, no byte lands elsewhere. Its bytes count against the disk
//!   limit exactly as `write_file` counts its content (the old file it replaces is
//!   subtracted), checked before every chunk.
//! - `final` fsyncs the file, checks the name still holds the agent's inode, renames it
//!   over the target (a target that is a link, a directory or a device is refused) and
//!   fsyncs the directory: readers see the old file or the new one, never a mix.
//! - At most [`MAX_UPLOADS`] per server at once. An upload that fails, is cancelled, or
//!   stays idle for [`UPLOAD_IDLE`] is dropped with its temp file; so is every upload when
//!   the panel's connection drops (its chunks could not continue anyway). An agent restart
//!   forgets uploads in progress: the next sweep removes what they left in the staging
//!   directory.

use super::error::FileError;
use super::path::{RelPath, to_relative};
use super::usage::{DiskUsageCache, size_of};
use super::volume::{NEW_FILE_MODE, Volume, existing_target, write_all_at};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The directory beneath the volume root that holds uploads in progress.
pub const STAGING_DIR: &str = ".ctrl-uploads";
/// Uploads in progress per server at most.
pub const MAX_UPLOADS: usize = 4;
/// An upload without a chunk for this long is abandoned.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(600);

/// The uploads in progress of one volume.
#[derive(Default)]
pub struct Uploads {
    table: Mutex<HashMap<String, Arc<Mutex<Upload>>>>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Uploads({})", self.table.lock().len())
    }
}

/// One upload in progress.
struct Upload {
    id: String,
    target: RelPath,
    /// The target's parent directory, opened through no link when the upload began.
    dir: OwnedFd,
    staging: OwnedFd,
    file: OwnedFd,
    /// `(st_dev, st_ino)` of the temp file, to recognise it by name before renaming or
    /// removing it.
    inode: (u64, u64),
    written: u64,
    /// The target's size when the upload began (it is replaced at the end).
    old_size: u64,
    last: Instant,
    /// Renamed into place (nothing to remove any more).
    done: bool,
    /// The volume's usage figure, which counted the temp file's bytes.
    usage: Arc<DiskUsageCache>,
}

impl Drop for Upload {
    /// A dropped upload that was not put in place removes its temp file, if the name still
    /// holds it.
    fn drop(&mut self) {
        if !self.done
            && holds(&self.staging, &self.id, self.inode)
            && unlinkat(
                self.staging.as_fd(),
                self.id.as_str(),
                UnlinkatFlags::NoRemoveDir,
            )
            .is_ok()
        {
            self.usage.adjust(-signed(self.written));
        }
    }
}

fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn holds(dir: &OwnedFd, name: &str, inode: (u64, u64)) -> bool {
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| (st.st_dev, st.st_ino) == inode)
}

/// One chunk of an upload, decoded.
#[derive(Debug, Clone, Copy)]
pub struct ChunkWrite<'a> {
    pub path: &'a str,
    pub upload_id: &'a str,
    pub offset: u64,
    pub bytes: &'a [u8],
    pub is_final: bool,
    /// The server's disk limit in bytes.
    pub disk_limit: Option<u64>,
}

impl Volume {
    /// Appends one chunk to its upload (beginning it at offset 0) and, for the final one,
    /// puts the file in place. Returns the bytes of the upload received so far. Any error
    /// but a chunk for another path drops the upload and its temp file.
    pub fn write_chunk(&self, c: ChunkWrite<'_>) -> Result<u64, FileError> {
        let rel = to_relative(c.path)?;
        if rel.components().next() == Some(STAGING_DIR) {
            return Err(FileError::InvalidPath(format!(
                "`/server/{STAGING_DIR}` is reserved for uploads in progress"
            )));
        }
        let upload = self.find_or_begin(&rel, c.upload_id, c.offset)?;
        let mut u = upload.lock();
        if u.target != rel {
            return Err(FileError::UploadPath {
                upload_id: c.upload_id.to_owned(),
            });
        }
        let result = self.append(&mut u, &c);
        if result.is_err() || u.done {
            drop(u);
            self.uploads.forget(c.upload_id, &upload);
        }
        result
    }

    /// Drops an upload in progress (its temp file is removed). `false` if there was none.
    pub fn cancel_upload(&self, upload_id: &str) -> bool {
        let removed = self.uploads.table.lock().remove(upload_id);
        removed.is_some()
    }

    /// Drops every upload in progress.
    pub fn cancel_uploads(&self) -> usize {
        let drained: Vec<_> = self.uploads.table.lock().drain().collect();
        drained.len()
    }

    /// Uploads in progress.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.table.lock().len()
    }

    /// Drops the uploads idle for `idle` or more, removes what earlier runs of the agent
    /// left in the staging directory, and the directory itself once empty. Returns how many
    /// uploads and leftovers went.
    pub fn sweep_uploads(&self, idle: Duration) -> usize {
        let mut table = self.uploads.table.lock();
        let stale: Vec<String> = table
            .iter()
            // A locked upload is taking a chunk right now: not idle.
            .filter(|(_, u)| u.try_lock().is_some_and(|u| u.last.elapsed() >= idle))
            .map(|(id, _)| id.clone())
            .collect();
        // Dropped here, under the lock (their Drop takes none): their temp files go before
        // the leftovers are looked for.
        let dropped = stale.iter().filter_map(|id| table.remove(id)).count();
        dropped + self.remove_leftovers(&table)
    }

    /// With the table locked (no upload can begin): removes the staging directory's entries
    /// that belong to no upload in progress, then the directory if it is empty.
    fn remove_leftovers(&self, table: &HashMap<String, Arc<Mutex<Upload>>>) -> usize {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(staging) = openat(self.root.as_fd(), STAGING_DIR, flags, Mode::empty()) else {
            return 0;
        };
        let Ok(at) = staging.try_clone() else {
            return 0;
        };
        let Ok(mut dir) = nix::dir::Dir::from_fd(staging) else {
            return 0;
        };
        let names: Vec<_> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| {
                let b = n.to_bytes();
                b != b"." && b != b".." && !n.to_str().is_ok_and(|s| table.contains_key(s))
            })
            .take(1024)
            .collect();
        let mut removed = 0;
        for name in &names {
            let size = fstatat(at.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_or(0, |st| size_of(&st));
            if unlinkat(at.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                self.usage.adjust(-signed(size));
                removed += 1;
            }
        }
        if table.is_empty() {
            let _ = unlinkat(self.root.as_fd(), STAGING_DIR, UnlinkatFlags::RemoveDir);
        }
        removed
    }

    /// The upload `id`, or a new one when `offset` is 0 and there is room.
    fn find_or_begin(
        &self,
        rel: &RelPath,
        id: &str,
        offset: u64,
    ) -> Result<Arc<Mutex<Upload>>, FileError> {
        let mut table = self.uploads.table.lock();
        if let Some(u) = table.get(id) {
            return Ok(u.clone());
        }
        if offset != 0 {
            return Err(FileError::UnknownUpload {
                upload_id: id.to_owned(),
            });
        }
        if table.len() >= MAX_UPLOADS {
            return Err(FileError::TooManyUploads { max: MAX_UPLOADS });
        }
        let upload = Arc::new(Mutex::new(self.begin(rel, id)?));
        table.insert(id.to_owned(), upload.clone());
        Ok(upload)
    }

    /// Opens the target's parent (creating missing directories), refuses a target that is
    /// not a regular file, and creates the temp file.
    fn begin(&self, rel: &RelPath, id: &str) -> Result<Upload, FileError> {
        let shown = rel.container_path();
        let Some((parent, name)) = rel.split_last() else {
            return Err(FileError::IsDirectory { path: shown });
        };
        let dir = self.open_parent(&parent, true)?;
        let old_size = existing_target(dir.as_fd(), name, &shown)?.map_or(0, |st| size_of(&st));
        let staging_shown = format!("{}/{STAGING_DIR}", super::path::CONTAINER_ROOT);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let staging = self
            .open_or_mkdir(self.root.as_fd(), STAGING_DIR, flags)
            .map_err(|e| FileError::from_errno(&staging_shown, e))?;
        let file = create_exclusive(&staging, id)
            .map_err(|e| FileError::from_errno(&format!("{staging_shown}/{id}"), e))?;
        let st = fstat(&file).map_err(|e| FileError::from_errno(&shown, e))?;
        let upload = Upload {
            id: id.to_owned(),
            target: rel.clone(),
            dir,
            staging,
            file,
            inode: (st.st_dev, st.st_ino),
            written: 0,
            old_size,
            last: Instant::now(),
            done: false,
            usage: self.usage.clone(),
        };
        self.chown(upload.file.as_fd())
            .map_err(|e| FileError::from_errno(&shown, e))?;
        Ok(upload)
    }

    /// Checks the offset and the disk limit, writes the chunk, and commits a final one.
    fn append(&self, u: &mut Upload, c: &ChunkWrite<'_>) -> Result<u64, FileError> {
        let shown = u.target.container_path();
        if c.offset != u.written {
            return Err(FileError::UploadOffset {
                upload_id: u.id.clone(),
                expected: u.written,
                got: c.offset,
            });
        }
        let len = c.bytes.len() as u64;
        {
            let _serial = self.write_lock.lock();
            if let Some(limit) = c.disk_limit
                && len > 0
            {
                let used = self.cached_disk_usage()?;
                let needed = used.saturating_sub(u.old_size).saturating_add(len);
                if needed > limit {
                    return Err(FileError::DiskLimit {
                        path: shown,
                        needed,
                        limit,
                    });
                }
            }
            write_all_at(u.file.as_fd(), c.bytes, c.offset)
                .map_err(|e| FileError::from_errno(&shown, e))?;
            self.usage.adjust(signed(len));
        }
        u.written += len;
        u.last = Instant::now();
        if c.is_final {
            self.commit(u)?;
        }
        Ok(u.written)
    }

    /// Puts a complete upload in place: fsync, rename over the target, fsync the directory.
    fn commit(&self, u: &mut Upload) -> Result<(), FileError> {
        let shown = u.target.container_path();
        let io = |e: Errno| FileError::from_errno(&shown, e);
        let Some((_, name)) = u.target.split_last() else {
            return Err(FileError::IsDirectory { path: shown });
        };
        let old = existing_target(u.dir.as_fd(), name, &shown)?;
        let mut mode = old.as_ref().map_or(NEW_FILE_MODE, |st| st.st_mode & 0o7777);
        if self.shared {
            mode |= 0o060;
        }
        fchmod(u.file.as_fd(), Mode::from_bits_truncate(mode)).map_err(io)?;
        fsync(u.file.as_fd()).map_err(io)?;
        if !holds(&u.staging, &u.id, u.inode) {
            return Err(FileError::UploadTampered {
                upload_id: u.id.clone(),
            });
        }
        // rename(2) never follows a link at the target: one planted since the check above
        // is itself replaced, and nothing outside the volume is touched.
        renameat(u.staging.as_fd(), u.id.as_str(), u.dir.as_fd(), name).map_err(io)?;
        u.done = true;
        let old_size = old.as_ref().map_or(0, size_of);
        self.usage.adjust(-signed(old_size));
        fsync(u.dir.as_fd()).map_err(io)
    }
}

impl Uploads {
    /// Removes `id` from the table if it still maps to `upload`.
    fn forget(&self, id: &str, upload: &Arc<Mutex<Upload>>) {
        let removed = {
            let mut table = self.table.lock();
            match table.get(id) {
                Some(u) if Arc::ptr_eq(u, upload) => table.remove(id),
                _ => None,
            }
        };
        drop(removed);
    }
}

/// Creates `name` in `dir` exclusively; a leftover of that name (an upload id is never
/// reused while in progress, so it belongs to no one) is removed first.
fn create_exclusive(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o600);
    match openat(dir.as_fd(), name, flags, mode) {
        Err(Errno::EEXIST) => {
            unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
            openat(dir.as_fd(), name, flags, mode)
        }
        other => other,
    }
}
