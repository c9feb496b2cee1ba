//! The power actions — start, stop, restart, kill, delete — and the run's session (console
//! and sampler) they set up. One power action per server at a time (`BUSY`); each moves the
//! state through the table in `state.rs`, and Docker's events settle where a run ends.

use super::extras::Extras;
use super::server::{Change, Expected, PowerGuard, Server};
use super::state::Trigger;
use super::{Inner, Outcome, ServerError, ack, configs, disk, install, network, tasks};
use crate::docker::{Attach, AttachOptions, DockerClient, DockerError};
use proto::ServerState;
use proto::validate;
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
/// Grace period of the stop that precedes a delete.
const DELETE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn power<'s>(server: &'s Server, action: &'static str) -> Result<PowerGuard<'s>, ServerError> {
    server.try_power().ok_or_else(|| ServerError::Busy {
        server_id: server.id.clone(),
        action,
    })
}

/// The power lock for an action that needs the server's own container: refused (`BUSY`)
/// while its install script runs. Only a delete interrupts an install.
pub(super) fn claim<'s>(
    server: &'s Server,
    action: &'static str,
) -> Result<PowerGuard<'s>, ServerError> {
    let guard = power(server, action)?;
    if server.state() == ServerState::Installing {
        return Err(ServerError::Busy {
            server_id: server.id.clone(),
            action: "install",
        });
    }
    Ok(guard)
}

pub(super) async fn start(inner: &Inner, sid: &str) -> Outcome {
    let server = inner.get(sid)?;
    let _power = claim(&server, "start")?;
    let docker = inner.docker().await?;
    let inspect = docker.container_inspect(&server.container_id).await?;
    if inspect.state.running {
        ensure_session(inner, &server, &docker).await?;
    } else {
        disk::check_start(&server).await?;
        start_container(inner, &server, &docker).await?;
    }
    Ok(ack(sid, server.state()))
}

/// Attaches (so the first output is seen), starts, then opens the sampler.
async fn start_container(
    inner: &Inner,
    server: &Arc<Server>,
    docker: &DockerClient,
) -> Result<(), ServerError> {
    server.clear_expected();
    if server.state() != ServerState::Restarting {
        server.apply(Trigger::Start, Change::default())?;
    }
    server.reset_done();
    if !server.extras.config_files.is_empty() {
        let interface = network::interface(inner, docker).await;
        configs::apply(server, interface).await;
    }
    let fail = |reason: String| {
        server.observe(
            Trigger::StartFailed,
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
    install_console(inner, server, attach).await;
    if let Err(e) = docker.container_start(&server.container_id).await {
        server.console.mark_dead();
        fail(format!("failed to start: {e}"));
        return Err(e.into());
    }
    ensure_session(inner, server, docker).await
}

async fn install_console(inner: &Inner, server: &Arc<Server>, attach: Attach) {
    server.console.install(attach.writer).await;
    let task = smol::spawn(tasks::pump_console(
        attach.reader,
        Arc::downgrade(server),
        server.console.clone(),
        inner.cfg.log_rate,
        inner.cfg.log_burst,
        inner.console_budget.clone(),
    ));
    server.set_console_task(task);
}

/// Makes the console and the sampler match a running container, and the state say running.
/// Serialised with exit handling (`session_lock`).
pub(super) async fn ensure_session(
    inner: &Inner,
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
            Ok(a) => install_console(inner, server, a).await,
            Err(e) => log::warn!("server {}: cannot attach the console: {e}", server.id),
        }
    }
    let pid = u32::try_from(inspect.state.pid).unwrap_or(0);
    if !server.has_stats_task() && pid > 0 {
        match server.stats.open(pid) {
            Ok(()) => {
                let task = smol::spawn(tasks::stats_loop(
                    Arc::downgrade(server),
                    inner.cfg.resource_interval,
                ));
                server.set_stats_task(task);
            }
            Err(e) => log::warn!("server {}: no resource sampling: {e}", server.id),
        }
    }
    if !server.has_disk_task() {
        let watch = disk::watch(inner.me.clone(), Arc::downgrade(server));
        server.set_disk_task(smol::spawn(watch));
    }
    server.observe(
        server.run_trigger(),
        Change {
            pid: (pid > 0).then_some(u64::from(pid)),
            ..Change::default()
        },
    );
    Ok(())
}

pub(super) async fn stop(
    inner: &Inner,
    sid: &str,
    signal: Option<&str>,
    timeout: Option<u64>,
) -> Outcome {
    let server = inner.get(sid)?;
    let _power = claim(&server, "stop")?;
    let signal = signal.map(validate::signal).transpose()?.map(|s| s.0);
    let timeout = stop_timeout(inner, timeout);
    let docker = inner.docker().await?;
    let inspect = docker.container_inspect(&server.container_id).await?;
    if inspect.state.running {
        stop_running(&server, &docker, signal, timeout, Expected::Stop).await?;
    }
    let state = match server.state() {
        ServerState::Created => ServerState::Created,
        ServerState::Crashed => ServerState::Crashed,
        _ => ServerState::Stopped,
    };
    Ok(ack(sid, state))
}

fn stop_timeout(inner: &Inner, secs: Option<u64>) -> Duration {
    secs.map_or(inner.cfg.stop_timeout, |s| {
        Duration::from_secs(s.min(MAX_STOP_TIMEOUT))
    })
}

/// The egg's stop command (or the signal), the grace period, then SIGKILL.
pub(super) async fn stop_running(
    server: &Arc<Server>,
    docker: &DockerClient,
    signal: Option<&'static str>,
    timeout: Duration,
    why: Expected,
) -> Result<(), ServerError> {
    // Expect the exit before announcing the stop: an exit in between is ours, not a crash.
    server.expect_exit(why);
    let (trigger, transitional) = if why == Expected::Restart {
        (Trigger::Restart, ServerState::Restarting)
    } else {
        (Trigger::Stop, ServerState::Stopping)
    };
    if let Err(e) = server.apply(trigger, Change::default()) {
        server.clear_expected();
        return Err(e);
    }
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
        if let Err(e) = send_signal(docker, &server.container_id, signal).await {
            server.clear_expected();
            server.observe(Trigger::StopFailed, Change::default());
            return Err(e.into());
        }
    }
    if !wait_exit(docker, &server.container_id, timeout).await? {
        log::info!(
            "server {}: still running after {} s; SIGKILL",
            server.id,
            timeout.as_secs()
        );
        send_signal(docker, &server.container_id, "SIGKILL").await?;
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

pub(super) async fn restart(
    inner: &Inner,
    sid: &str,
    signal: Option<&str>,
    timeout: Option<u64>,
) -> Outcome {
    let server = inner.get(sid)?;
    let _power = claim(&server, "restart")?;
    let signal = signal.map(validate::signal).transpose()?.map(|s| s.0);
    disk::check_start(&server).await?;
    let timeout = stop_timeout(inner, timeout);
    let docker = inner.docker().await?;
    let inspect = docker.container_inspect(&server.container_id).await?;
    if inspect.state.running {
        stop_running(&server, &docker, signal, timeout, Expected::Restart).await?;
        // The exit's event must find the restart expected (and leave the state
        // `restarting`) before the start clears expectations.
        settle_exit(&server).await;
    }
    start_container(inner, &server, &docker).await?;
    Ok(ack(sid, server.state()))
}

pub(super) async fn kill(inner: &Inner, sid: &str, signal: Option<&str>) -> Outcome {
    let server = inner.get(sid)?;
    let _power = claim(&server, "kill")?;
    let signal = signal.map_or(Ok("SIGKILL"), |s| validate::signal(s).map(|s| s.0))?;
    let docker = inner.docker().await?;
    let inspect = docker.container_inspect(&server.container_id).await?;
    if !inspect.state.running {
        return Ok(ack(sid, server.state()));
    }
    server.expect_exit(Expected::Kill);
    if let Err(e) = send_signal(&docker, &server.container_id, signal).await {
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

pub(super) async fn delete(inner: &Inner, sid: &str, purge: bool) -> Outcome {
    let server = inner.get(sid)?;
    let _power = power(&server, "delete")?;
    let docker = inner.docker().await?;
    match docker.container_inspect(&server.container_id).await {
        Ok(i) if i.state.running => {
            if let Err(e) = stop_running(
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
    server.cancel_install();
    install::remove_for(inner, &docker, sid).await;
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
    inner.servers.lock().remove(sid);
    server.cancel_tasks();
    if let Err(e) = Extras::remove(&inner.eggs_dir(), sid) {
        log::warn!("server {sid}: cannot remove its egg extensions: {e}");
    }
    server.observe(
        Trigger::Removed,
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

/// Sends a signal; a container that is no longer running is not an error.
async fn send_signal(docker: &DockerClient, id: &str, signal: &str) -> Result<(), DockerError> {
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

/// Gives Docker's `die` event a moment to consume the expected exit.
async fn settle_exit(server: &Server) {
    let deadline = Instant::now() + SETTLE;
    while server.expecting() && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

/// Gives Docker's `die` event a moment to settle the state the command's answer reports.
async fn settle(server: &Server, transitional: ServerState) {
    let deadline = Instant::now() + SETTLE;
    while server.state() == transitional && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}
