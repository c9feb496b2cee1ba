//! The operator side: REST commands at a fixed rate (open loop — a slow answer does not
//! delay the next request), each timed from request to answer, which covers
//! operator → panel → agent → panel → operator.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{Counter, Errors, Latencies};
use ctrl_io::{ClientError, Rest};

/// What a request driver (commands, logins) saw.
#[derive(Default)]
pub struct RequestStats {
    pub issued: Counter,
    pub ok: Counter,
    pub failed: Counter,
    /// Requests not issued because too many were still in flight.
    pub skipped: Counter,
    pub in_flight: Counter,
    pub rtt: Latencies,
}

/// Most requests in flight at once before new ones are skipped (and counted).
pub const MAX_IN_FLIGHT: u64 = 2048;

/// The `i`-th command: three `get_status` for one power command (start/stop alternating).
pub fn nth_command(i: u64, server: &str) -> (&'static str, String, Option<serde_json::Value>) {
    match i % 8 {
        3 => (
            "POST",
            format!("/api/servers/{server}/power"),
            Some(serde_json::json!({"action": "start"})),
        ),
        7 => (
            "POST",
            format!("/api/servers/{server}/power"),
            Some(serde_json::json!({"action": "stop"})),
        ),
        _ => ("GET", format!("/api/servers/{server}"), None),
    }
}

#[allow(clippy::too_many_arguments)]
/// Issues commands at `rate` per second over `servers` until `stop` is closed.
pub async fn drive(
    ex: Rc<smol::LocalExecutor<'static>>,
    rest: Arc<Rest>,
    admin_token: Rc<str>,
    servers: Rc<Vec<String>>,
    rate: f64,
    stats: Arc<RequestStats>,
    errors: Arc<Errors>,
    stop: async_channel::Receiver<()>,
) {
    if servers.is_empty() {
        return;
    }
    let timed = Timed {
        ex: &ex,
        rest: &rest,
        stats: &stats,
        errors: &errors,
        max_in_flight: MAX_IN_FLIGHT,
        label: "command",
    };
    open_loop(rate, &stop, |i| {
        // Every server in turn, and the command mix in turn.
        let server = &servers[(i % servers.len() as u64) as usize];
        timed.issue(|| {
            let (method, path, body) = nth_command(i, server);
            (method, path, Some(admin_token.clone()), body)
        });
    })
    .await;
}

/// Where a driver's timed requests run and what they are counted in.
pub struct Timed<'a> {
    pub ex: &'a Rc<smol::LocalExecutor<'static>>,
    pub rest: &'a Arc<Rest>,
    pub stats: &'a Arc<RequestStats>,
    pub errors: &'a Arc<Errors>,
    /// Most requests in flight before new ones are skipped (and counted).
    pub max_in_flight: u64,
    /// The first word of the error kinds (`command.http_504_TIMEOUT`).
    pub label: &'static str,
}

/// A request: method, path, bearer token, JSON body.
pub type RequestParts = (
    &'static str,
    String,
    Option<Rc<str>>,
    Option<serde_json::Value>,
);

impl Timed<'_> {
    /// Sends the request `make` builds, timed from request to answer, without waiting for
    /// it; skipped (and counted) while `max_in_flight` are still out.
    pub fn issue(&self, make: impl FnOnce() -> RequestParts) {
        let stats = self.stats;
        if stats.in_flight.get() >= self.max_in_flight {
            stats.skipped.inc();
            return;
        }
        let (method, path, token, body) = make();
        stats.issued.inc();
        stats.in_flight.inc();
        let (rest, stats, errors) = (self.rest.clone(), stats.clone(), self.errors.clone());
        let label = self.label;
        self.ex
            .spawn(async move {
                let started = Instant::now();
                let answer = rest
                    .json(method, &path, token.as_deref(), body.as_ref())
                    .await;
                let rtt = started.elapsed();
                stats.in_flight.dec();
                match classify(label, answer) {
                    Ok(()) => {
                        stats.ok.inc();
                        stats.rtt.record(rtt);
                    }
                    Err(kind) => {
                        stats.failed.inc();
                        errors.add(kind);
                    }
                }
            })
            .detach();
    }
}

/// Calls `fire(0)`, `fire(1)`, … at `rate` per second (open loop: `fire` must not wait)
/// until `stop` is closed. Nothing for a rate of 0.
pub async fn open_loop(rate: f64, stop: &async_channel::Receiver<()>, mut fire: impl FnMut(u64)) {
    if rate <= 0.0 {
        return;
    }
    // Ticks of at least 1 ms; several requests per tick above 1000/s.
    let period = Duration::from_secs_f64((1.0 / rate).max(0.001));
    let per_tick = rate * period.as_secs_f64();
    let mut credit = 0.0;
    let mut i = 0u64;
    let mut timer = async_io::Timer::interval(period);
    loop {
        let tick = futures_lite::future::or(
            async {
                futures_lite::StreamExt::next(&mut timer).await;
                true
            },
            async {
                let _ = stop.recv().await;
                false
            },
        )
        .await;
        if !tick {
            return;
        }
        credit += per_tick;
        while credit >= 1.0 {
            credit -= 1.0;
            fire(i);
            i += 1;
        }
    }
}

/// `Ok` for `200` with `"success": true`; otherwise a kind such as
/// `command.http_504_TIMEOUT` or `command.io` (`label` is its first word).
pub fn classify(
    label: &str,
    answer: Result<(u16, serde_json::Value), ClientError>,
) -> Result<(), String> {
    match answer {
        Ok((200, v)) if v["success"] == true => Ok(()),
        Ok((status, v)) => {
            let code = v["error"]["code"].as_str().unwrap_or("no_code");
            Err(format!("{label}.http_{status}_{code}"))
        }
        Err(e) => Err(format!("{label}.{}", e.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_mix() {
        let actions: Vec<_> = (0..8).map(|i| nth_command(i, "s").0).collect();
        assert_eq!(actions.iter().filter(|m| **m == "POST").count(), 2);
        assert_eq!(nth_command(0, "s").1, "/api/servers/s");
        assert_eq!(nth_command(3, "s").2, Some(json!({"action": "start"})));
        assert_eq!(nth_command(7, "s").2, Some(json!({"action": "stop"})));
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify("command", Ok((200, json!({"success": true})))),
            Ok(())
        );
        assert_eq!(
            classify(
                "command",
                Ok((504, json!({"success": false, "error": {"code": "TIMEOUT"}})))
            ),
            Err("command.http_504_TIMEOUT".into())
        );
        assert_eq!(
            classify("command", Ok((200, json!({"success": false})))),
            Err("command.http_200_no_code".into())
        );
        assert_eq!(
            classify("command", Err(ClientError::Timeout(Duration::from_secs(1)))),
            Err("command.timeout".into())
        );
    }
}
