//! Metric primitives and a Prometheus text-format (0.0.4) writer.
//!
//! The panel owns a fixed set of metrics (defined by the app); this module only provides
//! lock-free building blocks — [`Counter`], [`Gauge`], [`Histogram`] — and functions that
//! render them with correct `# HELP`/`# TYPE` lines and escaping, so `/metrics` needs no
//! exporter crate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(pub AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(pub AtomicI64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Default latency buckets (seconds) for request/command durations.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with fixed upper bounds (seconds), lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bound; the `+Inf` bucket is `count`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum as `f64` bits (updated with a CAS loop).
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram with the given ascending upper bounds (the `+Inf` bucket is implicit).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation. NaN is ignored.
    pub fn observe(&self, secs: f64) {
        if secs.is_nan() {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + secs).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    /// `(upper bound, cumulative count)` per finite bucket.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(&b, c)| {
                acc += c.load(Ordering::Relaxed);
                (b, acc)
            })
            .collect()
    }
}

/// A sample value that can be rendered in the text format.
pub trait MetricValue {
    /// Appends the Prometheus rendering of the value.
    fn render(&self, out: &mut String);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl MetricValue for $t {
            fn render(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_value!(u64, i64, u32, i32, usize, isize);

impl MetricValue for f64 {
    fn render(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if *self == f64::INFINITY {
            out.push_str("+Inf");
        } else if *self == f64::NEG_INFINITY {
            out.push_str("-Inf");
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes `# HELP` text: backslash and newline.
fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family (once per family).
pub fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(help, out);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes one sample line `name{labels} value`.
pub fn write_sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl MetricValue,
) {
    out.push_str(name);
    write_labels(out, labels, None);
    out.push(' ');
    value.render(out);
    out.push('\n');
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(v, out);
        out.push('"');
    }
    out.push('}');
}

/// Writes a complete single-sample counter family.
pub fn write_counter(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: impl MetricValue,
) {
    write_header(out, name, help, "counter");
    write_sample(out, name, labels, value);
}

/// Writes a complete single-sample gauge family.
pub fn write_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: impl MetricValue,
) {
    write_header(out, name, help, "gauge");
    write_sample(out, name, labels, value);
}

/// Writes a complete histogram family (`_bucket`, `_sum`, `_count`).
pub fn write_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    h: &Histogram,
) {
    write_header(out, name, help, "histogram");
    write_histogram_samples(out, name, labels, h);
}

/// Writes a histogram's samples without the header (for several label sets in one family).
pub fn write_histogram_samples(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    h: &Histogram,
) {
    let bucket = format!("{name}_bucket");
    let mut le = String::new();
    for (bound, count) in h.cumulative() {
        le.clear();
        bound.render(&mut le);
        out.push_str(&bucket);
        write_labels(out, labels, Some(&le));
        let _ = writeln!(out, " {count}");
    }
    let count = h.count();
    out.push_str(&bucket);
    write_labels(out, labels, Some("+Inf"));
    let _ = writeln!(out, " {count}");
    write_sample(out, &format!("{name}_sum"), labels, h.sum());
    write_sample(out, &format!("{name}_count"), labels, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge() {
        let c = Counter::new();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let g = Gauge::new();
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(g.get(), 1);
        g.set(-3);
        assert_eq!(g.get(), -3);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_counter(
            &mut out,
            "x_total",
            "Help with \\ and\nnewline",
            &[("path", "a\"b\\c\nd")],
            7u64,
        );
        assert_eq!(
            out,
            "# HELP x_total Help with \\\\ and\\nnewline\n# TYPE x_total counter\n\
             x_total{path=\"a\\\"b\\\\c\\nd\"} 7\n"
        );
    }

    #[test]
    fn gauge_without_labels() {
        let mut out = String::new();
        write_gauge(&mut out, "g", "a gauge", &[], -2i64);
        assert_eq!(out, "# HELP g a gauge\n# TYPE g gauge\ng -2\n");
    }

    #[test]
    fn histogram_is_cumulative() {
        static B: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(B);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(0.7);
        h.observe(5.0);
        h.observe(f64::NAN);
        let mut out = String::new();
        write_histogram(&mut out, "lat_seconds", "latency", &[("op", "x")], &h);
        let expected = "# HELP lat_seconds latency\n# TYPE lat_seconds histogram\n\
            lat_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n\
            lat_seconds_bucket{op=\"x\",le=\"1\"} 3\n\
            lat_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n\
            lat_seconds_sum{op=\"x\"} 6.25\n\
            lat_seconds_count{op=\"x\"} 4\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn special_floats() {
        let mut s = String::new();
        f64::INFINITY.render(&mut s);
        s.push(' ');
        f64::NAN.render(&mut s);
        s.push(' ');
        0.25f64.render(&mut s);
        assert_eq!(s, "+Inf NaN 0.25");
    }
}
