//! The agent's resident memory and idle CPU, idle and with 10 running game servers (a
//! measurement, so `#[ignore]`d; run it in release mode for meaningful numbers;
//! `AGENT_RSS_SERVERS=50` for another count):
//!
//! ```sh
//! cargo test --release -p agent --test rss -- --ignored --nocapture
//! ```
//!
//! The fakegame servers are created and started through the servers layer, that manager is
//! dropped, and a real `agent run` process with the same agent id re-adopts them (consoles
//! attached, samplers open, events flowing to its outbox). No panel is running: the link
//! keeps retrying, as it would during a panel outage. VmRSS is read from `/proc/<pid>/status`.

use agent::link::outbox::Outbox;
use agent::servers::{Capacity, Servers, ServersConfig};
use ctrl_io::procfs;
use e2e::{ContainerGuard, Proc, TempDir};
use proto::Message;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SOCKET: &str = "/var/run/docker.sock";
/// Servers started (`AGENT_RSS_SERVERS`, default 10).
fn servers_wanted() -> usize {
    std::env::var("AGENT_RSS_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let ticks = procfs::sample(pid).expect("/proc/<pid>").cpu_ticks;
    ticks as f64 / procfs::ticks_per_sec() as f64
}

fn rss_kib(pid: u32) -> u64 {
    procfs::sample(pid).expect("/proc/<pid>").rss_bytes / 1024
}

/// The parts of the RSS (`RssAnon`: heap and stacks; `RssFile`: the binary's pages) and the
/// thread count, from `/proc/<pid>/status`, for the report.
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or("?".to_owned(), |v| v.trim().to_owned())
    };
    format!(
        "anon {}, file {}, threads {}",
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:")
    )
}

/// The agent binary: this build's, or `AGENT_RSS_BIN` (another build, to compare).
fn agent_bin() -> PathBuf {
    std::env::var_os("AGENT_RSS_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_agent")), PathBuf::from)
}

fn agent_config(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.json"));
    agent::config::AgentConfig {
        id: id.into(),
        name: id.into(),
        token: "a.b.c".into(),
        refresh_token: "r".into(),
        websocket_url: "wss://127.0.0.1:9/ws/agents".into(),
        panel_url: "https://127.0.0.1:9".into(),
        ca_cert: None,
    }
    .save(&path)
    .unwrap();
    path
}

fn spawn_agent(config: &Path, data: &Path) -> Proc {
    let mut cmd = std::process::Command::new(agent_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--docker-socket", SOCKET]);
    Proc::spawn("agent", cmd)
}

#[test]
#[ignore = "a measurement; run with --release -- --ignored --nocapture"]
fn agent_rss_idle_and_with_ten_running_servers() {
    let servers_n = servers_wanted();
    if !e2e::docker_or_skip("rss") {
        return;
    }
    e2e::ensure_fakegame_image();
    let id = format!("rss-{}", std::process::id());
    let _guard = ContainerGuard(format!("ctrl.agent={id}"));
    let dir = TempDir::new("rss");
    let data = dir.path().join("data");

    // Idle: no servers at all.
    let idle_cfg = agent_config(dir.path(), &format!("{id}-idle"));
    let idle = spawn_agent(&idle_cfg, &dir.path().join("idle-data"));
    idle.wait_for_line("Docker is reachable", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let idle_kib = rss_kib(idle.pid());
    let idle_parts = rss_parts(idle.pid());
    drop(idle);

    // 10 running servers, created by one manager and adopted by the agent process.
    {
        let mut cfg = ServersConfig::new(id.clone(), PathBuf::from(SOCKET), data.clone());
        cfg.capacity = Some(Capacity {
            memory: 64 << 30,
            cpu_millis: 64_000,
        });
        // Room for every server's pids limit whatever this host's `pid_max` (half of
        // 32,768 fits only 16 servers at the default 1,024 each).
        cfg.policy.max_total_pids = Some(servers_n as u64 * 1024);
        let servers = Servers::start(cfg, Arc::new(Outbox::default())).unwrap();
        for i in 0..servers_n {
            let sid = format!("rss-{i}");
            let egg = json!({
                "name": "fakegame", "image": "ctrl-fakegame:latest",
                "ports": {"25565": e2e::free_port()},
                "limits": {"memory": "64m", "cpu": "0.1", "disk": "1g"},
                "startup": "fakegame --port {{SERVER_PORT}}",
                "stop": {"command": "stop"}
            });
            for (action, payload) in [
                (
                    "create_server",
                    Some(json!({"serverId": sid, "eggConfig": egg})),
                ),
                ("start_server", None),
            ] {
                let mut msg = json!({"id": "m", "type": "command", "timestamp": proto::time::now_rfc3339(), "serverId": sid, "action": action});
                if let Some(p) = payload {
                    msg["payload"] = p;
                }
                let Message::Command(c) = proto::decode(msg.to_string().as_bytes()).unwrap() else {
                    unreachable!()
                };
                let r = smol::block_on(servers.execute(c));
                assert!(r.success, "{action} {sid}: {:?}", r.error);
            }
        }
    }
    let cfg = agent_config(dir.path(), &id);
    let busy = spawn_agent(&cfg, &data);
    busy.wait_for_line("Docker is reachable", Duration::from_secs(30));
    e2e::eventually("every server adopted", Duration::from_secs(30), || {
        let n = busy
            .output()
            .iter()
            .filter(|l| l.contains("adopted server"))
            .count();
        (n == servers_n).then_some(())
    });
    std::thread::sleep(Duration::from_secs(6)); // a resource_update round for every server
    let busy_kib = rss_kib(busy.pid());
    let busy_parts = rss_parts(busy.pid());
    // Idle CPU with every server running (stats sampling, consoles attached, heartbeats).
    let window = 20.0;
    let before = cpu_secs(busy.pid());
    std::thread::sleep(Duration::from_secs_f64(window));
    let cpu_percent = (cpu_secs(busy.pid()) - before) / window * 100.0;
    println!(
        "agent RSS: idle {:.1} MiB ({idle_parts}), with {servers_n} running servers {:.1} MiB \
         ({busy_parts}); CPU {cpu_percent:.2} % of a core over {window} s; {}; load {}",
        idle_kib as f64 / 1024.0,
        busy_kib as f64 / 1024.0,
        agent_bin().display(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    assert!(busy_kib > 0 && idle_kib > 0);
}
