//! A panel certificate made by `openssl req -x509` (which marks it as a CA, so webpki alone
//! refuses it with `CaUsedAsEndEntity`) is trusted when it is exactly the certificate given
//! (`agent register --ca-cert`), over TLS 1.3 and 1.2; another certificate is not, and the
//! pinned certificate without its private key is not either (the handshake signature is
//! still checked).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use async_io::Async;
use ctrl_io::{ClientError, Url};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `openssl req -x509` with OpenSSL's defaults (`v3_ca`: basicConstraints CA:TRUE), for a
/// name that is not the one the client dials.
fn openssl_cert(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=panel.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "OpenSSL's default certificate is a CA"
    );
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

fn der(cert_pem: &[u8]) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut &cert_pem[..])
        .next()
        .unwrap()
        .unwrap()
}

fn key(key_pem: &[u8]) -> PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut &key_pem[..])
        .unwrap()
        .unwrap()
}

/// Presents `cert` and signs with `key`, whether they belong together or not.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesServerCert for Present {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    tls12: bool,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert], signer));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Present(certified)));
    Arc::new(config)
}

/// One TLS exchange: the server answers `pong` to `ping`.
fn exchange(server: Arc<rustls::ServerConfig>, trusted_pem: &[u8]) -> Result<(), ClientError> {
    let client = ctrl_io::tls_config_from_pem(trusted_pem)?;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    ))
    .unwrap();
    let listener = Async::new(listener).unwrap();
    smol::block_on(async {
        let serve = smol::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = TlsAcceptor::from(server).accept(tcp).await {
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(b"pong").await;
                    let _ = tls.flush().await;
                }
            }
        });
        let mut conn = ctrl_io::connect_tls(&url, &client).await?;
        conn.write_all(b"ping").await.unwrap();
        conn.flush().await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        assert_eq!(&buf, b"pong");
        serve.await;
        Ok(())
    })
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ctrl-io-pin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_openssl_self_signed_panel_certificate_is_trusted_when_pinned() {
    let dir = temp_dir("ok");
    let (cert, key_pem) = openssl_cert(&dir, "panel");
    for tls12 in [false, true] {
        exchange(server_config(der(&cert), key(&key_pem), tls12), &cert)
            .unwrap_or_else(|e| panic!("tls12={tls12}: {e}"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_certificate_or_the_pinned_one_without_its_key_is_refused() {
    let dir = temp_dir("bad");
    let (pinned, _pinned_key) = openssl_cert(&dir, "panel");
    let (other, other_key) = openssl_cert(&dir, "impostor");
    // Another self-signed certificate: neither pinned nor issued by the pinned one.
    let e = exchange(server_config(der(&other), key(&other_key), false), &pinned).unwrap_err();
    assert!(
        matches!(&e, ClientError::Tls(m) if m.contains("--ca-cert")),
        "the error says what to do: {e}"
    );
    // The pinned certificate, signed for with another key.
    for tls12 in [false, true] {
        let e = exchange(server_config(der(&pinned), key(&other_key), tls12), &pinned).unwrap_err();
        assert!(
            matches!(&e, ClientError::Tls(m) if m.to_lowercase().contains("signature")),
            "tls12={tls12}: {e}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_certificate_issued_by_the_given_ca_is_still_verified_as_before() {
    // rcgen: a CA, and a server certificate for 127.0.0.1 it issued.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names = |n: &str| rcgen::CertificateParams::new(vec![n.to_owned()]).unwrap();
    let leaf = names("127.0.0.1").signed_by(&leaf_key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    exchange(
        server_config(leaf.der().clone(), key, false),
        ca.pem().as_bytes(),
    )
    .unwrap();
    // Issued by the CA but for another name: refused.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let wrong = names("panel.example")
        .signed_by(&other_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(other_key.serialize_der().into());
    let e = exchange(
        server_config(wrong.der().clone(), key, false),
        ca.pem().as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Tls(_)), "{e}");
}
