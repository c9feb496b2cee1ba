//! Sharing a volume with the server's user without root: POSIX ACLs.
//!
//! An agent running as root gives a server's files to the container's user (`chown`). An
//! unprivileged agent cannot; instead, as the owner of the volume directory, it grants the
//! container's uid full access with an ACL entry, and puts default entries on the directory
//! so that everything created beneath it — by the agent or by the server — grants both the
//! container's uid and the agent's uid access. With a default ACL the kernel ignores the
//! creating process's umask: a server creating files `0666` and directories `0777` (what
//! most programs ask for) leaves them fully shared; one that asks for `0600` keeps them to
//! itself, and the agent then cannot read them (or count them, or purge them).
//!
//! The entries are written as the kernel's `system.posix_acl_*` extended attributes
//! (`linux/posix_acl_xattr.h`), so no libacl is needed.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;
const RWX: u16 = 7;

/// One entry; the kernel wants them sorted by tag, then by id.
fn entry(out: &mut Vec<u8>, tag: u16, perm: u16, id: u32) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&perm.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
}

/// owner rwx, the named users rwx, owning group and others nothing, mask rwx.
fn acl(users: &[u32]) -> Vec<u8> {
    let mut users = users.to_vec();
    users.sort_unstable();
    users.dedup();
    let mut out = VERSION.to_le_bytes().to_vec();
    entry(&mut out, USER_OBJ, RWX, UNDEFINED_ID);
    for uid in users {
        entry(&mut out, USER, RWX, uid);
    }
    entry(&mut out, GROUP_OBJ, 0, UNDEFINED_ID);
    entry(&mut out, MASK, RWX, UNDEFINED_ID);
    entry(&mut out, OTHER, 0, UNDEFINED_ID);
    out
}

#[allow(
    unsafe_code,
    reason = "fsetxattr(2) through libc (nix has no xattr calls)"
)]
fn set(dir: BorrowedFd<'_>, name: &std::ffi::CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: `dir` is a live descriptor, `name` is NUL-terminated, and `value` points to
    // `value.len()` initialised bytes that the kernel only reads.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Shares the directory `dir` (which the agent owns) with `server_uid`: access for it now,
/// and for it and `agent_uid` on everything created beneath. `EOPNOTSUPP` means the
/// filesystem has no POSIX ACLs.
pub fn share_dir(dir: BorrowedFd<'_>, server_uid: u32, agent_uid: u32) -> Result<(), Errno> {
    set(dir, ACCESS, &acl(&[server_uid]))?;
    set(dir, DEFAULT, &acl(&[server_uid, agent_uid]))
}

const ACCESS: &std::ffi::CStr = c"system.posix_acl_access";
const DEFAULT: &std::ffi::CStr = c"system.posix_acl_default";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sorted_and_deduplicated() {
        let a = acl(&[2000, 1000, 2000]);
        assert_eq!(&a[..4], &2u32.to_le_bytes());
        let tags: Vec<(u16, u32)> = a[4..]
            .chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        assert_eq!(
            tags,
            vec![
                (USER_OBJ, UNDEFINED_ID),
                (USER, 1000),
                (USER, 2000),
                (GROUP_OBJ, UNDEFINED_ID),
                (MASK, UNDEFINED_ID),
                (OTHER, UNDEFINED_ID),
            ]
        );
    }

    #[allow(unsafe_code, reason = "fgetxattr(2) through libc")]
    fn get(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        // SAFETY: `buf` has room for `buf.len()` bytes, which is what we tell the kernel.
        let n = unsafe {
            libc::fgetxattr(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert!(n >= 0, "{}", Errno::last());
        buf.truncate(n as usize);
        buf
    }

    #[test]
    fn a_shared_directory_gets_both_acls() {
        use std::os::fd::AsFd;
        let dir = std::env::temp_dir().join(format!("agent-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        share_dir(f.as_fd(), 4242, 4343).expect("the temp filesystem supports POSIX ACLs");
        assert_eq!(get(f.as_fd(), ACCESS), acl(&[4242]));
        assert_eq!(get(f.as_fd(), DEFAULT), acl(&[4242, 4343]));
        // A file created beneath inherits the entries.
        std::fs::write(dir.join("f"), b"x").unwrap();
        let file = std::fs::File::open(dir.join("f")).unwrap();
        let inherited = get(file.as_fd(), ACCESS);
        assert!(inherited.len() > acl(&[]).len(), "{inherited:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
