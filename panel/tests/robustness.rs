//! Hostile or broken input on the agent socket and the operator API: garbage frames,
//! oversize frames, flooding (rate limits). The panel must answer with a clear error or
//! close that one connection — never die, never disturb other agents.

mod common;

use async_tungstenite::tungstenite::Message as WsMsg;
use common::agent::{Conn, standard_response};
use common::{
    Harness, Panel, PanelOpts, assert_error, create_server_answered, eventually, online_agent, run,
};
use serde_json::{Value, json};

/// Waits until `conn` got a frame carrying error `code`, or was closed by the panel.
/// Returns a description of what happened.
async fn error_or_close(conn: &Conn, code: &str) -> String {
    eventually(&format!("{code} frame or close"), || async {
        while let Ok(v) = conn.others.try_recv() {
            let c = v["error"]["code"].as_str().unwrap_or_default();
            if c == code {
                return Some(format!("error frame {v}"));
            }
        }
        if let Ok(c) = conn.closed.try_recv() {
            return Some(format!("closed {c:?}"));
        }
        None
    })
    .await
}

/// The healthy agent `b` still gets and answers commands.
async fn still_serves(p: &Panel, server: &str) {
    let (st, v) = p
        .admin(
            "POST",
            &format!("/api/servers/{server}/power"),
            Some(json!({"action": "start"})),
        )
        .await;
    assert_eq!(st, 200, "healthy agent disturbed: {v}");
    assert_eq!(v["data"]["status"], "starting", "{v}");
    let (st, v) = p.rest.json("GET", "/healthz", None, None).await.unwrap();
    assert_eq!(st, 200, "{v}");
}

#[test]
fn garbage_frames_do_not_hurt_the_panel_or_other_agents() {
    let h = Harness::start("garbage");
    let p = &h.panel;
    run(async {
        let (a, bad) = online_agent(p, "node-bad").await;
        let (b, good) = online_agent(p, "node-good").await;
        create_server_answered(p, &good, &b.id, "srv-good").await;
        let _auto = good.auto_respond(standard_response);

        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let texts: Vec<String> = vec![
            "not json".into(),
            "{".into(),
            "".into(),
            "[]".into(),
            "null".into(),
            "42".into(),
            r#"{"type":"bogus","id":"x","timestamp":"2025-01-23T10:00:00Z"}"#.into(),
            r#"{"type":"response"}"#.into(),
            r#"{"id":5,"type":"pong"}"#.into(),
            r#"{"type":"event","timestamp":"nope","event":"server_log","data":7}"#.into(),
            r#"{"type":"command","id":"c1","timestamp":"2025-01-23T10:00:00Z","action":"start_server"}"#.into(),
            r#"{"id":"unknown-id","type":"response","timestamp":"2025-01-23T10:00:00Z","success":true}"#.into(),
            r#"{"type":"event","type":"event","event":"server_log"}"#.into(),
            deep,
            "\u{0}\u{1}\u{2}".into(),
        ];
        for t in texts {
            bad.send_text(t).await;
        }
        bad.send_binary(vec![0xff, 0xfe, 0x00, 0x80, 0xc3]).await;
        bad.send_binary(b"{\"type\":\"pong\",\"id\":\"x\"}".to_vec())
            .await;
        let outcome = error_or_close(&bad, "INVALID_MESSAGE").await;
        eprintln!("garbage outcome: {outcome}");

        // The panel lives and the good agent is untouched.
        still_serves(p, "srv-good").await;
        let e = p.agent_entry(&b.id).await.unwrap();
        assert_eq!(e["status"], "online", "{e}");
        assert!(good.closed.is_empty(), "good agent was disconnected");

        // Garbage is answered, not punished: the same connection still works…
        assert!(
            bad.closed.is_empty(),
            "garbage closed the agent's socket: {outcome}"
        );
        let (st, v) = create_server_answered(p, &bad, &a.id, "srv-bad").await;
        assert_eq!(st, 200, "{v}");
        // …and the agent can also reconnect.
        drop(bad);
        let again = Conn::connect(p, &a).await;
        p.wait_agent_status(&a.id, "online").await;
        let (st, v) = create_server_answered(p, &again, &a.id, "srv-bad-2").await;
        assert_eq!(st, 200, "{v}");
    });
}

#[test]
fn oversize_frame_is_refused_and_the_panel_survives() {
    let h = Harness::with(
        "oversize",
        PanelOpts::default().arg("--max-frame-bytes", 65_536),
    );
    let p = &h.panel;
    run(async {
        let (a, big) = online_agent(p, "node-big").await;
        let (b, good) = online_agent(p, "node-good").await;
        create_server_answered(p, &good, &b.id, "srv-good").await;
        let _auto = good.auto_respond(standard_response);

        // A valid event, just too large.
        let huge = serde_json::to_string(&json!({
            "type": "event", "timestamp": "2025-01-23T10:05:30Z", "event": "server_log",
            "data": {"serverId": "srv-x", "logLevel": "INFO", "message": "y".repeat(256 * 1024)}
        }))
        .unwrap();
        big.send(WsMsg::text(huge)).await;
        let outcome = eventually("oversize frame refused", || async {
            while let Ok(v) = big.others.try_recv() {
                let c = v["error"]["code"].as_str().unwrap_or_default();
                if c == "PAYLOAD_TOO_LARGE" || c == "INVALID_MESSAGE" {
                    return Some(format!("error frame {v}"));
                }
            }
            big.closed.try_recv().ok().map(|c| format!("closed {c:?}"))
        })
        .await;
        eprintln!("oversize outcome: {outcome}");
        if let Some(rest) = outcome.strip_prefix("closed ") {
            // A close frame, if any, says "message too big" (1009) or policy (1008).
            assert!(
                !rest.contains("code: Some(") || rest.contains("1009") || rest.contains("1008"),
                "close code: {rest}"
            );
        }
        still_serves(p, "srv-good").await;
        drop(big);
        // The same agent may reconnect.
        let _again = Conn::connect(p, &a).await;
        p.wait_agent_status(&a.id, "online").await;
    });
}

#[test]
fn oversize_http_body_is_413() {
    let h = Harness::start("oversize-http");
    let p = &h.panel;
    run(async {
        let body = vec![b' '; 2 * 1024 * 1024];
        let r = p
            .rest
            .request(
                "POST",
                "/api/agents/register",
                Some(&p.admin_token),
                Some(&body),
            )
            .await;
        match r {
            Ok((st, resp)) => {
                let v: Value = serde_json::from_slice(&resp).expect("JSON error");
                assert_error(st, &v, 413, "PAYLOAD_TOO_LARGE");
            }
            // The panel may close the socket while we are still sending the body; it must
            // still be alive.
            Err(e) => eprintln!("connection cut while sending: {e}"),
        }
        let (st, _) = p.rest.json("GET", "/healthz", None, None).await.unwrap();
        assert_eq!(st, 200);
    });
}

#[test]
fn flooding_agent_is_rate_limited() {
    let h = Harness::with(
        "ratelimit-agent",
        PanelOpts::default()
            .arg("--agent-rate", 2)
            .arg("--agent-burst", 5),
    );
    let p = &h.panel;
    run(async {
        let (_a, flood) = online_agent(p, "node-flood").await;
        let (b, good) = online_agent(p, "node-good").await;
        create_server_answered(p, &good, &b.id, "srv-good").await;
        let _auto = good.auto_respond(standard_response);
        for i in 0..200 {
            flood
                .send_event(
                    "server_log",
                    json!({"serverId": "srv-f", "logLevel": "INFO", "message": format!("{i}")}),
                )
                .await;
        }
        let outcome = eventually("RATE_LIMITED frame or close", || async {
            while let Ok(v) = flood.others.try_recv() {
                if v["error"]["code"] == "RATE_LIMITED" {
                    return Some(format!("error frame {v}"));
                }
            }
            flood
                .closed
                .try_recv()
                .ok()
                .map(|c| format!("closed {c:?}"))
        })
        .await;
        eprintln!("flood outcome: {outcome}");
        if let Some(rest) = outcome.strip_prefix("closed ") {
            assert!(
                rest.contains("RATE_LIMITED") || rest.to_lowercase().contains("rate"),
                "a close must say why: {rest}"
            );
        }
        let m = p.metrics().await;
        let hits = common::metric(&m, "panel_rate_limited_total{limiter=\"agent\"}");
        assert!(
            hits.is_some_and(|h| h > 0.0),
            "rate-limit hits counted:\n{m}"
        );
        // Other agents have their own bucket.
        still_serves(p, "srv-good").await;
    });
}

#[test]
fn flooding_operator_gets_429_then_recovers() {
    let h = Harness::with(
        "ratelimit-admin",
        PanelOpts::default()
            .arg("--admin-rate", 1)
            .arg("--admin-burst", 3),
    );
    let p = &h.panel;
    run(async {
        let mut limited = None;
        for _ in 0..50 {
            let (st, v) = p.admin("GET", "/api/agents", None).await;
            if st == 429 {
                limited = Some(v);
                break;
            }
            assert_eq!(st, 200, "{v}");
        }
        let v = limited.expect("50 requests at 1/s with burst 3 were never limited");
        assert_error(429, &v, 429, "RATE_LIMITED");
        let m = p.metrics().await;
        let hits = common::metric(&m, "panel_rate_limited_total{limiter=\"api\"}");
        assert!(
            hits.is_some_and(|h| h > 0.0),
            "API rate-limit hits counted:\n{m}"
        );
        // Refills: eventually allowed again.
        eventually("bucket refills", || async {
            let (st, _) = p.admin("GET", "/api/agents", None).await;
            (st == 200).then_some(())
        })
        .await;
    });
}

#[test]
fn frame_of_exactly_the_limit_is_accepted_one_byte_more_is_not() {
    const LIMIT: usize = 65_536;
    let h = Harness::with(
        "frame-limit",
        PanelOpts::default().arg("--max-frame-bytes", LIMIT),
    );
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-limit").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let auth = format!("Bearer {}", p.admin_token);
        let mut sub = common::net::ws_connect(
            &p.events_url(""),
            p.tls.clone(),
            &[("Authorization", &auth)],
        )
        .await
        .expect("subscriber");
        let frame_of = |len: usize| {
            let base = serde_json::to_string(&json!({
                "type": "event", "timestamp": "2025-01-23T10:05:30Z", "event": "server_log",
                "data": {"serverId": "srv-1", "logLevel": "INFO", "message": ""}
            }))
            .unwrap();
            let pad = len - base.len();
            let f = base.replace(
                r#""message":"""#,
                &format!(r#""message":"{}""#, "z".repeat(pad)),
            );
            assert_eq!(f.len(), len);
            f
        };
        // Wait until the subscriber is registered.
        eventually("subscriber registered", || async {
            let m = p.metrics().await;
            common::metric(&m, "panel_event_subscribers").filter(|n| *n >= 1.0)
        })
        .await;
        let exact = frame_of(LIMIT);
        conn.send_text(exact.clone()).await;
        use futures_util::StreamExt;
        let got = common::within(common::DEADLINE, "the limit-sized event", sub.next())
            .await
            .expect("subscriber open")
            .expect("frame");
        assert_eq!(got.into_text().unwrap().as_str(), exact);
        assert!(conn.closed.is_empty(), "limit-sized frame closed the agent");

        conn.send_text(frame_of(LIMIT + 1)).await;
        let closed = conn.wait_closed().await;
        assert_eq!(closed.code, Some(1009), "{closed:?}");
    });
}
