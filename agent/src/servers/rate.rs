//! Command rate limits: a compromised or buggy panel must not be able to flood the agent
//! (and through it Docker and the disk). Token buckets, one for the whole agent and one per
//! server; a command over either is answered `RATE_LIMITED` at once, never queued. The
//! per-server buckets are dropped once full again, so their number stays bounded by the
//! servers commanded within the last few seconds.
//!
//! File chunks (a transfer is hundreds of them) are a [`Class`] of their own with their own
//! pair of buckets: a download runs at the chunk rate without using up the tokens a power
//! action needs, and a flood of commands does not stall a transfer.

use crate::node::RateLimits;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;

/// Per-server buckets kept at most; beyond this the fullest are forgotten first.
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refills at `rate` per second up to `burst`.
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// Which pair of buckets a command draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Command,
    /// `read_file_chunk` and `write_file_chunk`.
    Chunk,
}

/// One class's limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    per_server: f64,
    per_server_burst: f64,
    total: f64,
    total_burst: f64,
}

impl Limits {
    fn of(l: &RateLimits, class: Class) -> Limits {
        match class {
            Class::Command => Limits {
                per_server: l.per_server,
                per_server_burst: l.per_server_burst,
                total: l.total,
                total_burst: l.total_burst,
            },
            Class::Chunk => Limits {
                per_server: l.chunks_per_server,
                per_server_burst: l.chunks_per_server_burst,
                total: l.chunks_total,
                total_burst: l.chunks_total_burst,
            },
        }
    }
}

/// Which limit refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Server,
    Total,
}

pub struct RateLimiter {
    commands: Buckets,
    chunks: Buckets,
}

/// One class's buckets.
struct Buckets {
    limits: Limits,
    state: Mutex<State>,
}

struct State {
    total: Bucket,
    servers: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            commands: Buckets::new(Limits::of(&limits, Class::Command)),
            chunks: Buckets::new(Limits::of(&limits, Class::Chunk)),
        }
    }

    /// Takes one token of `class` from the total bucket and from `server`'s (when the
    /// command names one); takes nothing when either is empty.
    pub fn admit(&self, server: Option<&str>, class: Class, now: Instant) -> Result<(), Limited> {
        match class {
            Class::Command => self.commands.admit(server, now),
            Class::Chunk => self.chunks.admit(server, now),
        }
    }
}

impl Buckets {
    fn new(limits: Limits) -> Buckets {
        Buckets {
            state: Mutex::new(State {
                total: Bucket::full(limits.total_burst, Instant::now()),
                servers: HashMap::new(),
            }),
            limits,
        }
    }

    fn admit(&self, server: Option<&str>, now: Instant) -> Result<(), Limited> {
        let l = &self.limits;
        let mut st = self.state.lock();
        st.total.refill(l.total, l.total_burst, now);
        if st.total.tokens < 1.0 {
            return Err(Limited::Total);
        }
        if let Some(sid) = server {
            if !st.servers.contains_key(sid) {
                if st.servers.len() >= MAX_TRACKED {
                    forget_full(&mut st.servers, l, now);
                }
                st.servers
                    .insert(sid.to_owned(), Bucket::full(l.per_server_burst, now));
            }
            let Some(bucket) = st.servers.get_mut(sid) else {
                return Err(Limited::Server);
            };
            bucket.refill(l.per_server, l.per_server_burst, now);
            if bucket.tokens < 1.0 {
                return Err(Limited::Server);
            }
            bucket.tokens -= 1.0;
        }
        st.total.tokens -= 1.0;
        Ok(())
    }
}

/// Drops the buckets that have refilled completely (they hold no information); if none
/// has, the fullest half goes.
fn forget_full(servers: &mut HashMap<String, Bucket>, l: &Limits, now: Instant) {
    for b in servers.values_mut() {
        b.refill(l.per_server, l.per_server_burst, now);
    }
    let before = servers.len();
    servers.retain(|_, b| b.tokens < l.per_server_burst);
    if servers.len() == before {
        let mut levels: Vec<f64> = servers.values().map(|b| b.tokens).collect();
        levels.sort_by(f64::total_cmp);
        let median = levels[levels.len() / 2];
        servers.retain(|_, b| b.tokens < median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> RateLimits {
        RateLimits {
            per_server: 1.0,
            per_server_burst: 3.0,
            total: 10.0,
            total_burst: 5.0,
            chunks_per_server: 100.0,
            chunks_per_server_burst: 2.0,
            chunks_total: 100.0,
            chunks_total_burst: 100.0,
        }
    }

    #[test]
    fn per_server_and_total_buckets() {
        let r = RateLimiter::new(limits());
        let t0 = Instant::now();
        for _ in 0..3 {
            r.admit(Some("a"), Class::Command, t0).unwrap();
        }
        assert_eq!(r.admit(Some("a"), Class::Command, t0), Err(Limited::Server));
        // Another server still has its own burst, until the total runs out.
        r.admit(Some("b"), Class::Command, t0).unwrap();
        r.admit(None, Class::Command, t0).unwrap();
        assert_eq!(r.admit(Some("c"), Class::Command, t0), Err(Limited::Total));
        assert_eq!(r.admit(None, Class::Command, t0), Err(Limited::Total));
        // A refused command takes no token: one second later both refilled by one.
        let t1 = t0 + Duration::from_secs(1);
        r.admit(Some("a"), Class::Command, t1).unwrap();
        assert_eq!(r.admit(Some("a"), Class::Command, t1), Err(Limited::Server));
    }

    #[test]
    fn tracking_stays_bounded() {
        let mut l = limits();
        l.total = 1e9;
        l.total_burst = 1e9;
        let r = RateLimiter::new(l);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED * 3) {
            r.admit(Some(&format!("s{i}")), Class::Command, t0).unwrap();
        }
        assert!(r.commands.state.lock().servers.len() <= MAX_TRACKED);
    }

    #[test]
    fn chunks_have_their_own_buckets() {
        let r = RateLimiter::new(limits());
        let t0 = Instant::now();
        for _ in 0..3 {
            r.admit(Some("a"), Class::Command, t0).unwrap();
        }
        assert_eq!(r.admit(Some("a"), Class::Command, t0), Err(Limited::Server));
        // Commands used up: chunks still flow, up to their own burst.
        r.admit(Some("a"), Class::Chunk, t0).unwrap();
        r.admit(Some("a"), Class::Chunk, t0).unwrap();
        assert_eq!(r.admit(Some("a"), Class::Chunk, t0), Err(Limited::Server));
        // And chunks used up leave the command buckets as they were.
        r.admit(Some("b"), Class::Command, t0).unwrap();
    }
}
