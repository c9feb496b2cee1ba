//! HTTP/1.1 plumbing over the Engine's Unix socket: the smol ↔ hyper IO adapter, one
//! connection per request, body streaming, timeouts and query strings.
//!
//! One connection per request keeps this simple and correct: a Unix-socket connect costs
//! microseconds, there is no idle-connection bookkeeping, and a streaming request (events,
//! logs) can never block a short one behind it.

#![allow(
    unsafe_code,
    reason = "hyper's ReadBuf is advanced over bytes the reader initialised"
)]

use super::error::{DockerError, Missing, from_status};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite, Stream};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use smol::Task;
use smol::net::unix::UnixStream;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// Request bodies are always small JSON documents, sent whole.
pub(crate) type ReqBody = Full<Bytes>;

/// Adapts a futures-io (smol) stream to hyper's own IO traits, which are runtime-agnostic
/// and therefore implemented by nobody out of the box.
pub(crate) struct SmolIo<T>(pub(crate) T);

impl<T: AsyncRead + Unpin> hyper::rt::Read for SmolIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let slice = buf.initialize_unfilled();
        let n = ready!(Pin::new(&mut self.0).poll_read(cx, slice))?;
        // SAFETY: `initialize_unfilled` initialised every byte of the unfilled part, and the
        // reader reports `n <= slice.len()` bytes written into it.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for SmolIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// Connects to the socket, turning the OS's answer into an error that says what to do.
pub(crate) async fn connect(socket: &Path) -> Result<UnixStream, DockerError> {
    UnixStream::connect(socket)
        .await
        .map_err(|e| connect_error(socket, e))
}

fn connect_error(socket: &Path, source: io::Error) -> DockerError {
    let path = socket.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound => DockerError::SocketMissing { path },
        io::ErrorKind::PermissionDenied => DockerError::PermissionDenied { path },
        _ => DockerError::Unavailable { path, source },
    }
}

/// A response head plus its body. The body owns the connection task, so dropping it closes
/// the socket (this is how a caller stops following events or logs).
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    pub(crate) conn: Task<()>,
}

/// Sends one request on a fresh connection and waits for the response head.
///
/// The connection future is spawned on smol's global executor: hyper needs it polled while
/// we wait for the head and read the body, and a task keeps working whatever executor the
/// caller is on. With `upgrades` the connection can hand its socket back after a 101.
pub(crate) async fn send(
    socket: &Path,
    request: Request<ReqBody>,
    upgrades: bool,
) -> Result<Exchange, DockerError> {
    let stream = connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(SmolIo(stream)).await?;
    let task = if upgrades {
        spawn_conn(conn.with_upgrades())
    } else {
        spawn_conn(conn)
    };
    let response = sender.send_request(request).await?;
    Ok(Exchange {
        response,
        conn: task,
    })
}

fn spawn_conn<F>(conn: F) -> Task<()>
where
    F: Future<Output = hyper::Result<()>> + Send + 'static,
{
    smol::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("docker connection ended with an error: {e}");
        }
    })
}

impl Exchange {
    pub(crate) fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// 2xx, and 304 "not modified" which Docker uses for "already started/stopped".
    pub(crate) fn is_success(&self) -> bool {
        let s = self.response.status();
        s.is_success() || s == http::StatusCode::NOT_MODIFIED
    }

    pub(crate) fn into_body(self) -> ByteStream {
        ByteStream {
            body: self.response.into_body(),
            _conn: self.conn,
        }
    }

    /// Turns a failed exchange into the matching error, reading Docker's `{"message"}`.
    pub(crate) async fn into_error(self, hint: Missing) -> DockerError {
        let status = self.status();
        match self.into_body().collect(ERROR_BODY_LIMIT).await {
            Ok(body) => from_status(status, &body, hint),
            Err(e) => e,
        }
    }
}

/// Error bodies are one short JSON object; anything beyond this is not worth reading.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A response body as a stream of byte chunks, in arrival order.
pub struct ByteStream {
    body: Incoming,
    _conn: Task<()>,
}

impl ByteStream {
    /// Reads the whole body, failing once it exceeds `limit` bytes rather than growing
    /// without bound.
    pub(crate) async fn collect(mut self, limit: usize) -> Result<Bytes, DockerError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = futures_lite::StreamExt::next(&mut self).await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(DockerError::Protocol(format!(
                    "response body larger than {limit} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

impl Stream for ByteStream {
    type Item = Result<Bytes, DockerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Empty data frames and trailers carry nothing for us.
                    _ => continue,
                },
            }
        }
    }
}

/// Races `fut` against a timer; the error names the operation that took too long.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    let timer = async {
        smol::Timer::after(limit).await;
        Err(DockerError::Timeout {
            what: what(),
            after: limit,
        })
    };
    futures_lite::future::or(fut, timer).await
}

/// Builds a query string with every value percent-encoded.
#[derive(Default)]
pub(crate) struct Query(String);

impl Query {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&encode(value.as_ref()));
        self
    }

    pub(crate) fn push_opt(self, key: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(v) => self.push(key, v),
            None => self,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so ids, names and JSON
/// filters are safe both as path segments and as query values.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("abc-1.2_3~"), "abc-1.2_3~");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
        assert_eq!(
            encode(r#"{"label":["x=1"]}"#),
            "%7B%22label%22%3A%5B%22x%3D1%22%5D%7D"
        );
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn query_joins_pairs() {
        let q = Query::new()
            .push("a", "1")
            .push_opt("b", None::<&str>)
            .push_opt("c", Some("x y"));
        assert_eq!(q.as_str(), "?a=1&c=x%20y");
        assert_eq!(Query::new().as_str(), "");
    }

    #[test]
    fn connect_errors_say_what_is_wrong() {
        let p = Path::new("/run/x.sock");
        let e = |kind| connect_error(p, io::Error::from(kind));
        assert!(matches!(
            e(io::ErrorKind::NotFound),
            DockerError::SocketMissing { .. }
        ));
        let denied = e(io::ErrorKind::PermissionDenied);
        assert!(matches!(denied, DockerError::PermissionDenied { .. }));
        assert_eq!(denied.code(), proto::ErrorCode::PermissionDenied);
        assert!(denied.to_string().contains("/run/x.sock"));
        assert!(matches!(
            e(io::ErrorKind::ConnectionRefused),
            DockerError::Unavailable { .. }
        ));
    }

    #[test]
    fn io_adapter_round_trips_through_hyper_traits() {
        smol::block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let mut a = SmolIo(a);
            let mut b = SmolIo(b);
            let n = std::future::poll_fn(|cx| {
                hyper::rt::Write::poll_write(Pin::new(&mut a), cx, b"hello")
            })
            .await
            .unwrap();
            assert_eq!(n, 5);
            let mut storage = [0u8; 16];
            let mut rb = hyper::rt::ReadBuf::new(&mut storage);
            std::future::poll_fn(|cx| {
                hyper::rt::Read::poll_read(Pin::new(&mut b), cx, rb.unfilled())
            })
            .await
            .unwrap();
            assert_eq!(rb.filled(), b"hello");
        });
    }
}
