//! The agent-side findings of the hostile-input review (issue 9), each reproduced against
//! the real servers layer on the real Docker Engine: what a compromised panel could send,
//! and what a tenant could do from inside its server. Every test failed before its fix.

mod common;

use common::harness::*;
use e2e::docker;
use proto::{Message, Response, ServerState};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What the panel would receive for this response (the frame the link would write).
fn frame_len(r: &Response<'static>) -> usize {
    proto::encode(&Message::Response(r.clone())).len()
}

/// Removes a Docker network (created by the test or by the agent for it) on drop.
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// Removes a container by name on drop.
struct NamedContainer(String);

impl Drop for NamedContainer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), fastrand::u32(..))
}

#[test]
fn root_spellings_low_ports_group_zero_and_tiny_memory_are_refused() {
    let Some(h) = harness("hostile", |_| {}) else {
        return;
    };
    for (i, user) in ["00", "000:0", "0000000000", "4294967295", "1000:4294967295"]
        .into_iter()
        .enumerate()
    {
        let sid = format!("user-{i}");
        let mut e = egg(e2e::free_port(), STARTUP);
        e["user"] = json!(user);
        let (code, msg) = h.create_err(&sid, e);
        assert_eq!(code, "CONFIG_INVALID", "{user}: {msg}");
        assert!(msg.contains("user"), "{msg}");
        assert!(docker_inspect(&format!("ctrl-{sid}")).is_null());
        assert!(!h.volume(&sid).exists(), "{user}: a volume was made");
    }
    let mut group0 = egg(e2e::free_port(), STARTUP);
    group0["user"] = json!("1000:0");
    let (code, msg) = h.create_err("group-0", group0);
    assert_eq!(code, "CONFIG_INVALID");
    assert!(msg.contains("allowGroupZero"), "{msg}");

    let (code, msg) = h.create_err("low-port", egg(80, STARTUP));
    assert_eq!(code, "CONFIG_INVALID");
    assert!(msg.contains("1024"), "{msg}");

    let mut tiny = egg(e2e::free_port(), STARTUP);
    tiny["limits"]["memory"] = json!("5m");
    let (code, msg) = h.create_err("tiny", tiny);
    assert_eq!(code, "CONFIG_INVALID");
    assert!(msg.contains("6m"), "{msg}");
}

#[test]
fn the_node_policy_can_allow_group_zero_and_low_ports() {
    let Some(h) = harness("allow", |c| {
        c.policy.allow_group_zero = true;
        c.policy.allow_low_ports = true;
    }) else {
        return;
    };
    // A free port below 1024 (the tests run as root, which may bind it).
    let low = (900..1024)
        .find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port below 1024");
    let mut e = egg(low, STARTUP);
    e["user"] = json!("1000:0");
    h.create("allowed-1", e);
    let c = docker_inspect("ctrl-allowed-1");
    assert_eq!(c["Config"]["User"], "1000:0");
    assert_eq!(
        c["HostConfig"]["PortBindings"]["25565/tcp"][0]["HostPort"],
        low.to_string()
    );
}

#[test]
fn node_wide_caps_answer_insufficient_resources() {
    // Pids: each server's limit counts against the node's total.
    {
        let Some(h) = harness("pids", |c| {
            c.policy.pids_per_server = 100;
            c.policy.max_total_pids = Some(150);
        }) else {
            return;
        };
        h.create("pids-1", egg(e2e::free_port(), STARTUP));
        assert_eq!(
            docker_inspect("ctrl-pids-1")["HostConfig"]["PidsLimit"],
            100
        );
        let (code, msg) = h.create_err("pids-2", egg(e2e::free_port(), STARTUP));
        assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
        assert!(msg.contains("processes"), "{msg}");
    }
    // Servers.
    {
        let Some(h) = harness("count", |c| c.policy.max_servers = 1) else {
            return;
        };
        h.create("count-1", egg(e2e::free_port(), STARTUP));
        let (code, msg) = h.create_err("count-2", egg(e2e::free_port(), STARTUP));
        assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
        assert!(msg.contains("maxServers"), "{msg}");
    }
    // Disk, committed like memory: the sum of the limits.
    {
        let Some(h) = harness("disk", |c| c.policy.max_disk = Some("1500m".into())) else {
            return;
        };
        h.create("disk-1", egg(e2e::free_port(), STARTUP)); // 1g
        let (code, msg) = h.create_err("disk-2", egg(e2e::free_port(), STARTUP));
        assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
        assert!(msg.contains("disk"), "{msg}");
    }
}

#[test]
fn containers_get_rotated_logs_an_isolated_network_and_the_nodes_address() {
    let network = unique("ctrl-test-net");
    let _net = NetworkGuard(network.clone());
    let Some(mut h) = harness("contain", |c| {
        c.policy.network = network.clone();
        c.policy.log_max_size = "5m".into();
        c.policy.log_max_files = 2;
        c.policy.host_ip = [127, 0, 0, 1].into();
    }) else {
        return;
    };
    let port = e2e::free_port();
    h.create("contain-1", egg(port, STARTUP));
    let c = docker_inspect("ctrl-contain-1");
    let hc = &c["HostConfig"];
    assert_eq!(hc["LogConfig"]["Type"], "json-file", "{hc}");
    assert_eq!(hc["LogConfig"]["Config"]["max-size"], "5242880", "{hc}");
    assert_eq!(hc["LogConfig"]["Config"]["max-file"], "2", "{hc}");
    assert_eq!(hc["NetworkMode"], network.as_str());
    assert_eq!(hc["PortBindings"]["25565/tcp"][0]["HostIp"], "127.0.0.1");
    let net: Value = serde_json::from_str(&docker(&["network", "inspect", &network])).unwrap();
    assert_eq!(net[0]["Driver"], "bridge");
    assert_eq!(
        net[0]["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    let id = net[0]["Id"].as_str().unwrap().to_owned();

    // A second server joins the same network; the server answers on the node's address.
    h.create("contain-2", egg(e2e::free_port(), STARTUP));
    let again: Value = serde_json::from_str(&docker(&["network", "inspect", &network])).unwrap();
    assert_eq!(again[0]["Id"], id.as_str());
    assert_eq!(h.ok("contain-1", "start_server", None)["status"], "running");
    h.wait_log("contain-1", "Server started on port");
    let status = h.ok("contain-1", "get_status", None);
    assert_eq!(status["players"]["max"], 20, "{status}");
}

#[test]
fn a_network_that_lets_containers_talk_is_refused() {
    let network = unique("ctrl-test-icc");
    docker(&["network", "create", &network]);
    let _net = NetworkGuard(network.clone());
    let Some(h) = harness("icc", |c| c.policy.network = network.clone()) else {
        return;
    };
    let (code, msg) = h.create_err("icc-1", egg(e2e::free_port(), STARTUP));
    assert_eq!(code, "DOCKER_ERROR", "{msg}");
    assert!(msg.contains("enable_icc=false"), "{msg}");
    assert!(docker_inspect("ctrl-icc-1").is_null());
    assert!(!h.volume("icc-1").exists());
}

#[test]
fn a_foreign_container_holding_the_name_is_not_revealed() {
    let Some(h) = harness("foreign", |_| {}) else {
        return;
    };
    let sid = unique("foreign");
    let name = format!("ctrl-{sid}");
    let foreign_id = docker(&["create", "--name", &name, IMAGE]);
    let _foreign = NamedContainer(name.clone());
    let (code, msg) = h.create_err(&sid, egg(e2e::free_port(), STARTUP));
    assert_eq!(code, "CONFLICT", "{msg}");
    assert!(msg.contains(&name), "{msg}");
    assert!(
        !msg.contains(&foreign_id[..12]),
        "the foreign id leaked: {msg}"
    );
    assert!(!h.volume(&sid).exists());
    // The foreign container is untouched.
    assert_eq!(docker_inspect(&name)["Id"], foreign_id.as_str());
}

/// A stand-in for a service on the node: answers every request with a secret body and
/// counts the connections it gets.
fn secret_service() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "SECRET-BODY-4242 internal service answer";
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn pulls_from_private_addresses_are_refused_and_registry_bodies_never_quoted() {
    let (port, hits) = secret_service();
    let registry = format!("127.0.0.1:{port}");
    let image = format!("{registry}/probe/x:1");
    {
        let Some(h) = harness("ssrf", |_| {}) else {
            return;
        };
        let mut e = egg(e2e::free_port(), STARTUP);
        e["image"] = json!(image);
        let (code, msg) = h.create_err("ssrf-1", e);
        assert_eq!(code, "CONFIG_INVALID", "{msg}");
        assert!(
            msg.contains(&registry) && msg.contains("allowedRegistries"),
            "{msg}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "Docker was sent to the service"
        );
    }
    // Listed by the operator: the pull happens, and fails without quoting the answer.
    let Some(h) = harness("ssrf-allowed", |c| {
        c.policy.allowed_registries = vec![registry.clone()];
    }) else {
        return;
    };
    let mut e = egg(e2e::free_port(), STARTUP);
    e["image"] = json!(image);
    let (code, msg) = h.create_err("ssrf-2", e);
    assert_eq!(code, "DOCKER_ERROR", "{msg}");
    assert!(msg.contains(&image), "{msg}");
    assert!(
        !msg.contains("SECRET"),
        "the registry's body reached the panel: {msg}"
    );
    assert!(
        hits.load(Ordering::SeqCst) > 0,
        "the pull never reached the registry"
    );
}

#[test]
fn commands_over_the_rate_limits_are_answered_rate_limited() {
    let Some(h) = harness("rate", |c| {
        c.policy.rate.per_server = 0.001;
        c.policy.rate.per_server_burst = 3.0;
        c.policy.rate.total = 0.001;
        c.policy.rate.total_burst = 5.0;
    }) else {
        return;
    };
    let code = |sid: &str| h.err(Some(sid), "get_status", None).0;
    for _ in 0..3 {
        assert_eq!(code("flood"), "SERVER_NOT_FOUND");
    }
    assert_eq!(code("flood"), "RATE_LIMITED");
    // Another server has its own allowance, within the agent's total (5).
    assert_eq!(code("other"), "SERVER_NOT_FOUND");
    assert_eq!(code("other"), "SERVER_NOT_FOUND");
    let (code, msg) = h.err(Some("third"), "get_status", None);
    assert_eq!(code, "RATE_LIMITED");
    assert!(msg.contains("agent"), "{msg}");
}

#[test]
fn answers_never_exceed_the_frame_the_panel_accepts() {
    let Some(h) = harness("frames", |_| {}) else {
        return;
    };
    h.create("frames-1", egg(e2e::free_port(), STARTUP));
    let vol = h.volume("frames-1");
    let limit = 1 << 20;

    // Text of control characters: 300 KB that JSON-escape to 1.8 MB.
    std::fs::write(vol.join("ctrl.txt"), vec![1u8; 300 * 1024]).unwrap();
    // Binary: 900 KB that base64 to 1.2 MB.
    std::fs::write(vol.join("blob.bin"), vec![0xffu8; 900 * 1024]).unwrap();
    for name in ["ctrl.txt", "blob.bin"] {
        let r = h.send(
            Some("frames-1"),
            "get_file",
            Some(json!({"path": format!("/server/{name}")})),
        );
        assert!(frame_len(&r) <= limit, "{name}: {} bytes", frame_len(&r));
        let e = r.error.expect("refused");
        assert_eq!(e.code, "PAYLOAD_TOO_LARGE", "{name}: {}", e.message);
        assert!(e.message.contains(name), "{}", e.message);
    }
    // What fits is served.
    std::fs::write(vol.join("ok.txt"), "x".repeat(500 * 1024)).unwrap();
    let r = h.send(
        Some("frames-1"),
        "get_file",
        Some(json!({"path": "/server/ok.txt"})),
    );
    assert!(r.success, "{:?}", r.error);
    assert!(frame_len(&r) <= limit);

    // 5,000 long names, and 2,000 names of control characters (six bytes each on the wire):
    // paged by count and by bytes, in name order, all of them reachable.
    let dir = vol.join("many");
    std::fs::create_dir(&dir).unwrap();
    let mut expected = Vec::new();
    for i in 0..5000 {
        let name = format!("{i:05}-{}", "n".repeat(240));
        std::fs::write(dir.join(&name), b"").unwrap();
        expected.push(name);
    }
    for i in 0..2000 {
        let name = format!("~{i:04}{}", "\u{1}".repeat(240));
        std::fs::write(dir.join(&name), b"").unwrap();
        expected.push(name);
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut offset = 0u64;
    let mut cut_by_bytes = 0;
    loop {
        let r = h.send(
            Some("frames-1"),
            "list_files",
            Some(json!({"path": "/server/many", "offset": offset})),
        );
        assert!(r.success, "{:?}", r.error);
        assert!(frame_len(&r) <= limit, "page of {} bytes", frame_len(&r));
        let data = r.data.unwrap();
        assert_eq!(data["total"], 7000);
        let entries = data["entries"].as_array().unwrap();
        assert!(
            !entries.is_empty() && entries.len() <= 1000,
            "{}",
            entries.len()
        );
        seen.extend(
            entries
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned()),
        );
        match data.get("nextOffset").and_then(Value::as_u64) {
            Some(next) => {
                if entries.len() < 1000 {
                    cut_by_bytes += 1;
                }
                assert_eq!(next, seen.len() as u64);
                offset = next;
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert!(cut_by_bytes > 0, "no page was cut to fit the frame");
    // A limit is honoured, and capped.
    let r = h.send(
        Some("frames-1"),
        "list_files",
        Some(json!({"path": "/server/many", "offset": 10, "limit": 3})),
    );
    let data = r.data.unwrap();
    let names: Vec<&str> = data["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        expected[10..13]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(data["nextOffset"], 13);
}

#[test]
fn a_server_over_its_disk_limit_is_warned_refused_and_stopped() {
    let Some(mut h) = harness("diskwatch", |c| {
        c.policy.disk_check_secs = 1;
        c.policy.disk_grace_secs = 3;
    }) else {
        return;
    };
    let mut e = egg(e2e::free_port(), STARTUP);
    e["limits"]["disk"] = json!("8m");
    h.create("dw-1", e);
    h.ok("dw-1", "start_server", None);
    h.wait_log("dw-1", "Server started on port");
    // The server writes past its limit (as the tenant would, from inside).
    let big = h.volume("dw-1").join("fill.bin");
    std::fs::write(&big, vec![7u8; 12 << 20]).unwrap();
    let warning = h.wait_log("dw-1", "[agent] disk limit exceeded");
    let proto::EventKind::ServerLog(line) = &warning.kind else {
        unreachable!()
    };
    assert_eq!(line.log_level, "WARN");
    // API writes are refused at once (no cached figure from before the fill).
    let (code, msg) = h.err(
        Some("dw-1"),
        "write_file",
        Some(json!({"path": "/server/more.txt", "content": "0123456789"})),
    );
    assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
    // After the grace period the agent stops the server, and will not start it again.
    let stopped = h.wait_status("dw-1", ServerState::Stopped);
    assert!(
        stopped
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("disk limit"),
        "{stopped:?}"
    );
    let (code, msg) = h.err(Some("dw-1"), "start_server", None);
    assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
    // Back under the limit, it starts.
    std::fs::remove_file(&big).unwrap();
    assert_eq!(h.ok("dw-1", "start_server", None)["status"], "running");
}

#[test]
fn twice_the_disk_limit_stops_a_server_without_waiting_for_the_grace_period() {
    let Some(mut h) = harness("diskhard", |c| {
        c.policy.disk_check_secs = 1;
        c.policy.disk_grace_secs = 3600;
    }) else {
        return;
    };
    let mut e = egg(e2e::free_port(), STARTUP);
    e["limits"]["disk"] = json!("8m");
    h.create("dh-1", e);
    h.ok("dh-1", "start_server", None);
    h.wait_log("dh-1", "Server started on port");
    std::fs::write(h.volume("dh-1").join("fill.bin"), vec![7u8; 20 << 20]).unwrap();
    let stopped = h.wait_status("dh-1", ServerState::Stopped);
    assert!(
        stopped
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("disk limit"),
        "{stopped:?}"
    );
}
