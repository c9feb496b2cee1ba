//! One agent connection from upgrade to close: attach to the registry (replacing an older
//! connection of the same agent), run reader, writer and heartbeat, and detach.
//!
//! Detach is a drop guard, so it runs however the connection ends — closed, killed, or a
//! panic unwinding through the task (the HTTP server catches it): the agent is offline at
//! once and its pending commands fail with `AGENT_OFFLINE` instead of waiting for the
//! timeout while the agent still shows as online.

use async_io::Timer;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_lite::{AsyncRead, AsyncWrite, future};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::registry::Conn;
use super::{CLOSE_GRACE, CLOSE_REPLACED, Hub};
use crate::shutdown::Shutdown;
use crate::tracker::Token;

/// What [`Hub::serve_agent_admitted`] hands to [`Hub::serve_conn`], boxed (see there).
struct Start<S> {
    ws: WebSocketStream<S>,
    agent_id: String,
    family: String,
}

/// Detaches its connection when dropped (see the module docs).
struct Detach<'a> {
    hub: &'a Hub,
    conn: &'a Conn,
}

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.hub.detach(self.conn);
        self.conn.kill.trigger();
    }
}

impl Hub {
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
    ///
    /// The returned future lives as long as the connection, one per agent, so its size is
    /// per-agent memory. An `async fn` keeps its arguments for its whole life (here the
    /// WebSocket, 300+ bytes, which `split` moves into the shared halves at once), so the
    /// arguments travel boxed into [`serve_conn`](Self::serve_conn) and that box is freed at
    /// the first poll.
    pub fn serve_agent_admitted<S>(
        self: Arc<Self>,
        admitted: Option<Token>,
        ws: WebSocketStream<S>,
        agent_id: String,
        family: String,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_conn(
            admitted,
            Box::new(Start {
                ws,
                agent_id,
                family,
            }),
            shutdown,
        )
    }

    async fn serve_conn<S>(
        self: Arc<Self>,
        admitted: Option<Token>,
        start: Box<Start<S>>,
        shutdown: Shutdown,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Moved out in a block so that the box is freed here, not when the task ends.
        let Start {
            mut ws,
            agent_id,
            family,
        } = {
            let start = start;
            *start
        };
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
        let conn = Arc::new(Conn::new(
            self.registry.next_id(),
            agent_id,
            family,
            self.settings.queue,
        ));
        self.attach(conn.clone());
        log::info!("agent {} connected", conn.agent_id);

        let (sink, stream) = ws.split();
        let work = async {
            let detach = Detach {
                hub: &self,
                conn: &conn,
            };
            future::or(
                future::or(self.read_loop(&conn, stream), self.heartbeat(&conn)),
                async {
                    shutdown.wait().await;
                    conn.kick(CloseCode::Away, "panel shutting down");
                },
            )
            .await;
            drop(detach);
        };
        future::zip(work, self.write_loop(&conn, sink)).await;
        log::info!("agent {} disconnected", conn.agent_id);
        // Still holding the admission token: shutdown waits for this write.
        self.last_seen.save().await;
    }

    /// Makes `conn` its agent's live connection, closing the one it replaces.
    fn attach(&self, conn: Arc<Conn>) {
        if let Some(old) = self.registry.attach(conn) {
            self.metrics.agents_replaced.inc();
            old.kick(
                CloseCode::from(CLOSE_REPLACED),
                "replaced by a new connection",
            );
        }
        self.update_online();
    }

    /// Forgets a connection: offline at once, its pending commands fail with AGENT_OFFLINE.
    fn detach(&self, conn: &Conn) {
        self.registry.remove(conn);
        self.update_online();
        // Closing the queue first makes any command still trying to enqueue fail at once;
        // a waiter inserted after the sweep below therefore can only fail its send.
        conn.queue.close();
        self.last_seen
            .ended(&conn.agent_id, conn.last_seen.load(Ordering::Relaxed));
        // Dropping the senders wakes every waiter of this connection with "closed".
        self.waiters.fail_connection(conn.id);
    }
}
