//! The client stack against a tiny in-test TLS server: keep-alive reuse, chunked and
//! close-delimited bodies, a stale pooled connection, timeouts, certificate checks, and the
//! WebSocket upgrade (accepted, and refused with status and body).

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_io::Async;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use ctrl_io::{self as client, ClientError, Rest};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use futures_rustls::TlsAcceptor;

struct Server {
    addr: std::net::SocketAddr,
    ca_pem: String,
    connections: Arc<AtomicUsize>,
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    (Arc::new(config), cert.cert.pem())
}

/// Reads one request (head + Content-Length body); `None` at EOF.
async fn read_request<S: futures_lite::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..i].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            while buf.len() < i + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[i + 4..i + 4 + len].to_vec();
            buf.drain(..i + 4 + len);
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An HTTPS server answering a few scripted paths.
fn http_server() -> Server {
    let (config, ca_pem) = tls_pair();
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        smol::block_on(async move {
            let acceptor = TlsAcceptor::from(config);
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                smol::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    while let Some((head, body)) = read_request(&mut s, &mut buf).await {
                        let line = head.lines().next().unwrap().to_owned();
                        let auth = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Authorization: "))
                            .unwrap_or("")
                            .to_owned();
                        let reply: Vec<u8> = match line.as_str() {
                            "GET /conn HTTP/1.1" => {
                                let b = format!("{{\"conn\":{index},\"auth\":\"{auth}\"}}");
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                                    .into_bytes()
                            }
                            "POST /echo HTTP/1.1" => {
                                let mut r =
                                    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        .to_vec();
                                for part in body.chunks(3) {
                                    r.extend_from_slice(
                                        format!("{:x};ext=1\r\n", part.len()).as_bytes(),
                                    );
                                    r.extend_from_slice(part);
                                    r.extend_from_slice(b"\r\n");
                                }
                                r.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
                                r
                            }
                            "GET /eof HTTP/1.1" => {
                                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil eof").await;
                                let _ = s.close().await;
                                return;
                            }
                            "GET /then-drop HTTP/1.1" => {
                                // Keep-alive implied, then the server silently closes.
                                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                                let _ = s.flush().await;
                                smol::Timer::after(Duration::from_millis(50)).await;
                                let _ = s.close().await;
                                return;
                            }
                            "GET /not-json HTTP/1.1" => {
                                b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\noops!".to_vec()
                            }
                            "GET /bad HTTP/1.1" => b"garbage\r\n\r\n".to_vec(),
                            "POST /bad-register/api/agents/register HTTP/1.1" => {
                                let b = r#"{"success":true,"agent":{"id":"a1","token":"t","refreshToken":"r","websocketUrl":"ws://h/ws/agents"}}"#;
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                                    .into_bytes()
                            }
                            "POST /bad-register/api/agents/refresh HTTP/1.1" => {
                                let b = r#"{"success":true,"agent":{"id":"a1","token":"","refreshToken":"r"}}"#;
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                                    .into_bytes()
                            }
                            "GET /overflow HTTP/1.1" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nFFFFFFFFFFFFFFFF\r\nbbbb\r\n0\r\n\r\n".to_vec(),
                            "GET /hang HTTP/1.1" => {
                                smol::Timer::after(Duration::from_secs(3600)).await;
                                return;
                            }
                            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                        };
                        if s.write_all(&reply).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                    }
                })
                .detach();
            }
        })
    });
    Server {
        addr,
        ca_pem,
        connections,
    }
}

/// A WSS echo server that accepts only `Authorization: Bearer good` with `X-Agent-ID: a1`.
fn ws_server() -> Server {
    let (config, ca_pem) = tls_pair();
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        smol::block_on(async move {
            let acceptor = TlsAcceptor::from(config);
            loop {
                let (tcp, _): (Async<TcpStream>, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                smol::spawn(async move {
                    let Ok(s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // The callback signature is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let check = |req: &Request,
                                 resp: Response|
                     -> Result<Response, ErrorResponse> {
                        let h = req.headers();
                        let ok = h.get("authorization").is_some_and(|v| v == "Bearer good")
                            && h.get("x-agent-id").is_some_and(|v| v == "a1")
                            && req.uri().path() == "/ws/agents";
                        if ok {
                            Ok(resp)
                        } else {
                            let mut e = ErrorResponse::new(Some(
                                "{\"success\":false,\"error\":{\"code\":\"AUTH_FAILED\"}}".into(),
                            ));
                            *e.status_mut() =
                                async_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                            Err(e)
                        }
                    };
                    let Ok(mut ws) = async_tungstenite::accept_hdr_async(s, check).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                })
                .detach();
            }
        })
    });
    Server {
        addr,
        ca_pem,
        connections,
    }
}

fn rest_for(server: &Server) -> Rest {
    let tls = client::tls_config_from_pem(server.ca_pem.as_bytes()).unwrap();
    Rest::new(&format!("https://127.0.0.1:{}", server.addr.port()), tls).unwrap()
}

#[test]
fn keep_alive_reuses_one_connection() {
    let server = http_server();
    let rest = rest_for(&server);
    smol::block_on(async {
        for _ in 0..5 {
            let (status, v) = rest.json("GET", "/conn", Some("tok"), None).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(v["conn"], 0, "every request on the first connection");
            assert_eq!(v["auth"], "Bearer tok");
        }
    });
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn concurrent_requests_open_parallel_connections_and_pool_them() {
    let server = http_server();
    let rest = Arc::new(rest_for(&server));
    smol::block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let rest = rest.clone();
                smol::spawn(async move { rest.json("GET", "/conn", None, None).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.0, 200);
        }
        let opened = server.connections.load(Ordering::SeqCst);
        assert!((1..=4).contains(&opened));
        // Later requests reuse pooled connections: no new ones.
        for _ in 0..8 {
            rest.json("GET", "/conn", None, None).await.unwrap();
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), opened);
    });
}

#[test]
fn chunked_body_and_status_pass_through() {
    let server = http_server();
    let rest = rest_for(&server);
    let body = br#"{"hello":"world","n":[1,2,3]}"#;
    let (status, echoed) = smol::block_on(rest.request("POST", "/echo", None, Some(body))).unwrap();
    assert_eq!(status, 201);
    assert_eq!(echoed, body);
    let (status, v) =
        smol::block_on(rest.json("POST", "/echo", None, Some(&serde_json::json!({"a": 1}))))
            .unwrap();
    assert_eq!((status, v), (201, serde_json::json!({"a": 1})));
}

#[test]
fn close_delimited_body_then_fresh_connection() {
    let server = http_server();
    let rest = rest_for(&server);
    smol::block_on(async {
        let (status, body) = rest.request("GET", "/eof", None, None).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"until eof"[..]));
        let (status, _) = rest.json("GET", "/conn", None, None).await.unwrap();
        assert_eq!(status, 200);
    });
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn stale_pooled_connection_is_retried_on_a_fresh_one() {
    let server = http_server();
    let rest = rest_for(&server);
    smol::block_on(async {
        let (status, _) = rest.request("GET", "/then-drop", None, None).await.unwrap();
        assert_eq!(status, 204);
        smol::Timer::after(Duration::from_millis(200)).await; // the server has closed it
        let (status, v) = rest.json("GET", "/conn", None, None).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["conn"], 1);
    });
}

#[test]
fn errors_are_typed() {
    let server = http_server();
    let rest = rest_for(&server).with_timeout(Duration::from_millis(300));
    smol::block_on(async {
        let (status, body) = rest.request("GET", "/missing", None, None).await.unwrap();
        assert_eq!((status, body.len()), (404, 0));
        let err = rest.json("GET", "/not-json", None, None).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Json(m) if m.contains("500") && m.contains("oops")),
            "{err}"
        );
        let err = rest.request("GET", "/bad", None, None).await.unwrap_err();
        assert!(matches!(err, ClientError::Http(_)), "{err}");
        let err = rest.request("GET", "/hang", None, None).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout(_)), "{err}");
        let err = rest
            .request("GET", "no-slash", None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Url(_)), "{err}");
        let err = rest.request("GET", "/x y", None, None).await.unwrap_err();
        assert!(matches!(err, ClientError::Http(_)), "{err}");
    });
}

#[test]
fn untrusted_certificate_is_a_tls_error() {
    let server = http_server();
    let (_, other_ca) = tls_pair();
    let tls = client::tls_config_from_pem(other_ca.as_bytes()).unwrap();
    let rest = Rest::new(&format!("https://127.0.0.1:{}", server.addr.port()), tls).unwrap();
    let err = smol::block_on(rest.request("GET", "/conn", None, None)).unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
}

#[test]
fn connection_refused_is_io() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, ca) = tls_pair();
    let tls = client::tls_config_from_pem(ca.as_bytes()).unwrap();
    let rest = Rest::new(&format!("https://127.0.0.1:{port}"), tls).unwrap();
    let err = smol::block_on(rest.request("GET", "/", None, None)).unwrap_err();
    assert_eq!(err.kind(), client::ErrorKind::Io, "{err}");
}

#[test]
fn websocket_upgrade_and_echo() {
    let server = ws_server();
    let tls = client::tls_config_from_pem(server.ca_pem.as_bytes()).unwrap();
    let url = format!("wss://localhost:{}/ws/agents", server.addr.port());
    smol::block_on(async {
        let mut ws = client::connect_agent(&url, tls, "a1", "good")
            .await
            .unwrap();
        ws.send(Message::text("{\"type\":\"ping\"}")).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), "{\"type\":\"ping\"}");
    });
}

#[test]
fn refused_upgrade_keeps_status_and_body() {
    let server = ws_server();
    let tls = client::tls_config_from_pem(server.ca_pem.as_bytes()).unwrap();
    let url = format!("wss://127.0.0.1:{}/ws/agents", server.addr.port());
    let err = smol::block_on(client::connect_agent(&url, tls.clone(), "a1", "bad")).unwrap_err();
    match err {
        ClientError::Rejected { status, body } => {
            assert_eq!(status, 401);
            assert!(body.contains("AUTH_FAILED"), "{body}");
        }
        other => panic!("expected Rejected, got {other}"),
    }
    let err = smol::block_on(client::ws_connect(
        &format!("https://127.0.0.1:{}/ws/agents", server.addr.port()),
        tls,
        &[],
    ))
    .unwrap_err();
    assert!(matches!(err, ClientError::Url(_)), "{err}");
}

#[test]
fn chunk_sizes_that_overflow_the_body_limit_check_are_refused() {
    let server = http_server();
    let rest = rest_for(&server).with_timeout(Duration::from_secs(20));
    let err = smol::block_on(rest.request("GET", "/overflow", None, None)).unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err}");
}

#[test]
fn registration_answers_that_break_the_protocol_are_refused() {
    let server = http_server();
    let tls = client::tls_config_from_pem(server.ca_pem.as_bytes()).unwrap();
    let base = format!("https://127.0.0.1:{}/bad-register/", server.addr.port());
    let rest = Rest::new(&base, tls).unwrap();
    let err = smol::block_on(client::register(&rest, "admin", "n1")).unwrap_err();
    assert!(
        matches!(&err, ClientError::Json(m) if m.contains("websocketUrl")),
        "{err}"
    );
    let err = smol::block_on(client::refresh(&rest, "r")).unwrap_err();
    assert!(
        matches!(&err, ClientError::Json(m) if m.contains("empty token")),
        "{err}"
    );
}
