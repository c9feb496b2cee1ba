//! The fake panel's pieces shared by the agent's integration tests: a self-signed TLS
//! server config and JSON frame helpers over the accepted WebSocket.
#![allow(dead_code)] // each test binary uses its own subset

pub mod harness;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_lite::StreamExt;
use serde_json::Value;
use smol::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The panel's side of an accepted agent WebSocket.
pub type Ws = WebSocketStream<futures_rustls::server::TlsStream<TcpStream>>;

/// A self-signed certificate for 127.0.0.1, its PEM written to `dir/ca.pem`.
pub fn tls(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    let der_key = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key.into())
        .unwrap();
    Arc::new(config)
}

/// The next JSON frame, skipping WebSocket control frames; fails after 10 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    let frame = futures_lite::future::or(
        async {
            loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Text(t))) => return Some(t.to_string()),
                    Some(Ok(WsMessage::Binary(b))) => {
                        return Some(String::from_utf8(b.to_vec()).unwrap());
                    }
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        },
        async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        },
    )
    .await
    .expect("a frame from the agent");
    serde_json::from_str(&frame).unwrap()
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(WsMessage::Text(v.to_string().into()))
        .await
        .unwrap();
}
