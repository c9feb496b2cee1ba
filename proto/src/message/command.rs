//! Commands (panel → agent): the action table and the payload of each action.

use serde::{Deserialize, Serialize};

use super::{Str, own};
use crate::egg::EggConfig;

/// A command from the panel. `serverId` is top-level for every action except `create_server`,
/// which names the server inside its payload (as the spec's example does).
#[derive(Debug, Clone, PartialEq)]
pub struct Command<'a> {
    pub id: Str<'a>,
    pub timestamp: Str<'a>,
    pub agent_id: Option<Str<'a>>,
    pub server_id: Option<Str<'a>>,
    /// Extension (fencing): the epoch of the server's assignment the panel holds; an agent
    /// refuses a command older than its copy of the server (`STALE_EPOCH`).
    pub epoch: Option<u64>,
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
            epoch: self.epoch,
            action: self.action.into_owned(),
        }
    }
}

// The action table: one line per action (see `table.rs` for the syntax). This is the only
// place that lists every action.
actions! {
    CreateServer { payload: CreateServer<'a> } => "create_server",
    StartServer => "start_server",
    StopServer { optional: StopServer<'a> } => "stop_server",
    RestartServer { optional: StopServer<'a> } => "restart_server",
    GetStatus => "get_status",
    ListFiles { payload: ListFiles<'a> } => "list_files",
    GetFile { payload: PathPayload<'a> } => "get_file",
    /// Extension: SIGKILL (or the named signal) at once.
    KillServer { optional: KillServer<'a> } => "kill_server",
    /// Extension: remove the container; `purge` also deletes the server's files.
    DeleteServer { optional: DeleteServer } => "delete_server",
    /// Extension: one line to the server's console (stdin).
    SendCommand { payload: SendCommand<'a> } => "send_command",
    /// Extension: atomically replace a file in the server's volume.
    WriteFile { payload: WriteFile<'a> } => "write_file",
    /// Extension: one piece of a file, for downloads larger than a frame.
    ReadFileChunk { payload: ReadFileChunk<'a> } => "read_file_chunk",
    /// Extension: one piece of an upload; the last one (`final`) puts the file in place.
    WriteFileChunk { payload: WriteFileChunk<'a> } => "write_file_chunk",
    /// Extension: drop an upload in progress and its temp file.
    CancelUpload { payload: CancelUpload<'a> } => "cancel_upload",
    /// Extension: move or rename a file or directory within the volume.
    RenameFile { payload: RenameFile<'a> } => "rename_file",
    /// Extension: delete a file, or a directory with everything in it.
    DeleteFile { payload: PathPayload<'a> } => "delete_file",
    /// Extension: create a directory (and its missing parents).
    CreateDirectory { payload: PathPayload<'a> } => "create_directory",
    /// Extension: the last console lines the agent kept for the server.
    GetLogs { optional: GetLogs } => "get_logs",
    /// Extension (eggs): run the egg's install script again (the server must not run).
    ReinstallServer => "reinstall_server",
    /// Extension (backups): the next piece of a tar.gz of the volume; the first read starts it.
    BackupRead { payload: BackupRead<'a> } => "backup_read",
    /// Extension (backups): drop an archive in progress.
    BackupCancel { payload: BackupCancel<'a> } => "backup_cancel",
    /// Extension (backups): one piece of an archive to restore; `final` unpacks and swaps it in.
    RestoreChunk { payload: RestoreChunk<'a> } => "restore_chunk",
    /// Extension (backups): drop a restore in progress (the volume is left as it was).
    RestoreCancel { payload: RestoreCancel<'a> } => "restore_cancel",
    /// Extension (failover): the complete list of this agent's failover-enabled servers,
    /// the ones it stops when it cannot reach the panel (self-fencing). Agent-wide: no
    /// top-level `serverId`.
    FailoverServers { payload: FailoverServers } => "failover_servers",
    /// Extension (failover): stop and quarantine every listed copy older than the given
    /// epoch (its files are kept aside, its container removed). Agent-wide.
    QuarantineServers { payload: QuarantineServers } => "quarantine_servers",
}

impl Action<'_> {
    /// The wire name of the action (`"start_server"`, ...).
    pub fn name(&self) -> &str {
        match self {
            Action::Unknown(n) => n,
            known => known.known_name().map_or("", ActionName::as_str),
        }
    }
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
    /// Extension (transfers): do not run the egg's install script; the server's files
    /// arrive by a restore instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_install: bool,
}

impl CreateServer<'_> {
    pub fn into_owned(self) -> CreateServer<'static> {
        CreateServer {
            server_id: own(self.server_id),
            egg_config: Box::new(self.egg_config.into_owned()),
            skip_install: self.skip_install,
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

impl KillServer<'_> {
    pub fn into_owned(self) -> KillServer<'static> {
        KillServer {
            signal: self.signal.map(own),
        }
    }
}

/// `delete_server` payload (extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteServer {
    #[serde(default)]
    pub purge: bool,
}

impl DeleteServer {
    pub fn into_owned(self) -> DeleteServer {
        self
    }
}

/// `get_file` payload: a container path under `/server`.
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

/// `list_files` payload: a directory under `/server`, and which page of it (extension:
/// `offset` defaults to 0, `limit` to the agent's page size of 1000, which is also its
/// maximum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListFiles<'a> {
    #[serde(borrow)]
    pub path: Str<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl<'a> ListFiles<'a> {
    /// The first page of `path`.
    pub fn path(path: Str<'a>) -> ListFiles<'a> {
        ListFiles {
            path,
            offset: None,
            limit: None,
        }
    }

    pub fn into_owned(self) -> ListFiles<'static> {
        ListFiles {
            path: own(self.path),
            offset: self.offset,
            limit: self.limit,
        }
    }
}

/// `send_command` payload (extension): one console line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendCommand<'a> {
    #[serde(borrow)]
    pub command: Str<'a>,
}

impl SendCommand<'_> {
    pub fn into_owned(self) -> SendCommand<'static> {
        SendCommand {
            command: own(self.command),
        }
    }
}

/// How file content is carried in `write_file`, `get_file` and the chunked actions.
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

    /// The default of the chunked actions.
    pub fn base64() -> ContentEncoding {
        ContentEncoding::Base64
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

impl WriteFile<'_> {
    pub fn into_owned(self) -> WriteFile<'static> {
        WriteFile {
            path: own(self.path),
            content: own(self.content),
            encoding: self.encoding,
        }
    }
}

/// `read_file_chunk` payload (extension): up to `length` bytes of `path` from `offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadFileChunk<'a> {
    #[serde(borrow)]
    pub path: Str<'a>,
    pub offset: u64,
    pub length: u64,
}

impl ReadFileChunk<'_> {
    pub fn into_owned(self) -> ReadFileChunk<'static> {
        ReadFileChunk {
            path: own(self.path),
            offset: self.offset,
            length: self.length,
        }
    }
}

/// `write_file_chunk` payload (extension). Chunks of one upload share its `uploadId` and
/// `path` and arrive in order (`offset` is the bytes already sent); `final` marks the last.
/// `encoding` defaults to base64 here, the only sensible choice for arbitrary bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteFileChunk<'a> {
    #[serde(borrow)]
    pub path: Str<'a>,
    #[serde(borrow)]
    pub upload_id: Str<'a>,
    pub offset: u64,
    #[serde(borrow)]
    pub content: Str<'a>,
    #[serde(default = "ContentEncoding::base64")]
    pub encoding: ContentEncoding,
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
}

impl WriteFileChunk<'_> {
    pub fn into_owned(self) -> WriteFileChunk<'static> {
        WriteFileChunk {
            path: own(self.path),
            upload_id: own(self.upload_id),
            offset: self.offset,
            content: own(self.content),
            encoding: self.encoding,
            is_final: self.is_final,
        }
    }
}

/// `cancel_upload` payload (extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelUpload<'a> {
    #[serde(borrow)]
    pub upload_id: Str<'a>,
}

impl CancelUpload<'_> {
    pub fn into_owned(self) -> CancelUpload<'static> {
        CancelUpload {
            upload_id: own(self.upload_id),
        }
    }
}

/// `rename_file` payload (extension): both are container paths under `/server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenameFile<'a> {
    #[serde(borrow)]
    pub from: Str<'a>,
    #[serde(borrow)]
    pub to: Str<'a>,
}

impl RenameFile<'_> {
    pub fn into_owned(self) -> RenameFile<'static> {
        RenameFile {
            from: own(self.from),
            to: own(self.to),
        }
    }
}

/// `get_logs` payload (extension): how many of the last lines (default 150, at most 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetLogs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

impl GetLogs {
    pub fn into_owned(self) -> GetLogs {
        self
    }
}

/// `backup_read` payload (extension): up to `length` bytes of the archive from `offset`,
/// which must be the bytes read so far (reads are sequential).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRead<'a> {
    #[serde(borrow)]
    pub backup_id: Str<'a>,
    pub offset: u64,
    pub length: u64,
}

impl BackupRead<'_> {
    pub fn into_owned(self) -> BackupRead<'static> {
        BackupRead {
            backup_id: own(self.backup_id),
            offset: self.offset,
            length: self.length,
        }
    }
}

/// `backup_cancel` payload (extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupCancel<'a> {
    #[serde(borrow)]
    pub backup_id: Str<'a>,
}

impl BackupCancel<'_> {
    pub fn into_owned(self) -> BackupCancel<'static> {
        BackupCancel {
            backup_id: own(self.backup_id),
        }
    }
}

/// Most servers one `failover_servers` or `quarantine_servers` command may name.
pub const MAX_FENCE_LIST: usize = 10_000;

/// `failover_servers` payload (extension): every failover-enabled server of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverServers {
    pub server_ids: Vec<String>,
}

impl FailoverServers {
    pub fn into_owned(self) -> FailoverServers {
        self
    }
}

/// One copy `quarantine_servers` fences off: the agent's copy of `serverId` if its epoch is
/// older than `epoch` (the assignment's current one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaleCopy {
    pub server_id: String,
    pub epoch: u64,
}

/// `quarantine_servers` payload (extension).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuarantineServers {
    pub servers: Vec<StaleCopy>,
}

impl QuarantineServers {
    pub fn into_owned(self) -> QuarantineServers {
        self
    }
}

/// `restore_chunk` payload (extension): base64 `content` at `offset` (the bytes sent so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreChunk<'a> {
    #[serde(borrow)]
    pub restore_id: Str<'a>,
    pub offset: u64,
    #[serde(borrow)]
    pub content: Str<'a>,
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
}

impl RestoreChunk<'_> {
    pub fn into_owned(self) -> RestoreChunk<'static> {
        RestoreChunk {
            restore_id: own(self.restore_id),
            offset: self.offset,
            content: own(self.content),
            is_final: self.is_final,
        }
    }
}

/// `restore_cancel` payload (extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCancel<'a> {
    #[serde(borrow)]
    pub restore_id: Str<'a>,
}

impl RestoreCancel<'_> {
    pub fn into_owned(self) -> RestoreCancel<'static> {
        RestoreCancel {
            restore_id: own(self.restore_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_round_trips_and_required_payloads_are_required() {
        for &name in ActionName::ALL {
            assert_eq!(ActionName::from_wire(name.as_str()), Some(name));
            let frame = format!(
                r#"{{"id":"m","type":"command","timestamp":"t","serverId":"s","action":"{}"}}"#,
                name.as_str()
            );
            match crate::decode(frame.as_bytes()) {
                Ok(crate::Message::Command(c)) => {
                    assert_eq!(c.action.known_name(), Some(name));
                    assert_eq!(c.action.name(), name.as_str());
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => assert!(
                    e.to_string().contains("requires a payload"),
                    "{}: {e}",
                    name.as_str()
                ),
            }
        }
        assert_eq!(ActionName::from_wire("format_disk"), None);
    }

    #[test]
    fn the_fencing_actions_are_agent_wide_and_round_trip() {
        let frame = br#"{"id":"m","type":"command","timestamp":"t","action":"quarantine_servers","payload":{"servers":[{"serverId":"s1","epoch":3}]}}"#;
        let Ok(crate::Message::Command(c)) = crate::decode(frame) else {
            panic!("not a command")
        };
        assert_eq!(c.target_server(), None);
        let Action::QuarantineServers(q) = &c.action else {
            panic!("{:?}", c.action)
        };
        assert_eq!(q.servers[0].server_id, "s1");
        assert_eq!(q.servers[0].epoch, 3);
        let again = crate::encode(&crate::Message::Command(c.clone()));
        assert!(String::from_utf8_lossy(&again).contains(r#""action":"quarantine_servers""#));
        let frame = br#"{"id":"m","type":"command","timestamp":"t","action":"failover_servers","payload":{"serverIds":["a","b"]}}"#;
        let Ok(crate::Message::Command(c)) = crate::decode(frame) else {
            panic!("not a command")
        };
        assert!(matches!(c.action, Action::FailoverServers(f) if f.server_ids == ["a", "b"]));
        let bad = br#"{"id":"m","type":"command","timestamp":"t","action":"failover_servers","payload":{"serverIds":"a"}}"#;
        assert!(!matches!(
            crate::decode(bad),
            Ok(crate::Message::Command(Command {
                action: Action::FailoverServers(_),
                ..
            }))
        ));
    }

    #[test]
    fn the_epoch_extension_round_trips_and_is_optional() {
        let frame = br#"{"id":"m","type":"command","timestamp":"t","serverId":"s","epoch":7,"action":"start_server"}"#;
        let Ok(crate::Message::Command(c)) = crate::decode(frame) else {
            panic!("not a command")
        };
        assert_eq!(c.epoch, Some(7));
        let again = crate::encode(&crate::Message::Command(c.clone()));
        assert!(String::from_utf8_lossy(&again).contains(r#""epoch":7"#));
        let frame = br#"{"id":"m","type":"command","timestamp":"t","serverId":"s","action":"start_server"}"#;
        let Ok(crate::Message::Command(c)) = crate::decode(frame) else {
            panic!("not a command")
        };
        assert_eq!(c.epoch, None);
        let bad =
            br#"{"id":"m","type":"command","timestamp":"t","epoch":-1,"action":"start_server"}"#;
        assert!(crate::decode(bad).is_err());
    }
}
