//! Scenario 7: two agents on one host (different names, separate data dirs), both online;
//! an explicit `agentId` is honoured, and without one the panel places servers on both and
//! never on an offline agent.

use e2e::stack::Stack;
use serde_json::json;

#[test]
fn two_agents_on_one_host_and_placement_between_them() {
    let Some(mut s) = Stack::start("placement") else {
        return;
    };
    let a = s.add_agent("a");
    let b = s.add_agent("b");
    let (ida, idb) = (s.agents[a].id.clone(), s.agents[b].id.clone());
    assert_ne!(ida, idb);
    let api = &s.panel.api;
    assert_eq!(
        api.agent_named(&s.agents[a].name).expect("a")["status"],
        "online"
    );
    assert_eq!(
        api.agent_named(&s.agents[b].name).expect("b")["status"],
        "online"
    );

    // Explicit placement is honoured, on each agent.
    for (agent, suffix) in [(&ida, "on-a"), (&idb, "on-b")] {
        let id = s.server_id(suffix);
        let (egg, _) = e2e::egg::fakegame("");
        let r = api
            .post(
                "/api/servers",
                &json!({"agentId": agent, "serverId": id, "eggConfig": egg}),
            )
            .ok("explicit placement");
        assert_eq!(r["server"]["agentId"], agent.as_str(), "{r}");
        assert_eq!(
            e2e::containers_with_label(&format!("ctrl.server={id}")).len(),
            1,
            "one container for {id}"
        );
        let labelled = e2e::containers_with_label(&format!("ctrl.agent={agent}"));
        assert!(
            !labelled.is_empty(),
            "container of {id} not labelled with its agent"
        );
    }

    // Automatic placement: several servers land on both agents.
    let mut placed = Vec::new();
    for n in 0..4 {
        let (egg, _) = e2e::egg::fakegame("");
        let r = api
            .post("/api/servers", &json!({"eggConfig": egg}))
            .ok("automatic placement");
        let agent = r["server"]["agentId"].as_str().unwrap_or("").to_owned();
        assert!(
            agent == ida || agent == idb,
            "placed on {agent:?} (#{n}): {r}"
        );
        placed.push(agent);
    }
    assert!(
        placed.contains(&ida) && placed.contains(&idb),
        "placement never chose one of the two agents: {placed:?}"
    );

    // An offline agent is never chosen.
    s.agents[b].kill9();
    s.agents[b].wait_status(&s.panel, "offline");
    let api = &s.panel.api;
    for _ in 0..3 {
        let (egg, _) = e2e::egg::fakegame("");
        let r = api
            .post("/api/servers", &json!({"eggConfig": egg}))
            .ok("placement with one agent offline");
        assert_eq!(r["server"]["agentId"], ida.as_str(), "{r}");
    }
    // Naming the offline agent: AGENT_OFFLINE.
    let (egg, _) = e2e::egg::fakegame("");
    api.post("/api/servers", &json!({"agentId": idb, "eggConfig": egg}))
        .err("create on an offline agent", 503, "AGENT_OFFLINE");
}
