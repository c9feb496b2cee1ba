//! A minimal HTTPS/1.1 client with keep-alive, written by hand so that thousands of
//! operator calls per second cost one small struct each and no framework. The agent uses it
//! for its two REST calls, loadtest and the tests for everything.
//!
//! Connections are pooled: a request takes an idle connection (or opens one), and puts it
//! back when the answer allowed keep-alive. A pooled connection the server has closed in
//! the meantime is detected (write failure or EOF before any answer byte) and the request is
//! retried once on a fresh connection. The pool lock is held only for push/pop.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::classify_io;
use crate::http::{HttpConn, ReadOptions, Response};
use crate::{ClientError, Scheme, TlsConn, Url, connect_tls, with_deadline};

/// Default largest response body accepted.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;
/// Idle connections kept per client.
const MAX_IDLE: usize = 64;
/// Default deadline for one request (connect + send + whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `User-Agent`.
const DEFAULT_USER_AGENT: &str = concat!("ctrl-io/", env!("CARGO_PKG_VERSION"));

/// HTTPS/1.1 keep-alive client to one panel.
pub struct Rest {
    url: Url,
    /// Path prefix of the base URL, without trailing `/` (usually empty).
    prefix: String,
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<Vec<HttpConn<TlsConn>>>,
    timeout: Duration,
    max_body: usize,
    user_agent: &'static str,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client for `base_url` (`"https://127.0.0.1:8443"`, optionally with a path prefix).
    /// No connection is opened yet.
    pub fn new(base_url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Rest, ClientError> {
        let url = Url::parse_as(base_url, Scheme::Https)?;
        if url.path.contains('?') {
            return Err(ClientError::Url(format!(
                "{base_url:?}: a base URL cannot carry a query"
            )));
        }
        let prefix = url.path.trim_end_matches('/').to_owned();
        Ok(Rest {
            url,
            prefix,
            tls,
            idle: Mutex::new(Vec::new()),
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            user_agent: DEFAULT_USER_AGENT,
        })
    }

    /// Replaces the per-request deadline (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Rest {
        self.timeout = timeout;
        self
    }

    /// Replaces the largest response body accepted (default [`DEFAULT_MAX_BODY`]).
    pub fn with_max_body(mut self, max_body: usize) -> Rest {
        self.max_body = max_body;
        self
    }

    /// Replaces the `User-Agent` header (default `ctrl-io/VERSION`).
    pub fn with_user_agent(mut self, user_agent: &'static str) -> Rest {
        self.user_agent = user_agent;
        self
    }

    /// The TLS configuration this client uses (handy for WebSocket connections).
    pub fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }

    /// `wss://host:port<prefix><path>` for a WebSocket endpoint of the same panel.
    pub fn wss_url(&self, path: &str) -> String {
        format!("wss://{}{}{}", self.url.authority(), self.prefix, path)
    }

    /// `https://host:port<prefix>`.
    pub fn base_url(&self) -> String {
        format!("https://{}{}", self.url.authority(), self.prefix)
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
        let opts = ReadOptions {
            head_request: method == "HEAD",
            max_body: self.max_body,
            keep_head: false,
        };
        let answer = with_deadline(self.timeout, self.send(msg, opts)).await?;
        Ok((answer.status, answer.body))
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
        msg.extend_from_slice(self.url.authority().as_bytes());
        msg.extend_from_slice(b"\r\nUser-Agent: ");
        msg.extend_from_slice(self.user_agent.as_bytes());
        msg.extend_from_slice(b"\r\nAccept: application/json\r\n");
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

    async fn send(&self, msg: Vec<u8>, opts: ReadOptions) -> Result<Response, ClientError> {
        loop {
            let pooled = self.idle.lock().pop();
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => HttpConn::new(connect_tls(&self.url, &self.tls).await?),
            };
            match round_trip(&mut conn, &msg, opts).await {
                Ok(answer) => {
                    if answer.keep_alive {
                        let mut idle = self.idle.lock();
                        if idle.len() < MAX_IDLE {
                            idle.push(conn);
                        }
                    }
                    return Ok(answer);
                }
                // The server closed an idle keep-alive connection: not an answer, retry fresh.
                Err(Failure::Stale(_)) if reused => continue,
                Err(Failure::Stale(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

enum Failure {
    /// Nothing of an answer arrived (write failed, or EOF/reset before the first byte).
    Stale(ClientError),
    Other(ClientError),
}

async fn round_trip(
    conn: &mut HttpConn<TlsConn>,
    msg: &[u8],
    opts: ReadOptions,
) -> Result<Response, Failure> {
    if let Err(e) = conn.send(msg).await {
        return Err(Failure::Stale(classify_io(e)));
    }
    if conn.buffered() == 0 {
        match conn.fill().await {
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
    conn.read_response(opts).await.map_err(Failure::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(base: &str) -> Rest {
        let tls = crate::tls_config_from_pem(
            rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .unwrap()
                .cert
                .pem()
                .as_bytes(),
        )
        .unwrap();
        Rest::new(base, tls).unwrap()
    }

    #[test]
    fn encodes_requests_under_the_base_path() {
        let rest = rest("https://localhost:8443/base/").with_user_agent("ctrl-loadtest");
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
        let msg = rest.encode("POST", "/x", None, None);
        assert!(
            String::from_utf8(msg)
                .unwrap()
                .ends_with("Content-Length: 0\r\n\r\n")
        );
        assert_eq!(
            rest.wss_url("/ws/agents"),
            "wss://localhost:8443/base/ws/agents"
        );
        assert_eq!(rest.base_url(), "https://localhost:8443/base");
        let agent = self::rest("https://h/").with_user_agent("ctrl-agent/1");
        let msg = String::from_utf8(agent.encode("GET", "/a", None, None)).unwrap();
        assert!(
            msg.contains("\r\nHost: h\r\nUser-Agent: ctrl-agent/1\r\n"),
            "{msg}"
        );
    }

    #[test]
    fn base_urls_are_https_without_query() {
        let tls = rest("https://h").tls().clone();
        for bad in ["wss://h/ws", "http://h", "https://h/?q=1"] {
            assert!(
                matches!(Rest::new(bad, tls.clone()), Err(ClientError::Url(_))),
                "{bad}"
            );
        }
    }
}
