//! Live events (`GET /api/events`): fan-out of the agents' original event frames to every
//! subscriber, the `?serverId=` filter, a slow subscriber that never reads (it loses frames,
//! counted in /metrics; nobody else does), and single-use tickets.

mod common;

use async_tungstenite::tungstenite::Message as WsMsg;
use common::{
    ClientError, Harness, Panel, PanelOpts, create_server_answered, eventually, online_agent, run,
    within,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A subscriber that reads every text frame into a channel (raw, as received).
struct Sub {
    frames: async_channel::Receiver<String>,
    _task: smol::Task<()>,
}

impl Sub {
    fn spawn(ws: common::Ws) -> Sub {
        let (tx, rx) = async_channel::unbounded();
        let task = smol::spawn(async move {
            let mut ws = ws;
            while let Some(Ok(m)) = ws.next().await {
                if let WsMsg::Text(t) = m
                    && tx.send(t.as_str().to_owned()).await.is_err()
                {
                    break;
                }
            }
        });
        Sub {
            frames: rx,
            _task: task,
        }
    }

    async fn next(&self) -> String {
        within(
            common::DEADLINE,
            "an event at a subscriber",
            self.frames.recv(),
        )
        .await
        .expect("subscriber socket ended")
    }

    /// Skips probe frames; returns the next real one.
    async fn next_real(&self) -> String {
        loop {
            let f = self.next().await;
            if !f.contains("\"probe\"") {
                return f;
            }
        }
    }
}

async fn subscribe(p: &Panel, query: &str) -> Result<common::Ws, ClientError> {
    let auth = format!("Bearer {}", p.admin_token);
    common::net::ws_connect(
        &p.events_url(query),
        p.tls.clone(),
        &[("Authorization", &auth)],
    )
    .await
}

/// An event frame exactly as the fake agent sends it (so bytes can be compared).
fn event_text(server: &str, seq: u64, pad: usize) -> String {
    serde_json::to_string(&json!({
        "type": "event",
        "timestamp": "2025-01-23T10:05:30Z",
        "event": "server_log",
        "data": {
            "serverId": server,
            "logLevel": "INFO",
            "message": format!("line {seq} {}", "x".repeat(pad)),
        }
    }))
    .unwrap()
}

/// Sends probe events until every subscriber has seen one, so that all are registered
/// before the real sequence starts.
async fn sync_subscribers(conn: &common::agent::Conn, subs: &[&Sub]) {
    let probe = serde_json::to_string(&json!({
        "type": "event",
        "timestamp": "2025-01-23T10:05:30Z",
        "event": "server_log",
        "data": {"serverId": "srv-1", "logLevel": "INFO", "message": "probe"}
    }))
    .unwrap();
    for s in subs {
        eventually("subscriber registered", || async {
            conn.send_text(probe.clone()).await;
            let got = futures_lite::future::or(async { Some(s.next().await) }, async {
                async_io::Timer::after(std::time::Duration::from_millis(200)).await;
                None
            })
            .await;
            got.filter(|f| f.contains("probe"))
        })
        .await;
    }
    // Probes still in flight are skipped by `Sub::next_real` (real frames never say
    // "probe").
}

#[test]
fn events_fan_out_with_server_filter_and_original_bytes() {
    let h = Harness::start("events");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-ev").await;
        // The panel forwards events only for servers the sending agent owns.
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        create_server_answered(p, &conn, &a.id, "srv-2").await;
        let all1 = Sub::spawn(subscribe(p, "").await.expect("subscriber 1"));
        let all2 = Sub::spawn(subscribe(p, "").await.expect("subscriber 2"));
        let only1 = Sub::spawn(subscribe(p, "serverId=srv-1").await.expect("filtered"));
        sync_subscribers(&conn, &[&all1, &all2, &only1]).await;

        let mut sent = Vec::new();
        for seq in 0..40u64 {
            let server = if seq % 2 == 0 { "srv-1" } else { "srv-2" };
            let t = event_text(server, seq, 0);
            conn.send_text(t.clone()).await;
            sent.push((server, t));
        }
        // Also the other event kinds of the spec, with serverId in data.
        let status = serde_json::to_string(&json!({
            "type": "event", "timestamp": "2025-01-23T10:05:00Z",
            "event": "server_status_changed",
            "data": {"serverId": "srv-1", "previousStatus": "starting",
                     "currentStatus": "running", "pid": 1234}
        }))
        .unwrap();
        conn.send_text(status.clone()).await;
        sent.push(("srv-1", status));

        for sub in [&all1, &all2] {
            for (_, t) in &sent {
                assert_eq!(
                    &sub.next_real().await,
                    t,
                    "every frame, in order, byte-identical"
                );
            }
        }
        for (_, t) in sent.iter().filter(|(s, _)| *s == "srv-1") {
            assert_eq!(&only1.next_real().await, t, "filtered subscriber");
        }
        // Nothing for srv-2 arrives at the filtered subscriber: send a final srv-1 marker;
        // it must be the very next frame.
        let marker = event_text("srv-1", 999, 0);
        conn.send_text(marker.clone()).await;
        assert_eq!(only1.next_real().await, marker);

        // Another agent cannot inject events for a server it does not own.
        let (b, other) = online_agent(p, "node-other").await;
        let only_b = Sub::spawn(
            subscribe(p, &format!("agentId={}", b.id))
                .await
                .expect("agent-filtered"),
        );
        other.send_text(event_text("srv-1", 666, 0)).await;
        other.send_text(event_text("srv-2", 667, 0)).await;
        let marker2 = event_text("srv-1", 1000, 0);
        eventually("foreign events counted", || async {
            let m = p.metrics().await;
            common::metric(
                &m,
                "panel_agent_frames_rejected_total{reason=\"foreign_server\"}",
            )
            .filter(|n| *n >= 2.0)
        })
        .await;
        conn.send_text(marker2.clone()).await;
        assert_eq!(all1.next_real().await, marker, "marker reached all1");
        assert_eq!(
            all1.next_real().await,
            marker2,
            "foreign events not forwarded"
        );
        assert_eq!(only1.next_real().await, marker2);

        // `?agentId=` sees only that agent's (owned) events.
        create_server_answered(p, &other, &b.id, "srv-b").await;
        eventually("agent-filtered subscriber registered", || async {
            let m = p.metrics().await;
            common::metric(&m, "panel_event_subscribers").filter(|n| *n >= 4.0)
        })
        .await;
        conn.send_text(event_text("srv-1", 2000, 0)).await;
        let from_b = event_text("srv-b", 2001, 0);
        other.send_text(from_b.clone()).await;
        assert_eq!(only_b.next_real().await, from_b);
        // all1 gets both (no order between two agents' connections).
        let mut got = vec![all1.next_real().await, all1.next_real().await];
        got.sort();
        let mut want = vec![event_text("srv-1", 2000, 0), from_b];
        want.sort();
        assert_eq!(got, want);
    });
}

fn drops(metrics: &str) -> f64 {
    common::metric(metrics, "panel_events_dropped_total")
        .unwrap_or_else(|| panic!("panel_events_dropped_total missing:\n{metrics}"))
}

#[test]
fn slow_subscriber_loses_frames_others_get_everything() {
    let h = Harness::with(
        "events-slow",
        PanelOpts::default()
            .arg("--event-queue", 32)
            .arg("--agent-rate", 1_000_000)
            .arg("--agent-burst", 1_000_000),
    );
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-ev").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let fast1 = Sub::spawn(subscribe(p, "").await.expect("fast 1"));
        let fast2 = Sub::spawn(subscribe(p, "serverId=srv-1").await.expect("fast 2"));
        // Never read from this one.
        let slow = subscribe(p, "").await.expect("slow");
        sync_subscribers(&conn, &[&fast1, &fast2]).await;
        let before = drops(&p.metrics().await);

        // Send in windows smaller than the queue, waiting for the fast subscribers after
        // each, until the panel reports drops (the slow one's socket buffers are full).
        const WINDOW: u64 = 8;
        let mut seq = 0u64;
        let mut dropped = before;
        let start = std::time::Instant::now();
        while dropped <= before {
            assert!(
                start.elapsed() < common::DEADLINE * 2,
                "no drops reported after {seq} frames; metrics:\n{}",
                p.metrics().await
            );
            for _ in 0..WINDOW {
                let t = event_text("srv-1", seq, 16 * 1024);
                conn.send_text(t.clone()).await;
                seq += 1;
            }
            for s in seq - WINDOW..seq {
                let want = event_text("srv-1", s, 16 * 1024);
                assert_eq!(fast1.next_real().await, want, "fast 1 missed frame {s}");
                assert_eq!(fast2.next_real().await, want, "fast 2 missed frame {s}");
            }
            if seq.is_multiple_of(64) {
                dropped = drops(&p.metrics().await);
            }
        }
        assert!(dropped > before, "drops counted");
        // The agent was never slowed down into trouble: it is still online and the panel
        // still answers.
        let (st, _) = p.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200);
        drop(slow);
    });
}

#[test]
fn events_need_admin_token_or_a_single_use_ticket() {
    let h = Harness::start("events-ticket");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-ev").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        create_server_answered(p, &conn, &a.id, "srv-9").await;
        // No credentials, wrong token.
        for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
            match common::net::ws_connect(&p.events_url(""), p.tls.clone(), &headers).await {
                Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 401),
                Err(e) => panic!("expected 401, got {e}"),
                Ok(_) => panic!("events without credentials accepted"),
            }
        }
        // A ticket works once, without any header.
        let (st, v) = p.admin("POST", "/api/events/ticket", None).await;
        assert_eq!(st, 200, "{v}");
        let ticket = common::find_key(&v, "ticket")
            .and_then(Value::as_str)
            .expect("ticket in response")
            .to_owned();
        let ws = common::net::ws_connect(
            &p.events_url(&format!("ticket={ticket}")),
            p.tls.clone(),
            &[],
        )
        .await
        .expect("ticket accepted");
        let sub = Sub::spawn(ws);
        sync_subscribers(&conn, &[&sub]).await;
        let t = event_text("srv-9", 1, 0);
        conn.send_text(t.clone()).await;
        assert_eq!(sub.next_real().await, t);
        // Second use: refused.
        match common::net::ws_connect(
            &p.events_url(&format!("ticket={ticket}")),
            p.tls.clone(),
            &[],
        )
        .await
        {
            Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 401),
            Err(e) => panic!("expected 401, got {e}"),
            Ok(_) => panic!("ticket accepted twice"),
        }
        // A made-up ticket: refused.
        match common::net::ws_connect(&p.events_url("ticket=forged"), p.tls.clone(), &[]).await {
            Err(ClientError::Rejected { status, .. }) => assert_eq!(status, 401),
            Err(e) => panic!("expected 401, got {e}"),
            Ok(_) => panic!("forged ticket accepted"),
        }
        // Tickets need the admin token.
        let (st, _) = p
            .rest
            .json("POST", "/api/events/ticket", None, None)
            .await
            .unwrap();
        assert_eq!(st, 401);
    });
}
