//! The server routes of the operator API: placement when no agent is named, console, files
//! and delete — each checked at both ends (what the fake agent receives, what the operator
//! gets back).

mod common;

use common::agent::{Conn, standard_response};
use common::{Harness, Panel, assert_error, create_server_answered, eventually, run};
use futures_lite::future::zip;
use serde_json::{Value, json};

/// Registers an agent with `maxMemory` = `mem`, connects it and waits until it is online.
async fn agent_with_memory(p: &Panel, name: &str, mem: &str) -> (String, Conn) {
    let body = json!({
        "name": name, "hostname": "127.0.0.1", "port": 8080,
        "capabilities": {"maxMemory": mem, "maxCpuCores": 8, "dockerVersion": "24.0.0",
                         "supportedArchitectures": ["amd64"]}
    });
    let (st, v) = p.admin("POST", "/api/agents/register", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let a: proto::rest::RegisteredAgent = serde_json::from_value(v["agent"].clone()).unwrap();
    let c = Conn::connect(p, &a).await;
    p.wait_agent_status(&a.id, "online").await;
    (a.id, c)
}

/// The common egg with memory limit `mem` and a host port of its own (placement refuses a
/// node where the host port is taken).
fn egg_with_memory(mem: &str) -> Value {
    static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(30000);
    let port = PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut e = common::egg();
    e["limits"]["memory"] = json!(mem);
    e["ports"] = json!({ port.to_string(): port });
    e
}

#[test]
fn placement_picks_the_online_agent_with_most_free_memory() {
    let h = Harness::start("placement");
    let p = &h.panel;
    run(async {
        let (big, big_c) = agent_with_memory(p, "big", "8GB").await;
        let (small, small_c) = agent_with_memory(p, "small", "6GB").await;
        let seen_big = big_c.auto_respond(standard_response);
        let seen_small = small_c.auto_respond(standard_response);

        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"serverId": "s1", "eggConfig": egg_with_memory("4g")})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            v["server"]["agentId"],
            big.as_str(),
            "8 GB free beats 6: {v}"
        );
        assert_eq!(seen_big.seen.lock().len(), 1);
        assert_eq!(seen_small.seen.lock().len(), 0);

        // Now big has 4 GB left and small 6: the next goes to small.
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"serverId": "s2", "eggConfig": egg_with_memory("4g")})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["server"]["agentId"], small.as_str(), "{v}");

        // Nothing fits 16 GB.
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"serverId": "s3", "eggConfig": egg_with_memory("16g")})),
            )
            .await;
        assert_error(st, &v, 409, "INSUFFICIENT_RESOURCES");

        // A server id is unique.
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"serverId": "s1", "eggConfig": egg_with_memory("1g")})),
            )
            .await;
        assert_eq!(st, 409, "duplicate server id: {v}");

        // An offline agent is never picked.
        drop(big_c);
        p.wait_agent_status(&big, "offline").await;
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"eggConfig": egg_with_memory("1g")})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["server"]["agentId"], small.as_str(), "{v}");
        assert!(
            v["server"]["serverId"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "a server id is generated when none is given: {v}"
        );
    });
}

#[test]
fn console_files_and_delete_reach_the_agent() {
    let h = Harness::start("server-routes");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;

        // Console line.
        let op = p.admin(
            "POST",
            "/api/servers/srv-1/command",
            Some(json!({"command": "say hello"})),
        );
        let ag = async {
            let c = conn.next_command().await;
            assert_eq!(c["action"], "send_command", "{c}");
            assert_eq!(c["serverId"], "srv-1", "{c}");
            assert_eq!(c["payload"]["command"], "say hello", "{c}");
            conn.respond_ok(c["id"].as_str().unwrap(), json!({"serverId": "srv-1"}))
                .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["success"], true);

        // Listing.
        let listing = json!({"serverId": "srv-1", "path": "/server", "entries": [
            {"name": "server.properties", "type": "file", "size": 12, "modified": 0, "mode": 420}
        ]});
        let op = p.admin("GET", "/api/servers/srv-1/files?path=/server", None);
        let ag = async {
            let c = conn.next_command().await;
            assert_eq!(c["action"], "list_files", "{c}");
            assert_eq!(c["payload"]["path"], "/server", "{c}");
            conn.respond_ok(c["id"].as_str().unwrap(), listing.clone())
                .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"], listing);

        // Content, with a percent-encoded path.
        let op = p.admin(
            "GET",
            "/api/servers/srv-1/files/content?path=%2Fserver%2Fserver.properties",
            None,
        );
        let ag = async {
            let c = conn.next_command().await;
            assert_eq!(c["action"], "get_file", "{c}");
            assert_eq!(c["payload"]["path"], "/server/server.properties", "{c}");
            conn.respond_ok(
                c["id"].as_str().unwrap(),
                json!({"serverId": "srv-1", "path": "/server/server.properties",
                       "content": "motd=hi\n", "encoding": "utf8", "size": 8}),
            )
            .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["content"], "motd=hi\n", "{v}");

        // write_file, with base64 content passed through untouched.
        let op = p.admin(
            "PUT",
            "/api/servers/srv-1/files/content?path=/server/conf/motd.txt",
            Some(json!({"content": "aGk=", "encoding": "base64"})),
        );
        let ag = async {
            let c = conn.next_command().await;
            assert_eq!(c["action"], "write_file", "{c}");
            assert_eq!(c["payload"]["path"], "/server/conf/motd.txt", "{c}");
            assert_eq!(c["payload"]["content"], "aGk=", "{c}");
            assert_eq!(c["payload"]["encoding"], "base64", "{c}");
            conn.respond_ok(c["id"].as_str().unwrap(), json!({"serverId": "srv-1"}))
                .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_eq!(st, 200, "{v}");
        // A body without `content` is refused by the panel.
        let (st, v) = p
            .admin(
                "PUT",
                "/api/servers/srv-1/files/content?path=/server/a.txt",
                Some(json!({"text": "x"})),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["code"], "INVALID_MESSAGE", "{v}");

        // A path outside /server is refused by the panel; nothing is sent.
        for bad in ["/etc/passwd", "/server/../etc/passwd"] {
            let (st, v) = p
                .admin(
                    "GET",
                    &format!("/api/servers/srv-1/files?path={}", bad.replace('/', "%2F")),
                    None,
                )
                .await;
            assert_error(st, &v, 400, "INVALID_PATH");
        }
        assert!(conn.commands.is_empty());

        // Delete keeps files by default; `?purge=true` asks to delete them.
        create_server_answered(p, &conn, &a.id, "srv-2").await;
        for (server, path, purge) in [
            ("srv-1", "/api/servers/srv-1", false),
            ("srv-2", "/api/servers/srv-2?purge=true", true),
        ] {
            let op = p.admin("DELETE", path, None);
            let ag = async {
                let c = conn.next_command().await;
                assert_eq!(c["action"], "delete_server", "{c}");
                assert_eq!(c["serverId"], server, "{c}");
                let got = c["payload"]["purge"].as_bool().unwrap_or(false);
                assert_eq!(got, purge, "{c}");
                conn.respond_ok(
                    c["id"].as_str().unwrap(),
                    json!({"serverId": server, "status": "deleted"}),
                )
                .await;
            };
            let ((st, v), ()) = zip(op, ag).await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["success"], true);
        }
        let servers = eventually("deleted servers unlisted", || async {
            let (_, v) = p.admin("GET", "/api/servers", None).await;
            let list = v["servers"].as_array().cloned().unwrap_or_default();
            (!list
                .iter()
                .any(|s| s["serverId"] == "srv-1" || s["serverId"] == "srv-2"))
            .then_some(list)
        })
        .await;
        assert!(servers.is_empty(), "{servers:?}");
        let (st, _) = p.admin("GET", "/api/servers/srv-1", None).await;
        assert_eq!(st, 404);
    });
}

async fn listed(p: &Panel, server: &str) -> Option<Value> {
    let (st, v) = p.admin("GET", "/api/servers", None).await;
    assert_eq!(st, 200, "{v}");
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["serverId"] == server)
        .cloned()
}

#[test]
fn create_refused_by_the_agent_is_502_and_forgotten() {
    let h = Harness::start("create-refused");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        let op = p.create_server(&a.id, "srv-1");
        let ag = async {
            let c = conn.next_command().await;
            conn.respond_err(
                c["id"].as_str().unwrap(),
                "PORT_CONFLICT",
                "port 25565 is already in use",
            )
            .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_error(st, &v, 502, "PORT_CONFLICT");
        assert_eq!(v["error"]["message"], "port 25565 is already in use");
        assert!(listed(p, "srv-1").await.is_none(), "refused server kept");
        // The id is free again.
        let (st, v) = create_server_answered(p, &conn, &a.id, "srv-1").await;
        assert_eq!(st, 200, "{v}");
        assert!(listed(p, "srv-1").await.is_some());
    });
}

#[test]
fn desired_state_follows_successful_power_commands_and_survives_restart() {
    let mut h = Harness::start("desired");
    run(async {
        let p = &h.panel;
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        assert_eq!(listed(p, "srv-1").await.unwrap()["desiredState"], "created");
        let _auto = conn.auto_respond(standard_response);
        let (st, _) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(listed(p, "srv-1").await.unwrap()["desiredState"], "running");
        drop(_auto);
        // A refused stop does not change what the operator asked for last.
        let op = p.admin(
            "POST",
            "/api/servers/srv-1/power",
            Some(json!({"action": "stop"})),
        );
        let ag = async {
            let c = conn.next_command().await;
            conn.respond_err(c["id"].as_str().unwrap(), "DOCKER_ERROR", "nope")
                .await;
        };
        let ((st, _), ()) = zip(op, ag).await;
        assert_eq!(st, 502);
        assert_eq!(listed(p, "srv-1").await.unwrap()["desiredState"], "running");
    });
    h.panel.kill9();
    h.restart();
    run(async {
        let s = listed(&h.panel, "srv-1").await.expect("server kept");
        assert_eq!(s["desiredState"], "running", "{s}");
        assert_eq!(s["agentOnline"], false, "{s}");
        assert_eq!(s["eggConfig"], common::egg(), "egg stored as sent: {s}");
    });
}

#[test]
fn delete_of_an_offline_agents_server_needs_force() {
    let h = Harness::start("delete-force");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        conn.close().await;
        conn.wait_closed().await;
        p.wait_agent_status(&a.id, "offline").await;
        let (st, v) = p.admin("DELETE", "/api/servers/srv-1", None).await;
        assert_error(st, &v, 503, "AGENT_OFFLINE");
        assert!(listed(p, "srv-1").await.is_some());
        let (st, v) = p
            .admin("DELETE", "/api/servers/srv-1?force=true", None)
            .await;
        assert_eq!(st, 200, "{v}");
        assert!(listed(p, "srv-1").await.is_none());
    });
}
