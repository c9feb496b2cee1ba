//! Counters and latency samples shared between the agent thread and the controller.
//! Latencies are kept as raw microsecond samples (a few hundred thousand at most in a run)
//! so percentiles are exact; the locks are held only to push or to copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// Raw latency samples in microseconds.
#[derive(Default)]
pub struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u32::MAX as u128) as u32;
        self.0.lock().push(us);
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the samples (e.g. before a storm, to measure only the reconnects).
    pub fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.0.lock())
    }

    pub fn summary(&self) -> LatencySummary {
        let mut v = self.0.lock().clone();
        LatencySummary::from_samples(&mut v)
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn from_samples(v: &mut [u32]) -> LatencySummary {
        if v.is_empty() {
            return LatencySummary::default();
        }
        v.sort_unstable();
        let pick = |q: f64| {
            // Nearest-rank percentile.
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        LatencySummary {
            count: v.len(),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            p999_ms: pick(0.999),
            max_ms: v[v.len() - 1] as f64 / 1000.0,
        }
    }
}

/// Errors counted by a short kind name (`connect.rejected_401`, `command.http_504`, ...).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub fn add(&self, kind: impl Into<String>) {
        *self.0.lock().entry(kind.into()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().clone()
    }

    pub fn total(&self) -> u64 {
        self.0.lock().values().sum()
    }
}

/// A relaxed atomic counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let s = LatencySummary::from_samples(&mut v);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ms, 500.0);
        assert_eq!(s.p99_ms, 990.0);
        assert_eq!(s.p999_ms, 999.0);
        assert_eq!(s.max_ms, 1000.0);
        assert_eq!(
            LatencySummary::from_samples(&mut []),
            LatencySummary::default()
        );
        let mut one = [1500];
        assert_eq!(LatencySummary::from_samples(&mut one).p999_ms, 1.5);
    }

    #[test]
    fn errors_by_kind() {
        let e = Errors::default();
        e.add("a");
        e.add("a");
        e.add("b");
        assert_eq!(e.total(), 3);
        assert_eq!(e.snapshot()["a"], 2);
    }
}
