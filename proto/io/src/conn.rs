//! Opening one TLS connection to the panel: resolve, TCP connect (Nagle off), TLS handshake.
//! Shared by the REST client and the WebSocket connector. The socket is a plain
//! `Async<TcpStream>` (no `Arc` around it, as smol's `TcpStream` has): one allocation less
//! per connection, which counts at 10,000 simulated agents.

use std::future::Future;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;
use futures_rustls::TlsConnector;

use crate::error::is_tls;
use crate::{ClientError, Url};

/// A client TLS stream over a smol TCP socket.
pub type TlsConn = futures_rustls::client::TlsStream<Async<TcpStream>>;

/// Connects to `url` (trying each resolved address in turn) and completes the TLS
/// handshake against `tls`. No deadline of its own: wrap it in [`with_deadline`].
pub async fn connect_tls(
    url: &Url,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<TlsConn, ClientError> {
    let name = url.server_name()?;
    let connect_err = |source| ClientError::Connect {
        addr: url.authority(),
        source,
    };
    let mut last_err = None;
    for addr in url.resolve().await? {
        match Async::<TcpStream>::connect(addr).await {
            Ok(tcp) => {
                // Requests and frames are small and latency-bound.
                tcp.get_ref().set_nodelay(true).map_err(connect_err)?;
                return TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        if is_tls(&e) {
                            ClientError::Tls(format!("handshake with {}: {e}", url.authority()))
                        } else {
                            connect_err(e)
                        }
                    });
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(connect_err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

/// `fut`, failing with [`ClientError::Timeout`] after `deadline`.
///
/// A plain function returning the combined future, not an `async fn`: an `async fn` keeps its
/// arguments in its state for its whole life, so `fut` would be stored twice (argument and
/// inside the race) — for a WebSocket connect that is kilobytes per simulated agent.
pub fn with_deadline<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> impl Future<Output = Result<T, ClientError>> {
    futures_lite::future::or(fut, async move {
        async_io::Timer::after(deadline).await;
        Err(ClientError::Timeout(deadline))
    })
}
