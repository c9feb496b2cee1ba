//! The egg library over the operator API: the example egg on the first start, imports of
//! Pterodactyl (JSON) and Pelican (YAML) exports as they are, hostile eggs refused, and
//! servers created from a stored egg — variables checked with messages naming them,
//! defaults filled, and the extensions (install, config files, done, stop) in the
//! `create_server` the agent receives.

mod common;

use common::agent::standard_response;
use common::{Harness, assert_error, online_agent, run};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../proto/tests/fixtures/eggs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

/// `POST /api/eggs` with the document's bytes as they are.
async fn import(p: &common::Panel, bytes: &[u8], kind: &str) -> (u16, Value) {
    let auth = format!("Bearer {}", p.admin_token);
    let (st, _, body) = p
        .raw(
            "POST",
            "/api/eggs",
            &[("authorization", &auth), ("content-type", kind)],
            Some(bytes),
        )
        .await;
    (st, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn the_library_imports_both_formats_lists_and_deletes() {
    let h = Harness::start("eggs-library");
    let p = &h.panel;
    run(async {
        // The example egg is there from the first start.
        let (st, v) = p.admin("GET", "/api/eggs", None).await;
        assert_eq!(st, 200, "{v}");
        let eggs = v["eggs"].as_array().unwrap();
        assert_eq!(eggs.len(), 1, "{v}");
        assert_eq!(eggs[0]["id"], "egg-fakegame");
        assert_eq!(eggs[0]["images"][0]["image"], "ctrl-fakegame:latest");
        assert_eq!(eggs[0]["ports"]["25565"], 25565);

        let (st, ptdl) = import(p, &fixture("ptdl_v2.json"), "application/json").await;
        assert_eq!(st, 200, "{ptdl}");
        let egg = &ptdl["egg"];
        assert_eq!(egg["name"], "Test Paper");
        assert_eq!(egg["source"], "PTDL_v2");
        assert_eq!(egg["images"][0]["label"], "Java 21");
        assert_eq!(egg["stop"]["command"], "stop");
        assert_eq!(egg["done"][0], ")! For help, type ");
        assert_eq!(egg["install"]["entrypoint"], "ash");
        assert_eq!(egg["configFiles"][0]["path"], "server.properties");
        assert!(
            ptdl["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("uuid")),
            "the unsupported rule is reported: {ptdl}"
        );
        let (st, plcn) = import(p, &fixture("plcn_v3.yaml"), "application/yaml").await;
        assert_eq!(st, 200, "{plcn}");
        assert_eq!(plcn["egg"]["source"], "PLCN_v3");
        assert!(
            plcn["egg"]["startups"].as_array().unwrap().len() > 1,
            "{plcn}"
        );

        // The list holds summaries; one egg in full.
        let (_, v) = p.admin("GET", "/api/eggs", None).await;
        assert_eq!(v["eggs"].as_array().unwrap().len(), 3);
        let id = egg["id"].as_str().unwrap();
        let listed = v["eggs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap();
        assert!(listed.get("install").is_none() && listed["hasInstall"] == true);
        let (st, one) = p.admin("GET", &format!("/api/eggs/{id}"), None).await;
        assert_eq!(st, 200);
        assert!(
            one["egg"]["install"]["script"]
                .as_str()
                .unwrap()
                .contains("installed")
        );

        // Refused: an unknown format, an install asking for privileges, no token.
        let (st, v) = import(
            p,
            br#"{"meta":{"version":"PTDL_v7"},"name":"x"}"#,
            "application/json",
        )
        .await;
        assert_error(st, &v, 400, "CONFIG_INVALID");
        assert!(v["error"]["message"].as_str().unwrap().contains("PTDL_v7"));
        let mut hostile: Value = serde_json::from_slice(&fixture("ptdl_v2.json")).unwrap();
        hostile["scripts"]["installation"]["privileged"] = json!(true);
        let (st, v) = import(p, hostile.to_string().as_bytes(), "application/json").await;
        assert_error(st, &v, 400, "CONFIG_INVALID");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("privileged"),
            "{v}"
        );
        let (st, _, _) = p
            .raw("POST", "/api/eggs", &[], Some(&fixture("ptdl_v2.json")))
            .await;
        assert_eq!(st, 401);

        let (st, _) = p.admin("DELETE", &format!("/api/eggs/{id}"), None).await;
        assert_eq!(st, 200);
        let (st, v) = p.admin("GET", &format!("/api/eggs/{id}"), None).await;
        assert_error(st, &v, 404, "NOT_FOUND");
        let (st, v) = p.admin("DELETE", &format!("/api/eggs/{id}"), None).await;
        assert_error(st, &v, 404, "NOT_FOUND");
    });
}

#[test]
fn a_server_from_an_egg_carries_its_extensions_and_bad_values_name_the_variable() {
    let h = Harness::start("eggs-create");
    let p = &h.panel;
    run(async {
        let (st, v) = import(p, &fixture("ptdl_v2.json"), "application/json").await;
        assert_eq!(st, 200, "{v}");
        let egg_id = v["egg"]["id"].as_str().unwrap().to_owned();
        let (agent, conn) = online_agent(p, "node").await;
        let seen = conn.auto_respond(standard_response);

        // Every refusal names the variable (or field) and nothing reaches the agent.
        for (env, wants) in [
            (json!({"MAX_PLAYERS": "9999"}), "environment.MAX_PLAYERS"),
            (json!({"MAX_PLAYERS": "many"}), "environment.MAX_PLAYERS"),
            (
                json!({"SERVER_JARFILE": "server.zip"}),
                "environment.SERVER_JARFILE",
            ),
            (json!({"NOT_A_VARIABLE": "1"}), "NOT_A_VARIABLE"),
        ] {
            let body = json!({"eggId": egg_id, "ports": {"25565": 30100}, "environment": env});
            let (st, v) = p.admin("POST", "/api/servers", Some(body)).await;
            assert_error(st, &v, 400, "CONFIG_INVALID");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains(wants), "{wants}: {msg}");
        }
        for (extra, wants) in [
            (json!({"image": "nope"}), "image"),
            (json!({"startup": "nope"}), "startup"),
        ] {
            let mut body = json!({"eggId": egg_id, "ports": {"25565": 30100}});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (st, v) = p.admin("POST", "/api/servers", Some(body)).await;
            assert_error(st, &v, 400, "CONFIG_INVALID");
            assert!(
                v["error"]["message"].as_str().unwrap().starts_with(wants),
                "{v}"
            );
        }
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(json!({"eggId": "egg-none", "ports": {}})),
            )
            .await;
        assert_error(st, &v, 404, "NOT_FOUND");
        assert!(seen.seen.lock().is_empty());

        // A good request: defaults filled, the image by label, several ports in order.
        let body = json!({
            "eggId": egg_id, "serverId": "from-egg", "image": "Java 17",
            "environment": {"MAX_PLAYERS": 64},
            "ports": {"25565": 30101, "25575": 30102, "19132/udp": 30103},
            "limits": {"memory": "1g", "cpu": "1", "disk": "2g"}
        });
        let (st, v) = p.admin("POST", "/api/servers", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["server"]["eggId"], egg_id.as_str());
        let cmd = seen.seen.lock()[0].clone();
        assert_eq!(cmd["action"], "create_server");
        let egg = &cmd["payload"]["eggConfig"];
        assert_eq!(egg["name"], "Test Paper");
        assert_eq!(egg["image"], "ghcr.io/example/yolks:java_17");
        assert_eq!(egg["environment"]["MAX_PLAYERS"], "64");
        assert_eq!(egg["environment"]["SERVER_JARFILE"], "server.jar");
        assert_eq!(egg["environment"]["GAMEMODE"], "survival");
        let ports: Vec<&String> = egg["ports"].as_object().unwrap().keys().collect();
        assert_eq!(
            ports,
            ["25565", "25575", "19132/udp"],
            "the first port stays first"
        );
        assert_eq!(egg["stop"]["command"], "stop");
        assert_eq!(egg["done"][0], ")! For help, type ");
        assert_eq!(egg["install"]["image"], "ghcr.io/example/installers:alpine");
        assert_eq!(egg["configFiles"][0]["edits"][1]["match"], "server-port");
        assert!(
            egg["startup"]
                .as_str()
                .unwrap()
                .contains("{{SERVER_JARFILE}}")
        );

        // The example egg creates with its own ports and limits; reinstall is relayed.
        let body = json!({"eggId": "egg-fakegame", "serverId": "example-1"});
        let (st, v) = p.admin("POST", "/api/servers", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        let cmd = seen.seen.lock()[1].clone();
        assert_eq!(cmd["payload"]["eggConfig"]["query"]["type"], "minecraft");
        assert_eq!(cmd["payload"]["eggConfig"]["limits"]["memory"], "256m");
        let (st, v) = p
            .admin("POST", "/api/servers/from-egg/reinstall", None)
            .await;
        assert_eq!(st, 200, "{v}");
        let cmd = seen.seen.lock()[2].clone();
        assert_eq!(cmd["action"], "reinstall_server");
        assert_eq!(cmd["serverId"], "from-egg");
        drop(agent);
    });
}
