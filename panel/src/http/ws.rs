//! WebSocket handshake (RFC 6455 §4.2) and the upgraded byte stream.
//!
//! The handshake is done by hand so the route handler can authenticate first and so the
//! server keeps control of limits. Bytes the client sent right after its handshake (often
//! in the same TCP segment — a first frame) were already read into the HTTP buffer; the
//! [`Upgraded`] wrapper replays them before reading from the socket again, so nothing is
//! lost. The replay buffer is freed as soon as it is drained.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use base64::Engine as _;
use futures_lite::{AsyncRead, AsyncWrite};

/// The TLS stream type of an accepted connection.
pub type TlsConn = futures_rustls::server::TlsStream<super::cork::Corked<super::socket::Socket>>;

/// A WebSocket over an upgraded panel connection.
pub type WsStream = async_tungstenite::WebSocketStream<Upgraded>;

/// The socket after a successful upgrade: the TLS stream plus bytes read past the request
/// head, which are returned first.
pub struct Upgraded {
    io: UpgradedIo,
    pre: Vec<u8>,
    pos: usize,
}

/// What an [`Upgraded`] wraps: the server's TLS stream, or any stream (tests, tools).
enum UpgradedIo {
    Tls(Box<TlsConn>),
    Other(Box<dyn AsyncIo>),
}

/// Object-safe bundle of the traits an upgraded stream needs.
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("replay_pending", &(self.pre.len() - self.pos))
            .finish_non_exhaustive()
    }
}

impl Upgraded {
    /// Wraps the server's TLS stream; `pre` is replayed before the socket is read.
    pub fn new(io: TlsConn, pre: Vec<u8>) -> Upgraded {
        Upgraded {
            io: UpgradedIo::Tls(Box::new(io)),
            pre,
            pos: 0,
        }
    }

    /// Wraps any stream (used by tests and tools that bridge sockets).
    pub fn from_stream(io: impl AsyncIo + 'static, pre: Vec<u8>) -> Upgraded {
        Upgraded {
            io: UpgradedIo::Other(Box::new(io)),
            pre,
            pos: 0,
        }
    }

    fn io(&mut self) -> Pin<&mut dyn AsyncIo> {
        match &mut self.io {
            UpgradedIo::Tls(t) => Pin::new(&mut **t),
            UpgradedIo::Other(o) => Pin::new(&mut **o),
        }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pos < this.pre.len() {
            let n = buf.len().min(this.pre.len() - this.pos);
            buf[..n].copy_from_slice(&this.pre[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pre.len() {
                this.pre = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        this.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_close(cx)
    }
}

/// How much tungstenite gathers before writing to the socket (its default): a batch of
/// frames becomes one TLS write.
pub const WS_WRITE_BUFFER: usize = 128 * 1024;
/// Room for the control frames tungstenite queues by itself (pongs, a close).
const CONTROL_SLACK: usize = 4 * 1024;

/// Limits for an upgraded socket that accepts messages of at most `max_in` bytes and is sent
/// frames of at most `max_out` bytes.
///
/// The write buffer is bounded (tungstenite's default is unbounded): a peer that does not
/// read cannot make the panel queue without limit — not even the pongs tungstenite answers
/// every ping with. Once the buffer is full, further pongs replace the one pending instead of
/// queueing, and a frame of ours that does not fit is an error that ends the connection;
/// the bound fits one batch plus the largest frame, so a peer that reads never hits it.
pub fn socket_config(max_in: usize, max_out: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(super::server::WS_READ_BUFFER_MAX)
        .max_message_size(Some(max_in))
        .max_frame_size(Some(max_in))
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_WRITE_BUFFER + max_out + CONTROL_SLACK)
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(client_key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(client_key.as_bytes());
    ctx.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Validates a WebSocket opening handshake and returns the `Sec-WebSocket-Accept` value,
/// or the reason it is not a valid handshake. `get` looks up a header (case-insensitive).
pub fn check_handshake<'a>(
    is_get: bool,
    is_http11: bool,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, &'static str> {
    if !is_get {
        return Err("a WebSocket handshake must use GET");
    }
    if !is_http11 {
        return Err("a WebSocket handshake needs HTTP/1.1");
    }
    if !has_token(get("upgrade"), "websocket") {
        return Err("missing 'Upgrade: websocket' header");
    }
    if !has_token(get("connection"), "upgrade") {
        return Err("missing 'Connection: Upgrade' header");
    }
    if get("sec-websocket-version").map(str::trim) != Some("13") {
        return Err("unsupported Sec-WebSocket-Version (only 13 is supported)");
    }
    let key = get("sec-websocket-key")
        .map(str::trim)
        .ok_or("missing Sec-WebSocket-Key header")?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(accept_key(key)),
        _ => Err("Sec-WebSocket-Key must be 16 bytes, base64-encoded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt as _;

    #[test]
    fn rfc6455_example_accept() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn headers(list: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<&'static str> {
        let list = list.to_vec();
        move |n: &str| {
            list.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn handshake_validation() {
        let good = [
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            check_handshake(true, true, headers(&good)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(check_handshake(false, true, headers(&good)).is_err());
        assert!(check_handshake(true, false, headers(&good)).is_err());
        for (i, bad) in [
            ("upgrade", "h2c"),
            ("connection", "close"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "c2hvcnQ="),
        ]
        .into_iter()
        .enumerate()
        {
            let mut h = good;
            h[i] = bad;
            assert!(check_handshake(true, true, headers(&h)).is_err(), "{bad:?}");
        }
        assert!(check_handshake(true, true, headers(&good[..3])).is_err());
    }

    #[test]
    fn upgraded_replays_prefix_first() {
        let inner = futures_lite::io::Cursor::new(b" world".to_vec());
        let mut up = Upgraded::from_stream(inner, b"hello".to_vec());
        let mut out = String::new();
        smol::block_on(up.read_to_string(&mut out)).unwrap();
        assert_eq!(out, "hello world");
        assert!(
            up.pre.is_empty() && up.pre.capacity() == 0,
            "replay buffer freed"
        );
    }
}
