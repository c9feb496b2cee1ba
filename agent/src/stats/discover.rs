//! Finding a process's cgroup directories: `/proc/<pid>/cgroup` says which cgroup the
//! process is in, per hierarchy; `/proc/self/mountinfo` says where each hierarchy is mounted
//! in *our* mount namespace. Nothing assumes `/sys/fs/cgroup`.
//!
//! Works on cgroup v1, v2 (unified) and hybrid hosts, per controller: memory and CPU each
//! come from their v1 hierarchy when the process has one (`memory`, `cpuacct`), otherwise
//! from the unified hierarchy (`0::/path`).
//!
//! Limitations: the paths in `/proc/<pid>/cgroup` are relative to the *reader's* cgroup
//! namespace root. When the agent shares the host's cgroup namespace (the normal case, and
//! `--cgroupns=host` when the agent itself runs in Docker) they match the mounts. When the
//! agent is in a private cgroup namespace, a container's cgroup outside it shows up as
//! `/../...`; such paths are refused (`NoCgroup`) rather than guessed at.

use super::error::StatsError;
use std::path::PathBuf;

/// Which cgroup hierarchy a file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controller-list:path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub hierarchy: u32,
    /// Comma-separated controllers; empty for the v2 line (`0::/path`).
    pub controllers: &'a str,
    pub path: &'a str,
}

impl CgroupLine<'_> {
    fn has_controller(&self, name: &str) -> bool {
        self.controllers.split(',').any(|c| c == name)
    }
}

/// Parses `/proc/<pid>/cgroup`; malformed lines are skipped. The path may itself contain
/// `:`, so only the first two colons split.
pub fn parse_proc_cgroup(text: &str) -> impl Iterator<Item = CgroupLine<'_>> {
    text.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let hierarchy = parts.next()?.parse().ok()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        path.starts_with('/').then_some(CgroupLine {
            hierarchy,
            controllers,
            path,
        })
    })
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub version: CgroupVersion,
    /// The cgroup (within the hierarchy) that is mounted: `/` unless a sub-tree is bind-mounted.
    pub root: String,
    pub mount_point: PathBuf,
    /// v1: the controllers of this hierarchy (from the super options); empty for v2.
    pub controllers: Vec<String>,
}

/// Parses the `cgroup` and `cgroup2` mounts out of a mountinfo text.
///
/// Line format (proc(5)): `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`; paths are octal-escaped (`\040` for a space).
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<CgroupMount> {
    let (before, after) = line.split_once(" - ")?;
    let mut pre = before.split(' ');
    let root = pre.nth(3)?;
    let mount_point = pre.next()?;
    let mut post = after.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_options = post.next().unwrap_or("");
    let (version, controllers) = match fstype {
        "cgroup2" => (CgroupVersion::V2, Vec::new()),
        "cgroup" => (
            CgroupVersion::V1,
            super_options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .map(str::to_owned)
                .collect(),
        ),
        _ => return None,
    };
    Some(CgroupMount {
        version,
        root: unescape(root),
        mount_point: PathBuf::from(unescape(mount_point)),
        controllers,
    })
}

/// Undoes mountinfo's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |a, b| a * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directories holding a process's memory and CPU accounting files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDirs {
    pub memory: (CgroupVersion, PathBuf),
    pub cpu: (CgroupVersion, PathBuf),
}

impl CgroupDirs {
    /// Reads `/proc/<pid>/cgroup` and `/proc/self/mountinfo` and locates the directories.
    pub fn discover(pid: u32) -> Result<CgroupDirs, StatsError> {
        let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|_| StatsError::NoProcess { pid })?;
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| StatsError::Open {
                what: "/proc/self/mountinfo",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        CgroupDirs::from_texts(pid, &proc_cgroup, &mountinfo)
    }

    /// The same from the two texts (fixtures in tests; `pid` only names errors).
    pub fn from_texts(
        pid: u32,
        proc_cgroup: &str,
        mountinfo: &str,
    ) -> Result<CgroupDirs, StatsError> {
        let mounts = parse_mountinfo(mountinfo);
        let find = |controller: &'static str| {
            locate(proc_cgroup, &mounts, controller).map_err(|reason| StatsError::NoCgroup {
                pid,
                controller,
                reason,
            })
        };
        Ok(CgroupDirs {
            memory: find("memory")?,
            cpu: find("cpuacct")?,
        })
    }
}

/// The v1 hierarchy carrying `controller` if the process has one, else the unified one.
fn locate(
    proc_cgroup: &str,
    mounts: &[CgroupMount],
    controller: &str,
) -> Result<(CgroupVersion, PathBuf), String> {
    let lines: Vec<CgroupLine<'_>> = parse_proc_cgroup(proc_cgroup).collect();
    if let Some(line) = lines.iter().find(|l| l.has_controller(controller)) {
        let dir = mounts
            .iter()
            .filter(|m| m.version == CgroupVersion::V1)
            .filter(|m| m.controllers.iter().any(|c| c == controller))
            .find_map(|m| join(m, line.path))
            .ok_or_else(|| format!("the v1 `{controller}` hierarchy is not mounted here"))?;
        return Ok((CgroupVersion::V1, dir));
    }
    let line = lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty())
        .ok_or_else(|| "neither a v1 hierarchy nor the unified hierarchy".to_owned())?;
    let dir = mounts
        .iter()
        .filter(|m| m.version == CgroupVersion::V2)
        .find_map(|m| join(m, line.path))
        .ok_or_else(|| "the unified (v2) hierarchy is not mounted here".to_owned())?;
    Ok((CgroupVersion::V2, dir))
}

/// Maps a cgroup path onto a mount whose root contains it (the root is `/` unless a
/// sub-tree is bind-mounted, as in a container without its own cgroup namespace); refuses
/// `..` (a cgroup outside our namespace).
fn join(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    if path.split('/').any(|c| c == "..") {
        return None;
    }
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(mount.mount_point.join(rest.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/plain\0"), r"/plain\0");
    }

    #[test]
    fn join_strips_mount_root() {
        let m = CgroupMount {
            version: CgroupVersion::V2,
            root: "/docker/abc".into(),
            mount_point: "/sys/fs/cgroup".into(),
            controllers: vec![],
        };
        assert_eq!(
            join(&m, "/docker/abc/sub").unwrap(),
            Path::new("/sys/fs/cgroup/sub")
        );
        assert_eq!(
            join(&m, "/docker/abc").unwrap(),
            Path::new("/sys/fs/cgroup")
        );
        assert!(join(&m, "/").is_none(), "outside the mounted sub-tree");
        assert!(join(&m, "/docker/abcd").is_none());
        assert!(join(&m, "/docker/abc/../x").is_none());
    }
}
