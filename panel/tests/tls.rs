//! TLS as an operator meets it: the self-signed certificate created once (and its printed
//! fingerprint), an operator-supplied certificate, and no HTTP answer in plaintext.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Harness, PanelOpts, run};

fn cert_der(pem_path: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(pem_path).expect("read certificate");
    let mut reader = pem.as_slice();
    rustls_pemfile::certs(&mut reader)
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .to_vec()
}

fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn printed_fingerprint(p: &common::Panel) -> Option<String> {
    p.log.lock().iter().find_map(|l| {
        let i = l.find("fingerprint")?;
        l[i..].split_whitespace().last().map(str::to_owned)
    })
}

#[test]
fn self_signed_certificate_is_created_once_and_its_fingerprint_printed() {
    let mut h = Harness::start("tls-self");
    let crt = h.dir.path().join("tls/panel.crt");
    let der = cert_der(&crt);
    assert_eq!(
        printed_fingerprint(&h.panel).as_deref(),
        Some(fingerprint(&der).as_str()),
        "printed fingerprint is the certificate's SHA-256: {:?}",
        h.panel.log.lock()
    );
    // The harness already connected to 127.0.0.1 trusting exactly this certificate.
    run(async {
        let (st, _) = h
            .panel
            .rest
            .json("GET", "/healthz", None, None)
            .await
            .unwrap();
        assert_eq!(st, 200);
    });
    // It also names localhost.
    run(async {
        let rest = common::Rest::new(
            &format!(
                "https://localhost:{}",
                h.panel.addr.rsplit(':').next().unwrap()
            ),
            h.panel.tls.clone(),
        )
        .unwrap();
        let (st, _) = rest
            .json("GET", "/healthz", None, None)
            .await
            .expect("localhost");
        assert_eq!(st, 200);
    });
    h.panel.kill9();
    h.restart();
    assert_eq!(cert_der(&crt), der, "certificate reused, not regenerated");
    assert_eq!(printed_fingerprint(&h.panel), Some(fingerprint(&der)));
}

#[test]
fn operator_certificate_is_used_when_given() {
    let dir = common::TempDir::new("tls-own");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("own.crt");
    let key = dir.path().join("own.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let opts = PanelOpts {
        ca_pem: Some(cert.clone()),
        ..PanelOpts::default()
    }
    .arg("--tls-cert", cert.display())
    .arg("--tls-key", key.display());
    let p = common::Panel::start(&data, &opts);
    run(async {
        // Trusting only the operator's certificate works…
        let (st, _) = p.rest.json("GET", "/healthz", None, None).await.unwrap();
        assert_eq!(st, 200);
    });
    // …and nothing was generated.
    assert!(!data.join("tls/panel.crt").exists());
    assert_eq!(printed_fingerprint(&p), Some(fingerprint(&cert_der(&cert))));
}

#[test]
fn plaintext_http_on_the_tls_port_gets_no_http_answer() {
    let h = Harness::start("tls-plain");
    let mut s = std::net::TcpStream::connect(&h.panel.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.take(4096).read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plaintext request got an HTTP answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // And the panel still serves TLS.
    run(async {
        let (st, _) = h
            .panel
            .rest
            .json("GET", "/healthz", None, None)
            .await
            .unwrap();
        assert_eq!(st, 200);
    });
}

/// The panel issues a TLS 1.3 ticket per handshake, held back until the first response
/// (`http::cork`): a client that read one response resumes its next connection with it,
/// and `/metrics` counts the resumptions.
#[test]
fn the_next_connection_resumes_with_the_ticket_sent_with_the_response() {
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
    use rustls::HandshakeKind;

    let h = Harness::start("tls-resume");
    let pem = std::fs::read(h.dir.path().join("tls/panel.crt")).unwrap();
    let tls = ctrl_io::with_own_sessions(&ctrl_io::tls_config_from_pem(&pem).unwrap());
    let url = ctrl_io::Url::parse(&h.panel.base_url()).unwrap();
    run(async {
        let resumed = |text: &str| common::metric(text, "panel_http_tls_resumed_total");
        let before = resumed(&h.panel.metrics().await).expect("the resumption counter");
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let mut s = ctrl_io::connect_tls(&url, &tls).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            s.flush().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "EOF before the response head: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&got)
            );
            kinds.push(s.get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds,
            [
                Some(HandshakeKind::Full),
                Some(HandshakeKind::Resumed),
                Some(HandshakeKind::Resumed)
            ]
        );
        let after = resumed(&h.panel.metrics().await).unwrap();
        assert!(after - before >= 2.0, "{before} → {after}");
    });
}
