//! The eggs extensions on the real Docker Engine: install scripts in confined install
//! containers (`ctrl-installer:latest`, Debian's static busybox imported as an image, so
//! nothing is pulled), config-file edits before start, `starting` → `running` on the done
//! line, reinstall, re-adoption of an install under way, and hostile eggs.

mod common;

use agent::link::outbox::Outbox;
use agent::servers::Servers;
use common::harness::*;
use proto::{EventKind, ServerState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTALLER: &str = e2e::INSTALLER_IMAGE;

/// The fakegame egg with an install script, a config file and a done string.
fn install_egg(port: u16, script: &str) -> Value {
    let mut e = egg(port, STARTUP);
    e["install"] = json!({"image": INSTALLER, "entrypoint": "ash", "script": script});
    e["configFiles"] = json!([{
        "path": "server.properties",
        "parser": "properties",
        "edits": [
            {"match": "server-port", "value": "{{server.allocations.default.port}}"},
            {"match": "max-players", "value": "{{env.MAX_PLAYERS}}"}
        ]
    }]);
    e["done"] = json!(["Server started on port"]);
    e
}

fn harness_with_installer(tag: &str) -> Option<Harness> {
    let h = harness(tag, |_| {})?;
    e2e::ensure_installer_image();
    Some(h)
}

/// Position of the first event matching `pred` among the ones seen so far.
fn position(h: &Harness, pred: impl Fn(&EventKind<'_>) -> bool) -> Option<usize> {
    h.events.iter().position(|e| pred(&e.kind))
}

fn is_status(sid: &str, to: ServerState) -> impl Fn(&EventKind<'_>) -> bool + '_ {
    move |k| matches!(k, EventKind::ServerStatusChanged(s) if s.server_id == sid && s.current_status == to)
}

fn wait_install_log(h: &mut Harness, sid: &str, needle: &str) {
    let sid = sid.to_owned();
    h.wait_event(&format!("install log {needle:?}"), |e| {
        matches!(&e.kind, EventKind::InstallLog(l) if l.server_id == sid && l.message.contains(needle))
    });
}

fn read(h: &Harness, sid: &str, name: &str) -> String {
    std::fs::read_to_string(h.volume(sid).join(name)).unwrap_or_default()
}

const SCRIPT: &str = "cd /mnt/server\n\
    echo \"installing as $(id -u):$(id -g) in $PWD\"\n\
    id -u > installer-uid.txt\n\
    grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > installer-caps.txt\n\
    echo \"$SERVER_MEMORY $SERVER_PORT $MAX_PLAYERS $HOME\" > installer-env.txt\n\
    printf 'motd=kept\\nserver-port=1\\n' > server.properties\n\
    echo oops-on-stderr >&2\n\
    echo installed\n";

#[test]
fn an_install_runs_confined_and_the_server_starts_with_its_config_and_done_line() {
    let Some(mut h) = harness_with_installer("egg-life") else {
        return;
    };
    let sid = "egg-life-1";
    let port = e2e::free_port();
    let created = h.create(sid, install_egg(port, SCRIPT));
    assert_eq!(created["status"], "installing");

    // The script ran in its own container, unprivileged, and wrote into the volume.
    wait_install_log(&mut h, sid, "installing as 1000:1000 in /mnt/server");
    wait_install_log(&mut h, sid, "oops-on-stderr");
    let done = h.wait_status(sid, ServerState::Created);
    assert_eq!(done.previous_status, ServerState::Installing);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(read(&h, sid, "installer-uid.txt").trim(), "1000");
    let caps = read(&h, sid, "installer-caps.txt");
    assert!(caps.contains("CapEff:\t0000000000000000"), "{caps}");
    assert!(caps.contains("CapBnd:\t0000000000000000"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");
    assert_eq!(
        read(&h, sid, "installer-env.txt").trim(),
        "128 25565 20 /mnt/server"
    );
    assert!(
        docker_inspect(&format!("ctrl-{sid}.install")).is_null(),
        "the install container is removed"
    );
    let log = h
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::InstallLog(l) if l.message.contains("oops-on-stderr") => Some(l.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(log.stream.as_deref(), Some("stderr"));

    // start: `starting` until the done line, then `running`; the config file has the port.
    let started = h.ok(sid, "start_server", None);
    // `running` when the done line came before the answer.
    assert!(
        started["status"] == "starting" || started["status"] == "running",
        "{started}"
    );
    h.wait_status(sid, ServerState::Running);
    let starting = position(&h, is_status(sid, ServerState::Starting)).unwrap();
    let line = position(&h, |k| {
        matches!(k, EventKind::ServerLog(l) if l.server_id == sid && l.message.contains("Server started on port"))
    })
    .unwrap();
    let running = position(&h, is_status(sid, ServerState::Running)).unwrap();
    assert!(
        starting < line && line < running,
        "{starting} {line} {running}"
    );
    assert_eq!(
        read(&h, sid, "server.properties"),
        "motd=kept\nserver-port=25565\nmax-players=20\n"
    );

    // The egg's stop command stops it.
    let stopped = h.ok(sid, "stop_server", Some(json!({"timeout": 10})));
    assert_eq!(stopped["status"], "stopped");
    h.wait_log(sid, "Stopping server");
    let s = h.wait_status(sid, ServerState::Stopped);
    assert_eq!(s.exit_code, Some(0));

    // A reinstall runs the script again and leaves the server stopped.
    std::fs::remove_file(h.volume(sid).join("installer-uid.txt")).unwrap();
    h.events.clear();
    let again = h.ok(sid, "reinstall_server", None);
    assert_eq!(again["status"], "installing");
    let (code, msg) = h.err(Some(sid), "start_server", None);
    assert_eq!(code, "BUSY", "{msg}");
    let s = h.wait_status(sid, ServerState::Stopped);
    assert_eq!(s.previous_status, ServerState::Installing);
    assert_eq!(read(&h, sid, "installer-uid.txt").trim(), "1000");

    // A running server is not reinstalled under its feet.
    h.ok(sid, "start_server", None);
    h.wait_status(sid, ServerState::Running);
    let (code, msg) = h.err(Some(sid), "reinstall_server", None);
    assert_eq!(code, "CONFLICT", "{msg}");
    h.ok(sid, "delete_server", Some(json!({"purge": true})));
    assert!(
        !h.data
            .path()
            .join("eggs")
            .join(format!("{sid}.json"))
            .exists()
    );
}

#[test]
fn a_failed_install_reports_its_exit_code_and_the_server_is_not_started() {
    let Some(mut h) = harness_with_installer("egg-fail") else {
        return;
    };
    let sid = "egg-fail-1";
    let created = h.create(
        sid,
        install_egg(e2e::free_port(), "echo about to fail\nexit 7\n"),
    );
    assert_eq!(created["status"], "installing");
    let s = h.wait_status(sid, ServerState::InstallFailed);
    assert_eq!(s.exit_code, Some(7));
    assert!(
        s.reason.as_deref().unwrap().contains("exit code 7"),
        "{s:?}"
    );
    wait_install_log(&mut h, sid, "about to fail");
    wait_install_log(
        &mut h,
        sid,
        "[agent] install script failed with exit code 7",
    );
    let (code, msg) = h.err(Some(sid), "start_server", None);
    assert_eq!(code, "CONFLICT", "{msg}");
    assert!(msg.contains("install_failed"), "{msg}");
    assert_eq!(h.ok(sid, "get_status", None)["status"], "install_failed");
    assert!(docker_inspect(&format!("ctrl-{sid}.install")).is_null());
}

#[test]
fn an_install_over_its_time_limit_is_killed_and_removed() {
    let Some(mut h) = harness("egg-slow", |c| c.policy.install_timeout_secs = 2) else {
        return;
    };
    e2e::ensure_installer_image();
    let sid = "egg-slow-1";
    // It never stops printing: the limit must not wait for a quiet moment.
    h.create(
        sid,
        install_egg(
            e2e::free_port(),
            "echo sleeping\nwhile true; do echo tick; sleep 0.05; done\n",
        ),
    );
    wait_install_log(&mut h, sid, "sleeping");
    let s = h.wait_status(sid, ServerState::InstallFailed);
    assert!(
        s.reason.as_deref().unwrap().contains("installTimeoutSecs"),
        "{s:?}"
    );
    assert!(docker_inspect(&format!("ctrl-{sid}.install")).is_null());
}

#[test]
fn a_deleted_server_takes_its_running_install_with_it() {
    let Some(mut h) = harness_with_installer("egg-del") else {
        return;
    };
    let sid = "egg-del-1";
    h.create(sid, install_egg(e2e::free_port(), "echo long\nsleep 600\n"));
    wait_install_log(&mut h, sid, "long");
    h.ok(sid, "delete_server", Some(json!({"purge": true})));
    assert!(docker_inspect(&format!("ctrl-{sid}.install")).is_null());
    assert!(docker_inspect(&format!("ctrl-{sid}")).is_null());
    h.wait_status(sid, ServerState::Deleted);
}

#[test]
fn a_restarted_agent_follows_an_install_begun_before() {
    let Some(mut h) = harness_with_installer("egg-adopt") else {
        return;
    };
    let sid = "egg-adopt-1";
    h.create(
        sid,
        install_egg(
            e2e::free_port(),
            "echo begun\nsleep 4\necho finished > /mnt/server/finished.txt\necho ended\n",
        ),
    );
    wait_install_log(&mut h, sid, "begun");

    // The agent goes away mid-install; the install container keeps running.
    drop(h.servers.take());
    assert_eq!(
        docker_inspect(&format!("ctrl-{sid}.install"))["State"]["Running"],
        true
    );
    let outbox = Arc::new(Outbox::new(100_000));
    h.servers = Some(Servers::start(h.cfg.clone(), outbox.clone()).unwrap());
    h.outbox = outbox;
    h.events.clear();
    smol::block_on(h.servers().adopt()).unwrap();
    assert_eq!(h.servers().state(sid), Some(ServerState::Installing));
    wait_install_log(&mut h, sid, "ended");
    let s = h.wait_status(sid, ServerState::Created);
    assert_eq!(s.previous_status, ServerState::Installing);
    assert_eq!(read(&h, sid, "finished.txt").trim(), "finished");
    let deadline = Instant::now() + WAIT;
    while !docker_inspect(&format!("ctrl-{sid}.install")).is_null() {
        assert!(Instant::now() < deadline, "the install container stayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The done line and config edits survived the restart (kept beside the volumes).
    h.ok(sid, "start_server", None);
    h.wait_status(sid, ServerState::Running);
    assert!(read(&h, sid, "server.properties").contains("server-port=25565"));
}

#[test]
fn hostile_eggs_are_refused_or_neutralised() {
    let Some(mut h) = harness_with_installer("egg-hostile") else {
        return;
    };
    // An install container asking for privileges does not even decode.
    let mut e = install_egg(e2e::free_port(), "id");
    e["install"]["privileged"] = json!(true);
    let frame = json!({"id": "m1", "type": "command", "timestamp": "t",
        "action": "create_server", "payload": {"serverId": "h-0", "eggConfig": e}});
    let err = proto::decode(frame.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("privileged"), "{err}");

    // A config file path leaving the volume is refused before anything is created.
    let mut e = install_egg(e2e::free_port(), "id");
    e["configFiles"][0]["path"] = json!("../../etc/passwd");
    let (code, msg) = h.create_err("h-1", e);
    assert_eq!(code, "CONFIG_INVALID", "{msg}");
    assert!(msg.contains("configFiles[0].path"), "{msg}");
    assert!(docker_inspect("ctrl-h-1").is_null());

    // The script plants links out of the volume under the config files' names; the
    // placeholders name the agent's own environment. Nothing leaves the volume, nothing
    // of the agent's environment gets in.
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let sid = "h-2";
    let mut e = install_egg(
        e2e::free_port(),
        "cd /mnt/server\nln -s /etc/passwd server.properties\nln -s /etc up\necho planted\n",
    );
    e["configFiles"] = json!([
        {"path": "server.properties", "parser": "properties",
         "edits": [{"match": "root", "value": "owned"}]},
        {"path": "up/hostname", "parser": "file",
         "edits": [{"match": "", "value": "owned"}]},
        {"path": "leak.yml", "parser": "yaml",
         "edits": [{"match": "home", "value": "{{env.HOME}}"},
                   {"match": "path", "value": "{{server.build.env.PATH}}"},
                   {"match": "port", "value": "{{server.build.default.port}}"}]}
    ]);
    h.create(sid, e);
    h.wait_status(sid, ServerState::Created);
    h.ok(sid, "start_server", None);
    h.wait_status(sid, ServerState::Running);
    h.wait_log(sid, "[agent] config file server.properties: not edited");
    h.wait_log(sid, "[agent] config file up/hostname: not edited");
    let unknown = h.wait_log(sid, "[agent] config file leak.yml: unknown placeholders");
    if let EventKind::ServerLog(l) = &unknown.kind {
        assert!(
            l.message.contains("{{env.HOME}}") && l.message.contains("{{server.build.env.PATH}}"),
            "{}",
            l.message
        );
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    let leak = read(&h, sid, "leak.yml");
    assert_eq!(
        leak,
        "home: '{{env.HOME}}'\npath: '{{server.build.env.PATH}}'\nport: '25565'\n"
    );
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(home.is_empty() || !leak.contains(&home), "{leak}");
}
