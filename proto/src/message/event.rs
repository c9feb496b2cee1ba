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
    /// Extension (eggs): one line of an install script's output (the `server_log` shape).
    InstallLog(ServerLog<'a>) => "install_log",
    /// Extension: progress of an image pull the agent started for a server.
    ImagePullProgress(ImagePullProgress<'a>) => "image_pull_progress",
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

/// `image_pull_progress` data: the pull of one image for one server, summed over its layers.
/// Sent at most once a second per pull, and once when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullProgress<'a> {
    #[serde(borrow)]
    pub server_id: Str<'a>,
    #[serde(borrow)]
    pub image: Str<'a>,
    /// Docker's latest status line (`"Downloading"`, `"Pull complete"`, ...), cut short.
    #[serde(borrow)]
    pub status: Str<'a>,
    /// Layers seen so far, and how many of them are complete.
    pub layers: u64,
    pub layers_done: u64,
    /// Bytes downloaded and to download, over the layers whose size is known.
    pub current: u64,
    pub total: u64,
    /// True on the last event of the pull (success or failure).
    #[serde(default)]
    pub done: bool,
}

impl ImagePullProgress<'_> {
    pub fn into_owned(self) -> ImagePullProgress<'static> {
        ImagePullProgress {
            server_id: own(self.server_id),
            image: own(self.image),
            status: own(self.status),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{EventKind, Message, ServerState};

    fn event(name: &str, data: &str) -> EventKind<'static> {
        let frame = format!(r#"{{"type":"event","timestamp":"t","event":"{name}","data":{data}}}"#);
        match crate::decode(frame.as_bytes()).unwrap() {
            Message::Event(e) => e.kind.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_eggs_events_and_states_decode_with_their_wire_names() {
        let log = event(
            "install_log",
            r#"{"serverId":"s1","logLevel":"INFO","message":"downloading","stream":"stdout"}"#,
        );
        assert!(matches!(&log, EventKind::InstallLog(l) if l.message == "downloading"));
        assert_eq!(log.name(), "install_log");
        assert_eq!(log.data_server_id(), Some("s1"));
        let pull = event(
            "image_pull_progress",
            r#"{"serverId":"s1","image":"a:1","status":"Downloading","layers":3,"layersDone":1,"current":10,"total":30}"#,
        );
        assert!(
            matches!(&pull, EventKind::ImagePullProgress(p) if p.layers_done == 1 && !p.done),
            "{pull:?}"
        );
        let status = event(
            "server_status_changed",
            r#"{"serverId":"s1","previousStatus":"installing","currentStatus":"install_failed","exitCode":3}"#,
        );
        assert!(matches!(
            &status,
            EventKind::ServerStatusChanged(s)
                if s.previous_status == ServerState::Installing
                    && s.current_status == ServerState::InstallFailed
        ));
        assert_eq!(
            serde_json::to_value(ServerState::InstallFailed).unwrap(),
            ServerState::InstallFailed.as_str()
        );
    }
}
