//! Per-thread CPU time and time spent waiting for a CPU (`/proc/<pid>/task/*/schedstat`),
//! for the panel and for loadtest itself, so a report says which thread ran out first.
//!
//! A process's CPU percentage alone hides saturation on a shared host: a thread that runs
//! 50 % of the time and waits in the run queue 45 % is as good as saturated, and every
//! request it serves waits behind that queue.

use std::collections::HashMap;
use std::io;

use serde::Serialize;

/// One thread's totals at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadTimes {
    pub tid: u32,
    pub name: String,
    /// Nanoseconds on a CPU.
    pub cpu_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    pub wait_ns: u64,
}

/// One thread over an interval, in percent of the interval's wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadBusy {
    pub name: String,
    pub cpu_percent: f64,
    pub wait_percent: f64,
}

/// `<cpu ns> <run-queue wait ns> <timeslices>`.
fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Every thread of `pid` now (threads that vanish while being read are skipped).
pub fn sample(pid: u32) -> io::Result<Vec<ThreadTimes>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(path.join("schedstat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        if let Some((cpu_ns, wait_ns)) = parse_schedstat(&stat) {
            out.push(ThreadTimes {
                tid,
                name: name.trim_end().to_owned(),
                cpu_ns,
                wait_ns,
            });
        }
    }
    Ok(out)
}

/// The `top` busiest threads (CPU + wait) between two samples `secs` apart.
pub fn busiest(
    before: &[ThreadTimes],
    after: &[ThreadTimes],
    secs: f64,
    top: usize,
) -> Vec<ThreadBusy> {
    if secs <= 0.0 {
        return Vec::new();
    }
    let earlier: HashMap<u32, &ThreadTimes> = before.iter().map(|t| (t.tid, t)).collect();
    let pct = |ns: u64| ns as f64 / 1e9 / secs * 100.0;
    let mut v: Vec<ThreadBusy> = after
        .iter()
        .filter_map(|a| {
            let b = earlier.get(&a.tid)?;
            Some(ThreadBusy {
                name: a.name.clone(),
                cpu_percent: pct(a.cpu_ns.saturating_sub(b.cpu_ns)),
                wait_percent: pct(a.wait_ns.saturating_sub(b.wait_ns)),
            })
        })
        .collect();
    v.sort_by(|x, y| (y.cpu_percent + y.wait_percent).total_cmp(&(x.cpu_percent + x.wait_percent)));
    v.truncate(top);
    v
}

/// `smol-1 51/43 %, async-io 3/7 %` (CPU / waiting for a CPU).
pub fn describe(threads: &[ThreadBusy]) -> String {
    threads
        .iter()
        .map(|t| format!("{} {:.0}/{:.0} %", t.name, t.cpu_percent, t.wait_percent))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: u32, name: &str, cpu_ms: u64, wait_ms: u64) -> ThreadTimes {
        ThreadTimes {
            tid,
            name: name.into(),
            cpu_ns: cpu_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
        }
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(
            parse_schedstat("2552000000 2164000000 812\n"),
            Some((2_552_000_000, 2_164_000_000))
        );
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("x y z"), None);
    }

    #[test]
    fn busiest_ranks_by_cpu_plus_wait_over_the_interval() {
        let before = [t(1, "main", 100, 0), t(2, "agents", 0, 0), t(3, "io", 0, 0)];
        let after = [
            t(1, "main", 1100, 0),
            t(2, "agents", 2500, 2400),
            t(3, "io", 100, 100),
            t(4, "new", 5000, 0), // not there at the start: no interval
        ];
        let b = busiest(&before, &after, 5.0, 2);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name, "agents");
        assert!((b[0].cpu_percent - 50.0).abs() < 1e-9);
        assert!((b[0].wait_percent - 48.0).abs() < 1e-9);
        assert_eq!(b[1].name, "main");
        assert_eq!(describe(&b), "agents 50/48 %, main 20/0 %");
        assert!(busiest(&before, &after, 0.0, 3).is_empty());
    }

    #[test]
    fn this_process_has_a_thread() {
        let me = sample(std::process::id()).unwrap();
        assert!(!me.is_empty());
    }
}
