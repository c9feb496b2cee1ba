//! One `write` for the end of a TLS handshake and the first response.
//!
//! A resumed TLS 1.3 handshake ends with the panel's NewSessionTicket, which futures-rustls
//! flushes the moment the client's Finished is processed; an agent's upgrade request
//! usually arrives in the same read, and the 101 follows microseconds later in a second
//! `writev`. In a reconnect storm that is one system call (and one TCP segment) per
//! reconnect for nothing. [`Corked`] holds what is written until the connection's first
//! request has been read ([`Corked::release`]), so the ticket leaves with the response.
//!
//! Holding must never stall the peer: whenever a read is about to wait for input, what is
//! held goes out first (the peer may need it to answer — the handshake's server flight
//! is written while holding, and leaves when the panel waits for the client's Finished).
//! Closing also sends what is held. While holding, only the panel's own handshake output is
//! buffered (requests are answered after the release), so the buffer stays a few hundred
//! bytes; after the release it empties with the next write and is freed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::{AsyncRead, AsyncWrite};

/// After the release, a write is appended to what is still held (one system call for both)
/// only while the total stays below this; otherwise the held bytes go first.
const COALESCE_MAX: usize = 16 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct Corked<S> {
    inner: S,
    holding: bool,
    /// Bytes accepted but not yet written. Boxed: an upgraded connection lives for hours
    /// with this empty, and `None` is 8 bytes where an empty `Vec` is 24 (per agent).
    #[allow(
        clippy::box_collection,
        reason = "8 bytes per long-lived socket instead of 24; one small allocation per handshake"
    )]
    held: Option<Box<Vec<u8>>>,
}

impl<S> Corked<S> {
    /// Holds writes until [`Corked::release`].
    pub fn new(inner: S) -> Corked<S> {
        Corked {
            inner,
            holding: true,
            held: None,
        }
    }

    /// Stops holding: what is held goes out with the next write, flush or close.
    pub fn release(&mut self) {
        self.holding = false;
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.len())
    }
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    /// Writes out everything held; `Pending` (with a wake-up registered) if the socket is
    /// full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(held) = self.held.as_mut().filter(|h| !h.is_empty()) {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            held.drain(..n);
        }
        if !self.holding {
            self.held = None;
        }
        Poll::Ready(Ok(()))
    }

    fn hold(&mut self, bufs: &[io::IoSlice<'_>]) -> usize {
        let held = self.held.get_or_insert_with(Default::default);
        let before = held.len();
        for b in bufs {
            held.extend_from_slice(b);
        }
        held.len() - before
    }

    /// Best effort, never waits: sends what is held if the socket takes it at once (the
    /// last-gasp write of a failed handshake's alert).
    pub fn try_drain(&mut self) {
        self.holding = false;
        let _ = self.poll_drain(&mut Context::from_waker(std::task::Waker::noop()));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.held_len() > 0 => {
                // About to wait for the peer, which may be waiting for these bytes.
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.holding {
            return Poll::Ready(Ok(this.hold(bufs)));
        }
        let held = this.held_len();
        if held == 0 {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if held + len <= COALESCE_MAX {
            // Accepted now, written together with what was held; a socket that is full
            // keeps the rest for the flush the writer owes.
            let n = this.hold(bufs);
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(n));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.holding {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.holding = false;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Records every write call; reads return `input` once, then wait forever.
    #[derive(Default)]
    struct Mock {
        writes: Vec<Vec<u8>>,
        input: Option<Vec<u8>>,
        closed: bool,
    }

    impl AsyncRead for Mock {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match self.input.take() {
                Some(data) => {
                    buf[..data.len()].copy_from_slice(&data);
                    Poll::Ready(Ok(data.len()))
                }
                None => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Mock {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.closed = true;
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn held_bytes_leave_with_the_first_write_after_the_release() {
        block_on(async {
            let mut c = Corked::new(Mock {
                input: Some(b"GET".to_vec()),
                ..Mock::default()
            });
            c.write_all(b"ticket").await.unwrap();
            c.flush().await.unwrap();
            // Data was there: the read does not wait, nothing is sent.
            let mut buf = [0u8; 8];
            assert_eq!(c.read(&mut buf).await.unwrap(), 3);
            assert!(c.get_ref().writes.is_empty(), "held while holding");
            c.release();
            c.write_all(b"101").await.unwrap();
            c.flush().await.unwrap();
            assert_eq!(c.get_ref().writes, vec![b"ticket101".to_vec()], "one write");
            assert!(c.held.is_none(), "the buffer is freed once empty");
            c.write_all(b"frame").await.unwrap();
            assert_eq!(c.get_ref().writes.last().unwrap(), b"frame");
        });
    }

    #[test]
    fn a_read_that_would_wait_sends_what_is_held_first() {
        let mut c = Corked::new(Mock::default());
        block_on(c.write_all(b"server flight")).unwrap();
        assert!(c.get_ref().writes.is_empty());
        let mut buf = [0u8; 8];
        assert!(block_on(poll_once(c.read(&mut buf))).is_none(), "waits");
        assert_eq!(c.get_ref().writes, vec![b"server flight".to_vec()]);
        // Still holding: the next bytes are held again.
        block_on(c.write_all(b"ticket")).unwrap();
        assert_eq!(c.get_ref().writes.len(), 1);
    }

    #[test]
    fn close_and_try_drain_send_what_is_held() {
        let mut c = Corked::new(Mock::default());
        block_on(c.write_all(b"alert")).unwrap();
        c.try_drain();
        assert_eq!(c.get_ref().writes, vec![b"alert".to_vec()]);

        let mut c = Corked::new(Mock::default());
        block_on(c.write_all(b"bye")).unwrap();
        block_on(c.close()).unwrap();
        assert_eq!(c.get_ref().writes, vec![b"bye".to_vec()]);
        assert!(c.get_ref().closed);
    }

    #[test]
    fn a_large_write_after_the_release_does_not_grow_the_buffer() {
        let mut c = Corked::new(Mock::default());
        block_on(c.write_all(b"held")).unwrap();
        c.release();
        let big = vec![7u8; COALESCE_MAX];
        block_on(c.write_all(&big)).unwrap();
        assert_eq!(c.get_ref().writes, vec![b"held".to_vec(), big]);
    }
}
