//! The one error type of the client library, so callers (loadtest's statistics, the e2e
//! tests) can tell a refused request from a broken socket without parsing messages.

use std::fmt;

/// Everything that can go wrong talking to a panel.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect refused, reset, unexpected EOF, ...).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration or handshake failed (bad CA file, certificate mismatch, ...).
    #[error("tls: {0}")]
    Tls(String),
    /// The server answered a WebSocket upgrade (or a typed helper's request) with a
    /// non-success status.
    #[error("rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    /// The server's HTTP answer could not be understood (bad status line, bad chunking,
    /// head or body over the limit).
    #[error("http: {0}")]
    Http(String),
    /// A body was not the JSON we expected.
    #[error("json: {0}")]
    Json(String),
    /// The URL is not an `https://` or `wss://` URL we can use.
    #[error("url: {0}")]
    Url(String),
    /// The WebSocket protocol failed after the handshake started.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// No answer within the client's deadline.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl ClientError {
    /// A short, stable name for statistics ("errors by kind").
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Io(_) => ErrorKind::Io,
            ClientError::Tls(_) => ErrorKind::Tls,
            ClientError::Rejected { .. } => ErrorKind::Rejected,
            ClientError::Http(_) => ErrorKind::Http,
            ClientError::Json(_) => ErrorKind::Json,
            ClientError::Url(_) => ErrorKind::Url,
            ClientError::WebSocket(_) => ErrorKind::WebSocket,
            ClientError::Timeout(_) => ErrorKind::Timeout,
        }
    }
}

/// [`ClientError`] without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Io,
    Tls,
    Rejected,
    Http,
    Json,
    Url,
    WebSocket,
    Timeout,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Tls => "tls",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Http => "http",
            ErrorKind::Json => "json",
            ErrorKind::Url => "url",
            ErrorKind::WebSocket => "websocket",
            ErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<rustls::Error> for ClientError {
    fn from(e: rustls::Error) -> Self {
        ClientError::Tls(e.to_string())
    }
}

impl From<serde_json::Error> for ClientError {
    fn from(e: serde_json::Error) -> Self {
        ClientError::Json(e.to_string())
    }
}

/// Turns an I/O error that really carries a TLS alert/certificate failure into
/// [`ClientError::Tls`] (futures-rustls reports handshake failures as `io::Error` with
/// `InvalidData` wrapping a `rustls::Error`).
pub(crate) fn classify_io(e: std::io::Error) -> ClientError {
    if e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
    {
        return ClientError::Tls(e.to_string());
    }
    ClientError::Io(e)
}
