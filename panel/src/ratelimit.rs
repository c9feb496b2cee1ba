//! Token-bucket rate limiting, single and keyed.
//!
//! The operator API and the registration endpoint are limited per client address so that a
//! misbehaving script cannot starve agents. Time is passed in explicitly (`now`), which keeps
//! the arithmetic deterministic and testable. The keyed limiter is bounded: when it is full it
//! evicts buckets that have refilled completely (they carry no state worth keeping), and if
//! none have, the stalest one.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use parking_lot::Mutex;

/// A classic token bucket: `burst` capacity, refilled at `rate_per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. `rate_per_sec` and `burst` are clamped to be non-negative; a burst
    /// below 1 can never grant anything.
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        let rate = if rate_per_sec.is_finite() {
            rate_per_sec.max(0.0)
        } else {
            0.0
        };
        let burst = if burst.is_finite() {
            burst.max(0.0)
        } else {
            0.0
        };
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            // A `now` earlier than `last` (non-monotonic caller) simply adds nothing.
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            if now > last {
                self.last = Some(now);
            }
        } else {
            self.last = Some(now);
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled to capacity at `now` (it holds no useful state).
    pub fn is_full(&self, now: Instant) -> bool {
        let mut probe = self.clone();
        probe.refill(now);
        probe.tokens >= probe.burst
    }
}

/// One [`TokenBucket`] per key (e.g. client IP), bounded to `max_keys` entries.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter granting `burst` immediately and `rate` per second afterwards, per key.
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        KeyedLimiter {
            rate,
            burst,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `false` means "rate limited".
    pub fn check(&self, key: &K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        if let Some(b) = buckets.get_mut(key) {
            return b.try_take(now);
        }
        if buckets.len() >= self.max_keys {
            buckets.retain(|_, b| !b.is_full(now));
            if buckets.len() >= self.max_keys {
                // Everything is active: drop the bucket touched longest ago.
                let stalest = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    buckets.remove(&k);
                }
            }
        }
        let mut b = TokenBucket::new(self.rate, self.burst);
        let ok = b.try_take(now);
        buckets.insert(key.clone(), b);
        ok
    }

    /// Whether `key` has a token left, without taking it (a key never seen has).
    pub fn allows(&self, key: &K, now: Instant) -> bool {
        match self.buckets.lock().get(key) {
            Some(b) => {
                let mut probe = b.clone();
                probe.refill(now);
                probe.tokens >= 1.0
            }
            None => self.burst >= 1.0,
        }
    }

    /// Number of keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_grants_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // 0.5 s at 2/s = one token.
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }

    #[test]
    fn bucket_tolerates_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1.0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_or_nan_rate_never_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::NAN, 1.0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(1000)));
    }

    #[test]
    fn keyed_limiter_is_per_key() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(1.0, 2.0, 16);
        assert!(l.check(&"a", t0));
        assert!(l.check(&"a", t0));
        assert!(!l.check(&"a", t0));
        assert!(l.check(&"b", t0));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn keyed_limiter_stays_bounded() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(0.001, 1.0, 4);
        for i in 0..100u32 {
            l.check(&i, t0 + Duration::from_millis(i as u64));
            assert!(l.len() <= 4);
        }
        // The newest key is still tracked (and therefore limited).
        assert!(!l.check(&99, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn keyed_limiter_evicts_refilled_keys_first() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(1.0, 1.0, 2);
        assert!(l.check(&1, t0));
        assert!(l.check(&2, t0 + Duration::from_secs(5)));
        // At t0+5.5 key 1 is full again (evictable), key 2 is not.
        assert!(l.check(&3, t0 + Duration::from_millis(5500)));
        assert!(!l.check(&2, t0 + Duration::from_millis(5500)));
    }
}
