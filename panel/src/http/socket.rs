//! An accepted TCP socket that does not ask the kernel for bytes it knows are not there.
//!
//! `async-io` learns that a socket has nothing more to read from a read that fails with
//! `EAGAIN`, and only then registers for readiness (re-arming its one-shot `epoll`
//! registration). An agent that sends one small frame at a time therefore costs two `recv`
//! calls per frame: one that returns the frame and one that fails. But a TCP `recv` that
//! returns fewer bytes than asked for has emptied the receive queue, so [`Socket`] goes
//! straight to waiting after such a read. Nothing can be missed: arming the registration
//! reports data that arrived in between at once (level-triggered), so the only cost of a
//! wrong guess is one reactor round instead of one failed read.
//!
//! One subtlety: the readiness event that woke the task is still recorded as "new" inside
//! `async-io` until a readiness poll consumes it, so the first poll after a short read may
//! answer "ready" for data that was already read. [`Socket`] polls once more in that case,
//! which registers interest (or reports a genuinely newer event).

use std::io::{self, Read as _};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};

/// See the module docs.
#[derive(Debug)]
pub struct Socket {
    inner: Async<TcpStream>,
    /// The last read returned less than asked: the receive queue was empty after it.
    drained: bool,
}

impl Socket {
    pub fn new(inner: Async<TcpStream>) -> Socket {
        Socket {
            inner,
            drained: false,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        self.inner.get_ref()
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if std::mem::take(&mut self.drained) && !buf.is_empty() {
            // A "ready" here may be the event the last read already consumed (see the
            // module docs); the second poll registers interest unless a newer event came.
            ready!(self.inner.poll_readable(cx))?;
            ready!(self.inner.poll_readable(cx))?;
        }
        loop {
            match self.inner.get_ref().read(buf) {
                Ok(n) => {
                    self.drained = n > 0 && n < buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(self.inner.poll_readable(cx))?;
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _, future};
    use std::net::TcpListener;

    /// Frames written one at a time, with the reader waiting in between, all arrive in
    /// order: a short read never makes the socket miss data that follows it.
    #[test]
    fn short_reads_never_lose_data() {
        future::block_on(async {
            let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let addr = listener.get_ref().local_addr().unwrap();
            let mut client = Async::<TcpStream>::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut server = Socket::new(server);
            let writer = smol::spawn(async move {
                for i in 0u32..200 {
                    client.write_all(&i.to_be_bytes()).await.unwrap();
                    if i % 7 == 0 {
                        async_io::Timer::after(std::time::Duration::from_millis(1)).await;
                    }
                }
                client
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < 800 {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0, "early EOF after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            let want: Vec<u8> = (0u32..200).flat_map(|i| i.to_be_bytes()).collect();
            assert_eq!(got, want);
            drop(writer.await);
            // The peer closed: EOF, not a hang.
            assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        });
    }
}
