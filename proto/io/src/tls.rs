//! The rustls client configuration (ring provider, TLS 1.2/1.3, ALPN `http/1.1`): trust
//! exactly the certificates given — normally the panel's self-signed certificate — or,
//! without one, the system's CA bundle.
//!
//! A given certificate is trusted two ways: as a CA (a server certificate it signed, for
//! the server's name, within its dates), and pinned: a server presenting exactly that
//! certificate is accepted whatever its extensions, names or dates, as an SSH host key
//! is. The pin is what makes `openssl req -x509` certificates work: OpenSSL marks them
//! as CAs, and webpki refuses a CA certificate as a server's own (`CaUsedAsEndEntity`).
//! The handshake signature is still verified against the certificate's key, so only the
//! holder of its private key passes. Rotate a pinned certificate by replacing the file.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ClientError;

/// Places where Linux distributions keep the system CA bundle; `SSL_CERT_FILE` wins.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A client config trusting the CA(s) in the PEM file `ca_pem`, or the system bundle when
/// `None`. A given file must hold at least one certificate and every one must be usable; the
/// system bundle is read leniently (certificates webpki cannot use are skipped).
pub fn tls_config(ca_pem: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    match ca_pem {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Tls(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            tls_config_from_pem(&pem)
                .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))
        }
        None => {
            let from_env = std::env::var_os("SSL_CERT_FILE");
            let candidates = from_env
                .iter()
                .map(Path::new)
                .chain(SYSTEM_BUNDLES.iter().map(Path::new));
            for path in candidates {
                let Ok(pem) = std::fs::read(path) else {
                    continue;
                };
                let mut roots = RootCertStore::empty();
                let mut reader = pem.as_slice();
                let certs = rustls_pemfile::certs(&mut reader).filter_map(Result::ok);
                let (added, _unusable) = roots.add_parsable_certificates(certs);
                if added > 0 {
                    return config_with(roots, Vec::new());
                }
            }
            Err(ClientError::Tls(
                "no CA given and no system CA bundle found; pass the panel's certificate \
                 (DATA/tls/panel.crt) with --ca-cert"
                    .into(),
            ))
        }
    }
}

/// A client config trusting every certificate in `pem` (at least one, all usable), as CAs
/// and pinned (see the module docs).
pub fn tls_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    let mut pins = Vec::new();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert: CertificateDer<'static> =
            cert.map_err(|e| ClientError::Tls(format!("bad PEM: {e}")))?;
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::Tls(format!("unusable certificate: {e}")))?;
        pins.push(cert);
    }
    if pins.is_empty() {
        return Err(ClientError::Tls("no certificate in PEM".into()));
    }
    config_with(roots, pins)
}

fn config_with(
    roots: RootCertStore,
    pins: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClientError::Tls(format!("certificate verifier: {e}")))?;
    let verifier = Arc::new(Pinned {
        pins,
        webpki,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS 1.3 tickets kept per identity by [`with_own_sessions`]: rustls keeps at most 8
/// per server name anyway, and one connection at a time needs one.
const OWN_TICKETS: usize = 4;

/// `config` with a session store of its own (a few TLS 1.3 tickets for the panel).
///
/// Every [`rustls::ClientConfig`] resumes sessions by default, but its store is shared by
/// all connections made with it and keeps at most 8 tickets per server name, and a ticket
/// is used once. A process that is many clients of one panel (loadtest's crowd, thousands
/// of simulated agents) must give each its own store, or all but 8 of them would do a full
/// handshake on every reconnect. A real agent — one identity per process — needs nothing:
/// [`tls_config`]'s default store already resumes.
pub fn with_own_sessions(config: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut own = (**config).clone();
    own.resumption = rustls::client::Resumption::in_memory_sessions(OWN_TICKETS);
    Arc::new(own)
}

/// webpki's verification, plus the exact certificates given (see the module docs).
#[derive(Debug)]
struct Pinned {
    pins: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pem_is_an_error() {
        let err = tls_config_from_pem(b"").unwrap_err();
        assert!(matches!(err, ClientError::Tls(m) if m.contains("no certificate")));
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(tls_config_from_pem(pem), Err(ClientError::Tls(_))));
    }

    #[test]
    fn ca_file_errors_name_the_path() {
        let err = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let path = std::env::temp_dir().join(format!("ctrl-io-empty-ca-{}", std::process::id()));
        std::fs::write(&path, b"not a pem").unwrap();
        let err = tls_config(Some(&path)).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn generated_certificate_is_accepted() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = tls_config_from_pem(cert.cert.pem().as_bytes()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
