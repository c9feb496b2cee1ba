//! Resource usage without asking Docker: a container's cgroup files and its network
//! namespace's `net/dev`, opened once and re-read with `pread` for every sample.
//!
//! Docker's `/containers/{id}/stats` walks the same files but adds an HTTP round trip, JSON
//! encoding and (without `one-shot`) a one-second wait; sampling through pre-opened fds costs
//! a handful of syscalls and no allocation (see `benches/benches/stats.rs`).
//!
//! Layout: `discover` (which cgroup directories belong to a pid), `reader` (a file re-read
//! with `pread`), `parse` (allocation-free parsers), `sampler` (a container's and the host's
//! samplers), `error`.

mod discover;
mod error;
pub mod parse;
mod reader;
mod sampler;

pub use discover::{
    CgroupDirs, CgroupLine, CgroupMount, CgroupVersion, parse_mountinfo, parse_proc_cgroup,
};
pub use error::StatsError;
pub use parse::{CpuTimes, MemInfo, NetTotals};
pub use sampler::{ContainerSampler, HostLoad, HostSampler, Sample, cpu_percent};
