//! Scenario 3: `list_files` and `get_file` on a file the server wrote, `write_file` then read
//! back, and path escapes refused (`..`, absolute paths outside `/server`, and a symlink the
//! server planted that points out of its volume).

use e2e::egg::FILE_CONTENT;
use e2e::events::{is_log, is_status};
use e2e::stack::{SLOW, Stack};
use serde_json::json;

#[test]
fn files_list_get_write_and_escapes_refused() {
    let Some(mut s) = Stack::start("files") else {
        return;
    };
    let a = s.add_agent("a");
    let agent_id = s.agents[a].id.clone();
    s.subscribe();
    let api = &s.panel.api;
    let ev = s.events();

    let id = s.server_id("files");
    let (egg, _) = e2e::egg::fakegame("--write-file hello.txt --symlink etc=/etc --symlink up=..");
    api.post(
        "/api/servers",
        &json!({"agentId": agent_id, "serverId": id, "eggConfig": egg}),
    )
    .ok("create");
    let mark = ev.mark();
    api.power(&id, &json!({"action": "start"}));
    ev.wait_after(mark, "running", SLOW, |v| is_status(v, &id, "running"));
    ev.wait_after(mark, "file written", SLOW, |v| {
        is_log(v, &id, "Linked up -> ..")
    });

    // list_files
    let list = api
        .get(&format!("/api/servers/{id}/files?path=/server"))
        .ok("list /server");
    let entries = list["data"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {list}"));
    let hello = entries
        .iter()
        .find(|e| e["name"] == "hello.txt")
        .unwrap_or_else(|| panic!("hello.txt not listed: {list}"));
    assert_eq!(hello["type"], "file", "{hello}");
    assert_eq!(hello["size"], FILE_CONTENT.len(), "{hello}");
    let etc = entries
        .iter()
        .find(|e| e["name"] == "etc")
        .unwrap_or_else(|| panic!("symlink not listed: {list}"));
    assert_eq!(etc["type"], "symlink", "{etc}");

    // get_file
    let file = api
        .get(&format!(
            "/api/servers/{id}/files/content?path=/server/hello.txt"
        ))
        .ok("get hello.txt");
    assert_eq!(file["data"]["content"], FILE_CONTENT, "{file}");
    assert_eq!(file["data"]["encoding"], "utf8", "{file}");
    assert_eq!(file["data"]["size"], FILE_CONTENT.len(), "{file}");

    // Missing file: a clean error, not a crash.
    let missing = api.get(&format!(
        "/api/servers/{id}/files/content?path=/server/nope.txt"
    ));
    assert_eq!(missing.body["success"], false, "{missing:?}");
    assert_eq!(missing.code(), "FILE_NOT_FOUND", "{missing:?}");

    // Escapes refused by the path rules.
    for path in [
        "/server/../etc/passwd",
        "/etc/passwd",
        "../etc/passwd",
        "/server/a/../../x",
    ] {
        let r = api.get(&format!("/api/servers/{id}/files/content?path={path}"));
        assert_eq!(r.code(), "INVALID_PATH", "{path}: {r:?}");
        assert!(r.status == 400 || r.status == 502, "{path}: {r:?}");
    }
    // Escapes through symlinks the server planted: `etc` → /etc, `up` → `..` (on the host,
    // the volumes dir, so `up/<id>/hello.txt` is this server's own file reached from
    // outside its root). Never served; INVALID_PATH, or FILE_NOT_FOUND when the agent
    // resolves inside the root.
    let sneaky = [
        "/server/etc/passwd".to_owned(),
        "/server/etc".to_owned(),
        format!("/server/up/{id}/hello.txt"),
    ];
    for path in &sneaky {
        let r = api.get(&format!("/api/servers/{id}/files/content?path={path}"));
        assert_eq!(r.body["success"], false, "{path} was served: {r:?}");
        assert!(
            matches!(r.code(), "INVALID_PATH" | "FILE_NOT_FOUND"),
            "{path}: {r:?}"
        );
        let text = r.body.to_string();
        assert!(
            !text.contains("root:x:0:0") && !text.contains("line two"),
            "{path} leaked: {text}"
        );
    }
    for path in ["/server/etc", "/server/up"] {
        let r = api.get(&format!("/api/servers/{id}/files?path={path}"));
        assert_eq!(r.body["success"], false, "listing {path} succeeded: {r:?}");
        assert!(
            matches!(r.code(), "INVALID_PATH" | "FILE_NOT_FOUND"),
            "{path}: {r:?}"
        );
    }
    // write_file, then read back through the API (and list shows it).
    let content = "written by e2e\nsecond line\n";
    api.call(
        "PUT",
        &format!("/api/servers/{id}/files/content?path=/server/conf/e2e.txt"),
        Some(&json!({"content": content})),
    )
    .ok("write_file");
    let back = api
        .get(&format!(
            "/api/servers/{id}/files/content?path=/server/conf/e2e.txt"
        ))
        .ok("read back");
    assert_eq!(back["data"]["content"], content, "{back}");
    let list = api
        .get(&format!("/api/servers/{id}/files?path=/server/conf"))
        .ok("list conf");
    assert!(
        list["data"]["entries"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["name"] == "e2e.txt")),
        "{list}"
    );

    let w = api.call(
        "PUT",
        &format!("/api/servers/{id}/files/content?path=/server/etc/e2e-evil"),
        Some(&json!({"content": "x"})),
    );
    assert_eq!(
        w.body["success"], false,
        "write through a symlink succeeded: {w:?}"
    );
    assert!(
        !std::path::Path::new("/etc/e2e-evil").exists(),
        "wrote to the host's /etc"
    );

    api.delete(&format!("/api/servers/{id}?purge=true"))
        .ok("delete");
}
