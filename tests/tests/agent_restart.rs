//! Scenario 4: `kill -9` of the agent. Its containers keep running; the panel sees the agent
//! go offline (and says so for commands); a restarted agent re-adopts the containers, and
//! logs and stats resume.

use e2e::events::{is_log, is_resource_with_memory, is_status, kind, server_of};
use e2e::stack::{SLOW, Stack};
use serde_json::json;

#[test]
fn agent_kill9_keeps_containers_and_restart_readopts_them() {
    let Some(mut s) = Stack::start("agentkill") else {
        return;
    };
    let a = s.add_agent("a");
    let agent_id = s.agents[a].id.clone();
    s.subscribe();

    let id = s.server_id("survivor");
    let (egg, _) = e2e::egg::fakegame("--spam 2 --mem-mb 8 --players steve");
    {
        let api = &s.panel.api;
        let ev = s.events();
        api.post(
            "/api/servers",
            &json!({"agentId": agent_id, "serverId": id, "eggConfig": egg}),
        )
        .ok("create");
        let mark = ev.mark();
        api.power(&id, &json!({"action": "start"}));
        ev.wait_after(mark, "running", SLOW, |v| is_status(v, &id, "running"));
        ev.wait_after(mark, "spam line 2", SLOW, |v| is_log(v, &id, "spam line 2"));
    }
    let before = e2e::eventually("status with players", SLOW, || {
        let st = s.panel.api.status(&id);
        (st["players"]["online"] == 1).then_some(st)
    });
    let container = before["containerId"]
        .as_str()
        .unwrap_or_else(|| panic!("containerId: {before}"))
        .to_owned();

    s.agents[a].kill9();
    s.agents[a].wait_status(&s.panel, "offline");
    assert!(
        e2e::container_running(&container),
        "container {container} stopped when the agent died"
    );
    let offline = s.panel.api.get(&format!("/api/servers/{id}"));
    offline.err("status while the agent is down", 503, "AGENT_OFFLINE");

    let mark = s.events().mark();
    s.agents[a].run();
    s.agents[a].wait_status(&s.panel, "online");
    let api = &s.panel.api;
    let ev = s.events();

    let after = e2e::eventually("re-adopted server running", SLOW, || {
        let st = api.status(&id);
        (st["status"] == "running" && st["players"]["online"] == 1).then_some(st)
    });
    assert_eq!(
        after["containerId"],
        container.as_str(),
        "a new container? {after}"
    );
    assert!(
        after["uptime"].as_u64() >= before["uptime"].as_u64(),
        "uptime went back: the container was restarted ({before} → {after})"
    );

    // Logs resume: new spam lines, numbered after the ones seen before the kill.
    let last_before = ev.all()[..mark]
        .iter()
        .filter(|v| kind(v) == "server_log" && server_of(v) == id)
        .filter_map(|v| {
            v["data"]["message"]
                .as_str()?
                .split("spam line ")
                .nth(1)?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("spam lines before the kill");
    ev.wait_after(mark, "spam lines after re-adoption", SLOW, |v| {
        kind(v) == "server_log"
            && server_of(v) == id
            && v["data"]["message"]
                .as_str()
                .and_then(|m| m.split("spam line ").nth(1))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > last_before)
    });
    // Stats resume.
    ev.wait_after(mark, "resource_update after re-adoption", SLOW, |v| {
        is_resource_with_memory(v, &id)
    });
    // And it is still controllable.
    let mark = ev.mark();
    api.power(&id, &json!({"action": "stop", "timeout": 20}));
    ev.wait_after(mark, "stopped", SLOW, |v| is_status(v, &id, "stopped"));
    api.delete(&format!("/api/servers/{id}?purge=true"))
        .ok("delete");
}
