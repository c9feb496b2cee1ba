//! A node (re)connects: before anything else, its stale copies (servers failed over while
//! it was dead) are stopped and quarantined; then it gets its failover list (what it stops
//! when cut off from the panel); then the failover servers its self-fencing stopped are
//! started again (only those still placed on it and meant to run).

use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use proto::ServerState;
use proto::message::{Action, FailoverServers, QuarantineServers, StaleCopy as WireCopy};
use proto::time::{format_rfc3339, unix_now};

use crate::api::backup_run;
use crate::api::{Api, blocking};
use crate::store::{DesiredState, MAX_QUARANTINED, Quarantined};

/// The agents some record still waits on to quarantine a copy.
pub(super) fn with_stale(api: &Api) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for r in api.store.servers_where(|r| !r.failover.stale.is_empty()) {
        out.extend(r.failover.stale.into_iter().map(|c| c.agent_id));
    }
    out
}

/// Everything a (re)connected node needs, in order; `fresh`: a new connection (not a
/// retry of pending quarantines).
pub(super) async fn reconcile(api: &Api, agent: &str, fresh: bool) {
    let clean = quarantine(api, agent).await;
    if fresh {
        let none = !api
            .store
            .any_server(|r| r.agent_id == agent && r.failover.enabled);
        if !(none && api.failover.empty_lists.lock().contains(agent)) {
            send_list(api, agent).await;
        }
        if clean {
            restart_fenced(api, agent).await;
        }
    }
}

/// Sends `quarantine_servers` for every stale copy on `agent` and records the outcome;
/// `true` when none is left pending.
pub(super) async fn quarantine(api: &Api, agent: &str) -> bool {
    let stale: Vec<WireCopy> = api
        .store
        .servers_where(|r| r.failover.stale.iter().any(|c| c.agent_id == agent))
        .iter()
        .map(|r| WireCopy {
            server_id: r.server_id.clone(),
            epoch: r.epoch,
        })
        .collect();
    if stale.is_empty() {
        return true;
    }
    log::warn!(
        "agent {agent} is back with {} stale copie(s): quarantining",
        stale.len()
    );
    let action = Action::QuarantineServers(QuarantineServers { servers: stale });
    let data = match api.hub.command(agent, None, action).await {
        Ok(r) if r.success => r.data.unwrap_or(Value::Null),
        Ok(r) => {
            log::error!("agent {agent}: quarantine refused: {:?}", r.error);
            return false;
        }
        Err(e) => {
            log::error!("agent {agent}: quarantine not sent: {e}");
            return false;
        }
    };
    let now = unix_now();
    let mut pending = false;
    let entries = |k: &str| data[k].as_array().cloned().unwrap_or_default();
    for q in entries("quarantined") {
        let Some(sid) = q["serverId"].as_str() else {
            continue;
        };
        let epoch = q["epoch"].as_u64();
        let path = q["path"].as_str().map(str::to_owned);
        let at = now;
        let recorded = settle(api, sid, agent, move |stale_epoch| Quarantined {
            agent_id: String::new(),
            epoch: epoch.unwrap_or(stale_epoch),
            at,
            path,
        })
        .await;
        if let Some(entry) = recorded {
            api.failover.quarantined.fetch_add(1, Ordering::Relaxed);
            backup_run::publish(
                api,
                agent,
                sid,
                "server_quarantined",
                json!({
                    "serverId": sid,
                    "agentId": agent,
                    "epoch": entry.epoch,
                    "at": format_rfc3339(entry.at),
                    "path": entry.path,
                }),
            );
        }
    }
    for sid in entries("absent").iter().filter_map(Value::as_str) {
        log::info!("agent {agent} has no copy of {sid} left: nothing to quarantine");
        clear(api, sid, agent).await;
    }
    for c in entries("current") {
        if let Some(sid) = c["serverId"].as_str() {
            log::error!("agent {agent}: its copy of {sid} is as new as the panel's; left alone");
            clear(api, sid, agent).await;
        }
    }
    for f in entries("failed") {
        pending = true;
        log::error!(
            "agent {agent}: quarantine of {} failed: {}",
            f["serverId"],
            f["error"]
        );
    }
    !pending
}

/// Moves `agent`'s stale entry of `sid` to `quarantined` (the entry built by `make` from
/// the stale epoch, its agent filled in); the entry recorded, if there was a stale one.
async fn settle(
    api: &Api,
    sid: &str,
    agent: &str,
    make: impl FnOnce(u64) -> Quarantined + Send + 'static,
) -> Option<Quarantined> {
    let (store, sid, agent) = (api.store.clone(), sid.to_owned(), agent.to_owned());
    let out = blocking(move || {
        store.update_server(&sid, |r| {
            let i = r.failover.stale.iter().position(|c| c.agent_id == agent)?;
            let stale = r.failover.stale.remove(i);
            let mut q = make(stale.epoch);
            q.agent_id = agent.clone();
            r.failover.quarantined.push(q.clone());
            let over = r.failover.quarantined.len().saturating_sub(MAX_QUARANTINED);
            r.failover.quarantined.drain(..over);
            Some(q)
        })
    })
    .await;
    match out {
        Ok(o) => o.flatten(),
        Err(e) => {
            log::error!("recording a quarantine: {e}");
            None
        }
    }
}

/// Drops `agent`'s stale entry of `sid` (nothing was there to quarantine).
async fn clear(api: &Api, sid: &str, agent: &str) {
    let (store, sid, agent) = (api.store.clone(), sid.to_owned(), agent.to_owned());
    let r = blocking(move || {
        store.update_server(&sid, |r| r.failover.stale.retain(|c| c.agent_id != agent))
    })
    .await;
    if let Err(e) = r {
        log::error!("clearing a stale copy: {e}");
    }
}

/// Sends `agent` the complete list of its failover-enabled servers.
pub(crate) async fn send_list(api: &Api, agent: &str) {
    let ids: Vec<String> = api
        .store
        .servers_where(|r| r.agent_id == agent && r.failover.enabled)
        .into_iter()
        .map(|r| r.server_id)
        .collect();
    let empty = ids.is_empty();
    let action = Action::FailoverServers(FailoverServers { server_ids: ids });
    match api.hub.command(agent, None, action).await {
        Ok(r) if r.success => {
            let mut lists = api.failover.empty_lists.lock();
            if empty {
                lists.insert(agent.to_owned());
            } else {
                lists.remove(agent);
            }
        }
        Ok(r) => log::warn!("agent {agent}: failover list refused: {:?}", r.error),
        Err(e) => log::info!("agent {agent}: failover list not sent ({e}); sent on connection"),
    }
}

/// Starts again the failover servers on `agent` that should run but are stopped (its
/// self-fencing stopped them while it was cut off).
pub(super) async fn restart_fenced(api: &Api, agent: &str) {
    let candidates: Vec<String> = api
        .store
        .servers_where(|r| fenced_candidate(r, agent))
        .into_iter()
        .map(|r| r.server_id)
        .collect();
    for sid in candidates {
        let Ok(status) = backup_run::command(api, agent, &sid, Action::GetStatus).await else {
            continue;
        };
        let state = status
            .data
            .as_ref()
            .and_then(|d| d.get("status"))
            .and_then(|s| serde_json::from_value::<ServerState>(s.clone()).ok());
        if state != Some(ServerState::Stopped) {
            continue;
        }
        // Checked again right before: a failover may have taken the server meanwhile.
        if !api
            .store
            .server(&sid)
            .is_some_and(|r| fenced_candidate(&r, agent))
        {
            continue;
        }
        match backup_run::command(api, agent, &sid, Action::StartServer).await {
            Ok(_) => log::info!("server {sid}: started again on {agent} after its fencing"),
            Err(e) => log::warn!("server {sid}: cannot start it again on {agent}: {e}"),
        }
    }
}

fn fenced_candidate(r: &crate::store::ServerRecord, agent: &str) -> bool {
    r.agent_id == agent
        && r.failover.enabled
        && r.handover.is_none()
        && r.desired_state == DesiredState::Running
}
