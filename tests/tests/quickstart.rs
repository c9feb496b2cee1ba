//! The quickstart as a newcomer meets it (issue 5, "Done when"): the real `panel up` in a
//! fresh directory, its printed curl lines run verbatim from the repository root, Ctrl-C, and
//! a second `panel up` that reuses everything.
//!
//! `panel up` runs in its own process group, like a command in a terminal, so Ctrl-C can be
//! sent the way a terminal sends it (SIGINT to the whole group: panel and agent at once), and
//! so every process it started is killed on drop even when the panel itself is gone.
//!
//! The example egg publishes host port 25565 and the printed lines name the server
//! `fakegame-1` (container `ctrl-fakegame-1`); no other test uses either. Two copies of this
//! test (other checkouts, other target dirs) are serialised by a lock file, and anything else
//! holding the port or the name fails the test with a message saying what to remove.

#![allow(
    unsafe_code,
    reason = "kill(2) and flock(2) through libc on the test's own processes and files"
)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::panel::Api;
use e2e::{ContainerGuard, TempDir, binary, container_running, eventually, repo_root};
use serde_json::Value;

/// The id the printed curl lines give the example server.
const SERVER: &str = "fakegame-1";
/// The host port the example egg publishes.
const EGG_PORT: u16 = 25565;
/// Generous deadlines: the machine may be busy; nothing here measures speed.
const START: Duration = Duration::from_secs(120);
const SLOW: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(60);

/// `panel up` as a child process in its own process group, stdout and stderr collected.
struct Up {
    child: Option<Child>,
    pgid: i32,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>, tag: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if std::env::var_os("E2E_VERBOSE").is_some() {
                eprintln!("[panel up {tag}] {line}");
            }
            into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

impl Up {
    /// `panel up --listen LISTEN` with `dir` as its working directory and no
    /// `PANEL_ADMIN_TOKEN` (a newcomer has none).
    fn start(dir: &Path, listen: &str) -> Up {
        let mut cmd = Command::new(binary("panel"));
        cmd.args(["up", "--listen", listen])
            .current_dir(dir)
            .env_remove("PANEL_ADMIN_TOKEN")
            .env_remove("PANEL_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("spawning panel up");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone(), "out");
        collect(child.stderr.take().expect("stderr"), stderr.clone(), "err");
        Up {
            pgid: child.id() as i32,
            child: Some(child),
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> i32 {
        self.pgid
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the instructions (they end with the Ctrl-C hint) and returns stdout so far.
    fn instructions(&mut self) -> Vec<String> {
        let deadline = Instant::now() + START;
        loop {
            let out = self.stdout();
            if out.iter().any(|l| l.starts_with("Ctrl-C stops")) {
                return out;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("panel up exited ({status}) before printing its instructions");
            }
            assert!(
                Instant::now() < deadline,
                "panel up printed no instructions within {START:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the panel alone, or to its whole group as a terminal's Ctrl-C does,
    /// and waits for the panel's exit status.
    fn signal(&mut self, signal: i32, whole_group: bool) -> ExitStatus {
        let target = if whole_group { -self.pgid } else { self.pgid };
        // SAFETY: kill(2) on a process (group) this test started; no memory is touched.
        assert_eq!(unsafe { libc::kill(target, signal) }, 0, "kill({target})");
        let child = self.child.as_mut().expect("panel up is running");
        let deadline = Instant::now() + EXIT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for panel up") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "panel up did not exit within {EXIT:?} of signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("E2E_VERBOSE").is_none() {
            eprintln!(
                "---- panel up stdout ----\n{}\n---- panel up stderr ----\n{}\n---- end ----",
                self.stdout().join("\n"),
                self.stderr().join("\n")
            );
        }
        // The whole group: the panel and any agent it started, even an orphaned one.
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// A process as `/proc/PID/stat` shows it: parent, group and start time (to tell a reused
/// pid apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    start: u64,
}

fn proc_info(pid: i32) -> Option<(String, ProcInfo)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ..."; COMM may contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] = state (field 3), so field N is rest[N - 3].
    if rest.first() == Some(&"Z") {
        return None; // exited, only waiting to be reaped
    }
    Some((
        comm,
        ProcInfo {
            pid,
            ppid: rest.get(1)?.parse().ok()?,
            pgrp: rest.get(2)?.parse().ok()?,
            start: rest.get(19)?.parse().ok()?,
        },
    ))
}

fn all_processes() -> Vec<(String, ProcInfo)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// The `agent` process `panel up` (pid `parent`) is running.
fn agent_child(parent: i32) -> ProcInfo {
    eventually("the agent child of panel up", START, || {
        all_processes()
            .into_iter()
            .find(|(comm, p)| p.ppid == parent && comm == "agent")
            .map(|(_, p)| p)
    })
}

/// Asserts that `agent` is gone and nothing is left in `panel up`'s process group.
fn assert_all_gone(agent: ProcInfo, pgid: i32) {
    assert!(
        proc_info(agent.pid).is_none_or(|(_, p)| p.start != agent.start),
        "the agent (pid {}) outlived panel up",
        agent.pid
    );
    let left: Vec<_> = all_processes()
        .into_iter()
        .filter(|(_, p)| p.pgrp == pgid)
        .collect();
    assert!(
        left.is_empty(),
        "processes left behind by panel up: {left:?}"
    );
}

/// The value after `prefix` on the first line that starts with it.
fn field(out: &[String], prefix: &str) -> String {
    out.iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{}", out.join("\n")))
        .trim()
        .to_owned()
}

/// The printed curl commands, each with its continuation lines, exactly as printed.
fn curl_commands(out: &[String]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut lines = out.iter();
    while let Some(line) = lines.next() {
        if !line.starts_with("curl ") {
            continue;
        }
        let mut cmd = line.clone();
        while cmd.ends_with('\\') {
            let next = lines.next().expect("a continuation line after `\\`");
            cmd.push('\n');
            cmd.push_str(next);
        }
        commands.push(cmd);
    }
    commands
}

/// What the instructions say, checked for shape.
struct Printed {
    url: String,
    ca: PathBuf,
    curls: Vec<String>,
}

fn parse_instructions(out: &[String], data_dir: &Path) -> Printed {
    let url = field(out, "panel:");
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("panel URL {url:?} is not https://127.0.0.1:PORT"));
    assert_ne!(port, 0, "the printed URL must carry the bound port");
    let listening = field(out, "listening on");
    assert!(
        listening.ends_with(&format!(":{port}")),
        "banner ({listening}) and instructions ({url}) disagree on the port"
    );
    let ca = PathBuf::from(field(out, "ca cert:"));
    assert!(
        ca.is_absolute(),
        "CA path {ca:?} only works from one directory"
    );
    assert_eq!(
        std::fs::canonicalize(&ca).expect("the printed CA certificate exists"),
        std::fs::canonicalize(data_dir.join("tls/panel.crt")).expect("DATA/tls/panel.crt")
    );
    let curls = curl_commands(out);
    assert_eq!(
        curls.len(),
        3,
        "expected exactly three curl lines: {curls:#?}"
    );
    assert!(
        curls[0].ends_with(&format!("{url}/api/servers")),
        "{}",
        curls[0]
    );
    assert!(curls[0].contains("tests/fakegame/egg.json"), "{}", curls[0]);
    assert!(
        curls[1].ends_with(&format!("{url}/api/servers/{SERVER}/power")),
        "{}",
        curls[1]
    );
    assert!(
        curls[2].ends_with(&format!("{url}/api/servers/{SERVER}")),
        "{}",
        curls[2]
    );
    for c in &curls {
        assert!(c.contains(&format!("--cacert {}", ca.display())), "{c}");
    }
    Printed { url, ca, curls }
}

/// Runs `lines` with `sh` from the repository root (where the README has newcomers work),
/// with no admin token in the environment but what `lines` export; returns curl's JSON.
fn sh_json(lines: &str) -> Value {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{lines}"))
        .current_dir(repo_root())
        .env_remove("PANEL_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{lines}\nfailed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{lines}\nprinted no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_success(what: &str, body: &Value) {
    assert_eq!(body["success"], true, "{what}: {body}");
}

/// The only agent in `GET /api/agents`, once it is online.
fn the_online_agent(api: &Api) -> String {
    eventually("the local agent online", START, || {
        let body = api.get("/api/agents").ok("GET /api/agents");
        let agents = body["agents"].as_array().expect("agents array").clone();
        assert_eq!(
            agents.len(),
            1,
            "panel up registers exactly one agent: {body}"
        );
        (agents[0]["status"] == "online").then(|| agents[0]["id"].as_str().unwrap().to_owned())
    })
}

/// Polls the printed status line until the server is running; returns its `data`.
fn poll_running(status_lines: &str) -> Value {
    eventually(&format!("{SERVER} running"), SLOW, || {
        let body = sh_json(status_lines);
        assert_success("status curl", &body);
        (body["data"]["status"] == "running").then(|| body["data"].clone())
    })
}

/// Holds an exclusive lock on a file in the temp dir: one quickstart test at a time on this
/// host (port 25565 and the name `ctrl-fakegame-1` are fixed by the printed lines).
fn host_lock() -> File {
    let path = std::env::temp_dir().join("ctrl-e2e-quickstart.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "locking {}", path.display());
    file
}

/// Fails with a clear message when the fixed port or container name is taken.
fn assert_quickstart_resources_free() {
    let name = format!("ctrl-{SERVER}");
    let existing = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{name}$")])
        .output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&existing.stdout).trim().is_empty(),
        "a container named {name} already exists (a quickstart left running?): \
         remove it with `docker rm -f {name}` and rerun"
    );
    if let Err(e) = TcpListener::bind(("0.0.0.0", EGG_PORT)) {
        panic!(
            "host port {EGG_PORT}, published by the example egg, is in use ({e}); \
             stop whatever holds it (`ss -ltnp | grep {EGG_PORT}`) and rerun"
        );
    }
}

#[test]
fn quickstart_panel_up_curl_lines_ctrl_c_and_rerun() {
    if !e2e::docker_or_skip("quickstart_panel_up_curl_lines_ctrl_c_and_rerun") {
        return;
    }
    e2e::ensure_fakegame_image();
    let _lock = host_lock();
    assert_quickstart_resources_free();
    let dir = TempDir::new("quickstart");
    let data = dir.path().join("data");

    // ---- first run: a fresh ./data ----
    let mut up = Up::start(dir.path(), "127.0.0.1:0");
    let out = up.instructions();
    let printed = parse_instructions(&out, &data);
    let banner_token = field(&out, "admin token:");
    let export = out
        .iter()
        .find(|l| l.starts_with("export PANEL_ADMIN_TOKEN="))
        .unwrap_or_else(|| panic!("no `export PANEL_ADMIN_TOKEN=` line:\n{}", out.join("\n")))
        .clone();
    let token = export["export PANEL_ADMIN_TOKEN=".len()..].to_owned();
    assert!(token.len() >= 32, "admin token {token:?} is too short");
    assert_eq!(
        banner_token, token,
        "the banner and the export line disagree"
    );

    let api = Api::new(&printed.url, &printed.ca, &token);
    let agent_id = the_online_agent(&api);
    let _containers = ContainerGuard(format!("ctrl.agent={agent_id}"));
    let agent_json: Value = serde_json::from_slice(
        &std::fs::read(data.join("agent/agent.json")).expect("DATA/agent/agent.json"),
    )
    .expect("agent.json is JSON");
    assert_eq!(agent_json["id"], agent_id.as_str());
    let agent = agent_child(up.pid());

    // The three lines, as printed, after the printed export line.
    let [create, start, status] = [0, 1, 2].map(|i| format!("{export}\n{}", printed.curls[i]));
    let created = sh_json(&create);
    assert_success("create curl", &created);
    assert_eq!(created["server"]["serverId"], SERVER, "{created}");
    assert_eq!(created["server"]["agentId"], agent_id.as_str(), "{created}");
    let started = sh_json(&start);
    assert_success("start curl", &started);
    let running = eventually("status with players", SLOW, || {
        let data = poll_running(&status);
        data["players"].is_object().then_some(data)
    });
    assert_eq!(
        running["players"]["max"], 20,
        "MAX_PLAYERS of the egg: {running}"
    );
    let container = format!("ctrl-{SERVER}");
    assert!(
        container_running(&container),
        "docker: {container} not running"
    );

    // Ctrl-C in the terminal: SIGINT to panel and agent at once.
    let exit = up.signal(libc::SIGINT, true);
    assert!(exit.success(), "panel up on Ctrl-C: {exit}");
    // The process has exited, but its last line may still be in the reader thread's pipe.
    eventually("\"panel stopped\" on stdout", EXIT, || {
        up.stdout()
            .iter()
            .any(|l| l == "panel stopped")
            .then_some(())
    });
    assert_all_gone(agent, up.pid());
    // As whenever an agent stops, the game server keeps running.
    assert!(
        container_running(&container),
        "{container} must outlive the agent"
    );
    drop(up);

    // ---- second run: same directory, same address ----
    let mut up = Up::start(dir.path(), printed.url.trim_start_matches("https://"));
    let out = up.instructions();
    let again = parse_instructions(&out, &data);
    assert_eq!(again.url, printed.url);
    assert!(
        out.iter().any(|l| l.starts_with("admin token unchanged")),
        "{out:#?}"
    );
    let everything = [out.clone(), up.stderr()].concat().join("\n");
    assert!(
        !everything.contains(&token) && !everything.contains("export PANEL_ADMIN_TOKEN="),
        "a rerun must not print (or create) an admin token:\n{everything}"
    );
    assert!(
        !everything.contains("registered as agent"),
        "a rerun must not register another agent:\n{everything}"
    );
    let api = Api::new(&again.url, &again.ca, &token);
    assert_eq!(
        the_online_agent(&api),
        agent_id,
        "the same agent comes back"
    );
    assert_eq!(api.server_ids(), vec![SERVER.to_owned()]);
    let agent = agent_child(up.pid());
    // The newcomer exports the token from the first run, as the instructions say; the
    // re-adopted server answers the printed status line.
    let status = format!("export PANEL_ADMIN_TOKEN={token}\n{}", again.curls[2]);
    let data = poll_running(&status);
    assert_eq!(data["players"]["max"], 20, "{data}");

    api.delete(&format!("/api/servers/{SERVER}?purge=true"))
        .ok("DELETE the example server");
    assert!(
        e2e::containers_with_label(&format!("ctrl.agent={agent_id}")).is_empty(),
        "the container must be gone after DELETE"
    );

    // SIGINT to the panel alone (`kill -INT <pid>`): it stops the agent itself.
    let exit = up.signal(libc::SIGINT, false);
    assert!(exit.success(), "panel up on SIGINT: {exit}");
    assert_all_gone(agent, up.pid());
}

/// `panel up --listen 0.0.0.0:…` (reachable from other hosts), then a rerun on another port:
/// the local agent connects both times (the panel hands out `wss://0.0.0.0:…`, and the port
/// it registered with changes; `panel up` points it at the loopback URL of each run).
#[test]
fn quickstart_wildcard_listen_and_a_rerun_on_another_port() {
    if !e2e::docker_or_skip("quickstart_wildcard_listen_and_a_rerun_on_another_port") {
        return;
    }
    let dir = TempDir::new("quickstart-listen");
    let data = dir.path().join("data");

    let mut up = Up::start(dir.path(), "0.0.0.0:0");
    let out = up.instructions();
    let first = parse_instructions(&out, &data);
    let token = field(&out, "export PANEL_ADMIN_TOKEN=");
    let api = Api::new(&first.url, &first.ca, &token);
    let agent_id = the_online_agent(&api);
    let agent = agent_child(up.pid());
    let exit = up.signal(libc::SIGINT, true);
    assert!(exit.success(), "panel up on Ctrl-C: {exit}");
    assert_all_gone(agent, up.pid());
    drop(up);

    let mut up = Up::start(dir.path(), "127.0.0.1:0");
    let out = up.instructions();
    let second = parse_instructions(&out, &data);
    assert_ne!(second.url, first.url, "a new port was asked for");
    let api = Api::new(&second.url, &second.ca, &token);
    assert_eq!(
        the_online_agent(&api),
        agent_id,
        "the same agent, reconnected"
    );
    let agent = agent_child(up.pid());
    let exit = up.signal(libc::SIGTERM, false);
    assert!(exit.success(), "panel up on SIGTERM: {exit}");
    assert_all_gone(agent, up.pid());
}
