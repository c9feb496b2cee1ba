//! An offline agent's `lastSeen` survives a panel restart: the panel records it in its store
//! when a connection ends (here: the agent closing its socket, and the panel's own SIGTERM
//! shutdown), and `GET /api/agents` falls back to the stored value when the agent is not
//! connected. An agent that never connected stays `null`.

mod common;

use common::agent::Conn;
use common::{Harness, online_agent, run};
use proto::time::{parse_rfc3339, unix_now};
use serde_json::Value;

/// The entry's `lastSeen` as Unix seconds; panics unless it is an RFC 3339 string.
fn last_seen(entry: &Value) -> u64 {
    let s = entry["lastSeen"]
        .as_str()
        .unwrap_or_else(|| panic!("lastSeen is not a string: {entry}"));
    parse_rfc3339(s).unwrap_or_else(|| panic!("lastSeen is not RFC 3339: {entry}"))
}

#[test]
fn last_seen_of_offline_agents_survives_a_restart() {
    let mut h = Harness::start("last-seen");
    let started = unix_now();
    let (gone, stayed, never, gone_seen, stayed_conn) = run(async {
        let p = &h.panel;
        // `gone` disconnects by itself while the panel runs.
        let (gone, conn) = online_agent(p, "node-gone").await;
        conn.close().await;
        conn.wait_closed().await;
        let entry = p.wait_agent_status(&gone.id, "offline").await;
        let gone_seen = last_seen(&entry);
        // `stayed` is still connected when the panel shuts down.
        let (stayed, stayed_conn) = online_agent(p, "node-stayed").await;
        // `never` registers but never connects.
        let never = p.register("node-never").await;
        let entry = p.agent_entry(&never.id).await.unwrap();
        assert!(entry["lastSeen"].is_null(), "{entry}");
        (gone, stayed, never, gone_seen, stayed_conn)
    });
    assert!(
        (started..=unix_now()).contains(&gone_seen),
        "lastSeen {gone_seen} is not from this test (started {started})"
    );

    let status = h.panel.sigterm_and_wait();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    drop(stayed_conn);
    let stopped = unix_now();
    h.restart();

    run(async {
        let p = &h.panel;
        let e = p.agent_entry(&gone.id).await.expect("agent kept");
        assert_eq!(e["status"], "offline", "{e}");
        assert_eq!(
            last_seen(&e),
            gone_seen,
            "the value shown before the restart: {e}"
        );

        let e = p.agent_entry(&stayed.id).await.expect("agent kept");
        assert_eq!(e["status"], "offline", "{e}");
        let t = last_seen(&e);
        assert!(
            (gone_seen..=stopped).contains(&t),
            "seen while connected, up to the shutdown: {e}"
        );

        let e = p.agent_entry(&never.id).await.expect("agent kept");
        assert!(e["lastSeen"].is_null(), "never connected: {e}");

        // Once it reconnects the live value is shown again.
        let _conn = Conn::connect(p, &gone).await;
        let e = p.wait_agent_status(&gone.id, "online").await;
        assert!(last_seen(&e) >= t, "{e}");
    });
}
