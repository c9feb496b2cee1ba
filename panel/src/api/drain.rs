//! Drain with migration (`POST /api/agents/{id}/drain {"migrate":true}`): every server on
//! the node is transferred away, one at a time, in the background.
//!
//! The route answers `202` at once with the plan (every server `pending`); the outcome of
//! each server (`moved` with its new agent and epoch, `failed` with the error, `skipped`
//! if the node was undrained meanwhile) is announced as a `drain_progress` event (seen by
//! whoever sees that server) and kept in the node's [`Migration`] report, which
//! `GET /api/agents/{id}/migration` shows; `drain_completed` (admins) ends it. A server held
//! by a backup (`BUSY`) is tried again every 5 s for a minute. One at a time
//! keeps a node's disk, the panel's backup store and the network to one archive in flight,
//! and each transfer already keeps its server where it was, running if it was, when it
//! fails. The node stays draining either way. Reports live in memory: a panel restart
//! forgets them (a transfer it interrupted is recovered by `move_recovery.rs`; the rest of
//! the drain is not resumed — drain again).

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

use proto::ErrorCode;
use proto::time::now_rfc3339;

use super::backup_run::publish;
use super::{Api, ApiError, transfer_server};

/// Times a server another long operation holds (`BUSY`) is tried again, and the pause
/// before each: a minute in all, then it is reported `failed`.
const BUSY_TRIES: u32 = 12;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The drain migrations of this panel's life, by agent (the running one or the last).
#[derive(Default)]
pub struct Migrations(Mutex<HashMap<String, Migration>>);

/// A node's drain migration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    pub agent_id: String,
    /// `running` or `done`.
    pub state: &'static str,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub servers: Vec<Outcome>,
}

/// One server of a drain migration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub server_id: String,
    /// `pending`, `moving`, `moved`, `failed` or `skipped`.
    pub outcome: &'static str,
    /// Where it went (`moved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// `{"code","message",…}` as the transfer route would have answered (`failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl Migrations {
    pub fn get(&self, agent: &str) -> Option<Migration> {
        self.0.lock().get(agent).cloned()
    }

    fn update(&self, agent: &str, f: impl FnOnce(&mut Migration)) {
        if let Some(m) = self.0.lock().get_mut(agent) {
            f(m);
        }
    }
}

/// Registers a migration of every server now on `agent` (`CONFLICT` if one is running) and
/// starts it; the caller has already marked the node draining.
pub(super) fn start(api: &Arc<Api>, agent: &str) -> Result<Migration, ApiError> {
    let servers: Vec<Outcome> = api
        .store
        .servers()
        .into_iter()
        .filter(|s| s.agent_id == agent)
        .map(|s| Outcome {
            server_id: s.server_id,
            outcome: "pending",
            agent_id: None,
            epoch: None,
            error: None,
        })
        .collect();
    let m = Migration {
        agent_id: agent.to_owned(),
        state: "running",
        started_at: now_rfc3339(),
        finished_at: None,
        servers,
    };
    {
        let mut all = api.migrations.0.lock();
        if all.get(agent).is_some_and(|m| m.state == "running") {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("agent {agent} is already being drained with migration"),
            ));
        }
        all.insert(agent.to_owned(), m.clone());
    }
    crate::exec::spawn(run(api.clone(), m.clone())).detach();
    Ok(m)
}

/// Moves the servers one after the other (see the module docs).
async fn run(api: Arc<Api>, m: Migration) {
    let agent = m.agent_id.clone();
    let agent = agent.as_str();
    for (i, s) in m.servers.iter().enumerate() {
        let sid = s.server_id.as_str();
        let still = api.store.agent(agent).is_some_and(|a| a.draining);
        let outcome = if !still || api.shutdown.is_triggered() {
            Outcome {
                outcome: "skipped",
                ..s.clone()
            }
        } else {
            set(&api, agent, i, "moving", &s.clone());
            move_one(&api, sid).await
        };
        set(&api, agent, i, outcome.outcome, &outcome);
    }
    let done = api.migrations.get(agent).unwrap_or(m);
    let count = |o: &str| done.servers.iter().filter(|s| s.outcome == o).count();
    let summary = json!({
        "agentId": agent,
        "moved": count("moved"),
        "failed": count("failed"),
        "skipped": count("skipped"),
    });
    log::info!("drain of {agent} with migration finished: {summary}");
    api.migrations.update(agent, |m| {
        m.state = "done";
        m.finished_at = Some(now_rfc3339());
    });
    let frame = json!({
        "type": "event",
        "timestamp": now_rfc3339(),
        "event": "drain_completed",
        "agentId": agent,
        "data": summary,
    });
    let msg = async_tungstenite::tungstenite::Message::Text(frame.to_string().into());
    // No server: only subscribers who see every event (admins) get it.
    api.events
        .publish(agent, None, Some("drain_completed"), &msg);
}

/// One server's transfer, placement choosing the target.
async fn move_one(api: &Arc<Api>, sid: &str) -> Outcome {
    let mut out = Outcome {
        server_id: sid.to_owned(),
        outcome: "moved",
        agent_id: None,
        epoch: None,
        error: None,
    };
    let mut tries = 0;
    let moved = loop {
        match transfer_server(api, sid, None).await {
            // A backup (scheduled, or asked for) holds the server: wait for it, a while.
            Err(e) if is_busy(&e) && tries < BUSY_TRIES => {
                tries += 1;
                async_io::Timer::after(BUSY_PAUSE).await;
            }
            other => break other,
        }
    };
    match moved {
        Ok(v) => {
            out.agent_id = v["agentId"].as_str().map(str::to_owned);
            out.epoch = v["epoch"].as_u64();
        }
        Err(e) => {
            log::warn!("drain: server {sid} stays where it is: {e}");
            out.outcome = "failed";
            out.error = Some(error_json(e));
        }
    }
    out
}

fn is_busy(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Refused {
            code: ErrorCode::Busy,
            ..
        }
    )
}

/// The `error` object the API would answer for `e`.
fn error_json(e: ApiError) -> Value {
    let r = e.into_response();
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|mut v| v.get_mut("error").map(Value::take))
        .unwrap_or_else(|| json!({"code": ErrorCode::InternalError.as_str()}))
}

/// Records server `i`'s outcome and announces it.
fn set(api: &Api, agent: &str, i: usize, outcome: &'static str, o: &Outcome) {
    let o = Outcome {
        outcome,
        ..o.clone()
    };
    api.migrations.update(agent, |m| {
        if let Some(slot) = m.servers.get_mut(i) {
            *slot = o.clone();
        }
    });
    let mut data = serde_json::to_value(&o).unwrap_or_else(|_| json!({}));
    data["drainedAgentId"] = json!(agent);
    publish(api, agent, &o.server_id, "drain_progress", data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_carries_the_code_and_message_the_route_would_answer() {
        let e = error_json(ApiError::new(ErrorCode::AgentOffline, "agent x is gone"));
        assert_eq!(e["code"], "AGENT_OFFLINE");
        assert_eq!(e["message"], "agent x is gone");
        let e = error_json(ApiError::NoPlacement(vec![crate::placement::Rejection {
            agent_id: "a".into(),
            reason: "draining".into(),
        }]));
        assert_eq!(e["code"], "INSUFFICIENT_RESOURCES", "{e}");
        assert_eq!(e["nodes"][0]["agentId"], "a", "{e}");
    }

    #[test]
    fn only_busy_is_waited_for() {
        assert!(is_busy(&ApiError::new(ErrorCode::Busy, "a backup runs")));
        assert!(!is_busy(&ApiError::new(ErrorCode::Conflict, "marked")));
        assert!(!is_busy(&ApiError::NoPlacement(Vec::new())));
    }

    #[test]
    fn outcomes_serialize_without_empty_members() {
        let o = Outcome {
            server_id: "srv-1".into(),
            outcome: "pending",
            agent_id: None,
            epoch: None,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            json!({"serverId": "srv-1", "outcome": "pending"})
        );
    }
}
