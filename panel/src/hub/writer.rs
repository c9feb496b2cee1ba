//! The writer: sends what the connection's [`Outbox`](crate::outbox::Outbox) holds, one flush
//! per batch, until the connection is killed; then the close frame (bounded by a grace).

use async_io::Timer;
use async_tungstenite::WebSocketSender;
use futures_lite::{AsyncRead, AsyncWrite, future};
use std::pin::pin;

use super::registry::Conn;
use super::{CLOSE_GRACE, Hub};
use crate::outbox;

impl Hub {
    pub(super) async fn write_loop<S>(&self, conn: &Conn, mut sink: WebSocketSender<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // One kill listener for the connection's life (see the reader).
        let killed = conn.kill.wait();
        let mut killed = pin!(killed);
        loop {
            let next = future::or(conn.queue.pop(), async {
                killed.as_mut().await;
                None
            })
            .await;
            let Some(frame) = next else { break };
            let sent = future::or(
                async { Some(outbox::write_batch(&mut sink, &conn.queue, frame).await) },
                async {
                    killed.as_mut().await;
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
        let frame = conn.take_close_frame();
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
}
