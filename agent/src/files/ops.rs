//! Reading a file piece by piece, and changing the tree: rename, create a directory, delete.
//!
//! Every change resolves the parent directories without following any link
//! (`RESOLVE_NO_SYMLINKS` under `RESOLVE_BENEATH`) and acts on the last component through
//! the parent's fd with the `*at` calls, none of which follows a link at the last component:
//! `renameat2` moves a link itself, `unlinkat` removes a link itself, `mkdirat` fails on one.

use super::error::FileError;
use super::path::{RelPath, to_relative};
use super::resolve::Follow;
use super::usage::{kind, size_of};
use super::volume::{NEW_DIR_MODE, Volume};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Entries one delete removes at most: a tree a container keeps refilling cannot hold the
/// agent's blocking thread forever.
pub const MAX_DELETE_ENTRIES: u64 = 10_000_000;
/// Times a directory is emptied before its removal gives up (something keeps filling it).
const RMDIR_ATTEMPTS: usize = 3;
/// Names read from a directory before they are removed (then the directory is read again).
const DELETE_BATCH: usize = 1024;

/// One piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// The file's size when the piece was read.
    pub size: u64,
    /// Nothing follows this piece (it reached the size, or the file ended early).
    pub eof: bool,
}

impl Volume {
    /// Reads at most `max_len` bytes of the regular file `path` from `offset`, with the
    /// link policy of [`Volume::read`]. An offset at or past the end gives an empty, final
    /// piece.
    pub fn read_chunk(&self, path: &str, offset: u64, max_len: usize) -> Result<Chunk, FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = self.open_rel(&rel, flags, Follow::Beneath)?;
        let st = fstat(&fd).map_err(|e| FileError::from_errno(&shown, e))?;
        match kind(&st) {
            SFlag::S_IFREG => {}
            SFlag::S_IFDIR => return Err(FileError::IsDirectory { path: shown }),
            _ => return Err(FileError::NotRegularFile { path: shown }),
        }
        let size = size_of(&st);
        let want = usize::try_from(size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max_len);
        let mut bytes = vec![0u8; want];
        let mut got = 0;
        while got < want {
            let at = i64::try_from(offset + got as u64).map_err(|_| FileError::Io {
                path: shown.clone(),
                errno: Errno::EOVERFLOW,
            })?;
            match nix::sys::uio::pread(&fd, &mut bytes[got..], at) {
                Ok(0) => break, // shrank since the fstat
                Ok(n) => got += n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(FileError::from_errno(&shown, e)),
            }
        }
        bytes.truncate(got);
        let eof = got < want || offset.saturating_add(got as u64) >= size;
        Ok(Chunk { bytes, size, eof })
    }

    /// Moves `from` to `to` (both container paths) within the volume. An existing `to` is
    /// never replaced (`CONFLICT`), the root never moves, and a directory never moves into
    /// itself. A link at either end is moved or refused as the link it is, never followed.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FileError> {
        let (from_rel, to_rel) = (to_relative(from)?, to_relative(to)?);
        let (from_shown, to_shown) = (from_rel.container_path(), to_rel.container_path());
        let (Some((from_parent, from_name)), Some((to_parent, to_name))) =
            (from_rel.split_last(), to_rel.split_last())
        else {
            return Err(FileError::InvalidPath(
                "`/server` itself cannot be moved or replaced".into(),
            ));
        };
        let into_itself = to_rel
            .as_str()
            .strip_prefix(from_rel.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if into_itself {
            return Err(FileError::IntoItself {
                from: from_shown,
                to: to_shown,
            });
        }
        let from_dir = self.open_dir_no_follow(&from_parent)?;
        let to_dir = self.open_dir_no_follow(&to_parent)?;
        fstatat(from_dir.as_fd(), from_name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| FileError::from_errno(&from_shown, e))?;
        match renameat2(
            from_dir.as_fd(),
            from_name,
            to_dir.as_fd(),
            to_name,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST | Errno::ENOTEMPTY) => Err(FileError::Exists { path: to_shown }),
            // The kernel's own "into a subdirectory of itself" (a rename raced the check).
            Err(Errno::EINVAL) => Err(FileError::IntoItself {
                from: from_shown,
                to: to_shown,
            }),
            Err(Errno::ENOENT) => Err(FileError::NotFound { path: from_shown }),
            Err(e) => Err(FileError::from_errno(&to_shown, e)),
        }
    }

    /// Creates the directory `path`, and its missing parents (through no link). An existing
    /// entry of that name is `CONFLICT`.
    pub fn create_directory(&self, path: &str) -> Result<(), FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        let Some((parent, name)) = rel.split_last() else {
            return Err(FileError::Exists { path: shown });
        };
        let dir = self.open_parent(&parent, true)?;
        let mode = if self.shared {
            NEW_DIR_MODE | 0o070
        } else {
            NEW_DIR_MODE
        };
        mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(mode))
            .map_err(|e| FileError::from_errno(&shown, e))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir.as_fd(), name, flags, Mode::empty())
            .map_err(|e| FileError::from_errno(&shown, e))?;
        self.chown(fd.as_fd())
            .map_err(|e| FileError::from_errno(&shown, e))
    }

    /// Deletes `path`: a file or link (the link itself), or a directory with everything
    /// beneath it, walked through directory fds without following any link or crossing into
    /// another filesystem. Returns the bytes freed (files with other hard links not counted).
    pub fn delete(&self, path: &str) -> Result<u64, FileError> {
        let rel = to_relative(path)?;
        let shown = rel.container_path();
        let Some((parent, name)) = rel.split_last() else {
            return Err(FileError::InvalidPath(
                "`/server` itself cannot be deleted".into(),
            ));
        };
        let dir = self.open_dir_no_follow(&parent)?;
        let mut walk = Delete {
            dev: self.dev,
            removed: 0,
            freed: 0,
        };
        let result = walk.entry(dir.as_fd(), name, &shown, 0);
        self.usage
            .adjust(-i64::try_from(walk.freed).unwrap_or(i64::MAX));
        result.map(|()| walk.freed)
    }

    /// A directory of the volume, reached through no link.
    fn open_dir_no_follow(&self, rel: &RelPath) -> Result<OwnedFd, FileError> {
        self.open_rel(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Follow::Never)
    }
}

/// A recursive delete in progress.
struct Delete {
    dev: u64,
    removed: u64,
    freed: u64,
}

impl Delete {
    /// Removes `name` in `dir` (whatever it is) and, for a directory, what it holds.
    /// `name` is a `&str` from a request or a `&CStr` read from a directory.
    fn entry<P: ?Sized + nix::NixPath>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &P,
        shown: &str,
        depth: usize,
    ) -> Result<(), FileError> {
        let io = |e: Errno| FileError::from_errno(shown, e);
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
        self.count(shown)?;
        if kind(&st) != SFlag::S_IFDIR {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io)?;
            if st.st_nlink <= 1 && matches!(kind(&st), SFlag::S_IFREG | SFlag::S_IFLNK) {
                self.freed = self.freed.saturating_add(size_of(&st));
            }
            return Ok(());
        }
        if st.st_dev != self.dev {
            // A mount point inside the volume: not the server's files to empty.
            return Err(FileError::Escapes {
                path: shown.to_owned(),
            });
        }
        if depth >= super::usage::MAX_WALK_DEPTH {
            return Err(FileError::TooDeep {
                max_depth: super::usage::MAX_WALK_DEPTH,
            });
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // The server may be adding entries meanwhile: empty again a few times, then give up.
        for _ in 0..RMDIR_ATTEMPTS {
            // Swapped for a link since the fstatat: ELOOP or ENOTDIR, and nothing is followed.
            let fd = openat(dir, name, flags, Mode::empty()).map_err(io)?;
            self.empty(fd, shown, depth)?;
            match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Err(Errno::ENOTEMPTY) => continue,
                other => return other.map_err(io),
            }
        }
        Err(FileError::Io {
            path: shown.to_owned(),
            errno: Errno::ENOTEMPTY,
        })
    }

    /// Removes everything in the directory `fd`, a batch of names at a time (removing
    /// entries while reading the same stream could skip some).
    fn empty(&mut self, fd: OwnedFd, shown: &str, depth: usize) -> Result<(), FileError> {
        let io = |e: Errno| FileError::from_errno(shown, e);
        let at = fd.try_clone().map_err(|e| FileError::from_io(shown, &e))?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(io)?;
        loop {
            let mut batch = Vec::new();
            // Each `iter()` starts from the beginning (the iterator rewinds when dropped).
            for entry in dir.iter() {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                batch.push(entry.file_name().to_owned());
                if batch.len() == DELETE_BATCH {
                    break;
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            for name in batch {
                let child = format!("{shown}/{}", name.to_string_lossy());
                match self.entry(at.as_fd(), name.as_c_str(), &child, depth + 1) {
                    Ok(()) | Err(FileError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    fn count(&mut self, shown: &str) -> Result<(), FileError> {
        self.removed += 1;
        if self.removed > MAX_DELETE_ENTRIES {
            return Err(FileError::TooManyEntries {
                path: shown.to_owned(),
                max: MAX_DELETE_ENTRIES,
            });
        }
        Ok(())
    }
}
