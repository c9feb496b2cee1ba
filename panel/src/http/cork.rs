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
    /// Bytes accepted but not yet written (boxed: the long-lived connection pays 8 bytes).
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
