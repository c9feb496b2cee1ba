//! Test harness for the panel's integration tests: runs the real `panel` binary in a fresh
//! temporary data dir on port 0, waits for its `listening on https://ADDR` line, and gives
//! REST/WSS clients that trust its self-signed certificate; plus an in-test fake agent
//! (`agent.rs`). Every test owns its panel, so tests are independent and parallel-safe.
#![allow(dead_code)]

pub mod agent;
pub mod net;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

pub use net::{ClientError, Rest, Ws};

/// Generous upper bound for anything we wait on. Never a correctness criterion.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `fut` to completion on the smol executor, failing the test after `DEADLINE`.
pub fn run<T>(fut: impl Future<Output = T>) -> T {
    smol::block_on(within(DEADLINE * 4, "whole test body", fut))
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let what = what.to_owned();
    futures_lite::future::or(fut, async move {
        async_io::Timer::after(limit).await;
        panic!("timed out after {limit:?} waiting for: {what}");
    })
    .await
}

/// Polls `check` until it returns `Some`, or panics after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("condition never held within {DEADLINE:?}: {what}");
        }
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "panel-test-{tag}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            proto::time::unix_now()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A random admin token for `PANEL_ADMIN_TOKEN`.
pub fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("test-admin-");
    for _ in 0..4 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// How to start a panel.
#[derive(Clone, Debug)]
pub struct PanelOpts {
    /// Extra command-line flags, e.g. `["--command-timeout-secs", "1"]`.
    pub args: Vec<String>,
    /// `Some(t)` → `PANEL_ADMIN_TOKEN=t`; `None` → let the panel generate (and print) one.
    pub admin_token: Option<String>,
    /// CA the clients trust; default: the generated `DATA/tls/panel.crt`.
    pub ca_pem: Option<PathBuf>,
}

impl Default for PanelOpts {
    fn default() -> Self {
        PanelOpts {
            args: Vec::new(),
            admin_token: Some(random_token()),
            ca_pem: None,
        }
    }
}

impl PanelOpts {
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }
}

/// A running panel process.
pub struct Panel {
    pub child: Option<Child>,
    pub addr: String,
    pub admin_token: String,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ClientConfig>,
    pub rest: Rest,
    /// Every stdout/stderr line so far (printed if the test panics).
    pub log: Arc<Mutex<Vec<String>>>,
    stdout_rx: async_channel::Receiver<String>,
}

impl Panel {
    /// Starts the panel in `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path, opts: &PanelOpts) -> Panel {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_panel"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(&opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &opts.admin_token {
            Some(t) => {
                cmd.env("PANEL_ADMIN_TOKEN", t);
            }
            None => {
                cmd.env_remove("PANEL_ADMIN_TOKEN");
            }
        }
        let mut child = cmd.spawn().expect("spawn panel binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = async_channel::unbounded();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().push(format!("[stdout] {line}"));
                    let _ = tx.send_blocking(line);
                }
            });
        }
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    log.lock().push(format!("[stderr] {line}"));
                }
            });
        }
        let mut addr = None;
        let mut generated_token = None;
        let start = Instant::now();
        while addr.is_none() {
            let line = smol::block_on(within(DEADLINE, "panel 'listening on' line", rx.recv()))
                .unwrap_or_else(|_| {
                    let status = child.try_wait().ok().flatten();
                    panic!(
                        "panel exited ({status:?}) before listening; output:\n{}",
                        log.lock().join("\n")
                    )
                });
            if let Some(t) = line.trim().strip_prefix("admin token: ") {
                generated_token = Some(t.trim().to_owned());
            }
            if let Some(i) = line.find("listening on https://") {
                addr = Some(
                    line[i + "listening on https://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches('/')
                        .to_owned(),
                );
            }
            assert!(start.elapsed() < DEADLINE, "panel did not start in time");
        }
        let addr = addr.unwrap();
        let admin_token = match (&opts.admin_token, generated_token) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => t,
            (None, None) => String::new(), // a restart: the token was printed the first time only
        };
        let cert = opts
            .ca_pem
            .clone()
            .unwrap_or_else(|| data_dir.join("tls").join("panel.crt"));
        let tls = net::tls_config(Some(&cert)).expect("panel certificate readable");
        let rest = Rest::new(&format!("https://{addr}"), tls.clone()).expect("rest client");
        Panel {
            child: Some(child),
            addr,
            admin_token,
            data_dir: data_dir.to_owned(),
            tls,
            rest,
            log,
            stdout_rx: rx,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("wss://{}/ws/agents", self.addr)
    }

    pub fn events_url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("wss://{}/api/events", self.addr)
        } else {
            format!("wss://{}/api/events?{query}", self.addr)
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// `kill -9`, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (up to `DEADLINE`) for the exit status.
    pub fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `sig` and waits (up to `DEADLINE`) for the exit status.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> ExitStatus {
        nix::sys::signal::kill(self.pid(), sig).expect("send signal");
        let mut c = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            if start.elapsed() > DEADLINE {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "panel did not exit within {DEADLINE:?} of {sig}; output:\n{}",
                    self.log.lock().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// One request with exactly these headers, on a fresh connection.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        net::raw(&self.base_url(), &self.tls, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Admin-authenticated JSON request.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.rest
            .json(method, path, Some(&self.admin_token), body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Registers an agent named `name` and returns id/tokens.
    pub async fn register(&self, name: &str) -> proto::rest::RegisteredAgent {
        net::register(&self.rest, &self.admin_token, name)
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e}"))
    }

    /// `GET /api/agents` → the agent entry with this id.
    pub async fn agent_entry(&self, id: &str) -> Option<Value> {
        let (st, v) = self.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200, "GET /api/agents: {v}");
        v["agents"]
            .as_array()
            .expect("agents array")
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
    }

    /// Waits until `GET /api/agents` shows the agent with `status` ("online"/"offline").
    pub async fn wait_agent_status(&self, id: &str, status: &str) -> Value {
        eventually(&format!("agent {id} {status}"), || async {
            self.agent_entry(id).await.filter(|a| a["status"] == status)
        })
        .await
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let (st, body) = self
            .rest
            .request("GET", "/metrics", Some(&self.admin_token), None)
            .await
            .expect("GET /metrics");
        assert_eq!(st, 200, "GET /metrics");
        String::from_utf8(body).expect("metrics utf-8")
    }

    /// Creates a server on `agent` via `POST /api/servers`; the agent must answer the
    /// `create_server` (see `agent::Conn::auto_respond`).
    pub async fn create_server(&self, agent_id: &str, server_id: &str) -> (u16, Value) {
        self.admin(
            "POST",
            "/api/servers",
            Some(json!({"agentId": agent_id, "serverId": server_id, "eggConfig": egg()})),
        )
        .await
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- panel {} output ----\n{}\n----",
                self.addr,
                self.log.lock().join("\n")
            );
        }
        self.kill9();
    }
}

/// A temp dir plus a panel running in it (restartable on the same dir).
pub struct Harness {
    pub panel: Panel,
    pub opts: PanelOpts,
    pub dir: TempDir,
}

impl Harness {
    pub fn start(tag: &str) -> Harness {
        Self::with(tag, PanelOpts::default())
    }

    pub fn with(tag: &str, opts: PanelOpts) -> Harness {
        let dir = TempDir::new(tag);
        let panel = Panel::start(dir.path(), &opts);
        Harness { panel, opts, dir }
    }

    /// Starts a new panel process on the same data dir (the old one must be stopped).
    pub fn restart(&mut self) {
        assert!(
            self.panel.child.is_none(),
            "stop the panel before restarting"
        );
        let token = self.panel.admin_token.clone();
        let mut p = Panel::start(self.dir.path(), &self.opts);
        if p.admin_token.is_empty() {
            p.admin_token = token;
        }
        self.panel = p;
    }
}

/// A valid egg configuration (the spec's example).
pub fn egg() -> Value {
    json!({
        "name": "minecraft-java",
        "image": "ghcr.io/pterodactyl/yolks:java_17",
        "ports": {"25565": 25565},
        "environment": {"SERVER_JARFILE": "server.jar", "MINECRAFT_VERSION": "1.20.4"},
        "limits": {"memory": "2048m", "cpu": "2", "disk": "5g"},
        "startup": "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}"
    })
}

/// Asserts an operator API failure: status and `error.code`.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "unexpected status; body {body}");
    assert_eq!(body["success"], false, "body {body}");
    assert_eq!(body["error"]["code"], want_code, "body {body}");
    assert!(
        body["error"]["message"].is_string(),
        "error.message missing: {body}"
    );
}

/// Registers `name`, connects it as a fake agent and waits until the panel lists it online.
pub async fn online_agent(p: &Panel, name: &str) -> (proto::rest::RegisteredAgent, agent::Conn) {
    let a = p.register(name).await;
    let c = agent::Conn::connect(p, &a).await;
    p.wait_agent_status(&a.id, "online").await;
    (a, c)
}

/// `POST /api/servers` while `conn` answers the `create_server` it receives; returns the
/// operator's status and body.
pub async fn create_server_answered(
    p: &Panel,
    conn: &agent::Conn,
    agent_id: &str,
    server_id: &str,
) -> (u16, Value) {
    let agent_side = async {
        let cmd = conn.next_command().await;
        assert_eq!(cmd["action"], "create_server", "{cmd}");
        assert_eq!(cmd["payload"]["serverId"], server_id, "{cmd}");
        let id = cmd["id"].as_str().expect("command id").to_owned();
        conn.respond_ok(&id, json!({"serverId": server_id, "status": "created"}))
            .await;
        cmd
    };
    let (resp, _) =
        futures_lite::future::zip(p.create_server(agent_id, server_id), agent_side).await;
    assert_eq!(resp.0, 200, "create {server_id}: {}", resp.1);
    resp
}

/// Finds the first value under key `key` anywhere inside `v`.
pub fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// The panel's JWT signing key, read from `DATA/jwt.key` (32 raw bytes; kid = "k" + the
/// first 4 bytes of its SHA-256 in hex, as `panel::auth` derives it) — so tests can forge
/// tokens with a valid signature but bad claims.
pub fn signing_key(data_dir: &Path) -> proto::jwt::Key {
    let secret = std::fs::read(data_dir.join("jwt.key")).expect("read DATA/jwt.key");
    assert_eq!(secret.len(), 32, "jwt.key holds 32 bytes");
    let h = ring::digest::digest(&ring::digest::SHA256, &secret);
    let h = h.as_ref();
    let kid = format!("k{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]);
    proto::jwt::Key::new(kid, &secret)
}

/// Re-signs `claims` with the panel's real key.
pub fn forge(p: &Panel, claims: &proto::jwt::Claims) -> String {
    proto::jwt::sign(&signing_key(&p.data_dir), claims)
}

/// base64url without padding.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

/// The value of one exact series in Prometheus text, e.g.
/// `panel_rate_limited_total{limiter="agent"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
