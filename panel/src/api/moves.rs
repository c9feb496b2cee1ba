//! Transfers: a server moves to another agent with its files.
//!
//! Steps, each announced as a `transfer_progress` event: choose the target and mark the
//! move in the record under the placement lock (`moving`: `preparing`, its `target`, whose
//! memory and CPU count as committed until the commit; then whether it ran), stop it on
//! the source (if it runs), take a backup (kept in the store like any other), mark the
//! next phase (`copying`, and `handover`: the target may now speak for the server), create
//! it on the target without its install script, restore the backup there, start it there
//! if it ran, then commit the record (new agent, `epoch` + 1, `removing`, `handover` the
//! source) and remove the source's copy (then the mark is cleared; if the source cannot
//! remove it now, the mark stays and `move_recovery.rs` removes it when the source can).
//!
//! Until the commit, any failure undoes what was done: the target's copy is deleted, the
//! mark is cleared and the server is started again on the source if it ran — so the server
//! stays where it was, running if it was. After the commit the move is done; a source copy
//! that cannot be removed (its agent went away) is reported (`sourceRemoved: false`), stays
//! stopped, and is removed once its agent is back.
//!
//! The mark is durable, so a panel that stops mid-move undoes or finishes it at its next
//! start (`move_recovery.rs`). [`transfer_server`] is the whole move for any caller: the
//! route, drain with migration, failover.

use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;

use proto::ErrorCode;
use proto::egg::EggConfig;
use proto::message::{Action, CreateServer, DeleteServer, ServerState};
use proto::validate::{self, IdKind};

use super::backup_run::{self, BusyGuard, command, publish};
use super::{Api, ApiError, Caller, blocking, body};
use super::{move_recovery, placing};
use crate::http::{Reply, Request, Response};
use crate::placement::{self, Need};
use crate::store::{MovePhase, Moving, ServerRecord};

/// Writes a server's transfer mark: `handover` (the other agent, once it may hold a copy)
/// and `moving` (how far); `None, None` clears it. A server deleted meanwhile is left alone.
pub(super) async fn mark(
    api: &Api,
    server_id: &str,
    handover: Option<String>,
    moving: Option<Moving>,
) -> Result<(), ApiError> {
    let store = api.store.clone();
    let sid = server_id.to_owned();
    blocking(move || {
        let Some(mut rec) = store.server(&sid) else {
            return Ok(());
        };
        rec.handover = handover;
        rec.moving = moving;
        store.put_server(&rec)
    })
    .await?;
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TransferBody {
    agent_id: Option<String>,
}

/// `POST /api/servers/{id}/transfer` (admin): `{"agentId"?}` (placement picks otherwise).
pub(super) async fn transfer(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?.clone();
    let body: TransferBody = if req.body.is_empty() {
        TransferBody::default()
    } else {
        body(&req)?
    };
    let out = transfer_server(&api, &rec.server_id, body.agent_id).await?;
    Ok(Response::json(200, &out).into())
}

/// Moves the server `server_id` to `to` (placement picks when `None`): the whole transfer
/// described in the module docs, one at a time per server (`BUSY` otherwise). The answer
/// is the route's JSON (`agentId`, `previousAgentId`, `epoch`, `backupId`, …). For the
/// transfer route, drain with migration, and any panel-side caller (e.g. failover).
pub(crate) async fn transfer_server(
    api: &Arc<Api>,
    server_id: &str,
    to: Option<String>,
) -> Result<Value, ApiError> {
    let _busy = BusyGuard::take(api, server_id)?;
    // Read under the guard: the record another move just committed, not an older copy.
    let rec = api
        .store
        .server(server_id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no server `{server_id}`")))?;
    if rec.in_transfer() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "server {} is between two agents: an earlier transfer is being finished or \
                 undone (see `transfer` in GET /api/servers)",
                rec.server_id
            ),
        ));
    }
    // Chosen and reserved (the mark names it) under the placement lock, like a create.
    let target = {
        let (api, rec) = (api.clone(), rec.clone());
        blocking(move || {
            let _lock = api.placement.lock();
            let t = target(&api, &rec, to)?;
            let Some(mut marked) = api.store.server(&rec.server_id) else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("server {} was deleted", rec.server_id),
                ));
            };
            marked.moving = Some(Moving {
                phase: MovePhase::Preparing,
                was_running: false,
                target: Some(t.clone()),
            });
            api.store.put_server(&marked)?;
            Ok::<_, ApiError>(t)
        })
        .await?
    };
    let moved = Move {
        api: api.clone(),
        from: rec.agent_id.clone(),
        to: target,
        rec,
    };
    moved.run().await
}

/// The agent asked for (known, online, not the source), or the one placement picks.
fn target(api: &Api, rec: &ServerRecord, asked: Option<String>) -> Result<String, ApiError> {
    let Some(a) = asked else {
        let need = Need {
            memory: rec.memory_bytes,
            cpu: rec.cpu_millis,
            ports: placement::egg_host_ports(&rec.egg_config),
            constraints: rec.constraints.clone(),
        };
        return placing::choose(api, &need, Some(&rec.agent_id));
    };
    validate::id(IdKind::Agent, &a)?;
    if a == rec.agent_id {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("server {} already runs on agent {a}", rec.server_id),
        ));
    }
    // Known, not draining, carrying the server's constraints: as a create naming its agent.
    let need = Need {
        constraints: rec.constraints.clone(),
        ..Need::default()
    };
    placing::explicit(api, &a, &need)?;
    if !api.hub.is_online(&a) {
        return Err(ApiError::new(
            ErrorCode::AgentOffline,
            format!("agent {a} is not connected"),
        ));
    }
    Ok(a)
}

struct Move {
    api: Arc<Api>,
    rec: ServerRecord,
    from: String,
    to: String,
}

/// How far a move got: what an undo must take back.
#[derive(Default)]
struct Done {
    stopped: bool,
    marked: bool,
    created: bool,
}

impl Move {
    fn progress(&self, step: &str, extra: Value) {
        let mut data = json!({
            "serverId": self.rec.server_id,
            "step": step,
            "from": self.from,
            "to": self.to,
        });
        if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
            d.extend(e);
        }
        publish(
            &self.api,
            &self.from,
            &self.rec.server_id,
            "transfer_progress",
            data,
        );
    }

    async fn send(&self, agent: &str, action: Action<'static>) -> Result<Value, ApiError> {
        let r = command(&self.api, agent, &self.rec.server_id, action).await?;
        Ok(r.data.unwrap_or(Value::Null))
    }

    async fn run(self) -> Result<Value, ApiError> {
        let mut done = Done::default();
        match self.steps(&mut done).await {
            Ok(out) => Ok(out),
            Err(e) => {
                self.undo(&done).await;
                self.progress("failed", json!({"error": e.to_string()}));
                Err(e)
            }
        }
    }

    async fn steps(&self, done: &mut Done) -> Result<Value, ApiError> {
        let sid = &self.rec.server_id;
        // [`transfer_server`] reserved the target with the first mark.
        done.marked = true;
        let status = self.send(&self.from, Action::GetStatus).await?;
        let running = matches!(
            status
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
            Some(ServerState::Running | ServerState::Starting)
        );
        let moving = |phase| {
            Some(Moving {
                phase,
                was_running: running,
                target: Some(self.to.clone()),
            })
        };
        // Marked before the stop, so a panel restart from here on starts it again.
        self.set_moving(None, moving(MovePhase::Preparing)).await?;
        if running {
            self.progress("stopping", json!({}));
            self.send(&self.from, Action::StopServer(None)).await?;
            done.stopped = true;
        }
        self.progress("backing_up", json!({}));
        let backup = backup_run::take(&self.api, &self.rec).await?;
        // From here the target may hold a copy (and speak for the server).
        self.set_moving(Some(self.to.clone()), moving(MovePhase::Copying))
            .await?;
        self.progress("creating", json!({"backupId": backup.id}));
        let text = self.rec.egg_config.to_string();
        let egg: EggConfig<'_> = serde_json::from_str(&text)
            .map_err(|e| ApiError::new(ErrorCode::ConfigInvalid, format!("eggConfig: {e}")))?;
        let egg = egg.into_owned();
        let create = Action::CreateServer(CreateServer {
            server_id: Cow::Owned(sid.clone()),
            egg_config: Box::new(egg),
            skip_install: true,
        });
        let r = self.api.hub.command(&self.to, None, create).await?;
        if !r.success {
            return Err(ApiError::from_agent(&r));
        }
        done.created = true;
        self.progress("restoring", json!({"backupId": backup.id}));
        backup_run::push(&self.api, &self.to, sid, &backup).await?;
        if running {
            self.progress("starting", json!({}));
            self.send(&self.to, Action::StartServer).await?;
        }
        let epoch = self.commit(running).await?;
        self.progress("removing", json!({"epoch": epoch}));
        let purge = Action::DeleteServer(Some(DeleteServer { purge: true }));
        let removed = match self.api.hub.command(&self.from, Some(sid), purge).await {
            Ok(r) if r.success => true,
            Ok(r) => {
                log::warn!(
                    "server {sid}: its copy on {} stays: {:?}",
                    self.from,
                    r.error
                );
                false
            }
            Err(e) => {
                log::warn!("server {sid}: its copy on {} stays: {e}", self.from);
                false
            }
        };
        if removed {
            if let Err(e) = self.set_moving(None, None).await {
                log::error!("server {sid}: cannot clear its transfer mark: {e}");
            }
        } else {
            // The mark stays (`removing`): the old copy is deleted when the source can.
            move_recovery::spawn(
                &self.api,
                sid,
                move_recovery::Plan::Finish {
                    source: self.from.clone(),
                },
            );
        }
        self.progress("done", json!({"epoch": epoch, "sourceRemoved": removed}));
        let server = self.api.store.server(sid);
        Ok(json!({
            "success": true,
            "agentId": self.to,
            "previousAgentId": self.from,
            "epoch": epoch,
            "backupId": backup.id,
            "sourceRemoved": removed,
            "running": running,
            "server": server.map(|s| json!({"serverId": s.server_id, "agentId": s.agent_id, "epoch": s.epoch})),
        }))
    }

    /// Sets or clears the record's `handover` and `moving`.
    async fn set_moving(
        &self,
        handover: Option<String>,
        moving: Option<Moving>,
    ) -> Result<(), ApiError> {
        mark(&self.api, &self.rec.server_id, handover, moving).await
    }

    /// The move is done: the target owns the server, one epoch later.
    async fn commit(&self, was_running: bool) -> Result<u64, ApiError> {
        let store = self.api.store.clone();
        let sid = self.rec.server_id.clone();
        let to = self.to.clone();
        let epoch = blocking(move || {
            let Some(mut rec) = store.server(&sid) else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("server {sid} was deleted during its transfer"),
                ));
            };
            rec.handover = Some(std::mem::replace(&mut rec.agent_id, to));
            rec.moving = Some(Moving {
                phase: MovePhase::Removing,
                was_running,
                target: None,
            });
            rec.epoch = rec.epoch.saturating_add(1);
            store.put_server(&rec)?;
            Ok(rec.epoch)
        })
        .await?;
        Ok(epoch)
    }

    /// Takes back what a failed move did, best effort and in reverse.
    async fn undo(&self, done: &Done) {
        let sid = &self.rec.server_id;
        if done.created {
            let purge = Action::DeleteServer(Some(DeleteServer { purge: true }));
            if let Err(e) = self.send(&self.to, purge).await {
                log::warn!("server {sid}: its partial copy on {} stays: {e}", self.to);
            }
        }
        if done.marked
            && let Err(e) = self.set_moving(None, None).await
        {
            log::error!("server {sid}: cannot clear its transfer mark: {e}");
        }
        if done.stopped
            && let Err(e) = self.send(&self.from, Action::StartServer).await
        {
            log::warn!("server {sid}: cannot start it again on {}: {e}", self.from);
        }
    }
}
