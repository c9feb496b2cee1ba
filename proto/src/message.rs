//! Every message of the protocol, as Rust types.
//!
//! Strings are `Cow<'a, str>` so that decoding with simd-json borrows straight from the frame
//! buffer (simd-json unescapes in place), while the same types still work with owned data and
//! with other deserializers. The top-level [`Message`] has a hand-written, single-pass
//! `Deserialize`: the `type`, `action` and `event` tags are read as they come and the payload
//! is decoded straight into its typed struct, with no intermediate buffering — unless a
//! payload arrives before its tag, which is legal JSON and then costs one `serde_json::Value`.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

use crate::egg::EggConfig;

/// A string that borrows from the decoded frame when it can.
pub type Str<'a> = Cow<'a, str>;

/// The `type` field of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Command,
    Response,
    Event,
    Ping,
    Pong,
}

impl MessageType {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Command => "command",
            MessageType::Response => "response",
            MessageType::Event => "event",
            MessageType::Ping => "ping",
            MessageType::Pong => "pong",
        }
    }

    pub fn from_wire(s: &str) -> Option<MessageType> {
        Some(match s {
            "command" => MessageType::Command,
            "response" => MessageType::Response,
            "event" => MessageType::Event,
            "ping" => MessageType::Ping,
            "pong" => MessageType::Pong,
            _ => return None,
        })
    }
}

/// One frame on the agent WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    Command(Command<'a>),
    Response(Response<'a>),
    Event(Event<'a>),
    Ping(Ping<'a>),
    Pong(Pong<'a>),
}

impl Message<'_> {
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Command(_) => MessageType::Command,
            Message::Response(_) => MessageType::Response,
            Message::Event(_) => MessageType::Event,
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
        }
    }

    /// The message id, when the message has one (the spec's events carry none).
    pub fn id(&self) -> Option<&str> {
        match self {
            Message::Command(c) => Some(&c.id),
            Message::Response(r) => Some(&r.id),
            Message::Event(e) => e.id.as_deref(),
            Message::Ping(p) => Some(&p.id),
            Message::Pong(p) => Some(&p.id),
        }
    }

    /// Detaches the message from the frame buffer it was decoded from.
    pub fn into_owned(self) -> Message<'static> {
        match self {
            Message::Command(c) => Message::Command(c.into_owned()),
            Message::Response(r) => Message::Response(r.into_owned()),
            Message::Event(e) => Message::Event(e.into_owned()),
            Message::Ping(p) => Message::Ping(Ping {
                id: own(p.id),
                timestamp: own(p.timestamp),
            }),
            Message::Pong(p) => Message::Pong(Pong {
                id: own(p.id),
                timestamp: own(p.timestamp),
                agent_id: p.agent_id.map(own),
                data: p.data.into_owned(),
            }),
        }
    }
}

pub(crate) fn own(s: Str<'_>) -> Str<'static> {
    Cow::Owned(s.into_owned())
}

// ---------------------------------------------------------------------------------------------
// Commands (panel → agent)
// ---------------------------------------------------------------------------------------------

/// A command from the panel. `serverId` is top-level for every action except `create_server`,
/// which names the server inside its payload (as the spec's example does).
#[derive(Debug, Clone, PartialEq)]
pub struct Command<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub server_id: Option<Str<'a>>,
    pub action: Action<'a>,
}

impl<'a> Command<'a> {
    /// The server this command is about, wherever the message put it.
    pub fn target_server(&self) -> Option<&str> {
        match &self.action {
            Action::CreateServer(c) => Some(&c.server_id),
            _ => self.server_id.as_deref(),
        }
    }

    pub fn into_owned(self) -> Command<'static> {
        Command {
            id: own(self.id),
            timestamp: own(self.timestamp),
            agent_id: self.agent_id.map(own),
            server_id: self.server_id.map(own),
            action: self.action.into_owned(),
        }
    }
}

/// The `action` of a command with its `payload`. Unknown actions decode to
/// [`Action::Unknown`] so that the receiver can still answer the message id with
/// `UNKNOWN_ACTION` instead of failing the whole frame.
///
/// `create_server` is much larger than the other variants; it is deliberately not boxed:
/// a command is decoded into place once per frame and never stored in bulk, so the extra
/// stack bytes are cheaper than an allocation on every `create_server`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action<'a> {
    CreateServer(CreateServer<'a>),
    StartServer,
    StopServer(Option<StopServer<'a>>),
    RestartServer(Option<StopServer<'a>>),
    GetStatus,
    ListFiles(PathPayload<'a>),
    GetFile(PathPayload<'a>),
    /// Extension: SIGKILL (or the named signal) at once.
    KillServer(Option<KillServer<'a>>),
    /// Extension: remove the container; `purge` also deletes the server's files.
    DeleteServer(Option<DeleteServer>),
    /// Extension: one line to the server's console (stdin).
    SendCommand(SendCommand<'a>),
    /// Extension: atomically replace a file in the server's volume.
    WriteFile(WriteFile<'a>),
    /// An action this build does not know; its payload is skipped.
    Unknown(Str<'a>),
}

macro_rules! action_names {
    ($($variant:ident => $wire:literal),* $(,)?) => {
        /// The name of an action, without its payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ActionName { $($variant,)* }

        impl ActionName {
            pub const ALL: &'static [ActionName] = &[$(ActionName::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ActionName::$variant => $wire,)* }
            }

            pub fn from_wire(s: &str) -> Option<ActionName> {
                match s { $($wire => Some(ActionName::$variant),)* _ => None }
            }
        }
    };
}

action_names! {
    CreateServer => "create_server",
    StartServer => "start_server",
    StopServer => "stop_server",
    RestartServer => "restart_server",
    GetStatus => "get_status",
    ListFiles => "list_files",
    GetFile => "get_file",
    KillServer => "kill_server",
    DeleteServer => "delete_server",
    SendCommand => "send_command",
    WriteFile => "write_file",
}

impl<'a> Action<'a> {
    /// The wire name of the action (`"start_server"`, ...).
    pub fn name(&self) -> &str {
        match self.known_name() {
            Some(n) => n.as_str(),
            None => match self {
                Action::Unknown(n) => n,
                _ => unreachable!("every known variant has a name"),
            },
        }
    }

    pub fn known_name(&self) -> Option<ActionName> {
        Some(match self {
            Action::CreateServer(_) => ActionName::CreateServer,
            Action::StartServer => ActionName::StartServer,
            Action::StopServer(_) => ActionName::StopServer,
            Action::RestartServer(_) => ActionName::RestartServer,
            Action::GetStatus => ActionName::GetStatus,
            Action::ListFiles(_) => ActionName::ListFiles,
            Action::GetFile(_) => ActionName::GetFile,
            Action::KillServer(_) => ActionName::KillServer,
            Action::DeleteServer(_) => ActionName::DeleteServer,
            Action::SendCommand(_) => ActionName::SendCommand,
            Action::WriteFile(_) => ActionName::WriteFile,
            Action::Unknown(_) => return None,
        })
    }

    pub fn into_owned(self) -> Action<'static> {
        match self {
            Action::CreateServer(c) => Action::CreateServer(c.into_owned()),
            Action::StartServer => Action::StartServer,
            Action::StopServer(s) => Action::StopServer(s.map(StopServer::into_owned)),
            Action::RestartServer(s) => Action::RestartServer(s.map(StopServer::into_owned)),
            Action::GetStatus => Action::GetStatus,
            Action::ListFiles(p) => Action::ListFiles(p.into_owned()),
            Action::GetFile(p) => Action::GetFile(p.into_owned()),
            Action::KillServer(k) => Action::KillServer(k.map(|k| KillServer {
                signal: k.signal.map(own),
            })),
            Action::DeleteServer(d) => Action::DeleteServer(d),
            Action::SendCommand(s) => Action::SendCommand(SendCommand {
                command: own(s.command),
            }),
            Action::WriteFile(w) => Action::WriteFile(WriteFile {
                path: own(w.path),
                content: own(w.content),
                encoding: w.encoding,
            }),
            Action::Unknown(n) => Action::Unknown(own(n)),
        }
    }

    fn serialize_payload<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            Action::CreateServer(p) => map.serialize_entry("payload", p),
            Action::StopServer(Some(p)) | Action::RestartServer(Some(p)) => {
                map.serialize_entry("payload", p)
            }
            Action::ListFiles(p) | Action::GetFile(p) => map.serialize_entry("payload", p),
            Action::KillServer(Some(p)) => map.serialize_entry("payload", p),
            Action::DeleteServer(Some(p)) => map.serialize_entry("payload", p),
            Action::SendCommand(p) => map.serialize_entry("payload", p),
            Action::WriteFile(p) => map.serialize_entry("payload", p),
            _ => Ok(()),
        }
    }
}

/// Decodes the payload of a known action (or skips the payload of an unknown one).
struct PayloadSeed<'n, 'a>(&'n Str<'a>);

impl<'de, 'n> DeserializeSeed<'de> for PayloadSeed<'n, 'de> {
    type Value = Action<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Action<'de>, D::Error> {
        let Some(name) = ActionName::from_wire(self.0) else {
            IgnoredAny::deserialize(d)?;
            return Ok(Action::Unknown(self.0.clone()));
        };
        Ok(match name {
            ActionName::CreateServer => Action::CreateServer(Deserialize::deserialize(d)?),
            ActionName::StopServer => Action::StopServer(Deserialize::deserialize(d)?),
            ActionName::RestartServer => Action::RestartServer(Deserialize::deserialize(d)?),
            ActionName::ListFiles => Action::ListFiles(Deserialize::deserialize(d)?),
            ActionName::GetFile => Action::GetFile(Deserialize::deserialize(d)?),
            ActionName::KillServer => Action::KillServer(Deserialize::deserialize(d)?),
            ActionName::DeleteServer => Action::DeleteServer(Deserialize::deserialize(d)?),
            ActionName::SendCommand => Action::SendCommand(Deserialize::deserialize(d)?),
            ActionName::WriteFile => Action::WriteFile(Deserialize::deserialize(d)?),
            // Actions without a payload tolerate (and ignore) one, e.g. `"payload": {}`.
            ActionName::StartServer => {
                IgnoredAny::deserialize(d)?;
                Action::StartServer
            }
            ActionName::GetStatus => {
                IgnoredAny::deserialize(d)?;
                Action::GetStatus
            }
        })
    }
}

/// The action when no `payload` key was present.
fn action_without_payload<'a, E: de::Error>(name: Str<'a>) -> Result<Action<'a>, E> {
    let Some(known) = ActionName::from_wire(&name) else {
        return Ok(Action::Unknown(name));
    };
    Ok(match known {
        ActionName::StartServer => Action::StartServer,
        ActionName::GetStatus => Action::GetStatus,
        ActionName::StopServer => Action::StopServer(None),
        ActionName::RestartServer => Action::RestartServer(None),
        ActionName::KillServer => Action::KillServer(None),
        ActionName::DeleteServer => Action::DeleteServer(None),
        other => {
            return Err(E::custom(format_args!(
                "action `{}` requires a payload",
                other.as_str()
            )));
        }
    })
}

/// `create_server` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServer<'a> {
    #[serde(borrow)]
    pub server_id: Str<'a>,
    /// Boxed: with the eggs extensions it is by far the largest payload, and every other
    /// message would otherwise pay its size on each move.
    #[serde(borrow)]
    pub egg_config: Box<EggConfig<'a>>,
}

impl CreateServer<'_> {
    pub fn into_owned(self) -> CreateServer<'static> {
        CreateServer {
            server_id: own(self.server_id),
            egg_config: Box::new(self.egg_config.into_owned()),
        }
    }
}

/// `stop_server` (and optionally `restart_server`) payload: the signal to send first and how
/// many seconds to wait before SIGKILL.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StopServer<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Str<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl StopServer<'_> {
    pub fn into_owned(self) -> StopServer<'static> {
        StopServer {
            signal: self.signal.map(own),
            timeout: self.timeout,
        }
    }
}

/// `kill_server` payload (extension).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KillServer<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Str<'a>>,
}

/// `delete_server` payload (extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteServer {
    #[serde(default)]
    pub purge: bool,
}

/// `list_files` / `get_file` payload: a container path under `/server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathPayload<'a> {
    #[serde(borrow)]
    pub path: Str<'a>,
}

impl PathPayload<'_> {
    pub fn into_owned(self) -> PathPayload<'static> {
        PathPayload {
            path: own(self.path),
        }
    }
}

/// `send_command` payload (extension): one console line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendCommand<'a> {
    #[serde(borrow)]
    pub command: Str<'a>,
}

/// How file content is carried in `write_file` and `get_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    #[default]
    Utf8,
    Base64,
}

impl ContentEncoding {
    fn is_utf8(&self) -> bool {
        *self == ContentEncoding::Utf8
    }
}

/// `write_file` payload (extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteFile<'a> {
    #[serde(borrow)]
    pub path: Str<'a>,
    #[serde(borrow)]
    pub content: Str<'a>,
    #[serde(default, skip_serializing_if = "ContentEncoding::is_utf8")]
    pub encoding: ContentEncoding,
}

// ---------------------------------------------------------------------------------------------
// Responses (agent → panel)
// ---------------------------------------------------------------------------------------------

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
    pub entries: Vec<FileEntry>,
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

// ---------------------------------------------------------------------------------------------
// Events (agent → panel)
// ---------------------------------------------------------------------------------------------

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
        if let Some(s) = &self.server_id {
            return Some(s);
        }
        match &self.kind {
            EventKind::ServerStatusChanged(d) => Some(&d.server_id),
            EventKind::ServerLog(d) => Some(&d.server_id),
            EventKind::ResourceUpdate(d) => Some(&d.server_id),
            EventKind::Other { data, .. } => data.get("serverId").and_then(|v| v.as_str()),
        }
    }
}

/// The `event` name with its `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind<'a> {
    ServerStatusChanged(StatusChanged<'a>),
    ServerLog(ServerLog<'a>),
    ResourceUpdate(ResourceUpdate<'a>),
    /// An event this build does not know; kept whole so it can be forwarded.
    Other {
        name: Str<'a>,
        data: serde_json::Value,
    },
}

impl EventKind<'_> {
    pub fn name(&self) -> &str {
        match self {
            EventKind::ServerStatusChanged(_) => "server_status_changed",
            EventKind::ServerLog(_) => "server_log",
            EventKind::ResourceUpdate(_) => "resource_update",
            EventKind::Other { name, .. } => name,
        }
    }

    pub fn into_owned(self) -> EventKind<'static> {
        match self {
            EventKind::ServerStatusChanged(d) => EventKind::ServerStatusChanged(StatusChanged {
                server_id: own(d.server_id),
                reason: d.reason.map(own),
                ..d
            }),
            EventKind::ServerLog(d) => EventKind::ServerLog(ServerLog {
                server_id: own(d.server_id),
                log_level: own(d.log_level),
                message: own(d.message),
                stream: d.stream.map(own),
                dropped: d.dropped,
            }),
            EventKind::ResourceUpdate(d) => EventKind::ResourceUpdate(ResourceUpdate {
                server_id: own(d.server_id),
                memory: UsedPercent {
                    used: own(d.memory.used),
                    percentage: d.memory.percentage,
                },
                disk: UsedPercent {
                    used: own(d.disk.used),
                    percentage: d.disk.percentage,
                },
                ..d
            }),
            EventKind::Other { name, data } => EventKind::Other {
                name: own(name),
                data,
            },
        }
    }

    fn serialize_data<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            EventKind::ServerStatusChanged(d) => map.serialize_entry("data", d),
            EventKind::ServerLog(d) => map.serialize_entry("data", d),
            EventKind::ResourceUpdate(d) => map.serialize_entry("data", d),
            EventKind::Other { data, .. } => map.serialize_entry("data", data),
        }
    }
}

struct EventDataSeed<'n, 'a>(&'n Str<'a>);

impl<'de, 'n> DeserializeSeed<'de> for EventDataSeed<'n, 'de> {
    type Value = EventKind<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventKind<'de>, D::Error> {
        Ok(match &**self.0 {
            "server_status_changed" => EventKind::ServerStatusChanged(Deserialize::deserialize(d)?),
            "server_log" => EventKind::ServerLog(Deserialize::deserialize(d)?),
            "resource_update" => EventKind::ResourceUpdate(Deserialize::deserialize(d)?),
            _ => EventKind::Other {
                name: self.0.clone(),
                data: Deserialize::deserialize(d)?,
            },
        })
    }
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

/// `{"used": "1200m", "percentage": 58.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsedPercent<'a> {
    #[serde(borrow)]
    pub used: Str<'a>,
    pub percentage: f64,
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

/// Panel → agent heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
}

/// Agent → panel heartbeat answer, echoing the ping's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Pong<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub data: PongData<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PongData<'a> {
    /// `"healthy"`, or `"degraded"` when e.g. Docker is unreachable.
    #[serde(borrow)]
    pub agent_status: Str<'a>,
    pub active_servers: u64,
    pub system_load: SystemLoad,
}

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

// ---------------------------------------------------------------------------------------------
// Serialization: field order id, type, timestamp, agentId, serverId, then the body.
// ---------------------------------------------------------------------------------------------

impl Serialize for Message<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            Message::Command(c) => {
                map.serialize_entry("id", &c.id)?;
                map.serialize_entry("type", "command")?;
                map.serialize_entry("timestamp", &c.timestamp)?;
                opt_entry(&mut map, "agentId", &c.agent_id)?;
                opt_entry(&mut map, "serverId", &c.server_id)?;
                map.serialize_entry("action", c.action.name())?;
                c.action.serialize_payload(&mut map)?;
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("type", "response")?;
                map.serialize_entry("timestamp", &r.timestamp)?;
                opt_entry(&mut map, "agentId", &r.agent_id)?;
                opt_entry(&mut map, "serverId", &r.server_id)?;
                map.serialize_entry("success", &r.success)?;
                opt_entry(&mut map, "message", &r.message)?;
                opt_entry(&mut map, "data", &r.data)?;
                opt_entry(&mut map, "error", &r.error)?;
            }
            Message::Event(e) => {
                opt_entry(&mut map, "id", &e.id)?;
                map.serialize_entry("type", "event")?;
                map.serialize_entry("timestamp", &e.timestamp)?;
                opt_entry(&mut map, "agentId", &e.agent_id)?;
                opt_entry(&mut map, "serverId", &e.server_id)?;
                map.serialize_entry("event", e.kind.name())?;
                e.kind.serialize_data(&mut map)?;
            }
            Message::Ping(p) => {
                map.serialize_entry("id", &p.id)?;
                map.serialize_entry("type", "ping")?;
                map.serialize_entry("timestamp", &p.timestamp)?;
            }
            Message::Pong(p) => {
                map.serialize_entry("id", &p.id)?;
                map.serialize_entry("type", "pong")?;
                map.serialize_entry("timestamp", &p.timestamp)?;
                opt_entry(&mut map, "agentId", &p.agent_id)?;
                map.serialize_entry("data", &p.data)?;
            }
        }
        map.end()
    }
}

fn opt_entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => map.serialize_entry(key, v),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization: one pass over the top-level object.
// ---------------------------------------------------------------------------------------------

/// The body (`payload` or `data`) of a message, decoded as soon as its tag is known.
enum Body<'a> {
    None,
    Action(Action<'a>),
    Event(EventKind<'a>),
    Pong(PongData<'a>),
    Data(serde_json::Value),
}

/// Top-level keys; unknown keys are skipped (extensions are allowed).
enum Key {
    Id,
    Type,
    Timestamp,
    AgentId,
    ServerId,
    Action,
    Event,
    Payload,
    Data,
    Success,
    Message,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "type" => Key::Type,
                    "timestamp" => Key::Timestamp,
                    "agentId" => Key::AgentId,
                    "serverId" => Key::ServerId,
                    "action" => Key::Action,
                    "event" => Key::Event,
                    "payload" => Key::Payload,
                    "data" => Key::Data,
                    "success" => Key::Success,
                    "message" => Key::Message,
                    "error" => Key::Error,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A borrowed-when-possible string, for top-level fields.
struct CowStr<'a>(Str<'a>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct MessageVisitor;

#[derive(Default)]
struct Fields<'a> {
    id: Option<Str<'a>>,
    kind: Option<MessageType>,
    timestamp: Option<Str<'a>>,
    agent_id: Option<Str<'a>>,
    server_id: Option<Str<'a>>,
    tag: Option<Str<'a>>,
    success: Option<bool>,
    message: Option<Str<'a>>,
    error: Option<ErrorBody<'a>>,
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a protocol message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut f = Fields::default();
        let mut body = Body::None;
        let mut early_body: Option<serde_json::Value> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => set_once(&mut f.id, map.next_value::<CowStr>()?.0, "id")?,
                Key::Type => {
                    let t: CowStr = map.next_value()?;
                    let kind = MessageType::from_wire(&t.0).ok_or_else(|| {
                        de::Error::custom(format_args!("unknown message type `{}`", t.0))
                    })?;
                    set_once(&mut f.kind, kind, "type")?;
                }
                Key::Timestamp => {
                    set_once(&mut f.timestamp, map.next_value::<CowStr>()?.0, "timestamp")?
                }
                Key::AgentId => {
                    set_once(&mut f.agent_id, map.next_value::<CowStr>()?.0, "agentId")?
                }
                Key::ServerId => {
                    set_once(&mut f.server_id, map.next_value::<CowStr>()?.0, "serverId")?
                }
                Key::Action | Key::Event => {
                    let name = if matches!(key, Key::Action) {
                        "action"
                    } else {
                        "event"
                    };
                    set_once(&mut f.tag, map.next_value::<CowStr>()?.0, name)?
                }
                Key::Success => set_once(&mut f.success, map.next_value()?, "success")?,
                Key::Message => set_once(&mut f.message, map.next_value::<CowStr>()?.0, "message")?,
                Key::Error => set_once(&mut f.error, map.next_value()?, "error")?,
                Key::Payload | Key::Data => {
                    if !matches!(body, Body::None) || early_body.is_some() {
                        return Err(de::Error::custom("duplicate payload/data"));
                    }
                    match (f.kind, &f.tag) {
                        (Some(MessageType::Command), Some(tag)) => {
                            body = Body::Action(map.next_value_seed(PayloadSeed(tag))?)
                        }
                        (Some(MessageType::Event), Some(tag)) => {
                            body = Body::Event(map.next_value_seed(EventDataSeed(tag))?)
                        }
                        (Some(MessageType::Pong), _) => body = Body::Pong(map.next_value()?),
                        (Some(MessageType::Response), _) => body = Body::Data(map.next_value()?),
                        // The tag has not been seen yet: keep the value and decode it at the end.
                        _ => early_body = Some(map.next_value()?),
                    }
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        finish(f, body, early_body)
    }
}

fn finish<'a, E: de::Error>(
    f: Fields<'a>,
    mut body: Body<'a>,
    early_body: Option<serde_json::Value>,
) -> Result<Message<'a>, E> {
    let kind = f.kind.ok_or_else(|| E::missing_field("type"))?;
    let timestamp = f.timestamp.ok_or_else(|| E::missing_field("timestamp"))?;
    if let Some(v) = early_body {
        body = late_body(kind, f.tag.as_ref(), v).map_err(E::custom)?;
    }
    let need_id = |id: Option<Str<'a>>| id.ok_or_else(|| E::missing_field("id"));
    Ok(match kind {
        MessageType::Command => {
            let tag = f.tag.ok_or_else(|| E::missing_field("action"))?;
            let action = match body {
                Body::Action(a) => a,
                _ => action_without_payload(tag)?,
            };
            Message::Command(Command {
                id: need_id(f.id)?,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                action,
            })
        }
        MessageType::Response => {
            let success = f.success.ok_or_else(|| E::missing_field("success"))?;
            if !success && f.error.is_none() {
                return Err(E::missing_field("error"));
            }
            Message::Response(Response {
                id: need_id(f.id)?,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                success,
                message: f.message,
                data: match body {
                    Body::Data(v) => Some(v),
                    _ => None,
                },
                error: f.error,
            })
        }
        MessageType::Event => {
            let name = f.tag.ok_or_else(|| E::missing_field("event"))?;
            let kind = match body {
                Body::Event(k) => k,
                _ => return Err(E::missing_field("data")),
            };
            debug_assert_eq!(kind.name(), &*name);
            Message::Event(Event {
                id: f.id,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                kind,
            })
        }
        MessageType::Ping => Message::Ping(Ping {
            id: need_id(f.id)?,
            timestamp,
        }),
        MessageType::Pong => Message::Pong(Pong {
            id: need_id(f.id)?,
            timestamp,
            agent_id: f.agent_id,
            data: match body {
                Body::Pong(d) => d,
                _ => return Err(E::missing_field("data")),
            },
        }),
    })
}

/// Decodes a body that arrived before its tag (owned; this is the rare path).
fn late_body<'a>(
    kind: MessageType,
    tag: Option<&Str<'a>>,
    v: serde_json::Value,
) -> Result<Body<'a>, serde_json::Error> {
    use serde::de::Error as _;
    Ok(match kind {
        MessageType::Command => {
            let tag = tag.ok_or_else(|| serde_json::Error::missing_field("action"))?;
            let owned: Action<'static> = PayloadSeedOwned(tag).deserialize(v)?;
            Body::Action(owned)
        }
        MessageType::Event => {
            let tag = tag.ok_or_else(|| serde_json::Error::missing_field("event"))?;
            Body::Event(EventDataSeedOwned(tag).deserialize(v)?)
        }
        MessageType::Pong => Body::Pong(PongData::<'static>::deserialize(v)?.into_owned()),
        MessageType::Response => Body::Data(v),
        MessageType::Ping => Body::None,
    })
}

/// Seeds for the late path: the value is owned, so every string is owned.
struct PayloadSeedOwned<'n, 'a>(&'n Str<'a>);

impl<'n, 'a> PayloadSeedOwned<'n, 'a> {
    fn deserialize(self, v: serde_json::Value) -> Result<Action<'static>, serde_json::Error> {
        let name: Str<'static> = Cow::Owned(self.0.to_string());
        let action = PayloadSeed(&name).deserialize(&v)?;
        Ok(action.into_owned())
    }
}

struct EventDataSeedOwned<'n, 'a>(&'n Str<'a>);

impl<'n, 'a> EventDataSeedOwned<'n, 'a> {
    fn deserialize(self, v: serde_json::Value) -> Result<EventKind<'static>, serde_json::Error> {
        let name: Str<'static> = Cow::Owned(self.0.to_string());
        Ok(EventDataSeed(&name).deserialize(&v)?.into_owned())
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Message<'de>, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}
