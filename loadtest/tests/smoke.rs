//! Smoke runs against the real panel binary: 200 agents for ~10 s with events, commands, two
//! subscribers and a reconnect storm; and filtered subscribers as users of their own (each a
//! subuser of one server), with and without the `?serverId=` filter. Asserts correctness
//! only — every agent connected, every event delivered to every subscriber exactly once (a
//! user's subscriber: its server's, and no other), every command answered, every agent back
//! after the storm, every user deleted — never timings.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loadtest::config::Config;

const ADMIN_TOKEN: &str = "smoke-admin-token-0123456789";

/// The panel binary next to this test's target dir (`cargo build -p panel` first, a no-op
/// when fresh; `LOADTEST_SKIP_BUILD=1` skips it).
fn panel_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/smoke-<hash> → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    if std::env::var_os("LOADTEST_SKIP_BUILD").is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "panel"]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let out = cmd
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .stdin(Stdio::null())
            .output()
            .expect("running cargo build -p panel");
        assert!(
            out.status.success(),
            "cargo build -p panel failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = dir.join("panel");
    assert!(path.exists(), "{} does not exist", path.display());
    path
}

/// The panel process; killed and its data dir removed on drop.
struct Panel {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The panel's log explains a failed run; it is quiet otherwise.
            let log = std::fs::read_to_string(self.dir.join("panel.stderr")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- panel stderr (last 60 lines) ---");
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_panel(name: &str) -> Panel {
    let bin = panel_binary();
    let dir = std::env::temp_dir().join(format!("loadtest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        // One host runs every agent: lift the per-IP and operator API limits.
        .args([
            "--max-conns-per-ip",
            "0",
            "--admin-rate",
            "100000",
            "--admin-burst",
            "100000",
        ])
        // Heartbeats every second: the run sees pings, and a wrong pong would get agents
        // dropped after three of them.
        .args(["--heartbeat-secs", "1"])
        .env("PANEL_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("panel.stderr")).unwrap())
        .spawn()
        .expect("starting the panel");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining so the panel never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let mut panel = Panel {
        child,
        dir,
        url: String::new(),
    };
    panel.url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the panel printed `listening on https://ADDR`");
    panel
}

/// Runs loadtest in-process with these flags and the test panel's admin token; the run must
/// complete.
fn run(args: &str) -> loadtest::report::Report {
    let cfg = Config::parse(
        args.split_whitespace().map(String::from),
        Some(ADMIN_TOKEN.into()),
    )
    .unwrap();
    loadtest::run::run(cfg).expect("the run completes")
}

#[test]
fn two_hundred_agents_events_commands_and_a_storm() {
    let panel = start_panel("smoke");
    let ca = panel.dir.join("data/tls/panel.crt");
    let json = panel.dir.join("report.json");
    let args = format!(
        "--panel {} --agents 200 --duration 10 --ca-cert {} --events-per-sec 2000 \
         --log-bytes 200 --subscribers 2 --command-rate 20 --json {} --storm --quiet",
        panel.url,
        ca.display(),
        json.display()
    );
    let report = run(&args);
    let summary = report.summary();

    let a = &report.agents;
    assert_eq!((a.connected, a.failed), (200, 0), "{summary}");
    assert_eq!(a.with_server, 200, "{summary}");
    assert!(a.pings_answered >= 200, "{summary}");
    assert_eq!(a.disconnects, 0, "{summary}");
    assert!(a.panel_errors.is_empty(), "{summary}");

    let e = &report.events;
    assert!(e.sent > 0, "{summary}");
    assert_eq!(e.delivered, vec![e.sent, e.sent], "{summary}");
    assert_eq!(
        (e.lost, e.duplicates, e.send_failed),
        (0, 0, 0),
        "{summary}"
    );

    let c = &report.commands;
    assert!(c.issued > 0, "{summary}");
    assert_eq!((c.ok, c.failed, c.skipped), (c.issued, 0, 0), "{summary}");
    assert_eq!(c.rtt_ms.count as u64, c.ok, "{summary}");
    // Every operator command and every server creation reached an agent and was answered.
    assert!(a.commands_answered >= c.ok + 200, "{summary}");

    let storm = report.storm.as_ref().expect("storm ran");
    assert_eq!((storm.agents, storm.recovered), (200, 200), "{summary}");

    assert!(report.errors.is_empty(), "{summary}");
    let panel_proc = report
        .panel_process
        .as_ref()
        .expect("panel found by its port");
    assert_eq!(panel_proc.pid, panel.child.id(), "{summary}");
    // The busiest threads of both processes, by name (the crowd's thread is `agents`).
    assert!(!panel_proc.threads.is_empty(), "{summary}");
    let me = report
        .loadtest_process
        .as_ref()
        .expect("loadtest's own figures");
    assert!(
        me.threads.iter().any(|t| t.name.starts_with("agents")),
        "{summary}"
    );

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written["agents"]["connected"], 200);
    assert_eq!(written["events"]["lost"], 0);
}

/// Filtered subscribers as users: 12 subscribers over 6 servers (two users per server),
/// first with session cookies and the `?serverId=` filter, then with API keys and no filter
/// (the panel's rights alone route). Each receives exactly its server's events and none of
/// the other five servers'; the users are gone afterwards.
#[test]
fn user_subscribers_get_exactly_their_server() {
    let panel = start_panel("users");
    let ca = panel.dir.join("data/tls/panel.crt");
    for extra in [
        "--subscriber-auth session",
        "--subscriber-auth key --rights-only",
    ] {
        let args = format!(
            "--panel {} --agents 6 --duration 3 --ca-cert {} --events-per-sec 600 \
             --subscribers 1 --filtered-subscribers 12 --quiet {extra}",
            panel.url,
            ca.display(),
        );
        let report = run(&args);
        let summary = report.summary();
        let f = report.filtered.as_ref().expect("filtered subscribers ran");
        assert_eq!((f.subscribers, f.setup_failed), (12, 0), "{summary}");
        // Two subscribers per server: each server's events are expected twice.
        assert_eq!(f.expected, 2 * report.events.sent, "{summary}");
        assert!(f.expected > 0, "{summary}");
        assert_eq!((f.delivered, f.lost), (f.expected, 0), "{summary}");
        assert_eq!(
            (f.misrouted, f.foreign, f.duplicates),
            (0, 0, 0),
            "{summary}"
        );
        assert_eq!((f.users_created, f.users_deleted), (12, 12), "{summary}");
        // The unfiltered admin subscriber still sees every server.
        assert_eq!(
            report.events.delivered,
            vec![report.events.sent],
            "{summary}"
        );
        assert!(report.errors.is_empty(), "{summary}");
    }
    let users = smol::block_on(async {
        let tls = ctrl_io::tls_config(Some(&ca)).unwrap();
        let rest = ctrl_io::Rest::new(&panel.url, tls).unwrap();
        rest.json("GET", "/api/users", Some(ADMIN_TOKEN), None)
            .await
            .unwrap()
    });
    assert_eq!(users.0, 200);
    let left: Vec<_> = users.1["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"].as_str().is_some_and(|n| n.starts_with("lt-")))
        .collect();
    assert!(left.is_empty(), "users left behind: {left:?}");
}
