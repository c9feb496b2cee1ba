//! Scenario: the community's egg formats, unchanged, on the real binaries and Docker. A
//! Pterodactyl `PTDL_v2` JSON export and a Pelican `PLCN_v3` YAML export of the fakegame
//! (`tests/fakegame/eggs/`, local images only: `ctrl-fakegame` and the busybox
//! `ctrl-installer`) are imported as they are; servers created from them install (the
//! script runs unprivileged, writes into the volume, its log streams), get their config
//! file edited with the allocated port, go `starting` → `running` on the done line, and
//! stop on the egg's stop (a console command, `^C`). Variables are checked against their
//! rules with messages naming them.

use e2e::events::{Events, is_log, is_status, kind, server_of};
use e2e::stack::{SLOW, Stack};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = e2e::repo_root().join("tests/fakegame/eggs").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `POST /api/eggs` with the file's bytes as they are; the new egg's id.
fn import(api: &e2e::panel::Api, name: &str) -> String {
    let (status, body) = smol::block_on(api.rest.request(
        "POST",
        "/api/eggs",
        Some(&api.token),
        Some(&fixture(name)),
    ))
    .expect("POST /api/eggs");
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "import {name}: {v}");
    assert_eq!(v["warnings"], json!([]), "{v}");
    v["egg"]["id"].as_str().expect("egg id").to_owned()
}

fn is_install_log(v: &Value, server: &str, needle: &str) -> bool {
    kind(v) == "install_log"
        && server_of(v) == server
        && v["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle))
}

/// Install, then start: `starting`, the done line, `running` in that order.
fn install_and_start(api: &e2e::panel::Api, ev: &Events, id: &str, mark: usize) {
    ev.wait_after(mark, "the install's output", SLOW, |v| {
        is_install_log(v, id, "Installing as 1000:1000")
    });
    let (_, done) = ev.wait_after(mark, "installed", SLOW, |v| is_status(v, id, "created"));
    assert_eq!(done["data"]["previousStatus"], "installing", "{done}");
    let mark = ev.mark();
    api.power(id, &json!({"action": "start"}));
    let (i_starting, _) = ev.wait_after(mark, "starting", SLOW, |v| is_status(v, id, "starting"));
    let (i_line, _) = ev.wait_after(mark, "the done line", SLOW, |v| {
        is_log(v, id, "Server started on port")
    });
    let (i_running, running) =
        ev.wait_after(mark, "running", SLOW, |v| is_status(v, id, "running"));
    assert!(
        i_starting < i_line && i_line < i_running,
        "starting #{i_starting}, done line #{i_line}, running #{i_running}"
    );
    assert_eq!(running["data"]["previousStatus"], "starting");
}

fn file(api: &e2e::panel::Api, id: &str, path: &str) -> String {
    let v = api
        .get(&format!("/api/servers/{id}/files/content?path={path}"))
        .ok("read a file");
    v["data"]["content"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn pterodactyl_and_pelican_eggs_run_unchanged() {
    let Some(mut s) = Stack::start("eggs") else {
        return;
    };
    e2e::ensure_installer_image();
    s.add_agent("a");
    s.subscribe();
    let api = &s.panel.api;
    let ev = s.events();

    // --- Pterodactyl PTDL_v2 (JSON) ----------------------------------------------------
    let ptdl = import(api, "fakegame-ptdl_v2.json");
    let id = s.server_id("ptdl");
    let port = e2e::free_port();
    let body = |env: Value| {
        json!({"eggId": ptdl, "serverId": id, "ports": {"25565": port}, "environment": env,
               "limits": {"memory": "128m", "cpu": "0.25", "disk": "1g"}})
    };
    let msg = api
        .post("/api/servers", &body(json!({"MAX_PLAYERS": "500"})))
        .err("MAX_PLAYERS over its rule", 400, "CONFIG_INVALID");
    assert!(msg.starts_with("environment.MAX_PLAYERS:"), "{msg}");
    let msg = api
        .post("/api/servers", &body(json!({"MOTD": "x".repeat(65)})))
        .err("MOTD over its rule", 400, "CONFIG_INVALID");
    assert!(msg.starts_with("environment.MOTD:"), "{msg}");
    let mark = ev.mark();
    let created = api
        .post("/api/servers", &body(json!({"MAX_PLAYERS": 12})))
        .ok("create from the PTDL egg");
    assert_eq!(created["data"]["status"], "installing", "{created}");
    install_and_start(api, ev, &id, mark);
    assert_eq!(file(api, &id, "/server/installed.txt"), "installed\n");
    assert_eq!(
        file(api, &id, "/server/server.properties"),
        "motd=hello from an egg\nserver-port=25565\nmax-players=12\n"
    );
    // Its stop is the console command `stop`.
    let mark = ev.mark();
    api.power(&id, &json!({"action": "stop"}));
    ev.wait_after(mark, "the stop command's effect", SLOW, |v| {
        is_log(v, &id, "Stopping server")
    });
    let (_, stopped) = ev.wait_after(mark, "stopped", SLOW, |v| is_status(v, &id, "stopped"));
    assert_eq!(stopped["data"]["exitCode"], 0, "{stopped}");

    // --- Pelican PLCN_v3 (YAML) ---------------------------------------------------------
    let plcn = import(api, "fakegame-plcn_v3.yaml");
    let id = s.server_id("plcn");
    let mark = ev.mark();
    api.post(
        "/api/servers",
        &json!({"eggId": plcn, "serverId": id, "startup": "With players",
                "ports": {"25565": e2e::free_port()},
                "limits": {"memory": "128m", "cpu": "0.25", "disk": "1g"}}),
    )
    .ok("create from the PLCN egg");
    install_and_start(api, ev, &id, mark);
    assert_eq!(
        file(api, &id, "/server/config/game.yml"),
        "server:\n  port: 25565\n  players: 8\n"
    );
    assert_eq!(file(api, &id, "/server/port.txt"), "25565\n");
    // The startup chosen by name ("With players"), with the variable's default.
    let mark = ev.mark();
    api.post(
        &format!("/api/servers/{id}/command"),
        &json!({"command": "list"}),
    )
    .ok("console list");
    ev.wait_after(mark, "the player list", SLOW, |v| {
        is_log(v, &id, "There are 2 of a max of 8 players online")
    });
    // Its stop is `^C`: SIGINT.
    let mark = ev.mark();
    api.power(&id, &json!({"action": "stop"}));
    ev.wait_after(mark, "SIGINT", SLOW, |v| is_log(v, &id, "Received SIGINT"));
    ev.wait_after(mark, "stopped", SLOW, |v| is_status(v, &id, "stopped"));

    // A reinstall through the panel: the script again, the server stopped after it.
    let mark = ev.mark();
    api.post(&format!("/api/servers/{id}/reinstall"), &json!({}))
        .ok("reinstall");
    ev.wait_after(mark, "installing", SLOW, |v| {
        is_status(v, &id, "installing")
    });
    let (_, after) = ev.wait_after(mark, "reinstalled", SLOW, |v| is_status(v, &id, "stopped"));
    assert_eq!(after["data"]["previousStatus"], "installing", "{after}");
}
