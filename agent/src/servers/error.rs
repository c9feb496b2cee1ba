//! The servers layer's one error type, and its single mapping to a wire code.
//!
//! Errors from the layers below (Docker, files, stats, validation) keep their own codes;
//! this type adds the lifecycle's own failures (unknown server, busy, not running, ports,
//! capacity). Messages name the server, port or image, never a host path.

use super::state::IllegalTransition;
use crate::docker::DockerError;
use crate::files::FileError;
use crate::stats::StatsError;
use proto::ErrorCode;
use proto::validate::ValidationError;
use std::fmt;

/// Who holds a host port a new server asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// Another server of this agent.
    Server(String),
    /// Some other process on the host (the agent could not bind the port).
    Host,
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortHolder::Server(id) => write!(f, "by server {id}"),
            PortHolder::Host => f.write_str("on this host"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    #[error("server {server_id} does not exist on this agent")]
    NotFound { server_id: String },

    #[error("server {server_id} already exists on this agent")]
    AlreadyExists { server_id: String },

    #[error(
        "server {server_id} is busy with another power action ({action}); retry when it is done"
    )]
    Busy {
        server_id: String,
        action: &'static str,
    },

    #[error("server {server_id} is not running")]
    NotRunning { server_id: String },

    #[error("server {server_id} is running; stop it before the {action}")]
    MustBeStopped {
        server_id: String,
        action: &'static str,
    },

    #[error("the egg of server {server_id} has no install script")]
    NoInstall { server_id: String },

    #[error("host port {port}/{protocol} is already in use {holder}")]
    PortConflict {
        port: u16,
        protocol: &'static str,
        holder: PortHolder,
    },

    #[error("not enough {what} on this node: {detail}")]
    Insufficient { what: &'static str, detail: String },

    /// The egg is valid but this node's policy does not allow it.
    #[error("eggConfig.{field}: {reason}")]
    Policy { field: &'static str, reason: String },

    #[error(
        "image {image}: pulls from registry {registry} are refused because {reason}; \
         the node's operator can allow it (allowedRegistries)"
    )]
    RegistryRefused {
        image: String,
        registry: String,
        reason: String,
    },

    /// A container this agent does not manage has the name (which container is not said).
    #[error(
        "the container name {name} is already in use by a container this agent does not manage"
    )]
    NameInUse { name: String },

    #[error("the servers' network {name} cannot be used: {reason}")]
    Network { name: String, reason: String },

    #[error("too many commands {scope}; retry shortly")]
    RateLimited { scope: &'static str },

    /// An answer that would not fit in one frame the panel accepts.
    #[error("{what} would take {bytes} bytes on the wire, over the {limit}-byte frame limit")]
    TooLargeForFrame {
        what: String,
        bytes: usize,
        limit: usize,
    },

    #[error("server {server_id}: {source}")]
    Transition {
        server_id: String,
        source: IllegalTransition,
    },

    #[error(transparent)]
    Docker(#[from] DockerError),

    #[error(transparent)]
    Files(#[from] FileError),

    #[error(transparent)]
    Stats(#[from] StatsError),

    #[error("cannot prepare the files of server {server_id}: {reason}")]
    Volume { server_id: String, reason: String },

    #[error("content: {0}")]
    BadContent(String),

    /// A command for an older assignment of the server than this agent's copy (fencing).
    #[error("server {server_id}: the command is for epoch {got}, this copy is epoch {current}")]
    StaleEpoch {
        server_id: String,
        got: u64,
        current: u64,
    },

    /// A backup read or restore chunk for a session the agent does not have (never begun,
    /// finished, abandoned, lost with a restart), or at the wrong offset.
    #[error("{what}: {reason}")]
    Session { what: String, reason: String },

    #[error("unknown action `{0}`")]
    UnknownAction(String),
}

impl ServerError {
    /// The wire code; the only place lifecycle errors become codes.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::Invalid(e) => e.code(),
            ServerError::NotFound { .. } => ErrorCode::ServerNotFound,
            ServerError::AlreadyExists { .. }
            | ServerError::NotRunning { .. }
            | ServerError::MustBeStopped { .. }
            | ServerError::NoInstall { .. } => ErrorCode::Conflict,
            ServerError::Busy { .. } => ErrorCode::Busy,
            ServerError::Transition { .. } => ErrorCode::Conflict,
            ServerError::PortConflict { .. } => ErrorCode::PortConflict,
            ServerError::Insufficient { .. } => ErrorCode::InsufficientResources,
            ServerError::Policy { .. } | ServerError::RegistryRefused { .. } => {
                ErrorCode::ConfigInvalid
            }
            ServerError::NameInUse { .. } => ErrorCode::Conflict,
            ServerError::Network { .. } => ErrorCode::DockerError,
            ServerError::RateLimited { .. } => ErrorCode::RateLimited,
            ServerError::TooLargeForFrame { .. } => ErrorCode::PayloadTooLarge,
            ServerError::Docker(e) => e.code(),
            ServerError::Files(e) => e.code(),
            ServerError::Stats(e) => e.code(),
            ServerError::Volume { .. } => ErrorCode::InternalError,
            ServerError::BadContent(_) => ErrorCode::InvalidMessage,
            ServerError::Session { .. } => ErrorCode::Conflict,
            ServerError::StaleEpoch { .. } => ErrorCode::StaleEpoch,
            ServerError::UnknownAction(_) => ErrorCode::UnknownAction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_contracts() {
        let nf = ServerError::NotFound {
            server_id: "s".into(),
        };
        assert_eq!(nf.code(), ErrorCode::ServerNotFound);
        let busy = ServerError::Busy {
            server_id: "s".into(),
            action: "stop",
        };
        assert_eq!(busy.code(), ErrorCode::Busy);
        let port = ServerError::PortConflict {
            port: 1,
            protocol: "tcp",
            holder: PortHolder::Server("s2".into()),
        };
        assert_eq!(port.code(), ErrorCode::PortConflict);
        assert_eq!(
            port.to_string(),
            "host port 1/tcp is already in use by server s2"
        );
        let missing = ServerError::Docker(DockerError::SocketMissing { path: "/x".into() });
        assert_eq!(missing.code(), ErrorCode::DockerError);
        let denied = ServerError::Docker(DockerError::PermissionDenied { path: "/x".into() });
        assert_eq!(denied.code(), ErrorCode::PermissionDenied);
    }
}
