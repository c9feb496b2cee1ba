//! Scenario 2: the whole life of a server through the operator API, watched on
//! `/api/events`: create (with and without `agentId`) → start → starting/running → logs in
//! order → resource update with memory → status with uptime, resources and players →
//! console command echoed → stop with SIGTERM and a timeout → restart → kill → delete.

use e2e::events::{is_log, is_resource_with_memory, is_status, kind, server_of};
use e2e::stack::{SLOW, Stack};
use serde_json::{Value, json};

/// Spam line numbers of `server` in frames `from..`, in arrival order.
fn spam_numbers(frames: &[Value], from: usize, server: &str) -> Vec<u64> {
    frames[from..]
        .iter()
        .filter(|v| kind(v) == "server_log" && server_of(v) == server)
        .filter_map(|v| {
            v["data"]["message"]
                .as_str()?
                .split("spam line ")
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn server_lifecycle_through_the_operator_api() {
    let Some(mut s) = Stack::start("lifecycle") else {
        return;
    };
    let a = s.add_agent("a");
    let agent_id = s.agents[a].id.clone();
    s.subscribe();
    let api = &s.panel.api;
    let ev = s.events();

    // --- create with agentId and serverId ---------------------------------------------
    let id = s.server_id("one");
    let (egg, _port) = e2e::egg::fakegame("--players alice,bob --mem-mb 16 --spam 4");
    let created = api
        .post(
            "/api/servers",
            &json!({"agentId": agent_id, "serverId": id, "eggConfig": egg}),
        )
        .ok("create with agentId");
    assert_eq!(created["server"]["serverId"], id.as_str(), "{created}");
    assert_eq!(created["server"]["agentId"], agent_id.as_str(), "{created}");
    assert!(
        api.server_ids().contains(&id),
        "GET /api/servers lists {id}"
    );
    // Same id again: a conflict, not a second container.
    let again = api.post(
        "/api/servers",
        &json!({"agentId": agent_id, "serverId": id, "eggConfig": egg}),
    );
    assert!(
        again.status == 409 || again.status == 502,
        "duplicate create: {again:?}"
    );
    assert_eq!(again.body["success"], false);

    // --- start: starting → running, logs in order, stats, status ------------------------
    let mark = ev.mark();
    api.power(&id, &json!({"action": "start"}));
    let (i_starting, _) = ev.wait_after(mark, "starting", SLOW, |v| is_status(v, &id, "starting"));
    let (i_running, running) =
        ev.wait_after(mark, "running", SLOW, |v| is_status(v, &id, "running"));
    assert!(i_starting < i_running, "starting must come before running");
    assert_eq!(running["data"]["previousStatus"], "starting", "{running}");
    assert_eq!(running["type"], "event");

    let (i_boot, _) = ev.wait_after(mark, "boot log", SLOW, |v| {
        is_log(v, &id, "Starting fakegame")
    });
    let (i_started, started) = ev.wait_after(mark, "started log", SLOW, |v| {
        is_log(v, &id, "Server started on port")
    });
    assert!(i_boot < i_started, "log lines out of order");
    assert_eq!(started["data"]["logLevel"], "INFO", "{started}");
    ev.wait_after(mark, "spam line 8", SLOW, |v| is_log(v, &id, "spam line 8"));
    let nums = spam_numbers(&ev.all(), mark, &id);
    assert_eq!(
        &nums[..8],
        &[1, 2, 3, 4, 5, 6, 7, 8],
        "server_log lines missing or out of order: {nums:?}"
    );
    // The stderr warning arrives too.
    ev.wait_after(mark, "stderr warning", SLOW, |v| {
        is_log(v, &id, "This is a fake game server")
    });

    let (_, res) = ev.wait_after(mark, "resource_update with memory", SLOW, |v| {
        is_resource_with_memory(v, &id)
    });
    assert!(res["data"]["cpu"].is_number(), "{res}");

    let status = e2e::eventually("status with players", SLOW, || {
        let st = api.status(&id);
        (st["players"]["online"] == 2).then_some(st)
    });
    assert_eq!(status["serverId"], id.as_str(), "{status}");
    assert_eq!(status["status"], "running", "{status}");
    assert!(status["uptime"].is_u64(), "uptime: {status}");
    assert!(status["containerId"].is_string(), "containerId: {status}");
    let used = status["resources"]["memory"]["used"]
        .as_str()
        .and_then(|q| proto::quantity::Bytes::parse(q).ok())
        .unwrap_or_else(|| panic!("resources.memory.used: {status}"));
    assert!(used.0 > 0, "memory used: {status}");
    assert_eq!(status["players"]["max"], 7, "{status}");
    assert_eq!(
        status["players"]["list"],
        json!(["alice", "bob"]),
        "{status}"
    );

    // --- console ---------------------------------------------------------------------
    let mark = ev.mark();
    api.post(
        &format!("/api/servers/{id}/command"),
        &json!({"command": "say hello from e2e"}),
    )
    .ok("console command");
    ev.wait_after(mark, "echoed console line", SLOW, |v| {
        is_log(v, &id, "[INFO] hello from e2e")
    });
    api.post(
        &format!("/api/servers/{id}/command"),
        &json!({"command": "join carol"}),
    )
    .ok("join");
    e2e::eventually("carol online", SLOW, || {
        (api.status(&id)["players"]["online"] == 3).then_some(())
    });

    // --- stop with SIGTERM and a timeout ---------------------------------------------
    let mark = ev.mark();
    api.power(
        &id,
        &json!({"action": "stop", "signal": "SIGTERM", "timeout": 20}),
    );
    ev.wait_after(mark, "SIGTERM log", SLOW, |v| {
        is_log(v, &id, "Received SIGTERM, shutting down")
    });
    let (_, stopped) = ev.wait_after(mark, "stopped", SLOW, |v| is_status(v, &id, "stopped"));
    if let Some(code) = stopped["data"]["exitCode"].as_i64() {
        assert_eq!(code, 0, "graceful stop exit code: {stopped}");
    }
    let st = api.status(&id);
    assert_eq!(st["status"], "stopped", "{st}");

    // --- restart ----------------------------------------------------------------------
    let mark = ev.mark();
    api.power(&id, &json!({"action": "restart"}));
    ev.wait_after(mark, "running again", SLOW, |v| {
        is_status(v, &id, "running")
    });
    ev.wait_after(mark, "fresh boot log", SLOW, |v| {
        is_log(v, &id, "Server started on port")
    });
    e2e::eventually("running after restart", SLOW, || {
        (api.status(&id)["status"] == "running").then_some(())
    });

    // --- kill -------------------------------------------------------------------------
    let mark = ev.mark();
    api.power(&id, &json!({"action": "kill"}));
    ev.wait_after(mark, "stopped after kill", SLOW, |v| {
        is_status(v, &id, "stopped")
    });
    assert_eq!(api.status(&id)["status"], "stopped");

    // --- delete -----------------------------------------------------------------------
    api.delete(&format!("/api/servers/{id}")).ok("delete");
    assert!(
        !api.server_ids().contains(&id),
        "deleted server still listed"
    );
    let gone = api.get(&format!("/api/servers/{id}"));
    assert_eq!(gone.body["success"], false, "{gone:?}");
    assert!(
        gone.status == 404 || gone.code() == "SERVER_NOT_FOUND",
        "status of a deleted server: {gone:?}"
    );
    assert!(
        e2e::containers_with_label(&format!("ctrl.server={id}")).is_empty(),
        "container of {id} left behind"
    );

    // --- create without agentId (and without serverId): the panel places it ----------
    let (egg, _) = e2e::egg::fakegame("");
    let created = api
        .post("/api/servers", &json!({"eggConfig": egg}))
        .ok("create without agentId");
    assert_eq!(created["server"]["agentId"], agent_id.as_str(), "{created}");
    let id2 = created["server"]["serverId"]
        .as_str()
        .unwrap_or_else(|| panic!("no serverId: {created}"))
        .to_owned();
    let mark = ev.mark();
    api.power(&id2, &json!({"action": "start"}));
    ev.wait_after(mark, "second server running", SLOW, |v| {
        is_status(v, &id2, "running")
    });
    api.delete(&format!("/api/servers/{id2}?purge=true"))
        .ok("delete second");
    assert!(e2e::containers_with_label(&format!("ctrl.server={id2}")).is_empty());
    assert!(
        !s.agents[a].data_dir.join("volumes").join(&id2).exists(),
        "purge kept the volume"
    );
}
