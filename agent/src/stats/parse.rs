//! Allocation-free parsers for the kernel's text files, working on borrowed byte slices.
//!
//! Each returns `None` when the input does not have the expected shape; callers turn that
//! into [`StatsError::Parse`](super::StatsError::Parse) naming the file.

/// Whitespace-separated fields of a line.
fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && first.is_ascii_whitespace()
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && last.is_ascii_whitespace()
    {
        s = rest;
    }
    s
}

/// A decimal `u64`, surrounding whitespace allowed; `None` on anything else or overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A cgroup v2 limit file (`memory.max`): `Some(None)` for `max` (unlimited).
pub fn parse_limit(s: &[u8]) -> Option<Option<u64>> {
    if trim(s) == b"max" {
        return Some(None);
    }
    parse_u64(s).map(Some)
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`): lines `key value`.
pub fn keyed(buf: &[u8], key: &str) -> Option<u64> {
    lines(buf).find_map(|line| {
        let mut f = fields(line);
        if f.next()? != key.as_bytes() {
            return None;
        }
        parse_u64(f.next()?)
    })
}

/// Byte and packet counters summed over network interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTotals {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// `/proc/<pid>/net/dev`, summed over every interface but `lo`.
///
/// The two header lines have no `:`; every other line is `iface: 8 receive counters then
/// 8 transmit counters` (old kernels write `eth0:123` without a space).
pub fn net_dev(buf: &[u8]) -> Option<NetTotals> {
    let mut totals = NetTotals::default();
    for line in lines(buf) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, counters) = (trim(&line[..colon]), &line[colon + 1..]);
        if name == b"lo" {
            continue;
        }
        let mut f = fields(counters);
        let rx_bytes = parse_u64(f.next()?)?;
        let rx_packets = parse_u64(f.next()?)?;
        let mut f = f.skip(5);
        let tx_bytes = parse_u64(f.next()?)?;
        let tx_packets = parse_u64(f.next()?)?;
        totals.rx_bytes = totals.rx_bytes.saturating_add(rx_bytes);
        totals.rx_packets = totals.rx_packets.saturating_add(rx_packets);
        totals.tx_bytes = totals.tx_bytes.saturating_add(tx_bytes);
        totals.tx_packets = totals.tx_packets.saturating_add(tx_packets);
    }
    Some(totals)
}

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
    /// inside user and nice).
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Parses the first `cpu ` line of `/proc/stat`. Needs at least the four classic fields.
pub fn proc_stat_cpu(buf: &[u8]) -> Option<CpuTimes> {
    let line = lines(buf).find(|l| l.starts_with(b"cpu "))?;
    let mut values = [0u64; 8];
    let mut count = 0;
    for (slot, field) in values.iter_mut().zip(fields(line).skip(1)) {
        *slot = parse_u64(field)?;
        count += 1;
    }
    if count < 4 {
        return None;
    }
    let total = values.iter().fold(0u64, |a, &v| a.saturating_add(v));
    Some(CpuTimes {
        total,
        idle: values[3].saturating_add(values[4]),
    })
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

/// Parses `/proc/meminfo` (`MemTotal:  16318412 kB`).
pub fn meminfo(buf: &[u8]) -> Option<MemInfo> {
    let kb = |key: &[u8]| {
        lines(buf).find_map(|line| {
            let mut f = fields(line);
            if f.next()? != key {
                return None;
            }
            parse_u64(f.next()?)?.checked_mul(1024)
        })
    };
    Some(MemInfo {
        total: kb(b"MemTotal:")?,
        available: kb(b"MemAvailable:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b" 42\n"), Some(42));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1 2"), None);
        assert_eq!(parse_limit(b"max\n"), Some(None));
        assert_eq!(parse_limit(b"1048576\n"), Some(Some(1 << 20)));
        assert_eq!(parse_limit(b"maxi"), None);
    }

    #[test]
    fn keyed_matches_whole_keys() {
        let buf = b"total_inactive_file 7\ninactive_file 5\n";
        assert_eq!(keyed(buf, "inactive_file"), Some(5));
        assert_eq!(keyed(buf, "total_inactive_file"), Some(7));
        assert_eq!(keyed(buf, "file"), None);
    }
}
