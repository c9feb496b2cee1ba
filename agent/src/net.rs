//! The agent's only outbound network plumbing: URL parsing, the rustls client
//! configuration, and a TLS connection with a deadline. Used by the HTTPS client
//! ([`crate::https`]) and the WebSocket link ([`crate::link`]).

use futures_rustls::TlsConnector;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use smol::net::TcpStream;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A TLS connection to the panel.
pub type TlsStream = futures_rustls::client::TlsStream<TcpStream>;

/// Where system CA bundles live on common distributions, tried when no `--ca-cert` is given.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Errors building TLS or connecting.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read CA certificates from {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what} timed out after {secs} s")]
    Timeout { what: String, secs: u64 },
}

/// An `https://` or `wss://` URL, split into what a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Wss,
}

impl Url {
    /// Parses `https://host[:port][/path]` or `wss://...`. Plain `http`/`ws` are refused:
    /// the protocol is TLS only.
    pub fn parse(s: &str) -> Result<Url, NetError> {
        let fail = |reason: &str| NetError::Url {
            url: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("wss://") {
            (Scheme::Wss, r)
        } else {
            return Err(fail("must start with https:// or wss:// (TLS only)"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(fail("user info in URLs is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| fail("unclosed `[`"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| fail("bad port"))?),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c.is_control()) || path.contains(' ') {
            return Err(fail("contains whitespace"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| fail("port must be 1..=65535"))?,
        };
        Ok(Url {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host:port` as written in a `Host` header (IPv6 in brackets, default port omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The same URL with another path (e.g. `/api/agents/refresh` on the panel's base URL).
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_owned(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Wss => "wss",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// The rustls client configuration: ring provider, TLS 1.2/1.3, trusting exactly the CA
/// certificates in `ca_pem` (the panel's self-signed certificate, typically) or, without
/// one, the system bundle.
pub fn client_config(ca_pem: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(path) => {
            let added = add_pem_file(&mut roots, path)?;
            if added == 0 {
                return Err(NetError::Ca {
                    path: path.display().to_string(),
                    reason: "no certificate found in the file".into(),
                });
            }
        }
        None => {
            let found = SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| NetError::Ca {
                    path: SYSTEM_BUNDLES.join(", "),
                    reason: "no system CA bundle found; pass --ca-cert".into(),
                })?;
            add_pem_file(&mut roots, found)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, NetError> {
    let ca_err = |reason: String| NetError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ca_err(e.to_string()))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    Ok(added)
}

/// Connects TCP then TLS to `url`, the whole thing within `deadline`.
pub async fn connect_tls(
    url: &Url,
    tls: &Arc<rustls::ClientConfig>,
    deadline: Duration,
) -> Result<TlsStream, NetError> {
    let addr = url.authority();
    let name = ServerName::try_from(url.host.clone()).map_err(|_| NetError::Url {
        url: url.to_string(),
        reason: "host is not a valid DNS name or IP address".into(),
    })?;
    let connector = TlsConnector::from(tls.clone());
    let connect = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| NetError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(name, tcp)
            .await
            .map_err(|source| NetError::Handshake {
                addr: addr.clone(),
                source,
            })
    };
    with_deadline(deadline, format!("connecting to {addr}"), connect).await
}

/// Runs `fut`, failing with [`NetError::Timeout`] after `deadline`.
pub async fn with_deadline<T>(
    deadline: Duration,
    what: String,
    fut: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    futures_lite::future::or(fut, async {
        smol::Timer::after(deadline).await;
        Err(NetError::Timeout {
            what,
            secs: deadline.as_secs(),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_panel_urls() {
        let u = Url::parse("wss://panel.example.com/ws/agents").unwrap();
        assert_eq!(u.scheme, Scheme::Wss);
        assert_eq!(u.host, "panel.example.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/ws/agents");
        assert_eq!(u.to_string(), "wss://panel.example.com/ws/agents");

        let u = Url::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8443, "/")
        );
        assert_eq!(u.authority(), "127.0.0.1:8443");
        assert_eq!(
            u.with_path("/api/agents/refresh").to_string(),
            "https://127.0.0.1:8443/api/agents/refresh"
        );

        let u = Url::parse("https://[::1]:8443/x?y=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.authority(), "[::1]:8443");
        assert_eq!(u.path, "/x?y=1");
        assert_eq!(Url::parse("https://h?q").unwrap().path, "/?q");
    }

    #[test]
    fn refuses_plaintext_and_malformed_urls() {
        for bad in [
            "http://h",
            "ws://h/ws",
            "https://",
            "https://:80",
            "https://h:0",
            "https://h:99999",
            "https://u:p@h",
            "https://[::1",
            "wss://h h/",
            "ftp://h",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let path = std::env::temp_dir().join(format!("agent-empty-ca-{}", std::process::id()));
        std::fs::write(&path, b"not a pem").unwrap();
        let e = client_config(Some(&path)).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
        std::fs::remove_file(path).unwrap();
    }
}
