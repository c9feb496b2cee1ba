//! HTTP responses and the panel's JSON error shape.

/// A complete response. `content-length` and `connection` are set by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header fields (e.g. `content-type`).
    pub headers: Vec<(String, String)>,
    /// The body (not sent for `HEAD`, 204 and 304).
    pub body: Vec<u8>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl Response {
    /// A JSON response; a serialization failure becomes a 500 `INTERNAL_ERROR`.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
        match serde_json::to_vec(body) {
            Ok(body) => Response {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            },
            Err(e) => Response::error(
                proto::ErrorCode::InternalError,
                format!("response serialization failed: {e}"),
            ),
        }
    }

    /// `{"success":false,"error":{"code","message"}}` with the code's HTTP status.
    pub fn error(code: proto::ErrorCode, message: impl Into<String>) -> Response {
        Response::error_with_status(code.http_status(), code.as_str(), message)
    }

    /// Like [`error`](Self::error) with an explicit status and code (e.g. 502 pass-through
    /// of an agent's own error, or HTTP-level codes such as 408 `TIMEOUT`).
    pub fn error_with_status(status: u16, code: &str, message: impl Into<String>) -> Response {
        let message = message.into();
        let body = serde_json::to_vec(&ErrorBody {
            success: false,
            error: ErrorDetail {
                code,
                message: &message,
            },
        })
        .unwrap_or_else(|_| {
            br#"{"success":false,"error":{"code":"INTERNAL_ERROR","message":""}}"#.to_vec()
        });
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    /// A response with an explicit content type.
    pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The standard reason phrase of a status code (empty when unknown, which HTTP allows).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let r = Response::error(proto::ErrorCode::AgentOffline, "agent \"a\" is offline");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"success":false,"error":{"code":"AGENT_OFFLINE","message":"agent \"a\" is offline"}})
        );
        let r = Response::error_with_status(502, "DOCKER_ERROR", "boom");
        assert_eq!(r.status, 502);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "DOCKER_ERROR");
    }

    #[test]
    fn json_and_text() {
        let r = Response::json(200, &serde_json::json!({"success": true}));
        assert_eq!(r.body, br#"{"success":true}"#);
        let r = Response::text(200, "text/plain; version=0.0.4", "x 1\n").with_header("x-a", "b");
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
        assert_eq!(r.header("X-A"), Some("b"));
        assert_eq!(r.body, b"x 1\n");
    }

    #[test]
    fn json_serialization_failure_is_500() {
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1); // non-string map keys cannot be JSON
        let r = Response::json(200, &m);
        assert_eq!(r.status, 500);
    }
}
