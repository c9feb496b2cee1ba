//! A node's health state and its reasons, from what the panel knows about it right now.
//!
//! Pure ([`assess`]): the watcher gathers the [`Inputs`] (connection, drain flag, last pong,
//! round trip) and this decides. The order of precedence is an operator's: a node that is not
//! connected is `offline` (then `dead` after `--dead-after-secs`) whatever else was true;
//! a connected node an operator drained is `draining` (its conditions are still listed);
//! a connected node that reports a condition, or answers heartbeats far slower than it
//! usually does, is `degraded`; otherwise it is `healthy`. Only `healthy` nodes get new
//! servers.

use serde::Serialize;

use proto::message::PongData;

/// The five states of `GET /api/agents` → `health.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Healthy,
    Degraded,
    Offline,
    Dead,
    Draining,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Healthy,
        State::Degraded,
        State::Offline,
        State::Dead,
        State::Draining,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Offline => "offline",
            State::Dead => "dead",
            State::Draining => "draining",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One machine-readable reason and what an operator reads about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    fn new(code: &str, message: impl Into<String>) -> Reason {
        Reason {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What [`assess`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The agent has a live WebSocket (it answers heartbeats).
    pub connected: bool,
    /// Seconds since the agent was last heard from (only read when not connected).
    pub silent_secs: u64,
    /// `--dead-after-secs`.
    pub dead_after_secs: u64,
    /// Whether it was ever heard from.
    pub ever_seen: bool,
    pub draining: bool,
    /// The last pong of the live connection.
    pub pong: Option<&'a PongData<'static>>,
    /// Set when the heartbeat round trip is far above its usual (the message).
    pub rtt_high: Option<&'a str>,
}

/// The state and its reasons (empty for `healthy`).
pub fn assess(i: &Inputs<'_>) -> (State, Vec<Reason>) {
    if !i.connected {
        let silent = if i.ever_seen {
            format!("not heard from for {} s", i.silent_secs)
        } else {
            "never connected".to_owned()
        };
        if i.silent_secs >= i.dead_after_secs {
            return (
                State::Dead,
                vec![Reason::new(
                    "offline_too_long",
                    format!("{silent} (dead after {} s offline)", i.dead_after_secs),
                )],
            );
        }
        let code = if i.ever_seen {
            "heartbeat_lost"
        } else {
            "never_connected"
        };
        return (State::Offline, vec![Reason::new(code, silent)]);
    }
    let mut reasons = Vec::new();
    if let Some(p) = i.pong {
        for c in p.conditions.iter().take(proto::message::MAX_CONDITIONS) {
            reasons.push(Reason::new(&sanitize(&c.code), cut(&c.message)));
        }
        if reasons.is_empty() && p.agent_status != "healthy" {
            reasons.push(Reason::new(
                "agent_degraded",
                format!("the agent reports itself `{}`", cut(&p.agent_status)),
            ));
        }
    }
    if let Some(m) = i.rtt_high {
        reasons.push(Reason::new("rtt_high", m));
    }
    if i.draining {
        reasons.insert(
            0,
            Reason::new("draining", "drained by an operator: no new servers"),
        );
        return (State::Draining, reasons);
    }
    if reasons.is_empty() {
        (State::Healthy, reasons)
    } else {
        (State::Degraded, reasons)
    }
}

/// An agent's condition code made safe to show and to compare: at most 64 of
/// `[a-z0-9_]`, anything else becomes `_`.
fn sanitize(code: &str) -> String {
    let s: String = code
        .chars()
        .take(64)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}

/// An agent's message, at most 300 characters.
fn cut(m: &str) -> String {
    m.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::message::{Condition, SystemLoad};

    fn pong(status: &str, conditions: &[&str]) -> PongData<'static> {
        PongData {
            agent_status: status.to_owned().into(),
            active_servers: 0,
            system_load: SystemLoad {
                cpu: 1.0,
                memory: 1.0,
                disk: 1.0,
            },
            conditions: conditions
                .iter()
                .map(|c| Condition {
                    code: (*c).into(),
                    message: format!("{c} happened"),
                })
                .collect(),
        }
    }

    fn online<'a>(p: Option<&'a PongData<'static>>) -> Inputs<'a> {
        Inputs {
            connected: true,
            silent_secs: 0,
            dead_after_secs: 300,
            ever_seen: true,
            draining: false,
            pong: p,
            rtt_high: None,
        }
    }

    fn codes(r: &[Reason]) -> Vec<&str> {
        r.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn a_connected_node_without_conditions_is_healthy() {
        let p = pong("healthy", &[]);
        assert_eq!(assess(&online(Some(&p))), (State::Healthy, vec![]));
        // Before its first pong, too.
        assert_eq!(assess(&online(None)).0, State::Healthy);
    }

    #[test]
    fn conditions_and_slow_heartbeats_degrade() {
        let p = pong("degraded", &["docker_unreachable", "disk_full"]);
        let (s, r) = assess(&online(Some(&p)));
        assert_eq!(s, State::Degraded);
        assert_eq!(codes(&r), ["docker_unreachable", "disk_full"]);
        assert_eq!(r[0].message, "docker_unreachable happened");
        // An older agent: only its status.
        let old = pong("degraded", &[]);
        assert_eq!(codes(&assess(&online(Some(&old))).1), ["agent_degraded"]);
        let mut i = online(None);
        i.rtt_high = Some("900 ms, usually 2 ms");
        assert_eq!(codes(&assess(&i).1), ["rtt_high"]);
        // Hostile codes are tamed.
        let weird = pong("degraded", &["Bad Code\n<x>"]);
        assert_eq!(codes(&assess(&online(Some(&weird))).1), ["bad_code__x_"]);
    }

    #[test]
    fn draining_wins_over_degraded_but_keeps_its_reasons() {
        let p = pong("degraded", &["disk_full"]);
        let mut i = online(Some(&p));
        i.draining = true;
        let (s, r) = assess(&i);
        assert_eq!(s, State::Draining);
        assert_eq!(codes(&r), ["draining", "disk_full"]);
    }

    #[test]
    fn offline_then_dead_after_the_limit() {
        let mut i = online(None);
        i.connected = false;
        i.draining = true;
        i.silent_secs = 299;
        let (s, r) = assess(&i);
        assert_eq!((s, codes(&r)), (State::Offline, vec!["heartbeat_lost"]));
        i.silent_secs = 300;
        assert_eq!(assess(&i).0, State::Dead);
        assert_eq!(codes(&assess(&i).1), ["offline_too_long"]);
        i.ever_seen = false;
        i.silent_secs = 5;
        assert_eq!(codes(&assess(&i).1), ["never_connected"]);
    }
}
