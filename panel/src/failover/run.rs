//! The failover loop: twice a second, what node health says becomes work — a pause when
//! many nodes are dead, a failover per failover-enabled server on a dead node, a
//! reconciliation per node that (re)connected, and retries of quarantines that failed.

use async_io::Timer;
use futures_lite::future;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::time::unix_now;

use super::pause::Change;
use super::{reconcile, recreate};
use crate::api::Api;

const TICK: Duration = Duration::from_millis(500);
/// A failover that was refused or failed is tried again after this long (the node may
/// still be dead; a backup or a healthy node may have appeared).
pub(super) const RETRY_SECS: u64 = 60;
/// Failovers running at once (each streams a backup to its new node).
const MAX_MOVING: usize = 4;
/// No failover in the panel's first seconds: after a panel outage longer than dead-after,
/// every node looks dead at first sight until it reconnects (agents retry at most every
/// 30 s); they get the time to.
const STARTUP_GRACE: Duration = Duration::from_secs(45);
/// Pending quarantines on connected nodes are retried this often.
const QUARANTINE_RETRY: Duration = Duration::from_secs(5);

/// Runs until the panel shuts down.
pub async fn run(api: Arc<Api>) {
    let shutdown = api.shutdown.clone();
    future::or(work(api), shutdown.wait()).await;
}

async fn work(api: Arc<Api>) {
    // Per agent, the connection the last reconciliation was for.
    let mut reconciled: HashMap<String, u64> = HashMap::new();
    let mut last_retry = std::time::Instant::now();
    let started = std::time::Instant::now();
    loop {
        Timer::after(TICK).await;
        // Ids only: this runs twice a second over every agent (10,000 copies of every
        // record and a sort per tick were a visible share of a 10,000-agent panel's CPU).
        let agents = api.store.map_agents(|a| a.id.clone());
        let health = &api.nodes.health;
        let dead: Vec<String> = agents
            .iter()
            .filter(|id| health.is_dead(id))
            .cloned()
            .collect();
        watch_pause(&api, dead.len(), agents.len());

        let retry = last_retry.elapsed() >= QUARANTINE_RETRY;
        if retry {
            last_retry = std::time::Instant::now();
        }
        // A set, not a scan per entry: with every agent reconciled that scan was
        // quadratic (10^8 string compares per tick at 10,000 agents, a quarter of the
        // panel's samples during a reconnect storm).
        let registered: HashSet<&str> = agents.iter().map(String::as_str).collect();
        reconciled.retain(|id, _| registered.contains(id.as_str()));
        drop(registered);
        let stale = if retry {
            reconcile::with_stale(&api)
        } else {
            Default::default()
        };
        for id in &agents {
            let Some(conn) = api.hub.connection_id(id) else {
                reconciled.remove(id);
                continue;
            };
            let fresh = reconciled.get(id) != Some(&conn);
            if fresh || stale.contains(id) {
                if !api.failover.reconciling.lock().insert(id.clone()) {
                    continue;
                }
                reconciled.insert(id.clone(), conn);
                let (api, id) = (api.clone(), id.clone());
                crate::exec::spawn(async move {
                    reconcile::reconcile(&api, &id, fresh).await;
                    api.failover.reconciling.lock().remove(&id);
                })
                .detach();
            }
        }

        if dead.is_empty() || api.failover.is_paused() || started.elapsed() < STARTUP_GRACE {
            continue;
        }
        start_failovers(&api, &dead);
    }
}

/// Pauses (and says so) when the count of dead nodes is a mass death.
fn watch_pause(api: &Api, dead: usize, total: usize) {
    let change = api.failover.pause.lock().observe(dead, total, unix_now());
    if change == Change::Paused {
        api.failover.pauses.fetch_add(1, Ordering::Relaxed);
        let state = api.failover.pause.lock().to_json();
        log::error!(
            "failover paused: {}",
            state["reason"].as_str().unwrap_or_default()
        );
        publish_wide(api, "failover_paused", state);
    }
}

/// An event about failover as a whole (no server): to subscribers who see everything.
pub(super) fn publish_wide(api: &Api, event: &str, data: serde_json::Value) {
    let frame = json!({
        "type": "event",
        "timestamp": proto::time::now_rfc3339(),
        "event": event,
        "data": data,
    });
    let msg = async_tungstenite::tungstenite::Message::Text(frame.to_string().into());
    api.events.publish("", None, Some(event), &msg);
}

/// Starts a failover for each failover-enabled server on a dead node (not already moving,
/// not tried lately), up to [`MAX_MOVING`] at once.
fn start_failovers(api: &Arc<Api>, dead: &[String]) {
    let now = unix_now();
    let candidates = api.store.servers_where(|r| {
        r.failover.enabled && r.handover.is_none() && dead.contains(&r.agent_id)
    });
    for rec in candidates {
        {
            let tried = api.failover.tried.lock();
            if let Some((agent, epoch, at)) = tried.get(&rec.server_id)
                && *agent == rec.agent_id
                && *epoch == rec.epoch
                && now.saturating_sub(*at) < RETRY_SECS
            {
                continue;
            }
        }
        {
            let mut moving = api.failover.moving.lock();
            if moving.len() >= MAX_MOVING || !moving.insert(rec.server_id.clone()) {
                continue;
            }
        }
        let api = api.clone();
        crate::exec::spawn(async move {
            let sid = rec.server_id.clone();
            let key = (rec.agent_id.clone(), rec.epoch);
            let ok = recreate::recreate(&api, rec).await;
            if !ok {
                api.failover
                    .tried
                    .lock()
                    .insert(sid.clone(), (key.0, key.1, unix_now()));
            } else {
                api.failover.tried.lock().remove(&sid);
            }
            api.failover.moving.lock().remove(&sid);
        })
        .detach();
    }
}
