//! The URLs a client of the panel needs: `https://host[:port][/path]` (the REST base) and
//! `wss://host[:port]/path` (WebSockets). TLS only — a plaintext scheme is refused with a
//! clear error rather than downgraded.

use std::fmt;
use std::net::SocketAddr;

use rustls_pki_types::ServerName;

use crate::ClientError;

/// The two schemes we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Wss,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Wss => "wss",
        }
    }
}

/// An `https://` or `wss://` URL, split into what a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP address, without IPv6 brackets; used for SNI and certificate checks.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `https://…` or `wss://…` (scheme case-insensitive). Plain `http`/`ws`, user
    /// info, whitespace and control characters, and ports outside 1..=65535 are refused.
    pub fn parse(s: &str) -> Result<Url, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{s:?}: {why}"));
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected https:// or wss:// (TLS only)"))?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.eq_ignore_ascii_case("wss") {
            Scheme::Wss
        } else {
            return Err(bad("scheme must be https or wss (TLS only)"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in IPv6 host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let unprintable = |c: char| c.is_whitespace() || c.is_control();
        if host.contains(unprintable) || path.contains(unprintable) {
            return Err(bad("contains whitespace or control characters"));
        }
        let port = match port {
            None => 443,
            Some(p) => parse_port(p).ok_or_else(|| bad("port must be 1..=65535"))?,
        };
        Ok(Url {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// [`Url::parse`], and the scheme must be `scheme`.
    pub fn parse_as(s: &str, scheme: Scheme) -> Result<Url, ClientError> {
        let url = Url::parse(s)?;
        if url.scheme != scheme {
            return Err(ClientError::Url(format!(
                "{s:?}: must be a {}:// URL",
                scheme.as_str()
            )));
        }
        Ok(url)
    }

    /// `host[:port]` as written in a `Host` header (IPv6 in brackets, port 443 omitted).
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

    /// The same URL with another path.
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> Result<ServerName<'static>, ClientError> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Url(format!("{:?} is not a valid host: {e}", self.host)))
    }

    /// Resolves the host (no DNS round trip for IP literals).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ClientError> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs = smol::net::resolve((self.host.as_str(), self.port))
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.authority(),
                source,
            })?;
        if addrs.is_empty() {
            return Err(ClientError::Url(format!(
                "{:?} resolves to nothing",
                self.host
            )));
        }
        Ok(addrs)
    }
}

/// Digits only (no sign, no spaces), 1..=65535.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|p| *p != 0)
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
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
        assert_eq!(
            Url::parse("HTTPS://h:8443/api/x?y=1").unwrap().path,
            "/api/x?y=1"
        );

        let u = Url::parse("wss://[::1]:9000/x?y=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority(), "[::1]:9000");
        assert_eq!(u.path, "/x?y=1");
        assert!(u.server_name().is_ok());
        assert_eq!(Url::parse("https://h?q=1").unwrap().path, "/?q=1");
    }

    #[test]
    fn refuses_plaintext_and_malformed_urls() {
        for bad in [
            "http://h",
            "ws://h/ws",
            "ftp://h",
            "127.0.0.1:8443",
            "https://",
            "https://:80",
            "https://h:0",
            "https://h:99999",
            "https://h:x/",
            "https://h:+80/",
            "https://h:/",
            "https://u:p@h",
            "https://[::1",
            "https://[::1]x",
            "wss://h h/",
            "https://h/a b",
            "https://h/\u{7}",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(ClientError::Url(_))),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn parse_as_checks_the_scheme() {
        assert!(Url::parse_as("https://h", Scheme::Https).is_ok());
        let e = Url::parse_as("wss://h/ws", Scheme::Https).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(Url::parse_as("https://h/ws", Scheme::Wss).is_err());
    }
}
