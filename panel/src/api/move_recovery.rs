//! Transfers a panel stop interrupted (`kill -9`, a crash, a shutdown mid-move), brought
//! back to one consistent state at the next start.
//!
//! A transfer writes its mark (`moving`) before it stops the server, adds `handover` before
//! the target gets a copy and rewrites both at the commit point (see `moves.rs`), so the
//! record alone says what to do:
//!
//! - **Before the commit** (`preparing`, `copying`): roll back. In `copying` the target's
//!   copy (created, perhaps restored, perhaps even started) is deleted once the target is
//!   connected; then, if the server ran when the move began, it is started again on the
//!   source; then the mark is cleared. The source is never started before the target's
//!   copy is confirmed gone, so two copies never run — which means a target that never
//!   comes back keeps the server stopped (and its mark) until it does.
//! - **After the commit** (`removing`): finish. The target already owns and runs the server;
//!   the source's old copy is deleted once the source is connected, then the mark is cleared.
//!
//! The same finishing runs, without a restart, for a committed move whose source could not
//! remove its copy at once (its agent was away).
//!
//! Each step is idempotent (a copy already gone, a server already running count as done), so
//! a panel stopped again during recovery simply recovers again; a failed step is retried
//! after 2 s, then twice as long each time, up to a minute. Until the mark is cleared, a new
//! transfer is refused (`CONFLICT`), and before the commit starting the server is too.

use async_io::Timer;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use proto::message::{Action, DeleteServer};

use super::backup_run::publish;
use super::moves::mark;
use super::{Api, ApiError};
use crate::store::{MovePhase, ServerRecord};

/// First pause between two attempts (an agent not connected yet, a command that failed);
/// it doubles after each failure up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_secs(2);
/// Longest pause between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What a marked record asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Delete `target`'s copy (if the move got that far), then start the server on
    /// `source` if `start`.
    RollBack {
        source: String,
        target: Option<String>,
        start: bool,
    },
    /// Delete `source`'s old copy.
    Finish { source: String },
}

/// The recovery a record needs (`None`: no transfer was in progress). A `handover` without
/// `moving` (written before `moving` existed) is read as not committed: rolling back is
/// the safe side, and the source is then left stopped (whether it ran is unknown).
pub(super) fn plan(rec: &ServerRecord) -> Option<Plan> {
    let start = rec.moving.as_ref().is_some_and(|m| m.was_running);
    match (rec.moving.as_ref().map(|m| m.phase), rec.handover.clone()) {
        (None, None) => None,
        (Some(MovePhase::Removing), Some(source)) => Some(Plan::Finish { source }),
        // Committed but the source unknown: the target owns it; nothing to remove.
        (Some(MovePhase::Removing), None) => Some(Plan::Finish {
            source: String::new(),
        }),
        (_, target) => Some(Plan::RollBack {
            source: rec.agent_id.clone(),
            target,
            start,
        }),
    }
}

/// Starts the recovery of every marked server (one task each). Called once at start-up,
/// before agents connect.
pub fn recover_all(api: &Arc<Api>) {
    for rec in api.store.servers() {
        if let Some(p) = plan(&rec) {
            log::warn!(
                "server {}: a transfer was interrupted by the panel's stop; {}",
                rec.server_id,
                match &p {
                    Plan::RollBack {
                        target: Some(target),
                        ..
                    } => format!("rolling back (removing the copy on {target} when it connects)"),
                    Plan::RollBack { target: None, .. } =>
                        "rolling back (no copy was made yet)".to_owned(),
                    Plan::Finish { source } =>
                        format!("finishing (removing the old copy on {source} when it connects)"),
                }
            );
            spawn(api, &rec.server_id, p);
        }
    }
}

/// Carries out `p` for `sid` in the background, retrying until done or shutdown.
pub(super) fn spawn(api: &Arc<Api>, sid: &str, p: Plan) {
    crate::exec::spawn(recover(api.clone(), sid.to_owned(), p)).detach();
}

/// Retries `p` until it is done or the panel shuts down.
async fn recover(api: Arc<Api>, sid: String, p: Plan) {
    let mut told = false;
    let mut pause = RETRY;
    loop {
        match attempt(&api, &sid, &p).await {
            Ok(false) => {
                log::info!("server {sid}: interrupted transfer no longer marked; nothing to do");
                return;
            }
            Ok(true) => {
                let (agent, step) = match &p {
                    Plan::RollBack { source, .. } => (source, "rolled_back"),
                    Plan::Finish { source } => (source, "finished"),
                };
                log::info!("server {sid}: interrupted transfer {step}");
                publish(
                    &api,
                    agent,
                    &sid,
                    "transfer_progress",
                    json!({"serverId": sid, "step": step, "recovered": true}),
                );
                return;
            }
            Err(e) if !told => {
                told = true;
                log::warn!("server {sid}: transfer recovery waits: {e} (retrying)");
            }
            Err(e) => log::debug!("server {sid}: transfer recovery: {e}"),
        }
        let stop = futures_lite::future::or(
            async {
                Timer::after(pause).await;
                false
            },
            async {
                api.shutdown.wait().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// One pass over the plan's steps; an error means "try again later".
/// `Ok(false)`: nothing was done, the record no longer asks for `p` (deleted with `force`,
/// or reassigned by something else, e.g. failover).
async fn attempt(api: &Arc<Api>, sid: &str, p: &Plan) -> Result<bool, ApiError> {
    let now = api.store.server(sid);
    if now.as_ref().and_then(plan).as_ref() != Some(p) {
        return Ok(false);
    }
    match p {
        Plan::RollBack {
            source,
            target,
            start,
        } => {
            if let Some(target) = target {
                remove_copy(api, target, sid).await?;
            }
            if *start {
                let r = command(api, source, sid, Action::StartServer).await?;
                let running = r.success || agent_code(&r) == Some(ErrorCode::Conflict);
                if !running {
                    return Err(ApiError::from_agent(&r));
                }
            }
        }
        Plan::Finish { source } => remove_copy(api, source, sid).await?,
    }
    mark(api, sid, None, None).await?;
    Ok(true)
}

/// Deletes the server's files and container on `agent` (already gone counts as done; an
/// agent the panel no longer knows has nothing the panel can remove).
async fn remove_copy(api: &Api, agent: &str, sid: &str) -> Result<(), ApiError> {
    if agent.is_empty() || api.store.agent(agent).is_none() {
        return Ok(());
    }
    let purge = Action::DeleteServer(Some(DeleteServer { purge: true }));
    let r = command(api, agent, sid, purge).await?;
    if r.success || agent_code(&r) == Some(ErrorCode::ServerNotFound) {
        Ok(())
    } else {
        Err(ApiError::from_agent(&r))
    }
}

/// Sends `action` if `agent` is connected (`AGENT_OFFLINE` otherwise, without waiting).
async fn command(
    api: &Api,
    agent: &str,
    sid: &str,
    action: Action<'static>,
) -> Result<proto::message::Response<'static>, ApiError> {
    if !api.hub.is_online(agent) {
        return Err(ApiError::new(
            ErrorCode::AgentOffline,
            format!("agent {agent} is not connected"),
        ));
    }
    Ok(api.hub.command(agent, Some(sid), action).await?)
}

fn agent_code(r: &proto::message::Response<'_>) -> Option<ErrorCode> {
    r.error.as_ref().and_then(|e| e.known_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Moving;

    fn rec(handover: Option<&str>, moving: Option<Moving>) -> ServerRecord {
        let mut r = crate::store::tests::server("srv-1", "src", 64);
        r.handover = handover.map(str::to_owned);
        r.moving = moving;
        r
    }

    #[test]
    fn an_unmarked_record_needs_nothing() {
        assert_eq!(plan(&rec(None, None)), None);
    }

    #[test]
    fn before_the_commit_the_move_is_rolled_back() {
        let m = Moving {
            phase: MovePhase::Copying,
            was_running: true,
            target: None,
        };
        assert_eq!(
            plan(&rec(Some("dst"), Some(m))),
            Some(Plan::RollBack {
                source: "src".into(),
                target: Some("dst".into()),
                start: true
            })
        );
        // Still stopping or backing up: no copy anywhere else, the source started again.
        let m = Moving {
            phase: MovePhase::Preparing,
            was_running: true,
            target: None,
        };
        assert_eq!(
            plan(&rec(None, Some(m))),
            Some(Plan::RollBack {
                source: "src".into(),
                target: None,
                start: true
            })
        );
        // A mark from before `moving` existed: rolled back, the source left stopped.
        assert_eq!(
            plan(&rec(Some("dst"), None)),
            Some(Plan::RollBack {
                source: "src".into(),
                target: Some("dst".into()),
                start: false
            })
        );
    }

    #[test]
    fn after_the_commit_the_move_is_finished() {
        // Committed: `agentId` is the target, `handover` the source.
        let m = Moving {
            phase: MovePhase::Removing,
            was_running: false,
            target: None,
        };
        assert_eq!(
            plan(&rec(Some("old"), Some(m))),
            Some(Plan::Finish {
                source: "old".into()
            })
        );
    }

    #[test]
    fn the_mark_round_trips_through_storage_json() {
        let m = Moving {
            phase: MovePhase::Removing,
            was_running: true,
            target: None,
        };
        let r = rec(Some("old"), Some(m));
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains(r#""moving":{"phase":"removing","wasRunning":true}"#),
            "{text}"
        );
        let back: ServerRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
