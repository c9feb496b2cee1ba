//! A node's heartbeat round trip and what is usual for it: the time from a ping being queued
//! to the pong that echoes its id, smoothed (an exponentially weighted mean) so that one
//! slow beat does not make the usual. A round trip is "far above its usual" when it is more
//! than [`FACTOR`] times the usual *and* at least [`MIN_EXCESS_MS`] above it (a 1 ms usual
//! becoming 5 ms is noise, not a sick node), for [`STREAK`] round trips in a row (one slow
//! beat on a busy host is not a sick node either).

/// How many times the usual a round trip must be to count as far above it.
pub const FACTOR: f64 = 4.0;
/// And by how much at least.
pub const MIN_EXCESS_MS: f64 = 200.0;
/// Slow round trips in a row before the node counts as slow.
pub const STREAK: u32 = 2;
/// Round trips seen before "usual" means anything.
pub const WARM_UP: u32 = 5;
/// Weight of a new round trip in the usual.
const ALPHA: f64 = 0.1;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rtt {
    usual_ms: f64,
    samples: u32,
    last_ms: Option<u64>,
    /// Slow round trips in a row, up to now.
    streak: u32,
}

impl Rtt {
    pub fn observe(&mut self, ms: u64) {
        let v = ms as f64;
        let slow = self.samples > WARM_UP
            && v > self.usual_ms * FACTOR
            && v - self.usual_ms >= MIN_EXCESS_MS;
        self.streak = if slow {
            self.streak.saturating_add(1)
        } else {
            0
        };
        self.usual_ms = if self.samples == 0 {
            v
        } else {
            self.usual_ms + ALPHA * (v - self.usual_ms)
        };
        self.samples = self.samples.saturating_add(1);
        self.last_ms = Some(ms);
    }

    pub fn last_ms(&self) -> Option<u64> {
        self.last_ms
    }

    /// Why the last round trip is far above the usual, if it is.
    pub fn far_above(&self) -> Option<String> {
        let last = self.last_ms? as f64;
        (self.streak >= STREAK).then(|| {
            format!(
                "heartbeat round trip {last:.0} ms, usually {:.0} ms",
                self.usual_ms
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_after_warm_up_is_far_above() {
        let mut r = Rtt::default();
        for _ in 0..10 {
            r.observe(3);
        }
        assert_eq!(r.far_above(), None);
        r.observe(900);
        assert_eq!(r.far_above(), None, "one slow beat is not enough");
        r.observe(900);
        let m = r.far_above().expect("far above");
        assert!(m.contains("900 ms"), "{m}");
        // Back to normal.
        r.observe(3);
        assert_eq!(r.far_above(), None);
        assert_eq!(r.last_ms(), Some(3));
    }

    #[test]
    fn small_or_early_changes_are_not() {
        let mut r = Rtt::default();
        r.observe(1);
        r.observe(900);
        assert_eq!(r.far_above(), None, "still warming up");
        let mut r = Rtt::default();
        for _ in 0..10 {
            r.observe(1);
        }
        r.observe(50);
        assert_eq!(r.far_above(), None, "50x but only 49 ms more");
    }
}
