//! The HTTP server over real TLS sockets: keep-alive, bodies, limits, timeouts, WebSocket
//! upgrade, connection caps and shutdown. Each test starts its own `serve` on 127.0.0.1:0
//! with a freshly generated self-signed certificate that the client trusts explicitly.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::StreamExt;
use panel::http::{
    Method, Reply, Request, Response, Router, ServerConfig, ServerStats, WsStream, handler, serve,
};
use panel::shutdown::Shutdown;
use rustls_pki_types::{CertificateDer, ServerName};

type ClientTls = futures_rustls::client::TlsStream<Async<TcpStream>>;

struct TestServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    stats: Arc<ServerStats>,
    task: Option<smol::Task<std::io::Result<()>>>,
    cert: CertificateDer<'static>,
    dir: PathBuf,
    release: async_channel::Sender<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails the test instead of hanging when the server misbehaves.
async fn guard<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    future::or(fut, async {
        Timer::after(Duration::from_secs(20)).await;
        panic!("{what}: no progress within 20 s");
    })
    .await
}

fn router(release: async_channel::Receiver<()>) -> Router {
    let mut r = Router::new();
    r.route(
        Method::Get,
        "/hello",
        handler(|_req: Request| async {
            Response::json(200, &serde_json::json!({"success": true, "hello": "world"})).into()
        }),
    );
    r.route(
        Method::Post,
        "/echo",
        handler(|req: Request| async move {
            Response::text(200, "application/octet-stream", req.body).into()
        }),
    );
    r.route(
        Method::Get,
        "/items/{id}",
        handler(|req: Request| async move {
            let body = serde_json::json!({
                "id": req.param("id"),
                "q": req.query_param("q"),
                "path": req.path,
            });
            Response::json(200, &body).into()
        }),
    );
    r.route(
        Method::Get,
        "/wait",
        handler(move |_req: Request| {
            let release = release.clone();
            async move {
                let _ = release.recv().await;
                Response::json(200, &serde_json::json!({"success": true})).into()
            }
        }),
    );
    r.route(
        Method::Get,
        "/panic",
        handler(|req: Request| async move {
            if req.query_param("now").is_some() {
                panic!("handler bug");
            }
            Response::text(200, "text/plain", "unreachable").into()
        }),
    );
    // Streaming routes: a body counted as it arrives (stopping after `stop` bytes when
    // asked), and a streamed answer of `n` bytes (cut after `fail` bytes when asked).
    r.route_streaming(
        Method::Put,
        "/sum",
        handler(|mut req: Request| async move {
            let mut body = req
                .stream
                .take()
                .expect("a streaming route gets its stream");
            let stop: Option<u64> = req.query_param("stop").and_then(|v| v.parse().ok());
            let (mut len, mut sum, mut largest) = (0u64, 0u64, 0usize);
            loop {
                match body.next().await {
                    Ok(Some(piece)) => {
                        len += piece.len() as u64;
                        largest = largest.max(piece.len());
                        sum = piece.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
                        if stop.is_some_and(|s| len >= s) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return e.to_response().into(),
                }
            }
            let out = serde_json::json!({"len": len, "sum": sum, "largest": largest,
                                         "declared": body.declared_len()});
            Response::json(200, &out).into()
        }),
    );
    r.route(
        Method::Get,
        "/stream",
        handler(|req: Request| async move {
            let n: u64 = req
                .query_param("n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let fail: Option<u64> = req.query_param("fail").and_then(|v| v.parse().ok());
            let short = req.query_param("short").is_some();
            let produce = if short { n / 2 } else { n };
            let pieces = futures_lite::stream::unfold(0u64, move |sent| async move {
                if fail.is_some_and(|f| sent >= f) {
                    return Some((Err("the producer failed".to_string()), u64::MAX));
                }
                if sent >= produce {
                    return None;
                }
                let len = (produce - sent).min(65_536);
                let piece = (sent..sent + len).map(|i| (i % 251) as u8).collect();
                Some((Ok(piece), sent + len))
            });
            Reply::Stream(panel::http::Streamed {
                head: Response::text(200, "application/octet-stream", Vec::new()),
                length: n,
                body: Box::pin(pieces),
            })
        }),
    );
    r.route(
        Method::Get,
        "/ws",
        handler(|_req: Request| async {
            Reply::Upgrade {
                config: WebSocketConfig::default().read_buffer_size(4096),
                run: Box::new(|ws: WsStream| Box::pin(echo(ws))),
            }
        }),
    );
    r
}

async fn echo(mut ws: WsStream) {
    while let Some(Ok(msg)) = ws.next().await {
        let is_data = matches!(msg, Message::Text(_) | Message::Binary(_));
        if msg.is_close() || (is_data && ws.send(msg).await.is_err()) {
            return;
        }
    }
}

fn start(cfg: ServerConfig) -> TestServer {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "panel-http-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let tls = panel::tls::setup(&dir, None, None, &[]).unwrap();
    let pem = std::fs::read(&tls.cert_path).unwrap();
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let shutdown = Shutdown::new();
    let stats = Arc::new(ServerStats::new());
    let (release, release_rx) = async_channel::unbounded();
    let task = smol::spawn(serve(
        listener,
        tls.config.clone(),
        Arc::new(router(release_rx)),
        cfg,
        stats.clone(),
        shutdown.clone(),
    ));
    TestServer {
        addr,
        shutdown,
        stats,
        task: Some(task),
        cert,
        dir,
        release,
    }
}

async fn connect_as(srv: &TestServer, name: &str) -> std::io::Result<ClientTls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(srv.cert.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = futures_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = Async::<TcpStream>::connect(srv.addr).await?;
    connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

async fn connect(srv: &TestServer) -> ClientTls {
    connect_as(srv, "localhost").await.unwrap()
}

/// A parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_string()
    }
}

/// A client connection with its read buffer (for keep-alive).
struct Client<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> Client<S> {
    fn new(io: S) -> Self {
        Client {
            io,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.io.write_all(raw).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Reads one response; `head_only` for HEAD requests (no body despite content-length).
    async fn response(&mut self, head_only: bool) -> Resp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut tmp = [0u8; 4096];
            let n = self.io.read(&mut tmp).await.unwrap();
            assert!(
                n > 0,
                "EOF before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let len = if head_only || status < 200 { 0 } else { len };
        while self.buf.len() < len {
            let mut tmp = [0u8; 4096];
            let n = self.io.read(&mut tmp).await.unwrap();
            assert!(n > 0, "EOF inside a response body");
            self.buf.extend_from_slice(&tmp[..n]);
        }
        let body = self.buf.drain(..len).collect();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Asserts the server closes the connection without sending anything more.
    async fn expect_closed(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes {:?}", self.buf);
        let mut tmp = [0u8; 1024];
        if let Ok(n @ 1..) = self.io.read(&mut tmp).await {
            panic!(
                "expected close, got {:?}",
                String::from_utf8_lossy(&tmp[..n])
            );
        }
    }
}

fn small_limits() -> ServerConfig {
    ServerConfig {
        max_header_bytes: 1024,
        max_body_bytes: 1024,
        ..ServerConfig::default()
    }
}

#[test]
fn keep_alive_serves_two_requests_on_one_socket() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("keep-alive", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        let r1 = c.response(false).await;
        assert_eq!(r1.status, 200);
        assert_eq!(r1.json()["hello"], "world");
        assert_eq!(r1.header("connection"), None);
        c.send(b"GET /items/a%20b?q=x%2Fy+z HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        let r2 = c.response(false).await;
        assert_eq!(r2.status, 200);
        assert_eq!(
            r2.json(),
            serde_json::json!({"id": "a b", "q": "x/y z", "path": "/items/a b"})
        );
        // Pipelined: two requests in one write, answered in order.
        c.send(b"GET /hello HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .await;
        assert_eq!(c.response(false).await.status, 200);
        assert_eq!(c.response(false).await.body, b"abc");
        // HTTP/1.0 keep-alive is confirmed explicitly.
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        // Connection: close is honoured.
        c.send(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await;
        let r3 = c.response(false).await;
        assert_eq!(r3.header("connection"), Some("close"));
        c.expect_closed().await;
    }));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(srv.stats.connections_total.load(Relaxed), 1);
    assert_eq!(srv.stats.requests_total.load(Relaxed), 6);
}

#[test]
fn certificate_is_valid_for_the_ip_literal_too() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("ip name", async {
        let mut c = Client::new(connect_as(&srv, "127.0.0.1").await.unwrap());
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.response(false).await.status, 200);
        assert!(connect_as(&srv, "example.com").await.is_err());
    }));
}

#[test]
fn chunked_and_content_length_bodies() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("bodies", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
        c.send(b"6;x=y\r\n world\r\n0\r\nTrailer: 1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello world");
        let big = vec![b'x'; 200_000];
        let mut req = format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .into_bytes();
        req.extend_from_slice(&big);
        c.send(&req).await;
        let r = c.response(false).await;
        assert_eq!(r.body.len(), big.len());
        assert!(r.body == big);
    }));
}

#[test]
fn unknown_path_is_404_and_wrong_method_405_json() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("404/405", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /nope HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["success"], false);
        assert_eq!(r.error_code(), "NOT_FOUND");
        c.send(b"DELETE /hello HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.error_code(), "METHOD_NOT_ALLOWED");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        // Still usable afterwards.
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.response(false).await.status, 200);
    }));
}

#[test]
fn head_gets_headers_without_body() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("HEAD", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"HEAD /hello HTTP/1.1\r\n\r\n").await;
        let r = c.response(true).await;
        assert_eq!(r.status, 200);
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        assert!(len > 0);
        // If a body had been sent, this next response would be garbled.
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.body.len(), len);
    }));
}

#[test]
fn oversized_head_is_431_then_close() {
    let srv = start(small_limits());
    smol::block_on(guard("431", async {
        let mut c = Client::new(connect(&srv).await);
        let req = format!("GET /hello HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(4000));
        c.send(req.as_bytes()).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 431);
        assert_eq!(r.error_code(), "HEADERS_TOO_LARGE");
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_closed().await;
    }));
}

#[test]
fn oversized_body_is_413_then_close() {
    let srv = start(small_limits());
    smol::block_on(guard("413", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"POST /echo HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");
        c.expect_closed().await;

        let mut c = Client::new(connect(&srv).await);
        let mut req = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            req.extend_from_slice(b"200\r\n");
            req.extend_from_slice(&[b'y'; 0x200]);
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");
        c.expect_closed().await;
    }));
}

#[test]
fn overflowing_chunk_size_is_413_and_nothing_behind_it_is_parsed() {
    let srv = start(small_limits());
    smol::block_on(guard("chunk overflow", async {
        let mut c = Client::new(connect(&srv).await);
        // 1 + 0xFFFFFFFFFFFFFFFF wraps to 0: an unchecked sum passes the limit check and
        // the bytes after it would be read as a second, smuggled request.
        let mut req = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(b"1\r\nx\r\nFFFFFFFFFFFFFFFF\r\n");
        req.extend_from_slice(b"GET /hello HTTP/1.1\r\n\r\n");
        c.send(&req).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");
        c.expect_closed().await;
    }));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        srv.stats.requests_total.load(Relaxed),
        0,
        "nothing was dispatched"
    );
}

#[test]
fn expect_100_continue() {
    let srv = start(small_limits());
    smol::block_on(guard("100-continue", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 100);
        c.send(b"body").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"body");
        // Too large: refused up front, no 100.
        c.send(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
            .await;
        assert_eq!(c.response(false).await.status, 413);
    }));
}

#[test]
fn slow_client_gets_408_and_is_closed() {
    let srv = start(ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    });
    smol::block_on(guard("408", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\nHost: loc").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 408);
        assert_eq!(r.error_code(), "TIMEOUT");
        c.expect_closed().await;
    }));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(srv.stats.request_timeouts.load(Relaxed), 1);
}

#[test]
fn idle_keep_alive_connection_is_closed_quietly() {
    let srv = start(ServerConfig {
        keepalive_idle: Duration::from_millis(200),
        ..ServerConfig::default()
    });
    smol::block_on(guard("idle", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.response(false).await.status, 200);
        c.expect_closed().await;
    }));
}

#[test]
fn malformed_request_is_400_then_close() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("400", async {
        for raw in [
            &b"GET /hello HTTX/1.1\r\n\r\n"[..],
            b"GET /hello HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
            b"GET /%zz HTTP/1.1\r\n\r\n",
        ] {
            let mut c = Client::new(connect(&srv).await);
            c.send(raw).await;
            let r = c.response(false).await;
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
            assert_eq!(r.error_code(), "INVALID_MESSAGE");
            c.expect_closed().await;
        }
    }));
}

#[test]
fn plaintext_http_on_the_tls_port_gets_no_http_answer() {
    let srv = start(ServerConfig::default());
    let got = smol::block_on(guard("plaintext", async {
        let mut tcp = Async::<TcpStream>::connect(srv.addr).await.unwrap();
        tcp.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut tmp = [0u8; 1024];
        loop {
            match tcp.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
            }
        }
        got
    }));
    assert!(
        !got.windows(5).any(|w| w == b"HTTP/"),
        "got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    // The socket is dropped (client sees EOF) just before the counter is bumped.
    use std::sync::atomic::Ordering::Relaxed;
    smol::block_on(guard("tls_failures counter", async {
        while srv.stats.tls_failures.load(Relaxed) == 0 {
            Timer::after(Duration::from_millis(5)).await;
        }
    }));
    assert_eq!(srv.stats.tls_failures.load(Relaxed), 1);
    assert_eq!(srv.stats.requests_total.load(Relaxed), 0);
}

#[test]
fn websocket_upgrade_echoes() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("ws echo", async {
        let tls = connect(&srv).await;
        let (mut ws, resp) = async_tungstenite::client_async("wss://localhost/ws", tls)
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        for i in 0..3 {
            ws.send(Message::text(format!("hello {i}"))).await.unwrap();
            let echoed = ws.next().await.unwrap().unwrap();
            assert_eq!(echoed, Message::text(format!("hello {i}")));
        }
        let big = vec![7u8; 100_000];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
        ws.close(None).await.unwrap();
    }));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(srv.stats.upgrades_total.load(Relaxed), 1);
}

/// A masked client text frame (RFC 6455 §5.2), payload < 126 bytes.
fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn websocket_frame_in_the_same_packet_as_the_handshake_is_not_lost() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("ws same packet", async {
        let mut c = Client::new(connect(&srv).await);
        let mut raw = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(&client_text_frame(b"early bird"));
        raw.extend_from_slice(&client_text_frame(b"second"));
        c.send(&raw).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 101);
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        let leftover = std::mem::take(&mut c.buf);
        let mut ws = WebSocketStream::from_partially_read(c.io, leftover, Role::Client, None).await;
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text("early bird")
        );
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("second"));
    }));
}

#[test]
fn bad_upgrade_headers_are_400() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("bad upgrade", async {
        let cases = [
            // No Upgrade header at all.
            "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
            // Wrong version.
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            // Missing key.
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            // Bad key length.
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
            // Missing Connection: Upgrade.
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ];
        for raw in cases {
            let mut c = Client::new(connect(&srv).await);
            c.send(raw.as_bytes()).await;
            let r = c.response(false).await;
            assert_eq!(r.status, 400, "{raw}");
            assert_eq!(r.error_code(), "INVALID_MESSAGE");
            c.expect_closed().await;
        }
    }));
}

#[test]
fn shutdown_finishes_in_flight_request_and_stops_accepting() {
    let mut srv = start(ServerConfig::default());
    smol::block_on(guard("shutdown", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /wait HTTP/1.1\r\n\r\n").await;
        // An idle keep-alive connection is closed by the shutdown.
        let mut idle = Client::new(connect(&srv).await);
        idle.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(idle.response(false).await.status, 200);
        // Make sure /wait is being handled before shutting down.
        while srv
            .stats
            .requests_total
            .load(std::sync::atomic::Ordering::Relaxed)
            < 2
        {
            Timer::after(Duration::from_millis(10)).await;
        }
        srv.shutdown.trigger();
        idle.expect_closed().await;
        srv.release.send(()).await.unwrap();
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_closed().await;
        srv.task.take().unwrap().await.unwrap();
        let err = Async::<TcpStream>::connect(srv.addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }));
}

#[test]
fn per_ip_cap_answers_429_and_frees_slots() {
    let srv = start(ServerConfig {
        max_conns_per_ip: 2,
        ..ServerConfig::default()
    });
    smol::block_on(guard("per-ip cap", async {
        let mut a = Client::new(connect(&srv).await);
        a.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(a.response(false).await.status, 200);
        let mut b = Client::new(connect(&srv).await);
        b.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(b.response(false).await.status, 200);

        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.error_code(), "RATE_LIMITED");
        c.expect_closed().await;

        // Closing one connection frees its slot (the server notices asynchronously).
        a.send(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await;
        assert_eq!(a.response(false).await.status, 200);
        a.expect_closed().await;
        let mut ok = false;
        for _ in 0..200 {
            let mut d = Client::new(connect(&srv).await);
            d.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
            if d.response(false).await.status == 200 {
                ok = true;
                break;
            }
            Timer::after(Duration::from_millis(10)).await;
        }
        assert!(ok, "slot was never freed");
        drop(b);
    }));
}

#[test]
fn slow_clients_do_not_lock_a_prompt_client_of_the_same_ip_out() {
    let srv = start(ServerConfig {
        max_conns_per_ip: 4,
        ..ServerConfig::default()
    });
    smol::block_on(guard("slow clients vs per-ip cap", async {
        // Twice the cap in slow clients: half never start TLS, half stop inside their head.
        let mut slow_tcp = Vec::new();
        let mut slow_tls = Vec::new();
        for _ in 0..4 {
            slow_tcp.push(Async::<TcpStream>::connect(srv.addr).await.unwrap());
            let mut c = Client::new(connect(&srv).await);
            c.send(b"GET /hello HTTP/1.1\r\nHost: loc").await;
            slow_tls.push(c);
        }
        // A client that sends its request at once is served all the same, several times.
        for _ in 0..3 {
            let mut c = Client::new(connect(&srv).await);
            c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
            assert_eq!(c.response(false).await.status, 200);
        }
        drop((slow_tcp, slow_tls));
    }));
}

#[test]
fn per_ip_cap_still_bounds_established_connections() {
    let srv = start(ServerConfig {
        max_conns_per_ip: 2,
        ..ServerConfig::default()
    });
    smol::block_on(guard("established cap", async {
        let mut kept = Vec::new();
        for _ in 0..2 {
            let mut c = Client::new(connect(&srv).await);
            c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
            assert_eq!(c.response(false).await.status, 200);
            kept.push(c);
        }
        // Slow clients beyond the cap evict each other, never the established ones.
        let mut slow = Vec::new();
        for _ in 0..6 {
            slow.push(Async::<TcpStream>::connect(srv.addr).await.unwrap());
        }
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.error_code(), "RATE_LIMITED");
        for c in &mut kept {
            c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
            assert_eq!(c.response(false).await.status, 200);
        }
        drop(slow);
    }));
}

#[test]
fn global_cap_closes_excess_connections() {
    let srv = start(ServerConfig {
        max_conns: 1,
        ..ServerConfig::default()
    });
    smol::block_on(guard("global cap", async {
        let mut a = Client::new(connect(&srv).await);
        a.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(a.response(false).await.status, 200);
        assert!(connect_as(&srv, "localhost").await.is_err());
        a.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(a.response(false).await.status, 200);
    }));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(srv.stats.connections_rejected.load(Relaxed), 1);
}

#[test]
fn panicking_handler_is_a_500_not_a_dead_server() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("panic", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /panic?now HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 500);
        assert_eq!(r.error_code(), "INTERNAL_ERROR");
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_closed().await;
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.response(false).await.status, 200);
    }));
}

#[test]
fn upgraded_stream_is_send_and_unpin() {
    fn assert_io<T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send>() {}
    assert_io::<panel::http::Upgraded>();
}

#[test]
fn silent_client_is_dropped_after_the_handshake_timeout() {
    let srv = start(ServerConfig {
        tls_handshake_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    });
    let got = smol::block_on(guard("handshake timeout", async {
        let mut tcp = Async::<TcpStream>::connect(srv.addr).await.unwrap();
        let mut tmp = [0u8; 64];
        tcp.read(&mut tmp).await
    }));
    assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    // The socket is dropped (client sees EOF) just before the counter is bumped.
    use std::sync::atomic::Ordering::Relaxed;
    smol::block_on(guard("tls_failures counter", async {
        while srv.stats.tls_failures.load(Relaxed) == 0 {
            Timer::after(Duration::from_millis(5)).await;
        }
    }));
    assert_eq!(srv.stats.tls_failures.load(Relaxed), 1);
}

fn upload_limits() -> ServerConfig {
    ServerConfig {
        max_header_bytes: 1024,
        max_body_bytes: 1024,
        max_upload_bytes: 3_000_000,
        request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

fn sum_of(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn a_streaming_route_takes_bodies_past_the_body_limit_in_pieces() {
    let srv = start(upload_limits());
    smol::block_on(guard("streamed upload", async {
        let mut c = Client::new(connect(&srv).await);
        let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        let mut req =
            format!("PUT /sum HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        req.extend_from_slice(&big);
        c.send(&req).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["len"], big.len());
        assert_eq!(v["sum"], sum_of(&big));
        assert_eq!(v["declared"], big.len());
        assert!(v["largest"].as_u64().unwrap() <= 65_536, "{v}");
        // Chunked, on the same connection (the body was read to its end).
        c.send(b"PUT /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
        c.send(b"6;x=y\r\n world\r\n0\r\nTrailer: 1\r\n\r\n").await;
        let v = c.response(false).await.json();
        assert_eq!(v["len"], 11);
        assert_eq!(v["sum"], sum_of(b"hello world"));
        assert_eq!(v["declared"], serde_json::Value::Null);
        // Other routes keep the body limit.
        c.send(b"POST /echo HTTP/1.1\r\nContent-Length: 2000\r\n\r\n")
            .await;
        assert_eq!(c.response(false).await.status, 413);
    }));
}

#[test]
fn a_streamed_body_over_the_upload_limit_is_413() {
    let srv = start(upload_limits());
    smol::block_on(guard("upload limit", async {
        // Declared: refused before the handler runs.
        let mut c = Client::new(connect(&srv).await);
        c.send(b"PUT /sum HTTP/1.1\r\nContent-Length: 3000001\r\n\r\n")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 413);
        c.expect_closed().await;
        // Chunked: refused once the running total passes it, even when a chunk size
        // would wrap the sum.
        for sizes in [&["200000"; 16][..], &["1", "FFFFFFFFFFFFFFFF"][..]] {
            let c = Client::new(connect(&srv).await);
            let mut req = b"PUT /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for size in sizes {
                let n = usize::from_str_radix(size, 16).unwrap_or(0).min(0x200000);
                req.extend_from_slice(format!("{size}\r\n").as_bytes());
                req.extend_from_slice(&vec![b'z'; n]);
                req.extend_from_slice(b"\r\n");
            }
            // The server answers and closes while the body is still being written.
            let (mut rd, mut wr) = futures_lite::io::split(c.io);
            let writer = smol::spawn(async move {
                let _ = wr.write_all(&req).await;
                let _ = wr.flush().await;
            });
            let mut got = Vec::new();
            let mut tmp = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match rd.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&tmp[..n]),
                }
            }
            let head = String::from_utf8_lossy(&got);
            assert!(head.starts_with("HTTP/1.1 413"), "{sizes:?}: {head}");
            drop(writer);
        }
    }));
}

#[test]
fn a_handler_that_stops_reading_answers_then_the_connection_closes() {
    let srv = start(upload_limits());
    smol::block_on(guard("early stop", async {
        let mut c = Client::new(connect(&srv).await);
        // A tenth of the announced body (the socket buffers take it without blocking).
        let mut req = b"PUT /sum?stop=10 HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        req.extend_from_slice(&[7u8; 100_000]);
        c.send(&req).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.json()["len"].as_u64().unwrap() < 1_000_000);
    }));
}

#[test]
fn a_client_that_stalls_or_vanishes_mid_body_is_seen_by_the_handler() {
    let srv = start(upload_limits());
    smol::block_on(guard("stalled body", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"PUT /sum HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly ten b")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 408, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("connection"), Some("close"));
    }));
}

#[test]
fn a_streamed_answer_has_its_length_and_keeps_the_connection() {
    let srv = start(ServerConfig::default());
    smol::block_on(guard("streamed answer", async {
        let mut c = Client::new(connect(&srv).await);
        c.send(b"GET /stream?n=1000000 HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1000000"));
        let want: Vec<u8> = (0..1_000_000u64).map(|i| (i % 251) as u8).collect();
        assert!(r.body == want);
        c.send(b"HEAD /stream?n=77 HTTP/1.1\r\n\r\n").await;
        let r = c.response(true).await;
        assert_eq!(r.header("content-length"), Some("77"));
        c.send(b"GET /stream?n=0 HTTP/1.1\r\n\r\n").await;
        let r = c.response(false).await;
        assert_eq!((r.status, r.body.len()), (200, 0));
        c.send(b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.response(false).await.status, 200);
    }));
}

#[test]
fn a_streamed_answer_that_fails_or_falls_short_is_cut_not_completed() {
    let srv = start(ServerConfig::default());
    for query in ["n=300000&fail=131072", "n=300000&short"] {
        smol::block_on(guard("cut answer", async {
            let mut c = connect(&srv).await;
            c.write_all(format!("GET /stream?{query} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            c.flush().await.unwrap();
            let mut got = Vec::new();
            let mut tmp = vec![0u8; 65_536];
            loop {
                match c.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&tmp[..n]),
                }
            }
            let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = String::from_utf8_lossy(&got[..head_end]);
            assert!(head.contains("content-length: 300000"), "{head}");
            let body = got.len() - head_end;
            assert!(body < 300_000, "{query}: {body} bytes arrived");
        }));
    }
}
