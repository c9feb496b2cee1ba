//! Connected agents and command routing.
//!
//! One live WebSocket per agent (a new connection replaces the old one). Each connection has
//! a reader (the task that called [`Hub::serve_agent`]), a writer fed by a bounded
//! [`Outbox`] (empty, hence nearly free, while the agent is idle; the writer sends what is
//! queued with one flush per batch), and a heartbeat. Commands wait for room in a full queue
//! (bounded by the command timeout); pings and error replies are dropped when it is full (a
//! lost ping counts as missed). Commands get a fresh id and a one-shot waiter keyed by that id; the reader
//! finds the waiter when the response arrives. A waiter ends in exactly one way: the response,
//! the command timeout (`TIMEOUT`), or the connection going away (`AGENT_OFFLINE`, at once).
//!
//! The reader trusts an agent only for its own servers: an event or response that names a
//! server placed on another agent is dropped and counted, and so is a response to another
//! agent's command. Frames that cannot be parsed are answered with an `INVALID_MESSAGE` error
//! response; frames over the per-connection rate are answered with `RATE_LIMITED` and
//! dropped; messages larger than `--max-frame-bytes` close the socket (1009).
//!
//! Locks (`conns`, `waiters`, per-connection state) are held only for a map operation, never
//! across an `.await`.

use async_io::Timer;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{
    Error as WsError, Message as WsMessage, error::CapacityError,
};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt, future};
use parking_lot::{Mutex, RwLock};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::message::{Action, Command, MessageType, Ping, PongData, Response};
use proto::time::{now_rfc3339, unix_now};
use proto::{Decoder, ErrorCode, Message};

use crate::auth::Auth;
use crate::events::Events;
use crate::outbox::{self, Outbox};
use crate::panel_metrics::{Outcome, PanelMetrics};
use crate::ratelimit::TokenBucket;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::tracker::{Token, Tracker};

/// Pings without a pong after which an agent is offline.
pub const MAX_MISSED_PONGS: u32 = 3;
/// Close code for a connection replaced by a newer one of the same agent.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code for an agent that missed [`MAX_MISSED_PONGS`] heartbeats.
pub const CLOSE_HEARTBEAT: u16 = 4001;
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Tunables of the hub (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub heartbeat: Duration,
    pub command_timeout: Duration,
    pub max_frame: usize,
    pub agent_rate: f64,
    pub agent_burst: f64,
    pub queue: usize,
}

/// Why a command produced no response from the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("agent {0} is not connected")]
    Offline(String),
    #[error("agent {agent} did not answer {action} within {secs} s")]
    Timeout {
        agent: String,
        action: String,
        secs: u64,
    },
    #[error("agent {agent} sent an unreadable response: {reason}")]
    BadResponse { agent: String, reason: String },
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Offline(_) => ErrorCode::AgentOffline,
            HubError::Timeout { .. } => ErrorCode::Timeout,
            HubError::BadResponse { .. } => ErrorCode::InvalidMessage,
        }
    }

    /// HTTP status on the operator API (an unreadable agent answer is a bad gateway).
    pub fn http_status(&self) -> u16 {
        match self {
            HubError::BadResponse { .. } => 502,
            other => other.code().http_status(),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            HubError::Offline(_) => Outcome::Offline,
            HubError::Timeout { .. } => Outcome::Timeout,
            HubError::BadResponse { .. } => Outcome::BadResponse,
        }
    }
}

type Reply = Result<Response<'static>, HubError>;

struct Waiter {
    agent_id: String,
    conn_id: u64,
    tx: async_channel::Sender<Reply>,
}

/// One live agent connection.
struct Conn {
    id: u64,
    agent_id: String,
    family: String,
    queue: Outbox<WsMessage>,
    kill: Shutdown,
    close_frame: Mutex<Option<CloseFrame>>,
    missed: AtomicU32,
    last_seen: AtomicU64,
    connected_at: u64,
    pong: Mutex<Option<PongData<'static>>>,
}

impl Conn {
    /// Ends the connection with `code`/`reason` (the first reason wins).
    fn kick(&self, code: CloseCode, reason: &str) {
        {
            let mut f = self.close_frame.lock();
            if f.is_none() && !self.kill.is_triggered() {
                *f = Some(CloseFrame {
                    code,
                    reason: reason.to_owned().into(),
                });
            }
        }
        self.kill.trigger();
    }

    fn touch(&self) {
        self.last_seen.store(unix_now(), Ordering::Relaxed);
    }

    /// Queues a frame if there is room; used for frames that may be lost (error replies,
    /// pings — a ping lost to a full queue simply counts as missed).
    fn try_queue(&self, frame: WsMessage) {
        let _ = self.queue.try_push(frame);
    }
}

/// What the operator API shows about a connected agent.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAgent {
    pub connected_at: u64,
    pub last_seen: u64,
    pub pong: Option<PongData<'static>>,
}

/// The registry of connected agents and in-flight commands.
pub struct Hub {
    conns: RwLock<HashMap<String, Arc<Conn>>>,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// When each agent that is no longer connected was last heard from.
    seen: Mutex<HashMap<String, u64>>,
    /// Last-seen times of ended connections not yet committed to the store.
    unsaved: Mutex<HashMap<String, u64>>,
    /// One store write of last-seen times at a time; the writer takes everything pending,
    /// so connections that end together share a commit.
    saving: smol::lock::Mutex<()>,
    next_conn: AtomicU64,
    next_id: AtomicU64,
    /// Random per process, so command ids never repeat across restarts.
    prefix: String,
    settings: HubSettings,
    store: Arc<Store>,
    auth: Arc<Auth>,
    events: Arc<Events>,
    metrics: Arc<PanelMetrics>,
    tracker: Tracker,
}

/// Removes a waiter when the command future ends (answered, timed out or dropped).
struct WaiterGuard<'a> {
    hub: &'a Hub,
    id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.hub.waiters.lock().remove(self.id);
    }
}

thread_local! {
    /// The decoder of this executor thread. Decoding is synchronous (`on_frame` never waits),
    /// so one decoder per thread serves every connection: its buffers (about 2.5 KiB, and as
    /// large as the biggest frame seen) are not paid again per idle agent.
    static DECODER: RefCell<Option<Decoder>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's decoder for frames of at most `max_frame` bytes.
fn with_decoder<R>(max_frame: usize, f: impl FnOnce(&mut Decoder) -> R) -> R {
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|d| d.max_frame() != max_frame) {
            *slot = Some(Decoder::new(max_frame));
        }
        f(slot.as_mut().expect("set above"))
    })
}

fn text(frame: Vec<u8>) -> WsMessage {
    // Our encoder writes JSON, which is always UTF-8.
    WsMessage::Text(
        String::from_utf8(frame)
            .expect("encoded JSON is UTF-8")
            .into(),
    )
}

impl Hub {
    pub fn new(
        settings: HubSettings,
        store: Arc<Store>,
        auth: Arc<Auth>,
        events: Arc<Events>,
        metrics: Arc<PanelMetrics>,
    ) -> Arc<Hub> {
        let prefix: String = proto::jwt::random_id().chars().take(8).collect();
        Arc::new(Hub {
            conns: RwLock::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            saving: smol::lock::Mutex::new(()),
            next_conn: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            prefix,
            settings,
            store,
            auth,
            events,
            metrics,
            tracker: Tracker::new(),
        })
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        self.conns.read().contains_key(agent_id)
    }

    pub fn live(&self, agent_id: &str) -> Option<LiveAgent> {
        let c = self.conns.read().get(agent_id).cloned()?;
        let pong = c.pong.lock().clone();
        Some(LiveAgent {
            connected_at: c.connected_at,
            last_seen: c.last_seen.load(Ordering::Relaxed),
            pong,
        })
    }

    /// When the agent was last heard from: the live value while connected, else the end of
    /// its last connection (kept across panel restarts by the store); `None` if never.
    pub fn last_seen(&self, agent_id: &str) -> Option<u64> {
        if let Some(c) = self.conns.read().get(agent_id) {
            return Some(c.last_seen.load(Ordering::Relaxed));
        }
        if let Some(t) = self.seen.lock().get(agent_id).copied() {
            return Some(t);
        }
        self.store.last_seen(agent_id)
    }

    /// Commits the last-seen times of ended connections. Called once per ended connection
    /// (never per pong), off the executor; whoever gets the turn writes everything pending.
    async fn save_last_seen(&self) {
        let _turn = self.saving.lock().await;
        let batch: Vec<(String, u64)> = self.unsaved.lock().drain().collect();
        if batch.is_empty() {
            return;
        }
        let store = self.store.clone();
        let n = batch.len();
        if let Err(e) = smol::unblock(move || store.record_last_seen(&batch)).await {
            log::warn!("cannot record when {n} agent(s) were last seen: {e}");
        }
    }

    pub fn online_count(&self) -> usize {
        self.conns.read().len()
    }

    fn update_online(&self) {
        let n = self.conns.read().len();
        self.metrics.agents_online.set(n as i64);
    }

    /// Closes an agent's live socket, if any (e.g. its token family was revoked).
    pub fn kick(&self, agent_id: &str, code: u16, reason: &str) {
        if let Some(c) = self.conns.read().get(agent_id) {
            c.kick(CloseCode::from(code), reason);
        }
    }

    /// Shutdown: closes every agent socket with 1001 and waits (bounded) for their tasks.
    pub async fn close_all(&self, grace: Duration) {
        for c in self.conns.read().values() {
            c.kick(CloseCode::Away, "panel shutting down");
        }
        future::or(self.tracker.idle(), async {
            Timer::after(grace).await;
        })
        .await;
    }

    /// Sends a command to `agent_id` and waits for its response. A response with
    /// `success: false` is still `Ok`: it is the agent's answer, passed through by the API.
    pub async fn command(
        &self,
        agent_id: &str,
        server_id: Option<&str>,
        action: Action<'static>,
    ) -> Result<Response<'static>, HubError> {
        let started = Instant::now();
        let name = action.known_name();
        let action_str = action.name().to_owned();
        let result = self
            .command_inner(agent_id, server_id, action, &action_str)
            .await;
        if let Some(name) = name {
            let outcome = match &result {
                Ok(r) if r.success => Outcome::Ok,
                Ok(_) => Outcome::AgentError,
                Err(e) => e.outcome(),
            };
            self.metrics
                .command_done(name, outcome, started.elapsed().as_secs_f64());
        }
        result
    }

    async fn command_inner(
        &self,
        agent_id: &str,
        server_id: Option<&str>,
        action: Action<'static>,
        action_str: &str,
    ) -> Result<Response<'static>, HubError> {
        let Some(conn) = self.conns.read().get(agent_id).cloned() else {
            return Err(HubError::Offline(agent_id.to_owned()));
        };
        let id = format!(
            "cmd_{}_{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let frame = text(proto::encode(&Message::Command(Command {
            id: Cow::Borrowed(&id),
            timestamp: now_rfc3339().into(),
            agent_id: Some(Cow::Borrowed(agent_id)),
            server_id: server_id.map(Cow::Borrowed),
            action,
        })));
        let (tx, rx) = async_channel::bounded(1);
        self.waiters.lock().insert(
            id.clone(),
            Waiter {
                agent_id: agent_id.to_owned(),
                conn_id: conn.id,
                tx,
            },
        );
        let _guard = WaiterGuard { hub: self, id: &id };
        // The connection may have gone between the lookup and the insert: its cleanup
        // would then have missed this waiter.
        if conn.kill.is_triggered() {
            return Err(HubError::Offline(agent_id.to_owned()));
        }
        let exchange = async {
            if conn.queue.push(frame).await.is_err() {
                return Err(HubError::Offline(agent_id.to_owned()));
            }
            drop(conn);
            match rx.recv().await {
                Ok(reply) => reply,
                // The waiter was removed because the connection closed.
                Err(_) => Err(HubError::Offline(agent_id.to_owned())),
            }
        };
        let timeout = self.settings.command_timeout;
        future::or(exchange, async {
            Timer::after(timeout).await;
            Err(HubError::Timeout {
                agent: agent_id.to_owned(),
                action: action_str.to_owned(),
                secs: timeout.as_secs(),
            })
        })
        .await
    }

    /// Reserves a place for an agent socket before its upgrade is answered, so that shutdown
    /// waits for it (and closes it with 1001) even if its task has not run yet. `None` once
    /// shutdown has begun.
    pub fn admit(&self) -> Option<Token> {
        self.tracker.token()
    }

    /// [`admit`](Self::admit), then [`serve_agent_admitted`](Self::serve_agent_admitted).
    pub async fn serve_agent<S>(
        self: Arc<Self>,
        ws: WebSocketStream<S>,
        agent_id: String,
        family: String,
        shutdown: Shutdown,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admitted = self.admit();
        self.serve_agent_admitted(admitted, ws, agent_id, family, shutdown)
            .await
    }

    /// Runs one authenticated agent connection until it closes. `family` is the token family
    /// the agent authenticated with (checked again at every heartbeat); `admitted` is what
    /// [`admit`](Self::admit) returned before the upgrade.
    pub async fn serve_agent_admitted<S>(
        self: Arc<Self>,
        admitted: Option<Token>,
        mut ws: WebSocketStream<S>,
        agent_id: String,
        family: String,
        shutdown: Shutdown,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(_token) = admitted else {
            // Shutdown began before this socket was admitted: say so and leave.
            let away = CloseFrame {
                code: CloseCode::Away,
                reason: "panel shutting down".into(),
            };
            future::or(
                async {
                    let _ = ws.close(Some(away)).await;
                },
                async {
                    Timer::after(CLOSE_GRACE).await;
                },
            )
            .await;
            return;
        };
        let now = unix_now();
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            agent_id: agent_id.clone(),
            family,
            queue: Outbox::new(self.settings.queue),
            kill: Shutdown::new(),
            close_frame: Mutex::new(None),
            missed: AtomicU32::new(0),
            last_seen: AtomicU64::new(now),
            connected_at: now,
            pong: Mutex::new(None),
        });
        let old = self.conns.write().insert(agent_id.clone(), conn.clone());
        if let Some(old) = old {
            self.metrics.agents_replaced.inc();
            old.kick(
                CloseCode::from(CLOSE_REPLACED),
                "replaced by a new connection",
            );
        }
        self.update_online();
        log::info!("agent {agent_id} connected");

        let (sink, stream) = ws.split();
        let work = async {
            future::or(
                future::or(self.read_loop(&conn, stream), self.heartbeat(&conn)),
                async {
                    shutdown.wait().await;
                    conn.kick(CloseCode::Away, "panel shutting down");
                },
            )
            .await;
            self.detach(&conn);
            conn.kill.trigger();
        };
        future::zip(work, self.write_loop(&conn, sink)).await;
        log::info!("agent {agent_id} disconnected");
        // Still holding the admission token: shutdown waits for this write.
        self.save_last_seen().await;
    }

    /// Forgets a connection: offline at once, its pending commands fail with AGENT_OFFLINE.
    fn detach(&self, conn: &Conn) {
        {
            let mut conns = self.conns.write();
            if conns.get(&conn.agent_id).is_some_and(|c| c.id == conn.id) {
                conns.remove(&conn.agent_id);
            }
        }
        self.update_online();
        // Closing the queue first makes any command still trying to enqueue fail at once;
        // a waiter inserted after the sweep below therefore can only fail its send.
        conn.queue.close();
        let last_seen = conn.last_seen.load(Ordering::Relaxed);
        self.seen.lock().insert(conn.agent_id.clone(), last_seen);
        {
            let mut unsaved = self.unsaved.lock();
            let slot = unsaved.entry(conn.agent_id.clone()).or_insert(last_seen);
            *slot = (*slot).max(last_seen);
        }
        // Dropping the senders wakes every waiter of this connection with "closed".
        self.waiters.lock().retain(|_, w| w.conn_id != conn.id);
    }

    async fn write_loop<S>(&self, conn: &Conn, mut sink: async_tungstenite::WebSocketSender<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let next = future::or(conn.queue.pop(), async {
                conn.kill.wait().await;
                None
            })
            .await;
            let Some(frame) = next else { break };
            let sent = future::or(
                async { Some(outbox::write_batch(&mut sink, &conn.queue, frame).await) },
                async {
                    conn.kill.wait().await;
                    None
                },
            )
            .await;
            match sent {
                Some(Ok(batch)) => {
                    self.metrics.frames_out.add(batch.frames);
                    self.metrics.bytes_out.add(batch.bytes);
                }
                Some(Err(_)) => {
                    conn.kill.trigger();
                    return;
                }
                None => break,
            }
        }
        let frame = conn.close_frame.lock().take();
        future::or(
            async {
                let _ = sink.close(frame).await;
            },
            async {
                Timer::after(CLOSE_GRACE).await;
            },
        )
        .await;
    }

    async fn heartbeat(&self, conn: &Conn) {
        let mut n: u64 = 0;
        loop {
            Timer::after(self.settings.heartbeat).await;
            if !self.auth.family_active(&conn.agent_id, &conn.family) {
                conn.kick(CloseCode::Policy, "token revoked");
                return;
            }
            if conn.missed.load(Ordering::Relaxed) >= MAX_MISSED_PONGS {
                self.metrics.heartbeat_timeouts.inc();
                log::warn!(
                    "agent {} missed {MAX_MISSED_PONGS} heartbeats: offline",
                    conn.agent_id
                );
                conn.kick(CloseCode::from(CLOSE_HEARTBEAT), "heartbeat timeout");
                return;
            }
            conn.missed.fetch_add(1, Ordering::Relaxed);
            n += 1;
            let id = format!("hb_{n}");
            conn.try_queue(text(proto::encode(&Message::Ping(Ping {
                id: Cow::Borrowed(&id),
                timestamp: now_rfc3339().into(),
            }))));
        }
    }

    async fn read_loop<S>(&self, conn: &Conn, mut stream: async_tungstenite::WebSocketReceiver<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut bucket = TokenBucket::new(self.settings.agent_rate, self.settings.agent_burst);
        loop {
            let next = future::or(async { Some(stream.next().await) }, async {
                conn.kill.wait().await;
                None
            })
            .await;
            let msg = match next {
                None | Some(None) => return,
                Some(Some(Ok(m))) => m,
                Some(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                    size,
                    max_size,
                })))) => {
                    self.metrics.frames_oversize.inc();
                    conn.kick(
                        CloseCode::Size,
                        &format!("message of {size} bytes exceeds the {max_size}-byte limit"),
                    );
                    return;
                }
                Some(Some(Err(e))) => {
                    log::debug!("agent {} socket error: {e}", conn.agent_id);
                    return;
                }
            };
            match msg {
                WsMessage::Text(_) | WsMessage::Binary(_) => {
                    with_decoder(self.settings.max_frame, |decoder| {
                        self.on_frame(conn, decoder, &mut bucket, &msg)
                    })
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => conn.touch(),
                WsMessage::Close(_) => return,
                WsMessage::Frame(_) => {}
            }
        }
    }

    fn reply_error(&self, conn: &Conn, id: Option<&str>, code: ErrorCode, message: String) {
        let resp = Response::err(
            Cow::Borrowed(id.unwrap_or("invalid")),
            now_rfc3339().into(),
            code,
            message,
        );
        conn.try_queue(text(proto::encode(&Message::Response(resp))));
    }

    /// Handles one data frame from an agent. Synchronous: nothing here waits.
    fn on_frame(
        &self,
        conn: &Conn,
        decoder: &mut Decoder,
        bucket: &mut TokenBucket,
        msg: &WsMessage,
    ) {
        let bytes: &[u8] = match msg {
            WsMessage::Text(t) => t.as_bytes(),
            WsMessage::Binary(b) => b,
            _ => return,
        };
        self.metrics.frames_in.inc();
        self.metrics.bytes_in.add(bytes.len() as u64);
        conn.touch();
        if !bucket.try_take(Instant::now()) {
            self.metrics.rate_limited_agent.inc();
            self.reply_error(
                conn,
                None,
                ErrorCode::RateLimited,
                format!(
                    "more than {} frames/s; frame dropped",
                    self.settings.agent_rate
                ),
            );
            return;
        }
        // Events (the hot path) and refused kinds are handled on the borrowed envelope;
        // only responses and pongs, which decode the frame again, take their id out.
        let env = match decoder.envelope(bytes) {
            Ok(env) => env,
            Err(e) => {
                self.metrics.frames_invalid.inc();
                self.reply_error(conn, None, e.code(), e.to_string());
                return;
            }
        };
        if env.agent_id.as_deref().is_some_and(|a| a != conn.agent_id) {
            self.metrics.frames_foreign.inc();
            return;
        }
        if matches!(env.kind, MessageType::Event | MessageType::Response)
            && env
                .server_id
                .as_deref()
                .is_some_and(|s| !self.store.owns(&conn.agent_id, s))
        {
            self.metrics.frames_foreign.inc();
            return;
        }
        match env.kind {
            MessageType::Event => {
                self.events
                    .publish(&conn.agent_id, env.server_id.as_deref(), msg);
            }
            MessageType::Response => {
                let id = env.id.map(Cow::into_owned);
                self.on_response(conn, decoder, bytes, id);
            }
            MessageType::Pong => {
                let id = env.id.map(Cow::into_owned);
                self.on_pong(conn, decoder, bytes, id);
            }
            kind @ (MessageType::Command | MessageType::Ping) => {
                self.metrics.frames_invalid.inc();
                self.reply_error(
                    conn,
                    env.id.as_deref(),
                    ErrorCode::InvalidMessage,
                    format!("agents may not send `{}` messages", kind.as_str()),
                );
            }
        }
    }

    /// A response: wakes the command waiting for its id (if it is this agent's).
    fn on_response(&self, conn: &Conn, decoder: &mut Decoder, bytes: &[u8], id: Option<String>) {
        let Some(id) = id else {
            self.metrics.frames_invalid.inc();
            self.reply_error(
                conn,
                None,
                ErrorCode::InvalidMessage,
                "response without id".into(),
            );
            return;
        };
        let waiter = {
            let mut waiters = self.waiters.lock();
            match waiters.get(&id) {
                Some(w) if w.agent_id == conn.agent_id => waiters.remove(&id),
                Some(_) => {
                    self.metrics.frames_foreign.inc();
                    return;
                }
                None => None,
            }
        };
        let Some(waiter) = waiter else {
            self.metrics.responses_unmatched.inc();
            return;
        };
        let reply = match decoder.message(bytes) {
            Ok(Message::Response(r)) => Ok(r.into_owned()),
            Ok(_) => unreachable!("the envelope said response"),
            Err(e) => {
                self.metrics.frames_invalid.inc();
                Err(HubError::BadResponse {
                    agent: conn.agent_id.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let _ = waiter.tx.try_send(reply);
    }

    /// A pong: keeps its data and resets the missed-heartbeat count.
    fn on_pong(&self, conn: &Conn, decoder: &mut Decoder, bytes: &[u8], id: Option<String>) {
        match decoder.message(bytes) {
            Ok(Message::Pong(p)) => {
                *conn.pong.lock() = Some(p.data.into_owned());
                conn.missed.store(0, Ordering::Relaxed);
            }
            Ok(_) => unreachable!("the envelope said pong"),
            Err(e) => {
                self.metrics.frames_invalid.inc();
                self.reply_error(conn, id.as_deref(), e.code(), e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{agent, server, temp_dir};
    use async_io::Async;
    use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use std::net::{TcpListener, TcpStream};

    struct Fixture {
        hub: Arc<Hub>,
        store: Arc<Store>,
        events: Arc<Events>,
        metrics: Arc<PanelMetrics>,
        shutdown: Shutdown,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }

    fn fixture(tag: &str, heartbeat: Duration, timeout: Duration) -> Fixture {
        fixture_with(
            tag,
            HubSettings {
                heartbeat,
                command_timeout: timeout,
                max_frame: 4096,
                agent_rate: 1000.0,
                agent_burst: 1000.0,
                queue: 16,
            },
        )
    }

    fn fixture_with(tag: &str, settings: HubSettings) -> Fixture {
        let dir = temp_dir(tag);
        let store = Arc::new(Store::open(&dir).unwrap());
        let (auth, _) = Auth::init(&dir, store.clone(), Some("t".into())).unwrap();
        for id in ["a1", "a2"] {
            store.put_agent(&agent(id, "8g")).unwrap();
        }
        store.put_server(&server("s1", "a1", 100)).unwrap();
        store.put_server(&server("s2", "a2", 100)).unwrap();
        let metrics = Arc::new(PanelMetrics::default());
        let events = Events::new(16, metrics.clone());
        let hub = Hub::new(
            settings,
            store.clone(),
            Arc::new(auth),
            events.clone(),
            metrics.clone(),
        );
        Fixture {
            hub,
            store,
            events,
            metrics,
            shutdown: Shutdown::new(),
            dir,
        }
    }

    type Ws = WebSocketStream<Async<TcpStream>>;

    /// Connects a fake agent `agent_id` (family "fam1", as `store::tests::agent` sets) over a
    /// loopback socket and returns its end.
    async fn connect(f: &Fixture, agent_id: &str) -> Ws {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let client = Async::<TcpStream>::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(4096))
            .max_frame_size(Some(4096));
        let server_ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(cfg)).await;
        let client_ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        smol::spawn(f.hub.clone().serve_agent(
            server_ws,
            agent_id.to_owned(),
            "fam1".to_owned(),
            f.shutdown.clone(),
        ))
        .detach();
        while !f.hub.is_online(agent_id) {
            Timer::after(Duration::from_millis(5)).await;
        }
        client_ws
    }

    async fn next_json(ws: &mut Ws) -> serde_json::Value {
        loop {
            match ws.next().await.expect("socket open").expect("frame") {
                WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                WsMessage::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Close(c))) => return c,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    fn response(id: &str, server: &str, ok: bool) -> WsMessage {
        let body = if ok {
            format!(
                r#"{{"id":"{id}","type":"response","timestamp":"2025-01-23T10:01:01Z","success":true,"data":{{"serverId":"{server}","status":"starting"}}}}"#
            )
        } else {
            format!(
                r#"{{"id":"{id}","type":"response","timestamp":"2025-01-23T10:01:01Z","success":false,"error":{{"code":"CONTAINER_NOT_FOUND","message":"gone"}}}}"#
            )
        };
        WsMessage::Text(body.into())
    }

    #[test]
    fn command_is_answered_by_id() {
        let f = fixture(
            "hub-cmd",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            let hub = f.hub.clone();
            let call =
                smol::spawn(
                    async move { hub.command("a1", Some("s1"), Action::StartServer).await },
                );
            let cmd = next_json(&mut agent).await;
            assert_eq!(cmd["type"], "command");
            assert_eq!(cmd["action"], "start_server");
            assert_eq!(cmd["serverId"], "s1");
            let id = cmd["id"].as_str().unwrap().to_owned();
            // A response to an unknown id first: ignored and counted.
            agent
                .send(response("someone-else", "s1", true))
                .await
                .unwrap();
            agent.send(response(&id, "s1", true)).await.unwrap();
            let r = call.await.unwrap();
            assert!(r.success);
            assert_eq!(r.id, id);
            assert_eq!(r.data.unwrap()["status"], "starting");
            assert_eq!(f.metrics.responses_unmatched.get(), 1);
            assert_eq!(
                f.metrics
                    .commands(proto::ActionName::StartServer, Outcome::Ok),
                1
            );

            // An agent error is still an answer.
            let hub = f.hub.clone();
            let call =
                smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
            let cmd = next_json(&mut agent).await;
            agent
                .send(response(cmd["id"].as_str().unwrap(), "s1", false))
                .await
                .unwrap();
            let r = call.await.unwrap();
            assert!(!r.success);
            assert_eq!(r.error.unwrap().code, "CONTAINER_NOT_FOUND");
        });
    }

    #[test]
    fn unanswered_command_times_out_and_late_answer_is_dropped() {
        let f = fixture(
            "hub-timeout",
            Duration::from_secs(3600),
            Duration::from_millis(200),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            let err = f
                .hub
                .command("a1", Some("s1"), Action::StartServer)
                .await
                .unwrap_err();
            assert!(matches!(err, HubError::Timeout { .. }), "{err:?}");
            assert_eq!(err.code(), ErrorCode::Timeout);
            let cmd = next_json(&mut agent).await;
            agent
                .send(response(cmd["id"].as_str().unwrap(), "s1", true))
                .await
                .unwrap();
            // Prove the late answer was processed: a following pong round-trip.
            while f.metrics.responses_unmatched.get() == 0 {
                Timer::after(Duration::from_millis(5)).await;
            }
            assert!(f.hub.waiters.lock().is_empty());
        });
    }

    #[test]
    fn offline_agent_fails_at_once_and_disconnect_fails_pending() {
        let f = fixture(
            "hub-offline",
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        smol::block_on(async {
            let err = f
                .hub
                .command("a1", None, Action::GetStatus)
                .await
                .unwrap_err();
            assert_eq!(err, HubError::Offline("a1".into()));
            assert_eq!(err.http_status(), 503);

            let mut agent = connect(&f, "a1").await;
            let hub = f.hub.clone();
            let call =
                smol::spawn(
                    async move { hub.command("a1", Some("s1"), Action::StartServer).await },
                );
            let _cmd = next_json(&mut agent).await;
            agent.close(None).await.ok();
            drop(agent);
            // The command timeout is an hour: only the disconnect can end this.
            let err = call.await.unwrap_err();
            assert_eq!(err, HubError::Offline("a1".into()));
            assert!(!f.hub.is_online("a1"));
        });
    }

    #[test]
    fn agents_are_trusted_only_for_their_own_servers() {
        let f = fixture(
            "hub-trust",
            Duration::from_secs(3600),
            Duration::from_millis(300),
        );
        smol::block_on(async {
            let sub = f.events.subscribe(crate::events::Filter::default());
            let mut a1 = connect(&f, "a1").await;
            let mut a2 = connect(&f, "a2").await;
            // a2 answers a command sent to a1: dropped; the command times out.
            let hub = f.hub.clone();
            let call =
                smol::spawn(
                    async move { hub.command("a1", Some("s1"), Action::StartServer).await },
                );
            let cmd = next_json(&mut a1).await;
            a2.send(response(cmd["id"].as_str().unwrap(), "s2", true))
                .await
                .unwrap();
            assert!(matches!(call.await, Err(HubError::Timeout { .. })));
            // a1 reports an event about a2's server: dropped and counted.
            let foreign = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s2","logLevel":"INFO","message":"x"}}"#;
            let own = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s1","logLevel":"INFO","message":"y"}}"#;
            a1.send(WsMessage::Text(foreign.into())).await.unwrap();
            a1.send(WsMessage::Text(own.into())).await.unwrap();
            let got = sub.queue.pop().await.unwrap();
            // The one forwarded frame is the agent's own event, byte for byte.
            assert_eq!(got, WsMessage::Text(own.into()));
            assert!(f.metrics.frames_foreign.get() >= 2);
            assert!(sub.queue.is_empty());
        });
    }

    #[test]
    fn garbage_is_answered_with_invalid_message() {
        let f = fixture(
            "hub-garbage",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            agent
                .send(WsMessage::Text("{not json".into()))
                .await
                .unwrap();
            let reply = next_json(&mut agent).await;
            assert_eq!(reply["type"], "response");
            assert_eq!(reply["success"], false);
            assert_eq!(reply["error"]["code"], "INVALID_MESSAGE");
            agent
                .send(WsMessage::Text(
                    r#"{"id":"x","type":"command","timestamp":"t","action":"start_server"}"#.into(),
                ))
                .await
                .unwrap();
            let reply = next_json(&mut agent).await;
            assert_eq!(reply["id"], "x");
            assert_eq!(reply["error"]["code"], "INVALID_MESSAGE");
            assert_eq!(f.metrics.frames_invalid.get(), 2);
            // Still connected and serving.
            assert!(f.hub.is_online("a1"));
        });
    }

    #[test]
    fn frames_over_the_rate_are_refused_with_rate_limited() {
        let f = fixture_with(
            "hub-rate",
            HubSettings {
                heartbeat: Duration::from_secs(3600),
                command_timeout: Duration::from_secs(30),
                max_frame: 4096,
                // Practically no refill during the test: the burst is all there is.
                agent_rate: 0.001,
                agent_burst: 2.0,
                queue: 16,
            },
        );
        smol::block_on(async {
            let sub = f.events.subscribe(crate::events::Filter::default());
            let mut agent = connect(&f, "a1").await;
            let ev = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s1","logLevel":"INFO","message":"y"}}"#;
            for _ in 0..3 {
                agent.send(WsMessage::Text(ev.into())).await.unwrap();
            }
            let reply = next_json(&mut agent).await;
            assert_eq!(reply["error"]["code"], "RATE_LIMITED", "{reply}");
            assert_eq!(f.metrics.rate_limited_agent.get(), 1);
            // The first two went through, the third did not.
            assert_eq!(sub.queue.len(), 2);
        });
    }

    #[test]
    fn oversize_message_closes_with_1009() {
        let f = fixture(
            "hub-size",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            let big = format!(r#"{{"type":"event","pad":"{}"}}"#, "x".repeat(8000));
            agent.send(WsMessage::Text(big.into())).await.unwrap();
            let close = next_close(&mut agent).await.expect("close frame");
            assert_eq!(close.code, CloseCode::Size);
            assert_eq!(f.metrics.frames_oversize.get(), 1);
        });
    }

    #[test]
    fn missed_pongs_make_the_agent_offline() {
        let f = fixture(
            "hub-heartbeat",
            Duration::from_millis(30),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            // Answer the first ping with a pong carrying data; ignore the rest.
            let ping = next_json(&mut agent).await;
            assert_eq!(ping["type"], "ping");
            let pong = format!(
                r#"{{"id":"{}","type":"pong","timestamp":"2025-01-23T10:09:01Z","data":{{"agentStatus":"healthy","activeServers":3,"systemLoad":{{"cpu":25.5,"memory":65.2,"disk":40.1}}}}}}"#,
                ping["id"].as_str().unwrap()
            );
            agent.send(WsMessage::Text(pong.into())).await.unwrap();
            loop {
                let live = f.hub.live("a1").expect("still online");
                if let Some(p) = live.pong {
                    assert_eq!(p.active_servers, 3);
                    break;
                }
                Timer::after(Duration::from_millis(5)).await;
            }
            let close = next_close(&mut agent).await.expect("close frame");
            assert_eq!(close.code, CloseCode::from(CLOSE_HEARTBEAT));
            assert!(!f.hub.is_online("a1"));
            assert_eq!(f.metrics.heartbeat_timeouts.get(), 1);
            assert_eq!(f.metrics.agents_online.get(), 0);
        });
    }

    #[test]
    fn new_connection_replaces_the_old_one() {
        let f = fixture(
            "hub-replace",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut first = connect(&f, "a1").await;
            let before = f.hub.conns.read().get("a1").unwrap().id;
            let mut second = connect_again(&f, "a1", before).await;
            let close = next_close(&mut first).await.expect("close frame");
            assert_eq!(close.code, CloseCode::from(CLOSE_REPLACED));
            assert!(f.hub.is_online("a1"));
            assert_eq!(f.metrics.agents_online.get(), 1);
            // Commands go to the new connection.
            let hub = f.hub.clone();
            let call =
                smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
            let cmd = next_json(&mut second).await;
            second
                .send(response(cmd["id"].as_str().unwrap(), "s1", true))
                .await
                .unwrap();
            assert!(call.await.unwrap().success);
        });
    }

    async fn connect_again(f: &Fixture, agent_id: &str, old: u64) -> Ws {
        let ws = connect(f, agent_id).await;
        while f.hub.conns.read().get(agent_id).unwrap().id == old {
            Timer::after(Duration::from_millis(5)).await;
        }
        ws
    }

    #[test]
    fn revoked_family_is_disconnected_at_the_next_heartbeat() {
        let f = fixture(
            "hub-revoke",
            Duration::from_millis(30),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            f.store
                .rotate_refresh("a1", "fam1", "not-current", "x", 1)
                .unwrap();
            let close = next_close(&mut agent).await.expect("close frame");
            assert_eq!(close.code, CloseCode::Policy);
            assert!(!f.hub.is_online("a1"));
        });
    }

    #[test]
    fn shutdown_closes_agents_with_going_away() {
        let f = fixture(
            "hub-shutdown",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            let mut agent = connect(&f, "a1").await;
            f.shutdown.trigger();
            let close = next_close(&mut agent).await.expect("close frame");
            assert_eq!(close.code, CloseCode::Away);
            f.hub.close_all(Duration::from_secs(5)).await;
            assert_eq!(f.hub.online_count(), 0);
        });
    }

    #[test]
    fn shutdown_waits_for_an_admitted_agent_whose_task_has_not_started() {
        let f = fixture(
            "hub-admit",
            Duration::from_secs(3600),
            Duration::from_secs(30),
        );
        smol::block_on(async {
            // The upgrade handler admits the socket; then shutdown begins before its task runs.
            let admitted = f.hub.admit();
            assert!(admitted.is_some());
            f.shutdown.trigger();
            let mut idle = Box::pin(f.hub.tracker.idle());
            assert!(future::poll_once(&mut idle).await.is_none(), "must wait");
            assert!(f.hub.admit().is_none(), "no admission once shutdown began");
            let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let addr = listener.get_ref().local_addr().unwrap();
            let client = Async::<TcpStream>::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let server_ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
            let mut agent = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let task = smol::spawn(f.hub.clone().serve_agent_admitted(
                admitted,
                server_ws,
                "a1".to_owned(),
                "fam1".to_owned(),
                f.shutdown.clone(),
            ));
            let close = next_close(&mut agent).await.expect("close frame");
            assert_eq!(close.code, CloseCode::Away);
            task.await;
            idle.await;
            assert_eq!(f.hub.online_count(), 0);
        });
    }
}
