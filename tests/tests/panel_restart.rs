//! Scenario 5: `kill -9` of the panel. The agent reconnects by itself (with backoff) to the
//! restarted panel; agents, servers and tokens survive; commands and events work again.

use e2e::events::{is_log, is_status};
use e2e::stack::{SLOW, Stack};
use serde_json::json;
use std::time::Duration;

#[test]
fn panel_kill9_agent_reconnects_and_nothing_is_lost() {
    let Some(mut s) = Stack::start("panelkill") else {
        return;
    };
    let a = s.add_agent("a");
    let agent_id = s.agents[a].id.clone();
    s.subscribe();

    let id = s.create_fakegame(a, "kept", "--mem-mb 4");
    let mark = s.events().mark();
    s.panel.api.power(&id, &json!({"action": "start"}));
    s.events()
        .wait_after(mark, "running", SLOW, |v| is_status(v, &id, "running"));
    let before = s.panel.api.status(&id);

    s.restart_panel_after_kill9();
    // The agent process kept running and reconnects on its own.
    s.agents[a].wait_status(&s.panel, "online");
    assert!(
        s.agents[a].proc.as_mut().is_some_and(|p| p.running()),
        "the agent process exited while the panel was down"
    );

    let api = &s.panel.api;
    assert!(api.server_ids().contains(&id), "server lost by the panel");
    let agents = api.get("/api/agents").ok("agents");
    let ours: Vec<_> = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|x| x["name"] == s.agents[a].name.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "agent registered once: {agents}");
    assert_eq!(ours[0]["id"], agent_id.as_str());

    let st = e2e::eventually("status after panel restart", SLOW, || {
        let r = api.get(&format!("/api/servers/{id}"));
        (r.status == 200).then_some(r.body["data"].clone())
    });
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["containerId"], before["containerId"], "{st}");

    s.subscribe();
    let api = &s.panel.api;
    let ev = s.events();
    let mark = ev.mark();
    api.post(
        &format!("/api/servers/{id}/command"),
        &json!({"command": "say back again"}),
    )
    .ok("command after panel restart");
    ev.wait_after(mark, "echo after panel restart", SLOW, |v| {
        is_log(v, &id, "[INFO] back again")
    });
    let mark = ev.mark();
    api.power(&id, &json!({"action": "stop", "timeout": 20}));
    ev.wait_after(mark, "stopped", SLOW, |v| is_status(v, &id, "stopped"));
    api.delete(&format!("/api/servers/{id}?purge=true"))
        .ok("delete");

    // The panel's own graceful shutdown: SIGTERM → exit 0.
    let status = s.panel.proc.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|st| st.success()),
        "panel did not exit 0 on SIGTERM: {status:?}"
    );
}
