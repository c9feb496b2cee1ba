//! The real `agent` binary: `agent register` (run to completion) and `agent run` as a child
//! process, each agent with its own config file and data dir so several can share one host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::panel::Panel;
use crate::{ContainerGuard, Proc, binary, eventually};

/// How long an agent may take to show up online.
pub const ONLINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A registered agent (and, once [`Agent::run`] was called, its running process).
pub struct Agent {
    pub name: String,
    pub id: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub proc: Option<Proc>,
    /// `agent run --name-prefix` (`None`: the default `ctrl-`).
    pub name_prefix: Option<String>,
    /// Removes every container of this agent when the test ends, panic or not. Declared
    /// after `proc` so the agent is killed before its containers are removed.
    pub containers: ContainerGuard,
}

impl Agent {
    /// `agent register` against `panel`; the agent's id is read back from `GET /api/agents`.
    pub fn register(panel: &Panel, dir: &Path, name: &str) -> Agent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let config = dir.join("agent.json");
        let mut cmd = Command::new(binary("agent"));
        cmd.arg("register")
            .args(["--panel", &panel.url(), "--admin-token", &panel.token])
            .args(["--name", name, "--ca-cert"])
            .arg(panel.ca_cert())
            .arg("--config")
            .arg(&config)
            .current_dir(dir);
        let out = cmd.output().expect("running agent register");
        assert!(
            out.status.success(),
            "agent register failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            config.exists(),
            "agent register did not write {}",
            config.display()
        );
        let entry = panel
            .api
            .agent_named(name)
            .unwrap_or_else(|| panic!("agent {name} registered but missing from GET /api/agents"));
        let id = entry["id"]
            .as_str()
            .unwrap_or_else(|| panic!("agent entry without id: {entry}"))
            .to_owned();
        Agent {
            name: name.to_owned(),
            id: id.clone(),
            config,
            data_dir: dir.join("agent-data"),
            proc: None,
            name_prefix: None,
            containers: ContainerGuard(format!("ctrl.agent={id}")),
        }
    }

    /// Starts (or restarts) `agent run`.
    pub fn run(&mut self) {
        self.proc = None; // a previous process is killed first
        let mut cmd = Command::new(binary("agent"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .current_dir(self.config.parent().expect("config dir"))
            .env_remove("DOCKER_HOST");
        if let Some(p) = &self.name_prefix {
            cmd.args(["--name-prefix", p]);
        }
        self.proc = Some(Proc::spawn(&format!("agent {}", self.name), cmd));
    }

    /// `kill -9` of the running agent.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        self.proc = None;
    }

    /// Waits until `GET /api/agents` shows this agent with `status`; returns the entry.
    pub fn wait_status(&self, panel: &Panel, status: &str) -> serde_json::Value {
        eventually(
            &format!("agent {} {status} in GET /api/agents", self.name),
            ONLINE_TIMEOUT,
            || {
                panel
                    .api
                    .agent_named(&self.name)
                    .filter(|a| a["status"] == status)
            },
        )
    }

    /// Everything the agent process printed (for failure messages).
    pub fn output(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.output().join("\n"))
            .unwrap_or_default()
    }
}
