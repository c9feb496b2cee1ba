//! A server's volume: the directory fd every file operation resolves beneath.

use super::error::FileError;
use super::path::{RelPath, to_relative};
use super::resolve::{Follow, Resolver, explain};
use super::usage::{DiskUsageCache, kind, measure, size_of};
use base64::Engine as _;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};
use parking_lot::Mutex;
use proto::{ContentEncoding, FileEntry, FileKind};
use std::ffi::{CStr, CString};
use std::hash::BuildHasher;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default cap for [`Volume::read`]: larger files are refused with `PAYLOAD_TOO_LARGE`
/// rather than silently cut, so an editor never saves back half a file.
pub const DEFAULT_MAX_READ_BYTES: u64 = 1 << 20;
/// Largest content one [`Volume::write`] accepts.
pub const MAX_WRITE_BYTES: u64 = 8 << 20;
/// Entries of one directory the agent reads (and sorts) at most; beyond this a listing is
/// `truncated`.
pub const MAX_LIST_SCAN: usize = 100_000;
/// Entries of one page, by default and at most.
pub const MAX_PAGE_ENTRIES: usize = 1000;
/// What one entry costs on the wire besides its name (`{"name":…,"type":"symlink",
/// "size":…,"modified":…,"mode":…},` with the widest numbers).
const ENTRY_WIRE_OVERHEAD: usize = 110;
/// Default interval between two disk-usage walks.
pub const DEFAULT_USAGE_MAX_AGE: Duration = Duration::from_secs(30);

/// Mode of newly created files (existing files keep theirs when replaced).
pub(super) const NEW_FILE_MODE: u32 = 0o644;
/// Mode of directories created by `create_parents`.
pub(super) const NEW_DIR_MODE: u32 = 0o755;
/// Attempts at a fresh temp name before giving up (collisions need a guessed random value).
const TEMP_ATTEMPTS: usize = 8;
/// Longest part of the target name kept in the temp name, so the temp name stays ≤ 255.
const TEMP_NAME_KEEP: usize = 200;

/// Which page of a directory to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Index of the first entry (in name order).
    pub offset: u64,
    /// Entries at most (capped at [`MAX_PAGE_ENTRIES`]).
    pub limit: usize,
    /// What the entries may take on the wire at most, JSON-escaped: the page ends early
    /// rather than exceed it.
    pub max_bytes: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: MAX_PAGE_ENTRIES,
            max_bytes: usize::MAX,
        }
    }
}

/// One page of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Sorted by name (bytewise).
    pub entries: Vec<FileEntry>,
    /// Entries in the directory (at most [`MAX_LIST_SCAN`]).
    pub total: u64,
    /// Where the next page starts, when entries follow this one.
    pub next_offset: Option<u64>,
    /// The directory holds more than [`MAX_LIST_SCAN`] entries; the listing covers the
    /// first ones the kernel returned.
    pub truncated: bool,
}

/// A file's content as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// UTF-8 text, or base64 of the raw bytes when `encoding` says so.
    pub content: String,
    /// `Base64` when the bytes are not valid UTF-8 or contain NUL (binary).
    pub encoding: ContentEncoding,
    /// Size of the file in bytes (of the raw bytes, not of `content`).
    pub size: u64,
}

/// Options of [`Volume::write`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The server's disk limit: a write that would take the volume over it is refused with
    /// `INSUFFICIENT_RESOURCES` (writes that shrink a file are always allowed).
    pub disk_limit: Option<u64>,
    /// Create missing parent directories, one component at a time, following no link.
    pub create_parents: bool,
}

/// A server's volume, held open as a directory fd.
///
/// Every operation resolves its path beneath that fd (see `resolve.rs`), so nothing the
/// container does inside its files — symlinks, renames, races — can make the agent read or
/// write outside. All methods block: call them from `smol::unblock`.
#[derive(Debug)]
pub struct Volume {
    pub(super) root: OwnedFd,
    pub(super) dev: u64,
    resolver: Resolver,
    owner: Option<(Uid, Gid)>,
    /// The volume is shared through ACLs (see `acl.rs`): what the agent creates keeps the
    /// group (mask) bits that let the server's user write it.
    pub(super) shared: bool,
    pub(super) usage: Arc<DiskUsageCache>,
    /// Serialises writes so the disk-limit check and the cache adjustment are one step.
    pub(super) write_lock: Mutex<()>,
    /// Uploads in progress (see `upload.rs`).
    pub(super) uploads: super::upload::Uploads,
}

impl Volume {
    /// Opens the volume root, choosing openat2 when the kernel has it.
    pub fn open(root: &Path) -> Result<Volume, FileError> {
        Volume::open_with(root, Resolver::Auto)
    }

    /// Opens the volume root with a given resolution strategy (tests, old kernels).
    ///
    /// The root is opened `O_PATH | O_DIRECTORY | O_NOFOLLOW`: the root must be a real
    /// directory, not a link to one. Errors never include the host path.
    pub fn open_with(root: &Path, resolver: Resolver) -> Result<Volume, FileError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = open(root, flags, Mode::empty()).map_err(FileError::VolumeUnavailable)?;
        let st = fstat(&fd).map_err(FileError::VolumeUnavailable)?;
        let resolver = resolver.settle(fd.as_fd());
        Ok(Volume {
            root: fd,
            dev: st.st_dev,
            resolver,
            owner: None,
            shared: false,
            usage: Arc::new(DiskUsageCache::new(DEFAULT_USAGE_MAX_AGE)),
            write_lock: Mutex::new(()),
            uploads: Default::default(),
        })
    }

    /// Files and directories the agent creates are given to `uid:gid` (the container's user).
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Volume {
        self.owner = Some((Uid::from_raw(uid), Gid::from_raw(gid)));
        self
    }

    /// Files and directories the agent creates keep their owner (the agent) and are shared
    /// with the server's user through the volume's default ACL: the agent never needs root.
    pub fn with_shared_access(mut self) -> Volume {
        self.owner = None;
        self.shared = true;
        self
    }

    /// Re-measure the disk usage at most once per `max_age` (default 30 s).
    pub fn with_usage_max_age(mut self, max_age: Duration) -> Volume {
        self.usage = Arc::new(DiskUsageCache::new(max_age));
        self
    }

    /// The strategy in use: `Openat2` or `Walk`, never `Auto`.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Lists one page of a directory in name order. Names are read first (at most
    /// [`MAX_LIST_SCAN`]), sorted, and only the page's entries are described — without
    /// following links (`fstatat(AT_SYMLINK_NOFOLLOW)`): a link shows as `symlink`.
    pub fn list(&self, path: &str, page: Page) -> Result<Listing, FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        let fd = self.open_rel(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Follow::Beneath)?;
        let at = fd.try_clone().map_err(|e| FileError::from_io(&shown, &e))?;
        let mut dir = Dir::from_fd(fd).map_err(|e| FileError::from_errno(&shown, e))?;
        let mut names: Vec<CString> = Vec::new();
        let mut truncated = false;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| FileError::from_errno(&shown, e))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if names.len() == MAX_LIST_SCAN {
                truncated = true;
                break;
            }
            names.push(name.to_owned());
        }
        names.sort_unstable();
        let total = names.len() as u64;
        let limit = page.limit.min(MAX_PAGE_ENTRIES);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut index = usize::try_from(page.offset).unwrap_or(usize::MAX);
        while index < names.len() && entries.len() < limit {
            let entry = match describe(at.as_fd(), &names[index]) {
                Ok(e) => e,
                Err(Errno::ENOENT) => {
                    index += 1; // removed since getdents saw it
                    continue;
                }
                Err(e) => return Err(FileError::from_errno(&shown, e)),
            };
            let cost = proto::codec::json_string_len(&entry.name) + ENTRY_WIRE_OVERHEAD;
            if bytes.saturating_add(cost) > page.max_bytes && !entries.is_empty() {
                break;
            }
            bytes = bytes.saturating_add(cost);
            entries.push(entry);
            index += 1;
        }
        Ok(Listing {
            entries,
            total,
            next_offset: (index < names.len()).then_some(index as u64),
            truncated,
        })
    }

    /// Reads a regular file of at most `max_bytes` (see [`DEFAULT_MAX_READ_BYTES`]).
    ///
    /// With openat2, symlinks that stay inside the volume are followed; links that lead out
    /// (absolute, or `..` past the root) and magic links fail with `INVALID_PATH`. With the
    /// walk, no link is followed at all.
    pub fn read(&self, path: &str, max_bytes: u64) -> Result<FileContent, FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        // O_NONBLOCK: opening a FIFO must not block; regular files ignore the flag.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = self.open_rel(&rel, flags, Follow::Beneath)?;
        let st = fstat(&fd).map_err(|e| FileError::from_errno(&shown, e))?;
        match kind(&st) {
            SFlag::S_IFREG => {}
            SFlag::S_IFDIR => return Err(FileError::IsDirectory { path: shown }),
            _ => return Err(FileError::NotRegularFile { path: shown }),
        }
        let too_large = |size| FileError::TooLarge {
            path: shown.clone(),
            size,
            limit: max_bytes,
        };
        if size_of(&st) > max_bytes {
            return Err(too_large(size_of(&st)));
        }
        // The file may grow after the fstat: read one byte past the cap to notice.
        let mut bytes = Vec::with_capacity(usize::try_from(size_of(&st)).unwrap_or(0));
        std::fs::File::from(fd)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::from_io(&shown, &e))?;
        let size = bytes.len() as u64;
        if size > max_bytes {
            return Err(too_large(size));
        }
        Ok(encode(bytes))
    }

    /// Atomically replaces (or creates) a file: a temp file in the same directory, written,
    /// fsynced, renamed over the target, then the directory fsynced. Readers see the old or
    /// the new content, never a mix; a crash leaves at worst a `.NAME.ctrl-tmp-*` file.
    ///
    /// No link is followed anywhere on the path, and a target that is itself a symlink is
    /// refused (`INVALID_PATH`) rather than replaced. Returns the bytes written.
    pub fn write(&self, path: &str, bytes: &[u8], opts: WriteOptions) -> Result<u64, FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        let Some((parent, name)) = rel.split_last() else {
            return Err(FileError::IsDirectory { path: shown });
        };
        let new_size = bytes.len() as u64;
        if new_size > MAX_WRITE_BYTES {
            return Err(FileError::TooLarge {
                path: shown,
                size: new_size,
                limit: MAX_WRITE_BYTES,
            });
        }
        let _serial = self.write_lock.lock();
        let dir = self.open_parent(&parent, opts.create_parents)?;
        let old = existing_target(dir.as_fd(), name, &shown)?;
        let old_size = old.as_ref().map_or(0, size_of);
        if let Some(limit) = opts.disk_limit {
            let used = self.cached_disk_usage()?;
            let needed = used.saturating_sub(old_size).saturating_add(new_size);
            if needed > limit && new_size > old_size {
                return Err(FileError::DiskLimit {
                    path: shown,
                    needed,
                    limit,
                });
            }
        }
        let mut mode = old.map_or(NEW_FILE_MODE, |st| st.st_mode & 0o7777);
        if self.shared {
            // Under a default ACL the group bits are the mask: rw for the server's user.
            mode |= 0o060;
        }
        self.replace(dir.as_fd(), name, bytes, mode)
            .map_err(|e| FileError::from_errno(&shown, e))?;
        self.usage.adjust(new_size as i64 - old_size as i64);
        Ok(new_size)
    }

    /// Measures the volume now (a full walk; see `usage.rs` for what counts).
    pub fn disk_usage(&self) -> Result<u64, FileError> {
        measure(self.root.as_fd(), self.dev)
    }

    /// Measures the volume now and makes that the figure writes are checked against.
    pub fn measure_now(&self) -> Result<u64, FileError> {
        let bytes = self.disk_usage()?;
        self.usage.store(bytes);
        Ok(bytes)
    }

    /// The disk usage, re-measured only when the cached figure is older than the max age.
    pub fn cached_disk_usage(&self) -> Result<u64, FileError> {
        self.usage.get(|| self.disk_usage())
    }

    pub(super) fn open_rel(
        &self,
        rel: &RelPath,
        flags: OFlag,
        follow: Follow,
    ) -> Result<OwnedFd, FileError> {
        self.resolver
            .open(self.root.as_fd(), rel, flags, Mode::empty(), follow)
            .map_err(|e| FileError::from_errno(&rel.container_path(), e))
    }

    /// The parent directory of a write target, opened for `fsync` (not `O_PATH`), through no
    /// link; missing directories are created when asked.
    pub(super) fn open_parent(&self, parent: &RelPath, create: bool) -> Result<OwnedFd, FileError> {
        if !create {
            return self.open_rel(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Follow::Never);
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut current = openat(self.root.as_fd(), ".", flags, Mode::empty())
            .map_err(|e| FileError::from_errno(&parent.container_path(), e))?;
        let mut shown = String::from(super::path::CONTAINER_ROOT);
        for name in parent.components() {
            shown.push('/');
            shown.push_str(name);
            current = self
                .open_or_mkdir(current.as_fd(), name, flags)
                .map_err(|e| FileError::from_errno(&shown, e))?;
        }
        Ok(current)
    }

    /// One step of `create_parents`: open `name` under `dir` without following a link,
    /// creating it first when it does not exist. A link in the way is an error.
    pub(super) fn open_or_mkdir<P: ?Sized + nix::NixPath>(
        &self,
        dir: BorrowedFd<'_>,
        name: &P,
        flags: OFlag,
    ) -> Result<OwnedFd, Errno> {
        match openat(dir, name, flags, Mode::empty()) {
            Err(Errno::ENOENT) => {}
            other => return other.map_err(|e| explain(dir, name, e)),
        }
        let dir_mode = if self.shared {
            NEW_DIR_MODE | 0o070
        } else {
            NEW_DIR_MODE
        };
        match mkdirat(dir, name, Mode::from_bits_truncate(dir_mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| explain(dir, name, e))?;
        // chown through the fd we hold: if the container swapped the new directory for a
        // link meanwhile, the open above already failed.
        self.chown(fd.as_fd())?;
        Ok(fd)
    }

    /// Writes `bytes` to a fresh temp file in `dir` and renames it onto `name`.
    fn replace(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), Errno> {
        let (temp_name, fd) = create_temp(dir, name)?;
        let temp = TempGuard {
            dir,
            name: &temp_name,
            armed: true,
        };
        write_all(fd.as_fd(), bytes)?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
        self.chown(fd.as_fd())?;
        fsync(fd.as_fd())?;
        drop(fd);
        // rename(2) never follows a link at the target: if the container put one there since
        // the check, the link itself is replaced, and nothing outside is touched.
        renameat(dir, temp.name, dir, name)?;
        temp.disarm();
        fsync(dir)
    }

    pub(super) fn chown(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        match self.owner {
            Some((uid, gid)) => fchown(fd, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }
}

/// The current target of a write: `None` if absent; refused if a link, directory or
/// anything but a regular file.
pub(super) fn existing_target(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &str,
) -> Result<Option<FileStat>, FileError> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(FileError::from_errno(shown, e)),
    };
    let path = shown.to_owned();
    match kind(&st) {
        SFlag::S_IFREG => Ok(Some(st)),
        SFlag::S_IFLNK => Err(FileError::Symlink { path }),
        SFlag::S_IFDIR => Err(FileError::IsDirectory { path }),
        _ => Err(FileError::NotRegularFile { path }),
    }
}

/// Creates `.<name>.ctrl-tmp-<random>` with `O_CREAT | O_EXCL | O_NOFOLLOW` in `dir`.
///
/// A single component under an fd we already trust needs no openat2: `O_EXCL` with
/// `O_CREAT` never follows a link, it fails on anything already there.
fn create_temp(dir: BorrowedFd<'_>, name: &str) -> Result<(String, OwnedFd), Errno> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut keep = name.len().min(TEMP_NAME_KEEP);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut last = Errno::EEXIST;
    for _ in 0..TEMP_ATTEMPTS {
        // RandomState is seeded from the OS once per thread and perturbed per instance:
        // unpredictable enough that a container cannot pre-create the name.
        let random = std::collections::hash_map::RandomState::new()
            .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
        let temp = format!(".{}.ctrl-tmp-{random:016x}", &name[..keep]);
        match openat(
            dir,
            temp.as_str(),
            flags,
            Mode::from_bits_truncate(NEW_FILE_MODE),
        ) {
            Ok(fd) => return Ok((temp, fd)),
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Removes the temp file unless the rename consumed it.
struct TempGuard<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    armed: bool,
}

impl TempGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: failing to clean up must not mask the error being returned.
            let _ = unlinkat(self.dir, self.name, UnlinkatFlags::NoRemoveDir);
        }
    }
}

pub(super) fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `bytes` at `offset` (`pwrite`, retried on short writes and `EINTR`).
pub(super) fn write_all_at(fd: BorrowedFd<'_>, mut bytes: &[u8], offset: u64) -> Result<(), Errno> {
    let mut at = i64::try_from(offset).map_err(|_| Errno::EFBIG)?;
    while !bytes.is_empty() {
        match nix::sys::uio::pwrite(fd, bytes, at) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => {
                bytes = &bytes[n..];
                at = at.checked_add(n as i64).ok_or(Errno::EFBIG)?;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One listing entry, described without following a link.
fn describe(dir: BorrowedFd<'_>, name: &CStr) -> Result<FileEntry, Errno> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = match kind(&st) {
        SFlag::S_IFREG => FileKind::File,
        SFlag::S_IFDIR => FileKind::Dir,
        SFlag::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Ok(FileEntry {
        name: name.to_string_lossy().into_owned(),
        kind,
        size: size_of(&st),
        modified: st.st_mtime,
        mode: st.st_mode & 0o7777,
    })
}

/// Text stays text; anything that is not UTF-8, or holds a NUL, travels as base64.
fn encode(bytes: Vec<u8>) -> FileContent {
    let size = bytes.len() as u64;
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => FileContent {
            content: text,
            encoding: ContentEncoding::Utf8,
            size,
        },
        Ok(text) => base64_content(text.as_bytes(), size),
        Err(e) => base64_content(e.as_bytes(), size),
    }
}

fn base64_content(bytes: &[u8], size: u64) -> FileContent {
    FileContent {
        content: base64::engine::general_purpose::STANDARD.encode(bytes),
        encoding: ContentEncoding::Base64,
        size,
    }
}
