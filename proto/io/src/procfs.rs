//! A process's resident memory and CPU time from `/proc/<pid>`: what loadtest reports of the
//! panel and of itself, and what the measurement tests read of the panel and the agent.

use std::io;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    pub rss_bytes: u64,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, normally 100).
pub fn ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map_or(100, |t| t as u64)
}

/// Reads `/proc/<pid>/stat` (CPU) and `/proc/<pid>/status` (VmRSS).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&stat, &status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc format"))
}

fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15) → indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        rss_bytes: rss_kb * 1024,
        cpu_ticks: utime + stime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        let status = "Name:\tpanel\nVmRSS:\t   20480 kB\nThreads:\t8\n";
        assert_eq!(
            parse(stat, status),
            Some(ProcSample {
                rss_bytes: 20480 * 1024,
                cpu_ticks: 300
            })
        );
        assert_eq!(parse("garbage", status), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}
