//! Scenario 6: the spec's `create_server` example verbatim. Its image
//! (`ghcr.io/pterodactyl/yolks:java_17`) cannot be pulled here, so the answer must be a clean
//! `DOCKER_ERROR` naming the image — and nothing half-created: no server in the panel, no
//! container, no volume.

use e2e::stack::Stack;
use serde_json::{Value, json};

/// The `payload` of the spec's "Server Creation" example, byte for byte.
const SPEC_PAYLOAD: &str = r#"{
    "serverId": "server_123",
    "eggConfig": {
      "name": "minecraft-java",
      "image": "ghcr.io/pterodactyl/yolks:java_17",
      "ports": {
        "25565": 25565
      },
      "environment": {
        "SERVER_JARFILE": "server.jar",
        "MINECRAFT_VERSION": "1.20.4"
      },
      "limits": {
        "memory": "2048m",
        "cpu": "2",
        "disk": "5g"
      },
      "startup": "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}"
    }
  }"#;

#[test]
fn spec_create_server_example_fails_cleanly_with_docker_error() {
    let image = "ghcr.io/pterodactyl/yolks:java_17";
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(mut s) = Stack::start("specexample") else {
        return;
    };
    if present {
        eprintln!("SKIP: {image} is present locally, so the pull failure cannot be tested");
        return;
    }
    let a = s.add_agent("a");
    let agent = s.agents[a].id.clone();
    let api = &s.panel.api;

    let mut body: Value = serde_json::from_str(SPEC_PAYLOAD).expect("spec payload");
    body["agentId"] = json!(agent);
    let r = api.post("/api/servers", &body);
    let message = r.clone().err("spec create_server", 502, "DOCKER_ERROR");
    assert!(
        message.contains(image),
        "message does not name the image: {message:?}"
    );

    // Nothing half-created.
    assert!(
        !api.server_ids().contains(&"server_123".to_owned()),
        "server kept by the panel"
    );
    let st = api.get("/api/servers/server_123");
    assert_eq!(st.body["success"], false, "{st:?}");
    assert!(
        e2e::containers_with_label(&format!("ctrl.agent={agent}")).is_empty(),
        "a container was left behind"
    );
    let volume = s.agents[a].data_dir.join("volumes/server_123");
    assert!(!volume.exists(), "volume {} left behind", volume.display());

    // The agent is still healthy and the same id can be used for a working server.
    s.agents[a].wait_status(&s.panel, "online");
    let (egg, _) = e2e::egg::fakegame("");
    let api = &s.panel.api;
    api.post(
        "/api/servers",
        &json!({"agentId": agent, "serverId": "server_123", "eggConfig": egg}),
    )
    .ok("create server_123 with the fakegame image");
    api.delete("/api/servers/server_123?purge=true")
        .ok("delete");
}
