//! `/api/events` subscribers that check every event the crowd sent arrives exactly once.
//!
//! Each event id is `<run>.<agent index>.<seq>` and one agent's events travel one socket in
//! order, so a subscriber keeps, per agent, the next sequence number it expects: a jump is a
//! gap (events lost), a step back is a duplicate. Totals against the crowd's sent counter
//! give the loss, including a lost tail.

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_lite::{StreamExt, future};

use crate::sim::parse_event_id;
use crate::stats::{Counter, Errors};
use ctrl_io::WsOptions;

/// What one subscriber saw.
#[derive(Default)]
pub struct SubStats {
    /// Our run's events received (first time).
    pub delivered: Counter,
    /// Events missing between two received ones.
    pub gaps: Counter,
    /// Events received again or out of order.
    pub duplicates: Counter,
    /// Events of other runs or agents.
    pub foreign: Counter,
    /// A filtered subscriber's events of this run from another agent than its server's:
    /// the panel's filter let through what it should not have.
    pub misrouted: Counter,
    pub connected: std::sync::atomic::AtomicBool,
    pub reconnects: Counter,
}

/// The admin token as `/api/events` credential headers.
pub fn admin_headers(admin_token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {admin_token}"))]
}

/// Tracks per-agent sequence numbers.
pub struct Tracker {
    run: String,
    next: Vec<u64>,
    /// A filtered subscriber's agent: events of this run from any other are misrouted.
    only: Option<usize>,
}

impl Tracker {
    pub fn new(run: &str, agents: usize) -> Tracker {
        Tracker {
            run: run.to_owned(),
            next: vec![0; agents],
            only: None,
        }
    }

    /// A tracker for a subscriber filtered to the server of agent `index`.
    pub fn only(run: &str, agents: usize, index: usize) -> Tracker {
        Tracker {
            only: Some(index),
            ..Tracker::new(run, agents)
        }
    }

    /// Accounts one event id.
    pub fn see(&mut self, id: Option<&str>, stats: &SubStats) {
        let Some((index, seq)) = id.and_then(|id| parse_event_id(&self.run, id)) else {
            stats.foreign.inc();
            return;
        };
        if self.only.is_some_and(|only| only != index) {
            stats.misrouted.inc();
            return;
        }
        let Some(expected) = self.next.get_mut(index) else {
            stats.foreign.inc();
            return;
        };
        if seq < *expected {
            stats.duplicates.inc();
            return;
        }
        if seq > *expected {
            stats.gaps.add(seq - *expected);
        }
        *expected = seq + 1;
        stats.delivered.inc();
    }
}

/// Connects to `url` (`/api/events`, with a filter query for a filtered subscriber) with
/// the credential `headers` (the admin token's `Authorization`, a user's key, or a user's
/// session cookie with the page's `Origin`) and accounts every frame with `tracker` until
/// `stop` is closed. Reconnects (counting an error) if the panel drops the socket.
pub async fn run(
    url: String,
    tls: Arc<rustls::ClientConfig>,
    headers: Vec<(String, String)>,
    mut tracker: Tracker,
    stats: Arc<SubStats>,
    errors: Arc<Errors>,
    stop: async_channel::Receiver<()>,
) {
    let mut decoder = proto::Decoder::default();
    let options = WsOptions {
        config: ctrl_io::large_config(),
        timeout: Duration::from_secs(30),
    };
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut first = true;
    loop {
        let connect = ctrl_io::ws_connect_with(&url, tls.clone(), &headers, options);
        let ws = future::or(async { Some(connect.await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let mut ws = match ws {
            None => return,
            Some(Ok(ws)) => ws,
            Some(Err(e)) => {
                errors.add(match &e {
                    ctrl_io::ClientError::Rejected { status, .. } => {
                        format!("subscriber.rejected_{status}")
                    }
                    other => format!("subscriber.{}", other.kind()),
                });
                let wait = future::or(
                    async {
                        async_io::Timer::after(Duration::from_millis(500)).await;
                        false
                    },
                    async {
                        let _ = stop.recv().await;
                        true
                    },
                );
                if wait.await {
                    return;
                }
                continue;
            }
        };
        if !std::mem::take(&mut first) {
            stats.reconnects.inc();
        }
        stats
            .connected
            .store(true, std::sync::atomic::Ordering::SeqCst);
        loop {
            let next = future::or(async { Some(ws.next().await) }, async {
                let _ = stop.recv().await;
                None
            })
            .await;
            match next {
                None => {
                    let _ = future::or(async { ws.close(None).await.ok() }, async {
                        async_io::Timer::after(Duration::from_secs(2)).await;
                        None
                    })
                    .await;
                    return;
                }
                Some(Some(Ok(WsMessage::Text(t)))) => {
                    let id = decoder.envelope(t.as_bytes()).ok().and_then(|e| e.id);
                    tracker.see(id.as_deref(), &stats);
                }
                Some(Some(Ok(WsMessage::Binary(b)))) => {
                    let id = decoder.envelope(&b).ok().and_then(|e| e.id);
                    tracker.see(id.as_deref(), &stats);
                }
                Some(Some(Ok(WsMessage::Close(_)))) | Some(None) => {
                    errors.add("subscriber.closed_by_panel");
                    break;
                }
                Some(Some(Ok(_))) => {}
                Some(Some(Err(e))) => {
                    errors.add(format!("subscriber.read_{}", ctrl_io::ws_error(e).kind()));
                    break;
                }
            }
        }
        stats
            .connected
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_duplicates_and_foreign() {
        let stats = SubStats::default();
        let mut t = Tracker::new("r1", 2);
        for id in [
            "r1.0.0", "r1.0.1", "r1.1.0", "r1.0.4", "r1.0.2", "r1.1.1", "r2.0.0", "r1.5.0",
        ] {
            t.see(Some(id), &stats);
        }
        t.see(None, &stats);
        assert_eq!(stats.delivered.get(), 5);
        assert_eq!(stats.gaps.get(), 2);
        assert_eq!(stats.duplicates.get(), 1);
        assert_eq!(stats.foreign.get(), 3);
    }

    #[test]
    fn a_filtered_subscriber_counts_other_agents_as_misrouted() {
        let stats = SubStats::default();
        let mut t = Tracker::only("r1", 3, 1);
        for id in ["r1.1.0", "r1.0.0", "r1.1.1", "r1.2.5", "r2.0.0"] {
            t.see(Some(id), &stats);
        }
        assert_eq!(stats.delivered.get(), 2);
        assert_eq!(stats.misrouted.get(), 2);
        assert_eq!(stats.foreign.get(), 1);
        assert_eq!(stats.gaps.get(), 0);
    }
}
