//! One HTTP/1.1 client connection with its read buffer: send a request, read a whole
//! response (head, then a body delimited by length, chunks or close). Bytes read past the end
//! of a response stay buffered for the next one (keep-alive).
//!
//! The buffer never holds more than one response head (bounded), one partial chunk line and
//! one read, or — for a length- or close-delimited body — the body itself (bounded by the
//! caller's `max_body`).

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ChunkedDecoder, Framing, MAX_HEAD, MAX_INTERIM, find, parse_head};
use crate::ClientError;
use crate::error::classify_io;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// What the caller expects of the next response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The request was `HEAD`: no body follows.
    pub head_request: bool,
    /// Largest body accepted.
    pub max_body: usize,
    /// Return the raw head in [`Response::head`] (for callers that want every header).
    pub keep_head: bool,
}

impl ReadOptions {
    /// A non-`HEAD` request whose answer may be up to `max_body` bytes.
    pub fn body_up_to(max_body: usize) -> ReadOptions {
        ReadOptions {
            head_request: false,
            max_body,
            keep_head: false,
        }
    }
}

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The connection may carry another request.
    pub keep_alive: bool,
    /// The raw head (status line and headers, no final CRLF) when
    /// [`ReadOptions::keep_head`] asked for it, else empty. See [`super::head::headers`].
    pub head: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A client connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct HttpConn<S> {
    io: S,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
}

fn bad(why: impl Into<String>) -> ClientError {
    ClientError::Http(why.into())
}

impl<S> HttpConn<S> {
    pub fn new(io: S) -> HttpConn<S> {
        HttpConn {
            io,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Bytes read but not consumed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

impl<S: AsyncWrite + Unpin> HttpConn<S> {
    /// Writes `msg` (a whole request) and flushes it.
    pub async fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        self.io.write_all(msg).await?;
        self.io.flush().await
    }
}

impl<S: AsyncRead + Unpin> HttpConn<S> {
    /// Reads more bytes; `Ok(0)` at end of stream. A TLS peer that closes without
    /// close_notify counts as end of stream: the framing decides whether that is complete.
    pub async fn fill(&mut self) -> Result<usize, ClientError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_SIZE, 0);
        let r = self.io.read(&mut self.buf[old..]).await;
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        match r {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(classify_io(e)),
        }
    }

    async fn fill_or_eof(&mut self, what: &str) -> Result<(), ClientError> {
        if self.fill().await? == 0 {
            return Err(bad(format!("connection closed in the middle of {what}")));
        }
        Ok(())
    }

    /// Reads one response (skipping up to [`MAX_INTERIM`] 1xx answers).
    pub async fn read_response(&mut self, opts: ReadOptions) -> Result<Response, ClientError> {
        for _ in 0..=MAX_INTERIM {
            let head_len = self.read_head().await?;
            let raw = &self.buf[self.pos..self.pos + head_len];
            let head = parse_head(raw, opts.head_request, opts.max_body)?;
            let head_bytes = if opts.keep_head {
                raw.to_vec()
            } else {
                Vec::new()
            };
            self.pos += head_len + 4;
            if head.is_interim() {
                continue;
            }
            let body = match head.framing {
                Framing::Empty => Vec::new(),
                Framing::Length(n) => self.read_length(n).await?,
                Framing::Chunked => self.read_chunked(opts.max_body).await?,
                Framing::UntilClose => self.read_to_eof(opts.max_body).await?,
            };
            return Ok(Response {
                status: head.status,
                body,
                keep_alive: head.keep_alive,
                head: head_bytes,
            });
        }
        Err(bad(format!("more than {MAX_INTERIM} interim responses")))
    }

    /// Waits for a complete head; returns its length (up to the blank line, exclusive).
    async fn read_head(&mut self) -> Result<usize, ClientError> {
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.pos..];
            let window = &avail[..avail.len().min(MAX_HEAD + 4)];
            if let Some(i) = find(&window[searched..], b"\r\n\r\n") {
                return Ok(searched + i);
            }
            if window.len() >= MAX_HEAD + 4 {
                return Err(bad(format!("response head larger than {MAX_HEAD} bytes")));
            }
            searched = window.len().saturating_sub(3);
            if self.fill().await? == 0 {
                return Err(bad(if self.buffered() == 0 {
                    "connection closed before an answer"
                } else {
                    "connection closed in the middle of the response head"
                }));
            }
        }
    }

    /// `n` bytes (already checked against the limit). The buffer itself becomes the body
    /// when it holds nothing else: no copy.
    async fn read_length(&mut self, n: usize) -> Result<Vec<u8>, ClientError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        while self.buf.len() < n {
            self.fill_or_eof("the response body").await?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    async fn read_chunked(&mut self, max_body: usize) -> Result<Vec<u8>, ClientError> {
        let mut decoder = ChunkedDecoder::new(max_body);
        let mut body = Vec::new();
        loop {
            self.pos += decoder.decode(&self.buf[self.pos..], &mut body)?;
            if decoder.is_done() {
                return Ok(body);
            }
            self.fill_or_eof("a chunked body").await?;
        }
    }

    async fn read_to_eof(&mut self, max_body: usize) -> Result<Vec<u8>, ClientError> {
        loop {
            if self.buffered() > max_body {
                return Err(bad(format!("body over the limit of {max_body} bytes")));
            }
            if self.fill().await? == 0 {
                break;
            }
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        Ok(std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a response in small pieces, as a network would, then EOF.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    fn conn(raw: &[u8], step: usize) -> HttpConn<Trickle> {
        HttpConn::new(Trickle {
            data: raw.to_vec(),
            at: 0,
            step,
        })
    }

    fn read(raw: &str, step: usize) -> Result<Response, ClientError> {
        let opts = ReadOptions::body_up_to(1 << 20);
        smol::block_on(conn(raw.as_bytes(), step).read_response(opts))
    }

    #[test]
    fn reads_content_length_bodies_at_any_split() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
        for step in 1..=raw.len() {
            let r = read(raw, step).unwrap();
            assert_eq!((r.status, r.keep_alive), (200, true));
            assert_eq!(r.body, b"{\"ok\":true}");
            assert!(r.head.is_empty());
        }
    }

    #[test]
    fn reads_chunked_bodies_with_extensions_and_trailers() {
        let raw = "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in [1, 2, 7, 4096] {
            let r = read(raw, step).unwrap();
            assert_eq!(r.status, 401);
            assert!(!r.is_success());
            assert_eq!(r.body, b"hello world");
        }
    }

    #[test]
    fn reads_until_close_without_framing() {
        let r = read("HTTP/1.0 200 OK\r\n\r\nabc", 2).unwrap();
        assert_eq!(r.body, b"abc");
        assert!(!r.keep_alive);
    }

    #[test]
    fn skips_interim_answers_and_keeps_the_next_response_buffered() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n";
        let mut c = conn(raw, 4096);
        let opts = ReadOptions {
            keep_head: true,
            ..ReadOptions::body_up_to(64)
        };
        let r = smol::block_on(c.read_response(opts)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        assert_eq!(r.head, b"HTTP/1.1 200 OK\r\nContent-Length: 2");
        let r = smol::block_on(c.read_response(opts)).unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        let many = "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(read(&many, 4096).is_err());
    }

    #[test]
    fn a_chunk_size_that_would_wrap_the_body_total_is_refused() {
        // The defect of both former client decoders: `body.len() + size` unchecked, so
        // 1 + 0xFFFF_FFFF_FFFF_FFFF wrapped to 0 and passed the limit check.
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nFFFFFFFFFFFFFFFF\r\nbbbb\r\n0\r\n\r\n";
        let e = read(raw, 4096).unwrap_err();
        assert!(
            matches!(&e, ClientError::Http(m) if m.contains("over the limit")),
            "{e}"
        );
    }

    #[test]
    fn refuses_malformed_truncated_and_oversized_responses() {
        for raw in [
            "SSH-2.0\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-",
            "",
        ] {
            assert!(
                matches!(read(raw, 64), Err(ClientError::Http(_))),
                "{raw:?}"
            );
        }
        let huge_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70_000));
        assert!(read(&huge_head, 4096).is_err());
        let huge_body = format!("HTTP/1.1 200 OK\r\n\r\n{}", "a".repeat(70_000));
        let opts = ReadOptions::body_up_to(65_536);
        let e = smol::block_on(conn(huge_body.as_bytes(), 4096).read_response(opts)).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }

    #[test]
    fn a_head_just_within_the_limit_is_read() {
        let pad = MAX_HEAD - "HTTP/1.1 204 OK\r\nX: ".len();
        let raw = format!("HTTP/1.1 204 OK\r\nX: {}\r\n\r\n", "a".repeat(pad));
        assert_eq!(read(&raw, 4096).unwrap().status, 204);
        let raw = format!("HTTP/1.1 204 OK\r\nX: {}\r\n\r\n", "a".repeat(pad + 1));
        assert!(read(&raw, 4096).is_err());
    }
}
