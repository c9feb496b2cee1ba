//! Opening a path beneath the volume's directory fd, so that no path — however crafted, and
//! however the container rearranges its files meanwhile — can reach outside the volume.
//!
//! Two strategies, the same guarantee:
//!
//! - **openat2** (Linux ≥ 5.6): one syscall with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`,
//!   plus `RESOLVE_NO_SYMLINKS` when the caller must not follow links. The kernel refuses any
//!   step that would leave the directory (absolute symlinks, `..` past the root, magic links
//!   such as `/proc/self/root`), atomically with the lookup.
//! - **walk** (fallback for older kernels, or a seccomp profile that hides openat2): one
//!   `openat(O_NOFOLLOW)` per component, each relative to the fd of the previous one. No
//!   symlink is ever followed — not even one that stays inside — so the walk is stricter
//!   than openat2 for reads. Since components never contain `..` (see `path.rs`), every fd
//!   reached is a descendant of the root.

use super::path::RelPath;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fstatat};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How paths are resolved beneath the volume root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// Probe when the volume is opened: openat2 if the kernel allows it, else the walk.
    Auto,
    /// `openat2` with `RESOLVE_BENEATH`. Symlinks that stay inside are followed for reads.
    Openat2,
    /// Component-by-component `openat(O_NOFOLLOW)`. Never follows any symlink.
    Walk,
}

/// Whether an operation may follow symbolic links on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Reads and listings: links that stay beneath the root are followed (openat2 only).
    Beneath,
    /// Anything that modifies the volume: no link is followed anywhere on the path.
    Never,
}

/// `openat2` fails with `EAGAIN` under `RESOLVE_BENEATH` when a rename races with a `..`
/// step; the kernel asks us to retry. Bounded so a hostile rename loop cannot spin us.
const EAGAIN_RETRIES: usize = 32;

impl Resolver {
    /// Turns `Auto` into a concrete strategy by trying openat2 on the root itself.
    ///
    /// `ENOSYS` is an old kernel; `EPERM` is what some container seccomp profiles answer for
    /// syscalls they do not know. Any failure means "use the walk", which is always safe.
    pub(crate) fn settle(self, root: BorrowedFd<'_>) -> Resolver {
        match self {
            Resolver::Auto => {
                let how = OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
                match openat2(root, ".", how) {
                    Ok(_) => Resolver::Openat2,
                    Err(_) => Resolver::Walk,
                }
            }
            concrete => concrete,
        }
    }

    /// Opens `rel` beneath `root` with `flags` (`O_CLOEXEC` is always added). `mode` only
    /// matters with `O_CREAT`.
    ///
    /// Callers never pass `O_PATH` without `O_DIRECTORY`: `O_PATH | O_NOFOLLOW` on a link
    /// would hand back a descriptor of the link itself.
    pub(crate) fn open(
        self,
        root: BorrowedFd<'_>,
        rel: &RelPath,
        flags: OFlag,
        mode: Mode,
        follow: Follow,
    ) -> Result<OwnedFd, Errno> {
        debug_assert!(!flags.contains(OFlag::O_PATH) || flags.contains(OFlag::O_DIRECTORY));
        match self {
            Resolver::Openat2 | Resolver::Auto => open_beneath(root, rel, flags, mode, follow),
            Resolver::Walk => walk(root, rel, flags, mode),
        }
    }
}

fn open_beneath(
    root: BorrowedFd<'_>,
    rel: &RelPath,
    flags: OFlag,
    mode: Mode,
    follow: Follow,
) -> Result<OwnedFd, Errno> {
    let mut resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if follow == Follow::Never {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    // openat2 rejects a non-zero mode without O_CREAT/O_TMPFILE.
    let mode = if flags.contains(OFlag::O_CREAT) {
        mode
    } else {
        Mode::empty()
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(resolve);
    for _ in 0..EAGAIN_RETRIES {
        match openat2(root, rel.for_syscall(), how) {
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            other => return other,
        }
    }
    Err(Errno::EAGAIN)
}

/// The fallback: every intermediate component is opened `O_PATH | O_DIRECTORY | O_NOFOLLOW`
/// relative to the previous fd; the last one with the caller's flags plus `O_NOFOLLOW`.
fn walk(root: BorrowedFd<'_>, rel: &RelPath, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let mut current: Option<OwnedFd> = None;
    let mut components = rel.components().peekable();
    while let Some(name) = components.next() {
        let dir = current.as_ref().map_or(root, |fd| fd.as_fd());
        if components.peek().is_none() {
            return openat(dir, name, flags, mode).map_err(|e| explain(dir, name, e));
        }
        let step = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = openat(dir, name, step, Mode::empty()).map_err(|e| explain(dir, name, e))?;
        current = Some(next);
    }
    // The root itself.
    openat(root, ".", flags, mode)
}

/// `O_NOFOLLOW | O_DIRECTORY` on a symlink reports `ENOTDIR`; report it as the link it is
/// (`ELOOP`), so the message says "link" rather than "not a directory".
pub(crate) fn explain<P: ?Sized + nix::NixPath>(
    dir: BorrowedFd<'_>,
    name: &P,
    errno: Errno,
) -> Errno {
    if errno != Errno::ENOTDIR {
        return errno;
    }
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            Errno::ELOOP
        }
        _ => errno,
    }
}
