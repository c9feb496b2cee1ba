//! The reader: every frame an agent sends, routed on its envelope.
//!
//! Events (the hot path) are forwarded to subscribers as the original bytes while the
//! envelope is still borrowed from the frame; responses wake their command's waiter; pongs
//! feed the heartbeat. Frames that cannot be parsed are answered with an `INVALID_MESSAGE`
//! error response; data frames over the per-connection rate are answered with `RATE_LIMITED`
//! and dropped (answers to commands the panel is waiting for are exempt: the panel bounds
//! those itself); WebSocket control frames (ping, pong) spend the same budget and over it
//! close the socket (1008: they cannot be answered, and tungstenite answers every ping);
//! messages larger than `--max-frame-bytes` close the socket (1009). Nothing here
//! waits: decoding is synchronous, replies are queued without blocking.

use async_tungstenite::WebSocketReceiver;
use async_tungstenite::tungstenite::{
    Error as WsError, Message as WsMessage, error::CapacityError,
    protocol::frame::coding::CloseCode,
};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt, future};
use std::borrow::Cow;
use std::cell::RefCell;
use std::pin::pin;
use std::time::Instant;

use proto::message::{Message, MessageType, Response};
use proto::time::now_rfc3339;
use proto::{Decoder, ErrorCode, encode};

use super::registry::Conn;
use super::trust::trusted;
use super::waiters::Claim;
use super::{Hub, HubError, text};
use crate::ratelimit::TokenBucket;

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
        let decoder = match &mut *slot {
            Some(d) if d.max_frame() == max_frame => d,
            other => other.insert(Decoder::new(max_frame)),
        };
        f(decoder)
    })
}

impl Hub {
    /// Reads until the peer closes, the socket fails, or the connection is killed.
    pub(super) async fn read_loop<S>(&self, conn: &Conn, mut stream: WebSocketReceiver<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut bucket = TokenBucket::new(self.settings.agent_rate, self.settings.agent_burst);
        // One kill listener for the connection's whole life, not one per frame: a fresh
        // `wait()` per frame registered and removed a listener (a lock and an allocation)
        // for every frame read.
        let killed = conn.kill.wait();
        let mut killed = pin!(killed);
        loop {
            let next = future::or(async { Some(stream.next().await) }, async {
                killed.as_mut().await;
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
                WsMessage::Ping(_) | WsMessage::Pong(_) => {
                    conn.touch();
                    // Control frames spend the same budget as data frames. tungstenite has
                    // already queued the pong of a ping, and a control frame cannot be
                    // answered with RATE_LIMITED: over the budget, the agent is closed.
                    if !bucket.try_take(Instant::now()) {
                        self.metrics.rate_limited_agent.inc();
                        conn.kick(
                            CloseCode::Policy,
                            "WebSocket control frames over the frame rate limit",
                        );
                        return;
                    }
                }
                WsMessage::Close(_) => return,
                WsMessage::Frame(_) => {}
            }
        }
    }

    /// Queues an error response (dropped if the queue is full).
    fn reply_error(&self, conn: &Conn, id: Option<&str>, code: ErrorCode, message: String) {
        let resp = Response::err(
            Cow::Borrowed(id.unwrap_or("invalid")),
            now_rfc3339().into(),
            code,
            message,
        );
        conn.try_queue(text(encode(&Message::Response(resp))));
    }

    /// An invalid frame: counted and answered with `code`.
    pub(super) fn refuse(&self, conn: &Conn, id: Option<&str>, code: ErrorCode, message: String) {
        self.metrics.frames_invalid.inc();
        self.reply_error(conn, id, code, message);
    }

    /// Handles one data frame from an agent.
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
        // Events and refused kinds are handled on the borrowed envelope; only responses and
        // pongs, which decode the frame again, take their id out.
        let env = match decoder.envelope(bytes) {
            Ok(env) => env,
            Err(e) => {
                if self.over_rate(conn, bucket) {
                    return;
                }
                return self.refuse(conn, None, e.code(), e.to_string());
            }
        };
        // An answer to a command this panel is waiting for costs no token: the panel itself
        // bounds those (a file transfer is hundreds of them), and dropping one would fail
        // its command. Everything else spends the frame budget.
        let awaited = env.kind == MessageType::Response
            && env
                .id
                .as_deref()
                .is_some_and(|id| self.waiters.awaits(id, &conn.agent_id));
        if !awaited && self.over_rate(conn, bucket) {
            return;
        }
        if !trusted(&self.store, &conn.agent_id, &env) {
            self.metrics.frames_foreign.inc();
            return;
        }
        match env.kind {
            MessageType::Event => {
                let kept = matches!(
                    env.name.as_deref(),
                    Some("resource_update" | "server_status_changed")
                );
                self.events.publish(
                    &conn.agent_id,
                    env.server_id.as_deref(),
                    env.name.as_deref(),
                    msg,
                );
                if kept {
                    self.sample(&conn.agent_id, decoder, bytes);
                }
            }
            MessageType::Response => {
                let id = env.id.map(Cow::into_owned);
                self.on_response(conn, decoder, bytes, id);
            }
            MessageType::Pong => {
                let id = env.id.map(Cow::into_owned);
                self.on_pong(conn, decoder, bytes, id);
            }
            kind @ (MessageType::Command | MessageType::Ping) => self.refuse(
                conn,
                env.id.as_deref(),
                ErrorCode::InvalidMessage,
                format!("agents may not send `{}` messages", kind.as_str()),
            ),
        }
    }

    /// Takes a token for a data frame; over the rate, answers `RATE_LIMITED` (the frame is
    /// dropped) and returns true.
    fn over_rate(&self, conn: &Conn, bucket: &mut TokenBucket) -> bool {
        if bucket.try_take(Instant::now()) {
            return false;
        }
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
        true
    }

    /// A response (the envelope said so): wakes the command waiting for its id, if it is
    /// this agent's.
    fn on_response(&self, conn: &Conn, decoder: &mut Decoder, bytes: &[u8], id: Option<String>) {
        let Some(id) = id else {
            return self.refuse(
                conn,
                None,
                ErrorCode::InvalidMessage,
                "response without id".into(),
            );
        };
        let tx = match self.waiters.claim(&id, &conn.agent_id) {
            Claim::Mine(tx) => tx,
            Claim::Foreign => return self.metrics.frames_foreign.inc(),
            Claim::Unmatched => return self.metrics.responses_unmatched.inc(),
        };
        let reason = match decoder.message(bytes) {
            Ok(Message::Response(r)) => {
                let _ = tx.try_send(Ok(r.into_owned()));
                return;
            }
            // The skimmer and serde disagree about the frame's type: the agent's answer is
            // unreadable, not a reason to panic.
            Ok(other) => format!(
                "a `response` envelope decoded as `{}`",
                other.kind().as_str()
            ),
            Err(e) => e.to_string(),
        };
        self.metrics.frames_invalid.inc();
        let _ = tx.try_send(Err(HubError::BadResponse {
            agent: conn.agent_id.clone(),
            reason,
        }));
    }
}
