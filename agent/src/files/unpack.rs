//! Restores: a tar.gz unpacked beneath the volume, as hostile input.
//!
//! The archive comes from the panel's store, but whoever could write there (or crafted the
//! upload) must not reach outside the volume: tar-slip is a classic escape. So:
//! - every entry is unpacked into a fresh staging directory inside the volume
//!   (`/server/.ctrl-restore/<restoreId>`), through directory fds opened `O_NOFOLLOW` one
//!   component at a time, files created `O_CREAT | O_EXCL | O_NOFOLLOW`;
//! - entries with `..`, absolute paths, the agent's own directories, hard links, devices,
//!   FIFOs and any other kind are refused; a symlink is accepted only when its target is
//!   relative, its `..` are all leading and no more than its own depth (so no chain of
//!   links can climb out: each resolves to an ancestor beneath the root, then descends);
//! - the content (file bytes plus link targets) is checked against the disk limit before
//!   it is written, in checked arithmetic; entries and depth are bounded;
//! - only when the whole archive unpacked does the swap run: the current entries move
//!   aside (`.ctrl-restore/<restoreId>.old`), the staged ones move in (renames within the
//!   volume, so the volume's own directory — the container's bind mount — stays), and the
//!   old ones are deleted. A failure before the swap deletes the staging directory and
//!   leaves the files as they were; a failure during it moves everything back.

use super::archive::RESERVED;
use super::error::FileError;
use super::path::CONTAINER_ROOT;
use super::volume::Volume;
use flate2::read::GzDecoder;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, fstatat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::symlinkat;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The agent's restore staging directory at the volume's root.
pub const RESTORE_DIR: &str = ".ctrl-restore";
/// Entries one archive may hold.
pub const MAX_ARCHIVE_ENTRIES: u64 = 10_000_000;

/// What a restore put in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    /// File bytes plus link-target bytes (what the disk limit counts).
    pub bytes: u64,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Volume {
    /// Unpacks the tar.gz read from `input` and swaps it in for the volume's files (see the
    /// module docs). `restore_id` names the staging directory (a validated id).
    pub fn restore<R: Read>(
        &self,
        mut input: R,
        restore_id: &str,
        disk_limit: Option<u64>,
    ) -> Result<Unpacked, FileError> {
        let shown = format!("{CONTAINER_ROOT}/{RESTORE_DIR}");
        let base = self
            .open_or_mkdir(self.root.as_fd(), RESTORE_DIR, DIR_FLAGS)
            .map_err(|e| FileError::from_errno(&shown, e))?;
        let old_name = format!("{restore_id}.old");
        for leftover in [restore_id, old_name.as_str()] {
            self.remove_in(base.as_fd(), leftover)?;
        }
        let staging = self
            .open_or_mkdir(base.as_fd(), restore_id, DIR_FLAGS)
            .map_err(|e| FileError::from_errno(&shown, e))?;
        let mut unpack = Unpack {
            volume: self,
            staging: staging.as_fd(),
            limit: disk_limit,
            done: Unpacked::default(),
        };
        let result = unpack
            .all(&mut input)
            .and_then(|()| drain(&mut input))
            .and_then(|()| self.swap(base.as_fd(), staging.as_fd(), &old_name));
        let done = unpack.done;
        drop(staging);
        // Whatever happened, the staging directories go (after a swap they hold the old
        // files, or nothing).
        let cleanup = [restore_id, old_name.as_str()]
            .into_iter()
            .map(|name| self.remove_in(base.as_fd(), name))
            .find(Result::is_err)
            .unwrap_or(Ok(()));
        self.usage.invalidate();
        result?;
        if let Err(e) = cleanup {
            log::warn!("restore {restore_id}: leftovers not removed: {e}");
        }
        Ok(done)
    }

    /// Deletes `name` in `dir` (a directory of the agent's own), if it exists.
    fn remove_in(&self, dir: BorrowedFd<'_>, name: &str) -> Result<(), FileError> {
        let rel = format!("/{RESTORE_DIR}/{name}");
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(FileError::from_errno(&rel, e)),
            Ok(_) => self.delete(&format!("{CONTAINER_ROOT}{rel}")).map(drop),
        }
    }

    /// Moves the root's entries into `.ctrl-restore/<old>`, then the staged ones into the
    /// root; on a failure, moves everything back.
    fn swap(
        &self,
        base: BorrowedFd<'_>,
        staging: BorrowedFd<'_>,
        old_name: &str,
    ) -> Result<(), FileError> {
        let shown = format!("{CONTAINER_ROOT}/{RESTORE_DIR}/{old_name}");
        let old = self
            .open_or_mkdir(base, old_name, DIR_FLAGS)
            .map_err(|e| FileError::from_errno(&shown, e))?;
        let root = self.root.as_fd();
        let current = names(root, true)?;
        let staged = names(staging, false)?;
        let mut moved_out = Vec::new();
        let mut moved_in = Vec::new();
        let outcome = (|| {
            for n in &current {
                move_entry(root, old.as_fd(), n)?;
                moved_out.push(n.clone());
            }
            for n in &staged {
                move_entry(staging, root, n)?;
                moved_in.push(n.clone());
            }
            Ok(())
        })();
        if outcome.is_err() {
            for n in moved_in.iter().rev() {
                let _ = move_entry(root, staging, n);
            }
            for n in moved_out.iter().rev() {
                let _ = move_entry(old.as_fd(), root, n);
            }
        }
        outcome
    }
}

/// Reads what follows the archive's end to the input's own end: a restore whose input ends
/// in an error (abandoned, cancelled) is not swapped in.
fn drain<R: Read>(input: &mut R) -> Result<(), FileError> {
    std::io::copy(input, &mut std::io::sink())
        .map(drop)
        .map_err(|e| refuse(b"", format!("the archive did not arrive whole: {e}")))
}

/// The names in a directory (at the root: without the agent's own directories).
fn names(dir: BorrowedFd<'_>, at_root: bool) -> Result<Vec<OsString>, FileError> {
    let io = |e: Errno| FileError::from_errno(CONTAINER_ROOT, e);
    let fd = openat(dir, ".", DIR_FLAGS, Mode::empty()).map_err(io)?;
    let mut out = Vec::new();
    for entry in nix::dir::Dir::from_fd(fd).map_err(io)?.iter() {
        let entry = entry.map_err(io)?;
        let b = entry.file_name().to_bytes();
        if b == b"." || b == b".." || (at_root && RESERVED.iter().any(|r| r.as_bytes() == b)) {
            continue;
        }
        out.push(OsStr::from_bytes(b).to_owned());
    }
    Ok(out)
}

fn move_entry(from: BorrowedFd<'_>, to: BorrowedFd<'_>, name: &OsStr) -> Result<(), FileError> {
    renameat(from, name, to, name).map_err(|e| {
        FileError::from_errno(&format!("{CONTAINER_ROOT}/{}", name.to_string_lossy()), e)
    })
}

struct Unpack<'a> {
    volume: &'a Volume,
    staging: BorrowedFd<'a>,
    limit: Option<u64>,
    done: Unpacked,
}

fn refuse(entry: &[u8], reason: impl Into<String>) -> FileError {
    FileError::BadArchive {
        entry: String::from_utf8_lossy(entry).chars().take(256).collect(),
        reason: reason.into(),
    }
}

impl Unpack<'_> {
    fn all<R: Read>(&mut self, input: &mut R) -> Result<(), FileError> {
        let mut archive = tar::Archive::new(GzDecoder::new(input));
        let entries = archive
            .entries()
            .map_err(|e| refuse(b"", format!("not a tar.gz: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| refuse(b"", format!("unreadable entry: {e}")))?;
            self.entry(entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), FileError> {
        let raw = entry.path_bytes().into_owned();
        self.done.entries += 1;
        if self.done.entries > MAX_ARCHIVE_ENTRIES {
            return Err(refuse(&raw, "the archive holds too many entries"));
        }
        let parts = components(&raw)?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(()); // `./`: the root itself
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o777;
        let mtime = header.mtime().unwrap_or(0);
        match kind {
            tar::EntryType::Directory => {
                let dir = self.parent(&raw, &parts)?;
                drop(dir);
                Ok(())
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                self.charge(&raw, size)?;
                let dir = self.parent(&raw, parents)?;
                let fd = self.create_file(dir.as_fd(), name, &raw)?;
                let mut file = std::fs::File::from(fd);
                let copied = std::io::copy(&mut entry, &mut file)
                    .map_err(|e| refuse(&raw, format!("reading its content failed: {e}")))?;
                if copied != size {
                    return Err(refuse(&raw, "its content is shorter than its header says"));
                }
                let file_mode = if self.volume.shared {
                    mode | 0o060
                } else {
                    mode
                };
                let fd = OwnedFd::from(file);
                fchmod(fd.as_fd(), Mode::from_bits_truncate(file_mode))
                    .map_err(|e| FileError::from_errno(&show(&raw), e))?;
                let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
                let _ = nix::sys::stat::futimens(fd.as_fd(), &t, &t);
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&raw, "a symlink without a target"))?
                    .into_owned();
                check_link(&raw, parents.len(), &target)?;
                self.charge(&raw, target.len() as u64)?;
                let dir = self.parent(&raw, parents)?;
                symlinkat(OsStr::from_bytes(&target), dir.as_fd(), name.as_os_str())
                    .map_err(|e| refuse(&raw, format!("cannot create the link: {e}")))?;
                let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
                let _ = utimensat(
                    dir.as_fd(),
                    name.as_os_str(),
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                );
                Ok(())
            }
            tar::EntryType::Link => Err(refuse(&raw, "hard links are refused")),
            tar::EntryType::Char | tar::EntryType::Block => {
                Err(refuse(&raw, "device files are refused"))
            }
            tar::EntryType::Fifo => Err(refuse(&raw, "FIFOs are refused")),
            other => Err(refuse(
                &raw,
                format!("entries of type {other:?} are refused"),
            )),
        }
    }

    /// Counts `bytes` against the disk limit.
    fn charge(&mut self, raw: &[u8], bytes: u64) -> Result<(), FileError> {
        let total = self
            .done
            .bytes
            .checked_add(bytes)
            .ok_or_else(|| refuse(raw, "sizes overflow"))?;
        if let Some(limit) = self.limit
            && total > limit
        {
            return Err(FileError::DiskLimit {
                path: show(raw),
                needed: total,
                limit,
            });
        }
        self.done.bytes = total;
        Ok(())
    }

    /// Opens (creating) the directory `parts` beneath the staging directory, one component
    /// at a time, following no link.
    fn parent(&self, raw: &[u8], parts: &[OsString]) -> Result<OwnedFd, FileError> {
        let mut dir = openat(self.staging, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| FileError::from_errno(&show(raw), e))?;
        for part in parts {
            dir = self
                .volume
                .open_or_mkdir(dir.as_fd(), part.as_os_str(), DIR_FLAGS)
                .map_err(|e| match e {
                    Errno::ELOOP | Errno::ENOTDIR => {
                        refuse(raw, "a parent is not a directory (a link or a file)")
                    }
                    e => FileError::from_errno(&show(raw), e),
                })?;
        }
        Ok(dir)
    }

    fn create_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        raw: &[u8],
    ) -> Result<OwnedFd, FileError> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd =
            openat(dir, name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| match e {
                Errno::EEXIST => refuse(raw, "the archive names this entry twice"),
                e => FileError::from_errno(&show(raw), e),
            })?;
        self.volume
            .chown(fd.as_fd())
            .map_err(|e| FileError::from_errno(&show(raw), e))?;
        Ok(fd)
    }
}

fn show(raw: &[u8]) -> String {
    format!("{CONTAINER_ROOT}/{}", String::from_utf8_lossy(raw))
}

/// The components of an entry's path: relative, no `..`, no NUL, not one of the agent's
/// own directories at the root; `.` and empty components dropped.
fn components(raw: &[u8]) -> Result<Vec<OsString>, FileError> {
    if raw.first() == Some(&b'/') {
        return Err(refuse(raw, "absolute paths are refused"));
    }
    if raw.contains(&0) {
        return Err(refuse(raw, "NUL in a path"));
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refuse(raw, "`..` in a path is refused")),
            p if p.len() > 255 => return Err(refuse(raw, "a name longer than 255 bytes")),
            p => out.push(OsStr::from_bytes(p).to_owned()),
        }
    }
    if out.len() > super::usage::MAX_WALK_DEPTH {
        return Err(refuse(raw, "nested too deep"));
    }
    if let Some(first) = out.first()
        && RESERVED.iter().any(|r| first.as_bytes() == r.as_bytes())
    {
        return Err(refuse(
            raw,
            "the agent's own directories cannot be restored",
        ));
    }
    Ok(out)
}

/// A symlink at depth `depth` (its parent's components) may point to `target` only when it
/// cannot lead out: relative, every `..` leading and at most `depth` of them.
fn check_link(raw: &[u8], depth: usize, target: &[u8]) -> Result<(), FileError> {
    if target.is_empty() || target.contains(&0) {
        return Err(refuse(raw, "an empty or NUL-holding link target"));
    }
    if target.first() == Some(&b'/') {
        return Err(refuse(raw, "a link to an absolute path is refused"));
    }
    let mut ups = 0usize;
    let mut descended = false;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if !descended => ups += 1,
            b".." => return Err(refuse(raw, "a link with `..` after a name is refused")),
            _ => descended = true,
        }
    }
    if ups > depth {
        return Err(refuse(raw, "a link pointing outside the server's files"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_links_are_judged_lexically() {
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
        assert!(components(b".ctrl-uploads/x").is_err());
        assert_eq!(components(b"./a//b/").unwrap().len(), 2);
        assert!(check_link(b"l", 0, b"../x").is_err());
        assert!(check_link(b"a/l", 1, b"../x").is_ok());
        assert!(check_link(b"a/l", 1, b"d/../..").is_err());
        assert!(check_link(b"l", 0, b"/etc").is_err());
        assert!(check_link(b"l", 0, b"x/y").is_ok());
    }
}
