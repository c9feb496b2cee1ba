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
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::registry::Conn;
use super::{CLOSE_GRACE, CLOSE_REPLACED, Hub};
use crate::shutdown::Shutdown;
use crate::tracker::Token;

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
        let conn = Arc::new(Conn::new(
            self.registry.next_id(),
            agent_id.clone(),
            family,
            self.settings.queue,
        ));
        self.attach(conn.clone());
        log::info!("agent {agent_id} connected");

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
        log::info!("agent {agent_id} disconnected");
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
