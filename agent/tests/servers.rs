//! The servers layer against the real Docker Engine and the `ctrl-fakegame:latest` image:
//! every command of the spec and the extensions, the error codes, crash detection, log
//! throttling, re-adoption, path escapes, a missing Docker socket, and `agent run` itself.
//!
//! Commands go through `Servers::execute` exactly as the link delivers them (decoded from
//! JSON); events are read from the outbox the link would send. Each test uses its own agent
//! id; a `ContainerGuard` removes every container labelled with it, panic or not.

mod common;

use agent::link::outbox::Outbox;
use agent::servers::{Capacity, Servers, ServersConfig};
use common::harness::*;
use e2e::TempDir;
use proto::{EventKind, ServerState};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn full_lifecycle_with_files_console_status_and_purge() {
    let Some(mut h) = harness("life", |_| {}) else {
        return;
    };
    let port = e2e::free_port();
    let sid = "life-1";
    let created = h.create(sid, egg(port, STARTUP));
    assert_eq!(created["status"], "created");
    assert!(
        created["containerId"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );

    // The container is hardened and named/labelled per the contract.
    let c = docker_inspect(&format!("ctrl-{sid}"));
    assert_eq!(c["Config"]["Labels"]["ctrl.server"], sid);
    assert_eq!(c["Config"]["Labels"]["ctrl.agent"], h.cfg.agent_id.as_str());
    assert_eq!(c["Config"]["User"], "1000:1000");
    assert_eq!(c["Config"]["WorkingDir"], "/server");
    assert_eq!(c["Config"]["OpenStdin"], true);
    assert_eq!(c["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(
        c["Config"]["Cmd"][2],
        format!("fakegame --port 25565 --max-players 20 --write-file hello.txt")
    );
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "SERVER_MEMORY=128",
        "SERVER_PORT=25565",
        "SERVER_IP=0.0.0.0",
        "MAX_PLAYERS=20",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    let hc = &c["HostConfig"];
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(hc["Memory"], 128 << 20);
    assert_eq!(hc["NanoCpus"], 250_000_000);
    assert!(hc["PidsLimit"].as_i64().unwrap() > 0);
    assert!(hc["Tmpfs"]["/tmp"].is_string());
    assert_eq!(
        hc["PortBindings"]["25565/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(c["Mounts"][0]["Destination"], "/server");

    // start → running, console output flows, the volume is written by the server.
    let started = h.ok(sid, "start_server", None);
    assert_eq!(started["status"], "running");
    let running = h.wait_status(sid, ServerState::Running);
    assert!(running.pid.is_some_and(|p| p > 0));
    h.wait_log(sid, "Server started on port");

    // get_status: the spec's shape, with players from the Server List Ping.
    let status = h.ok(sid, "get_status", None);
    assert_eq!(status["status"], "running");
    assert_eq!(status["containerId"], created["containerId"]);
    assert!(status["uptime"].as_u64().is_some());
    let res = &status["resources"];
    assert!(res["cpu"].as_f64().is_some());
    assert_eq!(res["memory"]["available"], "128m");
    assert!(res["memory"]["used"].as_str().unwrap().ends_with('m'));
    assert!(res["network"]["rx"].as_u64().is_some());
    assert_eq!(status["players"]["max"], 20);
    assert_eq!(status["players"]["online"], 0);

    // Console: send_command reaches stdin; players follow.
    h.ok(
        sid,
        "send_command",
        Some(json!({"command": "say hello from the panel"})),
    );
    h.wait_log(sid, "hello from the panel");
    h.ok(sid, "send_command", Some(json!({"command": "join alice"})));
    let deadline = Instant::now() + WAIT;
    loop {
        let s = h.ok(sid, "get_status", None);
        if s["players"]["list"] == json!(["alice"]) {
            assert_eq!(s["players"]["online"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "player list never showed alice: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // resource_update events arrive on the interval.
    let sid_owned = sid.to_owned();
    let ru = h.wait_event(
        "resource_update",
        |e| matches!(&e.kind, EventKind::ResourceUpdate(r) if r.server_id == sid_owned),
    );
    if let EventKind::ResourceUpdate(r) = ru.kind {
        assert!(r.memory.percentage >= 0.0 && r.memory.percentage <= 100.0);
        assert!(r.disk.used.ends_with('m'));
        assert!(r.network.is_some());
    }

    // Files: list, read, write (atomic, through the container's own view).
    let deadline = Instant::now() + WAIT;
    loop {
        let list = h.ok(sid, "list_files", Some(json!({"path": "/server"})));
        if list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "hello.txt")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hello.txt never appeared: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = h.ok(sid, "get_file", Some(json!({"path": "/server/hello.txt"})));
    assert_eq!(file["content"], "fakegame test file\nline two: ok\n");
    assert_eq!(file["encoding"], "utf8");
    let wrote = h.ok(
        sid,
        "write_file",
        Some(json!({"path": "/server/config/server.properties", "content": "motd=hi\n"})),
    );
    assert_eq!(wrote["size"], 8);
    assert_eq!(
        std::fs::read_to_string(h.volume(sid).join("config/server.properties")).unwrap(),
        "motd=hi\n"
    );
    h.ok(
        sid,
        "write_file",
        Some(json!({"path": "/server/bin.dat", "content": "AAEC/w==", "encoding": "base64"})),
    );
    let bin = h.ok(sid, "get_file", Some(json!({"path": "/server/bin.dat"})));
    assert_eq!(
        (
            bin["encoding"].as_str(),
            bin["content"].as_str(),
            bin["size"].as_u64()
        ),
        (Some("base64"), Some("AAEC/w=="), Some(4))
    );

    // stop: the egg's console command, a clean stop (not a crash).
    let stopped = h.ok(sid, "stop_server", Some(json!({"timeout": 10})));
    assert_eq!(stopped["status"], "stopped");
    h.wait_log(sid, "Stopping server");
    let s = h.wait_status(sid, ServerState::Stopped);
    assert_eq!(s.previous_status, ServerState::Stopping);
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(s.reason.as_deref(), Some("stopped by operator"));
    assert_eq!(h.ok(sid, "get_status", None)["status"], "stopped");
    let (code, _) = h.err(
        Some(sid),
        "send_command",
        Some(json!({"command": "say nobody"})),
    );
    assert_eq!(code, "CONFLICT");

    // delete with purge: container and files gone.
    let deleted = h.ok(sid, "delete_server", Some(json!({"purge": true})));
    assert_eq!(deleted["status"], "deleted");
    let s = h.wait_status(sid, ServerState::Deleted);
    assert_eq!(s.reason.as_deref(), Some("deleted by operator"));
    assert!(!h.volume(sid).exists());
    assert!(docker_inspect(&format!("ctrl-{sid}")).is_null());
    assert_eq!(h.err(Some(sid), "get_status", None).0, "SERVER_NOT_FOUND");
}

#[test]
fn restart_and_kill_are_operator_actions_not_crashes() {
    let Some(mut h) = harness("power", |_| {}) else {
        return;
    };
    let sid = "power-1";
    // No stop command: stops use the signal (fakegame exits 0 on SIGTERM).
    let mut e = egg(e2e::free_port(), STARTUP);
    e.as_object_mut().unwrap().remove("stop");
    h.create(sid, e);
    h.ok(sid, "start_server", None);
    h.wait_log(sid, "Server started on port");
    let first_start = docker_inspect(&format!("ctrl-{sid}"))["State"]["StartedAt"].clone();

    let restarted = h.ok(
        sid,
        "restart_server",
        Some(json!({"signal": "SIGTERM", "timeout": 10})),
    );
    assert_eq!(restarted["status"], "running");
    h.wait_log(sid, "Received SIGTERM");
    let s = h.wait_status(sid, ServerState::Running);
    let back = h.wait_event("restarting -> running", |e| {
        matches!(&e.kind, EventKind::ServerStatusChanged(s) if s.previous_status == ServerState::Restarting && s.current_status == ServerState::Running)
    });
    drop((s, back));
    assert_ne!(
        docker_inspect(&format!("ctrl-{sid}"))["State"]["StartedAt"],
        first_start
    );
    assert!(!h.events.iter().any(|e| matches!(&e.kind, EventKind::ServerStatusChanged(s) if s.current_status == ServerState::Crashed)));

    // Starting a running server is a no-op success.
    assert_eq!(h.ok(sid, "start_server", None)["status"], "running");

    let killed = h.ok(sid, "kill_server", None);
    assert_eq!(killed["status"], "stopped");
    let s = h.wait_status(sid, ServerState::Stopped);
    assert_eq!(s.exit_code, Some(137));
    assert_eq!(s.reason.as_deref(), Some("killed by operator"));
    // Stopping a stopped server answers stopped.
    assert_eq!(h.ok(sid, "stop_server", None)["status"], "stopped");
    // kill with an unsupported signal is refused before Docker sees it.
    assert_eq!(
        h.err(Some(sid), "kill_server", Some(json!({"signal": "SIGSEGV"})))
            .0,
        "INVALID_MESSAGE"
    );
}

#[test]
fn a_crash_and_a_console_exit_are_told_apart() {
    let Some(mut h) = harness("crash", |_| {}) else {
        return;
    };
    h.create(
        "crash-1",
        egg(
            e2e::free_port(),
            "fakegame --port {{SERVER_PORT}} --crash-after 1",
        ),
    );
    h.ok("crash-1", "start_server", None);
    let s = h.wait_status("crash-1", ServerState::Crashed);
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.oom_killed, Some(false));
    assert_eq!(s.reason.as_deref(), Some("crashed with exit code 3"));
    h.wait_log("crash-1", "Simulated crash");
    assert_eq!(h.ok("crash-1", "get_status", None)["status"], "crashed");

    // The server's own `stop` (typed by an operator in the console) exits 0: stopped.
    h.create("clean-1", egg(e2e::free_port(), STARTUP));
    h.ok("clean-1", "start_server", None);
    h.wait_log("clean-1", "Server started on port");
    h.ok("clean-1", "send_command", Some(json!({"command": "stop"})));
    let s = h.wait_status("clean-1", ServerState::Stopped);
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(s.reason.as_deref(), Some("exited on its own"));
}

#[test]
fn a_spamming_server_is_throttled_and_drops_are_announced() {
    let Some(mut h) = harness("spam", |c| {
        c.log_rate = 20.0;
        c.log_burst = 20.0;
    }) else {
        return;
    };
    h.create(
        "spam-1",
        egg(
            e2e::free_port(),
            "fakegame --port {{SERVER_PORT}} --spam 2000",
        ),
    );
    h.ok("spam-1", "start_server", None);
    let announced = h.wait_log("spam-1", "log lines dropped (rate limit)");
    if let EventKind::ServerLog(l) = &announced.kind {
        assert_eq!(l.log_level, "WARN");
        assert!(
            l.stream.is_none(),
            "the announcement is the agent's own line"
        );
    }
    let with_count = h.wait_event(
        "a line carrying dropped",
        |e| matches!(&e.kind, EventKind::ServerLog(l) if l.dropped.is_some_and(|n| n > 0)),
    );
    drop(with_count);
    // Far fewer lines than the server printed reached the outbox.
    std::thread::sleep(Duration::from_secs(1));
    h.drain();
    let spam_lines = h
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ServerLog(l) if l.message.contains("spam line")))
        .count();
    let highest = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ServerLog(l) => l
                .message
                .rsplit("spam line ")
                .next()
                .and_then(|n| n.trim().parse::<u64>().ok()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(
        highest > spam_lines as u64 * 2,
        "delivered {spam_lines} of {highest}"
    );
    h.ok("spam-1", "kill_server", None);
}

#[test]
fn a_restarted_manager_readopts_running_servers_without_restarting_them() {
    let Some(mut h) = harness("adopt", |_| {}) else {
        return;
    };
    h.create("adopt-1", egg(e2e::free_port(), STARTUP));
    h.create("adopt-2", egg(e2e::free_port(), STARTUP));
    h.ok("adopt-1", "start_server", None);
    h.wait_log("adopt-1", "Server started on port");
    let started_at = docker_inspect("ctrl-adopt-1")["State"]["StartedAt"].clone();

    // The agent goes away (its tasks with it); the containers stay.
    drop(h.servers.take());
    let outbox = Arc::new(Outbox::new(100_000));
    let servers = Servers::start(h.cfg.clone(), outbox.clone()).unwrap();
    h.outbox = outbox;
    h.events.clear();
    h.servers = Some(servers);
    assert_eq!(smol::block_on(h.servers().adopt()).unwrap(), 2);
    assert_eq!(
        h.servers().server_ids(),
        vec!["adopt-1".to_string(), "adopt-2".to_string()]
    );
    assert_eq!(h.servers().state("adopt-1"), Some(ServerState::Running));
    assert_eq!(h.servers().state("adopt-2"), Some(ServerState::Created));

    // Console and stats resumed; nothing was restarted.
    h.ok(
        "adopt-1",
        "send_command",
        Some(json!({"command": "say still here"})),
    );
    h.wait_log("adopt-1", "still here");
    let status = h.ok("adopt-1", "get_status", None);
    assert_eq!(status["status"], "running");
    assert!(status["resources"].is_object());
    h.wait_event(
        "resource_update after adoption",
        |e| matches!(&e.kind, EventKind::ResourceUpdate(r) if r.server_id == "adopt-1"),
    );
    assert_eq!(
        docker_inspect("ctrl-adopt-1")["State"]["StartedAt"],
        started_at
    );
    // Exit handling works for adopted servers too.
    h.ok("adopt-1", "stop_server", None);
    let s = h.wait_status("adopt-1", ServerState::Stopped);
    assert_eq!(s.reason.as_deref(), Some("stopped by operator"));
    // The adopted files are the same volume.
    assert!(
        h.ok(
            "adopt-1",
            "get_file",
            Some(json!({"path": "/server/hello.txt"}))
        )["content"]
            .is_string()
    );
}

#[test]
fn every_error_code_the_agent_produces() {
    let Some(mut h) = harness("errors", |c| {
        c.capacity = Some(Capacity {
            memory: 1 << 30,
            cpu_millis: 2000,
        });
    }) else {
        return;
    };
    // SERVER_NOT_FOUND, INVALID_MESSAGE (ids, console lines), UNKNOWN_ACTION.
    assert_eq!(
        h.err(Some("nope"), "start_server", None).0,
        "SERVER_NOT_FOUND"
    );
    assert_eq!(
        h.err(Some("../etc"), "get_status", None).0,
        "INVALID_MESSAGE"
    );
    assert_eq!(h.err(None, "get_status", None).0, "INVALID_MESSAGE");
    assert_eq!(
        h.err(Some("x"), "reticulate_splines", None).0,
        "UNKNOWN_ACTION"
    );

    // CONFIG_INVALID: a bad egg, an unresolved placeholder, a root user.
    let mut bad = egg(e2e::free_port(), STARTUP);
    bad["limits"]["memory"] = json!("lots");
    assert_eq!(h.create_err("bad-1", bad).0, "CONFIG_INVALID");
    let (code, msg) = h.create_err("bad-2", egg(e2e::free_port(), "fakegame {{NOT_DEFINED}}"));
    assert_eq!(code, "CONFIG_INVALID");
    assert!(msg.contains("NOT_DEFINED"), "{msg}");
    let mut root = egg(e2e::free_port(), STARTUP);
    root["user"] = json!("0:0");
    assert_eq!(h.create_err("bad-3", root).0, "CONFIG_INVALID");

    // DOCKER_ERROR naming the image; nothing left behind.
    let mut missing = egg(e2e::free_port(), STARTUP);
    missing["image"] = json!("ctrl-no-such-image:never");
    let (code, msg) = h.create_err("img-1", missing);
    assert_eq!(code, "DOCKER_ERROR");
    assert!(msg.contains("ctrl-no-such-image:never"), "{msg}");
    assert!(!h.volume("img-1").exists());
    assert!(docker_inspect("ctrl-img-1").is_null());
    assert_eq!(
        h.err(Some("img-1"), "get_status", None).0,
        "SERVER_NOT_FOUND"
    );

    // PORT_CONFLICT: a port held by another process, and one held by another server.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (code, msg) = h.create_err("port-1", egg(held_port, STARTUP));
    assert_eq!(code, "PORT_CONFLICT");
    assert!(msg.contains(&held_port.to_string()), "{msg}");
    assert!(docker_inspect("ctrl-port-1").is_null());
    let shared = e2e::free_port();
    h.create("port-2", egg(shared, STARTUP));
    let (code, msg) = h.create_err("port-3", egg(shared, STARTUP));
    assert_eq!(code, "PORT_CONFLICT");
    assert!(msg.contains("port-2"), "{msg}");

    // CONFLICT: the id is taken; INSUFFICIENT_RESOURCES against capacity and other servers.
    assert_eq!(
        h.create_err("port-2", egg(e2e::free_port(), STARTUP)).0,
        "CONFLICT"
    );
    let mut big = egg(e2e::free_port(), STARTUP);
    big["limits"]["memory"] = json!("2g");
    let (code, msg) = h.create_err("big-1", big);
    assert_eq!(code, "INSUFFICIENT_RESOURCES");
    assert!(msg.contains("memory"), "{msg}");
    let mut cpu = egg(e2e::free_port(), STARTUP);
    cpu["limits"]["cpu"] = json!("1.9"); // port-2 already holds 0.25 of 2
    let (code, msg) = h.create_err("cpu-1", cpu);
    assert_eq!(code, "INSUFFICIENT_RESOURCES");
    assert!(msg.contains("CPU"), "{msg}");

    // BUSY: one power action per server at a time.
    h.ok("port-2", "start_server", None);
    h.wait_log("port-2", "Server started on port");
    let (a, b) = smol::block_on(futures_lite::future::zip(
        h.servers()
            .execute(command(Some("port-2"), "stop_server", None)),
        h.servers()
            .execute(command(Some("port-2"), "start_server", None)),
    ));
    assert!(a.success, "{:?}", a.error);
    assert_eq!(
        b.error.map(|e| e.code.into_owned()).as_deref(),
        Some("BUSY")
    );

    // File errors: FILE_NOT_FOUND, INVALID_PATH, PAYLOAD_TOO_LARGE, INSUFFICIENT_RESOURCES.
    assert_eq!(
        h.err(
            Some("port-2"),
            "get_file",
            Some(json!({"path": "/server/none.txt"}))
        )
        .0,
        "FILE_NOT_FOUND"
    );
    assert_eq!(
        h.err(Some("port-2"), "list_files", Some(json!({"path": "/etc"})))
            .0,
        "INVALID_PATH"
    );
    std::fs::write(h.volume("port-2").join("big.bin"), vec![b'x'; 2 << 20]).unwrap();
    assert_eq!(
        h.err(
            Some("port-2"),
            "get_file",
            Some(json!({"path": "/server/big.bin"}))
        )
        .0,
        "PAYLOAD_TOO_LARGE"
    );
    assert_eq!(
        h.err(
            Some("port-2"),
            "write_file",
            Some(json!({"path": "/server/x", "content": "!!", "encoding": "base64"}))
        )
        .0,
        "INVALID_MESSAGE"
    );
    h.drain();

    // A container removed behind the agent's back: the server is gone, and says so.
    let out = std::process::Command::new("docker")
        .args(["rm", "-f", "ctrl-port-2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = h.wait_status("port-2", ServerState::Deleted);
    assert!(s.reason.unwrap().contains("outside the agent"));
    assert_eq!(
        h.err(Some("port-2"), "start_server", None).0,
        "SERVER_NOT_FOUND"
    );
}

#[test]
fn paths_cannot_escape_the_volume() {
    let Some(h) = harness("paths", |_| {}) else {
        return;
    };
    let sid = "paths-1";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    let vol = h.volume(sid);
    // What a hostile server could plant in its own files.
    std::os::unix::fs::symlink("/etc", vol.join("etc")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root", vol.join("root")).unwrap();
    std::os::unix::fs::symlink("../../..", vol.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", vol.join("hostname")).unwrap();
    std::fs::write(vol.join("ok.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink("ok.txt", vol.join("inner-link")).unwrap();

    let read = |p: &str| h.send(Some(sid), "get_file", Some(json!({"path": p})));
    for p in [
        "/server/../etc/passwd",
        "/etc/passwd",
        "server/ok.txt",
        "/server/etc/passwd",
        "/server/root/etc/passwd",
        "/server/up/etc/passwd",
        "/server/hostname",
        "/proc/self/root/etc/passwd",
    ] {
        let r = read(p);
        assert!(!r.success, "{p} was readable");
        assert_eq!(r.error.unwrap().code, "INVALID_PATH", "{p}");
    }
    for p in ["/server/etc", "/server/root", "/server/up", "/server/.."] {
        assert_eq!(
            h.err(Some(sid), "list_files", Some(json!({"path": p}))).0,
            "INVALID_PATH",
            "{p}"
        );
    }
    for p in [
        "/server/etc/evil",
        "/server/up/evil",
        "/server/hostname",
        "/server/root/tmp/evil",
    ] {
        let (code, _) = h.err(
            Some(sid),
            "write_file",
            Some(json!({"path": p, "content": "x"})),
        );
        assert_eq!(code, "INVALID_PATH", "{p}");
    }
    assert!(!Path::new("/etc/evil").exists() && !Path::new("/tmp/evil").exists());
    // A link that stays inside is fine for reading.
    assert_eq!(
        h.ok(sid, "get_file", Some(json!({"path": "/server/inner-link"})))["content"],
        "inside\n"
    );
    // Error messages never reveal the host path of the volume.
    let (_, msg) = h.err(
        Some(sid),
        "get_file",
        Some(json!({"path": "/server/etc/passwd"})),
    );
    assert!(!msg.contains(h.data.path().to_str().unwrap()), "{msg}");
}

#[test]
fn a_missing_docker_socket_is_a_docker_error_not_a_crash() {
    let data = TempDir::new("nodocker");
    let mut cfg = ServersConfig::new(
        agent_id("nodocker"),
        PathBuf::from("/nonexistent/docker.sock"),
        data.path().to_path_buf(),
    );
    cfg.load_interval = Duration::from_millis(50);
    let servers = Servers::start(cfg, Arc::new(Outbox::default())).unwrap();
    let e = smol::block_on(servers.check_docker()).unwrap_err();
    assert_eq!(e.code(), proto::ErrorCode::DockerError);
    assert!(e.to_string().contains("/nonexistent/docker.sock"), "{e}");
    let r = smol::block_on(servers.execute(command(
        None,
        "create_server",
        Some(json!({"serverId": "s1", "eggConfig": egg(25565, STARTUP)})),
    )));
    let err = r.error.unwrap();
    assert_eq!(err.code, "DOCKER_ERROR");
    assert!(err.message.contains("does not exist"), "{}", err.message);
    use agent::link::Dispatch;
    assert_eq!(servers.pong().agent_status, "degraded");
    assert_eq!(servers.pong().active_servers, 0);
}

#[test]
fn agent_run_reports_a_missing_docker_socket_and_keeps_running_until_sigterm() {
    let dir = TempDir::new("agentrun");
    let config = dir.path().join("agent.json");
    let cfg = agent::config::AgentConfig {
        id: "agent-run-test".into(),
        name: "t".into(),
        token: "a.b.c".into(),
        refresh_token: "r".into(),
        websocket_url: "wss://127.0.0.1:9/ws/agents".into(),
        panel_url: "https://127.0.0.1:9".into(),
        ca_cert: None,
    };
    cfg.save(&config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_agent"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--docker-socket", "/nonexistent/docker.sock", "--data-dir"])
        .arg(dir.path().join("data"));
    let mut p = e2e::Proc::spawn("agent", cmd);
    p.wait_for_line("does not exist", WAIT);
    p.wait_for_line("cannot connect to the panel", WAIT);
    let status = p.terminate(WAIT).expect("agent exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_port_taken_after_create_fails_the_start_and_writes_respect_the_disk_limit() {
    let Some(mut h) = harness("late", |_| {}) else {
        return;
    };
    let port = e2e::free_port();
    let mut e = egg(port, STARTUP);
    e["limits"]["disk"] = json!("1m");
    h.create("late-1", e);
    let squatter = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let (code, msg) = h.err(Some("late-1"), "start_server", None);
    assert_eq!(code, "PORT_CONFLICT", "{msg}");
    let s = h.wait_status("late-1", ServerState::Stopped);
    assert!(s.reason.unwrap().starts_with("failed to start"));
    drop(squatter);
    assert_eq!(h.ok("late-1", "start_server", None)["status"], "running");
    h.wait_log("late-1", "Server started on port");

    // 1 MiB of disk: the first 600 KB fit, the second do not; shrinking is always allowed.
    let chunk = "x".repeat(600 * 1024);
    h.ok(
        "late-1",
        "write_file",
        Some(json!({"path": "/server/a.bin", "content": chunk})),
    );
    let (code, msg) = h.err(
        Some("late-1"),
        "write_file",
        Some(json!({"path": "/server/b.bin", "content": chunk})),
    );
    assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
    assert!(!h.volume("late-1").join("b.bin").exists());
    h.ok(
        "late-1",
        "write_file",
        Some(json!({"path": "/server/a.bin", "content": "small"})),
    );
}

#[test]
fn an_oom_kill_is_a_crash_with_oom_killed_set() {
    let Some(mut h) = harness("oom", |_| {}) else {
        return;
    };
    let mut e = egg(
        e2e::free_port(),
        "fakegame --port {{SERVER_PORT}} --mem-mb 256",
    );
    e["limits"]["memory"] = json!("32m");
    let sid = &format!("oom-{}", std::process::id());
    h.create(sid, e);
    h.ok(sid, "start_server", None);
    let s = h.wait_status(sid, ServerState::Crashed);
    assert_eq!(s.oom_killed, Some(true));
    assert_eq!(s.exit_code, Some(137));
    assert!(s.reason.unwrap().contains("OOM"));
}

#[test]
fn a_vanished_volume_fails_the_start_without_revealing_host_paths() {
    let Some(h) = harness("vanish", |_| {}) else {
        return;
    };
    h.create("vanish-1", egg(e2e::free_port(), STARTUP));
    std::fs::remove_dir_all(h.volume("vanish-1")).unwrap();
    let (code, msg) = h.err(Some("vanish-1"), "start_server", None);
    assert_eq!(code, "DOCKER_ERROR");
    assert!(msg.contains("DATA/volumes/vanish-1"), "{msg}");
    assert!(!msg.contains(h.data.path().to_str().unwrap()), "{msg}");
}
