//! Chaos: `kill -9` of the panel in the middle of work, then a restart on the same data dir.
//! Whatever the API acknowledged (a 200) before the kill must be there afterwards; what was in
//! flight (no answer) may or may not be, but never half of it.
//!
//! - A burst of acknowledged writes from several concurrent clients (registrations, server
//!   creation, power changes, deletion), killed while they run.
//! - The same during an event storm (fake agents emitting as fast as they can to a
//!   subscriber): the storm must not cost durability, and the panel comes back serving agents,
//!   commands and events.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_tungstenite::tungstenite::Message as WsMsg;
use common::agent::{Conn, standard_response};
use common::{
    DEADLINE, Harness, Panel, PanelOpts, Rest, egg, eventually, online_agent, run, within,
};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// What the clients know about one server after the kill.
#[derive(Debug, Clone, Default)]
struct Known {
    /// The last state the API acknowledged: `None` = not created (or deleted).
    acked: Option<Option<&'static str>>,
    /// A change sent but not answered when the panel died: either outcome is allowed.
    in_flight: Option<Option<&'static str>>,
}

/// Everything the writers saw acknowledged.
#[derive(Default)]
struct Ledger {
    agents_acked: Vec<String>,
    servers: HashMap<String, Known>,
    acks: AtomicU64,
}

fn opts() -> PanelOpts {
    PanelOpts::default()
        .arg("--admin-rate", 1_000_000)
        .arg("--admin-burst", 1_000_000)
        .arg("--agent-rate", 1_000_000)
        .arg("--agent-burst", 1_000_000)
}

/// One writer: registers agents and walks servers through create → start → stop → delete,
/// recording each answer, until `stop` is set or a request fails (the panel died).
async fn writer(rest: Rest, token: String, agent_id: String, n: usize, ledger: Arc<Mutex<Ledger>>) {
    let ack = |l: &Ledger| l.acks.fetch_add(1, Ordering::SeqCst);
    for i in 0.. {
        // A registration.
        let name = format!("chaos-w{n}-{i}");
        let body = json!({
            "name": name, "hostname": "10.0.0.9", "port": 8080,
            "capabilities": {"maxMemory": "1g", "maxCpuCores": 1, "dockerVersion": "24.0.0",
                             "supportedArchitectures": ["amd64"]}
        });
        match rest
            .json("POST", "/api/agents/register", Some(&token), Some(&body))
            .await
        {
            Ok((200, v)) => {
                let mut l = ledger.lock();
                l.agents_acked
                    .push(v["agent"]["id"].as_str().unwrap().to_owned());
                ack(&l);
            }
            Ok((st, v)) => panic!("register refused while the panel was up: {st} {v}"),
            Err(e) => {
                eprintln!("writer {n}: register: {e}");
                return;
            }
        }
        // A server's life, one step at a time: (method, path, body, desired state after).
        let server = format!("srv-w{n}-{i}");
        let one = format!("/api/servers/{server}");
        let power = format!("/api/servers/{server}/power");
        let steps: [(&str, &str, Option<Value>, Option<&'static str>); 4] = [
            (
                "POST",
                "/api/servers",
                Some(json!({"agentId": agent_id, "serverId": server, "eggConfig": egg()})),
                Some("created"),
            ),
            (
                "POST",
                &power,
                Some(json!({"action": "start"})),
                Some("running"),
            ),
            (
                "POST",
                &power,
                Some(json!({"action": "stop"})),
                Some("stopped"),
            ),
            ("DELETE", &one, None, None),
        ];
        for (method, path, body, after) in steps {
            ledger
                .lock()
                .servers
                .entry(server.clone())
                .or_default()
                .in_flight = Some(after);
            match rest.json(method, path, Some(&token), body.as_ref()).await {
                Ok((200, _)) => {
                    let mut l = ledger.lock();
                    let k = l.servers.get_mut(&server).unwrap();
                    k.acked = Some(after);
                    k.in_flight = None;
                    ack(&l);
                }
                Ok((st, v)) => panic!("{method} {path} refused while the panel was up: {st} {v}"),
                Err(e) => {
                    eprintln!("writer {n}: {method} {path}: {e}");
                    return;
                }
            }
        }
    }
}

/// Sends SIGKILL once `ledger` holds `acks` acknowledged writes.
async fn kill_after(p: &Panel, ledger: &Arc<Mutex<Ledger>>, acks: u64) {
    eventually("enough acknowledged writes before the kill", || async {
        (ledger.lock().acks.load(Ordering::SeqCst) >= acks).then_some(())
    })
    .await;
    nix::sys::signal::kill(p.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
}

/// After the restart: every acknowledged write is there, and every in-flight one is either
/// fully there or not at all.
async fn verify(p: &Panel, ledger: &Ledger) {
    let (st, v) = p.admin("GET", "/api/agents", None).await;
    assert_eq!(st, 200, "{v}");
    let agents: Vec<&str> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    for id in &ledger.agents_acked {
        assert!(
            agents.contains(&id.as_str()),
            "acknowledged agent {id} lost"
        );
    }
    let (st, v) = p.admin("GET", "/api/servers", None).await;
    assert_eq!(st, 200, "{v}");
    let stored: HashMap<&str, &str> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["serverId"].as_str().unwrap(),
                s["desiredState"].as_str().unwrap(),
            )
        })
        .collect();
    let mut checked = 0;
    for (id, k) in &ledger.servers {
        let now = stored.get(id.as_str()).copied();
        let acked = k.acked.flatten();
        let ok = now == acked || k.in_flight.is_some_and(|f| now == f);
        assert!(
            ok,
            "server {id}: stored {now:?}, acknowledged {acked:?}, in flight {:?}",
            k.in_flight
        );
        checked += 1;
    }
    assert!(checked > 0, "no server was written");
    eprintln!(
        "{} agents and {checked} servers checked after the restart",
        ledger.agents_acked.len()
    );
}

/// Starts `writers` concurrent writers against `p` (each with its own connection).
fn spawn_writers(
    p: &Panel,
    agent_id: &str,
    writers: usize,
    ledger: &Arc<Mutex<Ledger>>,
) -> Vec<smol::Task<()>> {
    (0..writers)
        .map(|n| {
            let rest = Rest::new(&p.base_url(), p.tls.clone()).unwrap();
            smol::spawn(writer(
                rest,
                p.admin_token.clone(),
                agent_id.to_owned(),
                n,
                ledger.clone(),
            ))
        })
        .collect()
}

#[test]
fn kill_9_during_a_burst_of_acknowledged_writes_loses_none() {
    let mut h = Harness::with("chaos-writes", opts());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let agent_id = run(async {
        let p = &h.panel;
        let (a, conn) = online_agent(p, "chaos-node").await;
        let _auto = conn.auto_respond(standard_response);
        let tasks = spawn_writers(p, &a.id, 8, &ledger);
        kill_after(p, &ledger, 300).await;
        for t in tasks {
            within(DEADLINE, "writers to notice the kill", t).await;
        }
        a.id
    });
    h.panel.kill9();
    h.restart();
    run(async {
        let p = &h.panel;
        let seen = std::mem::take(&mut *ledger.lock());
        verify(p, &seen).await;
        // The store is intact and writable: the agent and its servers work again.
        let (a, conn) = online_agent(p, "after-chaos").await;
        let _auto = conn.auto_respond(standard_response);
        let (st, v) = p.create_server(&a.id, "srv-after").await;
        assert_eq!(st, 200, "{v}");
        assert!(p.agent_entry(&agent_id).await.is_some());
    });
}

/// A subscriber counting the event frames it receives.
fn subscriber(ws: common::Ws, seen: Arc<AtomicU64>) -> smol::Task<()> {
    smol::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, WsMsg::Text(_)) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

async fn subscribe(p: &Panel) -> common::Ws {
    let auth = format!("Bearer {}", p.admin_token);
    common::net::ws_connect(
        &p.events_url(""),
        p.tls.clone(),
        &[("Authorization", &auth)],
    )
    .await
    .expect("subscribe")
}

/// A fake agent emitting `server_log` events for its server as fast as its socket takes
/// them (it never reads: a storm lasts far less than three heartbeats).
fn storm(mut ws: common::Ws, server: String, on: Arc<AtomicBool>) -> smol::Task<()> {
    smol::spawn(async move {
        let mut n = 0u64;
        while on.load(Ordering::Relaxed) {
            n += 1;
            let frame = json!({
                "type": "event", "timestamp": "2025-01-23T10:05:30Z", "event": "server_log",
                "data": {"serverId": server, "logLevel": "INFO", "message": format!("storm {n}")},
            });
            if ws.send(WsMsg::text(frame.to_string())).await.is_err() {
                return;
            }
            // The test's tasks share one executor thread: let the writers run.
            if n.is_multiple_of(16) {
                futures_lite::future::yield_now().await;
            }
        }
    })
}

#[test]
fn kill_9_during_an_event_storm_loses_no_acknowledged_write() {
    let mut h = Harness::with("chaos-storm", opts());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (emitters, servers) = run(async {
        let p = &h.panel;
        // Placed before the storm: one server per emitting agent.
        let mut emitters = Vec::new();
        let mut servers = Vec::new();
        for i in 0..8 {
            let (a, conn) = online_agent(p, &format!("storm-node-{i}")).await;
            let server = format!("storm-srv-{i}");
            common::create_server_answered(p, &conn, &a.id, &server).await;
            emitters.push(a);
            servers.push(server);
        }
        // The agent the writers' commands go to answers; the others storm.
        let (a, conn) = online_agent(p, "storm-commands").await;
        let _auto = conn.auto_respond(standard_response);
        let seen = Arc::new(AtomicU64::new(0));
        let _sub = subscriber(subscribe(p).await, seen.clone());
        let on = Arc::new(AtomicBool::new(true));
        let mut storms = Vec::new();
        for (e, server) in emitters.iter().zip(&servers) {
            let auth = format!("Bearer {}", e.token);
            let ws = common::net::ws_connect(
                &p.ws_url(),
                p.tls.clone(),
                &[("Authorization", &auth), ("X-Agent-ID", &e.id)],
            )
            .await
            .expect("emitter connects");
            storms.push(storm(ws, server.clone(), on.clone()));
        }
        eventually("the storm reaches the subscriber", || async {
            (seen.load(Ordering::Relaxed) >= 20_000).then_some(())
        })
        .await;
        let tasks = spawn_writers(p, &a.id, 4, &ledger);
        kill_after(p, &ledger, 120).await;
        on.store(false, Ordering::Relaxed);
        for t in tasks {
            within(DEADLINE, "writers to notice the kill", t).await;
        }
        eprintln!(
            "{} events reached the subscriber before the kill",
            seen.load(Ordering::Relaxed)
        );
        drop(storms);
        (emitters, servers)
    });
    h.panel.kill9();
    h.restart();
    run(async {
        let p = &h.panel;
        let seen = std::mem::take(&mut *ledger.lock());
        verify(p, &seen).await;
        // The servers placed before the storm are still routed to their agents, and events
        // flow again.
        let (st, v) = p.admin("GET", "/api/servers", None).await;
        assert_eq!(st, 200, "{v}");
        for s in &servers {
            let found = v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["serverId"] == s.as_str() && x["agentId"] != Value::Null);
            assert!(found, "{s} lost: {v}");
        }
        let conn = Conn::connect(p, &emitters[1]).await;
        p.wait_agent_status(&emitters[1].id, "online").await;
        let seen = Arc::new(AtomicU64::new(0));
        let _sub = subscriber(subscribe(p).await, seen.clone());
        eventually("events flow after the restart", || {
            let conn = &conn;
            let seen = seen.clone();
            let server = servers[1].clone();
            async move {
                conn.send_event(
                    "server_log",
                    json!({"serverId": server, "logLevel": "INFO", "message": "after"}),
                )
                .await;
                (seen.load(Ordering::Relaxed) > 0).then_some(())
            }
        })
        .await;
    });
}
