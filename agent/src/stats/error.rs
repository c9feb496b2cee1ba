//! The stats module's one error type, and its single mapping to a wire code.
//!
//! Messages name the file by its cgroup/proc name (`memory.stat`, `net/dev`), not by its
//! full host path.

use nix::errno::Errno;
use proto::ErrorCode;

/// Everything that can go wrong sampling a container's or the host's resource usage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("process {pid} does not exist (the container is not running)")]
    NoProcess { pid: u32 },

    /// The process's cgroup could not be mapped to a mounted hierarchy.
    #[error("no {controller} cgroup found for process {pid}: {reason}")]
    NoCgroup {
        pid: u32,
        controller: &'static str,
        reason: String,
    },

    #[error("cannot open {what}: {errno}")]
    Open { what: &'static str, errno: Errno },

    #[error("cannot read {what}: {errno}")]
    Read { what: &'static str, errno: Errno },

    /// The cgroup was removed under an open fd: the container is gone.
    #[error("the container's cgroup is gone (the container stopped)")]
    Gone,

    #[error("unexpected content in {what}")]
    Parse { what: &'static str },

    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: &'static str, max: usize },
}

impl StatsError {
    /// The wire code for this error; the only place stats errors become codes.
    pub fn code(&self) -> ErrorCode {
        match self {
            StatsError::NoProcess { .. } | StatsError::Gone => ErrorCode::ContainerNotFound,
            _ => ErrorCode::InternalError,
        }
    }
}
