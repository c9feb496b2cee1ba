//! One failover: a server on a dead node is recreated on a healthy one from its latest
//! backup. Steps, each a `failover_progress` event: pick the node (placement, the dead one
//! excluded), mark the move (`handover`: the new node may speak for the server and gets the
//! next epoch), create it there without its install script, restore the backup, start it
//! if it was meant to run, then commit: the record names the new node, one epoch later,
//! and remembers the dead node's copy as stale (quarantined when that node returns).
//!
//! The commit happens only while the old node is still dead and disconnected; if it came
//! back meanwhile, or any step fails, the new copy is deleted and the mark cleared: the
//! server stays where it was (`failover_failed`, tried again later).

use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proto::ErrorCode;
use proto::egg::EggConfig;
use proto::message::{Action, CreateServer, DeleteServer};

use super::reconcile;
use crate::api::backup_run::{self, BusyGuard};
use crate::api::{Api, ApiError, blocking, placing};
use crate::placement::{self, Need};
use crate::store::{DesiredState, ServerRecord, StaleCopy};

/// Why a server is not failed over when it has no backup.
pub const NO_BACKUP: &str = "the server has no backup: recreating it empty would look like a \
     working server with its files gone; take backups (a schedule) of failover servers";

struct Run<'a> {
    api: &'a Arc<Api>,
    rec: ServerRecord,
    to: String,
}

/// Fails `rec` over; `true` when it now runs (or is recorded) on another node.
pub(super) async fn recreate(api: &Arc<Api>, rec: ServerRecord) -> bool {
    let sid = rec.server_id.clone();
    let from = rec.agent_id.clone();
    let event = |name: &str, data: Value| {
        backup_run::publish(api, &from, &sid, name, data);
    };
    let Some(backup) = api.store.backups_of(&sid).into_iter().next() else {
        log::error!("server {sid}: not failed over off dead agent {from}: no backup");
        api.failover.refused.fetch_add(1, Ordering::Relaxed);
        event(
            "failover_refused",
            json!({"serverId": sid, "from": from, "code": "NO_BACKUP", "reason": NO_BACKUP}),
        );
        return false;
    };
    let _busy = match BusyGuard::take(api, &sid) {
        Ok(b) => b,
        Err(e) => {
            event(
                "failover_failed",
                json!({"serverId": sid, "from": from, "error": e.to_string()}),
            );
            api.failover.failed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
    };
    let need = Need {
        memory: rec.memory_bytes,
        cpu: rec.cpu_millis,
        ports: placement::egg_host_ports(&rec.egg_config),
        constraints: rec.constraints.clone(),
    };
    let to = match choose_and_mark(api, need, &rec).await {
        Ok(to) => to,
        Err(e) => {
            log::error!("server {sid}: no node to fail over to: {e}");
            api.failover.failed.fetch_add(1, Ordering::Relaxed);
            event(
                "failover_failed",
                json!({"serverId": sid, "from": from, "step": "placing", "error": e.to_string()}),
            );
            return false;
        }
    };
    log::warn!(
        "server {sid}: agent {from} is dead; failing over to {to} from backup {}",
        backup.id
    );
    let run = Run {
        api,
        rec,
        to: to.clone(),
    };
    let mut created = false;
    match run.steps(&backup, &mut created).await {
        Ok(epoch) => {
            api.failover.done.fetch_add(1, Ordering::Relaxed);
            run.progress("done", json!({"epoch": epoch, "backupId": backup.id}));
            event(
                "failover_completed",
                json!({
                    "serverId": sid, "from": from, "to": to, "epoch": epoch,
                    "backupId": backup.id, "backupCreatedAt":
                        proto::time::format_rfc3339(backup.created_at),
                }),
            );
            reconcile::send_list(api, &to).await;
            true
        }
        Err(e) => {
            run.undo(created).await;
            // The node came back meanwhile: its reconciliation skipped the server (it was
            // being moved); what its fencing stopped starts again there.
            if api.hub.is_online(&from) {
                reconcile::restart_fenced(api, &from).await;
            }
            api.failover.failed.fetch_add(1, Ordering::Relaxed);
            log::error!("server {sid}: failover to {to} failed: {e}");
            run.progress("failed", json!({"error": e.to_string()}));
            event(
                "failover_failed",
                json!({"serverId": sid, "from": from, "to": to, "error": e.to_string()}),
            );
            false
        }
    }
}

/// Picks the new node and marks the move (`handover`) under the placement lock, as creates
/// and transfers do: the marked target counts the server's memory and CPU as committed
/// until the commit or the undo, so a create racing this failover cannot take the same room.
async fn choose_and_mark(
    api: &Arc<Api>,
    need: Need,
    rec: &ServerRecord,
) -> Result<String, ApiError> {
    let api = api.clone();
    let (sid, from) = (rec.server_id.clone(), rec.agent_id.clone());
    blocking(move || {
        let _lock = api.placement.lock();
        let to = placing::choose(&api, &need, Some(&from))?;
        let marked = api.store.update_server(&sid, |r| {
            if r.agent_id == from {
                r.handover = Some(to.clone());
            }
        })?;
        if marked.is_none() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("server {sid} was deleted during its failover"),
            ));
        }
        Ok(to)
    })
    .await
}

impl Run<'_> {
    fn progress(&self, step: &str, extra: Value) {
        let mut data = json!({
            "serverId": self.rec.server_id,
            "step": step,
            "from": self.rec.agent_id,
            "to": self.to,
        });
        if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
            d.extend(e);
        }
        backup_run::publish(
            self.api,
            &self.rec.agent_id,
            &self.rec.server_id,
            "failover_progress",
            data,
        );
    }

    async fn steps(
        &self,
        backup: &crate::store::BackupRecord,
        created: &mut bool,
    ) -> Result<u64, ApiError> {
        let sid = self.rec.server_id.clone();
        self.progress("creating", json!({"backupId": backup.id}));
        let text = self.rec.egg_config.to_string();
        let egg: EggConfig<'_> = serde_json::from_str(&text)
            .map_err(|e| ApiError::new(ErrorCode::ConfigInvalid, format!("eggConfig: {e}")))?;
        let create = Action::CreateServer(CreateServer {
            server_id: Cow::Owned(sid.clone()),
            egg_config: Box::new(egg.into_owned()),
            skip_install: true,
        });
        let r = self.api.hub.command(&self.to, None, create).await?;
        if !r.success {
            return Err(ApiError::from_agent(&r));
        }
        *created = true;
        self.progress("restoring", json!({"backupId": backup.id}));
        backup_run::push(self.api, &self.to, &sid, backup).await?;
        if self.rec.desired_state == DesiredState::Running {
            self.progress("starting", json!({}));
            backup_run::command(self.api, &self.to, &sid, Action::StartServer).await?;
        }
        self.commit().await
    }

    /// The new node owns the server, one epoch later; the dead node's copy is stale. Only
    /// while that node is still dead and disconnected.
    async fn commit(&self) -> Result<u64, ApiError> {
        let api = self.api.clone();
        let (sid, from, to) = (
            self.rec.server_id.clone(),
            self.rec.agent_id.clone(),
            self.to.clone(),
        );
        blocking(move || {
            let health = &api.nodes.health;
            let out = api.store.update_server(&sid, |r| {
                if r.agent_id != from || r.handover.as_deref() != Some(to.as_str()) {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("server {sid} changed during its failover"),
                    ));
                }
                if !health.is_dead(&from) || api.hub.is_online(&from) {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!(
                            "agent {from} came back during the failover: the server stays there"
                        ),
                    ));
                }
                r.failover.stale.retain(|c| c.agent_id != from);
                r.failover.stale.push(StaleCopy {
                    agent_id: from.clone(),
                    epoch: r.epoch,
                });
                r.agent_id = to.clone();
                r.handover = None;
                r.epoch = r.epoch.saturating_add(1);
                Ok(r.epoch)
            })?;
            out.unwrap_or_else(|| {
                Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("server {sid} was deleted during its failover"),
                ))
            })
        })
        .await
    }

    async fn set_handover(&self, to: Option<String>) -> Result<(), ApiError> {
        let store = self.api.store.clone();
        let sid = self.rec.server_id.clone();
        let from = self.rec.agent_id.clone();
        blocking(move || {
            store.update_server(&sid, |r| {
                if r.agent_id == from {
                    r.handover = to;
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Takes back a failed failover: the new copy goes, the mark is cleared.
    async fn undo(&self, created: bool) {
        let sid = &self.rec.server_id;
        if created {
            let purge = Action::DeleteServer(Some(DeleteServer { purge: true }));
            if let Err(e) = backup_run::command(self.api, &self.to, sid, purge).await {
                log::warn!("server {sid}: its partial copy on {} stays: {e}", self.to);
            }
        }
        if let Err(e) = self.set_handover(None).await {
            log::error!("server {sid}: cannot clear its failover mark: {e}");
        }
    }
}
