//! The real `panel` binary as a child process, and a blocking operator-API client for it.
//!
//! The panel is started with `--listen 127.0.0.1:0` (or a fixed address when a test restarts
//! it in place), its own data dir, and `PANEL_ADMIN_TOKEN` set so the test knows the token.
//! Its address comes from the `listening on https://ADDR` line it prints; the CA to trust is
//! the self-signed certificate it writes to `DATA/tls/panel.crt`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::{Proc, binary};

/// How long a single API call may take (agents answer within the panel's command timeout).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the panel may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running panel.
pub struct Panel {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub token: String,
    pub api: Api,
    /// Flags given besides the usual ones (kept for restarts).
    pub extra: Vec<String>,
}

impl Panel {
    /// Starts a panel on `listen` (`"127.0.0.1:0"` for any port) with `data_dir`.
    pub fn start(data_dir: &Path, token: &str, listen: &str) -> Panel {
        Panel::start_with::<&str>(data_dir, token, listen, &[])
    }

    /// [`Panel::start`] with `extra` flags (e.g. `--dead-after-secs 4`, limits raised for a
    /// load test).
    pub fn start_with<S: AsRef<str>>(
        data_dir: &Path,
        token: &str,
        listen: &str,
        extra: &[S],
    ) -> Panel {
        let mut cmd = Command::new(binary("panel"));
        cmd.args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(["--heartbeat-secs", "1", "--command-timeout-secs", "60"])
            .args(extra.iter().map(AsRef::as_ref))
            .env("PANEL_ADMIN_TOKEN", token)
            .env_remove("RUST_LOG");
        let proc = Proc::spawn("panel", cmd);
        let line = proc.wait_for_line("listening on https://", START_TIMEOUT);
        let addr_text = line
            .split("listening on https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("")
            .trim_end_matches('/');
        let addr: SocketAddr = addr_text
            .parse()
            .unwrap_or_else(|e| panic!("panel printed {line:?}: address {addr_text:?}: {e}"));
        let ca = data_dir.join("tls/panel.crt");
        assert!(
            ca.exists(),
            "panel did not write its certificate to {}",
            ca.display()
        );
        let api = Api::new(&format!("https://{addr}"), &ca, token);
        Panel {
            proc,
            data_dir: data_dir.to_path_buf(),
            addr,
            token: token.to_owned(),
            api,
            extra: extra.iter().map(|s| s.as_ref().to_owned()).collect(),
        }
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The certificate agents and clients must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("tls/panel.crt")
    }
}

/// A blocking client for the operator API (admin bearer token on every call).
pub struct Api {
    pub rest: ctrl_io::Rest,
    pub token: String,
}

/// An API answer: HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// `error.code` of a failure body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.message` of a failure body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// Panics unless this is a success (200 and `"success": true`); returns the body.
    pub fn ok(self, what: &str) -> Value {
        assert!(
            self.status == 200 && self.body["success"] == Value::Bool(true),
            "{what}: expected success, got HTTP {}: {}",
            self.status,
            self.body
        );
        self.body
    }

    /// Panics unless this is a failure with `status` and `code`; returns the message.
    pub fn err(self, what: &str, status: u16, code: &str) -> String {
        assert!(
            self.status == status
                && self.body["success"] == Value::Bool(false)
                && self.code() == code,
            "{what}: expected HTTP {status} {code}, got HTTP {}: {}",
            self.status,
            self.body
        );
        self.message().to_owned()
    }
}

impl Api {
    pub fn new(base_url: &str, ca: &Path, token: &str) -> Api {
        let tls = ctrl_io::tls_config(Some(ca))
            .unwrap_or_else(|e| panic!("TLS config from {}: {e}", ca.display()));
        let rest = ctrl_io::Rest::new(base_url, tls)
            .unwrap_or_else(|e| panic!("client for {base_url}: {e}"))
            .with_timeout(CALL_TIMEOUT);
        Api {
            rest,
            token: token.to_owned(),
        }
    }

    /// The same client with another per-call deadline (long operations: 1 GiB backups).
    pub fn with_timeout(&self, timeout: std::time::Duration) -> Api {
        let base = self.rest.base_url();
        let rest = ctrl_io::Rest::new(&base, self.rest.tls().clone())
            .unwrap_or_else(|e| panic!("client for {base}: {e}"))
            .with_timeout(timeout);
        Api {
            rest,
            token: self.token.clone(),
        }
    }

    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.rest.tls().clone()
    }

    /// One call with the admin token; transport failures panic (the panel must answer).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One call with the admin token; transport failures are returned.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ctrl_io::ClientError> {
        smol::block_on(self.rest.json(method, path, Some(&self.token), body))
            .map(|(status, body)| Answer { status, body })
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None)
    }

    /// The entry of `GET /api/agents` named `name`, if any.
    pub fn agent_named(&self, name: &str) -> Option<Value> {
        let body = self.get("/api/agents").ok("GET /api/agents");
        body["agents"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /api/agents: no \"agents\" array: {body}"))
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
    }

    /// `GET /api/servers/{id}` → `data` (the agent's `get_status` answer).
    pub fn status(&self, server: &str) -> Value {
        let mut body = self
            .get(&format!("/api/servers/{server}"))
            .ok(&format!("GET /api/servers/{server}"));
        body["data"].take()
    }

    /// `POST /api/servers/{id}/power` with `body`; returns the success body.
    pub fn power(&self, server: &str, body: &Value) -> Value {
        self.post(&format!("/api/servers/{server}/power"), body)
            .ok(&format!("power {body} on {server}"))
    }

    /// The ids of `GET /api/servers`.
    pub fn server_ids(&self) -> Vec<String> {
        let body = self.get("/api/servers").ok("GET /api/servers");
        body["servers"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /api/servers: no \"servers\" array: {body}"))
            .iter()
            .map(|s| s["serverId"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}
