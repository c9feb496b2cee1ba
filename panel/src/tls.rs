//! The panel's TLS identity and rustls server configuration.
//!
//! The panel only speaks TLS. An operator either provides a certificate chain and key
//! (`--tls-cert`/`--tls-key`, PEM) or the panel creates — once — a self-signed ECDSA P-256
//! certificate for `localhost`, `127.0.0.1`, `::1` and any extra hosts, stores it under
//! `DATA/tls/` (key mode 0600) and reuses it on every later start so that agents which
//! pinned it keep working. The SHA-256 fingerprint of the leaf certificate (DER) is returned
//! for printing, formatted `AA:BB:…`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The outcome of [`setup`].
#[derive(Clone)]
pub struct TlsSetup {
    /// Ready-to-use rustls configuration (ring provider, ALPN `http/1.1`, TLS 1.3 tickets).
    pub config: Arc<rustls::ServerConfig>,
    /// The PEM file holding the certificate (agents use it as their CA with `--ca-cert`).
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate's DER, upper-case hex pairs joined by `:`.
    pub fingerprint_sha256: String,
    /// Whether the certificate was created by this call (first start).
    pub generated: bool,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("cert_path", &self.cert_path)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// Why the TLS identity could not be set up. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `--tls-cert` / `--tls-key` was given.
    #[error("--tls-cert and --tls-key must be given together")]
    CertKeyPair,
    /// Only one of the two generated files exists.
    #[error(
        "{present} exists but {missing} does not; restore it or delete {present} to generate a new certificate"
    )]
    HalfGenerated {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The certificate file contains no `CERTIFICATE` PEM block.
    #[error("{}: no PEM certificate found", .0.display())]
    NoCertificate(PathBuf),
    /// The key file contains no private key PEM block.
    #[error("{}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1)", .0.display())]
    NoPrivateKey(PathBuf),
    /// The key or certificate was rejected by rustls (unsupported key type, mismatch, ...).
    #[error("certificate {} / key {}: {source}", cert.display(), key.display())]
    Rustls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// Certificate generation failed (e.g. an extra host is not a valid DNS name).
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// File name of the generated certificate inside `DATA/tls/`.
pub const CERT_FILE: &str = "panel.crt";
/// File name of the generated key inside `DATA/tls/`.
pub const KEY_FILE: &str = "panel.key";

/// Loads or creates the panel's TLS identity; see the module docs.
pub fn setup(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    extra_hosts: &[String],
) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        (None, None) => {
            let dir = data_dir.join("tls");
            let c = dir.join(CERT_FILE);
            let k = dir.join(KEY_FILE);
            let generated = match (c.exists(), k.exists()) {
                (true, true) => {
                    warn_if_key_readable(&k);
                    false
                }
                (false, false) => {
                    generate(&dir, &c, &k, extra_hosts)?;
                    true
                }
                (true, false) => {
                    return Err(TlsError::HalfGenerated {
                        present: c,
                        missing: k,
                    });
                }
                (false, true) => {
                    return Err(TlsError::HalfGenerated {
                        present: k,
                        missing: c,
                    });
                }
            };
            (c, k, generated)
        }
        _ => return Err(TlsError::CertKeyPair),
    };
    let certs = load_certs(&cert_path)?;
    let key_der = load_key(&key_path)?;
    let fingerprint_sha256 = fingerprint(&certs[0]);
    let config = server_config(certs, key_der).map_err(|source| TlsError::Rustls {
        cert: cert_path.clone(),
        key: key_path.clone(),
        source,
    })?;
    Ok(TlsSetup {
        config,
        cert_path,
        fingerprint_sha256,
        generated,
    })
}

/// Host names the generated certificate covers, deduplicated (IP literals may be bracketed).
pub fn subject_alt_names(extra_hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in extra_hosts {
        let h = h.trim();
        let h = h
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(h);
        if !h.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.to_string());
        }
    }
    names
}

/// The generated key must stay private; say so if someone loosened its mode.
fn warn_if_key_readable(key: &Path) {
    if let Ok(meta) = fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        log::warn!(
            "{} is readable by other users (mode {:o}); run: chmod 600 {}",
            key.display(),
            meta.permissions().mode() & 0o777,
            key.display()
        );
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn generate(dir: &Path, cert: &Path, key: &Path, extra_hosts: &[String]) -> Result<(), TlsError> {
    let mut params = rcgen::CertificateParams::new(subject_alt_names(extra_hosts))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ctrl panel (self-signed)");
    let signing_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let certificate = params.self_signed(&signing_key)?;

    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    // Key first, written to a temporary name and renamed, so a crash never leaves a
    // certificate without its key.
    ctrl_io::atomic_write(key, signing_key.serialize_pem().as_bytes()).map_err(io_err(key))?;
    ctrl_io::atomic_write_mode(cert, certificate.pem().as_bytes(), 0o644).map_err(io_err(cert))?;
    Ok(())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(io_err(path))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(io_err(path))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(io_err(path))?
        .ok_or_else(|| TlsError::NoPrivateKey(path.to_path_buf()))
}

/// The rustls server configuration the panel uses for a given identity.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first, chosen over the client's order: every TLS 1.3 key
    // schedule step (and a resumption's binder) is an HMAC of the suite's hash, and
    // SHA-384 has no hardware path on x86 (SHA-256 has SHA-NI) — in a resumed reconnect
    // storm SHA-384 alone was 6 % of the panel's samples. Both suites are TLS 1.3's
    // mandatory-to-implement ones; the others stay available in their default order.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // TLS 1.3 session resumption with stateless tickets: nothing is stored per session on
    // the panel (the ticket is the session state, sealed with ChaCha20-Poly1305 under a key
    // that rotates every 6 hours; the previous key is kept so tickets live at most 12 hours).
    // A resumed handshake skips the certificate and the ECDSA signature, which is most of
    // a reconnect storm's cost. One ticket per handshake: each reconnect consumes one and
    // receives the next. No early data (0-RTT stays off: it is replayable).
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// SHA-256 fingerprint of a DER certificate as `AA:BB:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut s = String::with_capacity(95);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "panel-tls-{tag}-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn fastrand_suffix() -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    #[test]
    fn generates_once_then_reuses() {
        let d = tempdir("gen");
        let first = setup(&d, None, None, &["panel.example.com".into()]).unwrap();
        assert!(first.generated);
        assert_eq!(first.cert_path, d.join("tls").join(CERT_FILE));
        let key_mode = fs::metadata(d.join("tls").join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        assert_eq!(first.fingerprint_sha256.len(), 32 * 3 - 1);
        assert!(
            first
                .fingerprint_sha256
                .chars()
                .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(first.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(first.config.send_tls13_tickets, 1);
        assert!(first.config.ticketer.enabled());
        // The panel picks AES-128-GCM/SHA-256 whatever the client prefers.
        assert!(first.config.ignore_client_order);
        assert_eq!(
            first.config.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );

        let second = setup(&d, None, None, &[]).unwrap();
        assert!(!second.generated);
        assert_eq!(second.fingerprint_sha256, first.fingerprint_sha256);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fingerprint_matches_known_digest() {
        // SHA-256("abc")
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn operator_files_are_loaded_and_errors_name_the_file() {
        let d = tempdir("op");
        let gen_dir = d.join("gen");
        setup(&gen_dir, None, None, &[]).unwrap();
        let c = gen_dir.join("tls").join(CERT_FILE);
        let k = gen_dir.join("tls").join(KEY_FILE);
        let s = setup(&d, Some(&c), Some(&k), &[]).unwrap();
        assert!(!s.generated);
        assert_eq!(s.cert_path, c);

        assert!(matches!(
            setup(&d, Some(&c), None, &[]),
            Err(TlsError::CertKeyPair)
        ));
        let missing = d.join("nope.pem");
        let err = setup(&d, Some(&missing), Some(&k), &[]).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        // Swapped files: no certificate in the key file, no key in the cert file.
        assert!(matches!(
            setup(&d, Some(&k), Some(&k), &[]),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            setup(&d, Some(&c), Some(&c), &[]),
            Err(TlsError::NoPrivateKey(_))
        ));
        // A key that does not belong to the certificate.
        let other = d.join("other");
        setup(&other, None, None, &[]).unwrap();
        let err = setup(&d, Some(&c), Some(&other.join("tls").join(KEY_FILE)), &[]).unwrap_err();
        assert!(matches!(err, TlsError::Rustls { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn half_generated_is_reported() {
        let d = tempdir("half");
        setup(&d, None, None, &[]).unwrap();
        fs::remove_file(d.join("tls").join(KEY_FILE)).unwrap();
        let err = setup(&d, None, None, &[]).unwrap_err();
        assert!(matches!(err, TlsError::HalfGenerated { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn alt_names_dedup_and_unbracket() {
        let names = subject_alt_names(&["[::1]".into(), "LOCALHOST".into(), "10.0.0.5".into()]);
        assert_eq!(names, vec!["localhost", "127.0.0.1", "::1", "10.0.0.5"]);
    }
}
