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
//! Each subscriber has an [`Audience`]: admins see everything; a user sees only the servers
//! they have access to, and console output (`server_log`, `install_log`) only where they
//! hold `console.read`. Subscribers are indexed by server, so publishing an event costs the
//! all-seeing subscribers plus the subscribers of *that* server — never a scan of everyone.
//! When a user's rights change (subuser removed, owner changed, user deleted, session or
//! key revoked) [`Events::rescope_user`] re-indexes or closes their live sockets (1008).
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
use std::collections::{HashMap, HashSet};
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

/// Which servers a subscriber may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every event (admins).
    All,
    /// These servers only; `true` where console output may be read.
    Servers(HashMap<String, bool>),
}

/// Who a subscriber is, for [`Events::rescope_user`]: a user id and the credential
/// (session key or API key id) the socket was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user_id: String,
    pub credential: crate::users::Via,
}

/// What `owner` may see now: `None` when the user or the credential is gone. Set once by
/// the API ([`Events::set_scoper`]) and called under the index lock, so a subscription and
/// a rights change cannot interleave into a stale scope.
pub type Scoper = Box<dyn Fn(&Owner) -> Option<Scope> + Send + Sync>;

/// What a subscriber may receive and on whose behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub scope: Scope,
    /// `None` for the admin token (never rescoped).
    pub owner: Option<Owner>,
}

impl Audience {
    /// Everything, for the admin token.
    pub fn all() -> Audience {
        Audience {
            scope: Scope::All,
            owner: None,
        }
    }
}

/// Event names that carry console output (need `console.read`).
fn is_console(event: Option<&str>) -> bool {
    matches!(event, Some("server_log" | "install_log"))
}

/// Where a subscriber's frames go: shared by its entries in the index, so publishing walks
/// the index alone (no second lookup per subscriber).
struct Target {
    filter: Filter,
    queue: Arc<Outbox<WsMessage>>,
    dropped: Arc<AtomicU64>,
}

struct Sub {
    target: Arc<Target>,
    revoked: Arc<AtomicBool>,
    owner: Option<Owner>,
    /// Indexed in `wide` (else under `servers` in `by_server`).
    wide: bool,
    servers: Vec<String>,
}

impl Target {
    fn deliver(&self, frame: &WsMessage, metrics: &PanelMetrics) {
        match self.queue.force_push(frame.clone()) {
            Ok(None) => metrics.events_forwarded.inc(),
            Ok(Some(_oldest)) => {
                metrics.events_forwarded.inc();
                metrics.events_dropped.inc();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The subscriber is going away; its Subscription will unregister it.
            Err(_) => {}
        }
    }
}

/// Subscribers and the index publishing walks.
#[derive(Default)]
struct Index {
    subs: HashMap<u64, Sub>,
    /// All-seeing subscribers without a server filter.
    wide: HashMap<u64, Arc<Target>>,
    /// Server id → subscriber → (its target, may read console output).
    by_server: HashMap<String, HashMap<u64, (Arc<Target>, bool)>>,
    /// User id → their subscribers.
    by_user: HashMap<String, HashSet<u64>>,
}

impl Index {
    /// Indexes subscriber `id` for `scope`.
    fn place(&mut self, id: u64, scope: &Scope) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let target = sub.target.clone();
        let servers: Vec<(String, bool)> = match (scope, &target.filter.server_id) {
            (Scope::All, None) => {
                sub.wide = true;
                self.wide.insert(id, target);
                return;
            }
            (Scope::All, Some(s)) => vec![(s.clone(), true)],
            (Scope::Servers(m), Some(s)) => m.get(s).map(|c| (s.clone(), *c)).into_iter().collect(),
            (Scope::Servers(m), None) => m.iter().map(|(s, c)| (s.clone(), *c)).collect(),
        };
        sub.servers = servers.iter().map(|(s, _)| s.clone()).collect();
        for (s, console) in servers {
            self.by_server
                .entry(s)
                .or_default()
                .insert(id, (target.clone(), console));
        }
    }

    /// Removes subscriber `id` from the index (not from `subs`).
    fn unplace(&mut self, id: u64) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if std::mem::take(&mut sub.wide) {
            self.wide.remove(&id);
        }
        for s in std::mem::take(&mut sub.servers) {
            if let Some(m) = self.by_server.get_mut(&s) {
                m.remove(&id);
                if m.is_empty() {
                    self.by_server.remove(&s);
                }
            }
        }
    }
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
    /// Its access was withdrawn.
    Revoked,
}

/// The subscriber registry.
pub struct Events {
    index: RwLock<Index>,
    next: AtomicU64,
    queue: usize,
    write_stall: Duration,
    metrics: Arc<PanelMetrics>,
    tracker: Tracker,
    scoper: std::sync::OnceLock<Scoper>,
}

/// A registered subscriber; unregisters itself when dropped.
pub struct Subscription {
    id: u64,
    events: Arc<Events>,
    pub queue: Arc<Outbox<WsMessage>>,
    dropped: Arc<AtomicU64>,
    revoked: Arc<AtomicBool>,
}

impl Subscription {
    /// Frames this subscriber lost to a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether its access was withdrawn (its queue is closed too).
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close();
        let mut idx = self.events.index.write();
        idx.unplace(self.id);
        if let Some(sub) = idx.subs.remove(&self.id) {
            if let Some(o) = sub.owner
                && let Some(set) = idx.by_user.get_mut(&o.user_id)
            {
                set.remove(&self.id);
                if set.is_empty() {
                    idx.by_user.remove(&o.user_id);
                }
            }
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
            index: RwLock::new(Index::default()),
            next: AtomicU64::new(1),
            queue: queue.max(1),
            write_stall,
            metrics,
            tracker: Tracker::new(),
            scoper: std::sync::OnceLock::new(),
        })
    }

    /// An all-seeing subscriber (the admin token).
    pub fn subscribe(self: &Arc<Self>, filter: Filter) -> Subscription {
        self.subscribe_as(filter, Audience::all())
    }

    /// Sets how a user's scope is computed (once; later calls are ignored).
    pub fn set_scoper(&self, scoper: Scoper) {
        let _ = self.scoper.set(scoper);
    }

    /// A subscriber that receives what `audience` may see. With a scoper set, a user's scope
    /// is computed now, under the index lock (a credential gone by then closes it at once).
    pub fn subscribe_as(self: &Arc<Self>, filter: Filter, audience: Audience) -> Subscription {
        let queue = Arc::new(Outbox::new(self.queue));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let revoked = Arc::new(AtomicBool::new(false));
        let mut idx = self.index.write();
        let scope = match (&audience.owner, self.scoper.get()) {
            (Some(o), Some(scoper)) => scoper(o),
            _ => Some(audience.scope),
        };
        if let Some(o) = &audience.owner {
            idx.by_user.entry(o.user_id.clone()).or_default().insert(id);
        }
        idx.subs.insert(
            id,
            Sub {
                target: Arc::new(Target {
                    filter,
                    queue: queue.clone(),
                    dropped: dropped.clone(),
                }),
                revoked: revoked.clone(),
                owner: audience.owner,
                wide: false,
                servers: Vec::new(),
            },
        );
        match scope {
            Some(scope) => idx.place(id, &scope),
            None => {
                revoked.store(true, Ordering::Release);
                queue.close();
            }
        }
        drop(idx);
        self.metrics.event_subscribers.inc();
        Subscription {
            id,
            events: self.clone(),
            queue,
            dropped,
            revoked,
        }
    }

    /// Applies a change of `user_id`'s rights to their live subscribers with the scoper
    /// (nothing without one).
    pub fn rescope(&self, user_id: &str) {
        if let Some(scoper) = self.scoper.get() {
            self.rescope_user(user_id, |credential| {
                scoper(&Owner {
                    user_id: user_id.to_owned(),
                    credential: credential.clone(),
                })
            });
        }
    }

    /// Applies a change of `user_id`'s rights to their live subscribers: `scope_for` gives
    /// the new scope for a subscriber opened with that credential, or `None` when the
    /// credential (or the user) is gone — that subscriber is closed.
    pub fn rescope_user(
        &self,
        user_id: &str,
        scope_for: impl Fn(&crate::users::Via) -> Option<Scope>,
    ) {
        let mut idx = self.index.write();
        let ids: Vec<u64> = idx
            .by_user
            .get(user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            let scope = match idx.subs.get(&id).and_then(|s| s.owner.as_ref()) {
                Some(o) => scope_for(&o.credential),
                None => continue,
            };
            idx.unplace(id);
            match scope {
                Some(scope) => idx.place(id, &scope),
                None => {
                    if let Some(sub) = idx.subs.get(&id) {
                        sub.revoked.store(true, Ordering::Release);
                        sub.target.queue.close();
                    }
                }
            }
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
        self.index.read().subs.len()
    }

    /// Queues `frame` (the original bytes) to every subscriber that matches and may see it,
    /// without waiting. `event` is the event's name (console output needs `console.read`).
    pub fn publish(
        &self,
        agent_id: &str,
        server_id: Option<&str>,
        event: Option<&str>,
        frame: &WsMessage,
    ) {
        let idx = self.index.read();
        for target in idx.wide.values() {
            if target.filter.matches(agent_id, server_id) {
                target.deliver(frame, &self.metrics);
            }
        }
        let Some(subs) = server_id.and_then(|s| idx.by_server.get(s)) else {
            return;
        };
        let console = is_console(event);
        for (target, may_read_console) in subs.values() {
            if (!console || *may_read_console) && target.filter.matches(agent_id, server_id) {
                target.deliver(frame, &self.metrics);
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
        self.serve_admitted(admitted, ws, filter, Audience::all(), shutdown)
            .await
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
        audience: Audience,
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
        let sub = self.subscribe_as(filter, audience);
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
                    Some(None) if sub.revoked() => return End::Revoked,
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
            End::Revoked => Some(close_frame(CloseCode::Policy, "access revoked")),
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
            ev.publish("a1", Some("s1"), None, &frame(&format!("{i}")));
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
        ev.publish("a1", Some("s1"), None, &frame("x"));
        ev.publish("a1", Some("s2"), None, &frame("y"));
        ev.publish("a2", None, None, &frame("z"));
        assert_eq!(all.queue.len(), 3);
        assert_eq!(s1.queue.len(), 1);
        assert_eq!(s1.queue.try_pop().unwrap(), frame("x"));
        assert_eq!(a2.queue.len(), 1);
        assert_eq!(metrics.event_subscribers.get(), 3);
        drop(all);
        assert_eq!(ev.subscribers(), 2);
        assert_eq!(metrics.event_subscribers.get(), 2);
    }

    fn user(id: &str, servers: &[(&str, bool)]) -> Audience {
        Audience {
            scope: Scope::Servers(servers.iter().map(|(s, c)| (s.to_string(), *c)).collect()),
            owner: Some(Owner {
                user_id: id.into(),
                credential: crate::users::Via::Session("k1".into()),
            }),
        }
    }

    #[test]
    fn users_see_only_their_servers_and_console_only_with_the_right() {
        let ev = Events::new(8, Arc::new(PanelMetrics::default()));
        let admin = ev.subscribe(Filter::default());
        let a = ev.subscribe_as(Filter::default(), user("ua", &[("s1", true)]));
        let b = ev.subscribe_as(Filter::default(), user("ub", &[("s2", false)]));
        ev.publish("a1", Some("s1"), Some("server_log"), &frame("a-log"));
        ev.publish("a1", Some("s2"), Some("server_log"), &frame("b-log"));
        ev.publish("a1", Some("s2"), Some("server_status"), &frame("b-status"));
        ev.publish("a1", None, Some("agent_health_changed"), &frame("agent"));
        assert_eq!(admin.queue.len(), 4);
        assert_eq!(a.queue.try_pop().unwrap(), frame("a-log"));
        assert!(a.queue.try_pop().is_none());
        // b may see s2 but not read its console.
        assert_eq!(b.queue.try_pop().unwrap(), frame("b-status"));
        assert!(b.queue.try_pop().is_none());
        // Only the subscribers of s1 are in its index entry: the cost of an s1 event does
        // not grow with other users' subscribers.
        assert_eq!(ev.index.read().by_server["s1"].len(), 1);
        // A rights change re-indexes b live; a withdrawn credential closes a.
        ev.rescope_user("ub", |_| Some(Scope::Servers([("s1".into(), true)].into())));
        ev.rescope_user("ua", |_| None);
        ev.publish("a1", Some("s1"), Some("server_log"), &frame("a-log2"));
        ev.publish("a1", Some("s2"), Some("server_status"), &frame("b-status2"));
        assert_eq!(b.queue.try_pop().unwrap(), frame("a-log2"));
        assert!(b.queue.try_pop().is_none());
        assert!(a.revoked());
        assert!(a.queue.try_pop().is_none());
        drop((a, b));
        let idx = ev.index.read();
        assert!(idx.by_server.is_empty() && idx.by_user.is_empty());
        assert_eq!(idx.subs.len(), 1);
    }

    #[test]
    fn the_scoper_decides_at_subscription_time() {
        let ev = Events::new(8, Arc::new(PanelMetrics::default()));
        // The user may now see s2 only, and the credential "gone" no longer works.
        ev.set_scoper(Box::new(|o: &Owner| match &o.credential {
            crate::users::Via::Session(k) if k == "gone" => None,
            _ => Some(Scope::Servers([("s2".into(), false)].into())),
        }));
        // The audience computed earlier (s1) is stale: the scoper's answer wins.
        let live = ev.subscribe_as(Filter::default(), user("ua", &[("s1", true)]));
        let mut stale = user("ua", &[("s1", true)]);
        stale.owner = Some(Owner {
            user_id: "ua".into(),
            credential: crate::users::Via::Session("gone".into()),
        });
        let dead = ev.subscribe_as(Filter::default(), stale);
        assert!(dead.revoked() && !live.revoked());
        ev.publish("a1", Some("s1"), Some("server_status"), &frame("s1"));
        ev.publish("a1", Some("s2"), Some("server_status"), &frame("s2"));
        assert_eq!(live.queue.try_pop().unwrap(), frame("s2"));
        assert!(live.queue.try_pop().is_none() && dead.queue.try_pop().is_none());
    }

    #[test]
    fn forwarded_frames_share_the_original_bytes() {
        let metrics = Arc::new(PanelMetrics::default());
        let ev = Events::new(8, metrics);
        let sub = ev.subscribe(Filter::default());
        let original = frame(r#"{"type":"event","event":"server_log"}"#);
        ev.publish("a1", None, None, &original);
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
                ev.publish("a1", Some("s1"), None, &big);
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
                Audience::all(),
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
                Audience::all(),
                shutdown.clone(),
            ));
            assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
            task.await;
        });
    }
}
