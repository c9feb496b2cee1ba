//! Backups: a volume written as a tar.gz, walked through directory fds.
//!
//! The container may be running and changing its files meanwhile, and it controls every
//! name in them: the walk never follows a link (`fstatat(AT_SYMLINK_NOFOLLOW)`,
//! `openat(O_NOFOLLOW)`), opens each file and checks through the opened fd that it is a
//! regular file (a FIFO swapped in is never read), stores symlinks as symlinks, and skips
//! devices, FIFOs, sockets and mounts. A file that shrinks while read is padded with zeros,
//! one that grows is cut at its size when opened: the archive stays well-formed. The
//! agent's own directories (uploads, restore staging) are left out.
//!
//! Blocks: callers run it on a blocking thread and hand it a writer that streams onward.

use super::error::FileError;
use super::path::CONTAINER_ROOT;
use super::usage::{MAX_WALK_DEPTH, kind, size_of};
use super::volume::Volume;
use flate2::Compression;
use flate2::write::GzEncoder;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use std::ffi::{CStr, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Directories of the agent inside a volume: never archived, never replaced by a restore.
pub const RESERVED: [&str; 2] = [super::upload::STAGING_DIR, super::unpack::RESTORE_DIR];

/// What an archive holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    pub entries: u64,
    /// Bytes of file content (before compression).
    pub bytes: u64,
}

impl Volume {
    /// Writes a tar.gz of the whole volume to `out` and returns `out` (flushed) with what
    /// went in.
    pub fn archive<W: Write>(&self, out: W) -> Result<(W, Packed), FileError> {
        let top = openat(
            self.root.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FileError::from_errno(CONTAINER_ROOT, e))?;
        let mut builder = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
        let mut pack = Pack {
            dev: self.dev,
            builder: &mut builder,
            packed: Packed::default(),
        };
        pack.dir(top, "", 0)?;
        let packed = pack.packed;
        let gz = builder.into_inner().map_err(|e| io_err("", &e))?;
        let out = gz.finish().map_err(|e| io_err("", &e))?;
        Ok((out, packed))
    }
}

fn io_err(rel: &str, e: &std::io::Error) -> FileError {
    FileError::from_io(&format!("{CONTAINER_ROOT}/{rel}"), e)
}

struct Pack<'a, W: Write> {
    dev: u64,
    builder: &'a mut tar::Builder<W>,
    packed: Packed,
}

impl<W: Write> Pack<'_, W> {
    /// Archives what the directory `fd` (at `rel`, `""` for the root) holds.
    fn dir(&mut self, fd: OwnedFd, rel: &str, depth: usize) -> Result<(), FileError> {
        if depth > MAX_WALK_DEPTH {
            return Err(FileError::TooDeep {
                max_depth: MAX_WALK_DEPTH,
            });
        }
        let shown = format!("{CONTAINER_ROOT}/{rel}");
        let io = |e: Errno| FileError::from_errno(&shown, e);
        let at = fd.try_clone().map_err(|e| FileError::from_io(&shown, &e))?;
        let mut names: Vec<std::ffi::CString> = Vec::new();
        for entry in Dir::from_fd(fd).map_err(io)?.iter() {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let b = name.to_bytes();
            if b == b"." || b == b".." || (depth == 0 && RESERVED.iter().any(|r| r.as_bytes() == b))
            {
                continue;
            }
            names.push(name.to_owned());
        }
        // Sorted: the same files give the same archive.
        names.sort();
        for name in names {
            let child = join(rel, &name);
            self.entry(at.as_fd(), &name, &child, depth)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &str,
        depth: usize,
    ) -> Result<(), FileError> {
        let shown = format!("{CONTAINER_ROOT}/{rel}");
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()), // removed meanwhile
            Err(e) => return Err(FileError::from_errno(&shown, e)),
        };
        let path = OsStr::from_bytes(rel.as_bytes());
        match kind(&st) {
            SFlag::S_IFDIR if st.st_dev == self.dev => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = match openat(dir, name, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    // Removed or swapped for a link since the fstatat.
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(()),
                    Err(e) => return Err(FileError::from_errno(&shown, e)),
                };
                let mut h = header(&st, tar::EntryType::Directory, 0);
                self.builder
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(|e| io_err(rel, &e))?;
                self.count(0);
                self.dir(fd, rel, depth + 1)
            }
            SFlag::S_IFREG => self.file(dir, name, rel, &shown),
            SFlag::S_IFLNK => {
                let target = match readlinkat(dir, name) {
                    Ok(t) => t,
                    Err(Errno::ENOENT | Errno::EINVAL) => return Ok(()),
                    Err(e) => return Err(FileError::from_errno(&shown, e)),
                };
                let mut h = header(&st, tar::EntryType::Symlink, 0);
                self.builder
                    .append_link(&mut h, path, &target)
                    .map_err(|e| io_err(rel, &e))?;
                self.count(0);
                Ok(())
            }
            // Devices, FIFOs, sockets, mounts: not a server's files to keep.
            _ => Ok(()),
        }
    }

    fn file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &str,
        shown: &str,
    ) -> Result<(), FileError> {
        // O_NONBLOCK: a FIFO swapped in since the fstatat must not block the open.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(()),
            Err(e) => return Err(FileError::from_errno(shown, e)),
        };
        let st = fstat(&fd).map_err(|e| FileError::from_errno(shown, e))?;
        if kind(&st) != SFlag::S_IFREG {
            return Ok(());
        }
        let size = size_of(&st);
        let mut h = header(&st, tar::EntryType::Regular, size);
        let body = Exactly {
            inner: std::fs::File::from(fd),
            left: size,
        };
        self.builder
            .append_data(&mut h, OsStr::from_bytes(rel.as_bytes()), body)
            .map_err(|e| io_err(rel, &e))?;
        self.count(size);
        Ok(())
    }

    fn count(&mut self, bytes: u64) {
        self.packed.entries = self.packed.entries.saturating_add(1);
        self.packed.bytes = self.packed.bytes.saturating_add(bytes);
    }
}

fn join(rel: &str, name: &CStr) -> String {
    let name = String::from_utf8_lossy(name.to_bytes());
    if rel.is_empty() {
        name.into_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// A GNU header with the entry's kind, size, permission bits and mtime (owners are not
/// kept: a restore gives the files to the server's user).
fn header(st: &FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(st.st_mode & 0o777);
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h
}

/// Exactly `left` bytes of a file: cut if it grew, zero-padded if it shrank.
struct Exactly {
    inner: std::fs::File,
    left: u64,
}

impl Read for Exactly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}
