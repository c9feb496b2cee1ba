//! Chaos on the agent's side, with the real servers layer on the real Docker Engine:
//!
//! - the Docker socket disappears (every connection cut, the path gone) and comes back:
//!   commands meanwhile answer a clear `DOCKER_ERROR`, and the agent recovers by itself —
//!   without a restart — including what happened to its containers while it was blind;
//! - the agent's data disk is full (a size-limited tmpfs as the data dir): writes and
//!   uploads answer `INSUFFICIENT_RESOURCES`, no file is left half written (the old content
//!   stays, no temp file remains), and the server keeps running.
//!
//! The `kill -9` of the agent itself (in the middle of a create and of an upload) runs the
//! real binaries: `tests/tests/chaos.rs`.

mod common;

use common::harness::*;
use e2e::TempDir;
use proto::ServerState;
use serde_json::json;
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A Unix socket at a path the test controls, forwarding every connection to the real
/// Docker socket. [`SocketProxy::down`] makes Docker vanish as a daemon restart (or a
/// socket proxy's crash) would: the path is removed and every open connection is cut.
struct SocketProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl SocketProxy {
    fn up(path: &Path) -> SocketProxy {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (halt, open) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => forward(client, &open),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        SocketProxy {
            path: path.to_path_buf(),
            stop,
            conns,
            accept: Some(accept),
        }
    }

    fn down(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        std::fs::remove_file(&self.path).unwrap();
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Pipes `client` to a new connection to the real socket, both ways.
fn forward(client: UnixStream, open: &Mutex<Vec<UnixStream>>) {
    client.set_nonblocking(false).unwrap();
    let docker = UnixStream::connect(SOCKET).unwrap();
    {
        let mut open = open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(docker.try_clone().unwrap());
    }
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    pipe(client.try_clone().unwrap(), docker.try_clone().unwrap());
    pipe(docker, client);
}

#[test]
fn the_docker_socket_vanishing_and_coming_back_needs_no_agent_restart() {
    let dir = TempDir::new("sockgone");
    let socket = dir.path().join("docker.sock");
    let proxy = SocketProxy::up(&socket);
    let Some(mut h) = harness("sockgone", |c| c.docker_socket = socket.clone()) else {
        return;
    };
    h.create("sg-1", egg(e2e::free_port(), STARTUP));
    h.create("sg-2", egg(e2e::free_port(), STARTUP));
    h.ok("sg-1", "start_server", None);
    h.wait_status("sg-1", ServerState::Running);

    proxy.down();
    // Every Docker-bound command fails clearly, naming the socket; nothing hangs or panics.
    for (sid, action) in [
        (Some("sg-2"), "start_server"),
        (Some("sg-1"), "stop_server"),
        (None, "create_server"),
    ] {
        let payload = (action == "create_server")
            .then(|| json!({"serverId": "sg-3", "eggConfig": egg(e2e::free_port(), STARTUP)}));
        let (code, msg) = h.err(sid, action, payload);
        assert_eq!(code, "DOCKER_ERROR", "{action}: {msg}");
        assert!(msg.contains("docker.sock"), "{action}: {msg}");
    }
    // Files do not need Docker.
    h.ok(
        "sg-1",
        "write_file",
        Some(json!({"path": "/server/during.txt", "content": "ok"})),
    );
    // While the agent is blind, its running server dies (Docker itself stops it).
    e2e::docker(&["kill", "ctrl-sg-1"]);
    h.drain();
    let seen = h.events.len();

    let _proxy = SocketProxy::up(&socket);
    // The same agent reconnects, learns what it missed, and serves commands again.
    let crashed = h.wait_event("sg-1 reconciled after the outage", |e| {
        matches!(&e.kind, proto::EventKind::ServerStatusChanged(s)
            if s.server_id == "sg-1" && s.current_status == ServerState::Crashed)
    });
    assert!(
        h.events[seen..].iter().any(|e| e == &crashed),
        "the exit was reported before the outage ended"
    );
    // Recovery goes through the agent's reconnect backoff: retried until it answers.
    e2e::eventually("start_server after recovery", WAIT, || {
        h.send(Some("sg-2"), "start_server", None)
            .success
            .then_some(())
    });
    h.wait_status("sg-2", ServerState::Running);
    // The event stream is followed again: a stop is seen as it happens.
    h.ok("sg-2", "stop_server", None);
    h.wait_status("sg-2", ServerState::Stopped);
    h.ok("sg-1", "start_server", None);
    h.wait_log("sg-1", "Server started on port");
}

/// A tmpfs of `size` mounted at `dir` (unmounted on drop). Mounting needs root, which the
/// Docker tests have here and on CI; elsewhere the test says so and skips.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "mounting a tmpfs failed on CI: {why}"
            );
            eprintln!("skipping: cannot mount a tmpfs ({why})");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

/// Fills the filesystem of `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_full_data_disk_refuses_writes_cleanly_and_the_server_keeps_running() {
    let mount = TempDir::new("diskfull");
    let Some(_tmpfs) = Tmpfs::mount(mount.path(), "48m") else {
        return;
    };
    let data = mount.path().to_path_buf();
    let Some(mut h) = harness("diskfull", |c| c.data_dir = data.clone()) else {
        return;
    };
    let mut e = egg(e2e::free_port(), STARTUP);
    e["limits"]["disk"] = json!("16m");
    h.create("df-1", e);
    h.ok("df-1", "start_server", None);
    h.wait_log("df-1", "Server started on port");
    let old = "old content\n";
    h.ok(
        "df-1",
        "write_file",
        Some(json!({"path": "/server/config.txt", "content": old})),
    );
    let volume = data.join("volumes").join("df-1");
    let before = names(&volume);

    // Another tenant (or anything else on the node) fills the disk.
    fill(&data);

    let big = "y".repeat(256 * 1024);
    let (code, msg) = h.err(
        Some("df-1"),
        "write_file",
        Some(json!({"path": "/server/config.txt", "content": big})),
    );
    assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
    assert!(msg.contains("config.txt"), "{msg}");
    let (code, msg) = h.err(
        Some("df-1"),
        "write_file",
        Some(json!({"path": "/server/new.txt", "content": big})),
    );
    assert_eq!(code, "INSUFFICIENT_RESOURCES", "{msg}");
    use base64::Engine as _;
    let piece = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 256 * 1024]);
    let mut upload_failed = None;
    for i in 0..8u64 {
        let r = h.send(
            Some("df-1"),
            "write_file_chunk",
            Some(json!({"path": "/server/upload.bin", "uploadId": "u1",
                "offset": i * 256 * 1024, "content": piece, "final": i == 7})),
        );
        if let Some(e) = r.error {
            upload_failed = Some(e);
            break;
        }
    }
    let e = upload_failed.expect("an upload onto a full disk failed");
    assert_eq!(e.code, "INSUFFICIENT_RESOURCES", "{}", e.message);

    // Nothing half written: the old file is whole, no new or temp file is left behind (the
    // uploads' staging directory may stay, empty).
    assert_eq!(
        std::fs::read_to_string(volume.join("config.txt")).unwrap(),
        old
    );
    assert_eq!(names(&volume), before);
    let status = h.ok("df-1", "get_status", None);
    assert_eq!(status["status"], "running", "{status}");
    h.ok(
        "df-1",
        "send_command",
        Some(json!({"command": "say still here"})),
    );
    h.wait_log("df-1", "still here");

    // Space again: the same write goes through.
    std::fs::remove_file(data.join("filler")).unwrap();
    h.ok(
        "df-1",
        "write_file",
        Some(json!({"path": "/server/config.txt", "content": big})),
    );
    h.ok("df-1", "stop_server", None);
    h.wait_status("df-1", ServerState::Stopped);
}

/// Everything in `dir`, recursively (inside hidden staging directories too), sorted; the
/// staging directory itself is not listed.
fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if name != agent::files::STAGING_DIR {
                out.push(name);
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
