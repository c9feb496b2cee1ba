//! Every JSON example of the protocol spec is a fixture: it decodes to the right type and
//! re-encodes to JSON equal in value to the original.

use proto::codec::Decoder;
use proto::rest::{RegisterRequest, RegisterResponse};
use proto::*;
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes with simd-json (zero-copy) and with serde_json, checks both agree, re-encodes and
/// compares values with the original.
fn round_trip(name: &str) -> Message<'static> {
    let raw = fixture(name);
    let original: Value = serde_json::from_slice(&raw).unwrap();
    let mut dec = Decoder::default();
    let msg = dec.message(&raw).expect(name).into_owned();
    let via_serde_json: Message = serde_json::from_slice(&raw).expect(name);
    assert_eq!(
        msg,
        via_serde_json.into_owned(),
        "{name}: decoders disagree"
    );
    let encoded = encode(&msg);
    let back: Value = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(back, original, "{name}: re-encoding changed the value");
    msg
}

fn command(name: &str) -> Command<'static> {
    match round_trip(name) {
        Message::Command(c) => c,
        other => panic!("{name}: expected a command, got {other:?}"),
    }
}

#[test]
fn create_server() {
    let c = command("command_create_server");
    assert_eq!(c.id, "msg_001");
    assert_eq!(c.agent_id.as_deref(), Some("agent_uuid"));
    assert_eq!(c.target_server(), Some("server_123"));
    let Action::CreateServer(p) = &c.action else {
        panic!("{:?}", c.action)
    };
    let egg = &p.egg_config;
    assert_eq!(egg.name, "minecraft-java");
    assert_eq!(egg.image, "ghcr.io/pterodactyl/yolks:java_17");
    assert_eq!(egg.ports.0, vec![("25565".into(), 25565)]);
    assert_eq!(egg.environment.get("MINECRAFT_VERSION"), Some("1.20.4"));
    assert_eq!(egg.limits.memory, "2048m");
    assert_eq!(egg.limits.cpu, "2");
    assert_eq!(egg.limits.disk, "5g");
    let valid = proto::validate::egg(egg).expect("the spec's egg is valid");
    assert_eq!(valid.limits.memory.mib(), 2048);
    assert_eq!(valid.limits.cpu.0, 2000);
    assert_eq!(valid.ports[0].host, 25565);
}

#[test]
fn control_commands() {
    let c = command("command_start_server");
    assert_eq!(c.action, Action::StartServer);
    assert_eq!(c.target_server(), Some("server_123"));
    let c = command("command_stop_server");
    let Action::StopServer(Some(stop)) = &c.action else {
        panic!("{:?}", c.action)
    };
    assert_eq!(stop.signal.as_deref(), Some("SIGTERM"));
    assert_eq!(stop.timeout, Some(30));
    assert_eq!(
        command("command_restart_server").action,
        Action::RestartServer(None)
    );
    assert_eq!(command("command_get_status").action, Action::GetStatus);
}

#[test]
fn file_commands() {
    let c = command("command_list_files");
    assert_eq!(
        c.action,
        Action::ListFiles(ListFiles::path("/server".into()))
    );
    let c = command("command_get_file");
    assert_eq!(
        c.action,
        Action::GetFile(PathPayload {
            path: "/server/server.properties".into()
        })
    );
}

fn response(name: &str) -> Response<'static> {
    match round_trip(name) {
        Message::Response(r) => r,
        other => panic!("{name}: expected a response, got {other:?}"),
    }
}

#[test]
fn responses() {
    let ack = response("response_ack");
    assert!(ack.success);
    assert_eq!(
        ack.message.as_deref(),
        Some("Server start command received")
    );
    let data: AckData = ack.data_as().unwrap();
    assert_eq!(data.status, ServerState::Starting);

    let err = response("response_error");
    assert!(!err.success);
    let e = err.error.unwrap();
    assert_eq!(e.known_code(), Some(ErrorCode::ContainerNotFound));

    let status = response("response_status");
    let s: StatusData = status.data_as().unwrap();
    assert_eq!(s.status, ServerState::Running);
    assert_eq!(s.uptime, Some(3600));
    let r = s.resources.as_ref().unwrap();
    assert_eq!(r.cpu, 45.2);
    assert_eq!(r.memory.available, "2048m");
    assert_eq!(r.network.rx, 2_048_000);
    let p = s.players.as_ref().unwrap();
    assert_eq!((p.online, p.max, p.list.len()), (5, 20, 5));
    // The typed data re-encodes to the same value too.
    assert_eq!(serde_json::to_value(&s).unwrap(), status.data.unwrap());
}

fn event(name: &str) -> Event<'static> {
    match round_trip(name) {
        Message::Event(e) => e,
        other => panic!("{name}: expected an event, got {other:?}"),
    }
}

#[test]
fn events() {
    let e = event("event_server_status_changed");
    assert_eq!(e.id, None);
    assert_eq!(e.target_server(), Some("server_123"));
    let EventKind::ServerStatusChanged(d) = &e.kind else {
        panic!()
    };
    assert_eq!(
        (d.previous_status, d.current_status),
        (ServerState::Starting, ServerState::Running)
    );
    assert_eq!(d.pid, Some(1234));

    let e = event("event_server_log");
    let EventKind::ServerLog(d) = &e.kind else {
        panic!()
    };
    assert_eq!(d.log_level, "INFO");
    assert!(d.message.contains("player1 joined"));

    let e = event("event_resource_update");
    let EventKind::ResourceUpdate(d) = &e.kind else {
        panic!()
    };
    assert_eq!(d.cpu, 52.1);
    assert_eq!(d.memory.used, "1200m");
    assert_eq!(d.disk.percentage, 42.0);
}

#[test]
fn heartbeat() {
    let Message::Ping(p) = round_trip("ping") else {
        panic!()
    };
    assert_eq!(p.id, "heartbeat_001");
    let Message::Pong(p) = round_trip("pong") else {
        panic!()
    };
    assert_eq!(p.id, "heartbeat_001");
    assert_eq!(p.data.agent_status, "healthy");
    assert_eq!(p.data.active_servers, 3);
    assert_eq!(p.data.system_load.memory, 65.2);
}

#[test]
fn registration_bodies() {
    let raw = fixture("registration_request");
    let req: RegisterRequest = serde_json::from_slice(&raw).unwrap();
    req.validate().expect("the spec's registration is valid");
    assert_eq!(req.capabilities.max_cpu_cores, 8);
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        serde_json::from_slice::<Value>(&raw).unwrap()
    );

    let raw = fixture("registration_response");
    let resp: RegisterResponse = serde_json::from_slice(&raw).unwrap();
    assert_eq!(resp.agent.websocket_url, "wss://panel.domain.com/ws/agents");
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        serde_json::from_slice::<Value>(&raw).unwrap()
    );
}

#[test]
fn envelope_routes_every_message_kind() {
    let cases = [
        (
            "command_create_server",
            MessageType::Command,
            Some("create_server"),
            Some("server_123"),
        ),
        (
            "command_stop_server",
            MessageType::Command,
            Some("stop_server"),
            Some("server_123"),
        ),
        (
            "response_status",
            MessageType::Response,
            None,
            Some("server_123"),
        ),
        (
            "event_server_log",
            MessageType::Event,
            Some("server_log"),
            Some("server_123"),
        ),
        (
            "event_resource_update",
            MessageType::Event,
            Some("resource_update"),
            Some("server_123"),
        ),
        ("ping", MessageType::Ping, None, None),
        ("pong", MessageType::Pong, None, None),
    ];
    let mut dec = Decoder::default();
    for (name, kind, tag, server) in cases {
        let raw = fixture(name);
        let before = raw.clone();
        let env = dec.envelope(&raw).expect(name);
        assert_eq!(env.kind, kind, "{name}");
        assert_eq!(env.name.as_deref(), tag, "{name}");
        // create_server names its server inside the payload, which routing does not read.
        if name != "command_create_server" {
            assert_eq!(env.server_id.as_deref(), server, "{name}");
        }
        assert_eq!(
            raw, before,
            "{name}: the frame must stay intact for forwarding"
        );
    }
}

/// Guards the fixture set itself: every JSON block in the spec must be one of the fixtures.
#[test]
fn fixtures_cover_the_spec() {
    let spec =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/panel-agent-protocol.md");
    let Ok(text) = std::fs::read_to_string(&spec) else {
        eprintln!(
            "spec not found at {}; fixture coverage not checked",
            spec.display()
        );
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixtures: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    let mut found = 0;
    for block in text.split("```json").skip(1) {
        let body = block.split("```").next().unwrap();
        for v in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
            let v = v.expect("spec JSON parses");
            assert!(
                fixtures.contains(&v),
                "spec example missing from fixtures: {v}"
            );
            found += 1;
        }
    }
    assert_eq!(found, 16, "the spec has 16 JSON examples");
}
