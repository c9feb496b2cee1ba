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
        if !docker_or_skip(tag) {
            return None;
        }
        ensure_fakegame_image();
        let dir = TempDir::new(tag);
        let token = random_hex(24);
        let panel = Panel::start(&dir.path().join("panel"), &token, "127.0.0.1:0");
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
        let name = format!("e2e-{}-{suffix}", self.tag);
        let dir = self.dir.path().join(format!("agent-{suffix}"));
        self.agents.push(Agent::register(&self.panel, &dir, &name));
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
        self.panel = Panel::start(&data, &token, &addr);
    }

    /// A server id unique to this test process.
    pub fn server_id(&self, suffix: &str) -> String {
        format!("e2e-{}-{suffix}", self.tag)
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
