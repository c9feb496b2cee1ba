//! The one error type of the client stack, so callers (the agent's reconnect logic,
//! loadtest's statistics, the tests) can tell a refused request from a broken socket without
//! parsing messages.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong talking to a panel.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (reset, unexpected EOF, ...).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// TCP connect (or the socket under the TLS handshake) failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// TLS configuration or handshake failed (bad CA file, certificate mismatch, ...).
    #[error("tls: {0}")]
    Tls(String),
    /// The server answered a WebSocket upgrade or a typed helper's request with a
    /// non-success status.
    #[error("rejected with HTTP {status}: {}", summary(.body))]
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
    Timeout(Duration),
}

/// The panel's `{"error":{"code","message"}}` when the body is one, else its first bytes.
fn summary(body: &str) -> String {
    match serde_json::from_str::<proto::rest::ApiError>(body) {
        Ok(e) => format!("{}: {}", e.error.code, e.error.message),
        Err(_) => {
            let mut end = body.len().min(256);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body[..end].to_owned()
        }
    }
}

impl ClientError {
    /// A short, stable name for statistics ("errors by kind").
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Io(_) | ClientError::Connect { .. } => ErrorKind::Io,
            ClientError::Tls(_) => ErrorKind::Tls,
            ClientError::Rejected { .. } => ErrorKind::Rejected,
            ClientError::Http(_) => ErrorKind::Http,
            ClientError::Json(_) => ErrorKind::Json,
            ClientError::Url(_) => ErrorKind::Url,
            ClientError::WebSocket(_) => ErrorKind::WebSocket,
            ClientError::Timeout(_) => ErrorKind::Timeout,
        }
    }

    /// The panel's error code of a rejection (`AUTH_FAILED`, ...), when it sent one.
    pub fn api_code(&self) -> Option<String> {
        match self {
            ClientError::Rejected { body, .. } => {
                serde_json::from_str::<proto::rest::ApiError>(body)
                    .ok()
                    .map(|e| e.error.code)
            }
            _ => None,
        }
    }

    /// True when the panel said the credentials are no good (401 / `AUTH_FAILED`): retrying
    /// the same call cannot succeed.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ClientError::Rejected { status: 401, .. })
            || self.api_code().as_deref() == Some(proto::ErrorCode::AuthFailed.as_str())
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
    if is_tls(&e) {
        return ClientError::Tls(e.to_string());
    }
    ClientError::Io(e)
}

pub(crate) fn is_tls(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, body: &str) -> ClientError {
        ClientError::Rejected {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn rejections_carry_the_panels_code_and_message() {
        let e = rejected(
            401,
            r#"{"success":false,"error":{"code":"AUTH_FAILED","message":"bad token"}}"#,
        );
        assert!(e.is_auth_failure());
        assert_eq!(e.api_code().as_deref(), Some("AUTH_FAILED"));
        assert_eq!(
            e.to_string(),
            "rejected with HTTP 401: AUTH_FAILED: bad token"
        );
        let e = rejected(
            400,
            r#"{"success":false,"error":{"code":"AUTH_FAILED","message":"x"}}"#,
        );
        assert!(e.is_auth_failure(), "the code alone says so");
        let e = rejected(500, "oops");
        assert!(!e.is_auth_failure());
        assert_eq!(e.api_code(), None);
        assert!(e.to_string().contains("oops"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Rejected);
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(300);
        let text = rejected(502, &body).to_string();
        assert!(text.len() < 300, "{}", text.len());
    }
}
