//! The panel's commands, one method each, answering with the spec's shapes.

use super::plan::{self, Meta, PlanInput};
use super::server::{Change, Expected, Server};
use super::tasks;
use super::{Inner, Reservation, ServerError, Slot};
use crate::docker::{AttachOptions, DockerClient, DockerError};
use crate::files::{DEFAULT_MAX_READ_BYTES, Volume, WriteOptions};
use base64::Engine;
use proto::validate::{self, IdKind, ValidationError};
use proto::{
    Action, Command, ContentEncoding, CreateServer, FileContent, FileList, MemoryAvailability,
    Network, Players, Resources, Response, ServerState, StatusData,
};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Poll interval while waiting for a container to exit.
const EXIT_POLL: Duration = Duration::from_millis(200);
/// How long to wait for the kernel after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for Docker's `die` event to settle the state after an exit.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest grace period a stop may ask for.
const MAX_STOP_TIMEOUT: u64 = 3600;
/// Deadline of a player query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Grace period of the stop that precedes a delete.
const DELETE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

type Outcome = Result<Value, ServerError>;

fn ack(server_id: &str, status: ServerState) -> Value {
    json!({"serverId": server_id, "status": status})
}

fn required_server(cmd: &Command<'_>) -> Result<String, ServerError> {
    let Some(id) = cmd.server_id.as_deref() else {
        return Err(ValidationError::InvalidId {
            kind: IdKind::Server,
            reason: format!("action `{}` needs a serverId", cmd.action.name()),
        }
        .into());
    };
    validate::id(IdKind::Server, id)?;
    Ok(id.to_owned())
}

impl Inner {
    /// Runs one command and turns the outcome into the response.
    pub(super) async fn execute(self: Arc<Self>, cmd: Command<'static>) -> Response<'static> {
        let id = cmd.id.clone();
        let target = cmd.target_server().map(str::to_owned);
        let action = cmd.action.name().to_owned();
        let outcome = self.run(cmd).await;
        let now = Cow::Owned(proto::time::now_rfc3339());
        let mut resp = match outcome {
            Ok(data) => Response::ok(id, now, Some(data)),
            Err(e) => {
                log::info!(
                    "{action} {}: {} ({})",
                    target.as_deref().unwrap_or("-"),
                    e,
                    e.code()
                );
                Response::err(id, now, e.code(), self.scrub(&e.to_string()))
            }
        };
        resp.agent_id = Some(Cow::Owned(self.agent_id.to_string()));
        resp.server_id = target.map(Cow::Owned);
        resp
    }

    /// Docker's messages can quote the host path of a volume (a bind-mount error): the
    /// wire gets `DATA/volumes/...` instead.
    fn scrub(&self, message: &str) -> String {
        match self.volumes_dir().to_str() {
            Some(dir) if !dir.is_empty() => message.replace(dir, "DATA/volumes"),
            _ => message.to_owned(),
        }
    }

    async fn run(&self, cmd: Command<'static>) -> Outcome {
        if let Action::CreateServer(c) = cmd.action {
            return self.create(c).await;
        }
        if let Action::Unknown(name) = &cmd.action {
            return Err(ServerError::UnknownAction(name.to_string()));
        }
        let sid = required_server(&cmd)?;
        match cmd.action {
            Action::StartServer => self.start(&sid).await,
            Action::StopServer(p) => {
                let p = p.unwrap_or_default();
                self.stop(&sid, p.signal.as_deref(), p.timeout).await
            }
            Action::RestartServer(p) => {
                let p = p.unwrap_or_default();
                self.restart(&sid, p.signal.as_deref(), p.timeout).await
            }
            Action::KillServer(p) => {
                let signal = p.and_then(|p| p.signal).map(Cow::into_owned);
                self.kill(&sid, signal.as_deref()).await
            }
            Action::DeleteServer(p) => self.delete(&sid, p.is_some_and(|p| p.purge)).await,
            Action::GetStatus => self.status(&sid).await,
            Action::SendCommand(c) => self.send_command(&sid, &c.command).await,
            Action::ListFiles(p) => self.list_files(&sid, p.path.into_owned()).await,
            Action::GetFile(p) => self.get_file(&sid, p.path.into_owned()).await,
            Action::WriteFile(w) => {
                self.write_file(&sid, w.path.into_owned(), &w.content, w.encoding)
                    .await
            }
            Action::CreateServer(_) | Action::Unknown(_) => unreachable!("handled above"),
        }
    }

    // ----- create -----

    async fn create(&self, c: CreateServer<'static>) -> Outcome {
        let sid = c.server_id.to_string();
        validate::id(IdKind::Server, &sid)?;
        let valid = validate::egg(&c.egg_config)?;
        let docker = self.docker().await?;
        let reservation = Reservation {
            memory: valid.limits.memory.0,
            cpu_millis: valid.limits.cpu.0,
            ports: valid
                .ports
                .iter()
                .map(|p| plan::PortMeta {
                    container: p.container,
                    host: p.host,
                    udp: p.protocol == validate::Protocol::Udp,
                })
                .collect(),
        };
        self.reserve(&sid, reservation)?;
        match self.create_reserved(&docker, &sid, &c, &valid).await {
            Ok(server) => {
                let data = json!({
                    "serverId": sid,
                    "status": ServerState::Created,
                    "containerId": server.container_id,
                });
                self.servers.lock().insert(sid, Slot::Ready(server));
                Ok(data)
            }
            Err(e) => {
                self.servers.lock().remove(&sid);
                Err(e)
            }
        }
    }

    /// Claims the id, the ports and the capacity in one step under the map lock.
    fn reserve(&self, sid: &str, want: Reservation) -> Result<(), ServerError> {
        let mut servers = self.servers.lock();
        if servers.contains_key(sid) {
            return Err(ServerError::AlreadyExists {
                server_id: sid.to_owned(),
            });
        }
        let (mut memory, mut cpu) = (0u64, 0u32);
        for (other, slot) in servers.iter() {
            let r = slot.reservation();
            memory = memory.saturating_add(r.memory);
            cpu = cpu.saturating_add(r.cpu_millis);
            if let Some(p) = want
                .ports
                .iter()
                .find(|p| r.ports.iter().any(|q| q.host == p.host && q.udp == p.udp))
            {
                return Err(ServerError::PortConflict {
                    port: p.host,
                    protocol: p.protocol(),
                    by: format!(" by server {other}"),
                });
            }
        }
        let cap = self.capacity;
        if memory.saturating_add(want.memory) > cap.memory {
            return Err(ServerError::Insufficient {
                what: "memory",
                detail: format!(
                    "the server asks for {} MiB; {} MiB of the node's {} MiB are already reserved",
                    want.memory >> 20,
                    memory >> 20,
                    cap.memory >> 20
                ),
            });
        }
        if cpu.saturating_add(want.cpu_millis) > cap.cpu_millis {
            return Err(ServerError::Insufficient {
                what: "CPU",
                detail: format!(
                    "the server asks for {} cores; {} of the node's {} cores are already reserved",
                    f64::from(want.cpu_millis) / 1000.0,
                    f64::from(cpu) / 1000.0,
                    f64::from(cap.cpu_millis) / 1000.0
                ),
            });
        }
        servers.insert(sid.to_owned(), Slot::Creating(want));
        Ok(())
    }

    /// Everything after the reservation; on failure nothing is left behind.
    async fn create_reserved(
        &self,
        docker: &DockerClient,
        sid: &str,
        c: &CreateServer<'static>,
        valid: &validate::ValidEgg,
    ) -> Result<Arc<Server>, ServerError> {
        for p in &valid.ports {
            check_port_free(
                self.cfg.host_ip,
                p.host,
                p.protocol == validate::Protocol::Udp,
            )?;
        }
        check_disk(self.volumes_dir(), valid.limits.disk.0)?;
        let image = c.egg_config.image.as_ref();
        if docker.image_inspect(image).await?.is_none() {
            log::info!("server {sid}: pulling image {image}");
            docker.image_pull(image).await?;
        }
        let volume_path = self.volume_path(sid);
        let volume_str = volume_path.to_string_lossy().into_owned();
        let input = PlanInput {
            agent_id: &self.agent_id,
            server_id: sid,
            volume: &volume_str,
            host_ip: self.cfg.host_ip,
        };
        let (spec, meta) = plan::plan(&input, &c.egg_config, valid);
        let created_dir = prepare_volume_dir(sid, &volume_path, &meta)?;
        let cleanup_dir = || {
            if created_dir {
                let _ = std::fs::remove_dir(&volume_path);
            }
        };
        let volume = match Volume::open(&volume_path) {
            Ok(v) => Arc::new(v.with_owner(meta.uid, meta.gid)),
            Err(e) => {
                cleanup_dir();
                return Err(e.into());
            }
        };
        let container_id = match docker
            .container_create(&plan::container_name(sid), &spec)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                cleanup_dir();
                return Err(e.into());
            }
        };
        log::info!("server {sid}: created container {container_id}");
        Ok(Arc::new(Server::new(
            sid.to_owned(),
            container_id,
            meta,
            volume,
            volume_path,
            self.agent_id.clone(),
            self.outbox.clone(),
            ServerState::Created,
        )))
    }

    // ----- power -----

    fn power<'s>(
        server: &'s Server,
        action: &'static str,
    ) -> Result<super::server::PowerGuard<'s>, ServerError> {
        server.try_power().ok_or_else(|| ServerError::Busy {
            server_id: server.id.clone(),
            action,
        })
    }

    async fn start(&self, sid: &str) -> Outcome {
        let server = self.get(sid)?;
        let _power = Self::power(&server, "start")?;
        let docker = self.docker().await?;
        let inspect = docker.container_inspect(&server.container_id).await?;
        if inspect.state.running {
            self.ensure_session(&server, &docker).await?;
        } else {
            self.start_container(&server, &docker).await?;
        }
        Ok(ack(sid, server.state()))
    }

    /// Attaches (so the first output is seen), starts, then opens the sampler.
    async fn start_container(
        &self,
        server: &Arc<Server>,
        docker: &DockerClient,
    ) -> Result<(), ServerError> {
        let previous = server.state();
        server.clear_expected();
        if previous != ServerState::Restarting {
            server.set_state(ServerState::Starting, Change::default());
        }
        let transitional = server.state();
        let fail = |reason: String| {
            server.set_state_from(
                transitional,
                ServerState::Stopped,
                Change {
                    reason: Some(reason),
                    ..Change::default()
                },
            );
        };
        let attach = match docker
            .attach(&server.container_id, &AttachOptions::default())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                fail(format!("failed to start: {e}"));
                return Err(e.into());
            }
        };
        self.install_console(server, attach).await;
        if let Err(e) = docker.container_start(&server.container_id).await {
            server.console.mark_dead();
            fail(format!("failed to start: {e}"));
            return Err(e.into());
        }
        self.ensure_session(server, docker).await
    }

    async fn install_console(&self, server: &Arc<Server>, attach: crate::docker::Attach) {
        server.console.install(attach.writer).await;
        let task = smol::spawn(tasks::pump_console(
            attach.reader,
            Arc::downgrade(server),
            server.console.clone(),
            self.cfg.log_rate,
            self.cfg.log_burst,
        ));
        server.set_console_task(task);
    }

    /// Makes the console and the sampler match a running container, and the state say
    /// running. Serialised with exit handling (`session_lock`).
    pub(super) async fn ensure_session(
        &self,
        server: &Arc<Server>,
        docker: &DockerClient,
    ) -> Result<(), ServerError> {
        let _session = server.session_lock.lock().await;
        let inspect = docker.container_inspect(&server.container_id).await?;
        if !inspect.state.running {
            return Ok(());
        }
        if !server.console.is_live() {
            let opts = AttachOptions {
                logs: false,
                ..AttachOptions::default()
            };
            match docker.attach(&server.container_id, &opts).await {
                Ok(a) => self.install_console(server, a).await,
                Err(e) => log::warn!("server {}: cannot attach the console: {e}", server.id),
            }
        }
        let pid = u32::try_from(inspect.state.pid).unwrap_or(0);
        if !server.has_stats_task() && pid > 0 {
            match server.stats.open(pid) {
                Ok(()) => {
                    let task = smol::spawn(tasks::stats_loop(
                        Arc::downgrade(server),
                        self.cfg.resource_interval,
                    ));
                    server.set_stats_task(task);
                }
                Err(e) => log::warn!("server {}: no resource sampling: {e}", server.id),
            }
        }
        if matches!(
            server.state(),
            ServerState::Starting
                | ServerState::Restarting
                | ServerState::Created
                | ServerState::Stopped
                | ServerState::Crashed
                | ServerState::Unknown
        ) {
            server.set_state(
                ServerState::Running,
                Change {
                    pid: (pid > 0).then_some(u64::from(pid)),
                    ..Change::default()
                },
            );
        }
        Ok(())
    }

    async fn stop(&self, sid: &str, signal: Option<&str>, timeout: Option<u64>) -> Outcome {
        let server = self.get(sid)?;
        let _power = Self::power(&server, "stop")?;
        let signal = signal.map(validate::signal).transpose()?.map(|s| s.0);
        let timeout = self.stop_timeout(timeout);
        let docker = self.docker().await?;
        let inspect = docker.container_inspect(&server.container_id).await?;
        if inspect.state.running {
            self.stop_running(&server, &docker, signal, timeout, Expected::Stop)
                .await?;
        }
        let state = match server.state() {
            ServerState::Created => ServerState::Created,
            ServerState::Crashed => ServerState::Crashed,
            _ => ServerState::Stopped,
        };
        Ok(ack(sid, state))
    }

    fn stop_timeout(&self, secs: Option<u64>) -> Duration {
        secs.map_or(self.cfg.stop_timeout, |s| {
            Duration::from_secs(s.min(MAX_STOP_TIMEOUT))
        })
    }

    /// The egg's stop command (or the signal), the grace period, then SIGKILL.
    async fn stop_running(
        &self,
        server: &Arc<Server>,
        docker: &DockerClient,
        signal: Option<&'static str>,
        timeout: Duration,
        why: Expected,
    ) -> Result<(), ServerError> {
        let before = server.state();
        server.expect_exit(why);
        let transitional = if why == Expected::Restart {
            ServerState::Restarting
        } else {
            ServerState::Stopping
        };
        server.set_state(transitional, Change::default());
        let mut asked = false;
        if signal.is_none()
            && let Some(cmd) = &server.meta.stop_command
        {
            match server.console.send_line(cmd).await {
                Ok(true) => asked = true,
                Ok(false) => log::info!("server {}: no console for `{cmd}`; signalling", server.id),
                Err(e) => log::info!(
                    "server {}: console write failed ({e}); signalling",
                    server.id
                ),
            }
        }
        if !asked {
            let signal = signal.unwrap_or(&server.meta.stop_signal);
            if let Err(e) = kill(docker, &server.container_id, signal).await {
                server.clear_expected();
                server.set_state_from(transitional, before, Change::default());
                return Err(e.into());
            }
        }
        if !wait_exit(docker, &server.container_id, timeout).await? {
            log::info!(
                "server {}: still running after {} s; SIGKILL",
                server.id,
                timeout.as_secs()
            );
            kill(docker, &server.container_id, "SIGKILL").await?;
            if !wait_exit(docker, &server.container_id, KILL_GRACE).await? {
                server.clear_expected();
                return Err(DockerError::Timeout {
                    what: format!("the exit of server {} after SIGKILL", server.id),
                    after: KILL_GRACE,
                }
                .into());
            }
        }
        if why != Expected::Restart {
            settle(server, transitional).await;
        }
        Ok(())
    }

    async fn restart(&self, sid: &str, signal: Option<&str>, timeout: Option<u64>) -> Outcome {
        let server = self.get(sid)?;
        let _power = Self::power(&server, "restart")?;
        let signal = signal.map(validate::signal).transpose()?.map(|s| s.0);
        let timeout = self.stop_timeout(timeout);
        let docker = self.docker().await?;
        let inspect = docker.container_inspect(&server.container_id).await?;
        if inspect.state.running {
            self.stop_running(&server, &docker, signal, timeout, Expected::Restart)
                .await?;
        }
        self.start_container(&server, &docker).await?;
        Ok(ack(sid, server.state()))
    }

    async fn kill(&self, sid: &str, signal: Option<&str>) -> Outcome {
        let server = self.get(sid)?;
        let _power = Self::power(&server, "kill")?;
        let signal = signal.map_or(Ok("SIGKILL"), |s| validate::signal(s).map(|s| s.0))?;
        let docker = self.docker().await?;
        let inspect = docker.container_inspect(&server.container_id).await?;
        if !inspect.state.running {
            return Ok(ack(sid, server.state()));
        }
        server.expect_exit(Expected::Kill);
        if let Err(e) = kill(&docker, &server.container_id, signal).await {
            server.clear_expected();
            return Err(e.into());
        }
        let wait = if signal == "SIGKILL" {
            KILL_GRACE
        } else {
            Duration::from_secs(2)
        };
        if wait_exit(&docker, &server.container_id, wait).await? {
            settle(&server, ServerState::Running).await;
        } else {
            // The signal did not end the server (e.g. SIGUSR1): its next exit is not ours.
            server.clear_expected();
        }
        Ok(ack(sid, server.state()))
    }

    async fn delete(&self, sid: &str, purge: bool) -> Outcome {
        let server = self.get(sid)?;
        let _power = Self::power(&server, "delete")?;
        let docker = self.docker().await?;
        match docker.container_inspect(&server.container_id).await {
            Ok(i) if i.state.running => {
                if let Err(e) = self
                    .stop_running(
                        &server,
                        &docker,
                        None,
                        DELETE_STOP_TIMEOUT,
                        Expected::Delete,
                    )
                    .await
                {
                    log::warn!("server {sid}: stop before delete failed: {e}; forcing");
                }
            }
            Ok(_) => {}
            Err(e) if e.is_container_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        server.deleting.store(true, Ordering::Release);
        match docker
            .container_remove(&server.container_id, true, true)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_container_not_found() => {}
            Err(e) => {
                server.deleting.store(false, Ordering::Release);
                return Err(e.into());
            }
        }
        self.servers.lock().remove(sid);
        server.cancel_tasks();
        server.set_state(
            ServerState::Deleted,
            Change {
                reason: Some(Expected::Delete.reason().into()),
                ..Change::default()
            },
        );
        if purge {
            let path = server.volume_path.clone();
            smol::unblock(move || match std::fs::remove_dir_all(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| ServerError::Volume {
                server_id: sid.to_owned(),
                reason: format!("the container is removed but its files could not be: {e}"),
            })?;
        }
        Ok(ack(sid, ServerState::Deleted))
    }

    // ----- console, status, files -----

    async fn send_command(&self, sid: &str, line: &str) -> Outcome {
        validate::console_line(line)?;
        let server = self.get(sid)?;
        match server.console.send_line(line).await {
            Ok(true) => Ok(ack(sid, server.state())),
            Ok(false) | Err(_) => Err(ServerError::NotRunning {
                server_id: sid.to_owned(),
            }),
        }
    }

    async fn status(&self, sid: &str) -> Outcome {
        let server = self.get(sid)?;
        let docker = self.docker().await?;
        let inspect = docker.container_inspect(&server.container_id).await?;
        let running = inspect.state.running;
        let status = reconcile(server.state(), running, &inspect.state);
        let mut data = StatusData {
            server_id: sid.to_owned(),
            status,
            container_id: Some(server.container_id.clone()),
            uptime: None,
            resources: None,
            players: None,
        };
        if running {
            data.uptime = proto::time::parse_rfc3339(&inspect.state.started_at)
                .map(|t| proto::time::unix_now().saturating_sub(t));
            if !server.stats.is_open() {
                self.ensure_session(&server, &docker).await?;
            }
            data.resources = resources(&server).await;
            data.players = self.players(&server.meta).await;
        }
        serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
    }

    async fn players(&self, meta: &Meta) -> Option<Players> {
        let port = meta.host_port_for(meta.query_port?)?;
        let ip = match self.cfg.host_ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        match crate::query::minecraft_status(SocketAddr::new(ip, port), QUERY_TIMEOUT).await {
            Ok(p) => Some(p),
            Err(e) => {
                log::debug!("player query: {e}");
                None
            }
        }
    }

    async fn list_files(&self, sid: &str, path: String) -> Outcome {
        let server = self.get(sid)?;
        let volume = server.volume.clone();
        let p = path.clone();
        let listing = smol::unblock(move || volume.list(&p)).await?;
        let data = FileList {
            server_id: sid.to_owned(),
            path,
            entries: listing.entries,
            truncated: listing.truncated,
        };
        serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
    }

    async fn get_file(&self, sid: &str, path: String) -> Outcome {
        let server = self.get(sid)?;
        let volume = server.volume.clone();
        let p = path.clone();
        let content = smol::unblock(move || volume.read(&p, DEFAULT_MAX_READ_BYTES)).await?;
        let data = FileContent {
            server_id: sid.to_owned(),
            path,
            content: content.content,
            encoding: content.encoding,
            size: content.size,
        };
        serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
    }

    async fn write_file(
        &self,
        sid: &str,
        path: String,
        content: &str,
        encoding: ContentEncoding,
    ) -> Outcome {
        let server = self.get(sid)?;
        let bytes = match encoding {
            ContentEncoding::Utf8 => content.as_bytes().to_vec(),
            ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(content)
                .map_err(|e| ServerError::BadContent(format!("invalid base64: {e}")))?,
        };
        let volume = server.volume.clone();
        let opts = WriteOptions {
            disk_limit: Some(server.meta.disk),
            create_parents: true,
        };
        let p = path.clone();
        let size = smol::unblock(move || volume.write(&p, &bytes, opts)).await?;
        Ok(json!({"serverId": sid, "path": path, "size": size}))
    }
}

/// The state to report: ours, unless Docker shows the run ended or began behind our back
/// (an event not yet processed, or lost while Docker was unreachable).
fn reconcile(
    ours: ServerState,
    running: bool,
    docker: &crate::docker::ContainerState,
) -> ServerState {
    match (ours, running) {
        (ServerState::Running | ServerState::Starting, false) => exited_state(docker),
        // The exit of a stop is not yet settled by its event: it is a stop all the same.
        (ServerState::Stopping, false) => ServerState::Stopped,
        (ServerState::Stopped | ServerState::Crashed | ServerState::Created, true) => {
            ServerState::Running
        }
        (s, _) => s,
    }
}

/// How a container that is not running looks from Docker alone.
pub(super) fn exited_state(docker: &crate::docker::ContainerState) -> ServerState {
    match docker.status.as_str() {
        "created" => ServerState::Created,
        "running" | "paused" => ServerState::Running,
        "restarting" => ServerState::Restarting,
        "removing" => ServerState::Deleted,
        _ if docker.oom_killed || docker.exit_code != 0 => ServerState::Crashed,
        _ => ServerState::Stopped,
    }
}

async fn resources(server: &Server) -> Option<Resources> {
    let mut reading = server.stats.current()?;
    if matches!(reading, Ok((_, None))) {
        // No earlier reading yet (the server just started): measure a short window.
        smol::Timer::after(Duration::from_millis(250)).await;
        reading = server.stats.current()?;
    }
    let (sample, cpu) = match reading {
        Ok(r) => r,
        Err(e) => {
            log::debug!("server {}: stats: {e}", server.id);
            return None;
        }
    };
    let limit = sample.memory_limit.unwrap_or(server.meta.memory);
    Some(Resources {
        cpu: cpu.unwrap_or(0.0),
        memory: MemoryAvailability {
            used: tasks::quantity(sample.memory_used),
            available: tasks::quantity(limit),
        },
        network: Network {
            tx: sample.net.tx_bytes,
            rx: sample.net.rx_bytes,
        },
    })
}

/// Sends a signal; a container that is no longer running is not an error.
async fn kill(docker: &DockerClient, id: &str, signal: &str) -> Result<(), DockerError> {
    match docker.container_kill(id, signal).await {
        Ok(()) => Ok(()),
        Err(DockerError::Conflict { message }) if message.contains("is not running") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls until the container is not running; `false` if it still is after `timeout`.
async fn wait_exit(
    docker: &DockerClient,
    id: &str,
    timeout: Duration,
) -> Result<bool, ServerError> {
    let deadline = Instant::now() + timeout;
    loop {
        match docker.container_inspect(id).await {
            Ok(i) if !i.state.running => return Ok(true),
            Ok(_) => {}
            Err(e) if e.is_container_not_found() => return Ok(true),
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        smol::Timer::after(EXIT_POLL).await;
    }
}

/// Gives Docker's `die` event a moment to settle the state the command's answer reports.
async fn settle(server: &Server, transitional: ServerState) {
    let deadline = Instant::now() + SETTLE;
    while server.state() == transitional && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

/// A port another process holds cannot be published: Docker would only fail at start.
fn check_port_free(ip: IpAddr, port: u16, udp: bool) -> Result<(), ServerError> {
    let addr = SocketAddr::new(ip, port);
    let taken = if udp {
        UdpSocket::bind(addr).is_err()
    } else {
        TcpListener::bind(addr).is_err()
    };
    if taken {
        return Err(ServerError::PortConflict {
            port,
            protocol: if udp { "udp" } else { "tcp" },
            by: " on this host".into(),
        });
    }
    Ok(())
}

/// The disk limit must fit in what the data directory's filesystem has free.
fn check_disk(dir: &std::path::Path, want: u64) -> Result<(), ServerError> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.blocks_available().saturating_mul(st.fragment_size());
    if want > free {
        return Err(ServerError::Insufficient {
            what: "disk",
            detail: format!(
                "the server asks for {} MiB; the data directory has {} MiB free",
                want >> 20,
                free >> 20
            ),
        });
    }
    Ok(())
}

/// Creates `DATA/volumes/<id>` owned by the container's user; `true` if it was created now
/// (an existing one, from a server deleted without purge, is reused).
fn prepare_volume_dir(sid: &str, path: &std::path::Path, meta: &Meta) -> Result<bool, ServerError> {
    let err = |reason: String| ServerError::Volume {
        server_id: sid.to_owned(),
        reason,
    };
    let created = match std::fs::DirBuilder::new().mode(0o750).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err(e.to_string())),
    };
    let meta_fs = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta_fs.is_dir() {
        return Err(err("the volume path exists and is not a directory".into()));
    }
    if created && let Err(e) = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
        let _ = std::fs::remove_dir(path);
        return Err(err(format!(
            "cannot give the files to {}:{}: {e}",
            meta.uid, meta.gid
        )));
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ContainerState;

    fn exited(code: i64, oom: bool) -> ContainerState {
        ContainerState {
            status: "exited".into(),
            exit_code: code,
            oom_killed: oom,
            ..ContainerState::default()
        }
    }

    #[test]
    fn docker_states_map_to_server_states() {
        assert_eq!(exited_state(&exited(0, false)), ServerState::Stopped);
        assert_eq!(exited_state(&exited(3, false)), ServerState::Crashed);
        assert_eq!(exited_state(&exited(0, true)), ServerState::Crashed);
        let created = ContainerState {
            status: "created".into(),
            ..ContainerState::default()
        };
        assert_eq!(exited_state(&created), ServerState::Created);
    }

    #[test]
    fn reconcile_trusts_docker_about_runs_that_ended_or_began() {
        let gone = exited(3, false);
        assert_eq!(
            reconcile(ServerState::Running, false, &gone),
            ServerState::Crashed
        );
        assert_eq!(
            reconcile(ServerState::Stopping, false, &gone),
            ServerState::Stopped
        );
        assert_eq!(
            reconcile(ServerState::Stopped, true, &gone),
            ServerState::Running
        );
        assert_eq!(
            reconcile(ServerState::Restarting, false, &gone),
            ServerState::Restarting
        );
        assert_eq!(
            reconcile(ServerState::Stopping, true, &gone),
            ServerState::Stopping
        );
    }

    #[test]
    fn a_held_port_is_a_port_conflict() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = check_port_free(IpAddr::from([127, 0, 0, 1]), port, false).unwrap_err();
        assert_eq!(e.code(), proto::ErrorCode::PortConflict);
        drop(l);
        check_port_free(IpAddr::from([127, 0, 0, 1]), port, false).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert!(check_port_free(IpAddr::from([127, 0, 0, 1]), port, true).is_err());
    }
}
