//! The accept loop and per-connection HTTP handling.
//!
//! One task per connection. The expensive, short-lived part — TLS handshake, reading and
//! answering requests — runs in a boxed future so that the task that remains for an
//! upgraded WebSocket is a few pointers wide (memory per idle socket matters: the panel
//! holds one per agent and per event subscriber). Every wait is bounded: the handshake by
//! `tls_handshake_timeout`, a request (head + body) by `request_timeout` (then 408 and
//! close), an idle keep-alive connection by `keepalive_idle`, and each response write by
//! `request_timeout`. Above `max_conns` a new socket is closed at once. `max_conns_per_ip`
//! bounds each client IP's connections as described in [`super::slots`]: a connection whose
//! first request completes while its IP has that many established connections gets 429
//! `RATE_LIMITED` (after TLS, so it can read why) and is closed, and a new connection evicts
//! its IP's oldest one still waiting for its first request, so slow clients cannot lock a
//! prompt client of the same IP out.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::body::{self, BodyStream, Streamed, alongside};
use super::cork::Corked;
use super::parse::{
    Conn, Framing, Limits, Parsed, ReadError, encode_head, encode_response, framing,
};
use super::request::{Method, Request};
use super::response::Response;
use super::router::{Reply, Router};
use super::slots::{Eviction, Slot, Slots};
use super::ws::{TlsConn, Upgraded, check_handshake};
use crate::shutdown::Shutdown;
use async_io::{Async, Timer};
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::future::{self, Boxed};
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _, FutureExt as _, StreamExt as _};

/// How long [`serve`] waits, after shutdown, for in-flight HTTP requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a closing connection keeps draining unread input (so the peer sees our last
/// response instead of a reset), and the most it drains.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Cap on tungstenite's `read_buffer_size` for upgraded sockets. Tungstenite allocates that
/// buffer eagerly for every socket and keeps it for the socket's life, and its default
/// (128 KiB) would dominate the memory of an idle WebSocket; it is also the most one read
/// asks for. Larger frames still work: tungstenite reserves a frame's whole length once its
/// header is read and fills it in steps of this size, each a copy out of rustls's already
/// decrypted record, not a system call. 512 bytes hold an agent's usual frame (events,
/// pongs, acknowledgments are a few hundred bytes) and cost half of what 1 KiB did per idle
/// agent (BENCHMARKS.md, round 4, item 4); tungstenite zero-fills the free buffer before
/// every read, so a small buffer is also cheaper per frame.
pub const WS_READ_BUFFER_MAX: usize = 512;

/// Limits and timeouts of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Request line + headers; more is 431 `HEADERS_TOO_LARGE`.
    pub max_header_bytes: usize,
    /// Request body; more is 413 `PAYLOAD_TOO_LARGE`.
    pub max_body_bytes: usize,
    /// Request body of a streaming route (uploads, see [`super::body`]); more is 413.
    pub max_upload_bytes: usize,
    /// TLS handshake must complete within this.
    pub tls_handshake_timeout: Duration,
    /// Head + body must arrive within this once a request has started (else 408 + close);
    /// also bounds writing each response.
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_idle: Duration,
    /// Connections per client IP, established and pending each (see [`super::slots`]);
    /// 0 = unlimited. Excess established → 429 `RATE_LIMITED` + close; excess pending →
    /// the oldest pending one is closed.
    pub max_conns_per_ip: usize,
    /// Open connections in total (0 = unlimited); excess connections are closed at once.
    pub max_conns: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 1 << 30,
            tls_handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            keepalive_idle: Duration::from_secs(60),
            max_conns_per_ip: 0,
            max_conns: 50_000,
        }
    }
}

/// Server counters (monotonic unless noted), for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Currently open connections (gauge), including upgraded WebSockets.
    pub connections_open: AtomicU64,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Connections refused by the global or per-IP cap.
    pub connections_rejected: AtomicU64,
    /// Connections closed before their first request was complete, to make room for a
    /// newer connection of the same IP.
    pub connections_evicted: AtomicU64,
    /// Failed or timed-out TLS handshakes (includes plaintext HTTP on the TLS port).
    pub tls_failures: AtomicU64,
    /// Completed TLS handshakes.
    pub tls_handshakes: AtomicU64,
    /// Completed TLS handshakes that resumed a session from a ticket (no certificate,
    /// no signature); the others were full handshakes.
    pub tls_resumed: AtomicU64,
    /// Requests fully received and dispatched.
    pub requests_total: AtomicU64,
    /// Requests refused by the parser (400/413/431/501/505/417).
    pub requests_rejected: AtomicU64,
    /// Requests that timed out while being received (408).
    pub request_timeouts: AtomicU64,
    /// Successful WebSocket upgrades.
    pub upgrades_total: AtomicU64,
}

impl ServerStats {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    router: Arc<Router>,
    cfg: ServerConfig,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
    acceptor: futures_rustls::TlsAcceptor,
    slots: Slots,
}

/// Counts a connection for its lifetime (global gauge and its per-IP slot).
struct ConnGuard {
    shared: Arc<Shared>,
    slot: Slot,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.shared.slots.release(self.slot);
    }
}

/// Listen backlog of [`bind`] (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket for [`serve`] with `SO_REUSEADDR` and a deep accept backlog.
///
/// `std`'s `TcpListener::bind` uses a backlog of 128: when thousands of agents reconnect at
/// once (panel restart), the excess SYNs are dropped and those agents wait a full TCP
/// retransmission timeout before retrying.
pub fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, SockaddrStorage};
    use std::os::fd::AsRawFd as _;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = sock::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    sock::setsockopt(&fd, sock::sockopt::ReuseAddr, &true)?;
    sock::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    sock::listen(&fd, sock::Backlog::new(LISTEN_BACKLOG)?)?;
    Async::new(TcpListener::from(fd))
}

/// Runs `fut` with a deadline; `None` if it passed.
async fn deadline<T>(at: Instant, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::at(at).await;
        None
    })
    .await
}

fn transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}

/// Accepts until `shutdown` fires, then stops accepting, lets in-flight HTTP requests
/// finish (at most [`SHUTDOWN_GRACE`]) and returns. Upgraded WebSocket tasks are the app's
/// responsibility (the app watches the same [`Shutdown`] and closes them).
///
/// Connection tasks run on smol's global executor.
pub async fn serve(
    listener: Async<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    router: Arc<Router>,
    cfg: ServerConfig,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let cfg_per_ip = cfg.max_conns_per_ip;
    let shared = Arc::new(Shared {
        router,
        cfg,
        stats,
        shutdown: shutdown.clone(),
        acceptor: futures_rustls::TlsAcceptor::from(tls),
        slots: Slots::new(cfg_per_ip),
    });
    // Every HTTP-phase task holds a clone; when all are gone, `recv` fails: nothing in flight.
    let (inflight_tx, inflight_rx) = async_channel::bounded::<()>(1);
    let mut at_cap = false;
    let mut accepted_since_yield = 0u32;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let (tcp, peer) = match accepted {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) if transient_accept_error(&e) => {
                log::warn!("accept failed (retrying): {e}");
                if e.raw_os_error()
                    .is_some_and(|c| c == libc::EMFILE || c == libc::ENFILE)
                {
                    Timer::after(Duration::from_millis(100)).await;
                }
                continue;
            }
            Some(Err(e)) => return Err(e),
        };
        // Under a connection storm `accept` is always ready; stay cooperative with other
        // tasks that share this executor.
        accepted_since_yield += 1;
        if accepted_since_yield == 64 {
            accepted_since_yield = 0;
            future::yield_now().await;
        }
        let stats = &shared.stats;
        bump(&stats.connections_total);
        let open = stats.connections_open.load(Ordering::Relaxed);
        if shared.cfg.max_conns > 0 && open >= shared.cfg.max_conns as u64 {
            bump(&stats.connections_rejected);
            // Log the edge, not every refused connection (a flood would drown the log).
            if !at_cap {
                log::warn!(
                    "connection cap of {} reached; refusing new connections (first: {peer})",
                    shared.cfg.max_conns
                );
                at_cap = true;
            }
            drop(tcp);
            continue;
        }
        if at_cap {
            log::info!("below the connection cap again; accepting");
            at_cap = false;
        }
        let _ = tcp.get_ref().set_nodelay(true);
        let admitted = shared.slots.admit(peer.ip().to_canonical());
        if admitted.evicted_other {
            bump(&stats.connections_evicted);
        }
        stats.connections_open.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard {
            shared: shared.clone(),
            slot: admitted.slot,
        };
        crate::exec::spawn(connection(
            guard,
            tcp,
            peer,
            admitted.eviction,
            inflight_tx.clone(),
        ))
        .detach();
    }
    drop(listener);
    drop(inflight_tx);
    future::or(
        async {
            let _ = inflight_rx.recv().await;
        },
        async {
            Timer::after(SHUTDOWN_GRACE).await;
            log::warn!("shutdown grace period over; abandoning in-flight requests");
        },
    )
    .await;
    Ok(())
}

/// The long-lived task of one connection: small by construction (see the module docs).
async fn connection(
    mut guard: ConnGuard,
    tcp: Async<TcpStream>,
    peer: SocketAddr,
    eviction: Option<Eviction>,
    inflight: async_channel::Sender<()>,
) {
    let shared = guard.shared.clone();
    let upgraded = Box::pin(http_phase(shared, tcp, peer, &mut guard.slot, eviction)).await;
    drop(inflight);
    if let Some(run) = upgraded
        && AssertUnwindSafe(run).catch_unwind().await.is_err()
    {
        log::error!("WebSocket task for {peer} panicked");
    }
    drop(guard);
}

/// TLS handshake and HTTP requests until the connection closes or is upgraded; for an
/// upgrade, returns the app's WebSocket future.
async fn http_phase(
    shared: Arc<Shared>,
    tcp: Async<TcpStream>,
    peer: SocketAddr,
    slot: &mut Slot,
    mut eviction: Option<Eviction>,
) -> Option<Boxed<()>> {
    let cfg = &shared.cfg;
    let stats = &shared.stats;
    let handshake = future::or(
        async {
            deadline(
                Instant::now() + cfg.tls_handshake_timeout,
                shared
                    .acceptor
                    .accept(Corked::new(super::socket::Socket::new(tcp)))
                    .into_fallible(),
            )
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))
        },
        async {
            future::or(shared.shutdown.wait(), evicted(eviction.as_ref())).await;
            Err(io::Error::other("shutting down or evicted"))
        },
    );
    let tls: TlsConn = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err((e, mut io))) => {
            // The alert rustls wrote (if any) is held: send it if the socket takes it now.
            io.try_drain();
            bump(&stats.tls_failures);
            log::debug!("TLS handshake with {peer} failed: {e}");
            return None;
        }
        // Timed out, shutting down or evicted.
        Err(e) => {
            let evicted = eviction.as_ref().is_some_and(|e| e.is_closed());
            if !shared.shutdown.is_triggered() && !evicted {
                bump(&stats.tls_failures);
            }
            log::debug!("TLS handshake with {peer} failed: {e}");
            return None;
        }
    };
    bump(&stats.tls_handshakes);
    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        bump(&stats.tls_resumed);
    }
    let mut conn = Conn::new(tls);
    let limits = Limits {
        max_header_bytes: cfg.max_header_bytes,
        max_body_bytes: cfg.max_body_bytes,
    };
    let mut first = true;
    loop {
        // Wait for the first byte of the next request.
        if conn.buf.is_empty() {
            conn.shrink_idle();
            let idle = if first {
                cfg.request_timeout
            } else {
                cfg.keepalive_idle
            };
            let got = future::or(
                async { deadline(Instant::now() + idle, conn.fill()).await },
                async {
                    future::or(shared.shutdown.wait(), evicted(eviction.as_ref())).await;
                    None
                },
            )
            .await;
            match got {
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return None, // EOF or error: the client went away.
                None => {
                    // Idle or shutting down: close quietly (close_notify), nothing pending.
                    let _ = deadline(Instant::now() + LINGER, conn.io.close()).await;
                    return None;
                }
            }
        }
        first = false;

        let request_deadline = Instant::now() + cfg.request_timeout;
        let read = future::or(
            deadline(
                request_deadline,
                read_request(&mut conn, &shared.router, &limits, cfg, peer),
            ),
            async {
                evicted(eviction.as_ref()).await;
                Some(Err(ReadError::Eof))
            },
        );
        let read = read.await;
        // From the first request on, writes go out when flushed (see `cork`): the
        // handshake's last bytes (the session ticket) leave with this response.
        conn.io.get_mut().0.release();
        let (mut parsed, streamed) = match read {
            Some(Ok(p)) => p,
            Some(Err(ReadError::Http(e))) => {
                bump(&stats.requests_rejected);
                log::debug!("refusing request from {peer}: {e:?}");
                close_with(&mut conn, &e.to_response(), false, cfg).await;
                return None;
            }
            Some(Err(ReadError::Eof | ReadError::Io(_))) => return None,
            None => {
                bump(&stats.request_timeouts);
                let resp = Response::error_with_status(
                    408,
                    "TIMEOUT",
                    format!(
                        "request not received within {} s",
                        cfg.request_timeout.as_secs_f64()
                    ),
                );
                close_with(&mut conn, &resp, false, cfg).await;
                return None;
            }
        };
        bump(&stats.requests_total);
        let head_only = parsed.request.method == Method::Head;
        // The first request is complete: the connection leaves the pending queue.
        let over_ip_cap = eviction.take().is_some() && !shared.slots.establish(slot);
        if over_ip_cap {
            bump(&stats.connections_rejected);
            let resp = Response::error(
                proto::ErrorCode::RateLimited,
                format!(
                    "too many connections from {} (limit {})",
                    peer.ip(),
                    cfg.max_conns_per_ip
                ),
            );
            close_with(&mut conn, &resp, head_only, cfg).await;
            return None;
        }
        let req = &parsed.request;
        let ws_accept = if req.header("upgrade").is_some() {
            check_handshake(req.method == Method::Get, parsed.http11, |n| req.header(n))
        } else {
            Err("not a WebSocket handshake (no Upgrade header)")
        };
        if ws_accept.is_err() && streamed.is_none() {
            // A plain REST request: this connection's task goes first from now on
            // (commands must not queue behind the events fan-out; see `exec`).
            crate::exec::mark_urgent();
        }
        let keep_alive = parsed.keep_alive;
        // HTTP/1.0 clients only keep a connection open when told so.
        let keep_alive_header = (!parsed.http11).then_some("keep-alive");

        let (reply, panicked, body_read) = match streamed {
            None => {
                let (reply, panicked) = dispatch_catching(&shared.router, parsed.request).await;
                (reply, panicked, true)
            }
            Some(framing) => {
                if conn.send_continue(&mut parsed, framing).await.is_err() {
                    return None;
                }
                let declared = match framing {
                    Framing::Empty => Some(0),
                    Framing::Length(n) => Some(n as u64),
                    Framing::Chunked => None,
                };
                let (tx, stream) = BodyStream::channel(declared);
                parsed.request.stream = Some(stream);
                let pump = body::pump(
                    &mut conn,
                    framing,
                    cfg.max_upload_bytes as u64,
                    &limits,
                    cfg.request_timeout,
                    tx,
                );
                let ((reply, panicked), read) =
                    alongside(dispatch_catching(&shared.router, parsed.request), pump).await;
                (reply, panicked, read == Some(true))
            }
        };
        // A body left (partly) unread cannot be skipped safely: answer, then close.
        let keep_alive = keep_alive && body_read;
        match reply {
            Reply::Stream(streamed) => {
                let close = panicked || !keep_alive || shared.shutdown.is_triggered();
                let connection = if close {
                    Some("close")
                } else {
                    keep_alive_header
                };
                if !send_streamed(&mut conn, streamed, head_only, connection, cfg).await {
                    return None;
                }
                if close {
                    let _ = deadline(Instant::now() + LINGER, conn.io.close()).await;
                    return None;
                }
            }
            Reply::Http(resp) => {
                let close = panicked || !keep_alive || shared.shutdown.is_triggered();
                if close {
                    close_with(&mut conn, &resp, head_only, cfg).await;
                    return None;
                }
                let bytes = encode_response(&resp, head_only, keep_alive_header);
                if !write_all(&mut conn, &bytes, cfg).await {
                    return None;
                }
            }
            Reply::Upgrade { mut config, run } => {
                let accept = match ws_accept {
                    Ok(a) => a,
                    Err(why) => {
                        bump(&stats.requests_rejected);
                        let resp = Response::error(proto::ErrorCode::InvalidMessage, why)
                            .with_header("sec-websocket-version", "13");
                        close_with(&mut conn, &resp, false, cfg).await;
                        return None;
                    }
                };
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
                );
                if !write_all(&mut conn, head.as_bytes(), cfg).await {
                    return None;
                }
                bump(&stats.upgrades_total);
                // Keep only the bytes already received past the head, in an exact-size buffer.
                let pre = if conn.buf.is_empty() {
                    Vec::new()
                } else {
                    conn.buf.as_slice().to_vec()
                };
                config.read_buffer_size = config.read_buffer_size.min(WS_READ_BUFFER_MAX);
                let ws = async_tungstenite::WebSocketStream::from_raw_socket(
                    Upgraded::new(conn.io, pre),
                    Role::Server,
                    Some(config),
                )
                .await;
                return Some(run(ws));
            }
        }
    }
}

/// Reads a request: the head, then the whole body — or, for a route that streams its body,
/// only the head and the body's framing (checked against the upload limit), the body being
/// left on the wire for the handler.
async fn read_request(
    conn: &mut Conn<TlsConn>,
    router: &Router,
    limits: &Limits,
    cfg: &ServerConfig,
    peer: SocketAddr,
) -> Result<(Parsed, Option<Framing>), ReadError> {
    let parsed = conn.read_request_head(limits, peer).await?;
    let req = &parsed.request;
    if router.streams_body(&req.method, &req.path) {
        let framing = framing(&req.headers, cfg.max_upload_bytes)?;
        return Ok((parsed, Some(framing)));
    }
    let framing = framing(&req.headers, limits.max_body_bytes)?;
    Ok((conn.read_request_body(parsed, framing, limits).await?, None))
}

/// Writes a streamed response: the head with its `Content-Length`, then the pieces as they
/// come. `false` when the connection must be dropped: the client went away, or the stream
/// failed, panicked, or did not yield exactly the announced length (the client then sees
/// a short body, never a wrong one).
async fn send_streamed(
    conn: &mut Conn<TlsConn>,
    streamed: Streamed,
    head_only: bool,
    connection: Option<&str>,
    cfg: &ServerConfig,
) -> bool {
    let head = encode_head(&streamed.head, streamed.length, connection);
    if !write_all(conn, &head, cfg).await {
        return false;
    }
    if head_only {
        return true;
    }
    let mut body = streamed.body;
    let mut sent = 0u64;
    loop {
        let next = AssertUnwindSafe(body.next()).catch_unwind().await;
        let piece = match next {
            Ok(None) => break,
            Ok(Some(Ok(piece))) => piece,
            Ok(Some(Err(e))) => {
                log::warn!("streamed response cut after {sent} bytes: {e}");
                return false;
            }
            Err(_) => {
                log::error!("streamed response body panicked after {sent} bytes");
                return false;
            }
        };
        sent = sent.saturating_add(piece.len() as u64);
        if sent > streamed.length {
            log::error!(
                "streamed response ran past its length of {} bytes",
                streamed.length
            );
            return false;
        }
        if !write_all(conn, &piece, cfg).await {
            return false;
        }
    }
    if sent != streamed.length {
        log::warn!(
            "streamed response ended after {sent} of {} bytes",
            streamed.length
        );
        return false;
    }
    true
}

/// Resolves when `eviction` fires (never when there is none).
async fn evicted(eviction: Option<&Eviction>) {
    match eviction {
        // Nothing is ever sent: `recv` returns once the sender is dropped.
        Some(rx) => {
            let _ = rx.recv().await;
        }
        None => future::pending().await,
    }
}

/// Runs the router; a panicking handler becomes a 500 `INTERNAL_ERROR` (and `true`, so
/// the connection is closed) instead of a reset connection.
async fn dispatch_catching(router: &Router, req: Request) -> (Reply, bool) {
    let method = req.method.clone();
    let path = req.path.clone();
    let fut = std::panic::catch_unwind(AssertUnwindSafe(|| router.dispatch(req)));
    let outcome = match fut {
        Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
        Err(p) => Err(p),
    };
    match outcome {
        Ok(reply) => (reply, false),
        Err(_) => {
            log::error!("handler for {method} {path} panicked");
            let resp = Response::error(
                proto::ErrorCode::InternalError,
                "internal error while handling the request",
            );
            (Reply::Http(resp), true)
        }
    }
}

/// Writes and flushes within the request timeout; `false` if the connection is unusable.
async fn write_all(conn: &mut Conn<TlsConn>, bytes: &[u8], cfg: &ServerConfig) -> bool {
    let io = &mut conn.io;
    let res = deadline(Instant::now() + cfg.request_timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await;
    matches!(res, Some(Ok(())))
}

/// Sends a final response with `connection: close`, then closes gracefully: TLS
/// close_notify, write-side shutdown, and a bounded drain of unread input so the client
/// reads the response instead of a connection reset.
async fn close_with(
    conn: &mut Conn<TlsConn>,
    resp: &Response,
    head_only: bool,
    cfg: &ServerConfig,
) {
    let bytes = encode_response(resp, head_only, Some("close"));
    if !write_all(conn, &bytes, cfg).await {
        return;
    }
    let io = &mut conn.io;
    let _ = deadline(Instant::now() + LINGER, async {
        io.close().await?;
        let mut scratch = [0u8; 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut scratch).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lived_connection_task_is_small() {
        // The future that stays alive for the whole life of a WebSocket must not embed the
        // TLS state or the HTTP buffers: those live in the boxed HTTP phase.
        let shared = Arc::new(Shared {
            router: Arc::new(Router::new()),
            cfg: ServerConfig::default(),
            stats: Arc::new(ServerStats::new()),
            shutdown: Shutdown::new(),
            acceptor: futures_rustls::TlsAcceptor::from(test_tls_config()),
            slots: Slots::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let tcp = Async::new(tcp).unwrap();
        let (tx, _rx) = async_channel::bounded(1);
        let fut = connection(
            ConnGuard {
                shared: shared.clone(),
                slot: Slot::Unlimited,
            },
            tcp,
            "127.0.0.1:1".parse().unwrap(),
            None,
            tx,
        );
        let size = std::mem::size_of_val(&fut);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 256, "connection future is {size} bytes");
        shared
            .stats
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        drop(fut);
    }

    fn test_tls_config() -> Arc<rustls::ServerConfig> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        crate::tls::server_config(vec![ck.cert.der().clone()], key).unwrap()
    }

    #[test]
    fn bind_listens_with_a_deep_backlog() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.get_ref().local_addr().unwrap();
        assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
        // Accepts connections.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (_s, peer) = smol::block_on(l.accept()).unwrap();
        assert_eq!(peer.ip(), addr.ip());
        // The port is taken: a second bind fails with AddrInUse.
        let e = bind(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let v6 = bind("[::1]:0".parse().unwrap());
        if let Ok(v6) = v6 {
            assert!(v6.get_ref().local_addr().unwrap().is_ipv6());
        }
    }

    #[test]
    fn accept_error_classification() {
        assert!(transient_accept_error(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(transient_accept_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!transient_accept_error(&io::Error::from_raw_os_error(
            libc::EBADF
        )));
    }
}
