//! Install scripts: the egg's script run once in its own container, on create and on
//! `reinstall_server`, with the server's files at `/mnt/server`.
//!
//! The install container is confined exactly like the server (`plan::plan_install`: its
//! non-root user, every capability dropped, `no-new-privileges`, the same memory, CPU and
//! pids limits, the servers' network), never privileged — Wings ran installers privileged
//! (CVE-2023-32080); nothing in an egg can ask for more (`proto::eggs::check::install`).
//! Its output streams as `install_log` events (throttled like a console); it is killed
//! after the node's `installTimeoutSecs` or when the server's files exceed twice their disk
//! limit; it is always removed afterwards. The server's state goes `installing` → the
//! state its container is in (`created`, or `stopped` after a reinstall) or
//! `install_failed` with the exit code.
//!
//! The task holds only weak references: deleting the server (or dropping the manager)
//! abandons the install. A restarted agent re-adopts an install container it finds
//! (`adopt`): it follows a running one with a fresh time limit, or settles one that ended
//! while it was away (its output then is not replayed).

use super::plan::{self, LABEL_AGENT, LABEL_INSTALL, PlanInput};
use super::server::{Change, Server};
use super::state::{Exit, Trigger};
use super::status::exit_of;
use super::{Inner, Outcome, ServerError, ack, network, power, pull};
use crate::docker::{AttachOptions, DockerClient, OutputStream, StreamKind};
use crate::logs::{Console, LogLine, Stream};
use futures_lite::StreamExt;
use proto::eggs::InstallScript;
use proto::{EventKind, ServerLog, ServerState};
use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often a running install is checked (time limit, disk, the server still there).
const TICK: Duration = Duration::from_secs(1);
/// How long to wait for Docker to report the exit once the output ended.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// `reinstall_server`: the script again, on a server that is not running.
pub(super) async fn reinstall(inner: &Inner, sid: &str) -> Outcome {
    let server = inner.get(sid)?;
    let _power = power::claim(&server, "reinstall")?;
    if server.extras.install.is_none() {
        return Err(ServerError::NoInstall {
            server_id: sid.to_owned(),
        });
    }
    let docker = inner.docker().await?;
    if docker
        .container_inspect(&server.container_id)
        .await?
        .state
        .running
    {
        return Err(ServerError::MustBeStopped {
            server_id: sid.to_owned(),
            action: "reinstall",
        });
    }
    begin(inner, &server)?;
    Ok(ack(sid, ServerState::Installing))
}

/// Moves the server to `installing` and runs its script in the background.
pub(super) fn begin(inner: &Inner, server: &Arc<Server>) -> Result<(), ServerError> {
    let Some(install) = server.extras.install.clone() else {
        return Ok(());
    };
    server.apply(Trigger::Install, Change::default())?;
    let run = Run::new(inner, server);
    server.set_install_task(smol::spawn(async move {
        let outcome = run.fresh(&install).await;
        run.finish(outcome).await;
    }));
    Ok(())
}

/// Install containers found at adoption: followed (their server re-enters `installing`),
/// or removed when their server is gone or running.
pub(super) async fn adopt(inner: &Inner, docker: &DockerClient) -> Result<(), ServerError> {
    let label = format!("{LABEL_AGENT}={}", inner.agent_id);
    for c in docker.containers_by_label(&label).await? {
        let Some(sid) = c.labels.get(LABEL_INSTALL) else {
            continue;
        };
        if !inner.named_ours(&c.names) {
            continue; // another agent sharing this Engine under the same id? never touch it
        }
        let server = inner.known(sid);
        if server.as_ref().is_some_and(|s| s.has_install_task()) {
            continue; // this agent runs it
        }
        let followable = server.as_ref().filter(|s| {
            !matches!(
                s.state(),
                ServerState::Running | ServerState::Starting | ServerState::Stopping
            )
        });
        let Some(server) = followable else {
            log::warn!("removing the install container of server {sid}: nothing to install for");
            remove(docker, &c.id).await;
            continue;
        };
        if server.try_power().is_none() {
            continue; // a power action is under way; the next adoption decides
        }
        if let Err(e) = server.apply(Trigger::Install, Change::default()) {
            log::warn!("server {sid}: cannot follow its install: {e}");
            continue;
        }
        log::info!("server {sid}: following its install, begun before a restart");
        let run = Run::new(inner, server);
        let id = c.id.clone();
        server.set_install_task(smol::spawn(async move {
            let outcome = run.adopted(id).await;
            run.finish(outcome).await;
        }));
    }
    Ok(())
}

/// How an install ended.
enum Ended {
    /// The script exited with this code.
    Exited(i64),
    /// The install could not run or was stopped, with the reason.
    Failed(String),
    /// The server or the manager is gone: nothing to report.
    Abandoned,
}

/// One install, holding only weak references (see the module docs).
struct Run {
    inner: Weak<Inner>,
    server: Weak<Server>,
    sid: String,
}

impl Run {
    fn new(inner: &Inner, server: &Arc<Server>) -> Run {
        Run {
            inner: inner.me.clone(),
            server: Arc::downgrade(server),
            sid: server.id.clone(),
        }
    }

    fn alive(&self) -> Option<(Arc<Inner>, Arc<Server>)> {
        Some((self.inner.upgrade()?, self.server.upgrade()?))
    }

    /// Pulls the image if needed, creates, attaches and starts the install container,
    /// then follows it.
    async fn fresh(&self, install: &InstallScript) -> Ended {
        let Some((inner, server)) = self.alive() else {
            return Ended::Abandoned;
        };
        let docker = match inner.docker().await {
            Ok(d) => d,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let prepared = prepare(&inner, &server, &docker, install).await;
        drop((inner, server));
        match prepared {
            Ok((id, output)) => self.follow(&docker, id, Some(output)).await,
            Err(e) => Ended::Failed(e.to_string()),
        }
    }

    /// An install container found at adoption.
    async fn adopted(&self, id: String) -> Ended {
        let Some((inner, _)) = self.alive() else {
            return Ended::Abandoned;
        };
        let docker = match inner.docker().await {
            Ok(d) => d,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        drop(inner);
        let opts = AttachOptions {
            stdin: false,
            logs: false,
            ..AttachOptions::default()
        };
        let output = match docker.attach(&id, &opts).await {
            Ok(a) => Some(a.reader),
            Err(e) => {
                log::warn!("server {}: cannot attach to its install: {e}", self.sid);
                None
            }
        };
        self.follow(&docker, id, output).await
    }

    /// Streams the output until the container exits, the time limit passes or the files
    /// outgrow the disk limit; then removes the container.
    async fn follow(
        &self,
        docker: &DockerClient,
        id: String,
        output: Option<OutputStream>,
    ) -> Ended {
        let outcome = self.watch(docker, &id, output).await;
        let outcome = match outcome {
            Watch::Ended => exit_code(docker, &id).await,
            Watch::Stop(reason) => {
                if let Err(e) = docker.container_kill(&id, "SIGKILL").await {
                    log::debug!("server {}: killing its install: {e}", self.sid);
                }
                Ended::Failed(reason)
            }
            Watch::Abandoned => return Ended::Abandoned,
        };
        remove(docker, &id).await;
        outcome
    }

    async fn watch(
        &self,
        docker: &DockerClient,
        id: &str,
        mut output: Option<OutputStream>,
    ) -> Watch {
        let Some((inner, _)) = self.alive() else {
            return Watch::Abandoned;
        };
        let mut limits = Limits::new(&inner.cfg.policy);
        let mut console = Console::new(
            inner.cfg.log_rate,
            inner.cfg.log_burst,
            inner.console_budget.clone(),
        );
        drop(inner);
        let mut lines = Vec::new();
        loop {
            let next = match output.as_mut() {
                Some(out) => {
                    futures_lite::future::or(async { Some(out.next().await) }, async {
                        smol::Timer::after(TICK).await;
                        None
                    })
                    .await
                }
                None => {
                    smol::Timer::after(TICK).await;
                    None
                }
            };
            match next {
                Some(Some(Ok((kind, bytes)))) => {
                    let stream = match kind {
                        StreamKind::Stdout => Stream::Stdout,
                        StreamKind::Stderr => Stream::Stderr,
                        _ => continue,
                    };
                    console.push(stream, &bytes, Instant::now(), &mut lines);
                }
                Some(None) | Some(Some(Err(_))) => {
                    console.finish(Instant::now(), &mut lines);
                    self.emit(&mut lines);
                    return Watch::Ended;
                }
                None => console.flush_dropped(&mut lines),
            }
            if !lines.is_empty() && !self.emit(&mut lines) {
                return Watch::Abandoned;
            }
            // Checked by the clock, not by the timer above: a script that never stops
            // printing never lets that timer fire.
            if limits.due() {
                let Some(server) = self.server.upgrade() else {
                    return Watch::Abandoned;
                };
                if output.is_none() {
                    match docker.container_inspect(id).await {
                        Ok(i) if i.state.running => {}
                        _ => return Watch::Ended,
                    }
                }
                if let Some(reason) = limits.exceeded(&server).await {
                    return Watch::Stop(reason);
                }
            }
        }
    }

    /// Sends lines as `install_log` events; `false` when the server is gone.
    fn emit(&self, lines: &mut Vec<LogLine>) -> bool {
        let Some(server) = self.server.upgrade() else {
            lines.clear();
            return false;
        };
        for line in lines.drain(..) {
            server.emit(install_log(&server.id, line));
        }
        true
    }

    /// Reports the end: `install_failed` with the exit code or reason, or the state of the
    /// server's own container.
    async fn finish(&self, outcome: Ended) {
        let Some((inner, server)) = self.alive() else {
            return;
        };
        let (trigger, change, said) = match outcome {
            Ended::Abandoned => return,
            Ended::Exited(0) => {
                let exit = match inner.docker().await {
                    Ok(d) => match d.container_inspect(&server.container_id).await {
                        Ok(i) => exit_of(&i.state),
                        Err(_) => Exit::NeverRan,
                    },
                    Err(_) => Exit::NeverRan,
                };
                let change = Change {
                    exit_code: Some(0),
                    reason: Some("install script finished".into()),
                    ..Change::default()
                };
                (
                    Trigger::Installed(exit),
                    change,
                    "install script finished".to_owned(),
                )
            }
            Ended::Exited(code) => {
                let reason = format!("install script failed with exit code {code}");
                let change = Change {
                    exit_code: Some(code),
                    reason: Some(reason.clone()),
                    ..Change::default()
                };
                (Trigger::InstallFailed, change, reason)
            }
            Ended::Failed(reason) => {
                let reason = format!("install failed: {reason}");
                let change = Change {
                    reason: Some(reason.clone()),
                    ..Change::default()
                };
                (Trigger::InstallFailed, change, reason)
            }
        };
        let level = if trigger == Trigger::InstallFailed {
            "ERROR"
        } else {
            "INFO"
        };
        log::info!("server {}: {said}", server.id);
        server.emit(install_log(
            &server.id,
            LogLine {
                level,
                message: format!("[agent] {said}"),
                stream: None,
                dropped: None,
            },
        ));
        server.observe(trigger, change);
    }
}

/// The time limit and the disk check of one install, looked at once per [`TICK`].
struct Limits {
    deadline: Instant,
    timeout_secs: u64,
    disk_every: Duration,
    last_tick: Instant,
    last_disk: Instant,
}

impl Limits {
    fn new(policy: &crate::node::NodePolicy) -> Limits {
        let now = Instant::now();
        Limits {
            deadline: now + policy.install_timeout(),
            timeout_secs: policy.install_timeout_secs,
            disk_every: policy.disk_check(),
            last_tick: now,
            last_disk: now,
        }
    }

    /// Whether a tick has passed since the last look.
    fn due(&mut self) -> bool {
        let due = self.last_tick.elapsed() >= TICK;
        if due {
            self.last_tick = Instant::now();
        }
        due
    }

    /// Why the install must stop now, if it must.
    async fn exceeded(&mut self, server: &Arc<Server>) -> Option<String> {
        if Instant::now() >= self.deadline {
            return Some(format!(
                "the install script ran longer than {} s (installTimeoutSecs) and was killed",
                self.timeout_secs
            ));
        }
        if self.last_disk.elapsed() < self.disk_every {
            return None;
        }
        self.last_disk = Instant::now();
        over_disk(server).await
    }
}

/// How watching a running install ended.
enum Watch {
    /// The output ended: the container exited (or is about to).
    Ended,
    /// The agent stops it, for this reason.
    Stop(String),
    Abandoned,
}

/// Everything before the script runs; a failure leaves no install container behind.
async fn prepare(
    inner: &Inner,
    server: &Server,
    docker: &DockerClient,
    install: &InstallScript,
) -> Result<(String, OutputStream), ServerError> {
    let sid = &server.id;
    pull::ensure_image(inner, docker, sid, &install.image).await?;
    network::ensure(docker, &inner.cfg.policy.network).await?;
    let name = plan::install_container_name(&inner.cfg.name_prefix, sid);
    clear_leftover(inner, docker, sid, &name).await?;
    let volume = inner.volume_path(sid).to_string_lossy().into_owned();
    let input = PlanInput {
        agent_id: &inner.agent_id,
        server_id: sid,
        volume: &volume,
        policy: &inner.cfg.policy,
        epoch: server.meta.epoch,
    };
    let spec = plan::plan_install(&input, &server.meta, &server.extras, install);
    let id = docker.container_create(&name, &spec).await?;
    let started = async {
        let opts = AttachOptions {
            stdin: false,
            ..AttachOptions::default()
        };
        let attach = docker.attach(&id, &opts).await?;
        docker.container_start(&id).await?;
        Ok::<_, ServerError>(attach.reader)
    };
    match started.await {
        Ok(output) => {
            log::info!("server {sid}: install container {id} started");
            Ok((id, output))
        }
        Err(e) => {
            remove(docker, &id).await;
            Err(e)
        }
    }
}

/// An install container left by an earlier run of this agent is removed; a container of
/// that name that is not ours is a conflict.
async fn clear_leftover(
    inner: &Inner,
    docker: &DockerClient,
    sid: &str,
    name: &str,
) -> Result<(), ServerError> {
    match docker.container_inspect(name).await {
        Ok(c) => {
            let labels = &c.config.labels;
            let ours = labels.get(LABEL_AGENT).map(String::as_str) == Some(&*inner.agent_id)
                && labels.get(LABEL_INSTALL).map(String::as_str) == Some(sid);
            if !ours {
                return Err(ServerError::NameInUse {
                    name: name.to_owned(),
                });
            }
            remove(docker, &c.id).await;
            Ok(())
        }
        Err(e) if e.is_container_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a server's install container, if this agent has one (delete).
pub(super) async fn remove_for(inner: &Inner, docker: &DockerClient, sid: &str) {
    let name = plan::install_container_name(&inner.cfg.name_prefix, sid);
    if let Err(e) = clear_leftover(inner, docker, sid, &name).await {
        log::warn!("server {sid}: its install container: {e}");
    }
}

async fn remove(docker: &DockerClient, id: &str) {
    match docker.container_remove(id, true, true).await {
        Ok(()) => {}
        Err(e) if e.is_container_not_found() => {}
        Err(e) => log::warn!("cannot remove install container {id}: {e}"),
    }
}

/// The exit code once Docker shows the container stopped.
async fn exit_code(docker: &DockerClient, id: &str) -> Ended {
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        match docker.container_inspect(id).await {
            Ok(i) if !i.state.running => return Ended::Exited(i.state.exit_code),
            Ok(_) if Instant::now() < deadline => {}
            Ok(_) => {
                let _ = docker.container_kill(id, "SIGKILL").await;
                return Ended::Failed("its output ended but it did not exit".into());
            }
            Err(e) => return Ended::Failed(e.to_string()),
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

/// The reason to stop an install whose files reached twice the disk limit (the files are
/// then the server's problem; the install must not fill the node meanwhile).
async fn over_disk(server: &Arc<Server>) -> Option<String> {
    let volume = server.volume.clone();
    let used = smol::unblock(move || volume.measure_now()).await.ok()?;
    let limit = server.meta.disk;
    (used >= limit.saturating_mul(2)).then(|| {
        format!(
            "the server's files reached {} MiB, twice the disk limit of {} MiB",
            used >> 20,
            limit >> 20
        )
    })
}

fn install_log(sid: &str, line: LogLine) -> EventKind<'static> {
    EventKind::InstallLog(ServerLog {
        server_id: Cow::Owned(sid.to_owned()),
        log_level: Cow::Borrowed(line.level),
        message: Cow::Owned(line.message),
        stream: line.stream.map(|s| Cow::Borrowed(s.as_str())),
        dropped: line.dropped.filter(|&n| n > 0),
    })
}
