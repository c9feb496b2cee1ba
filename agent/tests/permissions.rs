//! The agent as an unprivileged user, reproduced for real: the actual `agent run` binary
//! runs under a uid that is not root and talks to a fake panel (TLS + WebSocket,
//! self-signed CA).
//!
//! - With no access to the Docker socket (a root-owned 0600 socket): the start-up message
//!   names the socket and the permission problem, the agent still connects (pong says
//!   `degraded`), and a Docker-bound command carries the wire code `PERMISSION_DENIED`.
//! - With access to the Docker socket (its group) and to its own data directory, and
//!   nothing else: the whole lifecycle — create, start, console, files, stop, delete with
//!   purge — works; the agent never needs root (the volume is shared with the server's
//!   user through POSIX ACLs, see `agent/src/files/acl.rs`).
//!
//! Dropping privileges needs root; as any other user the tests skip (the unit tests in
//! `agent/src/docker/http.rs` and `agent/src/servers/error.rs` cover the mapping). CI runs
//! the suite as root.

use agent::config::AgentConfig;
use e2e::{ContainerGuard, Proc, TempDir};
use futures_rustls::TlsAcceptor;
use nix::unistd::{Gid, Uid};
use serde_json::{Value, json};
use smol::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::{Ws, next_json, send, tls};

const AGENT_ID: &str = "agent-perm-test";

/// `nobody` on most systems; any uid without access to a root-owned 0600 file will do.
const NOBODY: u32 = 65534;
/// A uid with no account and no files anywhere: the unprivileged agent of the lifecycle.
const AGENT_UID: u32 = 61_234;

/// Whether every directory above `path` is searchable and `path` itself executable by
/// "other" (the unprivileged uid is neither owner nor group member).
fn others_can_exec(path: &Path) -> bool {
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    mode(path) & 0o005 == 0o005 && path.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

/// The agent binary at a path the unprivileged uid can execute: the build's own when the
/// target directory is reachable, else a hard link (or copy) inside `dir`.
fn runnable_agent(dir: &Path) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_agent"));
    if others_can_exec(&built) {
        return built;
    }
    let local = dir.join("agent-bin");
    if std::fs::hard_link(&built, &local).is_err() {
        std::fs::copy(&built, &local).unwrap();
    }
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        others_can_exec(&local),
        "{} is not executable",
        local.display()
    );
    local
}

fn chown(path: &Path, uid: u32, gid: u32) {
    nix::unistd::chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).unwrap();
}

/// A fake panel and everything an unprivileged agent needs to reach it: a 0755 temp dir,
/// the CA, the agent binary, a data dir and an `agent.json` (0600) owned by the agent's uid.
struct Setup {
    dir: TempDir,
    tls: std::sync::Arc<rustls::ServerConfig>,
    agent_bin: PathBuf,
    data_dir: PathBuf,
}

impl Setup {
    fn new(tag: &str, uid: u32, gid: u32) -> Setup {
        let dir = TempDir::new(tag);
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            others_can_exec(&root.join("..")),
            "the temp dir's parents must be searchable"
        );
        let tls = tls(root);
        std::fs::set_permissions(root.join("ca.pem"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let data_dir = root.join("data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown(&data_dir, uid, gid);
        let agent_bin = runnable_agent(root);
        Setup {
            dir,
            tls,
            agent_bin,
            data_dir,
        }
    }

    /// Writes `agent.json` for `agent_id` pointing at `port`, then runs the agent as
    /// `uid:gid` (and no supplementary group) against `socket`.
    fn spawn(&self, agent_id: &str, port: u16, socket: &Path, uid: u32, gid: u32) -> Proc {
        let root = self.dir.path();
        let config_path = root.join("agent.json");
        AgentConfig {
            id: agent_id.into(),
            name: "perm".into(),
            token: "tok-1".into(),
            refresh_token: "refresh-1".into(),
            websocket_url: format!("wss://127.0.0.1:{port}/ws/agents"),
            panel_url: format!("https://127.0.0.1:{port}"),
            ca_cert: Some(root.join("ca.pem")),
        }
        .save(&config_path)
        .unwrap();
        chown(&config_path, uid, gid);
        let mut cmd = std::process::Command::new(&self.agent_bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--docker-socket")
            .arg(socket)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .current_dir(root)
            .env("AGENT_LOG", "info")
            .uid(uid)
            // std drops root's supplementary groups when it sets the uid.
            .gid(gid);
        Proc::spawn("agent", cmd)
    }

    /// Accepts the agent's TLS WebSocket.
    async fn accept(&self, listener: &TcpListener, agent: &Proc) -> Ws {
        let (tcp, _) =
            futures_lite::future::or(async { listener.accept().await.unwrap() }, async {
                smol::Timer::after(Duration::from_secs(20)).await;
                panic!("the agent never connected:\n{}", agent.output().join("\n"));
            })
            .await;
        let tls = TlsAcceptor::from(self.tls.clone())
            .accept(tcp)
            .await
            .unwrap();
        async_tungstenite::accept_async(tls).await.unwrap()
    }
}

#[test]
fn an_unreadable_docker_socket_is_reported_and_answered_with_permission_denied() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: dropping to an unprivileged uid needs root (unit tests cover this)");
        return;
    }
    let setup = Setup::new("permissions", NOBODY, NOBODY);
    // A real listening socket that only root may connect to.
    let socket_path = setup.dir.path().join("docker.sock");
    let _docker = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let agent = setup.spawn(AGENT_ID, port, &socket_path, NOBODY, NOBODY);

        // Start-up names the socket and says what is wrong.
        let line = agent.wait_for_line("agent run: error:", Duration::from_secs(20));
        assert!(line.contains("permission denied"), "{line}");
        assert!(
            line.contains(&socket_path.display().to_string()),
            "the message names the socket: {line}"
        );
        agent.wait_for_line("answered with PERMISSION_DENIED", Duration::from_secs(5));

        // The agent still connects and serves commands.
        let mut ws = setup.accept(&listener, &agent).await;

        send(
            &mut ws,
            json!({"id": "hb-1", "type": "ping", "timestamp": proto::time::now_rfc3339()}),
        )
        .await;
        send(
            &mut ws,
            json!({"id": "c-1", "type": "command", "timestamp": proto::time::now_rfc3339(),
                "agentId": AGENT_ID, "action": "create_server",
                "payload": {"serverId": "s1", "eggConfig": {
                    "name": "fakegame", "image": "ctrl-fakegame:latest",
                    "ports": {"25565": 25565},
                    "limits": {"memory": "64m", "cpu": "0.5", "disk": "1g"},
                    "startup": "fakegame"}}}),
        )
        .await;
        let (mut pong, mut response) = (None, None);
        while pong.is_none() || response.is_none() {
            let v = next_json(&mut ws).await;
            match v["type"].as_str() {
                Some("pong") if v["id"] == "hb-1" => pong = Some(v),
                Some("response") if v["id"] == "c-1" => response = Some(v),
                _ => {}
            }
        }
        let (pong, response) = (pong.unwrap(), response.unwrap());
        assert_eq!(pong["data"]["agentStatus"], "degraded", "{pong}");
        assert_eq!(response["success"], false, "{response}");
        assert_eq!(response["error"]["code"], "PERMISSION_DENIED", "{response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("docker.sock"), "{response}");
        drop(agent);
    });
}

/// A command frame for the fake panel to send.
fn command(id: &str, server: Option<&str>, action: &str, payload: Option<Value>) -> Value {
    let mut v = json!({"id": id, "type": "command", "timestamp": proto::time::now_rfc3339(),
        "agentId": LIFECYCLE_AGENT, "action": action});
    if let Some(s) = server {
        v["serverId"] = json!(s);
    }
    if let Some(p) = payload {
        v["payload"] = p;
    }
    v
}

const LIFECYCLE_AGENT: &str = "agent-unpriv-lifecycle";

/// Sends a command and returns its response, keeping the events that arrive meanwhile.
async fn call(ws: &mut Ws, events: &mut Vec<Value>, frame: Value) -> Value {
    let id = frame["id"].clone();
    send(ws, frame).await;
    loop {
        let v = next_json(ws).await;
        match v["type"].as_str() {
            Some("response") if v["id"] == id => return v,
            Some("event") => events.push(v),
            _ => {}
        }
    }
}

/// Waits (30 s at most) for an event matching `pred`, among those seen or still to come.
async fn event(ws: &mut Ws, events: &mut Vec<Value>, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events.iter().any(&pred) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} among {events:#?}"
        );
        let v = next_json(ws).await;
        if v["type"] == "event" {
            events.push(v);
        }
    }
}

fn ok(resp: &Value) -> &Value {
    assert_eq!(resp["success"], true, "{resp}");
    &resp["data"]
}

#[test]
fn an_unprivileged_agent_runs_the_whole_lifecycle() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: dropping to an unprivileged uid needs root");
        return;
    }
    if !e2e::docker_or_skip("unprivileged lifecycle") {
        return;
    }
    e2e::ensure_fakegame_image();
    let socket = Path::new("/var/run/docker.sock");
    // The socket's group is the agent's only access to Docker: no root, no `docker` in a
    // supplementary list, no ACL on the socket.
    let docker_gid = std::fs::metadata(socket).unwrap().gid();
    assert_ne!(
        docker_gid, 0,
        "the Docker socket must belong to a group (e.g. docker)"
    );
    let setup = Setup::new("unprivileged", AGENT_UID, docker_gid);
    let _containers = ContainerGuard(format!("ctrl.agent={LIFECYCLE_AGENT}"));
    let sid = "unpriv-1";
    let volume = setup.data_dir.join("volumes").join(sid);

    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let agent = setup.spawn(LIFECYCLE_AGENT, port, socket, AGENT_UID, docker_gid);
        let mut ws = setup.accept(&listener, &agent).await;
        // It really is unprivileged.
        let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            uids.split_whitespace().skip(1).collect::<Vec<_>>(),
            vec![AGENT_UID.to_string(); 4],
            "{uids}"
        );
        let mut events = Vec::new();
        let game_port = e2e::free_port();
        let egg = json!({
            "name": "fakegame", "image": e2e::FAKEGAME_IMAGE,
            "ports": {"25565": game_port},
            "limits": {"memory": "64m", "cpu": "0.5", "disk": "1g"},
            "startup": "fakegame --port {{SERVER_PORT}} --write-file hello.txt",
            "stop": {"command": "stop"}
        });
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c1",
                None,
                "create_server",
                Some(json!({"serverId": sid, "eggConfig": egg})),
            ),
        )
        .await;
        assert_eq!(ok(&r)["status"], "created");
        // The volume is the agent's, shared with the server's user (1000) by ACL.
        let meta = std::fs::metadata(&volume).unwrap();
        assert_eq!(meta.uid(), AGENT_UID);

        let r = call(
            &mut ws,
            &mut events,
            command("c2", Some(sid), "start_server", None),
        )
        .await;
        assert_eq!(ok(&r)["status"], "running");
        event(&mut ws, &mut events, "the start line", |e| {
            e["event"] == "server_log"
                && e["data"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Server started on port")
        })
        .await;

        // Console.
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c3",
                Some(sid),
                "send_command",
                Some(json!({"command": "say unprivileged hello"})),
            ),
        )
        .await;
        ok(&r);
        event(&mut ws, &mut events, "the console echo", |e| {
            e["event"] == "server_log"
                && e["data"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("unprivileged hello")
        })
        .await;

        // Files: what the server (uid 1000) wrote, and what the agent writes.
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c4",
                Some(sid),
                "get_file",
                Some(json!({"path": "/server/hello.txt"})),
            ),
        )
        .await;
        assert!(
            ok(&r)["content"]
                .as_str()
                .unwrap()
                .starts_with("fakegame test file"),
            "{r}"
        );
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c5",
                Some(sid),
                "write_file",
                Some(
                    json!({"path": "/server/config/notes.txt", "content": "written by the agent"}),
                ),
            ),
        )
        .await;
        ok(&r);
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c6",
                Some(sid),
                "list_files",
                Some(json!({"path": "/server"})),
            ),
        )
        .await;
        let names: Vec<&str> = ok(&r)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["config", "hello.txt"], "{r}");
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c7",
                Some(sid),
                "get_file",
                Some(json!({"path": "/server/config/notes.txt"})),
            ),
        )
        .await;
        assert_eq!(ok(&r)["content"], "written by the agent");

        // Stop (the egg's console command), then delete with the files.
        let r = call(
            &mut ws,
            &mut events,
            command("c8", Some(sid), "stop_server", None),
        )
        .await;
        assert_eq!(ok(&r)["status"], "stopped");
        let r = call(
            &mut ws,
            &mut events,
            command(
                "c9",
                Some(sid),
                "delete_server",
                Some(json!({"purge": true})),
            ),
        )
        .await;
        assert_eq!(ok(&r)["status"], "deleted");
        assert!(!volume.exists(), "the purge left {}", volume.display());
        assert!(e2e::containers_with_label(&format!("ctrl.agent={LIFECYCLE_AGENT}")).is_empty());
        drop(agent);
    });
}
