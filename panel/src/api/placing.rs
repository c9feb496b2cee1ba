//! The create handler's placement step: gather every registered agent as a
//! [`placement::Node`] (health, labels, committed limits, taken host ports, disk), let
//! [`placement::place`] choose under `--placement`, and record the server — all under the
//! placement lock, so that two creates cannot both take the last free memory (or the same
//! host port) of a node. A request that names its agent skips the scoring but not the
//! drain flag or the constraints.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proto::ErrorCode;
use proto::quantity::Bytes;
use proto::time::unix_now;
use proto::validate::Protocol;
use serde_json::Value;

use super::{Api, ApiError};
use crate::health::State;
use crate::node_metrics::Placement;
use crate::placement::{self, Need, Node, Rejection};
use crate::store::{DesiredState, ServerRecord};

/// What `POST /api/servers` asks to place.
pub(super) struct Placing {
    pub server_id: String,
    pub agent_id: Option<String>,
    pub egg: Value,
    pub egg_id: Option<String>,
    /// The user who owns it (`None`: the admin token).
    pub owner: Option<String>,
    pub need: Need,
}

/// Picks the agent (the one asked for, else by [`placement::place`]) and records the
/// server, under the placement lock.
pub(super) fn place_and_record(api: &Api, p: Placing) -> Result<ServerRecord, ApiError> {
    let _lock = api.placement.lock();
    let exists = || {
        ApiError::new(
            ErrorCode::Conflict,
            format!("server `{}` already exists", p.server_id),
        )
    };
    if api.store.server(&p.server_id).is_some() {
        return Err(exists());
    }
    let agent_id = match p.agent_id {
        Some(a) => {
            explicit(api, &a, &p.need)?;
            a
        }
        None => choose(api, &p.need, None)?,
    };
    let rec = ServerRecord {
        server_id: p.server_id.clone(),
        agent_id,
        egg_config: p.egg,
        desired_state: DesiredState::Created,
        memory_bytes: p.need.memory,
        cpu_millis: p.need.cpu,
        created_at: unix_now(),
        egg_id: p.egg_id,
        epoch: 0,
        handover: None,
        moving: None,
        failover: Default::default(),
        constraints: p.need.constraints.clone(),
    };
    if !api.store.insert_owned_server(&rec, p.owner.as_deref())? {
        return Err(exists());
    }
    Ok(rec)
}

/// A named agent: it must not be draining and must carry the constraints' labels.
pub(crate) fn explicit(api: &Api, agent_id: &str, need: &Need) -> Result<(), ApiError> {
    let rec = api
        .store
        .agent(agent_id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no agent `{agent_id}`")))?;
    if rec.draining {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("agent {agent_id} is draining: it takes no new servers (undrain it first)"),
        ));
    }
    for (k, v) in &need.constraints {
        if rec.labels.get(k) != Some(v) {
            return Err(ApiError::NoPlacement(vec![Rejection {
                agent_id: agent_id.to_owned(),
                reason: format!("does not carry the label {k}={v} the constraints ask for"),
            }]));
        }
    }
    api.node_metrics.placement(Placement::Explicit);
    Ok(())
}

/// The best connected node for `need` other than `exclude` (a transfer's source), or why
/// none is. Call it under `api.placement`'s lock when the result is recorded.
pub(crate) fn choose(api: &Api, need: &Need, exclude: Option<&str>) -> Result<String, ApiError> {
    let mut nodes = nodes(api);
    let mut excluded = Vec::new();
    if let Some(x) = exclude {
        nodes.retain(|n| {
            let keep = n.agent_id != x;
            if !keep {
                excluded.push(Rejection {
                    agent_id: n.agent_id.clone(),
                    reason: "the server is already there".into(),
                });
            }
            keep
        });
    }
    if !nodes.iter().any(|n| api.hub.is_online(&n.agent_id)) {
        api.node_metrics.placement(Placement::NoNode);
        return Err(ApiError::new(ErrorCode::AgentOffline, "no agent is online"));
    }
    match placement::place(&nodes, need, api.strategy) {
        Ok(id) => {
            api.node_metrics.placement(Placement::Placed);
            Ok(id.to_owned())
        }
        Err(mut why) => {
            api.node_metrics.placement(Placement::Insufficient);
            why.extend(excluded);
            Err(ApiError::NoPlacement(why))
        }
    }
}

/// Every registered agent as placement sees it, its health decided afresh (an agent that
/// connected a moment ago is not left `offline` until the watcher's next pass).
fn nodes(api: &Api) -> Vec<Node> {
    api.nodes
        .health
        .evaluate(&crate::health::observe(&api.hub, &api.store), unix_now());
    let committed = api.store.memory_committed();
    let cpu_committed = api.store.cpu_committed();
    let mut ports: HashMap<String, BTreeSet<(u16, Protocol)>> = HashMap::new();
    for s in api.store.servers() {
        ports
            .entry(s.agent_id.clone())
            .or_default()
            .extend(placement::egg_host_ports(&s.egg_config));
    }
    api.store
        .agents()
        .into_iter()
        .map(|a| {
            let live = api.hub.live(&a.id);
            // A revoked agent, or one not evaluated yet, counts as offline.
            let state = match api.nodes.health.state(&a.id) {
                Some(s) if live.is_some() && !a.tokens.revoked => s,
                Some(State::Dead) => State::Dead,
                _ => State::Offline,
            };
            Node {
                state,
                labels: a.labels.clone(),
                memory_capacity: Bytes::parse(&a.capabilities.max_memory)
                    .map(|b| b.0)
                    .unwrap_or(0),
                memory_committed: committed.get(&a.id).copied().unwrap_or(0),
                cpu_capacity: u64::from(a.capabilities.max_cpu_cores) * 1000,
                cpu_committed: cpu_committed.get(&a.id).copied().unwrap_or(0),
                disk_percent: live.and_then(|l| l.pong).map(|p| p.system_load.disk),
                ports_taken: ports.remove(&a.id).unwrap_or_default(),
                agent_id: a.id,
            }
        })
        .collect()
}

/// `"constraints"` of the create body: an object of label values (`CONFIG_INVALID`
/// otherwise).
pub(super) fn constraints(v: Option<Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let bad = |m: String| ApiError::new(ErrorCode::ConfigInvalid, m);
    let map = match v {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("constraints must be an object of label values".into())),
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            _ => return Err(bad(format!("constraints.{k} must be a string"))),
        }
    }
    proto::rest::validate_labels("constraints", &out).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}
