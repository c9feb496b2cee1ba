//! Docker's event stream for this agent's containers, adoption of existing containers, and
//! the host load sampled for heartbeats.
//!
//! On every connection: subscribe first, then list and adopt, so no event falls between the
//! two. Reconnects resume from the last event's time (`since`), and re-adoption reconciles
//! the states of runs that ended while Docker was unreachable.

use super::extras::Extras;
use super::plan::{LABEL_AGENT, LABEL_META, LABEL_SERVER, Meta};
use super::server::{Change, Expected, Server};
use super::state::{Exit, Trigger};
use super::status::{exit_of, exited_state};
use super::{Inner, ServerError, Slot, install, power};
use crate::docker::{DockerClient, DockerError, Event, EventStream, Filters};
use crate::link::backoff::Backoff;
use crate::stats::HostSampler;
use futures_lite::StreamExt;
use proto::ServerState;
use proto::validate::{self, IdKind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Follows Docker's events forever, reconnecting with backoff.
pub(super) async fn watch(inner: Arc<Inner>) {
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        Duration::from_millis(250),
    );
    let mut since: Option<i64> = None;
    let mut reported = false;
    loop {
        match inner.docker().await {
            Ok(docker) => {
                reported = false;
                let filters = Filters::new()
                    .add("type", "container")
                    .add("label", &format!("{LABEL_AGENT}={}", inner.agent_id));
                match docker.events(&filters, since).await {
                    Ok(mut stream) => {
                        if let Err(e) = adopt(&inner).await {
                            log::warn!("adopting existing servers failed: {e}");
                        }
                        backoff.reset();
                        follow(&inner, &docker, &mut stream, &mut since).await;
                        log::warn!("Docker event stream ended; reconnecting");
                    }
                    Err(e) => log::warn!("cannot follow Docker events: {e}"),
                }
                // Reconnect from scratch: the daemon may have restarted.
                inner.docker_unreachable(&"its event stream ended");
            }
            Err(e) => {
                if !reported {
                    log::error!("Docker is unavailable: {e}");
                    reported = true;
                }
            }
        }
        smol::Timer::after(backoff.next_delay()).await;
    }
}

/// How long a SIGKILL's `die` waits for the container's `oom` event (see [`is_sigkill_die`]).
const OOM_AFTER_DIE: Duration = Duration::from_millis(500);

/// A `die` with exit code 137 (SIGKILL). Docker sets `OOMKilled` only when containerd
/// delivers the OOM before the exit; under load the exit can come first, and then Docker's
/// `die` precedes its `oom` event and `OOMKilled` stays false for good. Such a `die` is held
/// until the next event (or [`OOM_AFTER_DIE`]): an `oom` of the same container is handled
/// first, so the exit is reported as the OOM kill it was. (A kill the agent sent itself is
/// expected and not held.)
fn is_sigkill_die(inner: &Inner, event: &Event) -> bool {
    event.action == "die"
        && event.exit_code() == Some(137)
        && event
            .attribute(LABEL_SERVER)
            .and_then(|sid| inner.known(sid))
            .is_some_and(|s| !s.expecting())
}

/// The next item of the stream, or `None` if none comes within [`OOM_AFTER_DIE`].
async fn oom_or_next(stream: &mut EventStream) -> Option<Option<Result<Event, DockerError>>> {
    futures_lite::future::or(async { Some(stream.next().await) }, async {
        smol::Timer::after(OOM_AFTER_DIE).await;
        None
    })
    .await
}

/// Handles one connection's events until the stream fails or ends; `since` follows them.
async fn follow(
    inner: &Inner,
    docker: &DockerClient,
    stream: &mut EventStream,
    since: &mut Option<i64>,
) {
    let mut held: Option<Event> = None;
    loop {
        let item = match held.take() {
            None => stream.next().await,
            Some(die) => match oom_or_next(stream).await {
                // The container's `oom` came after its `die`: handled first.
                Some(Some(Ok(oom))) if oom.action == "oom" && oom.actor.id == die.actor.id => {
                    *since = Some(oom.time);
                    on_event(inner, docker, oom).await;
                    on_event(inner, docker, die).await;
                    continue;
                }
                Some(item) => {
                    on_event(inner, docker, die).await;
                    item
                }
                None => {
                    on_event(inner, docker, die).await;
                    continue;
                }
            },
        };
        let event = match item {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                log::warn!("Docker event stream failed: {e}");
                break;
            }
            None => break,
        };
        *since = Some(event.time);
        if is_sigkill_die(inner, &event) {
            held = Some(event);
        } else {
            on_event(inner, docker, event).await;
        }
    }
    if let Some(die) = held {
        on_event(inner, docker, die).await;
    }
}

/// Adopts every container labelled with this agent that is not yet known, and brings
/// the known ones in line with Docker. Nothing is started or restarted.
pub(super) async fn adopt(inner: &Inner) -> Result<usize, ServerError> {
    let docker = inner.docker().await?;
    let label = format!("{LABEL_AGENT}={}", inner.agent_id);
    for summary in docker.containers_by_label(&label).await? {
        let Some(sid) = summary.labels.get(LABEL_SERVER).cloned() else {
            continue;
        };
        if !inner.named_ours(&summary.names) {
            log::warn!(
                "container {} (server {sid}) lacks the name prefix `{}`; not adopted",
                summary.id,
                inner.cfg.name_prefix
            );
            continue;
        }
        if validate::id(IdKind::Server, &sid).is_err() {
            log::warn!(
                "container {} has an invalid {LABEL_SERVER} label",
                summary.id
            );
            continue;
        }
        let server = match inner.known(&sid) {
            Some(s) if s.container_id == summary.id => s,
            Some(_) => {
                log::warn!(
                    "container {} claims server {sid}, which runs in another container",
                    summary.id
                );
                continue;
            }
            None => match adopt_one(inner, &docker, &sid, &summary.id, &summary.labels).await {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("cannot adopt server {sid}: {e}");
                    continue;
                }
            },
        };
        if let Err(e) = resync(inner, &docker, &server).await {
            log::warn!("server {sid}: {e}");
        }
    }
    // Install containers after the servers they work for.
    install::adopt(inner, &docker).await?;
    Ok(inner.servers.lock().len())
}

async fn adopt_one(
    inner: &Inner,
    docker: &DockerClient,
    sid: &str,
    container_id: &str,
    labels: &std::collections::HashMap<String, String>,
) -> Result<Option<Arc<Server>>, ServerError> {
    let Some(meta) = labels.get(LABEL_META).and_then(|m| Meta::from_label(m)) else {
        log::warn!("container {container_id} (server {sid}) has no readable {LABEL_META} label");
        return Ok(None);
    };
    let inspect = docker.container_inspect(container_id).await?;
    let volume_path = inner.volume_path(sid);
    let volume = inner.open_volume(&volume_path, &meta)?;
    let state = if inspect.state.running {
        ServerState::Running
    } else {
        exited_state(&inspect.state)
    };
    let extras = Extras::load(&inner.eggs_dir(), sid);
    let server = Arc::new(
        Server::new(
            sid.to_owned(),
            container_id.to_owned(),
            meta,
            Arc::new(volume),
            volume_path,
            inner.agent_id.clone(),
            inner.outbox.clone(),
            state,
        )
        .with_extras(extras),
    );
    let mut servers = inner.servers.lock();
    if let Some(Slot::Ready(existing)) = servers.get(sid) {
        return Ok(Some(existing.clone()));
    }
    if servers.contains_key(sid) {
        return Ok(None);
    }
    servers.insert(sid.to_owned(), Slot::Ready(server.clone()));
    log::info!("adopted server {sid} ({})", state.as_str());
    Ok(Some(server))
}

/// Running: console and sampler resumed. Not running: the state says how it ended.
async fn resync(
    inner: &Inner,
    docker: &DockerClient,
    server: &Arc<Server>,
) -> Result<(), ServerError> {
    let inspect = docker.container_inspect(&server.container_id).await?;
    if inspect.state.running {
        return power::ensure_session(inner, server, docker).await;
    }
    let _session = server.session_lock.lock().await;
    if server.try_power().is_some() {
        // No power action in flight: Docker's view wins.
        if matches!(server.state(), ServerState::Running | ServerState::Starting) {
            server.stop_stats();
            server.observe(
                Trigger::Exited(exit_of(&inspect.state)),
                ended(&inspect.state, None),
            );
        }
    }
    Ok(())
}

/// One container event.
async fn on_event(inner: &Inner, docker: &DockerClient, event: Event) {
    let Some(sid) = event.attribute(LABEL_SERVER) else {
        return;
    };
    let Some(server) = inner.known(sid) else {
        return;
    };
    if server.container_id != event.actor.id {
        return;
    }
    match event.action.as_str() {
        "start" => {
            if let Err(e) = power::ensure_session(inner, &server, docker).await {
                log::warn!("server {sid}: after start: {e}");
            }
        }
        "die" => on_die(docker, &server, &event).await,
        "oom" => server.mark_oom(),
        "destroy" => on_destroy(inner, sid, &server),
        _ => {}
    }
}

/// The container was removed behind the agent's back (a delete command unlists the
/// server before removing it, so this finds nothing then).
fn on_destroy(inner: &Inner, sid: &str, server: &Server) {
    if server.deleting.load(Ordering::Acquire) {
        return;
    }
    if inner.servers.lock().remove(sid).is_some() {
        server.cancel_tasks();
        server.observe(
            Trigger::Removed,
            Change {
                reason: Some("the container was removed outside the agent".into()),
                ..Change::default()
            },
        );
    }
}

async fn on_die(docker: &DockerClient, server: &Arc<Server>, event: &Event) {
    let _session = server.session_lock.lock().await;
    let inspect = match docker.container_inspect(&server.container_id).await {
        Ok(i) => i,
        Err(e) => {
            log::warn!("server {}: inspect after exit: {e}", server.id);
            return;
        }
    };
    if inspect.state.running {
        // A stale event: the server was started again since.
        return;
    }
    server.stop_stats();
    let expected = server.take_expected();
    if expected == Some(Expected::Restart) {
        return; // the restart goes on: restarting → running
    }
    let mut state = inspect.state;
    // Docker's flag misses OOM kills whose exit it learnt first; its `oom` event does not.
    state.oom_killed |= server.take_oom();
    let mut change = ended(&state, expected);
    if change.exit_code.is_none() {
        change.exit_code = event.exit_code();
    }
    let exit = match expected {
        Some(_) => Exit::Clean,
        None => exit_of(&state),
    };
    server.observe(Trigger::Exited(exit), change);
}

/// The facts of an exit: code, OOM kill, and a human reason.
fn ended(state: &crate::docker::ContainerState, expected: Option<Expected>) -> Change {
    let code = state.exit_code;
    let reason = match expected {
        Some(e) => e.reason().to_owned(),
        None if state.oom_killed => "killed by the OOM killer (memory limit reached)".into(),
        None if code != 0 => format!("crashed with exit code {code}"),
        None => "exited on its own".into(),
    };
    Change {
        pid: None,
        exit_code: Some(code),
        oom_killed: Some(state.oom_killed),
        reason: Some(reason),
    }
}

/// Samples the host's load for heartbeats (which must not do I/O themselves).
pub(super) async fn sample_load(inner: Weak<Inner>) {
    let mut sampler = match HostSampler::open() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("no host load in heartbeats: {e}");
            return;
        }
    };
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let interval = inner.cfg.load_interval;
        probe_docker(&inner).await;
        match sampler.sample() {
            Ok(load) => {
                let disk = disk_percent(inner.volumes_dir());
                *inner.load.lock() = proto::SystemLoad {
                    cpu: load.cpu,
                    memory: load.memory,
                    disk,
                };
            }
            Err(e) => log::debug!("host load: {e}"),
        }
        drop(inner);
        crate::memory::trim();
        smol::Timer::after(interval).await;
    }
}

/// Asks the Engine its version (connecting if needed), so that a socket that went away —
/// a removed or replaced socket file, a hung daemon — shows in the next heartbeat even
/// while the event stream's old connection stays open.
async fn probe_docker(inner: &Inner) {
    let docker = match inner.docker().await {
        Ok(d) => d,
        Err(_) => return, // recorded by `docker()`
    };
    if let Err(e) = docker.version().await {
        log::warn!("Docker probe failed: {e}");
        inner.docker_unreachable(&e);
    }
}

fn disk_percent(dir: &std::path::Path) -> f64 {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return 0.0;
    };
    let total = st.blocks() as f64;
    if total <= 0.0 {
        return 0.0;
    }
    let used = total - st.blocks_free() as f64;
    (used / total * 1000.0).round() / 10.0
}
