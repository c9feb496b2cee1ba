//! The rustls client configuration (ring provider, TLS 1.2/1.3, ALPN `http/1.1`): trust
//! exactly the CA certificates given — normally the panel's self-signed certificate — or,
//! without one, the system's CA bundle.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

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
                    return config_with(roots);
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

/// A client config trusting every certificate in `pem` (at least one, all usable).
pub fn tls_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    let mut found = 0usize;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert: CertificateDer<'static> =
            cert.map_err(|e| ClientError::Tls(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("unusable CA certificate: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(ClientError::Tls("no certificate in PEM".into()));
    }
    config_with(roots)
}

fn config_with(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
