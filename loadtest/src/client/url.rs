//! The few URLs the client needs: `https://host:port[/base]` and `wss://host:port/path`.
//! TLS only — a plaintext scheme is refused with a clear error rather than downgraded.

use std::net::SocketAddr;

use rustls_pki_types::ServerName;

use super::ClientError;

/// A parsed `https://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host as written (without IPv6 brackets), used for SNI and certificate checks.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `url`; `schemes` are the accepted schemes (e.g. `["https"]`).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Target, ClientError> {
        let bad = |why: &str| Err(ClientError::Url(format!("{url:?}: {why}")));
        let Some((scheme, rest)) = url.split_once("://") else {
            return bad("expected scheme://host:port");
        };
        let scheme = scheme.to_ascii_lowercase();
        if !schemes.contains(&scheme.as_str()) {
            return bad(&format!("scheme must be one of {schemes:?} (TLS only)"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return bad("user info is not supported");
        }
        let default_port = 443;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("unclosed '[' in IPv6 host");
            };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok(),
                None if after.is_empty() => Some(default_port),
                None => None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()),
                None => (authority, Some(default_port)),
            }
        };
        let Some(port) = port.filter(|p| *p != 0) else {
            return bad("bad port");
        };
        if host.is_empty() {
            return bad("empty host");
        }
        Ok(Target {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The name the certificate must carry.
    pub fn server_name(&self) -> Result<ServerName<'static>, ClientError> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Url(format!("{:?} is not a valid host: {e}", self.host)))
    }

    /// `host:port` for the `Host` header (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves the host (no DNS round trip for IP literals).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ClientError> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs = smol::net::resolve((self.host.as_str(), self.port)).await?;
        if addrs.is_empty() {
            return Err(ClientError::Url(format!(
                "{:?} resolves to nothing",
                self.host
            )));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Target {
        Target::parse(url, &["https", "wss"]).unwrap()
    }

    #[test]
    fn parses_host_port_path() {
        let t = ok("https://127.0.0.1:8443/api/x?y=1");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.path, "/api/x?y=1");
        assert_eq!(t.authority(), "127.0.0.1:8443");
    }

    #[test]
    fn default_port_and_path() {
        let t = ok("wss://panel.example.com");
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        assert_eq!(ok("https://h?q=1").path, "/?q=1");
    }

    #[test]
    fn ipv6() {
        let t = ok("wss://[::1]:9000/ws/agents");
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 9000);
        assert_eq!(t.authority(), "[::1]:9000");
        assert!(t.server_name().is_ok());
    }

    #[test]
    fn refuses_plaintext_and_garbage() {
        for bad in [
            "http://127.0.0.1:80/",
            "ws://h/",
            "127.0.0.1:8443",
            "https://:8443/",
            "https://h:0/",
            "https://h:99999/",
            "https://h:x/",
            "https://u@h/",
            "https://[::1/",
        ] {
            assert!(
                matches!(
                    Target::parse(bad, &["https", "wss"]),
                    Err(ClientError::Url(_))
                ),
                "{bad}"
            );
        }
    }
}
