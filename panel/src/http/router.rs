//! Method + path-pattern routing.
//!
//! Patterns are literal segments and `{name}` captures, matched segment by segment against
//! the percent-decoded path (`/api/servers/{id}/power`). Unknown paths answer 404
//! `NOT_FOUND`, known paths with the wrong method 405 `METHOD_NOT_ALLOWED` with an `Allow`
//! header, and `HEAD` falls back to the `GET` route (the server drops the body). A path no
//! route knows goes to the [`fallback`](Router::fallback) handler when one is set (the web
//! UI's assets and shell), else 404.

use std::future::Future;
use std::sync::Arc;

use futures_lite::future::Boxed;

use super::body::Streamed;
use super::request::{Method, Request};
use super::response::Response;
use super::ws::WsStream;

/// What runs on an upgraded WebSocket: consumes the stream, returns when done.
pub type UpgradeFn = Box<dyn FnOnce(WsStream) -> Boxed<()> + Send>;

/// A handler's answer.
pub enum Reply {
    /// A normal HTTP response.
    Http(Response),
    /// The handler has already authenticated; the server validates the WebSocket handshake
    /// headers (400 if invalid), writes 101, wraps the stream with `config`, then runs `run`.
    Upgrade {
        /// WebSocket limits and buffer sizes for this socket. `read_buffer_size` is capped
        /// at [`WS_READ_BUFFER_MAX`](super::server::WS_READ_BUFFER_MAX) (it is allocated
        /// eagerly per socket).
        config: async_tungstenite::tungstenite::protocol::WebSocketConfig,
        /// The socket's owner.
        run: UpgradeFn,
    },
    /// A response whose body is written while it is produced (see [`super::body`]).
    Stream(Streamed),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Http(r) => f.debug_tuple("Http").field(r).finish(),
            Reply::Upgrade { config, .. } => f
                .debug_struct("Upgrade")
                .field("config", config)
                .finish_non_exhaustive(),
            Reply::Stream(s) => f.debug_tuple("Stream").field(s).finish(),
        }
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Http(r)
    }
}

/// A route handler.
pub type Handler = Arc<dyn Fn(Request) -> Boxed<Reply> + Send + Sync>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Two patterns that match exactly the same paths (parameter names aside).
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::Literal(l), Segment::Literal(m)) => l == m,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

struct Route {
    method: Method,
    segments: Vec<Segment>,
    handler: Handler,
    /// The handler pulls the body as it arrives (see [`Router::route_streaming`]).
    streaming: bool,
}

/// The route table.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Handler>,
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

impl Router {
    /// An empty table (everything is 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route. `pattern` starts with `/`; `{name}` segments capture one path segment.
    ///
    /// # Panics
    /// On a malformed pattern (missing leading `/`, unbalanced braces, empty or duplicate
    /// parameter name) or an exact duplicate route — programming errors at start-up.
    pub fn route(&mut self, method: Method, pattern: &str, handler: Handler) -> &mut Self {
        self.add(method, pattern, handler, false)
    }

    /// Adds a route whose handler receives the body as it arrives, in
    /// [`Request::stream`], up to the server's upload limit instead of its body limit (see
    /// [`super::body`]). Only such routes may take bodies larger than the body limit.
    pub fn route_streaming(
        &mut self,
        method: Method,
        pattern: &str,
        handler: Handler,
    ) -> &mut Self {
        self.add(method, pattern, handler, true)
    }

    /// Whether the route `method` `path` goes to streams its request body.
    pub fn streams_body(&self, method: &Method, path: &str) -> bool {
        self.routes
            .iter()
            .find(|r| r.method == *method && Self::matches(r, path).is_some())
            .is_some_and(|r| r.streaming)
    }

    fn add(
        &mut self,
        method: Method,
        pattern: &str,
        handler: Handler,
        streaming: bool,
    ) -> &mut Self {
        assert!(
            pattern.starts_with('/'),
            "route pattern {pattern:?} must start with '/'"
        );
        let mut segments = Vec::new();
        for seg in split_path(pattern) {
            if let Some(inner) = seg.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unbalanced '{{' in route pattern {pattern:?}"));
                assert!(
                    !name.is_empty() && !name.contains(['{', '}']),
                    "bad parameter name in route pattern {pattern:?}"
                );
                assert!(
                    !segments.contains(&Segment::Param(name.to_string())),
                    "duplicate parameter {name:?} in route pattern {pattern:?}"
                );
                segments.push(Segment::Param(name.to_string()));
            } else {
                assert!(
                    !seg.contains(['{', '}']),
                    "stray brace in route pattern {pattern:?}"
                );
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        assert!(
            !self
                .routes
                .iter()
                .any(|r| r.method == method && same_shape(&r.segments, &segments)),
            "duplicate route {method} {pattern}"
        );
        self.routes.push(Route {
            method,
            segments,
            handler,
            streaming,
        });
        self
    }

    /// Sets the handler for paths no route matches with any method (it sees every method and
    /// answers its own 404s). Paths some route knows keep their 405 answers.
    pub fn fallback(&mut self, handler: Handler) -> &mut Self {
        self.fallback = Some(handler);
        self
    }

    fn matches(route: &Route, path: &str) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        let mut segs = route.segments.iter();
        for part in split_path(path) {
            match segs.next()? {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                // A capture never matches an empty segment ("/api/servers//power").
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), part.to_string())),
            }
        }
        if segs.next().is_some() {
            return None;
        }
        Some(params)
    }

    /// Finds the handler for `req` and runs it; 404/405 JSON answers otherwise.
    pub fn dispatch(&self, mut req: Request) -> Boxed<Reply> {
        let mut allowed: Vec<&Method> = Vec::new();
        let mut get_fallback = None;
        for route in &self.routes {
            let Some(params) = Self::matches(route, &req.path) else {
                continue;
            };
            if route.method == req.method {
                req.params = params;
                return (route.handler)(req);
            }
            if req.method == Method::Head && route.method == Method::Get && get_fallback.is_none() {
                get_fallback = Some((route, params));
            }
            if !allowed.contains(&&route.method) {
                allowed.push(&route.method);
            }
        }
        if let Some((route, params)) = get_fallback {
            req.params = params;
            return (route.handler)(req);
        }
        if let (true, Some(fallback)) = (allowed.is_empty(), &self.fallback) {
            return fallback(req);
        }
        let response = if allowed.is_empty() {
            Response::error(
                proto::ErrorCode::NotFound,
                format!("no route for {}", req.path),
            )
        } else {
            if allowed.contains(&&Method::Get) && !allowed.contains(&&Method::Head) {
                allowed.push(&Method::Head);
            }
            let allow = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            Response::error(
                proto::ErrorCode::MethodNotAllowed,
                format!(
                    "{} is not allowed on {} (allowed: {allow})",
                    req.method, req.path
                ),
            )
            .with_header("allow", &allow)
        };
        Box::pin(std::future::ready(Reply::Http(response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            params: Vec::new(),
            stream: None,
        }
    }

    fn echo(tag: &'static str) -> Handler {
        handler(move |r: Request| async move {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Response::text(200, "text/plain", format!("{tag} {}", params.join(","))).into()
        })
    }

    fn run(router: &Router, m: Method, p: &str) -> Response {
        match smol::block_on(router.dispatch(req(m, p))) {
            Reply::Http(r) => r,
            Reply::Upgrade { .. } | Reply::Stream(_) => panic!("unexpected reply"),
        }
    }

    fn router() -> Router {
        let mut r = Router::new();
        r.route(Method::Get, "/api/servers", echo("list"))
            .route(Method::Post, "/api/servers", echo("create"))
            .route(Method::Get, "/api/servers/{id}", echo("get"))
            .route(Method::Post, "/api/servers/{id}/power", echo("power"))
            .route(
                Method::Get,
                "/api/servers/{id}/files/content",
                echo("content"),
            )
            .route(Method::Get, "/", echo("root"));
        r
    }

    #[test]
    fn matches_literals_and_params() {
        let r = router();
        assert_eq!(run(&r, Method::Get, "/api/servers").body, b"list ");
        assert_eq!(run(&r, Method::Post, "/api/servers").body, b"create ");
        assert_eq!(
            run(&r, Method::Get, "/api/servers/srv-1").body,
            b"get id=srv-1"
        );
        assert_eq!(
            run(&r, Method::Post, "/api/servers/a b/power").body,
            b"power id=a b"
        );
        assert_eq!(
            run(&r, Method::Get, "/api/servers/x/files/content").body,
            b"content id=x"
        );
        assert_eq!(run(&r, Method::Get, "/").body, b"root ");
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let r = router();
        for p in [
            "/api/server",
            "/api/servers/",
            "/api/servers//power",
            "/api/servers/x/y",
        ] {
            let resp = run(&r, Method::Get, p);
            assert_eq!(resp.status, 404, "{p}");
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(v["error"]["code"], "NOT_FOUND");
        }
        let resp = run(&r, Method::Delete, "/api/servers");
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("GET, POST, HEAD"));
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], "METHOD_NOT_ALLOWED");
        assert_eq!(run(&r, Method::Get, "/api/servers/x/power").status, 405);
    }

    #[test]
    fn head_falls_back_to_get() {
        let r = router();
        assert_eq!(run(&r, Method::Head, "/api/servers/q").body, b"get id=q");
        assert_eq!(run(&r, Method::Head, "/api/servers/q/power").status, 405);
    }

    #[test]
    fn fallback_gets_only_paths_no_route_knows() {
        let mut r = router();
        r.fallback(echo("fallback"));
        assert_eq!(run(&r, Method::Get, "/servers/x").body, b"fallback ");
        assert_eq!(run(&r, Method::Post, "/nowhere").body, b"fallback ");
        assert_eq!(run(&r, Method::Head, "/api/server").body, b"fallback ");
        // Known paths keep their own answers, including 405 for another method.
        assert_eq!(run(&r, Method::Get, "/api/servers").body, b"list ");
        assert_eq!(run(&r, Method::Delete, "/api/servers").status, 405);
        assert_eq!(run(&r, Method::Head, "/api/servers/q").body, b"get id=q");
    }

    #[test]
    #[should_panic(expected = "duplicate route")]
    fn duplicate_routes_panic() {
        let mut r = Router::new();
        r.route(Method::Get, "/a/{x}", echo("1"));
        r.route(Method::Get, "/a/{y}", echo("2"));
    }

    #[test]
    #[should_panic(expected = "unbalanced")]
    fn bad_pattern_panics() {
        Router::new().route(Method::Get, "/a/{x", echo("1"));
    }
}
