//! WebSocket over TLS (`wss://`) with async-tungstenite on our own TLS stream, so the
//! buffers can be sized per use: thousands of mostly idle agent sockets in one process
//! (loadtest), one busy event subscriber, or the agent's one link.

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::classify_io;
use crate::{ClientError, Scheme, TlsConn, Url, connect_tls, with_deadline};

/// A connected client WebSocket.
pub type Ws = async_tungstenite::WebSocketStream<TlsConn>;

/// Largest frame/message accepted from the panel (the protocol's default max frame).
pub const MAX_MESSAGE: usize = proto::codec::DEFAULT_MAX_FRAME;

/// Buffers for a mostly idle agent socket: a 4 KiB read buffer (tungstenite's default is
/// 128 KiB, eagerly allocated — 1.25 GiB for 10k agents) and eager writes.
pub fn small_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Buffers for a busy reader, e.g. an `/api/events` subscriber receiving every event.
/// 32 KiB, not tungstenite's 128 KiB: tungstenite zero-fills the whole free read buffer
/// before every read, and a read returns at most about one 16 KiB TLS record.
pub fn large_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(32 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// How [`ws_connect_with`] connects.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    pub config: WebSocketConfig,
    /// Deadline for TCP connect + TLS handshake + upgrade.
    pub timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            config: small_config(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Connects `wss://host:port/path`, sends the extra headers; a non-101 answer is
/// [`ClientError::Rejected`] with the status and body.
pub async fn ws_connect(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
) -> Result<Ws, ClientError> {
    ws_connect_with(url, tls, headers, WsOptions::default()).await
}

/// [`ws_connect`] with explicit buffer sizes and deadline.
pub async fn ws_connect_with(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
    options: WsOptions,
) -> Result<Ws, ClientError> {
    let target = Url::parse_as(url, Scheme::Wss)?;
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Url(format!("{url:?}: {e}")))?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ClientError::Http(format!("bad header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ClientError::Http(format!("bad value for header {name}")))?;
        request.headers_mut().insert(name, value);
    }
    let connect = async {
        let stream = connect_tls(&target, &tls).await?;
        async_tungstenite::client_async_with_config(request, stream, Some(options.config))
            .await
            .map(|(ws, _response)| ws)
            .map_err(ws_error)
    };
    with_deadline(options.timeout, connect).await
}

/// Connects an agent's WebSocket (`Authorization: Bearer <token>`, `X-Agent-ID: <id>`) to
/// `url` — normally the registration's `websocketUrl` or `rest.wss_url("/ws/agents")`.
pub async fn connect_agent(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    agent_id: &str,
    token: &str,
) -> Result<Ws, ClientError> {
    connect_agent_with(url, tls, agent_id, token, WsOptions::default()).await
}

/// [`connect_agent`] with explicit options.
pub async fn connect_agent_with(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    agent_id: &str,
    token: &str,
    options: WsOptions,
) -> Result<Ws, ClientError> {
    let bearer = format!("Bearer {token}");
    ws_connect_with(
        url,
        tls,
        &[("Authorization", &bearer), ("X-Agent-ID", agent_id)],
        options,
    )
    .await
}

/// Maps a tungstenite error to [`ClientError`] (a refused upgrade keeps status and body).
pub fn ws_error(e: WsError) -> ClientError {
    match e {
        WsError::Http(response) => ClientError::Rejected {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        },
        WsError::Io(e) => classify_io(e),
        WsError::Tls(e) => ClientError::Tls(e.to_string()),
        other => ClientError::WebSocket(other.to_string()),
    }
}
