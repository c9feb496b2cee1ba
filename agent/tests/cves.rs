//! Wings' published vulnerability classes as regression tests, one test per advisory, each
//! tried on this agent's servers layer against the real Docker Engine (the harness of
//! `common::harness`, commands decoded exactly as the link delivers them). agent/README.md,
//! "CVE regression tests", maps each advisory to its test.
//!
//! The same classes are covered more broadly elsewhere: `servers.rs`
//! (`paths_cannot_escape_the_volume`, the hardened container), `file_ops.rs` (every file
//! operation with links planted at either end, both resolvers), `eggs.rs`
//! (`hostile_eggs_are_refused_or_neutralised`), `hardening.rs` (node-wide pids caps). The
//! tests here are the advisories' own moves, named so a regression names the advisory.

mod common;

use base64::Engine as _;
use common::harness::*;
use proto::ServerState;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SECRET: &str = "the node's secret\n";

/// A created server whose volume holds the links a hostile tenant plants, and a directory
/// of the node beside the volumes (`DATA/outside`, a root-owned `0600` secret in it) that
/// nothing may read, change, chmod or chown.
struct Planted {
    h: Harness,
    sid: String,
    outside: PathBuf,
}

fn planted(tag: &str) -> Option<Planted> {
    let h = harness(tag, |c| {
        // The races below send hundreds of commands; the limiter is not under test.
        c.policy.rate.per_server = 1e6;
        c.policy.rate.per_server_burst = 1e6;
        c.policy.rate.total = 1e6;
        c.policy.rate.total_burst = 1e6;
    })?;
    let sid = format!("{tag}-1");
    h.create(&sid, egg(e2e::free_port(), STARTUP));
    let outside = h.data.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vol = h.volume(&sid);
    symlink(&secret, vol.join("file-link")).unwrap();
    symlink(&outside, vol.join("dir-link")).unwrap();
    symlink("../../outside", vol.join("rel-link")).unwrap();
    std::fs::write(vol.join("mine.txt"), "mine\n").unwrap();
    Some(Planted { h, sid, outside })
}

/// Every way into `outside` from the volume, for a file named `name` there.
fn escapes(name: &str) -> [String; 3] {
    [
        format!("/server/dir-link/{name}"),
        format!("/server/rel-link/{name}"),
        format!("/server/../outside/{name}"),
    ]
}

impl Planted {
    fn code(&self, action: &str, payload: Value) -> String {
        let r = self.h.send(Some(&self.sid), action, Some(payload.clone()));
        let text = format!("{:?}", r.data);
        assert!(
            !text.contains("node's secret"),
            "{action} {payload}: {text}"
        );
        match r.error {
            Some(e) => e.code.into_owned(),
            None => panic!("{action} {payload} succeeded: {text}"),
        }
    }

    fn refused(&self, action: &str, payload: Value) {
        assert_eq!(
            self.code(action, payload.clone()),
            "INVALID_PATH",
            "{action} {payload}"
        );
    }

    /// The secret unchanged in content, mode and owner, and nothing added beside it.
    fn outside_intact(&self) {
        let secret = self.outside.join("secret");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), SECRET);
        let meta = std::fs::symlink_metadata(&secret).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
        let names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was created outside the volume"
        );
        let dir = std::fs::metadata(&self.outside).unwrap();
        assert_eq!(
            (dir.uid(), dir.gid()),
            (0, 0),
            "the outside dir was chowned"
        );
    }
}

#[test]
fn cve_2023_25152_symlink_escape_on_read() {
    let Some(p) = planted("cve-read") else {
        return;
    };
    p.refused("get_file", json!({"path": "/server/file-link"}));
    for path in escapes("secret") {
        p.refused("get_file", json!({"path": path}));
    }
    for path in ["/server/file-link".to_owned(), escapes("secret")[0].clone()] {
        p.refused(
            "read_file_chunk",
            json!({"path": path, "offset": 0, "length": 4096}),
        );
    }
    p.outside_intact();
}

#[test]
fn cve_2023_25152_symlink_escape_on_write() {
    let Some(p) = planted("cve-write") else {
        return;
    };
    p.refused(
        "write_file",
        json!({"path": "/server/file-link", "content": "owned"}),
    );
    for path in escapes("new.txt").into_iter().chain(escapes("secret")) {
        p.refused("write_file", json!({"path": path, "content": "owned"}));
        let chunk = json!({"path": path, "uploadId": "u1", "offset": 0,
            "content": base64::engine::general_purpose::STANDARD.encode("owned"), "final": true});
        assert_ne!(p.code("write_file_chunk", chunk), "", "{path}");
        p.refused("create_directory", json!({"path": path}));
        p.refused("delete_file", json!({"path": path}));
    }
    p.outside_intact();
    // The link is still a link: nothing was written through it, and it was not replaced.
    assert!(p.h.volume(&p.sid).join("file-link").is_symlink());
}

#[test]
fn cve_2023_25152_symlink_escape_on_list() {
    let Some(p) = planted("cve-list") else {
        return;
    };
    for path in [
        "/server/dir-link",
        "/server/rel-link",
        "/server/..",
        "/server/../outside",
    ] {
        p.refused("list_files", json!({"path": path}));
    }
    // The volume's own listing shows the links, never what they point at.
    let listing =
        p.h.ok(&p.sid, "list_files", Some(json!({"path": "/server"})));
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"dir-link") && !names.contains(&"secret"),
        "{names:?}"
    );
    p.outside_intact();
}

#[test]
fn cve_2023_25152_symlink_escape_on_rename() {
    let Some(p) = planted("cve-rename") else {
        return;
    };
    for path in escapes("secret") {
        // Out of `outside` into the volume (where the server could read it) ...
        p.refused("rename_file", json!({"from": path, "to": "/server/stolen"}));
    }
    for path in escapes("planted") {
        // ... and from the volume into `outside`.
        p.refused(
            "rename_file",
            json!({"from": "/server/mine.txt", "to": path}),
        );
    }
    // A link moves as a link, and stays a dead end.
    p.h.ok(
        &p.sid,
        "rename_file",
        Some(json!({"from": "/server/dir-link", "to": "/server/moved"})),
    );
    assert!(p.h.volume(&p.sid).join("moved").is_symlink());
    p.refused("get_file", json!({"path": "/server/moved/secret"}));
    assert!(!p.h.volume(&p.sid).join("stolen").exists());
    p.outside_intact();
}

/// Wings changed the mode and owner of files through links the server planted. This agent
/// sets a mode or owner only on descriptors of files it created itself, and gives a server
/// its volume directory with `lchown` after checking it is a directory.
#[test]
fn ghsa_rhq6_9rgh_v45c_symlink_escape_on_chmod_and_chown() {
    let Some(p) = planted("cve-chmod") else {
        return;
    };
    // Writes over a link to a root-owned 0600 file would have chmodded/chowned it.
    p.refused(
        "write_file",
        json!({"path": "/server/file-link", "content": "x"}),
    );
    p.refused(
        "write_file",
        json!({"path": "/server/dir-link/secret", "content": "x"}),
    );
    p.outside_intact();

    // A volume path that is a link out when the server is created (left there by a tenant
    // of a deleted server, or a race): refused, and the target is not given to the server.
    let sid = "cve-chmod-2";
    std::fs::create_dir_all(p.h.data.path().join("volumes")).unwrap();
    symlink(&p.outside, p.h.volume(sid)).unwrap();
    let (code, msg) = p.h.create_err(sid, egg(e2e::free_port(), STARTUP));
    assert_eq!(code, "INTERNAL_ERROR", "{msg}");
    assert!(msg.contains("not a directory"), "{msg}");
    assert!(docker_inspect(&format!("ctrl-{sid}")).is_null());
    p.outside_intact();
}

/// Exchanges `a` and `b` (one a directory, the other a link out of the volume) until
/// `stop`, atomically (`renameat2(RENAME_EXCHANGE)`), as fast as it can.
fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &a,
                nix::fcntl::AT_FDCWD,
                &b,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .unwrap();
            swaps += 1;
        }
        swaps
    })
}

/// Runs `each(i)` `n` times while `swap` and `spare` trade places; returns how many of the
/// commands succeeded. The caller checks nothing landed outside.
fn race(p: &Planted, n: usize, mut each: impl FnMut(usize) -> bool) -> usize {
    let vol = p.h.volume(&p.sid);
    std::fs::create_dir(vol.join("swap")).unwrap();
    symlink(&p.outside, vol.join("spare")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = swapper(vol.join("swap"), vol.join("spare"), stop.clone());
    let ok = (0..n).filter(|&i| each(i)).count();
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().unwrap();
    assert!(swaps > 0, "the swapper never ran");
    eprintln!("{n} commands during {swaps} swaps: {ok} accepted");
    ok
}

/// The directory found real at the check is a link at the write: the write must not follow.
#[test]
fn cve_2023_25168_toctou_directory_swapped_for_a_symlink_during_a_write() {
    let Some(p) = planted("cve-toctou") else {
        return;
    };
    let written = race(&p, 400, |i| {
        let path = format!("/server/swap/f-{i}.txt");
        let r = p.h.send(
            Some(&p.sid),
            "write_file",
            Some(json!({"path": path, "content": "x"})),
        );
        match r.error {
            None => true,
            Some(e) => {
                assert_eq!(e.code, "INVALID_PATH", "{path}: {}", e.message);
                false
            }
        }
    });
    p.outside_intact();
    // What was accepted landed in the real directory, whatever its name is now.
    let vol = p.h.volume(&p.sid);
    let real = ["swap", "spare"]
        .iter()
        .map(|n| vol.join(n))
        .find(|d| !d.is_symlink())
        .unwrap();
    assert_eq!(std::fs::read_dir(real).unwrap().count(), written);
}

/// The same race on the other ways to create or move files: chunked uploads, directories,
/// renames (Wings' fix for the first advisory left these open).
#[test]
fn cve_2024_27102_toctou_swap_during_uploads_mkdir_and_rename() {
    let Some(p) = planted("cve-toctou2") else {
        return;
    };
    let vol = p.h.volume(&p.sid);
    for i in 0..150 {
        std::fs::write(vol.join(format!("src-{i}")), "moved").unwrap();
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode("uploaded");
    race(&p, 450, |i| {
        let (action, payload) = match i % 3 {
            0 => (
                "write_file_chunk",
                json!({"path": format!("/server/swap/up-{i}"), "uploadId": format!("u{i}"),
                    "offset": 0, "content": b64, "final": true}),
            ),
            1 => (
                "create_directory",
                json!({"path": format!("/server/swap/d-{i}/e")}),
            ),
            _ => (
                "rename_file",
                json!({"from": format!("/server/src-{}", i / 3), "to": format!("/server/swap/r-{i}")}),
            ),
        };
        p.h.send(Some(&p.sid), action, Some(payload)).success
    });
    p.outside_intact();
}

/// Wings ran install containers privileged. No container this agent creates is privileged
/// or gains a capability, whatever the egg says.
#[test]
fn cve_2023_32080_no_privileged_or_capability_adding_container() {
    let Some(h) = harness("cve-priv", |_| {}) else {
        return;
    };
    let mut e = egg(e2e::free_port(), STARTUP);
    for (k, v) in [
        ("privileged", json!(true)),
        ("capAdd", json!(["SYS_ADMIN", "ALL"])),
        ("CapAdd", json!(["SYS_ADMIN"])),
        ("devices", json!(["/dev/kmsg"])),
        (
            "securityOpt",
            json!(["seccomp=unconfined", "apparmor=unconfined"]),
        ),
        ("HostConfig", json!({"Privileged": true, "CapAdd": ["ALL"]})),
    ] {
        e[k] = v;
    }
    h.create("priv-1", e);
    let c = docker_inspect("ctrl-priv-1");
    let hc = &c["HostConfig"];
    assert_eq!(hc["Privileged"], false, "{hc}");
    assert!(hc["CapAdd"].as_array().is_none_or(Vec::is_empty), "{hc}");
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert!(hc["Devices"].as_array().is_none_or(Vec::is_empty), "{hc}");

    // The install container: asking for privileges does not even decode.
    let mut e = egg(e2e::free_port(), STARTUP);
    e["install"] = json!({"image": e2e::INSTALLER_IMAGE, "entrypoint": "ash",
        "script": "id", "privileged": true});
    let frame = json!({"id": "m1", "type": "command", "timestamp": "t",
        "action": "create_server", "payload": {"serverId": "priv-2", "eggConfig": e}});
    let err = proto::decode(frame.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("privileged"), "{err}");
}

/// A server without a pids limit could fork-bomb the node. Every container gets the node's
/// per-server limit, an egg cannot lift it, and a fork bomb inside stops at it.
#[test]
fn cve_2021_32699_no_container_without_a_pids_limit() {
    let Some(mut h) = harness("cve-pids", |c| c.policy.pids_per_server = 24) else {
        return;
    };
    e2e::ensure_installer_image();
    // Busybox's shell as the server: 100 background sleeps, then a count of what started.
    let startup = "i=0; ok=0; while [ $i -lt 100 ]; do sleep 30 & [ $? -eq 0 ] && ok=$((ok+1)); \
                   i=$((i+1)); done; echo forked-done; sleep 30";
    let mut e = egg(e2e::free_port(), startup);
    e["image"] = json!(e2e::INSTALLER_IMAGE);
    e["pidsLimit"] = json!(-1);
    e["limits"]["pids"] = json!(0);
    h.create("pids-1", e);
    assert_eq!(docker_inspect("ctrl-pids-1")["HostConfig"]["PidsLimit"], 24);
    h.ok("pids-1", "start_server", None);
    // The kernel refuses the forks past the limit; the shell says so.
    h.wait_log("pids-1", "can't fork");
    // Busybox's shell gives up at the first refused fork: the server ends, the node is fine.
    let ended = h.wait_status("pids-1", ServerState::Crashed);
    assert_ne!(ended.exit_code, Some(0), "{ended:?}");
    let forked = h.events.iter().any(|e| {
        matches!(&e.kind, proto::EventKind::ServerLog(l)
            if l.server_id == "pids-1" && l.message.contains("forked-done"))
    });
    assert!(!forked, "all 100 processes were started");
}

/// Wings expanded `{{config.*}}` and environment placeholders from its own process in egg
/// templates. Here the startup line resolves only the egg's variables and the three
/// `SERVER_*`; config-file placeholders only an explicit context; the agent's environment
/// (here `CARGO_MANIFEST_DIR`, set for this test process by cargo) never reaches a server.
#[test]
fn cve_2026_52855_no_daemon_secrets_through_egg_templates() {
    let Some(mut h) = harness("cve-tmpl", |_| {}) else {
        return;
    };
    let host_value = env!("CARGO_MANIFEST_DIR");
    for name in [
        "CARGO_MANIFEST_DIR",
        "HOME",
        "PATH",
        "config.token",
        "env.HOME",
    ] {
        let startup = format!("fakegame --port {{{{SERVER_PORT}}}} --players {{{{{name}}}}}");
        let (code, msg) = h.create_err("tmpl-0", egg(e2e::free_port(), &startup));
        assert_eq!(code, "CONFIG_INVALID", "{name}: {msg}");
        assert!(!msg.contains(host_value), "{msg}");
    }
    assert!(docker_inspect("ctrl-tmpl-0").is_null());

    let sid = "tmpl-1";
    let mut e = egg(e2e::free_port(), STARTUP);
    e["configFiles"] = json!([{"path": "leak.yml", "parser": "yaml", "edits": [
        {"match": "a", "value": "{{env.CARGO_MANIFEST_DIR}}"},
        {"match": "b", "value": "{{config.token}}"},
        {"match": "c", "value": "{{config.docker.socket}}"},
        {"match": "d", "value": "{{server.build.env.HOME}}"},
        {"match": "e", "value": "{{env.MAX_PLAYERS}}"}]}]);
    h.create(sid, e);
    let c = docker_inspect(&format!("ctrl-{sid}"));
    assert!(
        !c["Config"].to_string().contains(host_value),
        "{}",
        c["Config"]
    );
    h.ok(sid, "start_server", None);
    h.wait_log(sid, "[agent] config file leak.yml: unknown placeholders");
    let leak = std::fs::read_to_string(h.volume(sid).join("leak.yml")).unwrap();
    assert_eq!(
        leak,
        "a: '{{env.CARGO_MANIFEST_DIR}}'\nb: '{{config.token}}'\nc: '{{config.docker.socket}}'\n\
         d: '{{server.build.env.HOME}}'\ne: '20'\n"
    );
    h.wait_status(sid, ServerState::Running);
}

/// Wings trusted a panel-supplied server identifier as a path component. Ids that are not
/// plain names are refused before anything touches the disk or Docker, and every file path
/// is confined to the volume.
#[test]
fn cve_2024_34066_panel_controlled_path_outside_the_data_dir() {
    let Some(h) = harness("cve-path", |_| {}) else {
        return;
    };
    let hostile = [
        "..",
        "../escape",
        "../../etc",
        "/etc",
        "a/b",
        ".",
        "x\u{0}y",
        "name with spaces",
        "%2e%2e",
    ];
    for sid in hostile {
        let (code, msg) = h.create_err(sid, egg(e2e::free_port(), STARTUP));
        assert!(
            code == "CONFIG_INVALID" || code == "INVALID_MESSAGE",
            "{sid:?}: {code} {msg}"
        );
        // Any other command naming it is refused the same way, or finds no such server.
        let r = h.send(Some(sid), "delete_server", Some(json!({"purge": true})));
        let e = r.error.expect("refused");
        assert!(
            ["CONFIG_INVALID", "INVALID_MESSAGE", "SERVER_NOT_FOUND"].contains(&e.code.as_ref()),
            "{sid:?}: {}",
            e.code
        );
    }
    // Where those ids would have led from `DATA/volumes`.
    let data = h.data.path();
    for landed in [
        data.join("escape"),
        data.join("../etc"),
        data.join("volumes/a"),
    ] {
        assert!(!landed.exists(), "{} was created", landed.display());
    }
    let volumes = h.data.path().join("volumes");
    assert!(listing(&volumes).is_empty(), "{:?}", listing(&volumes));
    assert!(e2e::containers_with_label(&format!("ctrl.agent={}", h.cfg.agent_id)).is_empty());

    // File paths of a real server: absolute, dotted and encoded ways out.
    h.create("path-1", egg(e2e::free_port(), STARTUP));
    for path in [
        "/etc/passwd",
        "/server/../../../etc/passwd",
        "/server/./../path-2",
        "server/../..",
        "/server/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = h.send(Some("path-1"), "get_file", Some(json!({"path": path})));
        let e = r.error.expect("refused");
        assert!(
            e.code == "INVALID_PATH" || e.code == "FILE_NOT_FOUND",
            "{path}: {}",
            e.code
        );
        assert!(
            !e.message.contains(h.data.path().to_str().unwrap()),
            "{}",
            e.message
        );
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
