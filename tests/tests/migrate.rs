//! Moving servers off a node, and a panel that dies in the middle of a move: the real panel
//! and two real agents on one Docker Engine (separate data dirs, distinct `--name-prefix`).
//!
//! - Drain with migration: a running server (with a file) and a never-started one move to
//!   the other node; a server no node can take (its host port is held there) is reported
//!   `failed` and stays where it was, running; the node stays draining.
//! - `kill -9` of the panel while a transfer backs up, then while it restores onto its
//!   target: each time, at the next start the move is rolled back — the target's partial
//!   copy removed, the server running again on the source, exactly one copy — `.part` files
//!   in the backup store are removed, and afterwards a new transfer is accepted and
//!   commits. Its source agent is killed before the source's copy can be removed: the move
//!   is finished (that copy removed) when the agent is back.

use e2e::events::kind;
use e2e::moving::{client, docker_running, file_sha, power, server_record, upload, wait_state};
use e2e::stack::{SLOW, Stack};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn create(s: &Stack, agent: &str, sid: &str, egg: &Value) {
    s.panel
        .api
        .post(
            "/api/servers",
            &json!({"agentId": agent, "serverId": sid, "eggConfig": egg}),
        )
        .ok(&format!("create {sid}"));
}

fn wait_healthy(s: &Stack, agent: &str) {
    e2e::eventually(&format!("{agent} healthy"), SLOW, || {
        let a = s.panel.api.get(&format!("/api/agents/{agent}")).ok("agent");
        (a["agent"]["health"]["state"] == "healthy").then_some(())
    });
}

#[test]
fn drain_with_migration_moves_what_it_can_and_reports_each_server() {
    let Some(mut s) = Stack::start("migrate") else {
        return;
    };
    let pid = std::process::id();
    let (pa, pb) = (format!("mga{pid}-"), format!("mgb{pid}-"));
    let a = s.add_agent_prefixed("a", &pa);
    let b = s.add_agent_prefixed("b", &pb);
    let (ida, idb) = (s.agents[a].id.clone(), s.agents[b].id.clone());
    s.subscribe();
    wait_healthy(&s, &idb);

    // On b, a server (never started) holding a host port; on a, one needing the same port.
    let (held, _) = e2e::egg::fakegame("");
    let blocker = s.server_id("blocker");
    create(&s, &idb, &blocker, &held);
    let stuck = s.server_id("stuck");
    create(&s, &ida, &stuck, &held);
    power(&s, &stuck, "start");
    let runner = s.server_id("runner");
    create(&s, &ida, &runner, &e2e::egg::fakegame("").0);
    power(&s, &runner, "start");
    let idle = s.server_id("idle");
    create(&s, &ida, &idle, &e2e::egg::fakegame("").0);
    wait_state(&s, &runner, "running");
    wait_state(&s, &stuck, "running");
    let c = client(&s);
    let sha = upload(&c, &runner, "/server/world/blob.bin", 3, MIB);

    let api = &s.panel.api;
    api.get(&format!("/api/agents/{ida}/migration"))
        .err("no migration yet", 404, "NOT_FOUND");
    let mark = s.events().mark();
    let r = api.post(
        &format!("/api/agents/{ida}/drain"),
        &json!({"migrate": true}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["agent"]["draining"], true, "{}", r.body);
    let plan = r.body["migration"].clone();
    assert_eq!(plan["state"], "running", "{plan}");
    let planned: Vec<&str> = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["serverId"].as_str().unwrap())
        .collect();
    for sid in [&stuck, &runner, &idle] {
        assert!(planned.contains(&sid.as_str()), "{sid} not in {plan}");
    }
    // The first move (stop, back up, restore…) takes seconds: a second drain is refused.
    api.post(
        &format!("/api/agents/{ida}/drain"),
        &json!({"migrate": true}),
    )
    .err("a second drain with migration", 409, "CONFLICT");

    let (_, done) = s
        .events()
        .wait_after(mark, "drain_completed", SLOW * 3, |v| {
            kind(v) == "drain_completed" && v["agentId"] == ida.as_str()
        });
    assert_eq!(
        done["data"],
        json!({"agentId": ida, "moved": 2, "failed": 1, "skipped": 0})
    );
    let report = api
        .get(&format!("/api/agents/{ida}/migration"))
        .ok("migration report")["migration"]
        .clone();
    assert_eq!(report["state"], "done", "{report}");
    let of = |sid: &str| {
        report["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["serverId"] == sid)
            .cloned()
            .unwrap_or_else(|| panic!("{sid} not in {report}"))
    };
    for sid in [&runner, &idle] {
        let o = of(sid);
        assert_eq!(
            (
                o["outcome"].as_str(),
                o["agentId"].as_str(),
                o["epoch"].as_u64()
            ),
            (Some("moved"), Some(idb.as_str()), Some(1)),
            "{o}"
        );
        assert_eq!(server_record(&s, sid)["agentId"], idb.as_str());
        assert_eq!(
            docker_running(&format!("{pa}{sid}")),
            None,
            "{sid} left on a"
        );
    }
    let o = of(&stuck);
    assert_eq!(o["outcome"], "failed", "{o}");
    assert_eq!(o["error"]["code"], "INSUFFICIENT_RESOURCES", "{o}");

    // Moved with its state: running on b with its file; the idle one created, not started.
    wait_state(&s, &runner, "running");
    assert_eq!(docker_running(&format!("{pb}{runner}")), Some(true));
    assert_eq!(file_sha(&c, &runner, "/server/world/blob.bin"), sha);
    assert_eq!(docker_running(&format!("{pb}{idle}")), Some(false));
    // The failure left it where it was, running; the node stays draining.
    let rec = server_record(&s, &stuck);
    assert_eq!(
        (rec["agentId"].as_str(), rec["epoch"].as_u64()),
        (Some(ida.as_str()), Some(0))
    );
    assert_eq!(docker_running(&format!("{pa}{stuck}")), Some(true));
    let node = s.panel.api.get(&format!("/api/agents/{ida}")).ok("agent a");
    assert_eq!(node["agent"]["draining"], true, "{node}");
    assert_eq!(node["agent"]["health"]["state"], "draining", "{node}");

    // Each server's steps were announced to whoever sees it.
    let seen = s.events().all();
    for sid in [&runner, &idle, &stuck] {
        let outcomes: Vec<&str> = seen
            .iter()
            .filter(|e| kind(e) == "drain_progress" && e["serverId"] == sid.as_str())
            .filter_map(|e| e["data"]["outcome"].as_str())
            .collect();
        let last = if *sid == stuck { "failed" } else { "moved" };
        assert_eq!(outcomes, ["moving", last], "{sid}");
    }
    s.panel
        .api
        .get(&format!("/api/agents/{idb}/migration"))
        .err("b was never drained", 404, "NOT_FOUND");
}

/// Transfers `sid` to `to` and `kill -9`s the panel as soon as the transfer announces
/// `step` (the transfer must not have finished).
fn kill_panel_at(s: &mut Stack, sid: &str, to: &str, step: &str) {
    let mark = s.events().mark();
    let mover = s.panel.api.with_timeout(Duration::from_secs(600));
    let path = format!("/api/servers/{sid}/transfer");
    let body = json!({"agentId": to});
    // The answer never comes: the panel is killed under it.
    let call = std::thread::spawn(move || mover.try_call("POST", &path, Some(&body)).ok());
    s.events().wait_after(mark, step, SLOW * 2, |v| {
        kind(v) == "transfer_progress" && v["serverId"] == sid && v["data"]["step"] == step
    });
    s.panel.proc.kill9();
    let answered = call.join().expect("transfer thread");
    assert!(
        answered.as_ref().is_none_or(|r| r.status != 200),
        "the transfer finished before the kill at {step}: {answered:?}"
    );
}

/// After a restart: the interrupted move undone — the mark cleared, one copy, on `source`
/// (epoch 0), running again, none on the target (`target_volume` gone).
fn rolled_back(s: &Stack, sid: &str, source: &str, pa: &str, pb: &str, target_volume: &Path) {
    e2e::eventually("the interrupted transfer recovered", SLOW, || {
        server_record(s, sid)["transfer"].is_null().then_some(())
    });
    let rec = server_record(s, sid);
    assert_eq!(
        (rec["agentId"].as_str(), rec["epoch"].as_u64()),
        (Some(source), Some(0)),
        "{rec}"
    );
    wait_state(s, sid, "running");
    assert_eq!(docker_running(&format!("{pa}{sid}")), Some(true));
    assert_eq!(docker_running(&format!("{pb}{sid}")), None);
    assert!(
        !target_volume.exists(),
        "the target's partial copy outlived the recovery"
    );
}

#[test]
fn a_panel_killed_mid_transfer_rolls_it_back_at_start() {
    let Some(mut s) = Stack::start("movekill") else {
        return;
    };
    let pid = std::process::id();
    let (pa, pb) = (format!("mka{pid}-"), format!("mkb{pid}-"));
    let a = s.add_agent_prefixed("a", &pa);
    let b = s.add_agent_prefixed("b", &pb);
    let (ida, idb) = (s.agents[a].id.clone(), s.agents[b].id.clone());
    s.subscribe();
    let sid = s.server_id("moved");
    create(&s, &ida, &sid, &e2e::egg::fakegame("").0);
    power(&s, &sid, "start");
    wait_state(&s, &sid, "running");
    // Incompressible, so restoring it onto b takes a while: long enough to be killed in.
    let c = client(&s);
    let sha = upload(&c, &sid, "/server/world/big.bin", 11, 128 * MIB);
    let store = s.panel.data_dir.join("backups").join(&sid);
    let (vol_a, vol_b) = (
        s.agents[a].data_dir.join("volumes").join(&sid),
        s.agents[b].data_dir.join("volumes").join(&sid),
    );

    // Killed while backing up (the server stopped, nothing on b yet).
    kill_panel_at(&mut s, &sid, &idb, "backing_up");
    assert!(!vol_b.exists(), "a copy on b before the restore step");
    assert_eq!(docker_running(&format!("{pa}{sid}")), Some(false));
    // A `.part` as a panel stopped mid-backup leaves it (the kill may have left one too).
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("bk-cutshort0001.part"), b"half an archive").unwrap();
    s.restart_panel_after_kill9();
    s.subscribe();
    let parts: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(
        parts.is_empty(),
        "partial archives outlived the restart: {parts:?}"
    );
    rolled_back(&s, &sid, &ida, &pa, &pb, &vol_b);

    // Killed while restoring onto b: a copy on each agent, the source's stopped.
    kill_panel_at(&mut s, &sid, &idb, "restoring");
    assert!(
        vol_b.is_dir(),
        "no partial copy on b: not killed mid-transfer"
    );
    assert!(vol_a.is_dir(), "the source's copy is gone");
    assert_eq!(docker_running(&format!("{pa}{sid}")), Some(false));
    s.restart_panel_after_kill9();
    s.subscribe();
    rolled_back(&s, &sid, &ida, &pa, &pb, &vol_b);
    let c = client(&s);
    assert_eq!(file_sha(&c, &sid, "/server/world/big.bin"), sha);

    // Usable: a new transfer is accepted and commits; its source (a) is killed while b
    // restores, so a's old copy cannot be removed at once: the move is finished (the copy
    // on a removed) when a is back.
    let mark = s.events().mark();
    let mover = s.panel.api.with_timeout(Duration::from_secs(600));
    let path = format!("/api/servers/{sid}/transfer");
    let body = json!({"agentId": idb});
    let call = std::thread::spawn(move || mover.call("POST", &path, Some(&body)));
    s.events()
        .wait_after(mark, "restoring onto b again", SLOW * 2, |v| {
            kind(v) == "transfer_progress"
                && v["serverId"] == sid.as_str()
                && v["data"]["step"] == "restoring"
        });
    s.agents[a].kill9();
    let moved = call
        .join()
        .expect("transfer thread")
        .ok("transfer after the recovery");
    assert_eq!(
        (
            moved["agentId"].as_str(),
            moved["epoch"].as_u64(),
            moved["sourceRemoved"].as_bool()
        ),
        (Some(idb.as_str()), Some(1), Some(false)),
        "{moved}"
    );
    let rec = server_record(&s, &sid);
    assert_eq!(rec["transfer"]["phase"], "removing", "{rec}");
    assert_eq!(rec["transfer"]["otherAgentId"], ida.as_str(), "{rec}");
    wait_state(&s, &sid, "running");
    assert_eq!(docker_running(&format!("{pb}{sid}")), Some(true));
    assert!(vol_a.is_dir(), "a's old copy went while a was down");
    s.agents[a].run();
    s.agents[a].wait_status(&s.panel, "online");
    e2e::eventually("the move finished on a's return", SLOW, || {
        server_record(&s, &sid)["transfer"].is_null().then_some(())
    });
    assert_eq!(docker_running(&format!("{pa}{sid}")), None);
    assert!(!vol_a.exists(), "a's old copy outlived the finished move");
    let rec = server_record(&s, &sid);
    assert_eq!(
        (rec["agentId"].as_str(), rec["epoch"].as_u64()),
        (Some(idb.as_str()), Some(1)),
        "{rec}"
    );
    assert_eq!(docker_running(&format!("{pb}{sid}")), Some(true));
    assert_eq!(file_sha(&c, &sid, "/server/world/big.bin"), sha);
}
