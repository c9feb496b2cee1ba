//! Scenario 2, the edges: a server that ignores SIGTERM is still stopped once the timeout
//! runs out; an egg's `stop.command` is written to the console; a server that crashes on its
//! own is reported `crashed` with its exit code.

use e2e::events::{is_log, is_status};
use e2e::stack::{SLOW, Stack};
use serde_json::json;

#[test]
fn stop_timeout_stop_command_and_crash() {
    let Some(mut s) = Stack::start("stopcrash") else {
        return;
    };
    let a = s.add_agent("a");
    let agent = s.agents[a].id.clone();
    s.subscribe();
    let api = &s.panel.api;
    let ev = s.events();

    // 1. Ignores SIGTERM: the agent must escalate after the timeout.
    let stubborn = s.server_id("stubborn");
    let (egg, _) = e2e::egg::fakegame("--ignore-signals");
    api.post(
        "/api/servers",
        &json!({"agentId": agent, "serverId": stubborn, "eggConfig": egg}),
    )
    .ok("create stubborn");
    // 2. Stops on the console command `stop` given in the egg.
    let polite = s.server_id("polite");
    let (mut egg, _) = e2e::egg::fakegame("");
    egg["stop"] = json!({"command": "stop"});
    api.post(
        "/api/servers",
        &json!({"agentId": agent, "serverId": polite, "eggConfig": egg}),
    )
    .ok("create polite");
    // 3. Crashes by itself with exit code 3.
    let crasher = s.server_id("crasher");
    let (egg, _) = e2e::egg::fakegame("--crash-after 2");
    api.post(
        "/api/servers",
        &json!({"agentId": agent, "serverId": crasher, "eggConfig": egg}),
    )
    .ok("create crasher");

    let mark = ev.mark();
    for id in [&stubborn, &polite, &crasher] {
        api.power(id, &json!({"action": "start"}));
    }
    for id in [&stubborn, &polite] {
        ev.wait_after(mark, "running", SLOW, |v| is_status(v, id, "running"));
        ev.wait_after(mark, "started", SLOW, |v| {
            is_log(v, id, "Server started on port")
        });
    }

    let (_, crashed) = ev.wait_after(mark, "crashed", SLOW, |v| is_status(v, &crasher, "crashed"));
    if let Some(code) = crashed["data"]["exitCode"].as_i64() {
        assert_eq!(code, 3, "{crashed}");
    }
    ev.wait_after(mark, "crash line", SLOW, |v| {
        is_log(v, &crasher, "Simulated crash after 2 s")
    });
    assert_eq!(api.status(&crasher)["status"], "crashed");

    let m = ev.mark();
    api.power(
        &stubborn,
        &json!({"action": "stop", "signal": "SIGTERM", "timeout": 2}),
    );
    ev.wait_after(m, "SIGTERM ignored", SLOW, |v| {
        is_log(v, &stubborn, "Received SIGTERM, ignoring it")
    });
    ev.wait_after(m, "stubborn stopped", SLOW, |v| {
        is_status(v, &stubborn, "stopped")
    });
    assert_eq!(api.status(&stubborn)["status"], "stopped");

    let m = ev.mark();
    api.power(&polite, &json!({"action": "stop", "timeout": 30}));
    ev.wait_after(m, "stop command seen", SLOW, |v| {
        is_log(v, &polite, "Console requested stop")
    });
    let (_, stopped) = ev.wait_after(m, "polite stopped", SLOW, |v| {
        is_status(v, &polite, "stopped")
    });
    if let Some(code) = stopped["data"]["exitCode"].as_i64() {
        assert_eq!(code, 0, "{stopped}");
    }

    for id in [&stubborn, &polite, &crasher] {
        api.delete(&format!("/api/servers/{id}?purge=true"))
            .ok("delete");
    }
}
