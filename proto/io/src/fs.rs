//! Replacing a small file that holds secrets (the agent's tokens, the panel's TLS key, the
//! loadtest's agents file) so that a crash leaves either the old or the new content, never a
//! torn file, and the secret is never readable by others, not even for a moment.
//!
//! The new content goes to a fresh sibling temp file created exclusively (`O_EXCL`: never a
//! leftover or a planted file, never through a symlink) with the final mode, is fsynced,
//! renamed over the target, and the directory is fsynced so the rename itself survives a
//! power loss. A crash between create and rename can leave a `.NAME.PID.N.tmp` file behind;
//! it is never read.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temp files of concurrent writes within one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// [`atomic_write_mode`] with mode 0600, for files holding secrets.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o600)
}

/// Replaces `path` with `bytes`, ending with exactly `mode` (the umask does not apply):
/// exclusive temp file, write, fsync, rename over `path`, fsync the directory.
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = (|| {
        // `mode` at creation is filtered by the umask; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ctrl-io-fs-{tag}-{}-{}",
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempdir("replace");
        let path = dir.join("agent.json");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        atomic_write(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        atomic_write(&path, b"newer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_mode_is_exact_whatever_the_umask() {
        let dir = tempdir("mode");
        let cert = dir.join("panel.crt");
        atomic_write_mode(&cert, b"pem", 0o644).unwrap();
        assert_eq!(mode(&cert), 0o644);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failures_leave_the_old_file_and_no_temp_file() {
        let dir = tempdir("fail");
        let path = dir.join("target");
        // A directory cannot be replaced by a file: rename fails after the temp was written.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"keep").unwrap();
        assert!(atomic_write(&path, b"x").is_err());
        assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"keep");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(atomic_write(Path::new("/"), b"x").is_err(), "no file name");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
