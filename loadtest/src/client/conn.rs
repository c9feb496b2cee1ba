//! Opening one TLS connection to the panel: resolve, TCP connect (Nagle off), TLS handshake.
//! Shared by the REST client and the WebSocket connector.

use std::net::TcpStream;
use std::sync::Arc;

use async_io::Async;
use futures_rustls::TlsConnector;

use super::ClientError;
use super::error::classify_io;
use super::url::Target;

/// A client TLS stream over a smol TCP socket.
pub type TlsConn = futures_rustls::client::TlsStream<Async<TcpStream>>;

/// Connects to `target` (trying each resolved address in turn) and completes the TLS
/// handshake against `tls`.
pub async fn connect_tls(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<TlsConn, ClientError> {
    let name = target.server_name()?;
    let mut last_err = None;
    for addr in target.resolve().await? {
        match Async::<TcpStream>::connect(addr).await {
            Ok(tcp) => {
                // Requests and frames are small and latency-bound.
                tcp.get_ref().set_nodelay(true)?;
                return TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(classify_io);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(ClientError::Io(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}
