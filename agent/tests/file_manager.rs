//! The file manager and console replay actions through the servers layer on the real Docker
//! Engine, decoded exactly as the link delivers them: a chunked upload and download that
//! round-trip, answers within the frame budget, rename/mkdir/delete with their codes,
//! payload validation, chunk rate limits apart from commands, uploads dropped with the
//! panel's connection, and `get_logs` replaying the console.

mod common;

use agent::link::Dispatch;
use base64::Engine as _;
use common::harness::*;
use proto::{Message, Response, ServerState};
use serde_json::{Value, json};
use std::time::Duration;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn frame_len(r: &Response<'static>) -> usize {
    proto::encode(&Message::Response(r.clone())).len()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

/// Downloads `path` with `read_file_chunk`, checking every answer's frame size.
fn download(h: &Harness, sid: &str, path: &str, max_frame: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r = h.send(
            Some(sid),
            "read_file_chunk",
            Some(json!({"path": path, "offset": out.len(), "length": 262_144})),
        );
        assert!(frame_len(&r) <= max_frame, "{} bytes", frame_len(&r));
        assert!(r.success, "{:?}", r.error);
        let d = r.data.unwrap();
        assert_eq!(d["offset"], out.len());
        assert_eq!(d["encoding"], "base64");
        out.extend(unb64(&d["content"]));
        if d["eof"] == true {
            assert_eq!(d["size"], out.len());
            return out;
        }
    }
}

#[test]
fn uploads_and_downloads_round_trip_in_chunks_within_the_frame() {
    let Some(h) = harness("fm-chunks", |_| {}) else {
        return;
    };
    let sid = "fm-1";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    let data = pattern(1_300_000);
    let mut written = 0u64;
    let pieces: Vec<&[u8]> = data.chunks(400_000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let d = h.ok(
            sid,
            "write_file_chunk",
            Some(json!({"path": "/server/up/world.bin", "uploadId": "up-1", "offset": written,
                        "content": b64(piece), "encoding": "base64", "final": i + 1 == pieces.len()})),
        );
        written = d["written"].as_u64().unwrap();
    }
    assert_eq!(written, data.len() as u64);
    assert_eq!(
        std::fs::read(h.volume(sid).join("up/world.bin")).unwrap(),
        data
    );
    let staging = std::fs::read_dir(h.volume(sid).join(agent::files::STAGING_DIR));
    assert!(
        staging.is_err() || staging.unwrap().next().is_none(),
        "no temp file left"
    );
    assert_eq!(download(&h, sid, "/server/up/world.bin", 1 << 20), data);

    // Out of order, unknown, or over the size of a chunk: refused.
    let (code, msg) = h.err(
        Some(sid),
        "write_file_chunk",
        Some(json!({"path": "/server/x", "uploadId": "up-2", "offset": 7, "content": ""})),
    );
    assert_eq!(code, "CONFLICT", "{msg}");
    let (code, _) = h.err(
        Some(sid),
        "write_file_chunk",
        Some(json!({"path": "/server/x", "uploadId": "../../etc", "offset": 0, "content": ""})),
    );
    assert_eq!(code, "INVALID_MESSAGE");
    let (code, _) = h.err(
        Some(sid),
        "write_file_chunk",
        Some(json!({"path": "/server/x", "uploadId": "u", "offset": 0, "content": b64(&pattern(600_000))})),
    );
    assert_eq!(code, "INVALID_MESSAGE");
    for length in [0, 262_145] {
        let (code, msg) = h.err(
            Some(sid),
            "read_file_chunk",
            Some(json!({"path": "/server/up/world.bin", "offset": 0, "length": length})),
        );
        assert_eq!(code, "INVALID_MESSAGE", "{msg}");
        assert!(msg.contains("length"), "{msg}");
    }
    let (code, _) = h.err(
        Some(sid),
        "read_file_chunk",
        Some(json!({"path": "/server/up", "offset": 0, "length": 10})),
    );
    assert_eq!(code, "INVALID_PATH");
    let (code, _) = h.err(
        Some("nope"),
        "read_file_chunk",
        Some(json!({"path": "/server/x", "offset": 0, "length": 10})),
    );
    assert_eq!(code, "SERVER_NOT_FOUND");

    // cancel_upload drops the temp file; the panel's connection dropping drops them all.
    h.ok(
        sid,
        "write_file_chunk",
        Some(json!({"path": "/server/c1", "uploadId": "c1", "offset": 0, "content": b64(b"abc")})),
    );
    let staged = |name: &str| {
        h.volume(sid)
            .join(agent::files::STAGING_DIR)
            .join(name)
            .exists()
    };
    assert!(staged("c1"));
    let d = h.ok(sid, "cancel_upload", Some(json!({"uploadId": "c1"})));
    assert_eq!(d["cancelled"], true);
    assert!(!staged("c1"));
    h.ok(
        sid,
        "write_file_chunk",
        Some(json!({"path": "/server/c2", "uploadId": "c2", "offset": 0, "content": b64(b"abc")})),
    );
    assert!(staged("c2"));
    h.servers().disconnected();
    e2e::eventually("upload dropped", Duration::from_secs(10), || {
        (!staged("c2")).then_some(())
    });
}

#[test]
fn a_small_frame_budget_shortens_chunks_instead_of_failing() {
    let Some(h) = harness("fm-frame", |c| c.policy.max_frame_bytes = 65_536) else {
        return;
    };
    let sid = "fm-2";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    let data = pattern(300_000);
    std::fs::write(h.volume(sid).join("f.bin"), &data).unwrap();
    assert_eq!(download(&h, sid, "/server/f.bin", 65_536), data);
}

#[test]
fn rename_mkdir_and_delete_answer_with_their_codes() {
    let Some(h) = harness("fm-tree", |_| {}) else {
        return;
    };
    let sid = "fm-3";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    let vol = h.volume(sid);
    let d = h.ok(
        sid,
        "create_directory",
        Some(json!({"path": "/server/a/b"})),
    );
    assert_eq!(d, json!({"path": "/server/a/b"}));
    assert!(vol.join("a/b").is_dir());
    let (code, _) = h.err(
        Some(sid),
        "create_directory",
        Some(json!({"path": "/server/a/b"})),
    );
    assert_eq!(code, "CONFLICT");
    std::fs::write(vol.join("a/b/f.txt"), b"hi").unwrap();
    let d = h.ok(
        sid,
        "rename_file",
        Some(json!({"from": "/server/a/b/f.txt", "to": "/server/a/g.txt"})),
    );
    assert_eq!(
        d,
        json!({"from": "/server/a/b/f.txt", "to": "/server/a/g.txt"})
    );
    assert_eq!(std::fs::read(vol.join("a/g.txt")).unwrap(), b"hi");
    for (payload, want) in [
        (
            json!({"from": "/server/a", "to": "/server/a/b/a"}),
            "INVALID_PATH",
        ),
        (
            json!({"from": "/server", "to": "/server/x"}),
            "INVALID_PATH",
        ),
        (
            json!({"from": "/server/a/g.txt", "to": "/etc/x"}),
            "INVALID_PATH",
        ),
        (
            json!({"from": "/server/zz", "to": "/server/yy"}),
            "FILE_NOT_FOUND",
        ),
        (
            json!({"from": "/server/a/g.txt", "to": "/server/a/b"}),
            "CONFLICT",
        ),
    ] {
        let (code, msg) = h.err(Some(sid), "rename_file", Some(payload.clone()));
        assert_eq!(code, want, "{payload}: {msg}");
    }
    let d = h.ok(sid, "delete_file", Some(json!({"path": "/server/a"})));
    assert_eq!(d, json!({"path": "/server/a"}));
    assert!(!vol.join("a").exists());
    let (code, _) = h.err(Some(sid), "delete_file", Some(json!({"path": "/server"})));
    assert_eq!(code, "INVALID_PATH");
    let (code, _) = h.err(Some(sid), "delete_file", Some(json!({"path": "/server/a"})));
    assert_eq!(code, "FILE_NOT_FOUND");
    assert!(vol.exists());
}

#[test]
fn chunks_are_limited_apart_from_commands() {
    let Some(h) = harness("fm-rate", |c| {
        c.policy.rate.per_server = 0.01;
        c.policy.rate.per_server_burst = 2.0;
        c.policy.rate.chunks_per_server = 0.01;
        c.policy.rate.chunks_per_server_burst = 5.0;
    }) else {
        return;
    };
    let sid = "fm-4";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    std::fs::write(h.volume(sid).join("f"), b"x").unwrap();
    // The create took one command token; one more, then RATE_LIMITED.
    h.ok(sid, "list_files", Some(json!({"path": "/server"})));
    let (code, _) = h.err(Some(sid), "list_files", Some(json!({"path": "/server"})));
    assert_eq!(code, "RATE_LIMITED");
    let read = json!({"path": "/server/f", "offset": 0, "length": 1});
    for _ in 0..5 {
        h.ok(sid, "read_file_chunk", Some(read.clone()));
    }
    let (code, _) = h.err(Some(sid), "read_file_chunk", Some(read));
    assert_eq!(code, "RATE_LIMITED");
}

#[test]
fn get_logs_replays_the_last_console_lines() {
    let Some(mut h) = harness("fm-logs", |_| {}) else {
        return;
    };
    let sid = "fm-5";
    h.create(sid, egg(e2e::free_port(), STARTUP));
    let empty = h.ok(sid, "get_logs", None);
    assert_eq!(empty, json!({"lines": []}));
    h.ok(sid, "start_server", None);
    h.wait_status(sid, ServerState::Running);
    h.wait_log(sid, "Server started on port");
    for i in 0..5 {
        h.ok(
            sid,
            "send_command",
            Some(json!({"command": format!("say replay {i}")})),
        );
    }
    h.wait_log(sid, "replay 4");
    let lines = h.ok(sid, "get_logs", Some(json!({"lines": 3})));
    let lines = lines["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(texts[2].contains("replay 4"), "{texts:?}");
    assert!(texts[1].contains("replay 3"), "{texts:?}");
    assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(lines[0]["logLevel"].is_string());
    let all = h.ok(sid, "get_logs", None);
    let all = all["lines"].as_array().unwrap();
    assert!(all.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap()
            .contains("Server started on port")
    }));
    for bad in [json!({"lines": 0}), json!({"lines": 1001})] {
        let (code, _) = h.err(Some(sid), "get_logs", Some(bad.clone()));
        assert_eq!(code, "INVALID_MESSAGE", "{bad}");
    }
    // The history outlives the run.
    h.ok(sid, "stop_server", Some(json!({"timeout": 5})));
    h.wait_status(sid, ServerState::Stopped);
    let after = h.ok(sid, "get_logs", Some(json!({"lines": 1000})));
    assert!(after["lines"].as_array().unwrap().len() >= all.len());
}
