//! Raising the open-files limit: every simulated agent is one socket, so 10,000 agents need
//! more than the usual soft limit of 1024 descriptors. The soft limit is raised to the hard
//! limit (an unprivileged process may not go beyond it; raise the hard limit with
//! `ulimit -Hn` as root or in limits.conf / the service unit).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the (soft, hard) now in force.
pub fn raise_nofile() -> nix::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft, hard))
}

/// Descriptors loadtest needs besides its agents (subscribers, REST pool, stdio, /proc).
pub const RESERVED_FDS: u64 = 128;

#[cfg(test)]
mod tests {
    #[test]
    fn raises_to_the_hard_limit() {
        let (soft, hard) = super::raise_nofile().unwrap();
        assert_eq!(soft, hard);
    }
}
