//! Failover on the node, through the servers layer on the real Docker Engine: self-fencing
//! (no contact with the panel for `fence_after` → the failover servers stop, the others
//! keep running; the list survives a restart, and a restarted agent fences from its start)
//! and `quarantine_servers` (a stale copy is stopped, its container removed, its files moved
//! to `DATA/quarantine/`; a current copy is left alone; bad input refused).

mod common;

use common::harness::*;
use proto::ServerState;
use serde_json::json;
use std::time::Duration;

fn running(h: &Harness, sid: &str) -> bool {
    docker_inspect(&format!("{}{sid}", h.cfg.name_prefix))["State"]["Running"] == true
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    e2e::eventually(what, WAIT, || f().then_some(()));
}

#[test]
fn a_node_cut_off_stops_its_failover_servers_only() {
    let Some(mut h) = harness("fence", |c| c.fence_after = Duration::from_secs(3)) else {
        return;
    };
    let (fo, other) = (
        format!("fo-{}", fastrand::u32(..)),
        format!("nf-{}", fastrand::u32(..)),
    );
    for sid in [&fo, &other] {
        h.create(sid, egg(e2e::free_port(), STARTUP));
        h.ok(sid, "start_server", None);
        h.wait_status(sid, ServerState::Running);
    }
    let r = h.send(None, "failover_servers", Some(json!({"serverIds": [fo]})));
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.data.unwrap()["failoverServers"], 1);
    // Commands count as contact; then nothing comes (no panel in this test).
    h.wait_status(&fo, ServerState::Stopped);
    assert!(!running(&h, &fo));
    assert!(
        running(&h, &other),
        "a server without failover keeps running"
    );
    assert!(h.data.path().join("failover.json").exists());

    // Bad lists are refused and change nothing.
    let (code, _) = h.err(
        None,
        "failover_servers",
        Some(json!({"serverIds": ["../x"]})),
    );
    assert_eq!(code, "INVALID_MESSAGE", "{code}");
    let too_many: Vec<String> = (0..=proto::message::MAX_FENCE_LIST)
        .map(|i| format!("s{i}"))
        .collect();
    let (code, _) = h.err(
        None,
        "failover_servers",
        Some(json!({"serverIds": too_many})),
    );
    assert_eq!(code, "INVALID_MESSAGE");

    // A restarted agent still knows its list and fences from its own start: the agent goes,
    // its container runs again meanwhile (as if it had never stopped), a new agent starts.
    h.servers = None;
    let name = format!("{}{fo}", h.cfg.name_prefix);
    e2e::docker(&["start", &name]);
    assert!(running(&h, &fo));
    let outbox = std::sync::Arc::new(agent::link::outbox::Outbox::new(10_000));
    h.servers = Some(agent::servers::Servers::start(h.cfg.clone(), outbox).unwrap());
    smol::block_on(h.servers().adopt()).unwrap();
    wait_until("fenced after the restart", || !running(&h, &fo));
    assert!(running(&h, &other));
}

#[test]
fn a_stale_copy_is_quarantined_and_a_current_one_left_alone() {
    let Some(mut h) = harness("quarantine", |c| c.fence_after = Duration::ZERO) else {
        return;
    };
    let sid = format!("qu-{}", fastrand::u32(..));
    h.create(&sid, egg(e2e::free_port(), STARTUP));
    h.ok(&sid, "start_server", None);
    h.wait_status(&sid, ServerState::Running);
    wait_until("the server's file", || {
        h.volume(&sid).join("hello.txt").exists()
    });

    // The panel's epoch is the copy's (0): current, left alone.
    let q = |epoch: u64| {
        h.send(
            None,
            "quarantine_servers",
            Some(json!({"servers": [{"serverId": sid, "epoch": epoch}]})),
        )
    };
    let r = q(0);
    assert!(r.success, "{:?}", r.error);
    let data = r.data.unwrap();
    assert_eq!(data["current"][0]["serverId"], sid.as_str(), "{data}");
    assert!(running(&h, &sid));

    // Epoch 1 at the panel: this copy is stale.
    let data = q(1).data.expect("quarantined");
    assert_eq!(data["quarantined"][0]["serverId"], sid.as_str(), "{data}");
    assert_eq!(data["quarantined"][0]["epoch"], 0, "{data}");
    let path = data["quarantined"][0]["path"].as_str().unwrap().to_owned();
    assert!(
        path.starts_with(&format!("DATA/quarantine/{sid}-e0-")),
        "{path}"
    );
    assert!(docker_inspect(&format!("{}{sid}", h.cfg.name_prefix)).is_null());
    assert!(
        !h.volume(&sid).exists(),
        "the files moved out of the volumes"
    );
    let kept = h.data.path().join(path.trim_start_matches("DATA/"));
    assert!(kept.join("hello.txt").exists(), "the files are kept");
    // Nothing left: absent.
    let data = q(1).data.unwrap();
    assert_eq!(data["absent"][0], sid.as_str(), "{data}");
    // Hostile input.
    let (code, _) = h.err(
        None,
        "quarantine_servers",
        Some(json!({"servers": [{"serverId": "/etc", "epoch": 1}]})),
    );
    assert_eq!(code, "INVALID_MESSAGE");
    // The server id is free again on this node (a later copy may come back here).
    h.create(&sid, egg(e2e::free_port(), STARTUP));
}
