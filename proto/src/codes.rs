//! Error codes carried on the wire (`error.code`) and their HTTP status on the operator API.
//!
//! The spec's table comes first; the rest are the well-named extensions the interface
//! contract allows. Every error anywhere in the system is mapped to exactly one of these,
//! once, at the edge that talks to the wire or to HTTP.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! codes {
    ($($variant:ident => $wire:literal, $http:literal;)*) => {
        /// A machine-readable error code, spelled on the wire in SCREAMING_SNAKE_CASE.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $(#[serde(rename = $wire)] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order (spec table first).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as written on the wire, e.g. `"AGENT_OFFLINE"`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }

            /// The HTTP status the operator API answers with when this code is the panel's
            /// own verdict. (An agent's error response is always passed through with 502.)
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $http,)* }
            }

            /// Parses a wire spelling; `None` for a code this build does not know.
            pub fn from_wire(s: &str) -> Option<ErrorCode> {
                match s { $($wire => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    // The spec's table.
    AgentOffline => "AGENT_OFFLINE", 503;
    ServerNotFound => "SERVER_NOT_FOUND", 404;
    ContainerNotFound => "CONTAINER_NOT_FOUND", 404;
    InsufficientResources => "INSUFFICIENT_RESOURCES", 409;
    PermissionDenied => "PERMISSION_DENIED", 403;
    DockerError => "DOCKER_ERROR", 502;
    ConfigInvalid => "CONFIG_INVALID", 400;
    PortConflict => "PORT_CONFLICT", 409;
    AuthFailed => "AUTH_FAILED", 401;
    // Extensions.
    Timeout => "TIMEOUT", 504;
    InvalidMessage => "INVALID_MESSAGE", 400;
    UnknownAction => "UNKNOWN_ACTION", 400;
    InvalidPath => "INVALID_PATH", 400;
    FileNotFound => "FILE_NOT_FOUND", 404;
    RateLimited => "RATE_LIMITED", 429;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", 413;
    NotFound => "NOT_FOUND", 404;
    MethodNotAllowed => "METHOD_NOT_ALLOWED", 405;
    Conflict => "CONFLICT", 409;
    Busy => "BUSY", 409;
    HeadersTooLarge => "HEADERS_TOO_LARGE", 431;
    InternalError => "INTERNAL_ERROR", 500;
    // A backup archive refused at restore (links out, `..`, devices, hard links, ...).
    InvalidArchive => "INVALID_ARCHIVE", 400;
    // A command older than the agent's copy of the server (fencing: it moved since).
    StaleEpoch => "STALE_EPOCH", 409;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spelling_round_trips() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::from_wire("NOPE"), None);
    }

    #[test]
    fn interface_contract_statuses() {
        assert_eq!(ErrorCode::AgentOffline.http_status(), 503);
        assert_eq!(ErrorCode::Timeout.http_status(), 504);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
        assert_eq!(ErrorCode::ConfigInvalid.http_status(), 400);
        assert_eq!(ErrorCode::AuthFailed.http_status(), 401);
    }
}
