//! Node health, placement, drain and resource history on the real panel with real agents:
//! a node whose Docker socket disappears turns `degraded` (`docker_unreachable`) and back; a
//! stopped (SIGSTOP) agent turns `offline`, then `dead` after `--dead-after-secs`; spread puts
//! two servers on two nodes and binpack on one; constraints are honoured; a draining node
//! gets nothing; the history of a node and of a server survives a panel restart, and a
//! deleted server's gauges leave `/metrics`.

use e2e::eventually;
use e2e::panel::Panel;
use e2e::stack::{SLOW, Stack};
use serde_json::{Value, json};

/// The `GET /api/agents` entry of agent `i` once its health state is `state`.
fn wait_health(s: &Stack, i: usize, state: &str) -> Value {
    wait_entry(s, i, state, |a| a["health"]["state"] == state)
}

/// The `GET /api/agents` entry of agent `i` once `pred` holds for it.
fn wait_entry(s: &Stack, i: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let name = s.agents[i].name.clone();
    eventually(&format!("agent {name}: {what}"), SLOW, || {
        s.panel.api.agent_named(&name).filter(|a| pred(a))
    })
}

fn reasons(a: &Value) -> Vec<String> {
    a["health"]["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("no health.reasons: {a}"))
        .iter()
        .map(|r| r.as_str().unwrap_or("").to_owned())
        .collect()
}

/// The Docker Engine socket the agents would use.
fn docker_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_owned(),
        _ => "/var/run/docker.sock".to_owned(),
    }
}

/// Creates a fakegame server (placed by the panel unless `body` names an agent); returns
/// its agent.
fn create(panel: &Panel, id: &str, extra: Value) -> String {
    let (egg, _) = e2e::egg::fakegame("");
    let mut body = json!({"serverId": id, "eggConfig": egg});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let r = panel.api.post("/api/servers", &body).ok("create");
    r["server"]["agentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_node_whose_docker_socket_disappears_is_degraded_and_recovers() {
    let Some(mut s) = Stack::start("health-docker") else {
        return;
    };
    let a = s.register("a");
    // The agent reaches Docker through a symlink this test removes and restores.
    let link = s.dir.path().join("docker.sock");
    std::os::unix::fs::symlink(docker_socket(), &link).expect("symlink to the Docker socket");
    let link_arg = link.to_string_lossy().into_owned();
    s.agents[a].run_with(&["--docker-socket", &link_arg]);
    s.agents[a].wait_status(&s.panel, "online");
    let healthy = wait_entry(&s, a, "healthy with a pong", |a| {
        a["health"]["state"] == "healthy" && a["systemLoad"].is_object()
    });
    assert_eq!(healthy["status"], "online");
    assert!(healthy["health"]["since"].is_string(), "{healthy}");
    assert_eq!(reasons(&healthy), Vec::<String>::new());
    let load = &healthy["systemLoad"];
    for k in ["cpu", "memory", "disk"] {
        let v = load[k].as_f64().unwrap_or(-1.0);
        assert!(
            (0.0..=100.0).contains(&v),
            "systemLoad.{k} = {v}: {healthy}"
        );
    }
    assert!(load["memory"].as_f64().unwrap_or(0.0) > 0.0, "{healthy}");
    assert!(load["disk"].as_f64().unwrap_or(0.0) > 0.0, "{healthy}");

    let events = s.subscribe();
    let mark = events.mark();
    std::fs::remove_file(&link).expect("removing the socket link");
    let degraded = wait_health(&s, a, "degraded");
    assert_eq!(degraded["status"], "online", "still connected: {degraded}");
    assert!(
        reasons(&degraded).contains(&"docker_unreachable".to_owned()),
        "{degraded}"
    );
    let message = degraded["health"]["message"].as_str().unwrap_or("");
    assert!(message.contains("Docker"), "{degraded}");
    let id = s.agents[a].id.clone();
    let (_, ev) = s
        .events()
        .wait_after(mark, "agent_health_changed degraded", SLOW, |v| {
            v["event"] == "agent_health_changed"
                && v["agentId"] == id
                && v["data"]["state"] == "degraded"
        });
    assert_eq!(ev["data"]["previousState"], "healthy", "{ev}");
    assert_eq!(ev["data"]["reasons"][0], "docker_unreachable", "{ev}");

    std::os::unix::fs::symlink(docker_socket(), &link).expect("restoring the link");
    let back = wait_health(&s, a, "healthy");
    assert_eq!(reasons(&back), Vec::<String>::new());
    let (_, ev) = s
        .events()
        .wait_after(mark, "agent_health_changed healthy", SLOW, |v| {
            v["event"] == "agent_health_changed"
                && v["agentId"] == id
                && v["data"]["state"] == "healthy"
        });
    assert_eq!(ev["data"]["previousState"], "degraded", "{ev}");
    let metrics = metrics(&s.panel);
    assert!(
        metrics.contains(&format!(
            "panel_node_health{{agent=\"{id}\",state=\"healthy\"}} 1\n"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("panel_node_health_transitions_total{state=\"degraded\"} 0\n"),
        "the degraded transition was not counted"
    );
}

#[test]
fn a_stopped_agent_goes_offline_then_dead_on_schedule() {
    const DEAD_AFTER: u64 = 12;
    let Some(mut s) = Stack::start_with("health-dead", &["--dead-after-secs", "12"]) else {
        return;
    };
    let a = s.add_agent("a");
    wait_health(&s, a, "healthy");
    let events = s.subscribe();
    let mark = events.mark();
    let id = s.agents[a].id.clone();
    s.agents[a].signal(libc::SIGSTOP);
    let offline = wait_health(&s, a, "offline");
    assert_eq!(offline["status"], "offline");
    assert_eq!(reasons(&offline), ["heartbeat_lost"]);
    let dead = wait_health(&s, a, "dead");
    assert_eq!(reasons(&dead), ["offline_too_long"]);
    // Not before its time: dead no earlier than the last contact plus the limit.
    let secs = |v: &Value| {
        proto::time::parse_rfc3339(v.as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("not a time: {v}"))
    };
    assert!(
        secs(&dead["health"]["since"]) >= secs(&dead["lastSeen"]) + DEAD_AFTER,
        "{dead}"
    );
    let is = |v: &Value, state: &str| {
        v["event"] == "agent_health_changed" && v["agentId"] == id && v["data"]["state"] == state
    };
    let (i_off, off) = s
        .events()
        .wait_after(mark, "offline", SLOW, |v| is(v, "offline"));
    let (i_dead, d) = s.events().wait_after(mark, "dead", SLOW, |v| is(v, "dead"));
    assert!(i_off < i_dead, "offline came before dead");
    assert_eq!(off["data"]["previousState"], "healthy", "{off}");
    assert_eq!(d["data"]["previousState"], "offline", "{d}");
    // A dead node takes no servers.
    let (egg, _) = e2e::egg::fakegame("");
    s.panel
        .api
        .post("/api/servers", &json!({"eggConfig": egg}))
        .err("create with only a dead node", 503, "AGENT_OFFLINE");

    // Woken up, it reconnects and is healthy again.
    s.agents[a].signal(libc::SIGCONT);
    wait_health(&s, a, "healthy");
}

#[test]
fn spread_binpack_constraints_and_drain() {
    let Some(mut s) = Stack::start("health-place") else {
        return;
    };
    let a = s.register_with("a", &["--label", "region=eu", "--label", "tier=gold"]);
    let b = s.register_with("b", &["--label", "region=us"]);
    for i in [a, b] {
        s.agents[i].run();
        s.agents[i].wait_status(&s.panel, "online");
        let entry = wait_health(&s, i, "healthy");
        assert!(entry["labels"]["region"].is_string(), "{entry}");
    }
    let (ida, idb) = (s.agents[a].id.clone(), s.agents[b].id.clone());

    // Spread: two servers, two nodes (both healthy: on a loaded host a node can turn
    // degraded for a moment, and a degraded node rightly gets nothing).
    let first = create(&s.panel, &s.server_id("s1"), json!({}));
    wait_health(&s, a, "healthy");
    wait_health(&s, b, "healthy");
    let second = create(&s.panel, &s.server_id("s2"), json!({}));
    assert_ne!(
        first,
        second,
        "spread put both servers on {first}: {}",
        s.panel.api.get("/api/agents").body
    );

    // Constraints.
    let on = create(
        &s.panel,
        &s.server_id("us"),
        json!({"constraints": {"region": "us"}}),
    );
    assert_eq!(on, idb);
    let on = create(
        &s.panel,
        &s.server_id("gold"),
        json!({"constraints": {"region": "eu", "tier": "gold"}}),
    );
    assert_eq!(on, ida);
    let (egg, _) = e2e::egg::fakegame("");
    let refused = s.panel.api.post(
        "/api/servers",
        &json!({"eggConfig": egg, "constraints": {"region": "mars"}}),
    );
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.code(), "INSUFFICIENT_RESOURCES");
    let nodes = refused.body["error"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 2, "{}", refused.body);
    for n in &nodes {
        assert!(
            n["reason"].as_str().unwrap_or("").contains("region=mars"),
            "{}",
            refused.body
        );
    }
    let (egg, _) = e2e::egg::fakegame("");
    s.panel
        .api
        .post(
            "/api/servers",
            &json!({"eggConfig": egg, "constraints": {"bad key": "x"}}),
        )
        .err("bad constraint", 400, "CONFIG_INVALID");

    // A server's constraints hold for its moves too: the "us" server has nowhere to go.
    let us = s.server_id("us");
    let r = s
        .panel
        .api
        .post(&format!("/api/servers/{us}/transfer"), &json!({}));
    assert_eq!(r.code(), "INSUFFICIENT_RESOURCES", "{}", r.body);
    let r = s.panel.api.post(
        &format!("/api/servers/{us}/transfer"),
        &json!({"agentId": ida}),
    );
    assert_eq!(r.code(), "INSUFFICIENT_RESOURCES", "{}", r.body);
    assert!(r.message().contains("region=us"), "{}", r.body);

    // Drain: B shows draining and gets nothing, not even when named.
    let drained = s
        .panel
        .api
        .post(&format!("/api/agents/{idb}/drain"), &json!({}))
        .ok("drain");
    assert_eq!(drained["agent"]["health"]["state"], "draining", "{drained}");
    assert_eq!(drained["agent"]["draining"], true);
    for n in 0..2 {
        let on = create(&s.panel, &s.server_id(&format!("d{n}")), json!({}));
        assert_eq!(on, ida, "a server went to the draining node");
    }
    let (egg, _) = e2e::egg::fakegame("");
    s.panel
        .api
        .post("/api/servers", &json!({"eggConfig": egg, "agentId": idb}))
        .err("create on a draining node", 409, "CONFLICT");
    let (egg, _) = e2e::egg::fakegame("");
    let r = s.panel.api.post(
        "/api/servers",
        &json!({"eggConfig": egg, "constraints": {"region": "us"}}),
    );
    assert_eq!(r.code(), "INSUFFICIENT_RESOURCES", "{}", r.body);
    assert!(r.message().contains("draining"), "{}", r.body);
    // A plain drain moves nothing (drain with migration: tests/tests/migrate.rs).
    s.panel
        .api
        .get(&format!("/api/agents/{idb}/migration"))
        .err("no drain with migration", 404, "NOT_FOUND");

    // Drain is durable; binpack after the restart puts two servers on one node.
    s.restart_panel_with(&["--placement", "binpack"]);
    for i in [a, b] {
        s.agents[i].wait_status(&s.panel, "online");
    }
    assert_eq!(wait_health(&s, b, "draining")["draining"], true);
    s.panel
        .api
        .post(&format!("/api/agents/{idb}/undrain"), &json!({}))
        .ok("undrain");
    wait_health(&s, b, "healthy");
    let p1 = create(&s.panel, &s.server_id("p1"), json!({}));
    let p2 = create(&s.panel, &s.server_id("p2"), json!({}));
    assert_eq!(p1, p2, "binpack spread the servers");
    let m = metrics(&s.panel);
    assert!(
        m.contains("panel_placements_total{outcome=\"placed\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "panel_node_committed{{agent=\"{ida}\",resource=\"memory\"}}"
        )),
        "{m}"
    );
}

#[test]
fn history_survives_a_restart_and_deleted_servers_leave_metrics() {
    let Some(mut s) = Stack::start_with("health-history", &["--history-step-secs", "1"]) else {
        return;
    };
    let a = s.add_agent("a");
    let id = s.agents[a].id.clone();
    let server = s.server_id("h");
    let on = create(&s.panel, &server, json!({"agentId": id}));
    assert_eq!(on, id);
    s.panel.api.power(&server, &json!({"action": "start"}));

    let points = |panel: &Panel, path: &str| -> Vec<Value> {
        let r = panel.api.get(path).ok(path);
        r["points"].as_array().cloned().unwrap_or_default()
    };
    let node_path = format!("/api/agents/{id}/stats?range=1h");
    let server_path = format!("/api/servers/{server}/stats");
    let node_before = eventually("3 node points", SLOW, || {
        let p = points(&s.panel, &node_path);
        (p.len() >= 3).then_some(p)
    });
    for p in &node_before {
        assert!(
            p["t"].is_string() && p["cpu"].is_number() && p["servers"] == 1,
            "{p}"
        );
    }
    let server_before = eventually("2 server points", SLOW, || {
        let p = points(&s.panel, &server_path);
        (p.len() >= 2).then_some(p)
    });
    assert!(
        server_before
            .iter()
            .all(|p| p["memory"].as_u64().unwrap_or(0) > 0),
        "{server_before:?}"
    );
    let m = metrics(&s.panel);
    assert!(
        m.contains(&format!("panel_server_memory_bytes{{server=\"{server}\"}}")),
        "{m}"
    );

    s.restart_panel_with(&["--history-step-secs", "1"]);
    // Every point from before the restart is still there, in order, unchanged.
    for (path, before) in [(&node_path, &node_before), (&server_path, &server_before)] {
        let after = points(&s.panel, path);
        assert!(after.len() >= before.len(), "{path}: {after:?}");
        assert_eq!(&after[..before.len()], &before[..], "{path}");
    }
    s.panel
        .api
        .get(&format!("/api/agents/{id}/stats?range=7d"))
        .err("bad range", 400, "INVALID_MESSAGE");

    // A deleted server: its gauges and its history go.
    s.agents[a].wait_status(&s.panel, "online");
    eventually("server gauges after the restart", SLOW, || {
        metrics(&s.panel)
            .contains(&format!("panel_server_cpu_percent{{server=\"{server}\"}}"))
            .then_some(())
    });
    s.panel
        .api
        .delete(&format!("/api/servers/{server}?purge=true&force=true"))
        .ok("delete");
    let m = metrics(&s.panel);
    assert!(!m.contains(&format!("server=\"{server}\"")), "{m}");
    s.panel
        .api
        .get(&server_path)
        .err("stats of a deleted server", 404, "NOT_FOUND");
}

fn metrics(panel: &Panel) -> String {
    let (status, body) = smol::block_on(panel.api.rest.request(
        "GET",
        "/metrics",
        Some(&panel.api.token),
        None,
    ))
    .expect("GET /metrics");
    let body = String::from_utf8(body).expect("UTF-8 metrics");
    assert_eq!(status, 200, "{body}");
    body
}
