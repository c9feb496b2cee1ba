//! The file manager's routes on the real panel binary against an in-test fake agent: what
//! the panel sends for each route, how it streams a download out of `read_file_chunk`
//! answers (pieces the agent shortens, `RATE_LIMITED` retried, a file that changes size
//! cut short), how an upload becomes ordered `write_file_chunk`s (and a refusal a
//! `cancel_upload`), and the console replay.

mod common;

use base64::Engine as _;
use common::agent::{err_response, ok_response};
use common::{Harness, assert_error, create_server_answered, run};
use futures_lite::future::zip;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn file(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 256) as u8).collect()
}

/// A fake agent's answer to `read_file_chunk` on `data`, at most `cap` bytes per piece.
fn read_answer(cmd: &Value, data: &[u8], cap: usize) -> Value {
    let id = cmd["id"].as_str().unwrap();
    let p = &cmd["payload"];
    let offset = p["offset"].as_u64().unwrap() as usize;
    let len = (p["length"].as_u64().unwrap() as usize).min(cap);
    let end = (offset + len).min(data.len());
    let piece = &data[offset.min(data.len())..end];
    ok_response(
        id,
        json!({"path": p["path"], "offset": offset, "size": data.len(), "eof": end == data.len(),
               "content": b64(piece), "encoding": "base64"}),
    )
}

#[test]
fn a_download_streams_the_agents_pieces_in_order() {
    let h = Harness::start("fm-download");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let data = Arc::new(file(1_000_003));
        let calls = Arc::new(AtomicUsize::new(0));
        let (d, c) = (data.clone(), calls.clone());
        // Pieces of at most 100,000 bytes (a small frame budget), and the third chunk
        // command answered RATE_LIMITED once.
        let responder = conn.auto_respond(move |cmd| {
            assert_eq!(cmd["action"], "read_file_chunk", "{cmd}");
            assert_eq!(cmd["payload"]["path"], "/server/w/level dat", "{cmd}");
            if c.fetch_add(1, Ordering::SeqCst) == 2 {
                return Some(err_response(
                    cmd["id"].as_str().unwrap(),
                    "RATE_LIMITED",
                    "slow down",
                ));
            }
            Some(read_answer(cmd, &d, 100_000))
        });
        let (st, headers, body) = p
            .raw(
                "GET",
                "/api/servers/srv-1/files/download?path=%2Fserver%2Fw%2Flevel%20dat",
                &[("authorization", &format!("Bearer {}", p.admin_token))],
                None,
            )
            .await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-length"), Some("1000003"));
        assert_eq!(header("content-type"), Some("application/octet-stream"));
        assert_eq!(
            header("content-disposition"),
            Some("attachment; filename=\"level dat\"; filename*=UTF-8''level%20dat")
        );
        assert!(body == *data, "the bytes differ");
        // Every piece was asked for at the offset where the previous one ended.
        let offsets: Vec<u64> = responder
            .seen
            .lock()
            .iter()
            .map(|c| c["payload"]["offset"].as_u64().unwrap())
            .collect();
        assert!(
            offsets.contains(&100_000) && offsets.contains(&900_000),
            "{offsets:?}"
        );
        assert!(calls.load(Ordering::SeqCst) >= 11);
    });
}

#[test]
fn a_download_of_a_file_that_changes_is_cut_short() {
    let h = Harness::start("fm-download-cut");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let data = file(600_000);
        let _responder = conn.auto_respond(move |cmd| {
            let mut answer = read_answer(cmd, &data, 262_144);
            if cmd["payload"]["offset"].as_u64() != Some(0) {
                answer["data"]["size"] = json!(700_000); // it grew
            }
            Some(answer)
        });
        let auth = format!("Bearer {}", p.admin_token);
        let got = common::net::raw(
            &p.base_url(),
            &p.tls,
            "GET",
            "/api/servers/srv-1/files/download?path=/server/grows.log",
            &[("authorization", &auth)],
            None,
        )
        .await;
        match got {
            Err(_) => {} // the body ended before its Content-Length: the client sees it
            Ok((st, _, body)) => panic!("a complete answer {st} of {} bytes", body.len()),
        }
    });
}

#[test]
fn a_download_refused_at_once_is_the_agents_error() {
    let h = Harness::start("fm-download-refused");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let op = p.admin(
            "GET",
            "/api/servers/srv-1/files/download?path=/server/missing",
            None,
        );
        let ag = async {
            let c = conn.next_command().await;
            conn.respond_err(
                c["id"].as_str().unwrap(),
                "FILE_NOT_FOUND",
                "`/server/missing` does not exist",
            )
            .await;
        };
        let ((st, v), ()) = zip(op, ag).await;
        assert_error(st, &v, 502, "FILE_NOT_FOUND");
        // Refused before any command: a bad path, the root.
        for path in ["/etc/passwd", "/server/../x", "/server"] {
            let (st, v) = p
                .admin(
                    "GET",
                    &format!("/api/servers/srv-1/files/download?path={path}"),
                    None,
                )
                .await;
            assert_error(st, &v, 400, "INVALID_PATH");
        }
        assert!(conn.commands.is_empty());
    });
}

/// Collects an upload's chunks at the fake agent, answering each; `refuse_at` refuses the
/// chunk with that index.
fn uploads(
    conn: &common::agent::Conn,
    refuse_at: Option<usize>,
) -> (Arc<Mutex<Vec<Value>>>, common::agent::AutoResponder) {
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let seen = chunks.clone();
    let responder = conn.auto_respond(move |cmd| {
        let id = cmd["id"].as_str().unwrap();
        let mut seen = seen.lock();
        seen.push(cmd.clone());
        if cmd["action"] == "cancel_upload" {
            return Some(ok_response(
                id,
                json!({"uploadId": cmd["payload"]["uploadId"], "cancelled": true}),
            ));
        }
        let index = seen
            .iter()
            .filter(|c| c["action"] == "write_file_chunk")
            .count()
            - 1;
        if refuse_at == Some(index) {
            return Some(err_response(
                id,
                "INSUFFICIENT_RESOURCES",
                "over the disk limit",
            ));
        }
        let p = &cmd["payload"];
        let written =
            p["offset"].as_u64().unwrap() + unb64(p["content"].as_str().unwrap()).len() as u64;
        Some(ok_response(
            id,
            json!({"path": p["path"], "written": written}),
        ))
    });
    (chunks, responder)
}

#[test]
fn an_upload_becomes_ordered_chunks_and_a_refusal_cancels_it() {
    let h = Harness::start("fm-upload");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let (chunks, responder) = uploads(&conn, None);
        let data = file(1_300_000);
        let auth = format!("Bearer {}", p.admin_token);
        let (st, _, body) = p
            .raw(
                "PUT",
                "/api/servers/srv-1/files/upload?path=/server/plugins/x.jar",
                &[("authorization", &auth)],
                Some(&data),
            )
            .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            v,
            json!({"success": true, "path": "/server/plugins/x.jar", "size": 1_300_000})
        );
        let seen = chunks.lock().clone();
        let mut rebuilt = Vec::new();
        let id = seen[0]["payload"]["uploadId"].as_str().unwrap().to_owned();
        for (i, c) in seen.iter().enumerate() {
            let p = &c["payload"];
            assert_eq!(c["action"], "write_file_chunk");
            assert_eq!(p["uploadId"], id.as_str());
            assert_eq!(p["path"], "/server/plugins/x.jar");
            assert_eq!(p["encoding"], "base64");
            assert_eq!(p["offset"], rebuilt.len(), "chunk {i}");
            assert_eq!(p["final"] == true, i + 1 == seen.len(), "chunk {i}");
            rebuilt.extend(unb64(p["content"].as_str().unwrap()));
        }
        assert!(rebuilt == data, "the bytes differ");
        assert!(seen.len() >= 3, "{} chunks", seen.len());
        drop(responder);

        // The agent refuses the second chunk: the client gets its error, the agent a cancel.
        let (chunks, refusing) = uploads(&conn, Some(1));
        let (st, _, body) = p
            .raw(
                "PUT",
                "/api/servers/srv-1/files/upload?path=/server/big.bin",
                &[("authorization", &auth)],
                Some(&data),
            )
            .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_error(st, &v, 502, "INSUFFICIENT_RESOURCES");
        common::eventually("a cancel_upload", || async {
            let seen = chunks.lock();
            let last = seen.last()?;
            (last["action"] == "cancel_upload"
                && last["payload"]["uploadId"] == seen[0]["payload"]["uploadId"])
                .then_some(())
        })
        .await;

        drop(refusing);

        // An empty body is one final, empty chunk.
        let (chunks, _responder) = uploads(&conn, None);
        let (st, _, _) = p
            .raw(
                "PUT",
                "/api/servers/srv-1/files/upload?path=/server/empty",
                &[("authorization", &auth), ("content-length", "0")],
                None,
            )
            .await;
        assert_eq!(st, 200);
        let seen = chunks.lock().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["payload"]["final"], true);
        assert_eq!(seen[0]["payload"]["content"], "");

        // Without the admin token: refused before anything reaches the agent.
        let (st, _, _) = p
            .raw(
                "PUT",
                "/api/servers/srv-1/files/upload?path=/server/x",
                &[],
                Some(b"abc"),
            )
            .await;
        assert_eq!(st, 401);
    });
}

#[test]
fn tree_changes_paging_and_logs_reach_the_agent_validated() {
    let h = Harness::start("fm-tree");
    let p = &h.panel;
    run(async {
        let (a, conn) = common::online_agent(p, "node-1").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let responder = conn.auto_respond(|cmd| {
            let id = cmd["id"].as_str().unwrap();
            Some(match cmd["action"].as_str().unwrap() {
                "get_logs" => ok_response(
                    id,
                    json!({"lines": [{"timestamp": "2025-01-01T00:00:00Z", "message": "Done", "logLevel": "INFO"}]}),
                ),
                _ => ok_response(id, cmd["payload"].clone()),
            })
        });
        let calls: [(&str, &str, Option<Value>, &str, Value); 5] = [
            (
                "POST",
                "/api/servers/srv-1/files/rename",
                Some(json!({"from": "/server/a", "to": "/server/b"})),
                "rename_file",
                json!({"from": "/server/a", "to": "/server/b"}),
            ),
            (
                "POST",
                "/api/servers/srv-1/files/mkdir",
                Some(json!({"path": "/server/d"})),
                "create_directory",
                json!({"path": "/server/d"}),
            ),
            (
                "DELETE",
                "/api/servers/srv-1/files?path=/server/d",
                None,
                "delete_file",
                json!({"path": "/server/d"}),
            ),
            (
                "GET",
                "/api/servers/srv-1/files?path=/server&offset=1000&limit=10",
                None,
                "list_files",
                json!({"path": "/server", "offset": 1000, "limit": 10}),
            ),
            (
                "GET",
                "/api/servers/srv-1/logs?lines=20",
                None,
                "get_logs",
                json!({"lines": 20}),
            ),
        ];
        for (method, path, body, action, payload) in calls {
            let before = responder.seen.lock().len();
            let (st, v) = p.admin(method, path, body).await;
            assert_eq!(st, 200, "{path}: {v}");
            let seen = responder.seen.lock();
            assert_eq!(seen.len(), before + 1, "{path}");
            let cmd = &seen[before];
            assert_eq!(cmd["action"], action, "{path}");
            assert_eq!(cmd["serverId"], "srv-1", "{path}");
            assert_eq!(cmd["payload"], payload, "{path}");
            if action == "get_logs" {
                assert_eq!(v["lines"][0]["message"], "Done", "{v}");
            }
        }
        // Refused by the panel itself (nothing sent).
        let before = responder.seen.lock().len();
        for (method, path, body, status, code) in [
            (
                "POST",
                "/api/servers/srv-1/files/rename",
                Some(json!({"from": "/server/a", "to": "/server/a/b"})),
                400,
                "INVALID_PATH",
            ),
            (
                "POST",
                "/api/servers/srv-1/files/rename",
                Some(json!({"from": "/server/a"})),
                400,
                "INVALID_MESSAGE",
            ),
            (
                "POST",
                "/api/servers/srv-1/files/mkdir",
                Some(json!({"path": "/server"})),
                400,
                "INVALID_PATH",
            ),
            (
                "DELETE",
                "/api/servers/srv-1/files?path=/server",
                None,
                400,
                "INVALID_PATH",
            ),
            (
                "DELETE",
                "/api/servers/srv-1/files",
                None,
                400,
                "INVALID_PATH",
            ),
            (
                "GET",
                "/api/servers/srv-1/files?path=/server&offset=-1",
                None,
                400,
                "INVALID_MESSAGE",
            ),
            (
                "GET",
                "/api/servers/srv-1/logs?lines=0",
                None,
                400,
                "INVALID_MESSAGE",
            ),
            (
                "GET",
                "/api/servers/srv-1/logs?lines=1001",
                None,
                400,
                "INVALID_MESSAGE",
            ),
            ("GET", "/api/servers/nope/logs", None, 404, "NOT_FOUND"),
        ] {
            let (st, v) = p.admin(method, path, body).await;
            assert_error(st, &v, status, code);
        }
        assert_eq!(responder.seen.lock().len(), before);
    });
}
