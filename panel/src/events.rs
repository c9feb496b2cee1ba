//! Live events: fan-out of every agent event frame to `GET /api/events` subscribers.
//!
//! The hub routes an event with an envelope-only decode and hands over the frame exactly as
//! received (a tungstenite message whose payload is reference-counted `Bytes`), so forwarding
//! is a clone of a pointer per subscriber — never a re-serialisation. Each subscriber has a
//! bounded [`Outbox`] (allocated only as frames queue up); when it is full the oldest frame is
//! dropped and counted, so a slow subscriber loses history instead of slowing an agent down.
//! The subscriber's writer sends whatever is queued with one flush per batch
//! ([`outbox::write_batch_lingering`]: at most one per 2 ms period while events keep coming),
//! not one TLS record and syscall per event. An optional
//! `?serverId=` (and `?agentId=`) filter applies.
//!
//! Subscribers only listen. Whatever they send besides a close frame is ignored but spends
//! a small budget ([`SUBSCRIBER_RATE`] frames/s, burst [`SUBSCRIBER_BURST`]); past it —
//! a ping flood, say, each ping answered by tungstenite with a pong — the subscriber is
//! closed (1008). A subscriber that stops reading is closed once one write has waited
//! [`WRITE_STALL`] (between one and one and a quarter periods: a watchdog ticks four times
//! per period, so there is no timer per write): a slow reader loses its oldest frames, one
//! that does not read at all loses the connection.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_lite::{AsyncRead, AsyncWrite, StreamExt, future};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::outbox::{self, Outbox};
use crate::panel_metrics::PanelMetrics;
use crate::ratelimit::TokenBucket;
use crate::shutdown::Shutdown;
use crate::tracker::{Token, Tracker};

/// How long a subscriber's close handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames per second a subscriber may send (all ignored but close).
pub const SUBSCRIBER_RATE: f64 = 10.0;
/// Burst of the subscriber's budget.
pub const SUBSCRIBER_BURST: f64 = 20.0;
/// Longest a write to a subscriber may wait for the peer to read.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub server_id: Option<String>,
    pub agent_id: Option<String>,
}

impl Filter {
    fn matches(&self, agent_id: &str, server_id: Option<&str>) -> bool {
        self.agent_id.as_deref().is_none_or(|a| a == agent_id)
            && self
                .server_id
                .as_deref()
                .is_none_or(|s| server_id == Some(s))
    }
}

struct Sub {
    filter: Filter,
    queue: Arc<Outbox<WsMessage>>,
    dropped: Arc<AtomicU64>,
}

/// Why a subscriber socket ends.
enum End {
    /// It closed or failed.
    Peer,
    Shutdown,
    /// It sent more than its budget.
    Flooding,
    /// It stopped reading.
    Stalled,
}

/// The subscriber registry.
pub struct Events {
    subs: RwLock<HashMap<u64, Sub>>,
    next: AtomicU64,
    queue: usize,
    write_stall: Duration,
    metrics: Arc<PanelMetrics>,
    tracker: Tracker,
}

/// A registered subscriber; unregisters itself when dropped.
pub struct Subscription {
    id: u64,
    events: Arc<Events>,
    pub queue: Arc<Outbox<WsMessage>>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Frames this subscriber lost to a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close();
        if self.events.subs.write().remove(&self.id).is_some() {
            self.events.metrics.event_subscribers.dec();
        }
    }
}

impl Events {
    pub fn new(queue: usize, metrics: Arc<PanelMetrics>) -> Arc<Events> {
        Events::with_write_stall(queue, WRITE_STALL, metrics)
    }

    /// [`new`](Self::new) with another limit than [`WRITE_STALL`].
    pub fn with_write_stall(
        queue: usize,
        write_stall: Duration,
        metrics: Arc<PanelMetrics>,
    ) -> Arc<Events> {
        Arc::new(Events {
            subs: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
            queue: queue.max(1),
            write_stall,
            metrics,
            tracker: Tracker::new(),
        })
    }

    pub fn subscribe(self: &Arc<Self>, filter: Filter) -> Subscription {
        let queue = Arc::new(Outbox::new(self.queue));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subs.write().insert(
            id,
            Sub {
                filter,
                queue: queue.clone(),
                dropped: dropped.clone(),
            },
        );
        self.metrics.event_subscribers.inc();
        Subscription {
            id,
            events: self.clone(),
            queue,
            dropped,
        }
    }

    /// Shutdown: waits (at most `grace`) for every subscriber socket to finish its close.
    pub async fn drain(&self, grace: Duration) {
        future::or(self.tracker.idle(), async {
            async_io::Timer::after(grace).await;
        })
        .await;
    }

    pub fn subscribers(&self) -> usize {
        self.subs.read().len()
    }

    /// Queues `frame` (the original bytes) to every matching subscriber without waiting.
    pub fn publish(&self, agent_id: &str, server_id: Option<&str>, frame: &WsMessage) {
        let subs = self.subs.read();
        for sub in subs.values() {
            if !sub.filter.matches(agent_id, server_id) {
                continue;
            }
            match sub.queue.force_push(frame.clone()) {
                Ok(None) => self.metrics.events_forwarded.inc(),
                Ok(Some(_oldest)) => {
                    self.metrics.events_forwarded.inc();
                    self.metrics.events_dropped.inc();
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The subscriber is going away; its Subscription will unregister it.
                Err(_) => {}
            }
        }
    }

    /// Reserves a place for a subscriber socket before its upgrade is answered, so that
    /// shutdown waits for it (and closes it with 1001) even if its task has not run yet.
    /// `None` once shutdown has begun.
    pub fn admit(&self) -> Option<Token> {
        self.tracker.token()
    }

    /// [`admit`](Self::admit), then [`serve_admitted`](Self::serve_admitted).
    pub async fn serve<S>(
        self: Arc<Self>,
        ws: WebSocketStream<S>,
        filter: Filter,
        shutdown: Shutdown,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admitted = self.admit();
        self.serve_admitted(admitted, ws, filter, shutdown).await
    }

    /// Runs one subscriber socket until the peer leaves, floods, stops reading, or the panel
    /// shuts down (then with a close frame). Frames from the subscriber other than close are
    /// ignored within their budget. `admitted` is what [`admit`](Self::admit) returned
    /// before the upgrade.
    pub async fn serve_admitted<S>(
        self: Arc<Self>,
        admitted: Option<Token>,
        mut ws: WebSocketStream<S>,
        filter: Filter,
        shutdown: Shutdown,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(_token) = admitted else {
            // Shutdown began before this socket was admitted: say so and leave.
            let away = close_frame(CloseCode::Away, "panel shutting down");
            let _ = future::or(async { ws.close(Some(away)).await.ok() }, async {
                async_io::Timer::after(CLOSE_GRACE).await;
                None
            })
            .await;
            return;
        };
        let sub = self.subscribe(filter);
        let (mut tx, mut rx) = ws.split();
        let reader = async {
            let mut budget = TokenBucket::new(SUBSCRIBER_RATE, SUBSCRIBER_BURST);
            while let Some(msg) = rx.next().await {
                match msg {
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) if !budget.try_take(Instant::now()) => return End::Flooding,
                    Ok(_) => {}
                }
            }
            End::Peer
        };
        // For the watchdog: whether a batch is being written, and how many were written.
        // One timer per subscriber ticking four times per stall period; nothing per batch
        // but two atomic stores.
        let writing = AtomicBool::new(false);
        let written = AtomicU64::new(0);
        let writer = async {
            let mut linger = outbox::Linger::new(outbox::SUBSCRIBER_LINGER);
            loop {
                let next = future::or(async { Some(sub.queue.pop().await) }, async {
                    shutdown.wait().await;
                    None
                })
                .await;
                let frame = match next {
                    Some(Some(frame)) => frame,
                    Some(None) => return End::Peer,
                    None => return End::Shutdown,
                };
                writing.store(true, Ordering::Relaxed);
                let sent = future::or(
                    async {
                        let batch =
                            outbox::write_batch_lingering(&mut tx, &sub.queue, frame, &mut linger);
                        Some(batch.await)
                    },
                    async {
                        shutdown.wait().await;
                        None
                    },
                )
                .await;
                written.fetch_add(1, Ordering::Relaxed);
                writing.store(false, Ordering::Relaxed);
                match sent {
                    Some(Ok(_)) => {}
                    Some(Err(_)) => return End::Peer,
                    None => return End::Shutdown,
                }
            }
        };
        let watchdog = async {
            // Ticks during which one and the same batch has been in progress.
            let (mut last, mut stuck) = (u64::MAX, 0u32);
            let mut tick = async_io::Timer::interval(self.write_stall / 4);
            loop {
                tick.next().await;
                let now = written.load(Ordering::Relaxed);
                stuck = if writing.load(Ordering::Relaxed) && now == last {
                    stuck + 1
                } else {
                    0
                };
                last = now;
                if stuck >= 4 {
                    return End::Stalled;
                }
            }
        };
        let close = match future::or(future::or(writer, watchdog), reader).await {
            End::Peer => None,
            End::Shutdown => Some(close_frame(CloseCode::Away, "panel shutting down")),
            End::Flooding => {
                self.metrics.subscribers_flooding.inc();
                Some(close_frame(
                    CloseCode::Policy,
                    "more frames than a subscriber may send",
                ))
            }
            End::Stalled => {
                self.metrics.subscribers_stalled.inc();
                Some(close_frame(CloseCode::Policy, "not reading"))
            }
        };
        if let Some(frame) = close {
            // The close handshake, bounded: send ours, then read (and drop) what the peer
            // still sends until its close. Closing a socket with unread input resets it, and
            // the peer could lose our close frame to the reset.
            future::or(
                async {
                    if tx.close(Some(frame)).await.is_ok() {
                        while let Some(Ok(m)) = rx.next().await {
                            if m.is_close() {
                                break;
                            }
                        }
                    }
                },
                async {
                    async_io::Timer::after(CLOSE_GRACE).await;
                },
            )
            .await;
        }
        drop(sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> WsMessage {
        WsMessage::Text(s.to_owned().into())
    }

    #[test]
    fn slow_subscriber_loses_the_oldest_frames() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::new(2, metrics.clone());
        let sub = ev.subscribe(Filter::default());
        for i in 0..5 {
            ev.publish("a1", Some("s1"), &frame(&format!("{i}")));
        }
        assert_eq!(sub.dropped(), 3);
        assert_eq!(metrics.events_dropped.get(), 3);
        assert_eq!(sub.queue.try_pop().unwrap(), frame("3"));
        assert_eq!(sub.queue.try_pop().unwrap(), frame("4"));
        assert!(sub.queue.try_pop().is_none());
    }

    #[test]
    fn filters_by_server_and_agent() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::new(8, metrics.clone());
        let all = ev.subscribe(Filter::default());
        let s1 = ev.subscribe(Filter {
            server_id: Some("s1".into()),
            agent_id: None,
        });
        let a2 = ev.subscribe(Filter {
            server_id: None,
            agent_id: Some("a2".into()),
        });
        ev.publish("a1", Some("s1"), &frame("x"));
        ev.publish("a1", Some("s2"), &frame("y"));
        ev.publish("a2", None, &frame("z"));
        assert_eq!(all.queue.len(), 3);
        assert_eq!(s1.queue.len(), 1);
        assert_eq!(s1.queue.try_pop().unwrap(), frame("x"));
        assert_eq!(a2.queue.len(), 1);
        assert_eq!(metrics.event_subscribers.get(), 3);
        drop(all);
        assert_eq!(ev.subscribers(), 2);
        assert_eq!(metrics.event_subscribers.get(), 2);
    }

    #[test]
    fn forwarded_frames_share_the_original_bytes() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::new(8, metrics);
        let sub = ev.subscribe(Filter::default());
        let original = frame(r#"{"type":"event","event":"server_log"}"#);
        ev.publish("a1", None, &original);
        let (WsMessage::Text(got), WsMessage::Text(orig)) =
            (sub.queue.try_pop().unwrap(), original)
        else {
            panic!("text frames expected");
        };
        // Same buffer, not a copy: Utf8Bytes clones share their allocation.
        assert_eq!(got.as_str().as_ptr(), orig.as_str().as_ptr());
    }

    /// A loopback WebSocket pair: (panel side, subscriber side).
    async fn ws_pair() -> (
        WebSocketStream<async_io::Async<std::net::TcpStream>>,
        WebSocketStream<async_io::Async<std::net::TcpStream>>,
    ) {
        use async_tungstenite::tungstenite::protocol::Role;
        let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let client = async_io::Async::<std::net::TcpStream>::connect(addr)
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    async fn close_code(
        ws: &mut WebSocketStream<async_io::Async<std::net::TcpStream>>,
    ) -> Option<CloseCode> {
        while let Some(msg) = ws.next().await {
            if let Ok(WsMessage::Close(c)) = msg {
                return c.map(|c| c.code);
            }
        }
        None
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_closed() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::with_write_stall(64, Duration::from_millis(200), metrics.clone());
        smol::block_on(async {
            let (server, _client) = ws_pair().await;
            let task = smol::spawn(ev.clone().serve(server, Filter::default(), Shutdown::new()));
            while ev.subscribers() == 0 {
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            // The client never reads: the socket buffers fill, then a write stalls.
            let big = frame(&"e".repeat(64 * 1024));
            while metrics.subscribers_stalled.get() == 0 {
                ev.publish("a1", Some("s1"), &big);
                async_io::Timer::after(Duration::from_millis(10)).await;
            }
            task.await;
            assert_eq!(ev.subscribers(), 0);
        });
    }

    #[test]
    fn a_subscriber_flooding_pings_is_closed_with_1008() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::new(8, metrics.clone());
        smol::block_on(async {
            let (server, mut client) = ws_pair().await;
            let task = smol::spawn(ev.clone().serve(server, Filter::default(), Shutdown::new()));
            for _ in 0..(SUBSCRIBER_BURST as usize + 10) {
                client
                    .send(WsMessage::Ping(vec![1u8; 8].into()))
                    .await
                    .unwrap();
            }
            assert_eq!(close_code(&mut client).await, Some(CloseCode::Policy));
            task.await;
            assert_eq!(metrics.subscribers_flooding.get(), 1);
            assert_eq!(ev.subscribers(), 0);
        });
    }

    #[test]
    fn shutdown_waits_for_an_admitted_socket_whose_task_has_not_started() {
        let ev = Events::new(8, Arc::new(PanelMetrics::default()));
        let shutdown = Shutdown::new();
        smol::block_on(async {
            // The upgrade handler admits the socket; then shutdown begins before its task runs.
            let admitted = ev.admit();
            assert!(admitted.is_some());
            shutdown.trigger();
            let mut idle = Box::pin(ev.tracker.idle());
            assert!(
                future::poll_once(&mut idle).await.is_none(),
                "drain must wait"
            );
            assert!(ev.admit().is_none(), "no admission once shutdown began");
            // The task finally runs: it closes with 1001, and only then is the drain done.
            let (server, mut client) = ws_pair().await;
            let task = smol::spawn(ev.clone().serve_admitted(
                admitted,
                server,
                Filter::default(),
                shutdown.clone(),
            ));
            assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
            task.await;
            idle.await;
            // A socket that was not admitted (shutdown already running) is closed the same way.
            let (server, mut client) = ws_pair().await;
            let task = smol::spawn(ev.clone().serve_admitted(
                None,
                server,
                Filter::default(),
                shutdown.clone(),
            ));
            assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
            task.await;
        });
    }
}
