//! Responses (agent → panel) and the shapes of their `data`.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::{ContentEncoding, Str, own};

/// A response to the command with the same `id`.
///
/// `data` is kept generic: its shape depends on the command it answers, which the response
/// does not name. [`Response::data_as`] decodes it into [`AckData`], [`StatusData`],
/// [`FileList`] or [`FileContent`] once the receiver knows which.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub server_id: Option<Str<'a>>,
    pub success: bool,
    pub message: Option<Str<'a>>,
    pub data: Option<serde_json::Value>,
    pub error: Option<ErrorBody<'a>>,
}

impl<'a> Response<'a> {
    /// A successful response carrying `data`.
    pub fn ok(id: Str<'a>, timestamp: Str<'a>, data: Option<serde_json::Value>) -> Self {
        Response {
            id,
            timestamp,
            agent_id: None,
            server_id: None,
            success: true,
            message: None,
            data,
            error: None,
        }
    }

    /// An error response with a wire code and a human message.
    pub fn err(
        id: Str<'a>,
        timestamp: Str<'a>,
        code: crate::ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Response {
            id,
            timestamp,
            agent_id: None,
            server_id: None,
            success: false,
            message: None,
            data: None,
            error: Some(ErrorBody {
                code: Cow::Borrowed(code.as_str()),
                message: Cow::Owned(message.into()),
            }),
        }
    }

    /// Decodes `data` into the typed shape the receiver expects.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match &self.data {
            Some(v) => T::deserialize(v),
            None => T::deserialize(serde_json::Value::Null),
        }
    }

    pub fn into_owned(self) -> Response<'static> {
        Response {
            id: own(self.id),
            timestamp: own(self.timestamp),
            agent_id: self.agent_id.map(own),
            server_id: self.server_id.map(own),
            success: self.success,
            message: self.message.map(own),
            data: self.data,
            error: self.error.map(ErrorBody::into_owned),
        }
    }
}

/// `{"code": "...", "message": "..."}` in an error response. The code is kept as a string so
/// that codes from newer agents pass through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub code: Str<'a>,
    #[serde(borrow)]
    pub message: Str<'a>,
}

impl ErrorBody<'_> {
    /// The code, when this build knows it.
    pub fn known_code(&self) -> Option<crate::ErrorCode> {
        crate::ErrorCode::from_wire(&self.code)
    }

    pub fn into_owned(self) -> ErrorBody<'static> {
        ErrorBody {
            code: own(self.code),
            message: own(self.message),
        }
    }
}

/// The lifecycle state of a game server, as reported in responses and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Container exists but was never started.
    Created,
    Starting,
    Running,
    Stopping,
    Stopped,
    /// Exited on its own with a non-zero code, or was OOM-killed.
    Crashed,
    Restarting,
    /// Container removed.
    Deleted,
    /// The agent cannot tell (e.g. Docker unreachable).
    Unknown,
    /// Extension (eggs): the egg's install script runs in its install container.
    Installing,
    /// Extension (eggs): the install script failed (its exit code in the status event);
    /// the server is not started until a reinstall succeeds.
    #[serde(rename = "install_failed")]
    InstallFailed,
}

impl ServerState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerState::Created => "created",
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Stopping => "stopping",
            ServerState::Stopped => "stopped",
            ServerState::Crashed => "crashed",
            ServerState::Restarting => "restarting",
            ServerState::Deleted => "deleted",
            ServerState::Unknown => "unknown",
            ServerState::Installing => "installing",
            ServerState::InstallFailed => "install_failed",
        }
    }
}

/// `data` of a plain acknowledgment (spec: "Command Acknowledgment").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckData {
    pub server_id: String,
    pub status: ServerState,
}

/// `data` of a `get_status` response (spec: "Status Update").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusData {
    pub server_id: String,
    pub status: ServerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Seconds since the container started; absent when not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Present only when the egg declares a query port and the query answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Players>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Percent of one core (100.0 = one full core), like `docker stats`.
    pub cpu: f64,
    pub memory: MemoryAvailability,
    pub network: Network,
}

/// Memory as quantities (`"1024m"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryAvailability {
    pub used: String,
    pub available: String,
}

/// Bytes sent and received since the container started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub tx: u64,
    pub rx: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Players {
    pub online: u32,
    pub max: u32,
    pub list: Vec<String>,
}

/// `data` of a `list_files` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub server_id: String,
    pub path: String,
    /// One page of the directory, sorted by name (bytewise).
    pub entries: Vec<FileEntry>,
    /// Extension: entries in the directory (up to the agent's scan cap).
    #[serde(default)]
    pub total: u64,
    /// Extension: the `offset` of the next page, present only when more entries follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// The directory holds more entries than the agent scans; `total` counts the scanned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
    /// Permission bits, e.g. 420 (0o644).
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `data` of a `get_file` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    pub server_id: String,
    pub path: String,
    pub content: String,
    pub encoding: ContentEncoding,
    pub size: u64,
}

/// `data` of a `read_file_chunk` response (extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChunk {
    pub path: String,
    /// Where this piece starts in the file.
    pub offset: u64,
    /// The whole file's size when the piece was read.
    pub size: u64,
    /// No bytes follow this piece.
    pub eof: bool,
    pub content: String,
    pub encoding: ContentEncoding,
}

/// `data` of a `write_file_chunk` response (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkWritten {
    pub path: String,
    /// Bytes of the upload received so far: the `offset` of the next chunk.
    pub written: u64,
}

/// `data` of a `rename_file` response (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    pub from: String,
    pub to: String,
}

/// `data` of `delete_file` and `create_directory` responses (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathData {
    pub path: String,
}

/// `data` of a `get_logs` response (extension): oldest line first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    pub lines: Vec<ConsoleLine>,
}

/// One kept console line, as its `server_log` event carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleLine {
    pub timestamp: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}
