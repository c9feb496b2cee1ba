//! The node-health part of `/metrics`: health transitions and placement decisions
//! (counters), and per-node and per-server gauges labelled by id. The gauges are rendered
//! from the registered agents and servers at scrape time, so their cardinality is the number
//! of agents and servers, and a deleted server's series disappear with it.

use proto::message::SystemLoad;

use crate::health::State;
use crate::metrics::{Counter, write_header, write_sample};

/// How a placement ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Chosen by the strategy.
    Placed,
    /// The request named the agent.
    Explicit,
    /// No node fitted (`INSUFFICIENT_RESOURCES`).
    Insufficient,
    /// No node connected at all (`AGENT_OFFLINE`).
    NoNode,
}

impl Placement {
    pub const ALL: [Placement; 4] = [
        Placement::Placed,
        Placement::Explicit,
        Placement::Insufficient,
        Placement::NoNode,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Placement::Placed => "placed",
            Placement::Explicit => "explicit",
            Placement::Insufficient => "insufficient_resources",
            Placement::NoNode => "no_node",
        }
    }
}

#[derive(Default)]
pub struct NodeMetrics {
    transitions: [Counter; 5],
    placements: [Counter; 4],
}

impl NodeMetrics {
    pub fn transition(&self, to: State) {
        self.transitions[to.index()].inc();
    }

    pub fn transitions(&self, to: State) -> u64 {
        self.transitions[to.index()].get()
    }

    pub fn placement(&self, outcome: Placement) {
        self.placements[outcome as usize].inc();
    }

    pub fn placements(&self, outcome: Placement) -> u64 {
        self.placements[outcome as usize].get()
    }
}

/// One node's gauges.
#[derive(Debug, Clone)]
pub struct NodeGauges {
    pub agent_id: String,
    pub state: Option<State>,
    pub load: Option<SystemLoad>,
    pub memory_capacity: u64,
    pub memory_committed: u64,
    pub cpu_capacity_millis: u64,
    pub cpu_committed_millis: u64,
}

/// One server's gauges (its latest fresh figures).
#[derive(Debug, Clone)]
pub struct ServerGauges {
    pub server_id: String,
    pub cpu: f64,
    pub memory: u64,
    pub disk: u64,
    pub players: Option<u32>,
}

/// Appends the whole node-health exposition.
pub fn render(out: &mut String, m: &NodeMetrics, nodes: &[NodeGauges], servers: &[ServerGauges]) {
    write_header(
        out,
        "panel_node_health_transitions_total",
        "Agent health transitions, by the state entered.",
        "counter",
    );
    for s in State::ALL {
        write_sample(
            out,
            "panel_node_health_transitions_total",
            &[("state", s.as_str())],
            m.transitions(s),
        );
    }
    write_header(
        out,
        "panel_placements_total",
        "Server placement decisions, by outcome.",
        "counter",
    );
    for p in Placement::ALL {
        write_sample(
            out,
            "panel_placements_total",
            &[("outcome", p.as_str())],
            m.placements(p),
        );
    }
    write_header(
        out,
        "panel_node_health",
        "1 for the agent's current health state (one series per agent and state).",
        "gauge",
    );
    for n in nodes {
        for s in State::ALL {
            write_sample(
                out,
                "panel_node_health",
                &[("agent", &n.agent_id), ("state", s.as_str())],
                u64::from(n.state == Some(s)),
            );
        }
    }
    write_header(
        out,
        "panel_node_load_percent",
        "The agent's host load from its last heartbeat, by resource.",
        "gauge",
    );
    for n in nodes {
        if let Some(l) = n.load {
            for (r, v) in [("cpu", l.cpu), ("memory", l.memory), ("disk", l.disk)] {
                write_sample(
                    out,
                    "panel_node_load_percent",
                    &[("agent", &n.agent_id), ("resource", r)],
                    finite(v),
                );
            }
        }
    }
    for (name, help, pick) in [
        (
            "panel_node_committed",
            "Limits of the servers placed on the agent (memory in bytes, cpu in millicores).",
            (|n: &NodeGauges| (n.memory_committed, n.cpu_committed_millis))
                as fn(&NodeGauges) -> (u64, u64),
        ),
        (
            "panel_node_capacity",
            "The agent's registered capacity (memory in bytes, cpu in millicores).",
            |n: &NodeGauges| (n.memory_capacity, n.cpu_capacity_millis),
        ),
    ] {
        write_header(out, name, help, "gauge");
        for n in nodes {
            let (mem, cpu) = pick(n);
            write_sample(
                out,
                name,
                &[("agent", &n.agent_id), ("resource", "memory")],
                mem,
            );
            write_sample(
                out,
                name,
                &[("agent", &n.agent_id), ("resource", "cpu")],
                cpu,
            );
        }
    }
    let server_gauges: [(&str, &str, Pick); 4] = [
        (
            "panel_server_cpu_percent",
            "The server's CPU use (100 = one core) from its last resource update.",
            |s| Some(s.cpu),
        ),
        (
            "panel_server_memory_bytes",
            "The server's memory use from its last resource update.",
            |s| Some(s.memory as f64),
        ),
        (
            "panel_server_disk_bytes",
            "The server's disk use from its last resource update.",
            |s| Some(s.disk as f64),
        ),
        (
            "panel_server_players",
            "Players online at the server's last status query.",
            |s| s.players.map(f64::from),
        ),
    ];
    for (name, help, pick) in server_gauges {
        write_header(out, name, help, "gauge");
        for s in servers {
            if let Some(v) = pick(s) {
                write_sample(out, name, &[("server", &s.server_id)], finite(v));
            }
        }
    }
}

/// A server gauge's value, if it has one.
type Pick = fn(&ServerGauges) -> Option<f64>;

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labelled_gauges() {
        let m = NodeMetrics::default();
        m.transition(State::Dead);
        m.placement(Placement::Insufficient);
        let nodes = [NodeGauges {
            agent_id: "a1".into(),
            state: Some(State::Degraded),
            load: Some(SystemLoad {
                cpu: 12.5,
                memory: 40.0,
                disk: 91.0,
            }),
            memory_capacity: 1 << 30,
            memory_committed: 1 << 29,
            cpu_capacity_millis: 4000,
            cpu_committed_millis: 500,
        }];
        let servers = [ServerGauges {
            server_id: "s1".into(),
            cpu: 3.5,
            memory: 1024,
            disk: 2048,
            players: None,
        }];
        let mut out = String::new();
        render(&mut out, &m, &nodes, &servers);
        for line in [
            "panel_node_health_transitions_total{state=\"dead\"} 1\n",
            "panel_placements_total{outcome=\"insufficient_resources\"} 1\n",
            "panel_node_health{agent=\"a1\",state=\"degraded\"} 1\n",
            "panel_node_health{agent=\"a1\",state=\"healthy\"} 0\n",
            "panel_node_load_percent{agent=\"a1\",resource=\"disk\"} 91\n",
            "panel_node_committed{agent=\"a1\",resource=\"memory\"} 536870912\n",
            "panel_node_capacity{agent=\"a1\",resource=\"cpu\"} 4000\n",
            "panel_server_cpu_percent{server=\"s1\"} 3.5\n",
            "panel_server_disk_bytes{server=\"s1\"} 2048\n",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("panel_server_players{"), "no players known");
    }
}
