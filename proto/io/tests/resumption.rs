//! TLS 1.3 session resumption against a server that issues tickets (as the panel does): a
//! client config resumes its second connection, a config made by `with_own_sessions` does
//! so independently of the config it was cloned from, and a server without tickets always
//! gets full handshakes.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use async_io::Async;
use ctrl_io::{Url, connect_tls, with_own_sessions};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use rustls::HandshakeKind;

/// A TLS server writing one byte to every client; `tickets` says whether it issues tickets.
fn server(tickets: bool) -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    if tickets {
        config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        config.send_tls13_tickets = 1;
    } else {
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let port = listener.get_ref().local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    std::thread::spawn(move || {
        smol::block_on(async move {
            loop {
                let (tcp, _): (Async<TcpStream>, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                smol::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let _ = s.write_all(b"x").await;
                        let _ = s.flush().await;
                        let mut rest = Vec::new();
                        let _ = s.read_to_end(&mut rest).await;
                    }
                })
                .detach();
            }
        })
    });
    (port, cert.cert.pem())
}

/// Connects, reads the server's byte (which also takes in the ticket sent before it) and
/// returns how the handshake went.
async fn handshake(url: &Url, tls: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let mut s = connect_tls(url, tls).await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"x");
    s.get_ref().1.handshake_kind().unwrap()
}

#[test]
fn second_connection_resumes_and_own_stores_are_separate() {
    let (port, pem) = server(true);
    let url = Url::parse(&format!("https://127.0.0.1:{port}")).unwrap();
    let shared = ctrl_io::tls_config_from_pem(pem.as_bytes()).unwrap();
    smol::block_on(async {
        assert_eq!(handshake(&url, &shared).await, HandshakeKind::Full);
        assert_eq!(handshake(&url, &shared).await, HandshakeKind::Resumed);
        // An own store starts empty (nothing inherited), then resumes on its own ticket.
        let own = with_own_sessions(&shared);
        assert_eq!(handshake(&url, &own).await, HandshakeKind::Full);
        assert_eq!(handshake(&url, &own).await, HandshakeKind::Resumed);
        assert_eq!(handshake(&url, &own).await, HandshakeKind::Resumed);
    });
}

#[test]
fn no_tickets_means_full_handshakes() {
    let (port, pem) = server(false);
    let url = Url::parse(&format!("https://127.0.0.1:{port}")).unwrap();
    let tls = with_own_sessions(&ctrl_io::tls_config_from_pem(pem.as_bytes()).unwrap());
    smol::block_on(async {
        for _ in 0..3 {
            assert_eq!(handshake(&url, &tls).await, HandshakeKind::Full);
        }
    });
}
