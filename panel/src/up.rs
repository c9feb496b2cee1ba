//! `panel up`: the quickstart — the panel with its defaults plus one local agent on this
//! host's Docker, using the `agent` binary that sits next to the `panel` binary.
//!
//! First run: registers the agent (`agent register … --config DATA/agent/agent.json`) with the
//! admin token just generated (or `PANEL_ADMIN_TOKEN`). Every run: starts
//! `agent run --config DATA/agent/agent.json --data-dir DATA/agent/data`, restarts it with
//! backoff if it dies, and stops it on Ctrl-C/SIGTERM together with the panel (a terminal's
//! Ctrl-C reaches both processes; either way `panel up` exits 0 only after the agent is
//! gone). Game-server containers keep running, as they do whenever an agent stops; the next
//! `panel up` re-adopts them. Rerunning reuses the data dir, certificate, token hash and
//! agent identity. Every panel flag applies (`panel up --listen 0.0.0.0:8443`); the local
//! agent is pointed at this run's loopback URL every time (see [`point_agent_at`]).

use async_io::Timer;
use futures_lite::future;
use smol::process::{Child, Command};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::app::{AppError, Panel, Started};
use crate::auth::AdminTokenOrigin;
use crate::config::Config;
use crate::shutdown::Shutdown;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// An agent that ran this long before dying gets the short backoff again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const AGENT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Why `panel up` could not bring the local agent up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(
        "the `agent` binary was not found at {0}; build the workspace (cargo build --release) so that it sits next to `panel`"
    )]
    NoAgentBinary(PathBuf),
    #[error(
        "{config} is missing and the admin token is not known to this run (only its hash is stored); rerun with PANEL_ADMIN_TOKEN=<the token printed on first start>"
    )]
    TokenUnknown { config: PathBuf },
    #[error("agent register failed ({status}); see its output above")]
    Register { status: String },
    #[error("{path}: {message}; delete it to register the local agent again")]
    AgentConfig { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpError {
    let what = what.into();
    move |source| UpError::Io { what, source }
}

/// The address a local client uses to reach `addr` (a wildcard bind becomes loopback).
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// This host's name, reduced to what registration accepts (`[A-Za-z0-9._-]{1,64}`).
fn agent_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "local".into()
    } else {
        name
    }
}

/// The admin token, when this run knows it.
fn known_token(origin: &AdminTokenOrigin) -> Option<String> {
    match origin {
        AdminTokenOrigin::Generated(t) => Some(t.clone()),
        AdminTokenOrigin::Environment => std::env::var("PANEL_ADMIN_TOKEN").ok(),
        AdminTokenOrigin::Stored => None,
    }
}

/// The example egg shipped in the repository, relative to the repository root.
const EXAMPLE_EGG: &str = "tests/fakegame/egg.json";

/// Where the example egg is: under the current directory (a newcomer runs `panel up` from the
/// repository root), else in the source tree this binary was built from, else a placeholder.
/// Printed absolute, so the curl lines work from any directory.
fn example_egg() -> String {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(EXAMPLE_EGG);
    [Path::new(EXAMPLE_EGG), built_from.as_path()]
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| shell_word(&absolute(p)))
        .unwrap_or_else(|| format!("path/to/ctrl/{EXAMPLE_EGG}"))
}

/// `p` made absolute (symlinks and `..` resolved when it exists), so a printed command does
/// not depend on the directory it is pasted in.
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// `p` as one POSIX shell word: as it is when it needs no quoting, else single-quoted.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The quickstart text printed once everything is up.
pub fn instructions(started: &Started, url: &str, agent_config: &Path) -> String {
    let cert = shell_word(&absolute(&started.cert_path));
    let token_line = match &started.admin_token {
        AdminTokenOrigin::Generated(t) => format!(
            "admin token:  generated and printed above, shown only on this first start\n\
             \nexport PANEL_ADMIN_TOKEN={t}"
        ),
        AdminTokenOrigin::Environment => "admin token: the value of PANEL_ADMIN_TOKEN".to_owned(),
        AdminTokenOrigin::Stored => {
            "admin token: printed on first start (only its hash is stored); \
             export it as PANEL_ADMIN_TOKEN for the commands below"
                .to_owned()
        }
    };
    let egg = example_egg();
    let login = match &started.first_admin {
        Some((name, _)) => format!(
            "web ui:       {url}/ — log in as `{name}` with the admin password printed above\n"
        ),
        None => format!("web ui:       {url}/ — log in with your user (`panel user add`)\n"),
    };
    format!(
        "\n\
panel:        {url}\n\
{login}\
ca cert:      {cert}\n\
fingerprint:  {fp}\n\
local agent:  {agent}\n\
{token_line}\n\
\n\
# create a server from the example egg (image ctrl-fakegame:latest, see tests/fakegame):\n\
curl --cacert {cert} -H \"Authorization: Bearer $PANEL_ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\n  \
-d \"{{\\\"serverId\\\":\\\"fakegame-1\\\",\\\"eggConfig\\\":$(cat {egg})}}\" {url}/api/servers\n\
# start it:\n\
curl --cacert {cert} -H \"Authorization: Bearer $PANEL_ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\n  \
-d '{{\"action\":\"start\"}}' {url}/api/servers/fakegame-1/power\n\
# read its status:\n\
curl --cacert {cert} -H \"Authorization: Bearer $PANEL_ADMIN_TOKEN\" {url}/api/servers/fakegame-1\n\
\n\
Ctrl-C stops the panel and the agent.\n",
        fp = started.fingerprint_sha256,
        agent = agent_config.display(),
    )
}

/// Runs `agent register` once (when `agent.json` is missing).
async fn register(
    agent_bin: &Path,
    url: &str,
    token: &str,
    cert: &Path,
    config: &Path,
) -> Result<(), UpError> {
    let status = Command::new(agent_bin)
        .arg("register")
        .arg("--panel")
        .arg(url)
        .arg("--admin-token")
        .arg(token)
        .arg("--name")
        .arg(agent_name())
        .arg("--ca-cert")
        .arg(cert)
        .arg("--config")
        .arg(config)
        .status()
        .await
        .map_err(io(format!("running {}", agent_bin.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(UpError::Register {
            status: status.to_string(),
        })
    }
}

/// Makes the local agent's `agent.json` reach the panel at `url`, this run's local address.
///
/// Registration stores the URLs the panel hands out, built from `--public-url` or the listen
/// address: `wss://0.0.0.0:…` after `--listen 0.0.0.0:…` (not a name the certificate holds,
/// nor a destination to rely on), or a stale port after a rerun on another `--listen`. The
/// local agent always runs on this host, so its URLs are set to the loopback one on every
/// run (only when they differ; other fields are kept; written with
/// [`ctrl_io::atomic_write`]: atomically, mode 0600).
fn point_agent_at(config: &Path, url: &str) -> Result<(), UpError> {
    use serde_json::Value;
    let invalid = |message: String| UpError::AgentConfig {
        path: config.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(config).map_err(io(config.display().to_string()))?;
    let mut doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("not the agent's JSON config: {e}")))?;
    let fields = doc
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    let ws = match url.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}/ws/agents"),
        None => format!("{url}/ws/agents"),
    };
    let panel = format!("{url}/");
    let current = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    let (old_ws, old_panel) = (current("websocketUrl"), current("panelUrl"));
    if old_ws.as_deref() == Some(ws.as_str()) && old_panel.as_deref() == Some(panel.as_str()) {
        return Ok(());
    }
    log::info!(
        "local agent: panel URL {} -> {panel}",
        old_panel.as_deref().unwrap_or("(none)")
    );
    fields.insert("websocketUrl".into(), Value::String(ws));
    fields.insert("panelUrl".into(), Value::String(panel));
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| invalid(e.to_string()))?;
    ctrl_io::atomic_write(config, &text).map_err(io(format!("writing {}", config.display())))
}

fn spawn_agent(agent_bin: &Path, config: &Path, data: &Path) -> std::io::Result<Child> {
    Command::new(agent_bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .kill_on_drop(true)
        .spawn()
}

/// Stops the agent: SIGTERM, then SIGKILL after a grace period.
async fn stop_agent(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let exited = future::or(async { child.status().await.ok() }, async {
        Timer::after(AGENT_STOP_GRACE).await;
        None
    })
    .await;
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.status().await;
    }
}

/// Keeps `agent run` alive until `shutdown`, restarting it with exponential backoff.
async fn supervise(agent_bin: PathBuf, config: PathBuf, data: PathBuf, shutdown: Shutdown) {
    let mut backoff = BACKOFF_START;
    while !shutdown.is_triggered() {
        let started = Instant::now();
        let mut child = match spawn_agent(&agent_bin, &config, &data) {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot start {}: {e}", agent_bin.display());
                if wait_or_shutdown(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
        };
        log::info!("local agent started (pid {})", child.id());
        let exit = future::or(async { Some(child.status().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match exit {
            None => {
                stop_agent(child).await;
                return;
            }
            Some(status) => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = BACKOFF_START;
                }
                log::warn!(
                    "local agent exited ({}); restarting in {} s",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    backoff.as_secs()
                );
                if wait_or_shutdown(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// Sleeps `d`; `true` if the shutdown fired meanwhile.
async fn wait_or_shutdown(d: Duration, shutdown: &Shutdown) -> bool {
    future::or(
        async {
            Timer::after(d).await;
            false
        },
        async {
            shutdown.wait().await;
            true
        },
    )
    .await
}

/// `panel up`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), UpError> {
    let exe = std::env::current_exe().map_err(io("locating the panel binary"))?;
    let agent_bin = exe.with_file_name("agent");
    if !agent_bin.is_file() {
        return Err(UpError::NoAgentBinary(agent_bin));
    }
    let panel = Panel::bind(&config, shutdown.clone()).await?;
    let started = panel.started().clone();
    print!("{}", started.banner());
    let server = crate::exec::spawn(panel.run());

    let url = local_url(started.addr);
    let agent_dir = started.data_dir.join("agent");
    let agent_config = agent_dir.join("agent.json");
    let agent_data = agent_dir.join("data");
    let prepared = async {
        std::fs::create_dir_all(&agent_data).map_err(io(agent_data.display().to_string()))?;
        if !agent_config.exists() {
            let token = known_token(&started.admin_token).ok_or_else(|| UpError::TokenUnknown {
                config: agent_config.clone(),
            })?;
            register(&agent_bin, &url, &token, &started.cert_path, &agent_config).await?;
        }
        point_agent_at(&agent_config, &url)
    }
    .await;
    if let Err(e) = prepared {
        shutdown.trigger();
        let _ = server.await;
        return Err(e);
    }
    print!("{}", instructions(&started, &url, &agent_config));
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let agent = crate::exec::spawn(supervise(
        agent_bin,
        agent_config,
        agent_data,
        shutdown.clone(),
    ));
    let served = server.await;
    // The panel only stops on shutdown (or a fatal error): make sure the agent stops too.
    shutdown.trigger();
    agent.await;
    served?;
    println!("panel stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_over_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8443".parse().unwrap()),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            local_url("[::]:8443".parse().unwrap()),
            "https://[::1]:8443"
        );
        assert_eq!(
            local_url("10.1.2.3:9000".parse().unwrap()),
            "https://10.1.2.3:9000"
        );
    }

    #[test]
    fn agent_name_is_a_valid_registration_name() {
        let n = agent_name();
        assert!(!n.is_empty() && n.len() <= 64);
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
    }

    #[test]
    fn instructions_show_the_token_only_when_generated() {
        let mut s = Started {
            addr: "127.0.0.1:8443".parse().unwrap(),
            base_url: "https://127.0.0.1:8443".into(),
            admin_token: AdminTokenOrigin::Generated("tok123".into()),
            cert_path: "data/tls/panel.crt".into(),
            fingerprint_sha256: "AA:BB".into(),
            data_dir: "data".into(),
            first_admin: None,
        };
        let text = instructions(
            &s,
            "https://127.0.0.1:8443",
            Path::new("data/agent/agent.json"),
        );
        assert!(text.contains("export PANEL_ADMIN_TOKEN=tok123"));
        assert!(text.contains("/api/servers/fakegame-1/power"));
        let cert = std::env::current_dir().unwrap().join("data/tls/panel.crt");
        let cert_flag = format!("curl --cacert {} ", cert.display());
        assert_eq!(text.matches(&cert_flag).count(), 3, "{text}");
        s.admin_token = AdminTokenOrigin::Stored;
        let text = instructions(&s, "https://127.0.0.1:8443", Path::new("a.json"));
        assert!(!text.contains("tok123"));
        assert!(text.contains("printed on first start"));
    }

    #[test]
    fn printed_paths_are_single_shell_words() {
        assert_eq!(
            shell_word(Path::new("/a/b-c_d.e/f.json")),
            "/a/b-c_d.e/f.json"
        );
        assert_eq!(shell_word(Path::new("/my dir/x")), "'/my dir/x'");
        assert_eq!(shell_word(Path::new("/it's")), "'/it'\\''s'");
        assert_eq!(shell_word(Path::new("/$HOME")), "'/$HOME'");
    }

    #[test]
    fn the_example_egg_is_found_from_any_directory() {
        // The test runs in panel/, where tests/fakegame/egg.json does not exist: the path
        // comes from the source tree and is absolute.
        let egg = example_egg();
        assert!(Path::new(&egg).is_absolute(), "{egg}");
        assert!(egg.ends_with("/tests/fakegame/egg.json"), "{egg}");
        assert!(Path::new(&egg).is_file(), "{egg}");
    }

    #[test]
    fn the_local_agent_is_pointed_at_this_runs_url() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("panel-up-point-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("agent.json");
        std::fs::write(
            &config,
            r#"{"id":"a1","token":"t","refreshToken":"r","websocketUrl":"wss://0.0.0.0:9/ws/agents","panelUrl":"https://127.0.0.1:9/","caCert":"/c.pem"}"#,
        )
        .unwrap();
        point_agent_at(&config, "https://127.0.0.1:8443").unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert_eq!(doc["websocketUrl"], "wss://127.0.0.1:8443/ws/agents");
        assert_eq!(doc["panelUrl"], "https://127.0.0.1:8443/");
        for (k, v) in [
            ("id", "a1"),
            ("token", "t"),
            ("refreshToken", "r"),
            ("caCert", "/c.pem"),
        ] {
            assert_eq!(doc[k], v, "{k} is kept");
        }
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Already right: the file is left alone.
        let before = std::fs::metadata(&config).unwrap().modified().unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        point_agent_at(&config, "https://127.0.0.1:8443").unwrap();
        let after = std::fs::metadata(&config).unwrap();
        assert_eq!(after.modified().unwrap(), before);
        assert_eq!(after.permissions().mode() & 0o777, 0o640, "not rewritten");
        // A file that is not the agent's config is an error naming it, not a panic.
        std::fs::write(&config, "[1]").unwrap();
        let err = point_agent_at(&config, "https://127.0.0.1:8443").unwrap_err();
        assert!(err.to_string().contains("agent.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
