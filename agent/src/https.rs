//! A tiny HTTPS/1.1 client for the agent's two REST calls (register and token refresh).
//!
//! One request per connection (`Connection: close`), a body with `Content-Length`, and a
//! response read with `Content-Length`, `Transfer-Encoding: chunked` or until close. Heads
//! and bodies are size-capped so a misbehaving server cannot make the agent buffer forever.

use crate::net::{self, NetError, Url};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use std::sync::Arc;
use std::time::Duration;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest response body accepted (registration answers are a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;
/// Longest chunk-size line.
const MAX_CHUNK_LINE: usize = 1024;

/// Errors of a REST call.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("malformed HTTP response from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

/// A response: status and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `POST url` with a JSON body and an optional bearer token, all within `deadline`.
pub async fn post_json(
    tls: &Arc<rustls::ClientConfig>,
    url: &Url,
    bearer: Option<&str>,
    body: &[u8],
    deadline: Duration,
) -> Result<HttpResponse, HttpError> {
    let addr = url.authority();
    let call = async {
        let mut stream = net::connect_tls(url, tls, deadline).await?;
        let head = request_head(url, bearer, body.len());
        let io = |source| HttpError::Io {
            addr: addr.clone(),
            source,
        };
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        read_response(&mut stream, &addr).await
    };
    let timed = async {
        futures_lite::future::or(call, async {
            smol::Timer::after(deadline).await;
            Err(HttpError::Net(NetError::Timeout {
                what: format!("POST {url}"),
                secs: deadline.as_secs(),
            }))
        })
        .await
    };
    timed.await
}

fn request_head(url: &Url, bearer: Option<&str>, len: usize) -> String {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ctrl-agent/{}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(token) = bearer {
        head.push_str("Authorization: Bearer ");
        head.push_str(token);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Reads one HTTP/1.1 response from `stream`.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    addr: &str,
) -> Result<HttpResponse, HttpError> {
    let mut r = Reader {
        stream,
        buf: Vec::with_capacity(4096),
        pos: 0,
        addr,
    };
    let head_end = r.fill_until_head().await?;
    let head = std::str::from_utf8(&r.buf[..head_end])
        .map_err(|_| r.protocol("response head is not UTF-8"))?
        .to_owned();
    r.pos = head_end + 4;
    let (status, framing) = parse_head(&head).map_err(|reason| r.protocol(reason))?;
    let body = match framing {
        Framing::Length(n) => r.read_exact(n).await?,
        Framing::Chunked => r.read_chunked().await?,
        Framing::UntilClose => r.read_to_end().await?,
    };
    Ok(HttpResponse { status, body })
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn parse_head(head: &str) -> Result<(u16, Framing), &'static str> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x response");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or("bad status code")?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("malformed header line")?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Framing::Chunked;
            } else {
                return Err("unsupported transfer encoding");
            }
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if n > MAX_BODY {
                return Err("response body too large");
            }
            framing = Framing::Length(n);
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok((status, framing))
}

struct Reader<'a, S> {
    stream: &'a mut S,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    addr: &'a str,
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    fn protocol(&self, reason: &str) -> HttpError {
        HttpError::Protocol {
            addr: self.addr.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Reads more bytes; `Ok(0)` at end of stream. A TLS peer that closes without
    /// close_notify is treated as end of stream: framing decides whether that is complete.
    async fn fill(&mut self) -> Result<usize, HttpError> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(source) => Err(HttpError::Io {
                addr: self.addr.to_owned(),
                source,
            }),
        }
    }

    async fn fill_until_head(&mut self) -> Result<usize, HttpError> {
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.buf[searched..], b"\r\n\r\n") {
                return Ok(searched + i);
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > MAX_HEAD {
                return Err(self.protocol("response head larger than 64 KiB"));
            }
            if self.fill().await? == 0 {
                return Err(self.protocol("connection closed before the response head"));
            }
        }
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() - self.pos < n {
            if self.fill().await? == 0 {
                return Err(self.protocol("connection closed before the end of the body"));
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    async fn read_to_end(&mut self) -> Result<Vec<u8>, HttpError> {
        while self.fill().await? != 0 {
            if self.buf.len() - self.pos > MAX_BODY {
                return Err(self.protocol("response body too large"));
            }
        }
        Ok(self.buf[self.pos..].to_vec())
    }

    async fn read_line(&mut self) -> Result<String, HttpError> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > MAX_CHUNK_LINE {
                return Err(self.protocol("chunk header line too long"));
            }
            if self.fill().await? == 0 {
                return Err(self.protocol("connection closed inside a chunked body"));
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| self.protocol("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(self.protocol("response body too large"));
            }
            body.extend_from_slice(&self.read_exact(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(self.protocol("chunk not followed by CRLF"));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a response in small pieces, as a network would.
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

    fn read(raw: &str, step: usize) -> Result<HttpResponse, HttpError> {
        let mut t = Trickle {
            data: raw.as_bytes().to_vec(),
            at: 0,
            step,
        };
        smol::block_on(read_response(&mut t, "test"))
    }

    #[test]
    fn reads_content_length_bodies_at_any_chunking() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
        for step in 1..=raw.len() {
            let r = read(raw, step).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"ok\":true}");
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
    }

    #[test]
    fn refuses_malformed_and_oversized_responses() {
        assert!(read("SSH-2.0\r\n\r\n", 64).is_err());
        assert!(read("HTTP/1.1 abc OK\r\n\r\n", 64).is_err());
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 64).is_err());
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", 64).is_err());
        assert!(
            read(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                64
            )
            .is_err()
        );
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 64).is_err());
        assert!(read("HTTP/1.1 200 OK\r\nContent-", 64).is_err());
        let huge_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70_000));
        assert!(read(&huge_head, 4096).is_err());
    }

    #[test]
    fn request_head_has_length_host_and_bearer() {
        let url = Url::parse("https://127.0.0.1:8443/api/agents/register").unwrap();
        let head = request_head(&url, Some("tok"), 42);
        assert!(head.starts_with("POST /api/agents/register HTTP/1.1\r\n"));
        assert!(head.contains("Host: 127.0.0.1:8443\r\n"));
        assert!(head.contains("Content-Length: 42\r\n"));
        assert!(head.contains("Authorization: Bearer tok\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        assert!(!request_head(&url, None, 0).contains("Authorization"));
    }
}
