//! How many bytes a server's files take, measured through directory fds, and a cache so the
//! measurement (a full tree walk) runs at most once per interval.
//!
//! What counts: the apparent size (`st_size`) of every regular file and symlink, each inode
//! once (hard links are not double-counted). Directories count nothing, which keeps the
//! figure identical across filesystems. Apparent size rather than allocated blocks means a
//! sparse file cannot hide its size from the disk limit.

use super::error::FileError;
use super::path::CONTAINER_ROOT;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Deepest nesting the walk descends into. Each level holds two fds open, and the fd table
/// is shared with every other server this agent runs, so the depth must be bounded.
pub const MAX_WALK_DEPTH: usize = 128;

/// Measures the tree under `root` (an fd of the volume root on device `dev`).
///
/// Never follows a symlink (`fstatat(AT_SYMLINK_NOFOLLOW)`, `openat(O_NOFOLLOW)`), never
/// crosses into another filesystem (a mount inside the volume is skipped). Entries that
/// vanish mid-walk are skipped: the container is free to change its files meanwhile.
pub(crate) fn measure(root: BorrowedFd<'_>, dev: u64) -> Result<u64, FileError> {
    let top = openat(
        root,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FileError::from_errno(CONTAINER_ROOT, e))?;
    let mut walk = Walk {
        dev,
        seen: HashSet::new(),
        total: 0,
    };
    walk.dir(top, CONTAINER_ROOT, 0)?;
    Ok(walk.total)
}

struct Walk {
    dev: u64,
    /// Inodes with more than one link already counted.
    seen: HashSet<u64>,
    total: u64,
}

impl Walk {
    fn dir(&mut self, fd: OwnedFd, shown: &str, depth: usize) -> Result<(), FileError> {
        if depth > MAX_WALK_DEPTH {
            return Err(FileError::TooDeep {
                max_depth: MAX_WALK_DEPTH,
            });
        }
        let io = |e: Errno| FileError::from_errno(shown, e);
        // Dir owns one descriptor for getdents; the clone is for fstatat/openat meanwhile.
        let at = fd.try_clone().map_err(|e| FileError::from_io(shown, &e))?;
        let mut dir = Dir::from_fd(fd).map_err(io)?;
        for entry in dir.iter() {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let st = match fstatat(at.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(io(e)),
            };
            match kind(&st) {
                SFlag::S_IFDIR if st.st_dev == self.dev => {
                    let flags =
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                    let child = match openat(at.as_fd(), name, flags, Mode::empty()) {
                        Ok(child) => child,
                        // Removed or swapped for a link since the fstatat: not ours to count.
                        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
                        // An unprivileged agent cannot enter a directory the server kept
                        // to itself (see `acl.rs`); it counts what it can see.
                        Err(Errno::EACCES) => continue,
                        Err(e) => return Err(io(e)),
                    };
                    let child_shown = format!("{shown}/{}", name.to_string_lossy());
                    self.dir(child, &child_shown, depth + 1)?;
                }
                SFlag::S_IFREG | SFlag::S_IFLNK => {
                    if st.st_nlink > 1 && !self.seen.insert(st.st_ino) {
                        continue;
                    }
                    self.total = self.total.saturating_add(size_of(&st));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The file-type bits of a stat.
pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// `st_size` as an unsigned byte count.
pub(crate) fn size_of(st: &FileStat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// A measured usage that is reused for `max_age`, and adjusted by the writes that go through
/// the agent meanwhile so back-to-back writes cannot each slip under the limit.
#[derive(Debug)]
pub struct DiskUsageCache {
    max_age: Duration,
    state: Mutex<Option<(Instant, u64)>>,
}

impl DiskUsageCache {
    /// A cache that re-measures at most once per `max_age`.
    pub fn new(max_age: Duration) -> DiskUsageCache {
        DiskUsageCache {
            max_age,
            state: Mutex::new(None),
        }
    }

    /// The cached figure, or a fresh one from `measure` when none is younger than `max_age`.
    ///
    /// The lock is held while measuring, on purpose: concurrent callers wait for the one walk
    /// instead of each starting their own. Call from a blocking thread, never an executor.
    pub fn get(&self, measure: impl FnOnce() -> Result<u64, FileError>) -> Result<u64, FileError> {
        let mut state = self.state.lock();
        if let Some((at, bytes)) = *state
            && at.elapsed() < self.max_age
        {
            return Ok(bytes);
        }
        let bytes = measure()?;
        *state = Some((Instant::now(), bytes));
        Ok(bytes)
    }

    /// Records a figure just measured.
    pub fn store(&self, bytes: u64) {
        *self.state.lock() = Some((Instant::now(), bytes));
    }

    /// Applies a known change (bytes added minus bytes removed) to the cached figure.
    pub fn adjust(&self, delta: i64) {
        if let Some((_, bytes)) = self.state.lock().as_mut() {
            *bytes = bytes.saturating_add_signed(delta);
        }
    }

    /// Forgets the figure; the next [`DiskUsageCache::get`] measures.
    pub fn invalidate(&self) {
        *self.state.lock() = None;
    }
}
