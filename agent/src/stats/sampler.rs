//! Samplers: a container's usage from its cgroup and network namespace, and the host's load
//! from `/proc`. Each opens its files once; a sample is a few `pread`s into reused buffers.
//!
//! The container samplers share one read buffer per thread instead of keeping 4 KiB each: a
//! sample is synchronous, so a buffer is only ever in use by one sampler at a time, and a
//! node with 50 servers keeps a few buffers instead of 50.

use super::discover::{CgroupDirs, CgroupVersion};
use super::error::StatsError;
use super::parse;
use super::reader::PreadFile;
use std::path::Path;
use std::time::Instant;

/// One reading of a container's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the sample was taken (for rates).
    pub at: Instant,
    /// Cumulative CPU time of the container, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes, without the reclaimable inactive page cache (what `docker stats`
    /// shows).
    pub memory_used: u64,
    /// The cgroup's memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Cumulative network counters over every interface but `lo`.
    pub net: parse::NetTotals,
}

/// CPU use between two samples in percent of one core (100.0 = one full core), like
/// `docker stats`. Zero when no time passed or the counter went backwards.
pub fn cpu_percent(prev: &Sample, next: &Sample) -> f64 {
    let wall = next.at.saturating_duration_since(prev.at).as_nanos() as f64;
    if wall <= 0.0 {
        return 0.0;
    }
    let used = next.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    (used / wall * 100.0 * 10.0).round() / 10.0
}

/// Limits at or above this are "no limit" on cgroup v1 (the kernel writes a page-rounded
/// `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 62;

/// A container's pre-opened cgroup and `net/dev` files.
#[derive(Debug)]
pub struct ContainerSampler {
    memory_version: CgroupVersion,
    cpu_version: CgroupVersion,
    memory_usage: PreadFile,
    memory_limit: PreadFile,
    memory_stat: PreadFile,
    cpu_usage: PreadFile,
    net_dev: PreadFile,
}

std::thread_local! {
    /// The read buffer of every container sampler sampling on this thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ContainerSampler {
    /// Finds the cgroup of `pid` (the container's init process) and opens every file.
    pub fn open(pid: u32) -> Result<ContainerSampler, StatsError> {
        let dirs = CgroupDirs::discover(pid)?;
        ContainerSampler::open_dirs(&dirs, &Path::new("/proc").join(pid.to_string()))
    }

    /// Opens the files of known cgroup directories; `proc_dir` is `/proc/<pid>`.
    pub fn open_dirs(dirs: &CgroupDirs, proc_dir: &Path) -> Result<ContainerSampler, StatsError> {
        let (memory_version, mem) = (dirs.memory.0, &dirs.memory.1);
        let (cpu_version, cpu) = (dirs.cpu.0, &dirs.cpu.1);
        let (usage, limit) = match memory_version {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
            CgroupVersion::V2 => ("memory.current", "memory.max"),
        };
        let cpu_file = match cpu_version {
            CgroupVersion::V1 => "cpuacct.usage",
            CgroupVersion::V2 => "cpu.stat",
        };
        Ok(ContainerSampler {
            memory_version,
            cpu_version,
            memory_usage: PreadFile::open(&mem.join(usage), usage)?,
            memory_limit: PreadFile::open(&mem.join(limit), limit)?,
            memory_stat: PreadFile::open(&mem.join("memory.stat"), "memory.stat")?,
            cpu_usage: PreadFile::open(&cpu.join(cpu_file), cpu_file)?,
            net_dev: PreadFile::open(&proc_dir.join("net/dev"), "net/dev")?,
        })
    }

    /// Reads every counter once, into this thread's shared buffer.
    pub fn sample(&mut self) -> Result<Sample, StatsError> {
        SCRATCH.with_borrow_mut(|buf| self.sample_into(buf))
    }

    fn sample_into(&self, buf: &mut Vec<u8>) -> Result<Sample, StatsError> {
        let at = Instant::now();
        let cpu_ns = {
            let text = self.cpu_usage.read_all(buf)?;
            match self.cpu_version {
                CgroupVersion::V1 => parse::parse_u64(text),
                CgroupVersion::V2 => parse::keyed(text, "usage_usec").map(|us| us * 1000),
            }
            .ok_or(StatsError::Parse { what: "cpu usage" })?
        };
        let usage =
            parse::parse_u64(self.memory_usage.read_all(buf)?).ok_or(StatsError::Parse {
                what: "memory usage",
            })?;
        let memory_limit = {
            let text = self.memory_limit.read_all(buf)?;
            parse::parse_limit(text)
                .ok_or(StatsError::Parse {
                    what: "memory limit",
                })?
                .filter(|&l| l < V1_UNLIMITED)
        };
        let inactive = {
            let text = self.memory_stat.read_all(buf)?;
            match self.memory_version {
                CgroupVersion::V1 => parse::keyed(text, "total_inactive_file"),
                CgroupVersion::V2 => parse::keyed(text, "inactive_file"),
            }
            .unwrap_or(0)
        };
        let net = parse::net_dev(self.net_dev.read_all(buf)?)
            .ok_or(StatsError::Parse { what: "net/dev" })?;
        Ok(Sample {
            at,
            cpu_ns,
            memory_used: usage.saturating_sub(inactive),
            memory_limit,
            net,
        })
    }
}

/// The host's `/proc/stat` and `/proc/meminfo`, for the heartbeat's `systemLoad`.
#[derive(Debug)]
pub struct HostSampler {
    stat: PreadFile,
    meminfo: PreadFile,
    prev: Option<parse::CpuTimes>,
    buf: Vec<u8>,
}

/// Host load in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLoad {
    /// Busy CPU since the previous sample (0 on the first).
    pub cpu: f64,
    /// Memory not available to new processes.
    pub memory: f64,
}

impl HostSampler {
    pub fn open() -> Result<HostSampler, StatsError> {
        Ok(HostSampler {
            stat: PreadFile::open(Path::new("/proc/stat"), "/proc/stat")?,
            meminfo: PreadFile::open(Path::new("/proc/meminfo"), "/proc/meminfo")?,
            prev: None,
            buf: vec![0; 4096],
        })
    }

    /// CPU busy percent since the last call, and memory in use percent.
    pub fn sample(&mut self) -> Result<HostLoad, StatsError> {
        let times = parse::proc_stat_cpu(self.stat.read_prefix(&mut self.buf)?)
            .ok_or(StatsError::Parse { what: "/proc/stat" })?;
        let cpu = match self.prev.replace(times) {
            Some(prev) if times.total > prev.total => {
                let total = (times.total - prev.total) as f64;
                let idle = times.idle.saturating_sub(prev.idle) as f64;
                ((total - idle).max(0.0) / total * 1000.0).round() / 10.0
            }
            _ => 0.0,
        };
        let mem =
            parse::meminfo(self.meminfo.read_prefix(&mut self.buf)?).ok_or(StatsError::Parse {
                what: "/proc/meminfo",
            })?;
        let memory = if mem.total == 0 {
            0.0
        } else {
            let used = mem.total.saturating_sub(mem.available) as f64;
            (used / mem.total as f64 * 1000.0).round() / 10.0
        };
        Ok(HostLoad { cpu, memory })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_percent_is_relative_to_one_core() {
        let t0 = Instant::now();
        let s = |at, cpu_ns| Sample {
            at,
            cpu_ns,
            memory_used: 0,
            memory_limit: None,
            net: parse::NetTotals::default(),
        };
        let a = s(t0, 1_000_000_000);
        let b = s(t0 + Duration::from_secs(1), 1_500_000_000);
        assert_eq!(cpu_percent(&a, &b), 50.0);
        let c = s(t0 + Duration::from_secs(2), 3_500_000_000);
        assert_eq!(cpu_percent(&b, &c), 200.0);
        assert_eq!(cpu_percent(&b, &a), 0.0, "backwards in time");
        assert_eq!(cpu_percent(&a, &a), 0.0);
    }

    #[test]
    fn samples_our_own_cgroup_and_the_host() {
        // The test process's own cgroup exists on every Linux host the agent supports.
        let mut s = ContainerSampler::open(std::process::id()).expect("open own cgroup");
        let first = s.sample().unwrap();
        let second = s.sample().unwrap();
        assert!(second.cpu_ns >= first.cpu_ns);
        let mut host = HostSampler::open().unwrap();
        host.sample().unwrap();
        let load = host.sample().unwrap();
        assert!((0.0..=100.0).contains(&load.memory) && load.memory > 0.0);
        assert!((0.0..=100.0).contains(&load.cpu));
    }
}
