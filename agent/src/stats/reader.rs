//! A file opened once and re-read with `pread` at offset 0 for every sample.
//!
//! cgroup files and `/proc` files are `seq_file`s generated on read; a `pread` at offset 0
//! regenerates them (the kernel restarts the iteration when the offset is 0), so one fd
//! serves every sample: no `open`/`close`, no path lookup, no allocation per sample.

use super::error::StatsError;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::uio::pread;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Largest file a growing buffer may reach. `memory.stat` is ~2 KiB, `net/dev` of a host
/// network namespace with many veths is tens of KiB.
pub(crate) const MAX_FILE_BYTES: usize = 1 << 20;

/// An open proc/cgroup file and the name it is reported under.
#[derive(Debug)]
pub(crate) struct PreadFile {
    fd: OwnedFd,
    what: &'static str,
}

impl PreadFile {
    pub(crate) fn open(path: &Path, what: &'static str) -> Result<PreadFile, StatsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd =
            open(path, flags, Mode::empty()).map_err(|errno| StatsError::Open { what, errno })?;
        Ok(PreadFile { fd, what })
    }

    /// Reads the whole file into `buf`, reusing its length as capacity; grows it (the only
    /// allocation, and only when the file outgrew it) up to [`MAX_FILE_BYTES`].
    pub(crate) fn read_all<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b [u8], StatsError> {
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                if buf.len() >= MAX_FILE_BYTES {
                    return Err(StatsError::TooLarge {
                        what: self.what,
                        max: MAX_FILE_BYTES,
                    });
                }
                let grown = (buf.len() * 2).clamp(4096, MAX_FILE_BYTES);
                buf.resize(grown, 0);
            }
            match self.pread_at(&mut buf[filled..], filled)? {
                0 => return Ok(&buf[..filled]),
                n => filled += n,
            }
        }
    }

    /// Reads the start of the file into `buf`, cut after the last complete line: for files
    /// whose interesting part comes first (`/proc/stat`'s `cpu` line, `/proc/meminfo`).
    pub(crate) fn read_prefix<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], StatsError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.pread_at(&mut buf[filled..], filled)? {
                0 => break,
                n => filled += n,
            }
        }
        let complete = buf[..filled]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Ok(&buf[..complete])
    }

    fn pread_at(&self, buf: &mut [u8], offset: usize) -> Result<usize, StatsError> {
        let offset = i64::try_from(offset).map_err(|_| StatsError::TooLarge {
            what: self.what,
            max: MAX_FILE_BYTES,
        })?;
        loop {
            match pread(&self.fd, buf, offset) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                // A removed cgroup answers ENODEV on fds still open.
                Err(Errno::ENODEV) => return Err(StatsError::Gone),
                Err(errno) => {
                    return Err(StatsError::Read {
                        what: self.what,
                        errno,
                    });
                }
            }
        }
    }
}
