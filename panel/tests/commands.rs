//! The agent hub: presence and heartbeat, command correlation (also concurrent and out of
//! order), timeout, offline agents, error pass-through and connection replacement — the
//! real panel binary driven over TLS by an in-test fake agent.

mod common;

use common::agent::{Conn, standard_response};
use common::{
    Harness, PanelOpts, assert_error, create_server_answered, eventually, find_key, online_agent,
    run,
};
use futures_lite::future::zip;
use serde_json::{Value, json};

#[test]
fn connected_agent_is_online_with_its_pong_data() {
    let h = Harness::with("online", PanelOpts::default().arg("--heartbeat-secs", 1));
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        // The panel pings with the spec's message and keeps what our pong said.
        let entry = eventually("pong data in GET /api/agents", || async {
            let e = p.agent_entry(&a.id).await?;
            find_key(&e, "activeServers").is_some().then_some(e)
        })
        .await;
        assert_eq!(entry["status"], "online", "{entry}");
        assert!(conn.pings.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        assert_eq!(
            find_key(&entry, "activeServers"),
            Some(&json!(3)),
            "{entry}"
        );
        let load = find_key(&entry, "systemLoad").expect("systemLoad shown");
        assert_eq!(load["cpu"], 25.5, "{entry}");
        assert_eq!(load["memory"], 65.2, "{entry}");
        assert_eq!(load["disk"], 40.1, "{entry}");
        assert!(entry["lastSeen"].is_string(), "lastSeen: {entry}");
        assert_eq!(entry["name"], "node-1");
        // An agent that keeps answering stays online well past 3 heartbeat periods.
        eventually("5 pings answered", || async {
            (conn.pings.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(())
        })
        .await;
        assert!(conn.closed.is_empty(), "answering agent was disconnected");
        let entry = p.agent_entry(&a.id).await.unwrap();
        assert_eq!(entry["status"], "online", "{entry}");
    });
}

#[test]
fn pings_follow_the_spec() {
    let h = Harness::with("pings", PanelOpts::default().arg("--heartbeat-secs", 1));
    let p = &h.panel;
    run(async {
        let a = p.register("node-p").await;
        // Raw socket: read the first ping frame as the panel wrote it.
        let auth = format!("Bearer {}", a.token);
        let mut ws = common::net::ws_connect(
            &p.ws_url(),
            p.tls.clone(),
            &[("Authorization", &auth), ("X-Agent-ID", &a.id)],
        )
        .await
        .expect("connect");
        use futures_util::StreamExt;
        let ping: Value = common::within(common::DEADLINE, "a ping", async {
            loop {
                match ws.next().await {
                    Some(Ok(async_tungstenite::tungstenite::Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).expect("ping is JSON");
                        if v["type"] == "ping" {
                            break v;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("socket ended before a ping: {other:?}"),
                }
            }
        })
        .await;
        assert!(ping["id"].as_str().is_some_and(|s| !s.is_empty()), "{ping}");
        let ts = ping["timestamp"].as_str().expect("timestamp");
        assert!(proto::time::parse_rfc3339(ts).is_some(), "timestamp {ts}");
        // It is a valid protocol message.
        let raw = serde_json::to_vec(&ping).unwrap();
        let msg = proto::decode(&raw).expect("ping decodes");
        assert_eq!(msg.kind(), proto::MessageType::Ping);
    });
}

#[test]
fn power_command_is_correlated_and_its_data_returned() {
    let h = Harness::start("power");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        let (_, created) = create_server_answered(p, &conn, &a.id, "srv-1").await;
        assert_eq!(created["success"], true, "{created}");
        assert_eq!(created["server"]["serverId"], "srv-1", "{created}");
        assert_eq!(created["server"]["agentId"], a.id.as_str(), "{created}");

        let operator = p.admin(
            "POST",
            "/api/servers/srv-1/power",
            Some(json!({"action": "start"})),
        );
        let agent = async {
            let cmd = conn.next_command().await;
            assert_eq!(cmd["type"], "command", "{cmd}");
            assert_eq!(cmd["action"], "start_server", "{cmd}");
            assert_eq!(cmd["serverId"], "srv-1", "{cmd}");
            assert_eq!(cmd["agentId"], a.id.as_str(), "{cmd}");
            let ts = cmd["timestamp"].as_str().expect("timestamp");
            assert!(proto::time::parse_rfc3339(ts).is_some(), "{ts}");
            let id = cmd["id"].as_str().expect("id").to_owned();
            assert!(!id.is_empty());
            // A response to an id nobody asked for is ignored, not matched.
            conn.respond_ok(
                "not-a-pending-id",
                json!({"serverId": "srv-1", "status": "bogus"}),
            )
            .await;
            conn.respond_ok(&id, json!({"serverId": "srv-1", "status": "starting"}))
                .await;
            id
        };
        let ((st, v), id1) = zip(operator, agent).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["success"], true, "{v}");
        assert_eq!(
            v["data"],
            json!({"serverId": "srv-1", "status": "starting"})
        );

        // A second command gets a fresh id.
        let operator = p.admin(
            "POST",
            "/api/servers/srv-1/power",
            Some(json!({"action": "stop", "signal": "SIGINT", "timeout": 5})),
        );
        let agent = async {
            let cmd = conn.next_command().await;
            assert_eq!(cmd["action"], "stop_server", "{cmd}");
            assert_eq!(cmd["payload"]["signal"], "SIGINT", "{cmd}");
            assert_eq!(cmd["payload"]["timeout"], 5, "{cmd}");
            let id = cmd["id"].as_str().unwrap().to_owned();
            conn.respond_ok(&id, json!({"serverId": "srv-1", "status": "stopping"}))
                .await;
            id
        };
        let ((st, v), id2) = zip(operator, agent).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["status"], "stopping", "{v}");
        assert_ne!(id1, id2, "command ids must be fresh");

        // get_status returns the agent's data unchanged.
        let _auto = conn.auto_respond(standard_response);
        let (st, v) = p.admin("GET", "/api/servers/srv-1", None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["status"], "running", "{v}");
        assert_eq!(v["data"]["containerId"], "docker_container_id", "{v}");
        assert_eq!(v["data"]["uptime"], 3600, "{v}");

        // The server is listed.
        let (st, v) = p.admin("GET", "/api/servers", None).await;
        assert_eq!(st, 200, "{v}");
        let servers = v["servers"].as_array().expect("servers");
        assert!(
            servers.iter().any(|s| s["serverId"] == "srv-1"),
            "srv-1 listed: {v}"
        );
    });
}

#[test]
fn power_input_errors() {
    let h = Harness::start("power-bad");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "explode"})),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["success"], false);
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/no-such/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_eq!(st, 404, "{v}");
        assert_eq!(v["success"], false);
        // Invalid egg: refused before anything is sent to the agent.
        let mut bad = common::egg();
        bad["image"] = json!("UPPER CASE/not valid");
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"agentId": a.id, "serverId": "srv-2", "eggConfig": bad})),
            )
            .await;
        assert_error(st, &v, 400, "CONFIG_INVALID");
        assert!(conn.commands.is_empty(), "nothing sent for an invalid egg");
    });
}

#[test]
fn concurrent_commands_answered_out_of_order_still_correlate() {
    let h = Harness::start("concurrent");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        let servers = ["srv-a", "srv-b", "srv-c", "srv-d"];
        for s in servers {
            create_server_answered(p, &conn, &a.id, s).await;
        }
        let actions = ["start", "stop", "restart", "kill"];
        let requests = servers.iter().zip(actions).map(|(s, act)| {
            let path = format!("/api/servers/{s}/power");
            async move {
                let r = p.admin("POST", &path, Some(json!({"action": act}))).await;
                (s.to_string(), r)
            }
        });
        // All four requests in flight at once.
        let operator = futures_util::future::join_all(requests);
        let agent = async {
            let mut cmds = Vec::new();
            for _ in 0..servers.len() {
                cmds.push(conn.next_command().await);
            }
            let ids: std::collections::HashSet<_> = cmds
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), servers.len(), "distinct ids: {cmds:?}");
            // Answer in reverse order of arrival, echoing what was asked.
            for cmd in cmds.iter().rev() {
                conn.respond_ok(
                    cmd["id"].as_str().unwrap(),
                    json!({"serverId": cmd["serverId"], "echo": cmd["action"]}),
                )
                .await;
            }
        };
        let (results, ()) = zip(operator, agent).await;
        for ((server, (st, v)), act) in results.into_iter().zip(actions) {
            assert_eq!(st, 200, "{server}: {v}");
            assert_eq!(v["data"]["serverId"], server.as_str(), "{v}");
            assert_eq!(v["data"]["echo"], format!("{act}_server"), "{v}");
        }
    });
}

#[test]
fn unanswered_command_times_out_with_504() {
    let h = Harness::with(
        "timeout",
        PanelOpts::default().arg("--command-timeout-secs", 1),
    );
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        // Answered at once; on a very loaded machine even that may exceed 1 s, and a timed
        // out create keeps the record — either way the server exists afterwards.
        let op = p.create_server(&a.id, "srv-1");
        let ag = async {
            let c = conn.next_command().await;
            conn.respond_ok(c["id"].as_str().unwrap(), json!({"serverId": "srv-1"}))
                .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert!(st == 200 || st == 504, "{st} {v}");

        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_error(st, &v, 504, "TIMEOUT");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("start_server"),
            "the message names the action: {v}"
        );
        // The late answer is harmless and the next command still correlates.
        let late = conn.next_command().await;
        assert_eq!(late["action"], "start_server");
        conn.respond_ok(late["id"].as_str().unwrap(), json!({"late": true}))
            .await;
        let _auto = conn.auto_respond(standard_response);
        let v = eventually("an answered command after the timeout", || async {
            let (st, v) = p
                .admin(
                    "POST",
                    "/api/servers/srv-1/power",
                    Some(json!({"action": "restart"})),
                )
                .await;
            (st == 200).then_some(v)
        })
        .await;
        assert_eq!(v["data"]["status"], "restarting", "{v}");
        assert_eq!(v["data"]["serverId"], "srv-1", "not the late answer: {v}");
        let m = p.metrics().await;
        let n = common::metric(
            &m,
            "panel_commands_total{action=\"start_server\",outcome=\"timeout\"}",
        );
        assert!(n.is_some_and(|n| n >= 1.0), "timeouts counted:\n{m}");
        let unmatched = common::metric(
            &m,
            "panel_agent_frames_rejected_total{reason=\"unmatched_response\"}",
        );
        assert!(
            unmatched.is_some_and(|n| n >= 1.0),
            "late answer counted as unmatched:\n{m}"
        );
    });
}

#[test]
fn command_to_an_offline_agent_is_503() {
    let h = Harness::start("offline");
    let p = &h.panel;
    run(async {
        // Never connected: creating a server on it fails at once.
        let idle = p.register("node-idle").await;
        let (st, v) = p.create_server(&idle.id, "srv-x").await;
        assert_error(st, &v, 503, "AGENT_OFFLINE");

        let (a, conn) = online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        conn.close().await;
        conn.wait_closed().await;
        drop(conn);
        p.wait_agent_status(&a.id, "offline").await;
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_error(st, &v, 503, "AGENT_OFFLINE");
        let (st, v) = p.admin("GET", "/api/servers/srv-1", None).await;
        assert_error(st, &v, 503, "AGENT_OFFLINE");
    });
}

#[test]
fn agent_error_passes_through_as_502_unchanged() {
    let h = Harness::start("passthrough");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        for (code, message) in [
            (
                "CONTAINER_NOT_FOUND",
                "Docker container for srv-1 not found",
            ),
            ("DOCKER_ERROR", "daemon said: \"no\" — ünïcode kept"),
            ("SOME_FUTURE_CODE", "a code this panel build does not know"),
        ] {
            let operator = p.admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            );
            let agent = async {
                let cmd = conn.next_command().await;
                conn.respond_err(cmd["id"].as_str().unwrap(), code, message)
                    .await;
            };
            let ((st, v), ()) = zip(operator, agent).await;
            assert_eq!(st, 502, "{v}");
            assert_eq!(v["success"], false, "{v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            assert_eq!(v["error"]["message"], message, "{v}");
        }
    });
}

#[test]
fn agent_that_stops_answering_pings_goes_offline() {
    let h = Harness::with("heartbeat", PanelOpts::default().arg("--heartbeat-secs", 1));
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-hb").await;
        conn.set_answer_pings(false);
        p.wait_agent_status(&a.id, "offline").await;
        // The panel also closed the socket, saying why (4001).
        let closed = conn.wait_closed().await;
        assert_eq!(closed.code, Some(4001), "{closed:?}");
        // Answering again after a reconnect brings it back.
        let conn2 = Conn::connect(p, &a).await;
        p.wait_agent_status(&a.id, "online").await;
        drop(conn2);
    });
}

#[test]
fn a_second_connection_replaces_the_first() {
    let h = Harness::start("replace");
    let p = &h.panel;
    run(async {
        let (a, first) = online_agent(p, "node-1").await;
        let second = Conn::connect(p, &a).await;
        // The old socket is closed by the panel with 4000…
        let closed = first.wait_closed().await;
        assert_eq!(closed.code, Some(4000), "{closed:?}");
        // …and commands now reach the new one.
        let (st, v) = create_server_answered(p, &second, &a.id, "srv-1").await;
        assert_eq!(st, 200, "{v}");
        assert!(first.commands.is_empty());
        let e = p.agent_entry(&a.id).await.unwrap();
        assert_eq!(e["status"], "online", "{e}");
        // Closing the replaced connection must not mark the agent offline.
        drop(first);
        let _auto = second.auto_respond(standard_response);
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    });
}

#[test]
fn another_agent_cannot_answer_for_the_target() {
    let h = Harness::start("hijack");
    let p = &h.panel;
    run(async {
        let (a, conn_a) = online_agent(p, "node-a").await;
        let (_b, conn_b) = online_agent(p, "node-b").await;
        create_server_answered(p, &conn_a, &a.id, "srv-1").await;
        let operator = p.admin(
            "POST",
            "/api/servers/srv-1/power",
            Some(json!({"action": "start"})),
        );
        let agents = async {
            let cmd = conn_a.next_command().await;
            let id = cmd["id"].as_str().unwrap().to_owned();
            // b learned the id somehow and answers first, with an error.
            conn_b
                .respond_err(&id, "DOCKER_ERROR", "hijacked answer")
                .await;
            conn_b
                .send_json(&common::agent::ok_response(&id, json!({"hijacked": true})))
                .await;
            // Make sure b's frames were processed before a answers.
            eventually("b's frames counted", || async {
                let m = p.metrics().await;
                common::metric(
                    &m,
                    "panel_agent_frames_rejected_total{reason=\"foreign_server\"}",
                )
                .filter(|n| *n >= 2.0)
                .or_else(|| {
                    common::metric(
                        &m,
                        "panel_agent_frames_rejected_total{reason=\"unmatched_response\"}",
                    )
                    .filter(|n| *n >= 2.0)
                })
            })
            .await;
            conn_a
                .respond_ok(&id, json!({"serverId": "srv-1", "status": "starting"}))
                .await;
        };
        let ((st, v), ()) = zip(operator, agents).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            v["data"],
            json!({"serverId": "srv-1", "status": "starting"})
        );
    });
}

#[test]
fn agent_disconnecting_with_a_pending_command_fails_it_as_offline() {
    // Default 30 s command timeout: the answer must come from the disconnect, not the timer.
    let h = Harness::start("pending-disconnect");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let operator = p.admin(
            "POST",
            "/api/servers/srv-1/power",
            Some(json!({"action": "start"})),
        );
        let agent = async {
            let _cmd = conn.next_command().await;
            conn.close().await;
        };
        let ((st, v), ()) = zip(operator, agent).await;
        assert_error(st, &v, 503, "AGENT_OFFLINE");
    });
}

#[test]
fn a_hundred_concurrent_commands_answered_shuffled_all_correlate() {
    const N: usize = 100;
    let h = Harness::with(
        "many-commands",
        PanelOpts::default()
            .arg("--admin-rate", 10_000)
            .arg("--admin-burst", 10_000),
    );
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let requests = (0..N).map(|i| async move {
            let (st, v) = p
                .admin(
                    "POST",
                    "/api/servers/srv-1/command",
                    Some(json!({"command": format!("line-{i}")})),
                )
                .await;
            (i, st, v)
        });
        let operator = futures_util::future::join_all(requests);
        let agent = async {
            let mut cmds = Vec::new();
            for _ in 0..N {
                cmds.push(conn.next_command().await);
            }
            // A fixed permutation far from arrival order.
            let mut order: Vec<usize> = (0..N).collect();
            order.sort_by_key(|i| (i * 37) % N);
            for i in order {
                let c = &cmds[i];
                conn.respond_ok(
                    c["id"].as_str().unwrap(),
                    json!({"serverId": "srv-1", "echo": c["payload"]["command"]}),
                )
                .await;
            }
        };
        let (results, ()) = zip(operator, agent).await;
        for (i, st, v) in results {
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["data"]["echo"], format!("line-{i}"), "{v}");
        }
        let m = p.metrics().await;
        assert_eq!(
            common::metric(
                &m,
                "panel_commands_total{action=\"send_command\",outcome=\"ok\"}"
            ),
            Some(N as f64),
            "{m}"
        );
    });
}
