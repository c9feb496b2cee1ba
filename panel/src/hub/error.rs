//! Why a command got no usable answer, and how that shows on the operator API.

use proto::ErrorCode;

use crate::panel_metrics::Outcome;

/// Why a command produced no response from the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("agent {0} is not connected")]
    Offline(String),
    /// The command was sent, then the connection closed before the answer: the agent may
    /// have carried it out (as after a timeout).
    #[error("agent {0} disconnected before answering; the command may have been carried out")]
    Lost(String),
    #[error("agent {agent} did not answer {action} within {secs} s")]
    Timeout {
        agent: String,
        action: String,
        secs: u64,
    },
    #[error("agent {agent} sent an unreadable response: {reason}")]
    BadResponse { agent: String, reason: String },
    /// The encoded command is larger than the frames agents accept; it is not sent.
    #[error("the {action} command is {len} bytes encoded, over the {max}-byte frame limit")]
    TooLarge {
        action: String,
        len: usize,
        max: usize,
    },
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Offline(_) | HubError::Lost(_) => ErrorCode::AgentOffline,
            HubError::Timeout { .. } => ErrorCode::Timeout,
            HubError::BadResponse { .. } => ErrorCode::InvalidMessage,
            HubError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        }
    }

    /// HTTP status on the operator API (an unreadable agent answer is a bad gateway).
    pub fn http_status(&self) -> u16 {
        match self {
            HubError::BadResponse { .. } => 502,
            other => other.code().http_status(),
        }
    }

    pub(super) fn outcome(&self) -> Outcome {
        match self {
            HubError::Offline(_) | HubError::Lost(_) => Outcome::Offline,
            HubError::Timeout { .. } => Outcome::Timeout,
            HubError::BadResponse { .. } => Outcome::BadResponse,
            HubError::TooLarge { .. } => Outcome::TooLarge,
        }
    }
}
