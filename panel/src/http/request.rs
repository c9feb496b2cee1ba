//! A parsed HTTP request as handed to route handlers.

use std::net::SocketAddr;

use super::body::BodyStream;

/// The request method. Unknown (but syntactically valid) methods are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD` (answered like `GET` without a body when no `HEAD` route exists)
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// Any other token, e.g. `PROPFIND`.
    Other(String),
}

impl Method {
    /// Parses a method token (case-sensitive, as HTTP requires).
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One HTTP request with its whole body — or, on a route that streams its body
/// ([`Router::route_streaming`](super::Router::route_streaming)), with the body still
/// arriving in [`Request::stream`].
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Percent-decoded path, without the query.
    pub path: String,
    /// Raw query string (after `?`), possibly empty.
    pub query: String,
    /// Header fields in order of arrival; names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The whole body (`Content-Length` or chunked), within the configured limit.
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Path parameters filled by the router, e.g. `("id", "srv-1")`.
    pub params: Vec<(String, String)>,
    /// The body as it arrives, on a streaming route (then `body` is empty).
    pub stream: Option<BodyStream>,
}

impl Request {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A path parameter captured by the router.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// First query parameter with this (decoded) name, percent-decoded (`+` is a space).
    /// A parameter without `=` has the empty value; an undecodable value is `None`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        for pair in self.query.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k, true).as_deref() == Some(name) {
                return percent_decode(v, true);
            }
        }
        None
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?.trim();
        let (scheme, token) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        (!token.is_empty()).then_some(token)
    }
}

/// Percent-decodes `s` (and `+` as space when `plus_as_space`); `None` on a malformed
/// escape or if the result is not UTF-8.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        return Some(s.to_string());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Get,
            path: "/".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            params: vec![("id".into(), "srv-1".into())],
            stream: None,
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b", false).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("%2Fserver%2fx", false).unwrap(), "/server/x");
        assert_eq!(percent_decode("%E2%9C%93", false).unwrap(), "\u{2713}");
        assert!(percent_decode("%", false).is_none());
        assert!(percent_decode("%4", false).is_none());
        assert!(percent_decode("%zz", false).is_none());
        assert!(percent_decode("%FF", false).is_none(), "not UTF-8");
    }

    #[test]
    fn query_params() {
        let r = req("path=%2Fserver%2Flogs&x&path=second&q=a+b", &[]);
        assert_eq!(r.query_param("path").unwrap(), "/server/logs");
        assert_eq!(r.query_param("x").unwrap(), "");
        assert_eq!(r.query_param("q").unwrap(), "a b");
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(req("", &[]).query_param("a"), None);
        assert_eq!(req("bad=%G1", &[]).query_param("bad"), None);
    }

    #[test]
    fn headers_params_bearer() {
        let r = req("", &[("authorization", "Bearer  abc.def "), ("x-a", "1")]);
        assert_eq!(r.header("X-A"), Some("1"));
        assert_eq!(r.header("x-b"), None);
        assert_eq!(r.bearer(), Some("abc.def"));
        assert_eq!(r.param("id"), Some("srv-1"));
        assert_eq!(r.param("nope"), None);
        assert_eq!(req("", &[("authorization", "Basic abc")]).bearer(), None);
        assert_eq!(req("", &[("authorization", "Bearer ")]).bearer(), None);
        assert_eq!(
            req("", &[("authorization", "bearer t")]).bearer(),
            Some("t")
        );
    }

    #[test]
    fn methods() {
        assert_eq!(Method::from_token("GET"), Method::Get);
        assert_eq!(Method::from_token("get"), Method::Other("get".into()));
        assert_eq!(Method::from_token("PROPFIND").as_str(), "PROPFIND");
    }
}
