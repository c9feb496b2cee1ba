//! Events (agent → panel): the event table and the data of each event.

use serde::{Deserialize, Serialize};

use super::{Network, ServerState, Str, own};

/// An event. The spec's events carry no `id` and name their server inside `data`; our agent
/// also sets a top-level `serverId` (an allowed extension) so routing needs no nested lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub id: Option<Str<'a>>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub server_id: Option<Str<'a>>,
    pub kind: EventKind<'a>,
}

impl Event<'_> {
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: self.id.map(own),
            timestamp: own(self.timestamp),
            agent_id: self.agent_id.map(own),
            server_id: self.server_id.map(own),
            kind: self.kind.into_owned(),
        }
    }

    /// The server the event is about: top-level `serverId`, else `data.serverId`.
    pub fn target_server(&self) -> Option<&str> {
        self.server_id
            .as_deref()
            .or_else(|| self.kind.data_server_id())
    }
}

// The event table: one line per event (see `table.rs`). This is the only place that lists
// every event.
events! {
    ServerStatusChanged(StatusChanged<'a>) => "server_status_changed",
    ServerLog(ServerLog<'a>) => "server_log",
    ResourceUpdate(ResourceUpdate<'a>) => "resource_update",
}

/// `server_status_changed` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChanged<'a> {
    #[serde(borrow)]
    pub server_id: Str<'a>,
    pub previous_status: ServerState,
    pub current_status: ServerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// Extension: the container's exit code when it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Extension: true when the kernel's OOM killer ended the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
    /// Extension: a short human reason (`"crashed with exit code 3"`, `"stopped by operator"`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Str<'a>>,
}

impl StatusChanged<'_> {
    pub fn into_owned(self) -> StatusChanged<'static> {
        StatusChanged {
            server_id: own(self.server_id),
            reason: self.reason.map(own),
            ..self
        }
    }
}

/// `server_log` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerLog<'a> {
    #[serde(borrow)]
    pub server_id: Str<'a>,
    #[serde(borrow)]
    pub log_level: Str<'a>,
    #[serde(borrow)]
    pub message: Str<'a>,
    /// Extension: `"stdout"` or `"stderr"`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Str<'a>>,
    /// Extension: lines dropped by the agent's throttle since the previous delivered line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl ServerLog<'_> {
    pub fn into_owned(self) -> ServerLog<'static> {
        ServerLog {
            server_id: own(self.server_id),
            log_level: own(self.log_level),
            message: own(self.message),
            stream: self.stream.map(own),
            dropped: self.dropped,
        }
    }
}

/// `resource_update` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUpdate<'a> {
    #[serde(borrow)]
    pub server_id: Str<'a>,
    pub cpu: f64,
    #[serde(borrow)]
    pub memory: UsedPercent<'a>,
    #[serde(borrow)]
    pub disk: UsedPercent<'a>,
    /// Extension: cumulative bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

impl ResourceUpdate<'_> {
    pub fn into_owned(self) -> ResourceUpdate<'static> {
        ResourceUpdate {
            server_id: own(self.server_id),
            memory: self.memory.into_owned(),
            disk: self.disk.into_owned(),
            ..self
        }
    }
}

/// `{"used": "1200m", "percentage": 58.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsedPercent<'a> {
    #[serde(borrow)]
    pub used: Str<'a>,
    pub percentage: f64,
}

impl UsedPercent<'_> {
    pub fn into_owned(self) -> UsedPercent<'static> {
        UsedPercent {
            used: own(self.used),
            percentage: self.percentage,
        }
    }
}
