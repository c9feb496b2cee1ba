//! What one simulated agent says: answers to pings and commands, and the events it emits.
//! Pure functions over a small per-agent state, so the behaviour is unit-tested without a
//! socket; [`crate::fleet`] wires them to WebSockets.
//!
//! The simulated agent owns the servers the panel created on it, and also "finds" the
//! servers named `<agent name>-s<k>` — as a real agent finds its containers by label after
//! a restart — so a saved agent set (`--agents-file`) keeps answering for servers the panel
//! created in an earlier run.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use proto::message::{
    AckData, FileContent, FileEntry, FileKind, FileList, MemoryAvailability, Network, Players,
    PongData, Resources, ServerState, StatusData, SystemLoad,
};
use proto::{Action, Command, ErrorCode, Message, Response};

/// The id of the first server loadtest creates on agent `name`.
pub fn server_id_for(name: &str) -> String {
    format!("{name}-s0")
}

/// The event id loadtest puts on every event: `<run>.<agent index>.<seq>`, so subscribers
/// can check that each one arrives exactly once.
pub fn event_id(run: &str, index: usize, seq: u64) -> String {
    format!("{run}.{index}.{seq}")
}

/// Parses an [`event_id`] of run `run`; `None` for anyone else's event.
pub fn parse_event_id(run: &str, id: &str) -> Option<(usize, u64)> {
    let rest = id.strip_prefix(run)?.strip_prefix('.')?;
    let (index, seq) = rest.split_once('.')?;
    Some((index.parse().ok()?, seq.parse().ok()?))
}

/// What kind of frame an agent received, for the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Ping,
    Command(String),
    /// The panel answered something the agent sent with an error (e.g. `RATE_LIMITED`).
    ErrorResponse(String),
    /// Any other well-formed message (a success response, an event, a pong).
    Other,
    /// Not a protocol message: answered with `INVALID_MESSAGE` when it carried an id.
    Invalid(String),
}

struct SimServer {
    state: ServerState,
    since: Instant,
}

/// One simulated agent's state.
pub struct AgentSim {
    pub name: String,
    pub agent_id: String,
    servers: HashMap<String, SimServer>,
}

impl AgentSim {
    pub fn new(name: impl Into<String>, agent_id: impl Into<String>) -> AgentSim {
        AgentSim {
            name: name.into(),
            agent_id: agent_id.into(),
            servers: HashMap::new(),
        }
    }

    /// Whether `server_id` belongs to this agent (created here, or named after it).
    fn owns(&self, server_id: &str) -> bool {
        self.servers.contains_key(server_id)
            || server_id
                .strip_prefix(self.name.as_str())
                .and_then(|r| r.strip_prefix("-s"))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
    }

    fn server(&mut self, server_id: &str) -> Option<&mut SimServer> {
        if !self.owns(server_id) {
            return None;
        }
        Some(
            self.servers
                .entry(server_id.to_owned())
                .or_insert_with(|| SimServer {
                    state: ServerState::Stopped,
                    since: Instant::now(),
                }),
        )
    }

    /// Handles one text frame from the panel; an answer, if any, is appended to `out`.
    pub fn handle(&mut self, frame: &[u8], now_ts: &str, out: &mut Vec<String>) -> Incoming {
        let msg = match proto::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                // Answer the id when the envelope can still be read, like a real agent.
                let mut dec = proto::Decoder::default();
                if let Ok(proto::Envelope {
                    id: Some(id),
                    kind: proto::MessageType::Command,
                    ..
                }) = dec.envelope(frame)
                {
                    let r = Response::err(id, now_ts.into(), e.code(), e.to_string());
                    out.push(self.encode_response(r));
                }
                return Incoming::Invalid(e.to_string());
            }
        };
        match msg {
            Message::Ping(p) => {
                let pong = Message::Pong(proto::Pong {
                    id: p.id,
                    timestamp: now_ts.into(),
                    agent_id: Some(self.agent_id.as_str().into()),
                    data: PongData {
                        agent_status: "healthy".into(),
                        active_servers: self.running() as u64,
                        system_load: SystemLoad {
                            cpu: 12.5,
                            memory: 40.0,
                            disk: 30.0,
                        },
                        conditions: Vec::new(),
                    },
                });
                out.push(encode(&pong));
                Incoming::Ping
            }
            Message::Command(c) => {
                let name = c.action.name().to_owned();
                let response = self.command(c, now_ts);
                out.push(self.encode_response(response));
                Incoming::Command(name)
            }
            Message::Response(r) if !r.success => Incoming::ErrorResponse(
                r.error
                    .map(|e| e.code.into_owned())
                    .unwrap_or_else(|| "UNKNOWN".into()),
            ),
            _ => Incoming::Other,
        }
    }

    fn running(&self) -> usize {
        self.servers
            .values()
            .filter(|s| s.state == ServerState::Running)
            .count()
    }

    fn encode_response<'s>(&'s self, mut r: Response<'s>) -> String {
        r.agent_id = Some(self.agent_id.as_str().into());
        encode(&Message::Response(r))
    }

    /// The answer to one command.
    pub fn command(&mut self, c: Command<'_>, now_ts: &str) -> Response<'static> {
        let id: Cow<'static, str> = Cow::Owned(c.id.into_owned());
        let ts: Cow<'static, str> = Cow::Owned(now_ts.to_owned());
        // Failover's agent-wide commands: a simulated agent never fences and keeps no copies.
        match &c.action {
            Action::FailoverServers(f) => {
                let n = f.server_ids.len();
                return data_response(id, ts, &serde_json::json!({"failoverServers": n}));
            }
            Action::QuarantineServers(q) => {
                let absent: Vec<&str> = q.servers.iter().map(|s| s.server_id.as_str()).collect();
                return data_response(
                    id,
                    ts,
                    &serde_json::json!({"quarantined": [], "current": [], "absent": absent, "failed": []}),
                );
            }
            _ => {}
        }
        let server_id = match c.action.known_name() {
            Some(_) => match &c.action {
                Action::CreateServer(cs) => cs.server_id.to_string(),
                _ => match c.server_id.as_deref() {
                    Some(s) => s.to_owned(),
                    None => {
                        return Response::err(
                            id,
                            ts,
                            ErrorCode::InvalidMessage,
                            "command needs a serverId",
                        );
                    }
                },
            },
            None => {
                let name = c.action.name().to_owned();
                return Response::err(
                    id,
                    ts,
                    ErrorCode::UnknownAction,
                    format!("unknown action `{name}`"),
                );
            }
        };
        if let Action::CreateServer(_) = &c.action {
            self.servers.insert(
                server_id.clone(),
                SimServer {
                    state: ServerState::Created,
                    since: Instant::now(),
                },
            );
            return ack(id, ts, &server_id, ServerState::Created, "Server created");
        }
        let Some(server) = self.server(&server_id) else {
            return Response::err(
                id,
                ts,
                ErrorCode::ServerNotFound,
                format!("server {server_id} does not exist on this agent"),
            );
        };
        let mut set = |state: ServerState| {
            server.state = state;
            server.since = Instant::now();
        };
        match c.action {
            Action::StartServer => {
                set(ServerState::Running);
                ack(
                    id,
                    ts,
                    &server_id,
                    ServerState::Starting,
                    "Server start command received",
                )
            }
            Action::StopServer(_) | Action::KillServer(_) => {
                set(ServerState::Stopped);
                ack(
                    id,
                    ts,
                    &server_id,
                    ServerState::Stopping,
                    "Server stop command received",
                )
            }
            Action::RestartServer(_) => {
                set(ServerState::Running);
                ack(
                    id,
                    ts,
                    &server_id,
                    ServerState::Restarting,
                    "Server restart command received",
                )
            }
            Action::DeleteServer(_) => {
                self.servers.remove(&server_id);
                ack(id, ts, &server_id, ServerState::Deleted, "Server deleted")
            }
            Action::SendCommand(_) => {
                let state = server.state;
                ack(id, ts, &server_id, state, "Command sent to console")
            }
            Action::WriteFile(_) => {
                let state = server.state;
                ack(id, ts, &server_id, state, "File written")
            }
            Action::ReinstallServer => {
                // A simulated install finishes at once.
                set(ServerState::Stopped);
                ack(
                    id,
                    ts,
                    &server_id,
                    ServerState::Installing,
                    "Reinstall started",
                )
            }
            Action::GetStatus => {
                let running = server.state == ServerState::Running;
                let uptime = server.since.elapsed().as_secs();
                let data = StatusData {
                    server_id: server_id.clone(),
                    status: server.state,
                    container_id: Some(format!("sim-{server_id}")),
                    uptime: running.then_some(uptime),
                    resources: Some(Resources {
                        cpu: if running { 45.2 } else { 0.0 },
                        memory: MemoryAvailability {
                            used: if running { "1024m" } else { "0m" }.into(),
                            available: "2048m".into(),
                        },
                        network: Network {
                            tx: 1_024_000,
                            rx: 2_048_000,
                        },
                    }),
                    players: Some(Players {
                        online: if running { 2 } else { 0 },
                        max: 20,
                        list: if running {
                            vec!["player1".into(), "player2".into()]
                        } else {
                            Vec::new()
                        },
                    }),
                };
                data_response(id, ts, &data)
            }
            Action::ListFiles(p) => {
                let data = FileList {
                    server_id: server_id.clone(),
                    path: p.path.into_owned(),
                    entries: vec![FileEntry {
                        name: "server.properties".into(),
                        kind: FileKind::File,
                        size: 42,
                        modified: 1_700_000_000,
                        mode: 0o644,
                    }],
                    total: 1,
                    next_offset: None,
                    truncated: false,
                };
                data_response(id, ts, &data)
            }
            Action::GetFile(p) => {
                let content = "motd=loadtest\n".to_owned();
                let data = FileContent {
                    server_id: server_id.clone(),
                    path: p.path.into_owned(),
                    size: content.len() as u64,
                    content,
                    encoding: proto::message::ContentEncoding::Utf8,
                };
                data_response(id, ts, &data)
            }
            // A simulated server prints nothing: its console history is empty.
            Action::GetLogs(_) => {
                data_response(id, ts, &proto::message::LogLines { lines: vec![] })
            }
            // The file manager's transfers and tree changes, backups and restores are not
            // simulated.
            Action::ReadFileChunk(_)
            | Action::WriteFileChunk(_)
            | Action::CancelUpload(_)
            | Action::RenameFile(_)
            | Action::DeleteFile(_)
            | Action::CreateDirectory(_)
            | Action::BackupRead(_)
            | Action::BackupCancel(_)
            | Action::RestoreChunk(_)
            | Action::RestoreCancel(_) => Response::err(
                id,
                ts,
                ErrorCode::UnknownAction,
                format!("the simulated agent does not implement {}", c.action.name()),
            ),
            Action::CreateServer(_)
            | Action::Unknown(_)
            | Action::FailoverServers(_)
            | Action::QuarantineServers(_) => unreachable!("handled above"),
        }
    }
}

fn ack(
    id: Cow<'static, str>,
    ts: Cow<'static, str>,
    server_id: &str,
    status: ServerState,
    message: &'static str,
) -> Response<'static> {
    let data = AckData {
        server_id: server_id.to_owned(),
        status,
    };
    let mut r = data_response(id, ts, &data);
    r.message = Some(message.into());
    r
}

fn data_response<T: serde::Serialize>(
    id: Cow<'static, str>,
    ts: Cow<'static, str>,
    data: &T,
) -> Response<'static> {
    let value = serde_json::to_value(data).expect("plain data serializes");
    Response::ok(id, ts, Some(value))
}

fn encode(msg: &Message<'_>) -> String {
    String::from_utf8(proto::encode(msg)).expect("the encoder writes UTF-8 JSON")
}

/// Builds the events one agent emits: `resource_update` and `server_log` alternately, each
/// with a unique [`event_id`] and the agent's server named at top level and in `data`.
///
/// The frames are spliced from pre-escaped pieces rather than serialized: at 100,000
/// events/s from one thread the generator must cost next to nothing (a unit test checks
/// that every frame decodes to the intended event).
pub struct EventGen {
    /// `{"id":"<run>.<index>.`
    head: String,
    /// `","agentId":..,"serverId":..,"event":"resource_update","data":{..,"cpu":`
    resource_mid: String,
    /// `","agentId":..,"event":"server_log","data":{.."message":"<line>",..}}`
    log_tail: String,
    /// Next sequence number (also the number of events built so far).
    pub seq: u64,
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

impl EventGen {
    /// `log_bytes` is the length of each `server_log` message.
    pub fn new(run: &str, index: usize, agent_id: &str, server_id: &str, log_bytes: usize) -> Self {
        let pattern = b"[Server thread/INFO]: player joined the game ";
        let log_line: String = pattern
            .iter()
            .cycle()
            .take(log_bytes)
            .map(|&b| b as char)
            .collect();
        let id_prefix = json_str(&format!("{run}.{index}."));
        let head = id_prefix[..id_prefix.len() - 1].to_owned(); // without the closing quote
        let (agent, server) = (json_str(agent_id), json_str(server_id));
        let common = format!(",\"agentId\":{agent},\"serverId\":{server}");
        EventGen {
            head: format!("{{\"id\":{head}"),
            resource_mid: format!(
                "{common},\"event\":\"resource_update\",\"data\":{{\"serverId\":{server},\"cpu\":"
            ),
            log_tail: format!(
                "{common},\"event\":\"server_log\",\"data\":{{\"serverId\":{server},\
                 \"logLevel\":\"INFO\",\"message\":{},\"stream\":\"stdout\"}}}}",
                json_str(&log_line)
            ),
            seq: 0,
        }
    }

    /// The next event frame.
    pub fn next_frame(&mut self, now_ts: &str) -> String {
        use std::fmt::Write as _;
        let seq = self.seq;
        self.seq += 1;
        let mut f = String::with_capacity(self.head.len() + self.log_tail.len() + 96);
        f.push_str(&self.head);
        let _ = write!(f, "{seq}\",\"type\":\"event\",\"timestamp\":\"{now_ts}\"");
        if seq.is_multiple_of(2) {
            f.push_str(&self.resource_mid);
            let _ = write!(
                f,
                "{}.5,\"memory\":{{\"used\":\"1200m\",\"percentage\":58.5}},\
                 \"disk\":{{\"used\":\"2.1g\",\"percentage\":42.0}}}}}}",
                seq % 100
            );
        } else {
            f.push_str(&self.log_tail);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::EventKind;
    use serde_json::{Value, json};

    const TS: &str = "2025-01-23T10:00:00Z";

    fn answer(sim: &mut AgentSim, frame: Value) -> (Incoming, Value) {
        let mut out = Vec::new();
        let kind = sim.handle(frame.to_string().as_bytes(), TS, &mut out);
        assert_eq!(out.len(), 1, "exactly one answer");
        (kind, serde_json::from_str(&out[0]).unwrap())
    }

    fn cmd(id: &str, server: &str, action: &str) -> Value {
        json!({"id": id, "type": "command", "timestamp": TS, "agentId": "a1",
               "serverId": server, "action": action})
    }

    #[test]
    fn pong_echoes_the_ping_id_with_spec_data() {
        let mut sim = AgentSim::new("lt-1", "a1");
        let (kind, v) = answer(
            &mut sim,
            json!({"id": "heartbeat_001", "type": "ping", "timestamp": TS}),
        );
        assert_eq!(kind, Incoming::Ping);
        assert_eq!(v["id"], "heartbeat_001");
        assert_eq!(v["type"], "pong");
        assert_eq!(v["agentId"], "a1");
        assert_eq!(v["data"]["agentStatus"], "healthy");
        assert!(v["data"]["systemLoad"]["cpu"].is_number());
        // And it is a valid protocol message.
        assert!(matches!(
            proto::decode(v.to_string().as_bytes()),
            Ok(Message::Pong(_))
        ));
    }

    #[test]
    fn power_commands_are_acknowledged_and_change_status() {
        let mut sim = AgentSim::new("lt-1", "a1");
        let (kind, v) = answer(&mut sim, cmd("m1", "lt-1-s0", "start_server"));
        assert_eq!(kind, Incoming::Command("start_server".into()));
        assert_eq!(v["id"], "m1");
        assert_eq!(v["success"], true);
        assert_eq!(
            v["data"],
            json!({"serverId": "lt-1-s0", "status": "starting"})
        );
        let (_, v) = answer(&mut sim, cmd("m2", "lt-1-s0", "get_status"));
        assert_eq!(v["data"]["status"], "running");
        assert_eq!(v["data"]["players"]["online"], 2);
        assert!(v["data"]["resources"]["memory"]["used"].is_string());
        let status: StatusData = serde_json::from_value(v["data"].clone()).unwrap();
        assert_eq!(status.server_id, "lt-1-s0");
        let (_, v) = answer(&mut sim, cmd("m3", "lt-1-s0", "stop_server"));
        assert_eq!(v["data"]["status"], "stopping");
        let (_, v) = answer(&mut sim, cmd("m4", "lt-1-s0", "get_status"));
        assert_eq!(v["data"]["status"], "stopped");
    }

    #[test]
    fn create_server_then_files() {
        let mut sim = AgentSim::new("lt-1", "a1");
        let create = json!({"id": "c1", "type": "command", "timestamp": TS, "action": "create_server",
            "payload": {"serverId": "custom", "eggConfig": {"name": "x", "image": "alpine:3",
            "ports": {}, "environment": {}, "limits": {"memory": "256m", "cpu": "1", "disk": "1g"},
            "startup": "run"}}});
        let (_, v) = answer(&mut sim, create);
        assert_eq!(
            v["data"],
            json!({"serverId": "custom", "status": "created"})
        );
        let mut list = cmd("f1", "custom", "list_files");
        list["payload"] = json!({"path": "/server"});
        let (_, v) = answer(&mut sim, list);
        assert_eq!(v["data"]["entries"][0]["name"], "server.properties");
        let mut get = cmd("f2", "custom", "get_file");
        get["payload"] = json!({"path": "/server/server.properties"});
        let (_, v) = answer(&mut sim, get);
        assert_eq!(v["data"]["content"], "motd=loadtest\n");
    }

    #[test]
    fn foreign_server_unknown_action_and_garbage_are_errors() {
        let mut sim = AgentSim::new("lt-1", "a1");
        let (_, v) = answer(&mut sim, cmd("x1", "lt-12-s0", "get_status"));
        assert_eq!(v["error"]["code"], "SERVER_NOT_FOUND");
        let (_, v) = answer(&mut sim, cmd("x2", "lt-1-s0", "teleport"));
        assert_eq!(v["error"]["code"], "UNKNOWN_ACTION");
        let (kind, v) = answer(
            &mut sim,
            json!({"id": "x3", "type": "command", "timestamp": TS, "action": "list_files"}),
        );
        assert!(matches!(kind, Incoming::Invalid(_)));
        assert_eq!(v["id"], "x3");
        assert_eq!(v["error"]["code"], "INVALID_MESSAGE");
        let mut out = Vec::new();
        assert!(matches!(
            sim.handle(b"not json", TS, &mut out),
            Incoming::Invalid(_)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn error_responses_are_classified() {
        let mut sim = AgentSim::new("lt-1", "a1");
        let mut out = Vec::new();
        let frame = json!({"id": "e", "type": "response", "timestamp": TS, "success": false,
                           "error": {"code": "RATE_LIMITED", "message": "slow down"}});
        let kind = sim.handle(frame.to_string().as_bytes(), TS, &mut out);
        assert_eq!(kind, Incoming::ErrorResponse("RATE_LIMITED".into()));
        assert!(out.is_empty());
    }

    #[test]
    fn events_carry_unique_ids_and_decode() {
        let mut g = EventGen::new("r7", 3, "a1", "lt-1-s0", 120);
        let mut ids = Vec::new();
        for _ in 0..4 {
            let frame = g.next_frame(TS);
            let msg = proto::decode(frame.as_bytes()).unwrap();
            let Message::Event(e) = msg else {
                panic!("not an event")
            };
            assert_eq!(e.target_server(), Some("lt-1-s0"));
            assert_eq!(e.server_id.as_deref(), Some("lt-1-s0"));
            assert_eq!(e.agent_id.as_deref(), Some("a1"));
            assert_eq!(e.timestamp, TS);
            match &e.kind {
                EventKind::ServerLog(l) => {
                    assert_eq!(l.message.len(), 120);
                    assert_eq!(l.server_id, "lt-1-s0");
                    assert_eq!(l.log_level, "INFO");
                }
                EventKind::ResourceUpdate(r) => {
                    assert_eq!(r.server_id, "lt-1-s0");
                    assert_eq!(r.memory.used, "1200m");
                    assert!(r.cpu > 0.0);
                }
                other => panic!("unexpected event {other:?}"),
            }
            ids.push(parse_event_id("r7", e.id.as_deref().unwrap()).unwrap());
        }
        assert_eq!(ids, vec![(3, 0), (3, 1), (3, 2), (3, 3)]);
        // Odd characters in ids are escaped, not spliced raw.
        let mut odd = EventGen::new("r\"7", 1, "a\\1", "s\"0", 3);
        for _ in 0..2 {
            let Message::Event(e) = proto::decode(odd.next_frame(TS).as_bytes()).unwrap() else {
                panic!("not an event")
            };
            assert_eq!(e.agent_id.as_deref(), Some("a\\1"));
            assert_eq!(e.target_server(), Some("s\"0"));
        }
        assert_eq!(parse_event_id("r8", "r7.3.0"), None);
        assert_eq!(parse_event_id("r7", "r7.x.0"), None);
    }
}
