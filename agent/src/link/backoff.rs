//! Reconnect delays: exponential with full jitter and a floor.
//!
//! Attempt `n` waits a uniformly random time in `[floor, min(cap, base · 2ⁿ)]`. Full jitter
//! spreads a fleet of agents reconnecting to a restarted panel; the floor keeps a flapping
//! panel from ever driving an agent into a tight loop.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    floor: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// The link's policy: start 0.5 s, cap 30 s, floor 0.25 s.
    pub fn for_link() -> Self {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_millis(250),
        )
    }

    pub fn new(base: Duration, cap: Duration, floor: Duration) -> Self {
        Backoff {
            base,
            cap,
            floor: floor.min(cap),
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// Deterministic jitter, for tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .saturating_mul(factor)
            .min(self.cap)
            .max(self.floor)
    }

    /// The next delay; each call widens the window until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let lo = self.floor.as_millis() as u64;
        let hi = ceiling.as_millis() as u64;
        Duration::from_millis(self.rng.u64(lo..=hi.max(lo)))
    }

    /// After a connection that proved healthy: start small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_floor_and_growing_ceiling() {
        let mut b = Backoff::for_link().with_seed(7);
        let mut prev_ceiling = Duration::ZERO;
        for n in 0..200 {
            let ceiling = b.ceiling();
            assert!(ceiling >= prev_ceiling, "ceiling never shrinks");
            prev_ceiling = ceiling;
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(250),
                "attempt {n}: {d:?} under the floor"
            );
            assert!(d <= ceiling, "attempt {n}: {d:?} over {ceiling:?}");
            assert!(d <= Duration::from_secs(30), "attempt {n}: over the cap");
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        assert_eq!(Backoff::for_link().ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_delays_over_the_window() {
        let mut b = Backoff::for_link().with_seed(42);
        for _ in 0..10 {
            b.next_delay();
        }
        // At the cap, 500 draws must cover both halves of [0.25 s, 30 s].
        let draws: Vec<Duration> = (0..500).map(|_| b.next_delay()).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_secs(10)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(20)));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 100, "delays are not all alike");
    }

    #[test]
    fn reset_starts_over_and_huge_attempts_do_not_overflow() {
        let mut b = Backoff::for_link();
        for _ in 0..100_000 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
