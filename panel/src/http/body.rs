//! Streamed bodies, for the routes that move files: a request body the handler pulls piece
//! by piece while the server reads it off the socket, and a response body the server writes
//! while the handler produces it. Neither is ever whole in memory.
//!
//! - Request: on a route registered with `Router::route_streaming`, the server reads only
//!   the head, then runs the handler alongside a pump that moves the body, in pieces of at
//!   most [`PIECE`] bytes, through a queue of [`QUEUE`] pieces into the handler's
//!   [`BodyStream`]. The queue is the backpressure: the socket is read only as fast as the
//!   handler consumes. The body's limit is the route's (`Content-Length` checked before the
//!   handler runs, a chunked body's running total in checked arithmetic as it arrives).
//!   Instead of one deadline for the whole request, every read must make progress within
//!   the server's request timeout. A handler that stops reading early leaves the rest on the
//!   wire: the connection is then closed after its answer.
//! - Response: a handler answers [`Streamed`]: a head, the exact length, and a stream of
//!   pieces. The server writes the head with that `Content-Length`, then each piece as it
//!   comes (each write within the request timeout). A stream that fails, ends early or runs
//!   long makes the server drop the connection: the client sees a short body, never a wrong
//!   one.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite, Stream, future};

use super::parse::{Conn, Framing, HttpError, Limits, ReadError, chunked_too_large};
use super::response::Response;

/// Largest piece of a streamed request body.
pub const PIECE: usize = 64 * 1024;
/// Pieces queued between the socket and the handler.
pub const QUEUE: usize = 4;

/// Why a streamed request body could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the client closed the connection after {0} bytes of the body")]
    Eof(u64),
    #[error("no body bytes arrived for {0} s")]
    Idle(u64),
    /// Malformed chunking, or over the route's limit.
    #[error("{}", http_message(.0))]
    Http(HttpError),
    #[error("reading the body failed: {0}")]
    Io(String),
}

fn http_message(e: &HttpError) -> String {
    match e {
        HttpError::BadRequest(m)
        | HttpError::HeadersTooLarge(m)
        | HttpError::PayloadTooLarge(m)
        | HttpError::VersionNotSupported(m)
        | HttpError::NotImplemented(m)
        | HttpError::ExpectationFailed(m) => m.clone(),
    }
}

impl BodyError {
    /// The answer for a client that is still listening.
    pub fn to_response(&self) -> Response {
        match self {
            BodyError::Http(e) => e.to_response(),
            BodyError::Idle(_) => Response::error_with_status(408, "TIMEOUT", self.to_string()),
            BodyError::Eof(_) | BodyError::Io(_) => {
                Response::error(proto::ErrorCode::InvalidMessage, self.to_string())
            }
        }
    }
}

/// What the pump sends: a piece, the end (`None`), or why it stopped.
type Item = Result<Option<Vec<u8>>, BodyError>;

/// A request body as it arrives (see the module docs).
pub struct BodyStream {
    rx: async_channel::Receiver<Item>,
    declared: Option<u64>,
    done: bool,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("declared", &self.declared)
            .field("done", &self.done)
            .finish()
    }
}

impl BodyStream {
    /// A stream fed by the returned sender (the server's pump, or a test).
    pub fn channel(declared: Option<u64>) -> (async_channel::Sender<Item>, BodyStream) {
        let (tx, rx) = async_channel::bounded(QUEUE);
        (
            tx,
            BodyStream {
                rx,
                declared,
                done: false,
            },
        )
    }

    /// `Content-Length`, when the body has one (not when chunked).
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }

    /// The next piece, `Ok(None)` once the whole body has arrived.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, BodyError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Ok(Ok(Some(piece))) => Ok(Some(piece)),
            Ok(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Err(BodyError::Io("the body reader stopped".into()))
            }
        }
    }
}

/// A response whose body is produced while it is sent.
pub struct Streamed {
    /// Status and headers (its `body` is ignored).
    pub head: Response,
    /// The exact number of bytes the body stream yields.
    pub length: u64,
    pub body: ResponseBody,
}

/// The pieces of a streamed response body; an `Err` aborts the response.
pub type ResponseBody = Pin<Box<dyn Stream<Item = Result<Vec<u8>, String>> + Send>>;

impl fmt::Debug for Streamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streamed")
            .field("head", &self.head)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// Moves a request body from `conn` into `tx` (see the module docs). Returns whether the
/// whole body was read, so the connection can serve another request.
pub async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    framing: Framing,
    max: u64,
    limits: &Limits,
    idle: Duration,
    tx: async_channel::Sender<Item>,
) -> bool {
    let mut p = Pump {
        conn,
        idle,
        tx: &tx,
        received: 0,
    };
    match p.body(framing, max, limits).await {
        Ok(()) => tx.send(Ok(None)).await.is_ok(),
        Err(Stop::Abandoned) => false,
        Err(Stop::Failed(e)) => {
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

/// Why the pump stopped early.
enum Stop {
    /// The handler dropped its stream.
    Abandoned,
    Failed(BodyError),
}

struct Pump<'a, S> {
    conn: &'a mut Conn<S>,
    idle: Duration,
    tx: &'a async_channel::Sender<Item>,
    received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pump<'_, S> {
    async fn body(&mut self, framing: Framing, max: u64, limits: &Limits) -> Result<(), Stop> {
        let idle = self.idle;
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.exactly(n as u64).await,
            Framing::Chunked => {
                loop {
                    let size = guard(idle, self.received, self.conn.read_chunk_size()).await?;
                    if size == 0 {
                        break;
                    }
                    // Checked: a size near u64::MAX must not wrap the sum below the limit.
                    if self.received.checked_add(size).is_none_or(|t| t > max) {
                        return Err(Stop::Failed(BodyError::Http(chunked_too_large(max))));
                    }
                    self.exactly(size).await?;
                    guard(idle, self.received, self.conn.read_chunk_end()).await?;
                }
                guard(idle, self.received, self.conn.read_trailers(limits)).await
            }
        }
    }

    /// Moves exactly `n` bytes: what is buffered first, then the socket.
    async fn exactly(&mut self, mut n: u64) -> Result<(), Stop> {
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(PIECE);
            let piece = if self.conn.buf.is_empty() {
                let mut piece = vec![0u8; want];
                let io = &mut self.conn.io;
                let got = match within(self.idle, io.read(&mut piece)).await {
                    None => return Err(Stop::Failed(BodyError::Idle(self.idle.as_secs()))),
                    Some(Err(e)) => return Err(Stop::Failed(BodyError::Io(e.to_string()))),
                    Some(Ok(0)) => return Err(Stop::Failed(BodyError::Eof(self.received))),
                    Some(Ok(got)) => got,
                };
                piece.truncate(got);
                piece
            } else {
                let take = want.min(self.conn.buf.len());
                self.conn.buf.drain(..take).collect()
            };
            n -= piece.len() as u64;
            self.received += piece.len() as u64;
            if self.tx.send(Ok(Some(piece))).await.is_err() {
                return Err(Stop::Abandoned);
            }
        }
        Ok(())
    }
}

/// One parsing step of the chunked framing, within the idle timeout.
async fn guard<T>(
    idle: Duration,
    received: u64,
    step: impl std::future::Future<Output = Result<T, ReadError>>,
) -> Result<T, Stop> {
    match within(idle, step).await {
        None => Err(Stop::Failed(BodyError::Idle(idle.as_secs()))),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(Stop::Failed(read_error(e, received))),
    }
}

fn read_error(e: ReadError, received: u64) -> BodyError {
    match e {
        ReadError::Http(h) => BodyError::Http(h),
        ReadError::Eof => BodyError::Eof(received),
        ReadError::Io(e) => BodyError::Io(e.to_string()),
    }
}

/// `fut`, or `None` after `d`.
async fn within<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(d).await;
        None
    })
    .await
}

/// Runs `main` to completion while also driving `side`; returns `main`'s output and
/// `side`'s if it finished first (`side` is dropped unfinished otherwise).
pub async fn alongside<A, B>(main: A, side: B) -> (A::Output, Option<B::Output>)
where
    A: std::future::Future,
    B: std::future::Future,
{
    let mut main = std::pin::pin!(main);
    let mut side = std::pin::pin!(side);
    let mut side_out = None;
    let out = future::poll_fn(|cx| {
        if side_out.is_none()
            && let std::task::Poll::Ready(v) = side.as_mut().poll(cx)
        {
            side_out = Some(v);
        }
        main.as_mut().poll(cx)
    })
    .await;
    (out, side_out)
}
