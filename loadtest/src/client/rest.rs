//! A minimal HTTPS/1.1 client with keep-alive, written by hand so that thousands of
//! operator calls per second cost one small struct each and no framework.
//!
//! Connections are pooled: a request takes an idle connection (or opens one), and puts it
//! back when the answer allowed keep-alive. A pooled connection the server has closed in
//! the meantime is detected (write failure or EOF before any answer byte) and the request is
//! retried once on a fresh connection. The pool lock is held only for push/pop.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use parking_lot::Mutex;

use super::ClientError;
use super::conn::{TlsConn, connect_tls};
use super::error::classify_io;
use super::url::Target;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Idle connections kept per client.
const MAX_IDLE: usize = 64;
/// Default deadline for one request (connect + send + whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTPS/1.1 keep-alive client to one panel.
pub struct Rest {
    target: Target,
    /// Path prefix of the base URL, without trailing `/` (usually empty).
    prefix: String,
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<Vec<Conn>>,
    timeout: Duration,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client for `base_url` (`"https://127.0.0.1:8443"`). No connection is opened yet.
    pub fn new(base_url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Rest, ClientError> {
        let target = Target::parse(base_url, &["https"])?;
        if target.path.contains('?') {
            return Err(ClientError::Url(format!(
                "{base_url:?}: a base URL cannot carry a query"
            )));
        }
        let prefix = target.path.trim_end_matches('/').to_owned();
        Ok(Rest {
            target,
            prefix,
            tls,
            idle: Mutex::new(Vec::new()),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replaces the per-request deadline (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Rest {
        self.timeout = timeout;
        self
    }

    /// The TLS configuration this client uses (handy for WebSocket connections).
    pub fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }

    /// `wss://host:port<prefix><path>` for a WebSocket endpoint of the same panel.
    pub fn wss_url(&self, path: &str) -> String {
        format!("wss://{}{}{}", self.target.authority(), self.prefix, path)
    }

    /// `https://host:port<prefix>`.
    pub fn base_url(&self) -> String {
        format!("https://{}{}", self.target.authority(), self.prefix)
    }

    /// Sends one request and returns the status and the whole body. `body`, when given, is
    /// sent as `application/json`.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        if !path_and_query.starts_with('/') {
            return Err(ClientError::Url(format!(
                "{path_and_query:?}: a request path must start with '/'"
            )));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ClientError::Http(format!("bad method {method:?}")));
        }
        if [path_and_query, bearer.unwrap_or("")]
            .iter()
            .any(|s| s.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            return Err(ClientError::Http(
                "path or token contains spaces or control characters".into(),
            ));
        }
        let msg = self.encode(method, path_and_query, bearer, body);
        let head_request = method == "HEAD";
        let deadline = self.timeout;
        futures_lite::future::or(self.send(msg, head_request), async move {
            async_io::Timer::after(deadline).await;
            Err(ClientError::Timeout(deadline))
        })
        .await
    }

    /// Like [`Rest::request`] with JSON in and out; an empty answer body is `Value::Null`.
    pub async fn json(
        &self,
        method: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let bytes = body.map(serde_json::to_vec).transpose()?;
        let (status, answer) = self
            .request(method, path_and_query, bearer, bytes.as_deref())
            .await?;
        if answer.is_empty() {
            return Ok((status, serde_json::Value::Null));
        }
        let value = serde_json::from_slice(&answer).map_err(|e| {
            ClientError::Json(format!(
                "HTTP {status} answer to {method} {path_and_query} is not JSON ({e}): {}",
                snippet(&answer)
            ))
        })?;
        Ok((status, value))
    }

    fn encode(
        &self,
        method: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut msg = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        msg.extend_from_slice(method.as_bytes());
        msg.push(b' ');
        msg.extend_from_slice(self.prefix.as_bytes());
        msg.extend_from_slice(path_and_query.as_bytes());
        msg.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        msg.extend_from_slice(self.target.authority().as_bytes());
        msg.extend_from_slice(b"\r\nUser-Agent: ctrl-loadtest\r\nAccept: application/json\r\n");
        if let Some(token) = bearer {
            msg.extend_from_slice(b"Authorization: Bearer ");
            msg.extend_from_slice(token.as_bytes());
            msg.extend_from_slice(b"\r\n");
        }
        match body {
            Some(b) => {
                msg.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
                msg.extend_from_slice(b.len().to_string().as_bytes());
                msg.extend_from_slice(b"\r\n\r\n");
                msg.extend_from_slice(b);
            }
            None if matches!(method, "POST" | "PUT" | "PATCH") => {
                msg.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            }
            None => msg.extend_from_slice(b"\r\n"),
        }
        msg
    }

    async fn send(&self, msg: Vec<u8>, head_request: bool) -> Result<(u16, Vec<u8>), ClientError> {
        loop {
            let pooled = self.idle.lock().pop();
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::new(connect_tls(&self.target, &self.tls).await?),
            };
            match conn.round_trip(&msg, head_request).await {
                Ok(answer) => {
                    if answer.keep_alive {
                        let mut idle = self.idle.lock();
                        if idle.len() < MAX_IDLE {
                            idle.push(conn);
                        }
                    }
                    return Ok((answer.status, answer.body));
                }
                // The server closed an idle keep-alive connection: not an answer, retry fresh.
                Err(Failure::Stale(_)) if reused => continue,
                Err(Failure::Stale(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.into_owned()
}

enum Failure {
    /// Nothing of an answer arrived (write failed, or EOF/reset before the first byte).
    Stale(ClientError),
    Other(ClientError),
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    keep_alive: bool,
}

/// One TLS connection and the bytes read past the previous answer.
struct Conn {
    io: TlsConn,
    buf: Vec<u8>,
}

impl Conn {
    fn new(io: TlsConn) -> Conn {
        Conn {
            io,
            buf: Vec::new(),
        }
    }

    async fn round_trip(&mut self, msg: &[u8], head_request: bool) -> Result<Answer, Failure> {
        let write = async {
            self.io.write_all(msg).await?;
            self.io.flush().await
        };
        if let Err(e) = write.await {
            return Err(Failure::Stale(classify_io(e)));
        }
        if self.buf.is_empty() {
            match self.fill().await {
                Ok(0) => {
                    return Err(Failure::Stale(ClientError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before an answer",
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Stale(e)),
            }
        }
        self.read_answer(head_request).await.map_err(Failure::Other)
    }

    /// Reads more bytes into `buf`; returns how many (0 at EOF).
    async fn fill(&mut self) -> Result<usize, ClientError> {
        let old = self.buf.len();
        self.buf.resize(old + 16 * 1024, 0);
        let r = self.io.read(&mut self.buf[old..]).await;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        r.map_err(classify_io)
    }

    async fn fill_or_eof(&mut self, what: &str) -> Result<(), ClientError> {
        if self.fill().await? == 0 {
            return Err(ClientError::Http(format!(
                "connection closed in the middle of {what}"
            )));
        }
        Ok(())
    }

    async fn read_answer(&mut self, head_request: bool) -> Result<Answer, ClientError> {
        loop {
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i + 4;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(ClientError::Http(format!(
                        "response head larger than {MAX_HEAD} bytes"
                    )));
                }
                self.fill_or_eof("the response head").await?;
            };
            let head = parse_head(&self.buf[..head_end])?;
            self.buf.drain(..head_end);
            if (100..200).contains(&head.status) {
                continue; // 100 Continue and friends: the real answer follows.
            }
            let no_body = head_request || head.status == 204 || head.status == 304;
            let (body, to_eof) = if no_body {
                (Vec::new(), false)
            } else if head.chunked {
                (self.read_chunked().await?, false)
            } else if let Some(len) = head.content_length {
                (self.read_exact_body(len).await?, false)
            } else {
                (self.read_to_eof().await?, true)
            };
            return Ok(Answer {
                status: head.status,
                body,
                keep_alive: head.keep_alive && !to_eof,
            });
        }
    }

    async fn read_exact_body(&mut self, len: usize) -> Result<Vec<u8>, ClientError> {
        if len > MAX_BODY {
            return Err(ClientError::Http(format!(
                "body of {len} bytes is over the limit"
            )));
        }
        while self.buf.len() < len {
            self.fill_or_eof("the response body").await?;
        }
        let rest = self.buf.split_off(len);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    async fn read_to_eof(&mut self) -> Result<Vec<u8>, ClientError> {
        while self.fill().await? > 0 {
            if self.buf.len() > MAX_BODY {
                return Err(ClientError::Http("body over the limit".into()));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ClientError::Http("chunk header line too long".into()));
            }
            self.fill_or_eof("a chunked body").await?;
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_hex = line.split(|b| *b == b';').next().unwrap_or(&[]);
            let size_hex = std::str::from_utf8(size_hex)
                .map_err(|_| ClientError::Http("bad chunk size".into()))?
                .trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| ClientError::Http(format!("bad chunk size {size_hex:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(ClientError::Http("chunked body over the limit".into()));
            }
            while self.buf.len() < size + 2 {
                self.fill_or_eof("a chunk").await?;
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ClientError::Http("chunk not followed by CRLF".into()));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

fn parse_head(raw: &[u8]) -> Result<Head, ClientError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ClientError::Http("response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(ClientError::Http(format!(
                "bad status line {status_line:?}"
            )));
        }
    };
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| ClientError::Http(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        content_length: None,
        chunked: false,
        keep_alive: !http10,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ClientError::Http(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse()
                .map_err(|_| ClientError::Http(format!("bad Content-Length {value:?}")))?;
            if head.content_length.is_some_and(|l| l != len) {
                return Err(ClientError::Http(
                    "conflicting Content-Length headers".into(),
                ));
            }
            head.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !head.chunked {
                return Err(ClientError::Http(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.keep_alive = true;
                }
            }
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_head() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\n").unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                content_length: Some(12),
                chunked: false,
                keep_alive: true
            }
        );
    }

    #[test]
    fn connection_close_and_http10() {
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn chunked_and_errors() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(h.chunked);
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Err(ClientError::Http(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes_requests() {
        let tls = crate::client::tls_config_from_pem(
            rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .unwrap()
                .cert
                .pem()
                .as_bytes(),
        )
        .unwrap();
        let rest = Rest::new("https://localhost:8443/base/", tls).unwrap();
        let msg = rest.encode("POST", "/api/x", Some("tok"), Some(b"{}"));
        assert_eq!(
            String::from_utf8(msg).unwrap(),
            "POST /base/api/x HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: ctrl-loadtest\r\n\
             Accept: application/json\r\nAuthorization: Bearer tok\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let msg = rest.encode("GET", "/healthz", None, None);
        assert!(
            String::from_utf8(msg)
                .unwrap()
                .ends_with("Accept: application/json\r\n\r\n")
        );
        assert_eq!(
            rest.wss_url("/ws/agents"),
            "wss://localhost:8443/base/ws/agents"
        );
    }
}
