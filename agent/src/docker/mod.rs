//! Docker Engine API client over the local Unix socket.
//!
//! hyper 1.x's low-level HTTP/1.1 client on smol's `UnixStream` (see [`http`]); one fresh
//! connection per request. Paths are prefixed with the API version negotiated once in
//! [`DockerClient::connect`], so the Engine answers in the dialect these types expect.
//!
//! Layout: `http` (IO adapter, request plumbing), `error` (the error type and its wire
//! code), `types` (answers), `spec` (container create body), `containers` (container
//! calls and logs), `networks`, `events`, `attach` (hijacked stdin/stdout), `mux` (stream
//! framing).

mod attach;
mod containers;
mod error;
mod events;
mod http;
mod mux;
mod networks;
mod spec;
mod types;

pub use attach::{Attach, AttachOptions, AttachWriter};
pub use error::{DockerError, Missing, PullFailure};
pub use events::{Actor, Event, EventStream, LineSplitter, decode_event};
pub use http::ByteStream;
pub use mux::{DemuxError, Demuxer, OutputStream, StreamKind};
pub use networks::{ICC_OPTION, NetworkInspect, NetworkSpec};
pub use spec::{
    CAP_ADD_ALLOWLIST, CreateSpec, Empty, HostConfig, LogConfig, Mount, PortBinding, Protocol,
    RestartPolicy,
};
pub use types::{
    ContainerConfig, ContainerInspect, ContainerState, ContainerSummary, CpuStats, CpuUsage,
    Filters, ImageConfig, ImageInspect, Info, LogsOptions, MemoryStats, NetworkSettings,
    NetworkStats, PidsStats, PortBindingOut, Stats, Version,
};

use self::http::{Exchange, Query, ReqBody, encode, send, with_timeout};
use bytes::Bytes;
use http_body_util::Full;
use serde::de::DeserializeOwned;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket used when neither a flag nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long a plain request (connect, answer, body) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an image pull may take: large images on slow links are legitimately slow.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// JSON answers larger than this are refused rather than buffered.
const MAX_JSON_BODY: usize = 32 * 1024 * 1024;

/// A Docker API version such as `1.41`; ordered numerically (1.9 < 1.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// The newest dialect these types are written against.
    pub const MAX: ApiVersion = ApiVersion {
        major: 1,
        minor: 43,
    };
    /// The oldest Engine the agent supports (Docker 19.03): `Mounts`, `NanoCpus`,
    /// `CgroupVersion` and the event attributes used here all exist there.
    pub const MIN: ApiVersion = ApiVersion {
        major: 1,
        minor: 40,
    };

    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.trim().split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Picks the dialect to speak: the server's own version capped at ours.
fn negotiate(server: &Version) -> Result<ApiVersion, DockerError> {
    let api = ApiVersion::parse(&server.api_version).ok_or_else(|| DockerError::Decode {
        what: "GET /version".into(),
        message: format!("unreadable ApiVersion {:?}", server.api_version),
    })?;
    if api < ApiVersion::MIN {
        return Err(DockerError::UnsupportedApi {
            server: api.to_string(),
            needed: ApiVersion::MIN.to_string(),
        });
    }
    Ok(api.min(ApiVersion::MAX))
}

/// The socket named by `DOCKER_HOST=unix://...`, else [`DEFAULT_SOCKET`]. Any other
/// `DOCKER_HOST` scheme is refused: this agent only talks to a local Engine.
pub fn socket_from_env() -> Result<PathBuf, DockerError> {
    socket_from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref())
}

fn socket_from_docker_host(host: Option<&str>) -> Result<PathBuf, DockerError> {
    match host {
        Some(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(DockerError::InvalidArgument(format!(
                "DOCKER_HOST={host} is not a unix:// socket; only a local Docker socket is supported"
            ))),
        },
        _ => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// A handle on one Docker Engine. Cheap to clone; every call opens its own connection, so
/// clones can be used from any number of tasks at once.
#[derive(Debug, Clone)]
pub struct DockerClient {
    socket: PathBuf,
    api: ApiVersion,
    timeout: Duration,
    pull_timeout: Duration,
}

impl DockerClient {
    /// Checks the socket, asks the Engine its version and settles the API dialect.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, DockerError> {
        let socket = socket.as_ref().to_path_buf();
        check_socket(&socket)?;
        let mut client = DockerClient {
            socket,
            api: ApiVersion::MIN,
            timeout: DEFAULT_TIMEOUT,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        };
        let version = client.version().await?;
        client.api = negotiate(&version)?;
        log::debug!(
            "Docker {} at {}: speaking API {}",
            version.version,
            client.socket.display(),
            client.api
        );
        Ok(client)
    }

    /// Replaces the per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the whole-pull timeout (default [`DEFAULT_PULL_TIMEOUT`]).
    pub fn with_pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = timeout;
        self
    }

    pub fn api_version(&self) -> ApiVersion {
        self.api
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `GET /version`, unversioned: it is how the dialect is chosen.
    pub async fn version(&self) -> Result<Version, DockerError> {
        let request = build(::http::Method::GET, "/version".into(), None)?;
        let body = self
            .call_request(request, Missing::Other, self.timeout)
            .await?;
        decode("GET /version", body)
    }

    /// `GET /info`: CPU count, memory, architecture and Engine version for capabilities.
    pub async fn info(&self) -> Result<Info, DockerError> {
        self.get_json("/info", Missing::Other).await
    }

    /// `GET /images/{name}/json`; `None` when the image is not present locally.
    pub async fn image_inspect(&self, name: &str) -> Result<Option<ImageInspect>, DockerError> {
        match self
            .get_json(&format!("/images/{}/json", encode(name)), Missing::Image)
            .await
        {
            Ok(image) => Ok(Some(image)),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /images/create`: pulls `image` (`name`, `name:tag` or `name@digest`; no tag
    /// means `latest`, never "every tag"). The answer is a stream of JSON progress lines;
    /// an `error` line or a failed request becomes [`DockerError::ImagePull`] naming it.
    pub async fn image_pull(&self, image: &str) -> Result<(), DockerError> {
        if image.trim().is_empty() {
            return Err(DockerError::InvalidArgument(
                "the image name is empty".into(),
            ));
        }
        let (from, tag) = split_reference(image);
        let query = Query::new().push("fromImage", from).push_opt("tag", tag);
        let path = format!("/images/create{}", query.as_str());
        let pull = async {
            let body = self
                .open_stream(::http::Method::POST, &path, Missing::Image)
                .await
                .map_err(|e| pull_error(image, e))?;
            containers::check_pull_progress(image, body).await
        };
        with_timeout(self.pull_timeout, || format!("the pull of {image}"), pull).await
    }

    // ----- request plumbing shared by the call modules -----

    /// A request for a versioned path (`path` starts with `/`, query included).
    fn request(
        &self,
        method: ::http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<::http::Request<ReqBody>, DockerError> {
        build(method, format!("/v{}{}", self.api, path), body)
    }

    /// One whole request under the client timeout; the successful body, or the mapped error.
    async fn call(
        &self,
        method: ::http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        hint: Missing,
        timeout: Duration,
    ) -> Result<Bytes, DockerError> {
        let request = self.request(method, path, body)?;
        self.call_request(request, hint, timeout).await
    }

    async fn call_request(
        &self,
        request: ::http::Request<ReqBody>,
        hint: Missing,
        timeout: Duration,
    ) -> Result<Bytes, DockerError> {
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let ex = send(&self.socket, request, false).await?;
            if !ex.is_success() {
                return Err(ex.into_error(hint).await);
            }
            ex.into_body().collect(MAX_JSON_BODY).await
        };
        with_timeout(timeout, || what, exchange).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        hint: Missing,
    ) -> Result<T, DockerError> {
        let body = self
            .call(::http::Method::GET, path, None, hint, self.timeout)
            .await?;
        decode(&format!("GET {path}"), body)
    }

    /// Starts a streaming request: the timeout covers only the response head, the body then
    /// flows for as long as Docker keeps it open.
    async fn open_stream(
        &self,
        method: ::http::Method,
        path: &str,
        hint: Missing,
    ) -> Result<ByteStream, DockerError> {
        let request = self.request(method.clone(), path, None)?;
        let head = async {
            let ex: Exchange = send(&self.socket, request, false).await?;
            if !ex.is_success() {
                return Err(ex.into_error(hint).await);
            }
            Ok(ex.into_body())
        };
        with_timeout(self.timeout, || format!("{method} {path}"), head).await
    }
}

/// Fails early, with a clear message, when the socket is absent or unreadable.
fn check_socket(path: &Path) -> Result<(), DockerError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        Ok(_) => Err(DockerError::Unavailable {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a Unix socket"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DockerError::SocketMissing {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(DockerError::PermissionDenied {
                path: path.to_path_buf(),
            })
        }
        Err(source) => Err(DockerError::Unavailable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn build(
    method: ::http::Method,
    uri: String,
    body: Option<Vec<u8>>,
) -> Result<::http::Request<ReqBody>, DockerError> {
    let mut builder = ::http::Request::builder()
        .method(method)
        .uri(uri)
        // Docker's Go server rejects HTTP/1.1 requests without a Host.
        .header(::http::header::HOST, "docker");
    if body.is_some() {
        builder = builder.header(::http::header::CONTENT_TYPE, "application/json");
    }
    builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| DockerError::InvalidArgument(e.to_string()))
}

fn decode<T: DeserializeOwned>(what: &str, body: Bytes) -> Result<T, DockerError> {
    let mut owned = body.to_vec();
    simd_json::serde::from_slice(&mut owned).map_err(|e| DockerError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, DockerError> {
    serde_json::to_vec(value).map_err(|e| DockerError::InvalidArgument(e.to_string()))
}

/// `name[:tag]` or `name@digest` → the `fromImage` and `tag` query values. A `:` before the
/// last `/` belongs to a registry host (`host:5000/img`), not a tag.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, Some("latest")),
    }
}

/// Server-side refusals of a pull are reported as pull failures naming the image; local
/// failures (timeout, socket) keep their own kind and code.
fn pull_error(image: &str, e: DockerError) -> DockerError {
    match e {
        DockerError::Api { message, .. }
        | DockerError::NotFound { message, .. }
        | DockerError::Conflict { message } => DockerError::ImagePull {
            image: image.to_string(),
            failure: PullFailure::classify(image, &message),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::StreamExt;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn api_versions_order_numerically() {
        let v = |s| ApiVersion::parse(s).unwrap();
        assert!(v("1.9") < v("1.10"));
        assert_eq!(v("1.41").to_string(), "1.41");
        assert!(ApiVersion::parse("one").is_none());
        assert!(ApiVersion::parse("1").is_none());
    }

    #[test]
    fn negotiation_caps_and_refuses_old_engines() {
        let server = |api: &str| Version {
            api_version: api.into(),
            ..Version::default()
        };
        assert_eq!(negotiate(&server("1.41")).unwrap().to_string(), "1.41");
        assert_eq!(negotiate(&server("1.47")).unwrap(), ApiVersion::MAX);
        assert!(matches!(
            negotiate(&server("1.30")),
            Err(DockerError::UnsupportedApi { .. })
        ));
        assert!(matches!(
            negotiate(&server("")),
            Err(DockerError::Decode { .. })
        ));
    }

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(split_reference("alpine"), ("alpine", Some("latest")));
        assert_eq!(split_reference("alpine:3.19"), ("alpine", Some("3.19")));
        assert_eq!(
            split_reference("ghcr.io/p/yolks:java_17"),
            ("ghcr.io/p/yolks", Some("java_17"))
        );
        assert_eq!(
            split_reference("reg:5000/img"),
            ("reg:5000/img", Some("latest"))
        );
        assert_eq!(split_reference("img@sha256:abc"), ("img@sha256:abc", None));
    }

    #[test]
    fn docker_host_selects_a_unix_socket_only() {
        let ok = |h| socket_from_docker_host(h).unwrap();
        assert_eq!(ok(None), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(ok(Some("")), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(ok(Some("unix:///run/d.sock")), PathBuf::from("/run/d.sock"));
        assert!(socket_from_docker_host(Some("tcp://1.2.3.4:2375")).is_err());
        assert!(socket_from_docker_host(Some("unix://")).is_err());
    }

    #[test]
    fn missing_socket_is_reported_before_connecting() {
        let e = check_socket(Path::new("/nonexistent/docker.sock")).unwrap_err();
        assert!(matches!(e, DockerError::SocketMissing { .. }));
        let e = check_socket(Path::new("/")).unwrap_err();
        assert!(matches!(e, DockerError::Unavailable { .. }));
    }

    /// A fake Engine on a temporary socket: for each connection, reads the request head
    /// and writes whatever `answer` returns for its request line (`None`: stay silent).
    fn fake_engine(
        name: &str,
        answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static,
    ) -> DockerClient {
        let dir =
            std::env::temp_dir().join(format!("ctrl-fake-docker-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            let mut silent = Vec::new();
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let line = head.lines().next().unwrap_or_default().to_string();
                match answer(&line) {
                    Some(bytes) => conn.write_all(&bytes).unwrap(),
                    None => silent.push(conn),
                }
            }
        });
        DockerClient {
            socket,
            api: ApiVersion::MIN,
            timeout: Duration::from_millis(300),
            pull_timeout: Duration::from_millis(300),
        }
    }

    fn remove_fake(client: &DockerClient) {
        if let Some(dir) = client.socket.parent() {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    fn json_response(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A chunked response cutting `body` every `size` bytes.
    fn chunked_response(body: &[u8], size: usize) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(size) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn a_silent_engine_times_out() {
        let client = fake_engine("silent", |_| None);
        let e = smol::block_on(client.info()).unwrap_err();
        assert!(matches!(e, DockerError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("/info"), "{e}");
        assert_eq!(e.code(), proto::ErrorCode::Timeout);
        remove_fake(&client);
    }

    #[test]
    fn requests_are_versioned_and_errors_mapped() {
        let client = fake_engine("errors", |line| {
            Some(match line {
                l if l.starts_with("POST /v1.40/containers/a%20b/start ") => json_response(
                    "500 Internal Server Error",
                    r#"{"message":"Bind for 0.0.0.0:25565 failed: port is already allocated"}"#,
                ),
                l if l.starts_with("POST /v1.40/containers/gone/stop?t=5 ") => {
                    json_response("404 Not Found", r#"{"message":"No such container: gone"}"#)
                }
                l if l.starts_with("POST /v1.40/images/create?fromImage=x&tag=latest ") => {
                    chunked_response(
                        b"{\"status\":\"Pulling\"}\n{\"errorDetail\":{\"message\":\"manifest unknown\"},\"error\":\"manifest unknown\"}\n",
                        5,
                    )
                }
                _ => json_response("400 Bad Request", r#"{"message":"unexpected"}"#),
            })
        });
        smol::block_on(async {
            let e = client.container_start("a b").await.unwrap_err();
            assert_eq!(e.code(), proto::ErrorCode::PortConflict, "{e:?}");
            let e = client.container_stop("gone", 5).await.unwrap_err();
            assert_eq!(e.code(), proto::ErrorCode::ContainerNotFound, "{e:?}");
            let e = client.image_pull("x").await.unwrap_err();
            assert!(
                matches!(&e, DockerError::ImagePull { image, failure } if image == "x" && *failure == PullFailure::NotFoundOrDenied),
                "{e:?}"
            );
        });
        remove_fake(&client);
    }

    #[test]
    fn streams_survive_arbitrary_chunking() {
        const EVENT: &str = r#"{"Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"exitCode":"7"}},"time":1}"#;
        let client = fake_engine("streams", |line| {
            Some(if line.starts_with("GET /v1.40/events?filters=") {
                chunked_response(format!("{EVENT}\n{EVENT}\n").as_bytes(), 7)
            } else if line.starts_with("GET /v1.40/containers/c1/json ") {
                json_response("200 OK", r#"{"Id":"c1","Config":{"Tty":false}}"#)
            } else if line.starts_with("GET /v1.40/containers/c1/logs?") {
                let mut wire = vec![1, 0, 0, 0, 0, 0, 0, 6];
                wire.extend_from_slice(b"hello\n");
                wire.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
                wire.extend_from_slice(b"bad\n");
                chunked_response(&wire, 3)
            } else {
                json_response("400 Bad Request", r#"{"message":"unexpected"}"#)
            })
        });
        smol::block_on(async {
            let filters = Filters::new().add("type", "container");
            let events: Vec<_> = client.events(&filters, None).await.unwrap().collect().await;
            assert_eq!(events.len(), 2);
            for e in events {
                assert_eq!(e.unwrap().exit_code(), Some(7));
            }
            let pieces: Vec<_> = client
                .logs("c1", &LogsOptions::default())
                .await
                .unwrap()
                .collect()
                .await;
            let mut out = String::new();
            let mut err = String::new();
            for p in pieces {
                let (kind, data) = p.unwrap();
                match kind {
                    StreamKind::Stdout => out.push_str(&String::from_utf8_lossy(&data)),
                    StreamKind::Stderr => err.push_str(&String::from_utf8_lossy(&data)),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!((out.as_str(), err.as_str()), ("hello\n", "bad\n"));
        });
        remove_fake(&client);
    }
}
