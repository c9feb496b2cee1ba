//! The pace of the frames the agent sends the panel.
//!
//! The panel reads at most `--agent-rate` frames per second from an agent (burst
//! `--agent-burst`; defaults 1,000 and 2,000) and answers the excess with `RATE_LIMITED`,
//! dropping the frame: a `server_log` lost that way takes the `dropped` count it carried
//! with it. The consoles already draw from a node-wide budget below that rate
//! (`logs::Budget`), but frames can still bunch: a backlog of up to 4,096 queued events
//! sent after a reconnect, a burst of responses. The writer therefore takes a token from
//! this bucket before every frame and waits when there is none; events queue in the outbox
//! meanwhile. Nothing is dropped here.

use std::time::{Duration, Instant};

/// A token bucket the writer waits on.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// A full bucket; `rate` must be positive.
    pub fn new(rate: f64, burst: f64) -> Pace {
        Pace {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes one token at `now`; when there is none, how long to wait before trying again.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// Waits for a token.
    pub async fn wait(&mut self) {
        while let Err(wait) = self.take(Instant::now()) {
            smol::Timer::after(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_then_the_rate() {
        let mut p = Pace::new(100.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            p.take(t0).unwrap();
        }
        let wait = p.take(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(9) && wait <= Duration::from_millis(10),
            "{wait:?}"
        );
        // After the wait, exactly one more.
        let t1 = t0 + wait;
        p.take(t1).unwrap();
        assert!(p.take(t1).is_err());
    }

    #[test]
    fn a_thousand_frames_take_the_time_the_rate_says() {
        smol::block_on(async {
            let mut p = Pace::new(2000.0, 10.0);
            let t0 = Instant::now();
            for _ in 0..210 {
                p.wait().await;
            }
            // 10 at once, then 200 at 2,000/s: at least 100 ms.
            assert!(
                t0.elapsed() >= Duration::from_millis(99),
                "{:?}",
                t0.elapsed()
            );
        });
    }
}
