//! `PERMISSION_DENIED` for a Docker socket the agent may not open, reproduced for real: the
//! actual `agent run` binary runs as an unprivileged uid against a root-owned 0600 Unix
//! socket and talks to a fake panel (TLS + WebSocket, self-signed CA).
//!
//! Covered: the start-up message names the socket and the permission problem, the agent
//! still connects (pong says `degraded`), and a Docker-bound command answered through the
//! link carries the wire code `PERMISSION_DENIED`.
//!
//! Dropping privileges needs root; as any other user the test skips (the unit tests in
//! `agent/src/docker/http.rs` and `agent/src/servers/error.rs` cover the mapping). CI runs
//! the suite as root.

use agent::config::AgentConfig;
use e2e::{Proc, TempDir};
use futures_rustls::TlsAcceptor;
use nix::unistd::{Gid, Uid};
use serde_json::json;
use smol::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::{next_json, send, tls};

const AGENT_ID: &str = "agent-perm-test";
/// `nobody` on most systems; any uid without access to a root-owned 0600 file will do.
const NOBODY: u32 = 65534;

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

#[test]
fn an_unreadable_docker_socket_is_reported_and_answered_with_permission_denied() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: dropping to an unprivileged uid needs root (unit tests cover this)");
        return;
    }
    let dir = TempDir::new("permissions");
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        others_can_exec(&root.join("..")),
        "the temp dir's parents must be searchable"
    );
    let server_tls = tls(root);
    std::fs::set_permissions(root.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();

    // A real listening socket that only root may connect to.
    let socket_path = root.join("docker.sock");
    let _docker = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let data_dir = root.join("data");
    std::fs::create_dir(&data_dir).unwrap();
    nix::unistd::chown(
        &data_dir,
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let agent_bin = runnable_agent(root);

    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(server_tls);

        // agent.json is 0600 as always, owned by the agent's uid.
        let config_path = root.join("agent.json");
        AgentConfig {
            id: AGENT_ID.into(),
            name: "perm".into(),
            token: "tok-1".into(),
            refresh_token: "refresh-1".into(),
            websocket_url: format!("wss://127.0.0.1:{port}/ws/agents"),
            panel_url: format!("https://127.0.0.1:{port}"),
            ca_cert: Some(root.join("ca.pem")),
        }
        .save(&config_path)
        .unwrap();
        nix::unistd::chown(
            &config_path,
            Some(Uid::from_raw(NOBODY)),
            Some(Gid::from_raw(NOBODY)),
        )
        .unwrap();

        let mut cmd = std::process::Command::new(&agent_bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--docker-socket")
            .arg(&socket_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .current_dir(root)
            .env("AGENT_LOG", "info")
            .uid(NOBODY)
            // std drops root's supplementary groups when it sets the uid.
            .gid(NOBODY);
        let agent = Proc::spawn("agent", cmd);

        // Start-up names the socket and says what is wrong.
        let line = agent.wait_for_line("agent run: error:", Duration::from_secs(20));
        assert!(line.contains("permission denied"), "{line}");
        assert!(
            line.contains(&socket_path.display().to_string()),
            "the message names the socket: {line}"
        );
        agent.wait_for_line("answered with PERMISSION_DENIED", Duration::from_secs(5));

        // The agent still connects and serves commands.
        let (tcp, _) =
            futures_lite::future::or(async { listener.accept().await.unwrap() }, async {
                smol::Timer::after(Duration::from_secs(20)).await;
                panic!("the agent never connected:\n{}", agent.output().join("\n"));
            })
            .await;
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = async_tungstenite::accept_async(tls).await.unwrap();

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
