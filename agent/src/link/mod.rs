//! The one WebSocket connection to the panel.
//!
//! - Connect: TLS (rustls, the configured CA), then the upgrade with `Authorization: Bearer`
//!   and `X-Agent-ID`. A 401 triggers one token refresh and an immediate retry; after that,
//!   the normal backoff.
//! - Reconnect with exponential backoff and full jitter (0.5 s start, 30 s cap, 0.25 s floor;
//!   see [`backoff`]); the backoff resets only after a connection that stayed up 30 s.
//! - Per connection: one reader (this task) and one writer task. Commands run concurrently,
//!   each in its own task, at most [`MAX_IN_FLIGHT`] at once: beyond that the reader stops
//!   reading, which is backpressure all the way to the panel. Responses and pongs reach the
//!   writer through a bounded queue and take priority over events, which come from the
//!   [`outbox::Outbox`] (logs may be evicted while disconnected, status changes never).
//! - A connection on which nothing arrives for [`IDLE_TIMEOUT`] (the panel pings every 15 s
//!   by default) is considered dead and replaced.

pub mod backoff;
pub mod creds;
pub mod frame;
pub mod outbox;
pub mod pace;

use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use backoff::Backoff;
use creds::Credentials;
use ctrl_io::{ClientError, TlsConn, Ws, WsOptions};
use frame::Incoming;
use futures_lite::StreamExt;
use outbox::Outbox;
use pace::Pace;
use proto::codec::Decoder;
use proto::{Command, Message, Pong, PongData, Response};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commands executing at once per connection.
pub const MAX_IN_FLIGHT: usize = 64;
/// Responses and pongs waiting for the writer.
const CONTROL_QUEUE: usize = 256;
/// Silence after which the connection is presumed dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// TCP + TLS + upgrade must complete within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that lasted this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Largest frame read from the panel (the decoder answers `PAYLOAD_TOO_LARGE` above 1 MiB).
const MAX_WS_MESSAGE: usize = 16 << 20;

/// What the link needs from the rest of the agent.
pub trait Dispatch: Send + Sync + 'static {
    /// Executes one command and answers it (errors are responses too).
    fn handle(&self, cmd: Command<'static>) -> impl Future<Output = Response<'static>> + Send;
    /// The heartbeat answer's data; must be cheap (no I/O).
    fn pong(&self) -> PongData<'static>;
    /// The largest frame the agent may send: the panel closes the connection on a larger
    /// one, failing every command in flight.
    fn max_frame(&self) -> usize {
        proto::codec::DEFAULT_MAX_FRAME
    }
    /// Frames per second and burst the writer sends at most (see [`pace`]); below the
    /// panel's per-agent budget.
    fn frame_pace(&self) -> (f64, f64) {
        (
            crate::node::DEFAULT_FRAME_RATE,
            crate::node::DEFAULT_FRAME_BURST,
        )
    }
    /// The connection to the panel ended (state tied to it, such as uploads, may go).
    fn disconnected(&self) {}
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the panel refused the agent's token (HTTP 401)")]
    Unauthorized,
}

/// The link: owns reconnection, the session tasks and nothing else.
pub struct Link<D: Dispatch> {
    dispatch: Arc<D>,
    outbox: Arc<Outbox>,
    creds: Arc<Credentials>,
    agent_id: String,
    /// The panel's `wss://` URL, checked at start.
    url: String,
}

impl<D: Dispatch> Link<D> {
    pub fn new(
        dispatch: Arc<D>,
        outbox: Arc<Outbox>,
        creds: Arc<Credentials>,
    ) -> Result<Self, ClientError> {
        let cfg = creds.snapshot();
        ctrl_io::Url::parse_as(&cfg.websocket_url, ctrl_io::Scheme::Wss)?;
        Ok(Link {
            dispatch,
            outbox,
            creds,
            agent_id: cfg.id,
            url: cfg.websocket_url,
        })
    }

    /// Connects and serves until `stop` resolves; reconnects forever otherwise.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        futures_lite::future::or(self.serve_forever(), stop).await;
        self.outbox.requeue_in_flight();
    }

    async fn serve_forever(&self) {
        let mut backoff = Backoff::for_link();
        let mut refreshed_for_401 = false;
        loop {
            match self.connect().await {
                Ok(ws) => {
                    log::info!("connected to the panel at {}", self.url);
                    refreshed_for_401 = false;
                    let started = Instant::now();
                    let reason = self.session(ws).await;
                    log::warn!("panel connection lost: {reason}");
                    self.dispatch.disconnected();
                    if started.elapsed() >= HEALTHY_AFTER {
                        backoff.reset();
                    }
                }
                Err(ConnectError::Unauthorized) if !refreshed_for_401 => {
                    refreshed_for_401 = true;
                    log::warn!("the panel refused the token; refreshing it");
                    let seen = self.creds.token();
                    match self.creds.refresh(&seen).await {
                        Ok(()) => continue,
                        Err(e) => log::error!("token refresh failed: {e}"),
                    }
                }
                Err(e) => log::warn!("cannot connect to the panel: {e}"),
            }
            let delay = backoff.next_delay();
            log::info!("reconnecting in {:.1} s", delay.as_secs_f64());
            smol::Timer::after(delay).await;
        }
    }

    /// TLS, then the WebSocket upgrade with the agent's headers, within a deadline.
    pub async fn connect(&self) -> Result<Ws, ConnectError> {
        let options = WsOptions {
            config: ws_config(),
            timeout: CONNECT_TIMEOUT,
        };
        let token = self.creds.token();
        // Boxed: the handshake future is large and only lives during connect.
        let connect = Box::pin(ctrl_io::connect_agent_with(
            &self.url,
            self.creds.tls().clone(),
            &self.agent_id,
            &token,
            options,
        ));
        connect.await.map_err(|e| match e {
            ClientError::Rejected { status: 401, .. } => ConnectError::Unauthorized,
            other => ConnectError::Client(other),
        })
    }

    /// Serves one connection until it fails; returns why it ended.
    pub async fn session(&self, ws: Ws) -> String {
        let (sender, receiver) = ws.split();
        let (control_tx, control_rx) = async_channel::bounded::<Vec<u8>>(CONTROL_QUEUE);
        self.outbox.requeue_in_flight();
        let (rate, burst) = self.dispatch.frame_pace();
        let writer = writer(
            sender,
            control_rx,
            self.outbox.clone(),
            self.dispatch.max_frame(),
            Pace::new(rate, burst),
        );
        let reader = self.reader(receiver, control_tx);
        futures_lite::future::or(reader, writer).await
    }

    async fn reader(
        &self,
        mut receiver: async_tungstenite::WebSocketReceiver<TlsConn>,
        control: async_channel::Sender<Vec<u8>>,
    ) -> String {
        let permits = Arc::new(smol::lock::Semaphore::new(MAX_IN_FLIGHT));
        let mut decoder = Decoder::default();
        loop {
            let next = futures_lite::future::or(async { Some(receiver.next().await) }, async {
                smol::Timer::after(IDLE_TIMEOUT).await;
                None
            })
            .await;
            let frame = match next {
                None => return format!("nothing received for {} s", IDLE_TIMEOUT.as_secs()),
                Some(None) => return "the panel closed the connection".into(),
                Some(Some(Err(e))) => return format!("read error: {e}"),
                Some(Some(Ok(WsMessage::Close(c)))) => {
                    return format!("the panel closed the connection ({c:?})");
                }
                Some(Some(Ok(WsMessage::Text(t)))) => t.as_bytes().to_vec(),
                Some(Some(Ok(WsMessage::Binary(b)))) => b.to_vec(),
                Some(Some(Ok(_))) => continue, // WebSocket-level ping/pong: tungstenite answers
            };
            match frame::classify(&mut decoder, &frame) {
                Incoming::Command(cmd) => {
                    let permit = permits.acquire_arc().await;
                    let dispatch = self.dispatch.clone();
                    let control = control.clone();
                    smol::spawn(async move {
                        let resp = dispatch.handle(*cmd).await;
                        if let Some(bytes) = frame::response_bytes(resp, dispatch.max_frame()) {
                            let _ = control.send(bytes).await;
                        }
                        drop(permit);
                    })
                    .detach();
                }
                Incoming::Ping(id) => {
                    let pong = Message::Pong(Pong {
                        id: Cow::Owned(id),
                        timestamp: Cow::Owned(proto::time::now_rfc3339()),
                        agent_id: Some(Cow::Owned(self.agent_id.clone())),
                        data: self.dispatch.pong(),
                    });
                    if control.send(encode(&pong)).await.is_err() {
                        return "the writer stopped".into();
                    }
                }
                Incoming::Reply(resp) => {
                    if control
                        .send(encode(&Message::Response(*resp)))
                        .await
                        .is_err()
                    {
                        return "the writer stopped".into();
                    }
                }
                Incoming::Ignore(reason) => log::debug!("ignored a frame: {reason}"),
            }
        }
    }
}

/// Memory-lean WebSocket settings: small read buffer, messages written as soon as queued.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    proto::codec::encode_into(msg, &mut out);
    out
}

enum Outgoing {
    Control(Vec<u8>),
    Event(proto::Event<'static>),
    Done,
}

/// The single writer: responses and pongs first, then events in production order, at
/// most at `pace`. An event that would not fit in a frame is dropped (and logged) rather
/// than sent.
async fn writer(
    mut sender: async_tungstenite::WebSocketSender<TlsConn>,
    control: async_channel::Receiver<Vec<u8>>,
    outbox: Arc<Outbox>,
    max_frame: usize,
    mut pace: Pace,
) -> String {
    let mut buf = Vec::with_capacity(1024);
    loop {
        // Before taking the next frame, so what waits meanwhile stays queued (a status
        // change in the outbox, a response in the control queue), in order.
        pace.wait().await;
        let next = futures_lite::future::or(
            async {
                control
                    .recv()
                    .await
                    .map_or(Outgoing::Done, Outgoing::Control)
            },
            async { outbox.take().await.map_or(Outgoing::Done, Outgoing::Event) },
        )
        .await;
        let (bytes, is_event) = match next {
            Outgoing::Done => {
                let _ = sender.close(None).await;
                return "the agent is shutting down".into();
            }
            Outgoing::Control(bytes) => (bytes, false),
            Outgoing::Event(event) => {
                buf.clear();
                proto::codec::encode_into(&Message::Event(event), &mut buf);
                if buf.len() > max_frame {
                    log::warn!(
                        "dropped an event of {} bytes (over the {max_frame}-byte frame limit)",
                        buf.len()
                    );
                    outbox.ack();
                    continue;
                }
                (std::mem::take(&mut buf), true)
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                // serde_json only writes UTF-8; never reached, but never a panic either.
                if is_event {
                    outbox.ack();
                }
                continue;
            }
        };
        if let Err(e) = sender.send(WsMessage::Text(text.into())).await {
            if is_event {
                outbox.requeue_in_flight();
            }
            return format!("write error: {e}");
        }
        if is_event {
            outbox.ack();
        }
    }
}
