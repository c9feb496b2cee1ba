//! One test per validation rule, each checking the wire code and that the message names the
//! offending field.

use proto::egg::EggConfig;
use proto::validate::{self, IdKind, ValidationError};
use proto::{Action, Decoder, ErrorCode, Message};
use serde_json::{Value, json};

fn spec_egg() -> Value {
    json!({
        "name": "minecraft-java",
        "image": "ghcr.io/pterodactyl/yolks:java_17",
        "ports": {"25565": 25565},
        "environment": {"SERVER_JARFILE": "server.jar", "MINECRAFT_VERSION": "1.20.4"},
        "limits": {"memory": "2048m", "cpu": "2", "disk": "5g"},
        "startup": "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}"
    })
}

fn check(egg: Value) -> Result<validate::ValidEgg, ValidationError> {
    let text = serde_json::to_vec(&egg).unwrap();
    let egg: EggConfig = serde_json::from_slice(&text).expect("decodes");
    validate::egg(&egg)
}

fn with(mutate: impl FnOnce(&mut Value)) -> Result<validate::ValidEgg, ValidationError> {
    let mut egg = spec_egg();
    mutate(&mut egg);
    check(egg)
}

fn rejects(mutate: impl FnOnce(&mut Value), needle: &str) {
    let err = with(mutate).expect_err("must be rejected");
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    assert!(
        err.to_string().contains(needle),
        "`{err}` should mention `{needle}`"
    );
}

#[test]
fn spec_egg_is_valid() {
    let v = check(spec_egg()).unwrap();
    assert_eq!(v.ports.len(), 1);
}

#[test]
fn image_reference_grammar() {
    for ok in [
        "alpine",
        "library/alpine:3.19",
        "ghcr.io/pterodactyl/yolks:java_17",
        "localhost:5000/team/game-server:v1.2.3",
        "registry.example.com/a/b/c",
        "ctrl-fakegame:latest",
        "my__image",
        "img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            validate::image_reference(ok).is_ok(),
            "{ok} should be valid"
        );
    }
    for bad in [
        "",
        "UPPER/case",
        "image:",
        ":tag",
        "a//b",
        "-leading",
        "trailing-",
        "image:bad tag",
        "image:-tag",
        "img@sha256:short",
        "img@nocolon",
        "reg.io:99999/x",
        "white space",
        "a...b",
        &"x".repeat(256),
    ] {
        assert!(
            validate::image_reference(bad).is_err(),
            "{bad:?} should be invalid"
        );
    }
    rejects(|e| e["image"] = json!("Bad Image"), "image");
}

#[test]
fn ports_range_protocol_and_duplicates() {
    rejects(|e| e["ports"] = json!({"0": 25565}), "container port");
    rejects(|e| e["ports"] = json!({"65536": 25565}), "container port");
    rejects(|e| e["ports"] = json!({"abc": 25565}), "container port");
    rejects(|e| e["ports"] = json!({"25565": 0}), "host port");
    rejects(|e| e["ports"] = json!({"25565": 70000}), "host port");
    rejects(|e| e["ports"] = json!({"25565": -1}), "host port");
    rejects(|e| e["ports"] = json!({"25565/sctp": 25565}), "protocol");
    rejects(
        |e| e["ports"] = json!({"25565": 25565, "25565/tcp": 25566}),
        "duplicate",
    );
    rejects(
        |e| e["ports"] = json!({"25565": 25565, "25566": 25565}),
        "duplicate",
    );
    // The same number over TCP and UDP is two different bindings.
    let v = with(|e| e["ports"] = json!({"25565": 25565, "25565/udp": 25565, "19132/udp": 19132}))
        .unwrap();
    assert_eq!(v.ports.len(), 3);
    assert!(
        v.ports
            .iter()
            .any(|b| b.container == 25565 && b.protocol == validate::Protocol::Udp)
    );
    // Wire order is kept: the first port is SERVER_PORT.
    let egg: EggConfig = serde_json::from_str(
        r#"{"name":"x","image":"a","ports":{"7777/udp":7777,"25565":25565},"limits":{"memory":"64m","cpu":"1","disk":"1g"},"startup":"run"}"#,
    )
    .unwrap();
    assert_eq!(validate::egg(&egg).unwrap().ports[0].container, 7777);
    let many: serde_json::Map<String, Value> =
        (1..=65).map(|p| (p.to_string(), json!(p + 1000))).collect();
    rejects(|e| e["ports"] = Value::Object(many), "at most 64");
}

#[test]
fn environment_names_values_and_reserved() {
    rejects(
        |e| e["environment"]["1BAD"] = json!("x"),
        "environment.1BAD",
    );
    rejects(
        |e| e["environment"]["BAD-NAME"] = json!("x"),
        "name must match",
    );
    rejects(
        |e| e["environment"]["SERVER_MEMORY"] = json!("1"),
        "set by the agent",
    );
    rejects(
        |e| e["environment"]["STARTUP"] = json!("x"),
        "set by the agent",
    );
    rejects(
        |e| e["environment"]["BIG"] = json!("x".repeat(33 * 1024)),
        "32 KiB",
    );
    rejects(|e| e["environment"]["NUL"] = json!("a\0b"), "NUL");
    // Numbers are accepted as their text, as operators write them.
    let mut egg = spec_egg();
    egg["environment"]["MAX_PLAYERS"] = json!(20);
    let text = serde_json::to_vec(&egg).unwrap();
    let parsed: EggConfig = serde_json::from_slice(&text).unwrap();
    assert_eq!(parsed.environment.get("MAX_PLAYERS"), Some("20"));
    // Duplicate keys in the JSON text are caught, not merged.
    let dup = br#"{"name":"x","image":"a","environment":{"A":"1","A":"2"},"limits":{"memory":"64m","cpu":"1","disk":"1g"},"startup":"run"}"#;
    let parsed: EggConfig = serde_json::from_slice(dup).unwrap();
    assert!(
        validate::egg(&parsed)
            .unwrap_err()
            .to_string()
            .contains("defined twice")
    );
}

#[test]
fn quantities() {
    for (field, value) in [
        ("memory", "lots"),
        ("memory", "2048x"),
        ("memory", "-1m"),
        ("memory", "1m"),
        ("disk", "0"),
        ("disk", ""),
        ("cpu", "two"),
        ("cpu", "0"),
        ("cpu", "5000"),
    ] {
        rejects(|e| e["limits"][field] = json!(value), field);
    }
    let v = with(|e| e["limits"] = json!({"memory": "512", "cpu": 0.5, "disk": "10GB"})).unwrap();
    assert_eq!(v.limits.memory.mib(), 512);
    assert_eq!(v.limits.cpu.0, 500);
    assert_eq!(v.limits.disk.0, 10 << 30);
}

#[test]
fn startup_placeholders_resolve() {
    rejects(|e| e["startup"] = json!("run {{MISSING}}"), "{{MISSING}}");
    rejects(
        |e| e["startup"] = json!("run {{SERVER_JARFILE"),
        "without a closing",
    );
    rejects(
        |e| e["startup"] = json!("run {{bad name}}"),
        "not a valid placeholder",
    );
    rejects(|e| e["startup"] = json!("   "), "must not be empty");
    rejects(|e| e["startup"] = json!("x".repeat(9000)), "8 KiB");
    // The agent's own variables resolve without being in the egg.
    with(|e| {
        e["startup"] = json!("run --port {{SERVER_PORT}} --ip {{SERVER_IP}} -m {{SERVER_MEMORY}}")
    })
    .unwrap();
    let line = validate::substitute("a {{X}} b {{ Y }} c", |n| match n {
        "X" => Some("1"),
        "Y" => Some("2"),
        _ => None,
    });
    assert_eq!(line, "a 1 b 2 c");
}

#[test]
fn names_and_size_limits() {
    rejects(|e| e["name"] = json!(""), "name");
    rejects(|e| e["name"] = json!("x".repeat(65)), "name");
    rejects(|e| e["name"] = json!("bad/name"), "name");
    let many: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("V{i}"), json!("x"))).collect();
    rejects(|e| e["environment"] = Value::Object(many), "at most 128");
}

#[test]
fn extensions_stop_query_user() {
    with(|e| e["stop"] = json!({"command": "stop"})).unwrap();
    with(|e| e["stop"] = json!({"signal": "SIGINT"})).unwrap();
    rejects(|e| e["stop"] = json!({"signal": "SIGFOO"}), "stop.signal");
    rejects(
        |e| e["stop"] = json!({"command": "stop\nrm -rf /"}),
        "stop.command",
    );
    with(|e| e["query"] = json!({"type": "minecraft", "port": 25565})).unwrap();
    rejects(
        |e| e["query"] = json!({"type": "source", "port": 27015}),
        "query.type",
    );
    rejects(
        |e| e["query"] = json!({"type": "minecraft", "port": 0}),
        "query.port",
    );
    with(|e| e["user"] = json!("1000:1000")).unwrap();
    rejects(|e| e["user"] = json!("0:0"), "root");
    rejects(|e| e["user"] = json!("root"), "numeric");
}

/// Ids are numbers, not spellings: every way of writing uid 0 is root, and the kernel's
/// "no id" value (`(uid_t)-1`) and anything wider are refused.
#[test]
fn user_ids_are_parsed_as_numbers() {
    for root in ["0", "00", "000:0", "0000000000", "0:1000", "00:00"] {
        rejects(|e| e["user"] = json!(root), "root");
    }
    for wide in [
        "4294967295",
        "1000:4294967295",
        "4294967296",
        "99999999999",
        "1000:99999999999",
    ] {
        rejects(|e| e["user"] = json!(wide), "user");
    }
    for bad in [
        "", ":", "1000:", ":1000", "+1000", " 1000", "1000 ", "1e3", "-1", "1:2:3",
    ] {
        rejects(|e| e["user"] = json!(bad), "user");
    }
    let v = with(|e| e["user"] = json!("0001000:01000")).unwrap();
    assert_eq!(v.user, Some((1000, 1000)));
    let v = with(|e| e["user"] = json!("1234")).unwrap();
    assert_eq!(v.user, Some((1234, 1234)));
    let v = with(|e| e["user"] = json!("4294967294:1")).unwrap();
    assert_eq!(v.user, Some((4294967294, 1)));
    // Group 0 parses; whether a node allows it is the agent's decision.
    let v = with(|e| e["user"] = json!("1000:0")).unwrap();
    assert_eq!(v.user, Some((1000, 0)));
    assert_eq!(with(|_| {}).unwrap().user, None);
}

/// Docker refuses a memory limit below 6 MiB when it creates the container; validation
/// refuses it first, with a message that says so.
#[test]
fn memory_below_dockers_minimum_is_refused() {
    for small in ["4m", "5m", "1m"] {
        rejects(|e| e["limits"]["memory"] = json!(small), "memory");
    }
    with(|e| e["limits"]["memory"] = json!("6m")).unwrap();
}

#[test]
fn ids() {
    for ok in ["server_123", "agent_uuid", "a", "0f8e-12", &"x".repeat(64)] {
        validate::id(IdKind::Server, ok).unwrap();
    }
    for bad in [
        "",
        "-x",
        "_x",
        "has space",
        "slash/x",
        "dot.x",
        "ünï",
        &"x".repeat(65),
    ] {
        let err = validate::id(IdKind::Agent, bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidMessage);
        assert!(err.to_string().starts_with("agentId"), "{err}");
    }
}

#[test]
fn paths() {
    assert_eq!(validate::server_path("/server").unwrap(), "");
    assert_eq!(validate::server_path("/server/").unwrap(), "");
    assert_eq!(
        validate::server_path("/server/./world//level.dat").unwrap(),
        "world/level.dat"
    );
    for bad in [
        "",
        "/",
        "/etc/passwd",
        "server/x",
        "/serverx",
        "/server/../etc/passwd",
        "/server/a/../../b",
        "/server/a\0b",
        "relative",
    ] {
        let err = validate::server_path(bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidPath, "{bad:?}");
    }
    let long = format!("/server/{}", "a/".repeat(2100));
    assert!(
        validate::server_path(&long)
            .unwrap_err()
            .to_string()
            .contains("4096")
    );
    let comp = format!("/server/{}", "a".repeat(256));
    assert!(
        validate::server_path(&comp)
            .unwrap_err()
            .to_string()
            .contains("255")
    );
}

#[test]
fn signals_and_console_lines() {
    assert_eq!(validate::signal("SIGTERM").unwrap(), ("SIGTERM", 15));
    assert_eq!(validate::signal("KILL").unwrap(), ("SIGKILL", 9));
    assert!(validate::signal("SIGSEGV").is_err());
    validate::console_line("say hello").unwrap();
    assert!(validate::console_line("a\nb").is_err());
    assert!(validate::console_line(&"x".repeat(5000)).is_err());
}

fn decode_err(frame: &[u8]) -> ErrorCode {
    Decoder::default().message(frame).unwrap_err().code()
}

#[test]
fn malformed_frames_are_invalid_message() {
    for frame in [
        &b""[..],
        b"{",
        b"null",
        b"[]",
        b"\"text\"",
        b"{}",
        br#"{"type":"command"}"#,
        br#"{"type":"nope","id":"1","timestamp":"t"}"#,
        br#"{"id":"1","type":"command","timestamp":"t"}"#,
        br#"{"id":"1","type":"command","timestamp":"t","action":"get_file"}"#,
        br#"{"id":"1","type":"command","timestamp":"t","action":"stop_server","payload":{"timeout":"soon"}}"#,
        br#"{"id":"1","type":"response","timestamp":"t","success":false}"#,
        br#"{"id":"1","type":"event","timestamp":"t","event":"server_log"}"#,
        br#"{"id":1,"type":"ping","timestamp":"t"}"#,
        br#"{"id":"1","id":"2","type":"ping","timestamp":"t"}"#,
        b"\xff\xfe",
    ] {
        assert_eq!(decode_err(frame), ErrorCode::InvalidMessage, "{:?}", String::from_utf8_lossy(frame));
    }
}

#[test]
fn unknown_action_is_decoded_for_an_unknown_action_answer() {
    let frame = br#"{"id":"m1","type":"command","timestamp":"t","action":"format_disk","payload":{"all":true}}"#;
    let mut dec = Decoder::default();
    let Message::Command(c) = dec.message(frame).unwrap() else {
        panic!()
    };
    assert_eq!(c.id, "m1");
    assert_eq!(c.action, Action::Unknown("format_disk".into()));
    assert_eq!(c.action.name(), "format_disk");
}

#[test]
fn oversize_frames_are_payload_too_large() {
    let mut dec = Decoder::new(64);
    let frame = format!(
        r#"{{"id":"1","type":"ping","timestamp":"{}"}}"#,
        "x".repeat(100)
    );
    assert_eq!(
        dec.message(frame.as_bytes()).unwrap_err().code(),
        ErrorCode::PayloadTooLarge
    );
    assert_eq!(
        dec.envelope(frame.as_bytes()).unwrap_err().code(),
        ErrorCode::PayloadTooLarge
    );
}

#[test]
fn payload_before_tag_still_decodes() {
    let frame = br#"{"payload":{"signal":"SIGINT","timeout":5},"id":"m","timestamp":"t","type":"command","serverId":"s","action":"stop_server"}"#;
    let Message::Command(c) = proto::decode(frame).unwrap() else {
        panic!()
    };
    let Action::StopServer(Some(p)) = c.action else {
        panic!()
    };
    assert_eq!((p.signal.as_deref(), p.timeout), (Some("SIGINT"), Some(5)));
    let frame = br#"{"data":{"serverId":"s","logLevel":"INFO","message":"hi"},"event":"server_log","type":"event","timestamp":"t"}"#;
    assert!(matches!(
        Decoder::default().message(frame).unwrap(),
        Message::Event(_)
    ));
}

#[test]
fn escaped_strings_decode_correctly() {
    let frame = br#"{"type":"event","timestamp":"t","event":"server_log","data":{"serverId":"s","logLevel":"INFO","message":"a \"quoted\" \u00e9\n line"}}"#;
    let Message::Event(e) = proto::decode(frame).unwrap() else {
        panic!()
    };
    let proto::EventKind::ServerLog(l) = e.kind else {
        panic!()
    };
    assert_eq!(l.message, "a \"quoted\" é\n line");
}

#[test]
fn image_registries() {
    assert_eq!(validate::image_registry("alpine"), None);
    assert_eq!(validate::image_registry("library/alpine:3"), None);
    assert_eq!(
        validate::image_registry("ghcr.io/pterodactyl/yolks:java_17"),
        Some("ghcr.io")
    );
    assert_eq!(
        validate::image_registry("127.0.0.1:32160/probe/x:1"),
        Some("127.0.0.1:32160")
    );
    assert_eq!(validate::image_registry("localhost/x"), Some("localhost"));
    assert_eq!(
        validate::image_registry("reg:5000/x@sha256:0123456789abcdef0123456789abcdef"),
        Some("reg:5000")
    );
    validate::registry_host("registry.lan:5000").unwrap();
    assert!(validate::registry_host("not a host").is_err());
    assert!(validate::registry_host("host:99999").is_err());
}

/// Decodes a command frame's action (the link's path).
fn action(action: &str, payload: Value) -> Action<'static> {
    let frame = json!({"id": "m", "type": "command", "timestamp": "t", "serverId": "s",
                       "action": action, "payload": payload});
    match Decoder::default().message(frame.to_string().as_bytes()) {
        Ok(Message::Command(c)) => c.action.into_owned(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_manager_payloads_decode_and_validate() {
    let Action::ReadFileChunk(r) = action(
        "read_file_chunk",
        json!({"path": "/server/a", "offset": 5, "length": 262144}),
    ) else {
        panic!()
    };
    validate::read_chunk(&r).unwrap();
    for (offset, length, field) in [
        (0, 0, "length"),
        (0, 262_145, "length"),
        (u64::MAX, 1, "offset"),
    ] {
        let mut bad = r.clone();
        bad.offset = offset;
        bad.length = length;
        let e = validate::read_chunk(&bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
        assert!(e.to_string().starts_with(field), "{e}");
    }

    let Action::WriteFileChunk(w) = action(
        "write_file_chunk",
        json!({"path": "/server/a", "uploadId": "u-1", "offset": 0, "content": "aGk=", "final": true}),
    ) else {
        panic!()
    };
    assert!(w.is_final);
    assert_eq!(
        w.encoding,
        proto::ContentEncoding::Base64,
        "base64 by default"
    );
    validate::write_chunk(&w).unwrap();
    let mut bad = w.clone();
    bad.upload_id = "../x".into();
    assert!(
        validate::write_chunk(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("uploadId")
    );
    bad.upload_id = "u".repeat(65).into();
    assert!(validate::write_chunk(&bad).is_err());
    let mut bad = w.clone();
    bad.path = "/server".into();
    assert_eq!(
        validate::write_chunk(&bad).unwrap_err().code(),
        ErrorCode::InvalidPath
    );
    let mut bad = w.clone();
    bad.content = "A".repeat(validate::MAX_WRITE_CHUNK / 3 * 4 + 8).into();
    assert!(
        validate::write_chunk(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("content")
    );
    let mut bad = w.clone();
    bad.offset = u64::MAX - 1;
    assert!(validate::write_chunk(&bad).is_err());
    // `final` round-trips under its wire name.
    let text = serde_json::to_string(&w).unwrap();
    assert!(
        text.contains("\"final\":true") && text.contains("\"uploadId\""),
        "{text}"
    );

    let Action::RenameFile(r) = action(
        "rename_file",
        json!({"from": "/server/a", "to": "/server/b/c"}),
    ) else {
        panic!()
    };
    assert_eq!(validate::rename(&r).unwrap(), ("a".into(), "b/c".into()));
    for (from, to) in [
        ("/server/a", "/server/a/b"),
        ("/server/a", "/server/a"),
        ("/server", "/server/x"),
        ("/server/x", "/server"),
        ("/server/x", "/etc/x"),
        ("/server/../x", "/server/y"),
    ] {
        let r = proto::RenameFile {
            from: from.into(),
            to: to.into(),
        };
        let e = validate::rename(&r).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPath, "{from} -> {to}: {e}");
    }
    assert!(
        validate::rename(&proto::RenameFile {
            from: "/server/a".into(),
            to: "/server/ab".into()
        })
        .is_ok()
    );

    assert!(matches!(
        action("delete_file", json!({"path": "/server/x"})),
        Action::DeleteFile(_)
    ));
    assert!(matches!(
        action("create_directory", json!({"path": "/server/x"})),
        Action::CreateDirectory(_)
    ));
    assert_eq!(
        validate::file_target("/server").unwrap_err().code(),
        ErrorCode::InvalidPath
    );
    assert_eq!(validate::file_target("/server/x/").unwrap(), "x");

    assert!(matches!(
        action("get_logs", json!({"lines": 20})),
        Action::GetLogs(Some(proto::GetLogs { lines: Some(20) }))
    ));
    assert_eq!(validate::log_lines(None).unwrap(), 150);
    assert_eq!(validate::log_lines(Some(1000)).unwrap(), 1000);
    for n in [0, 1001, u64::MAX] {
        assert_eq!(
            validate::log_lines(Some(n)).unwrap_err().code(),
            ErrorCode::InvalidMessage
        );
    }
    assert!(matches!(
        action("cancel_upload", json!({"uploadId": "u"})),
        Action::CancelUpload(_)
    ));
}
