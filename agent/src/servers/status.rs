//! `get_status` (Docker's view reconciled with ours, uptime, resources, players),
//! `send_command` (one line to the console) and `get_logs` (the console's last lines).

use super::plan::Meta;
use super::server::Server;
use super::state::Exit;
use super::{Inner, Outcome, ServerError, ack, power, tasks};
use crate::docker::ContainerState;
use proto::validate;
use proto::{LogLines, MemoryAvailability, Network, Players, Resources, ServerState, StatusData};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Deadline of a player query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn send_command(inner: &Inner, sid: &str, line: &str) -> Outcome {
    validate::console_line(line)?;
    let server = inner.get(sid)?;
    match server.console.send_line(line).await {
        Ok(true) => Ok(ack(sid, server.state())),
        Ok(false) | Err(_) => Err(ServerError::NotRunning {
            server_id: sid.to_owned(),
        }),
    }
}

/// `get_logs`: the last lines of the server's history, as many as fit in one frame.
pub(super) async fn logs(inner: &Inner, sid: &str, lines: Option<u64>) -> Outcome {
    let n = validate::log_lines(lines)?;
    let server = inner.get(sid)?;
    let room = inner
        .cfg
        .policy
        .max_frame_bytes
        .saturating_sub(super::files::ENVELOPE_RESERVE);
    let data = LogLines {
        lines: server.history.last(n, room),
    };
    serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
}

pub(super) async fn status(inner: &Inner, sid: &str) -> Outcome {
    let server = inner.get(sid)?;
    let docker = inner.docker().await?;
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
            power::ensure_session(inner, &server, &docker).await?;
        }
        data.resources = resources(&server).await;
        data.players = players(inner, &server.meta).await;
    }
    serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
}

async fn players(inner: &Inner, meta: &Meta) -> Option<Players> {
    let port = meta.host_port_for(meta.query_port?)?;
    let ip = match inner.cfg.policy.host_ip {
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

/// The state to report: ours, unless Docker shows the run ended or began behind our back
/// (an event not yet processed, or lost while Docker was unreachable).
fn reconcile(ours: ServerState, running: bool, docker: &ContainerState) -> ServerState {
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
pub(super) fn exited_state(docker: &ContainerState) -> ServerState {
    match docker.status.as_str() {
        "created" => ServerState::Created,
        "running" | "paused" => ServerState::Running,
        "restarting" => ServerState::Restarting,
        "removing" => ServerState::Deleted,
        _ if docker.oom_killed || docker.exit_code != 0 => ServerState::Crashed,
        _ => ServerState::Stopped,
    }
}

/// How a run that nobody asked to end ended, for the state machine.
pub(super) fn exit_of(docker: &ContainerState) -> Exit {
    if docker.status == "created" {
        Exit::NeverRan
    } else if docker.oom_killed || docker.exit_code != 0 {
        Exit::Crash
    } else {
        Exit::Clean
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(exit_of(&created), Exit::NeverRan);
        assert_eq!(exit_of(&exited(0, false)), Exit::Clean);
        assert_eq!(exit_of(&exited(137, false)), Exit::Crash);
        assert_eq!(exit_of(&exited(0, true)), Exit::Crash);
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
}
