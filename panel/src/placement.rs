//! Placement: which node gets a new server, and — when none can — why not, node by node.
//!
//! Pure: the caller ([`crate::api`]'s create handler, under the placement lock) gathers one
//! [`Node`] per registered agent and the [`Need`] of the server; [`place`] filters and scores.
//!
//! A node is a candidate only if it is `healthy` (not degraded, offline, dead or draining),
//! carries every label of the server's constraints, has the memory and CPU the server's
//! limits ask for still uncommitted (the agent refuses overcommit too), its data disk is not
//! full, and none of the requested host ports is taken by another server on it. Among the
//! candidates the strategy scores (ties: lowest id):
//!
//! - [`Strategy::Spread`] (default, Nomad's and Agones' "distributed"): the most headroom
//!   after placing — the mean of the uncommitted memory and CPU fractions. Servers fan out,
//!   so one node's failure hits few of them.
//! - [`Strategy::Binpack`]: the fullest node that still fits — the mean of the committed
//!   memory and CPU fractions after placing. Servers pile up, leaving whole nodes empty for
//!   big servers (or to be switched off).
//!
//! Scores use committed limits, not live figures (CPU load, disk use): a live figure changes
//! between two creates — nodes sharing a disk see it move with everyone's writes — and
//! would make placement flap between nodes that are in truth equally free. The data disk is
//! a filter (full from [`DISK_FULL_PERCENT`]), not a score.

use std::collections::{BTreeMap, BTreeSet};

use proto::quantity::Bytes;
use proto::validate::Protocol;

use crate::health::State;

/// `--placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Spread,
    Binpack,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "spread" => Some(Strategy::Spread),
            "binpack" => Some(Strategy::Binpack),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Binpack => "binpack",
        }
    }
}

/// The data disk use (percent) from which a node takes no new server.
pub const DISK_FULL_PERCENT: f64 = 90.0;

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub agent_id: String,
    pub state: State,
    pub labels: BTreeMap<String, String>,
    /// `capabilities.maxMemory` in bytes.
    pub memory_capacity: u64,
    /// Memory limits of the servers already placed on it.
    pub memory_committed: u64,
    /// `capabilities.maxCpuCores` in millicores.
    pub cpu_capacity: u64,
    pub cpu_committed: u64,
    /// The data disk's use in percent from the last pong, if any.
    pub disk_percent: Option<f64>,
    /// Host ports of the servers already placed on it.
    pub ports_taken: BTreeSet<(u16, Protocol)>,
}

/// What a new server needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Need {
    /// Memory limit in bytes.
    pub memory: u64,
    /// CPU limit in millicores.
    pub cpu: u64,
    /// Host ports it binds.
    pub ports: Vec<(u16, Protocol)>,
    /// Labels the node must carry (`"constraints"`).
    pub constraints: BTreeMap<String, String>,
}

/// Why one node was not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub agent_id: String,
    pub reason: String,
}

/// The best node for `need` under `strategy`, or every node's reason for refusing.
pub fn place<'a>(
    nodes: &'a [Node],
    need: &Need,
    strategy: Strategy,
) -> Result<&'a str, Vec<Rejection>> {
    let mut best: Option<(f64, &Node)> = None;
    let mut rejections = Vec::new();
    for node in nodes {
        match fits(node, need) {
            Err(reason) => rejections.push(Rejection {
                agent_id: node.agent_id.clone(),
                reason,
            }),
            Ok(()) => {
                let s = score(node, need, strategy);
                let better = match best {
                    None => true,
                    Some((bs, bn)) => s > bs || (s == bs && node.agent_id < bn.agent_id),
                };
                if better {
                    best = Some((s, node));
                }
            }
        }
    }
    best.map(|(_, n)| n.agent_id.as_str()).ok_or(rejections)
}

/// Whether `need` may go to `node`; the first reason it may not.
pub fn fits(node: &Node, need: &Need) -> Result<(), String> {
    if node.state != State::Healthy {
        return Err(format!("node is {}", node.state.as_str()));
    }
    for (k, v) in &need.constraints {
        match node.labels.get(k) {
            Some(have) if have == v => {}
            Some(have) => return Err(format!("label {k}={have}, constraint wants {k}={v}")),
            None => return Err(format!("no label {k} (constraint {k}={v})")),
        }
    }
    let mem_free = node.memory_capacity.saturating_sub(node.memory_committed);
    if mem_free < need.memory {
        return Err(format!(
            "needs {} of memory, {} uncommitted",
            Bytes(need.memory),
            Bytes(mem_free)
        ));
    }
    let cpu_free = node.cpu_capacity.saturating_sub(node.cpu_committed);
    if cpu_free < need.cpu {
        return Err(format!(
            "needs {} CPU cores, {} uncommitted",
            need.cpu as f64 / 1000.0,
            cpu_free as f64 / 1000.0
        ));
    }
    if let Some(d) = node.disk_percent.filter(|d| *d >= DISK_FULL_PERCENT) {
        return Err(format!("data disk {d:.1} % full"));
    }
    if let Some((port, proto)) = need.ports.iter().find(|p| node.ports_taken.contains(p)) {
        return Err(format!(
            "host port {port}/{} is taken by another server",
            proto.as_str()
        ));
    }
    Ok(())
}

/// Higher is better; only called for nodes that fit.
fn score(node: &Node, need: &Need, strategy: Strategy) -> f64 {
    let frac = |used: u64, cap: u64| {
        if cap == 0 {
            1.0
        } else {
            (used as f64 / cap as f64).min(1.0)
        }
    };
    let mem_used = frac(
        node.memory_committed.saturating_add(need.memory),
        node.memory_capacity,
    );
    let cpu_used = frac(
        node.cpu_committed.saturating_add(need.cpu),
        node.cpu_capacity,
    );
    match strategy {
        Strategy::Spread => ((1.0 - mem_used) + (1.0 - cpu_used)) / 2.0,
        Strategy::Binpack => (mem_used + cpu_used) / 2.0,
    }
}

/// The host ports an `eggConfig` (as stored) binds: `{"ports":{"25565/udp":25565,…}}`,
/// container port keys with an optional `/tcp` or `/udp`, host ports as values (0: none).
pub fn egg_host_ports(egg: &serde_json::Value) -> Vec<(u16, Protocol)> {
    let Some(ports) = egg.get("ports").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    ports
        .iter()
        .filter_map(|(key, host)| {
            let host = u16::try_from(host.as_u64()?).ok().filter(|h| *h != 0)?;
            let proto = match key.rsplit_once('/').map(|(_, p)| p) {
                Some("udp") => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            Some((host, proto))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, mem_gb: u64, used_gb: u64) -> Node {
        Node {
            agent_id: id.into(),
            state: State::Healthy,
            labels: BTreeMap::new(),
            memory_capacity: mem_gb << 30,
            memory_committed: used_gb << 30,
            cpu_capacity: 4000,
            cpu_committed: 0,
            disk_percent: Some(40.0),
            ports_taken: BTreeSet::new(),
        }
    }

    fn need(gb: u64) -> Need {
        Need {
            memory: gb << 30,
            cpu: 500,
            ..Need::default()
        }
    }

    #[test]
    fn spread_takes_the_emptiest_and_binpack_the_fullest() {
        let nodes = [node("a", 8, 4), node("b", 8, 1)];
        assert_eq!(place(&nodes, &need(1), Strategy::Spread), Ok("b"));
        assert_eq!(place(&nodes, &need(1), Strategy::Binpack), Ok("a"));
        // Binpack still skips a node where it does not fit.
        assert_eq!(place(&nodes, &need(5), Strategy::Binpack), Ok("b"));
    }

    #[test]
    fn live_disk_use_does_not_sway_the_score() {
        let mut a = node("a", 8, 1);
        a.disk_percent = Some(10.0);
        let mut b = node("b", 8, 0);
        b.disk_percent = Some(80.0);
        assert_eq!(place(&[a, b], &need(1), Strategy::Spread), Ok("b"));
    }

    #[test]
    fn equal_nodes_tie_on_the_lowest_id() {
        let nodes = [node("b", 8, 0), node("a", 8, 0), node("c", 8, 0)];
        assert_eq!(place(&nodes, &need(1), Strategy::Spread), Ok("a"));
        assert_eq!(place(&nodes, &need(1), Strategy::Binpack), Ok("a"));
    }

    #[test]
    fn only_healthy_nodes_are_candidates() {
        for state in [
            State::Degraded,
            State::Offline,
            State::Dead,
            State::Draining,
        ] {
            let mut n = node("a", 8, 0);
            n.state = state;
            let why = place(&[n], &need(1), Strategy::Spread).unwrap_err();
            assert_eq!(why[0].reason, format!("node is {}", state.as_str()));
        }
    }

    #[test]
    fn every_node_says_why_not() {
        let mut full = node("full", 2, 2);
        full.cpu_committed = 0;
        let mut busy = node("busy", 8, 0);
        busy.cpu_committed = 3800;
        let mut disk = node("disk", 8, 0);
        disk.disk_percent = Some(95.0);
        let mut port = node("port", 8, 0);
        port.ports_taken.insert((25565, Protocol::Tcp));
        let mut eu = node("us", 8, 0);
        eu.labels.insert("region".into(), "us".into());
        let mut n = need(1);
        n.ports = vec![(25565, Protocol::Tcp)];
        n.constraints.insert("region".into(), "eu".into());
        let why = place(&[full, busy, disk, port, eu], &n, Strategy::Spread).unwrap_err();
        let reasons: Vec<_> = why
            .iter()
            .map(|r| (r.agent_id.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].1.starts_with("no label region"), "{reasons:?}");
        assert_eq!(reasons[4].1, "label region=us, constraint wants region=eu");
        // With the constraint met, each node fails on its own resource.
        n.constraints.clear();
        let nodes = [
            node("full", 2, 2),
            {
                let mut b = node("busy", 8, 0);
                b.cpu_committed = 3800;
                b
            },
            {
                let mut d = node("disk", 8, 0);
                d.disk_percent = Some(95.0);
                d
            },
            {
                let mut p = node("port", 8, 0);
                p.ports_taken.insert((25565, Protocol::Tcp));
                p
            },
        ];
        let why = place(&nodes, &n, Strategy::Binpack).unwrap_err();
        assert!(why[0].reason.contains("of memory"), "{why:?}");
        assert!(why[1].reason.contains("CPU cores"), "{why:?}");
        assert!(why[2].reason.contains("95.0 % full"), "{why:?}");
        assert!(why[3].reason.contains("25565/tcp"), "{why:?}");
        // The same port over UDP is free.
        n.ports = vec![(25565, Protocol::Udp)];
        assert_eq!(place(&nodes, &n, Strategy::Spread), Ok("port"));
    }

    #[test]
    fn constraints_must_all_match() {
        let mut a = node("a", 8, 0);
        a.labels.insert("region".into(), "eu".into());
        a.labels.insert("tier".into(), "gold".into());
        let mut b = node("b", 16, 0);
        b.labels.insert("region".into(), "eu".into());
        let mut n = need(1);
        n.constraints.insert("region".into(), "eu".into());
        assert_eq!(
            place(&[a.clone(), b.clone()], &n, Strategy::Spread),
            Ok("b")
        );
        n.constraints.insert("tier".into(), "gold".into());
        assert_eq!(place(&[a, b], &n, Strategy::Spread), Ok("a"));
    }

    #[test]
    fn overcommitted_nodes_do_not_underflow() {
        let n = node("a", 2, 3);
        assert!(place(&[n], &need(1), Strategy::Binpack).is_err());
    }

    #[test]
    fn host_ports_of_a_stored_egg() {
        let egg = serde_json::json!({"ports": {"25565": 25565, "19132/udp": 19132, "8080/tcp": 0}});
        let mut p = egg_host_ports(&egg);
        p.sort();
        assert_eq!(p, [(19132, Protocol::Udp), (25565, Protocol::Tcp)]);
        assert!(egg_host_ports(&serde_json::json!({})).is_empty());
    }
}
