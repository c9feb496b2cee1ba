//! The Docker client's one error type, and its single mapping to a wire code.

use proto::ErrorCode;
use std::io;
use std::path::PathBuf;

/// What a 404 from the Engine was about, so callers can tell "no such container" (a wire
/// `CONTAINER_NOT_FOUND`) from "no such image" (a Docker failure to report as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Container,
    Image,
    /// Anything else (a network, a volume, an exec, an unknown endpoint).
    Other,
}

/// Everything that can go wrong talking to the Docker Engine.
///
/// Messages name the thing that failed; [`DockerError::code`] is the one place these become
/// wire codes.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker socket {path} does not exist: is Docker installed and running?")]
    SocketMissing { path: PathBuf },

    #[error(
        "permission denied on the Docker socket {path}: run the agent as root or as a member of the `docker` group"
    )]
    PermissionDenied { path: PathBuf },

    #[error("cannot connect to the Docker socket {path}: {source}")]
    Unavailable { path: PathBuf, source: io::Error },

    #[error("the Docker Engine speaks API {server}, but this agent needs at least {needed}")]
    UnsupportedApi { server: String, needed: String },

    #[error("Docker did not answer {what} within {after:?}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },

    #[error("{message}")]
    NotFound { what: Missing, message: String },

    #[error("{message}")]
    Conflict { message: String },

    #[error("Docker error (HTTP {status}): {message}")]
    Api { status: u16, message: String },

    /// The registry's own words stay in the agent's log: they can carry the body of
    /// whatever answered at the registry's address (server-side request forgery).
    #[error("pulling image {image} failed: {failure}")]
    ImagePull { image: String, failure: PullFailure },

    #[error("invalid Docker request: {0}")]
    InvalidArgument(String),

    #[error("cannot decode Docker's answer to {what}: {message}")]
    Decode { what: String, message: String },

    #[error("the Docker stream is malformed: {0}")]
    Protocol(String),

    #[error("Docker connection failed: {0}")]
    Http(#[from] hyper::Error),

    #[error("Docker connection I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl DockerError {
    /// The wire code for this error. Docker's own message travels with `DOCKER_ERROR`, so the
    /// operator sees what the Engine said.
    pub fn code(&self) -> ErrorCode {
        match self {
            DockerError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            DockerError::Timeout { .. } => ErrorCode::Timeout,
            DockerError::NotFound {
                what: Missing::Container,
                ..
            } => ErrorCode::ContainerNotFound,
            DockerError::InvalidArgument(_) => ErrorCode::ConfigInvalid,
            DockerError::Api { message, .. } | DockerError::Conflict { message }
                if is_port_conflict(message) =>
            {
                ErrorCode::PortConflict
            }
            _ => ErrorCode::DockerError,
        }
    }

    /// True for a 404 about a container: callers treating "already gone" as success use it.
    pub fn is_container_not_found(&self) -> bool {
        matches!(
            self,
            DockerError::NotFound {
                what: Missing::Container,
                ..
            }
        )
    }
}

/// Why a pull failed, in the agent's words (never the registry's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PullFailure {
    #[error("the image does not exist or the registry refused access")]
    NotFoundOrDenied,
    #[error("the registry could not be reached")]
    Unreachable,
    #[error("the registry's rate limit was reached")]
    RateLimited,
    #[error("the registry or Docker reported an error (details in the agent's log)")]
    Other,
}

impl PullFailure {
    /// Classifies Docker's message about a failed pull, and logs it (cut and escaped) for
    /// the node's operator.
    pub fn classify(image: &str, message: &str) -> PullFailure {
        const LOGGED: usize = 300;
        let cut: String = message.chars().take(LOGGED).collect();
        log::warn!("pulling {image}: Docker said {cut:?}");
        let lower = message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        if any(&["toomanyrequests", "rate limit"]) {
            PullFailure::RateLimited
        } else if any(&[
            "manifest unknown",
            "not found",
            "pull access denied",
            "does not exist",
            "unauthorized",
            "denied",
        ]) {
            PullFailure::NotFoundOrDenied
        } else if any(&[
            "connection refused",
            "no such host",
            "timeout",
            "network is unreachable",
            "no route to host",
            "dial tcp",
        ]) {
            PullFailure::Unreachable
        } else {
            PullFailure::Other
        }
    }
}

/// Docker reports a taken host port from its port allocator ("port is already allocated")
/// or from docker-proxy's bind ("address already in use"); both mean the same to the panel.
fn is_port_conflict(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("port is already allocated") || lower.contains("address already in use")
}

/// Maps a non-success HTTP answer to an error. `hint` says what the endpoint was about; the
/// message wins when it is explicit, because e.g. creating a container from a missing image
/// answers 404 "No such image".
pub(crate) fn from_status(status: u16, body: &[u8], hint: Missing) -> DockerError {
    let message = api_message(body).unwrap_or_else(|| fallback_message(status, body));
    match status {
        404 => DockerError::NotFound {
            what: classify_missing(&message, hint),
            message,
        },
        409 => DockerError::Conflict { message },
        _ => DockerError::Api { status, message },
    }
}

fn classify_missing(message: &str, hint: Missing) -> Missing {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no such image") || lower.contains("pull access denied") {
        Missing::Image
    } else if lower.contains("no such container") {
        Missing::Container
    } else {
        hint
    }
}

/// Docker's error bodies are `{"message": "..."}`.
fn api_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ApiError {
        message: String,
    }
    let mut owned = body.to_vec();
    simd_json::serde::from_slice::<ApiError>(&mut owned)
        .ok()
        .map(|e| e.message)
}

fn fallback_message(status: u16, body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("unexpected status");
        format!("HTTP {status} {reason}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_dockers_message() {
        let e = from_status(500, br#"{"message":"boom"}"#, Missing::Other);
        assert!(matches!(&e, DockerError::Api { status: 500, message } if message == "boom"));
        assert_eq!(e.code(), ErrorCode::DockerError);
    }

    #[test]
    fn not_found_is_classified_by_message_then_hint() {
        let e = from_status(
            404,
            br#"{"message":"No such container: abc"}"#,
            Missing::Other,
        );
        assert_eq!(e.code(), ErrorCode::ContainerNotFound);
        assert!(e.is_container_not_found());

        let e = from_status(
            404,
            br#"{"message":"No such image: nope:latest"}"#,
            Missing::Container,
        );
        assert!(matches!(
            e,
            DockerError::NotFound {
                what: Missing::Image,
                ..
            }
        ));
        assert_eq!(e.code(), ErrorCode::DockerError);

        let e = from_status(404, br#"{"message":"page not found"}"#, Missing::Container);
        assert_eq!(e.code(), ErrorCode::ContainerNotFound);
    }

    #[test]
    fn conflicts_and_port_conflicts() {
        let e = from_status(
            409,
            br#"{"message":"Conflict. The container name is already in use"}"#,
            Missing::Container,
        );
        assert!(matches!(e, DockerError::Conflict { .. }));
        assert_eq!(e.code(), ErrorCode::DockerError);

        let msg = br#"{"message":"driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:25565 failed: port is already allocated"}"#;
        assert_eq!(
            from_status(500, msg, Missing::Container).code(),
            ErrorCode::PortConflict
        );
        let msg = br#"{"message":"listen tcp4 0.0.0.0:80: bind: address already in use"}"#;
        assert_eq!(
            from_status(500, msg, Missing::Container).code(),
            ErrorCode::PortConflict
        );
    }

    #[test]
    fn pull_failures_never_quote_the_registry() {
        let body = "HTTP 200 from 127.0.0.1:8080: <html>SECRET-TOKEN-abc</html>";
        let f = PullFailure::classify("127.0.0.1:8080/x:1", body);
        assert_eq!(f, PullFailure::Other);
        let e = DockerError::ImagePull {
            image: "127.0.0.1:8080/x:1".into(),
            failure: f,
        };
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(e.to_string().contains("127.0.0.1:8080/x:1"), "{e}");
        assert_eq!(e.code(), ErrorCode::DockerError);
        for (msg, want) in [
            ("manifest unknown", PullFailure::NotFoundOrDenied),
            (
                "pull access denied for x, repository does not exist",
                PullFailure::NotFoundOrDenied,
            ),
            (
                "Get \"https://r:5000/v2/\": dial tcp 10.0.0.1:5000: connect: connection refused",
                PullFailure::Unreachable,
            ),
            (
                "toomanyrequests: You have reached your pull rate limit",
                PullFailure::RateLimited,
            ),
        ] {
            assert_eq!(PullFailure::classify("x", msg), want, "{msg}");
        }
    }

    #[test]
    fn non_json_bodies_still_give_a_message() {
        let e = from_status(502, b"", Missing::Other);
        assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
        let e = from_status(400, b"plain text\n", Missing::Other);
        assert!(e.to_string().contains("plain text"), "{e}");
    }

    #[test]
    fn local_failures_map_to_their_codes() {
        let p = PathBuf::from("/x");
        assert_eq!(
            DockerError::PermissionDenied { path: p.clone() }.code(),
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            DockerError::Timeout {
                what: "x".into(),
                after: std::time::Duration::from_secs(1)
            }
            .code(),
            ErrorCode::Timeout
        );
        assert_eq!(
            DockerError::SocketMissing { path: p }.code(),
            ErrorCode::DockerError
        );
        assert_eq!(
            DockerError::InvalidArgument("x".into()).code(),
            ErrorCode::ConfigInvalid
        );
    }
}
