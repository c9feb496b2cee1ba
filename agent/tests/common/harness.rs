//! The servers layer on the real Docker Engine, as the link drives it: a [`Harness`] per
//! test (its own agent id, data dir and container guard), commands decoded from JSON exactly
//! as the link delivers them, events read from the outbox the link would send.

use agent::link::outbox::Outbox;
use agent::servers::{Servers, ServersConfig};
use e2e::{ContainerGuard, TempDir};
use proto::{Event, EventKind, Message, Response, ServerState};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SOCKET: &str = "/var/run/docker.sock";
pub const IMAGE: &str = "ctrl-fakegame:latest";
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub servers: Option<Servers>,
    pub outbox: Arc<Outbox>,
    pub cfg: ServersConfig,
    pub events: Vec<Event<'static>>,
    pub data: TempDir,
    pub _guard: ContainerGuard,
}

pub fn agent_id(tag: &str) -> String {
    format!("t-{tag}-{}-{}", std::process::id(), fastrand::u32(..))
}

/// A manager on the real Docker, or `None` (skip) when there is none and CI is unset.
pub fn harness(tag: &str, tweak: impl FnOnce(&mut ServersConfig)) -> Option<Harness> {
    if !e2e::docker_or_skip(tag) {
        return None;
    }
    e2e::ensure_fakegame_image();
    let id = agent_id(tag);
    let guard = ContainerGuard(format!("ctrl.agent={id}"));
    let data = TempDir::new(tag);
    let mut cfg = ServersConfig::new(id, PathBuf::from(SOCKET), data.path().to_path_buf());
    cfg.resource_interval = Duration::from_millis(300);
    cfg.stop_timeout = Duration::from_secs(10);
    tweak(&mut cfg);
    let outbox = Arc::new(Outbox::new(100_000));
    let servers = Servers::start(cfg.clone(), outbox.clone()).expect("start servers");
    Some(Harness {
        servers: Some(servers),
        outbox,
        cfg,
        events: Vec::new(),
        data,
        _guard: guard,
    })
}

pub fn command(
    server_id: Option<&str>,
    action: &str,
    payload: Option<Value>,
) -> proto::Command<'static> {
    let mut msg = json!({
        "id": format!("m-{}", fastrand::u32(..)),
        "type": "command",
        "timestamp": proto::time::now_rfc3339(),
        "action": action,
    });
    if let Some(s) = server_id {
        msg["serverId"] = json!(s);
    }
    if let Some(p) = payload {
        msg["payload"] = p;
    }
    match proto::decode(msg.to_string().as_bytes()).expect("decodes") {
        Message::Command(c) => c,
        other => panic!("not a command: {other:?}"),
    }
}

pub fn egg(host_port: u16, startup: &str) -> Value {
    json!({
        "name": "fakegame",
        "image": IMAGE,
        "ports": {"25565": host_port},
        "environment": {"MAX_PLAYERS": "20"},
        "limits": {"memory": "128m", "cpu": "0.25", "disk": "1g"},
        "startup": startup,
        "stop": {"command": "stop"},
        "query": {"type": "minecraft", "port": 25565}
    })
}

pub const STARTUP: &str =
    "fakegame --port {{SERVER_PORT}} --max-players {{MAX_PLAYERS}} --write-file hello.txt";

impl Harness {
    pub fn servers(&self) -> &Servers {
        self.servers.as_ref().expect("servers running")
    }

    pub fn send(
        &self,
        server_id: Option<&str>,
        action: &str,
        payload: Option<Value>,
    ) -> Response<'static> {
        smol::block_on(self.servers().execute(command(server_id, action, payload)))
    }

    pub fn ok(&self, server_id: &str, action: &str, payload: Option<Value>) -> Value {
        let r = self.send(Some(server_id), action, payload);
        assert!(r.success, "{action} failed: {:?}", r.error);
        r.data.expect("data")
    }

    pub fn err(
        &self,
        server_id: Option<&str>,
        action: &str,
        payload: Option<Value>,
    ) -> (String, String) {
        let r = self.send(server_id, action, payload);
        assert!(!r.success, "{action} unexpectedly succeeded: {:?}", r.data);
        let e = r.error.expect("error body");
        (e.code.into_owned(), e.message.into_owned())
    }

    pub fn create(&self, sid: &str, egg: Value) -> Value {
        let r = self.send(
            None,
            "create_server",
            Some(json!({"serverId": sid, "eggConfig": egg})),
        );
        assert!(r.success, "create failed: {:?}", r.error);
        r.data.unwrap()
    }

    pub fn create_err(&self, sid: &str, egg: Value) -> (String, String) {
        self.err(
            None,
            "create_server",
            Some(json!({"serverId": sid, "eggConfig": egg})),
        )
    }

    pub fn drain(&mut self) {
        while let Some(e) = self.outbox.try_take() {
            self.outbox.ack();
            self.events.push(e);
        }
    }

    /// Waits for an event (past or future) matching `pred`.
    pub fn wait_event(
        &mut self,
        what: &str,
        pred: impl Fn(&Event<'static>) -> bool,
    ) -> Event<'static> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(e) = self.events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:#?}",
                self.events.iter().map(summary).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&mut self, sid: &str, needle: &str) -> Event<'static> {
        let sid = sid.to_owned();
        self.wait_event(&format!("log line {needle:?}"), |e| {
            matches!(&e.kind, EventKind::ServerLog(l) if l.server_id == sid && l.message.contains(needle))
        })
    }

    pub fn wait_status(&mut self, sid: &str, to: ServerState) -> proto::StatusChanged<'static> {
        let sid = sid.to_owned();
        let e = self.wait_event(&format!("{sid} -> {}", to.as_str()), |e| {
            matches!(&e.kind, EventKind::ServerStatusChanged(s) if s.server_id == sid && s.current_status == to)
        });
        match e.kind {
            EventKind::ServerStatusChanged(s) => s,
            _ => unreachable!(),
        }
    }

    pub fn volume(&self, sid: &str) -> PathBuf {
        self.data.path().join("volumes").join(sid)
    }
}

pub fn summary(e: &Event<'_>) -> String {
    match &e.kind {
        EventKind::ServerStatusChanged(s) => format!(
            "status {} {}->{} {:?} {:?}",
            s.server_id,
            s.previous_status.as_str(),
            s.current_status.as_str(),
            s.exit_code,
            s.reason
        ),
        EventKind::ServerLog(l) => format!("log {} {}", l.server_id, l.message),
        EventKind::ResourceUpdate(r) => format!("resources {} cpu {}", r.server_id, r.cpu),
        EventKind::Other { name, .. } => name.to_string(),
    }
}

pub fn docker_inspect(name: &str) -> Value {
    let out = std::process::Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker inspect");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.get(0).cloned().unwrap_or(Value::Null)
}
