//! The heartbeat: the panel's ping and the agent's pong.

use serde::{Deserialize, Serialize};

use super::{Str, own};

/// Panel → agent heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
}

impl Ping<'_> {
    pub fn into_owned(self) -> Ping<'static> {
        Ping {
            id: own(self.id),
            timestamp: own(self.timestamp),
        }
    }
}

/// Agent → panel heartbeat answer, echoing the ping's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Pong<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub data: PongData<'a>,
}

impl Pong<'_> {
    pub fn into_owned(self) -> Pong<'static> {
        Pong {
            id: own(self.id),
            timestamp: own(self.timestamp),
            agent_id: self.agent_id.map(own),
            data: self.data.into_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PongData<'a> {
    /// `"healthy"`, or `"degraded"` when e.g. Docker is unreachable.
    #[serde(borrow)]
    pub agent_status: Str<'a>,
    pub active_servers: u64,
    pub system_load: SystemLoad,
    /// Extension (node health): what is wrong with the node right now, if anything. An agent
    /// that sends none is judged by `agentStatus` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Extension (node health): one condition the agent reports in its pong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Short machine-readable name: `docker_unreachable`, `disk_full`, `memory_pressure`
    /// (others may come; unknown ones still make a node `degraded`).
    pub code: String,
    /// What an operator reads.
    pub message: String,
}

/// Most conditions a pong may carry; the panel keeps at most this many.
pub const MAX_CONDITIONS: usize = 16;

impl PongData<'_> {
    pub fn into_owned(self) -> PongData<'static> {
        PongData {
            agent_status: own(self.agent_status),
            ..self
        }
    }
}

/// Host load in percent (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SystemLoad {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}
