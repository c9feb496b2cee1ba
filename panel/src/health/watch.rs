//! The watcher: once a second, what the hub (live connections, last pongs, last contact)
//! and the store (registered agents, drain flags) know becomes one [`Observation`] per
//! agent for [`Health::evaluate`]; and at every history step, the nodes' figures become
//! history points.

use async_io::Timer;
use futures_lite::future;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::time::unix_now;

use super::{Health, Observation};
use crate::history::{History, NodeSample};
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How often states are decided.
pub const EVERY: Duration = Duration::from_secs(1);

/// Every registered agent as the hub and the store see it now.
pub fn observe(hub: &Hub, store: &Store) -> Vec<Observation> {
    // The few fields needed, not a sorted copy of every record (this runs every second).
    store
        .map_agents(|a| (a.id.clone(), a.registered_at, a.draining))
        .into_iter()
        .map(|(agent_id, registered_at, draining)| {
            let live = hub.live(&agent_id);
            Observation {
                last_seen: hub.last_seen(&agent_id),
                connected_at: live.as_ref().map(|l| l.connected_at),
                pong: live.and_then(|l| l.pong),
                registered_at,
                draining,
                agent_id,
            }
        })
        .collect()
}

/// Runs until `shutdown`.
pub async fn run(
    health: Arc<Health>,
    history: Arc<History>,
    hub: Arc<Hub>,
    store: Arc<Store>,
    shutdown: Shutdown,
) {
    let mut last_step = None;
    let work = async {
        loop {
            let now = unix_now();
            let seen = observe(&hub, &store);
            health.evaluate(&seen, now);
            let step = now / history.step_secs();
            if last_step != Some(step) {
                last_step = Some(step);
                let nodes = node_samples(&seen, &store);
                let history = history.clone();
                if let Err(e) = smol::unblock(move || history.tick(now, &nodes)).await {
                    log::error!("resource history: {e}");
                }
            }
            Timer::after(EVERY).await;
        }
    };
    future::or(work, shutdown.wait()).await;
}

/// The connected agents' figures from their last pong, with their number of servers.
fn node_samples(seen: &[Observation], store: &Store) -> Vec<NodeSample> {
    let mut servers: HashMap<String, u64> = HashMap::new();
    for s in store.servers() {
        *servers.entry(s.agent_id).or_default() += 1;
    }
    seen.iter()
        .filter_map(|o| {
            let load = o.pong.as_ref()?.system_load;
            Some(NodeSample {
                agent_id: o.agent_id.clone(),
                cpu: load.cpu,
                memory: load.memory,
                disk: load.disk,
                servers: servers.get(&o.agent_id).copied().unwrap_or(0),
            })
        })
        .collect()
}
