//! One test's world: a temp dir, a panel, its agents and an events subscription, torn down
//! in the right order (agents and their containers, then the panel, then the files) even
//! when the test panics.

use std::time::Duration;

use crate::agent::Agent;
use crate::events::Events;
use crate::panel::Panel;
use crate::{TempDir, docker_or_skip, ensure_fakegame_image};

/// Generous deadline for anything that involves Docker (start, stop, stats ticks).
pub const SLOW: Duration = Duration::from_secs(90);
/// How long a panel may take to stop on SIGTERM.
const START_GRACE: Duration = Duration::from_secs(30);

pub struct Stack {
    /// Dropped first: the events subscription.
    pub events: Option<Events>,
    /// Then the agents (process killed, containers removed).
    pub agents: Vec<Agent>,
    /// Then the panel.
    pub panel: Panel,
    /// Last: the files.
    pub dir: TempDir,
    pub tag: String,
}

impl Stack {
    /// A panel with no agent yet, or `None` when Docker is missing outside CI (the test is
    /// then skipped with a notice; with `CI=true` it fails instead).
    pub fn start(tag: &str) -> Option<Stack> {
        Stack::start_with(tag, &[])
    }

    /// [`start`](Self::start) with extra panel flags.
    pub fn start_with(tag: &str, extra: &[&str]) -> Option<Stack> {
        if !docker_or_skip(tag) {
            return None;
        }
        ensure_fakegame_image();
        let dir = TempDir::new(tag);
        let token = random_hex(24);
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let panel = Panel::start_with(&dir.path().join("panel"), &token, "127.0.0.1:0", &extra);
        Some(Stack {
            events: None,
            agents: Vec::new(),
            panel,
            dir,
            tag: format!("{tag}-{}", std::process::id()),
        })
    }

    /// Registers an agent (name `e2e-<tag>-<pid>-<suffix>`, own dir); not started yet.
    pub fn register(&mut self, suffix: &str) -> usize {
        self.register_with(suffix, &[])
    }

    /// [`register`](Self::register) with extra `agent register` flags (`--label k=v`).
    pub fn register_with(&mut self, suffix: &str, extra: &[&str]) -> usize {
        let name = format!("e2e-{}-{suffix}", self.tag);
        let dir = self.dir.path().join(format!("agent-{suffix}"));
        self.agents
            .push(Agent::register_with(&self.panel, &dir, &name, extra));
        self.agents.len() - 1
    }

    /// Registers and runs an agent, and waits until the panel shows it online.
    pub fn add_agent(&mut self, suffix: &str) -> usize {
        let i = self.register(suffix);
        self.agents[i].run();
        self.agents[i].wait_status(&self.panel, "online");
        i
    }

    /// [`Stack::add_agent`] with `agent run --name-prefix prefix`.
    pub fn add_agent_prefixed(&mut self, suffix: &str, prefix: &str) -> usize {
        let i = self.register(suffix);
        self.agents[i].name_prefix = Some(prefix.to_owned());
        self.agents[i].run();
        self.agents[i].wait_status(&self.panel, "online");
        i
    }

    /// Subscribes to `/api/events` (again, after a panel restart).
    pub fn subscribe(&mut self) -> &Events {
        self.events = None;
        self.events = Some(Events::subscribe(&self.panel));
        self.events.as_ref().expect("just set")
    }

    pub fn events(&self) -> &Events {
        self.events.as_ref().expect("subscribe() first")
    }

    /// `kill -9` of the panel, then a new panel on the same address and data dir.
    pub fn restart_panel_after_kill9(&mut self) {
        self.events = None;
        self.panel.proc.kill9();
        let addr = self.panel.addr.to_string();
        let data = self.panel.data_dir.clone();
        let token = self.panel.token.clone();
        let extra = self.panel.extra.clone();
        self.panel = Panel::start_with(&data, &token, &addr, &extra);
    }

    /// SIGTERM to the panel (it saves what it keeps), then a new panel on the same address
    /// and data dir with `extra` flags instead of the previous ones.
    pub fn restart_panel_with(&mut self, extra: &[&str]) {
        self.events = None;
        let status = self.panel.proc.terminate(START_GRACE);
        assert!(
            status.is_some_and(|s| s.success()),
            "panel did not stop cleanly on SIGTERM: {status:?}"
        );
        let addr = self.panel.addr.to_string();
        let data = self.panel.data_dir.clone();
        let token = self.panel.token.clone();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        self.panel = Panel::start_with(&data, &token, &addr, &extra);
    }

    /// A server id unique to this test process.
    pub fn server_id(&self, suffix: &str) -> String {
        format!("e2e-{}-{suffix}", self.tag)
    }

    /// Creates a fakegame server (`args`: its command-line flags) named `suffix` on agent
    /// `agent` and returns its id; the create must succeed.
    pub fn create_fakegame(&self, agent: usize, suffix: &str, args: &str) -> String {
        let id = self.server_id(suffix);
        let (egg, _port) = crate::egg::fakegame(args);
        self.panel
            .api
            .post(
                "/api/servers",
                &serde_json::json!({"agentId": self.agents[agent].id, "serverId": id, "eggConfig": egg}),
            )
            .ok("create");
        id
    }
}

/// `n` random bytes as hex, from the kernel.
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
