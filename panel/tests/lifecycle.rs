//! The panel process as an operator sees it: durability across `kill -9`, graceful
//! shutdown on SIGTERM, the generated admin token, `/healthz` and `/metrics`.

mod common;

use common::agent::{Conn, standard_response};
use common::{Harness, PanelOpts, create_server_answered, eventually, online_agent, run};
use serde_json::json;

#[test]
fn acknowledged_changes_survive_kill_9() {
    let mut h = Harness::start("kill9");
    let (a, b, t1, r1) = run(async {
        let p = &h.panel;
        let (a, conn) = online_agent(p, "node-a").await;
        // Rotate once so the stored token state is not the initial one.
        let (st, v) = p
            .rest
            .json(
                "POST",
                "/api/agents/refresh",
                None,
                Some(&json!({"refreshToken": a.refresh_token})),
            )
            .await
            .unwrap();
        assert_eq!(st, 200, "{v}");
        let t1 = v["agent"]["token"].as_str().unwrap().to_owned();
        let r1 = v["agent"]["refreshToken"].as_str().unwrap().to_owned();
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        // The last acknowledged change right before the kill: a registration.
        let b = p.register("node-b").await;
        (a, b, t1, r1)
    });
    // kill -9 right after the 200.
    h.panel.kill9();
    h.restart();
    let p = &h.panel;
    run(async {
        let (st, v) = p.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200, "{v}");
        let ids: Vec<&str> = v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["id"].as_str())
            .collect();
        assert!(ids.contains(&a.id.as_str()), "agent a lost: {v}");
        assert!(ids.contains(&b.id.as_str()), "agent b lost: {v}");
        let e = p.agent_entry(&a.id).await.unwrap();
        assert_eq!(e["name"], "node-a");
        assert_eq!(
            e["status"], "offline",
            "nobody connected since the restart: {e}"
        );

        let (st, v) = p.admin("GET", "/api/servers", None).await;
        assert_eq!(st, 200, "{v}");
        let srv = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["serverId"] == "srv-1")
            .unwrap_or_else(|| panic!("server lost: {v}"))
            .clone();
        assert_eq!(srv["agentId"], a.id.as_str(), "{srv}");

        // Tokens issued before the crash still work (same signing key, same token state).
        let conn = Conn::connect_with(p, &t1, &a.id)
            .await
            .expect("rotated agent token valid after restart");
        p.wait_agent_status(&a.id, "online").await;
        Conn::connect(p, &b).await;
        // The server is still routed to its agent.
        let _auto = conn.auto_respond(standard_response);
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        // The used refresh token is still known as used: reuse is detected after restart.
        let (st, v) = p
            .rest
            .json(
                "POST",
                "/api/agents/refresh",
                None,
                Some(&json!({"refreshToken": a.refresh_token})),
            )
            .await
            .unwrap();
        assert_eq!(st, 401, "old refresh token reused after restart: {v}");
        let (st, _) = p
            .rest
            .json(
                "POST",
                "/api/agents/refresh",
                None,
                Some(&json!({"refreshToken": r1})),
            )
            .await
            .unwrap();
        assert_eq!(st, 401, "family revoked by the reuse");
    });
}

#[test]
fn sigterm_closes_agents_cleanly_exits_0_and_keeps_data() {
    let mut h = Harness::start("sigterm");
    let (a, closed, sub_closed) = {
        let p = &h.panel;
        let (a, conn, sub) = run(async {
            let (a, conn) = online_agent(p, "node-a").await;
            create_server_answered(p, &conn, &a.id, "srv-1").await;
            let auth = format!("Bearer {}", p.admin_token);
            let sub = common::net::ws_connect(
                &p.events_url(""),
                p.tls.clone(),
                &[("Authorization", &auth)],
            )
            .await
            .expect("events subscriber");
            (a, conn, Conn::from_ws(sub))
        });
        let status = h.panel.sigterm_and_wait();
        assert!(status.success(), "exit status after SIGTERM: {status:?}");
        let closed = run(conn.wait_closed());
        let sub_closed = run(sub.wait_closed());
        (a, closed, sub_closed)
    };
    // A close frame, not a dropped socket.
    assert!(
        closed.code.is_some(),
        "agent got no close frame: {closed:?}"
    );
    assert_eq!(closed.code, Some(1001), "going away: {closed:?}");
    assert_eq!(
        sub_closed.code,
        Some(1001),
        "events subscriber close frame: {sub_closed:?}"
    );
    h.restart();
    run(async {
        let p = &h.panel;
        let e = p.agent_entry(&a.id).await.expect("agent kept");
        assert_eq!(e["name"], "node-a");
        let (_, v) = p.admin("GET", "/api/servers", None).await;
        assert!(
            v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["serverId"] == "srv-1"),
            "server kept: {v}"
        );
        let _conn = Conn::connect(p, &a).await;
        p.wait_agent_status(&a.id, "online").await;
    });
}

#[test]
fn generated_admin_token_is_printed_once_and_kept() {
    let mut h = Harness::with(
        "gen-token",
        PanelOpts {
            admin_token: None,
            ..PanelOpts::default()
        },
    );
    let token = h.panel.admin_token.clone();
    assert!(
        token.len() >= 32,
        "panel printed `admin token: T` on first start: {:?}",
        h.panel.log.lock()
    );
    run(async {
        let (st, v) = h.panel.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200, "{v}");
    });
    // The token is not stored in clear anywhere in the data dir.
    for entry in walk(&h.panel.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "admin token in clear in {}",
            entry.display()
        );
    }
    // The JWT signing key is never printed (hex or base64 of it).
    let key = std::fs::read(h.panel.data_dir.join("jwt.key")).expect("jwt.key");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let out = h.panel.log.lock().join("\n");
    for spelling in [hex.clone(), hex.to_uppercase(), common::b64(&key), {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&key)
    }] {
        assert!(!out.contains(&spelling[..16]), "signing key printed");
    }
    // The signing key and TLS key are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["jwt.key", "tls/panel.key"] {
        let mode = std::fs::metadata(h.panel.data_dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} mode {mode:o}");
    }
    h.panel.kill9();
    h.restart();
    let printed_again = h
        .panel
        .log
        .lock()
        .iter()
        .any(|l| l.contains("admin token:"));
    assert!(
        !printed_again,
        "token printed again: {:?}",
        h.panel.log.lock()
    );
    run(async {
        let (st, v) = h.panel.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200, "same token after restart: {v}");
    });
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn healthz_needs_no_auth() {
    let h = Harness::start("healthz");
    run(async {
        let (st, v) = h
            .panel
            .rest
            .json("GET", "/healthz", None, None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(v, json!({"success": true}));
        // Unknown API routes are JSON 404s (other paths are the web UI's shell, see ui.rs).
        let (st, v) = h
            .panel
            .rest
            .json(
                "GET",
                "/api/no/such/route",
                Some(&h.panel.admin_token),
                None,
            )
            .await
            .unwrap();
        assert_eq!(st, 404, "{v}");
        assert_eq!(v["success"], false);
    });
}

/// Parses Prometheus text: (name, labels, value) per sample; panics on a malformed line.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':'),
            "bad metric name in {line:?}"
        );
        out.push((name.to_owned(), labels.to_owned(), value));
    }
    out
}

#[test]
fn metrics_report_agents_commands_frames_and_drops() {
    let h = Harness::start("metrics");
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-m").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        let _auto = conn.auto_respond(standard_response);
        let (st, _) = p
            .admin(
                "POST",
                "/api/servers/srv-1/power",
                Some(json!({"action": "start"})),
            )
            .await;
        assert_eq!(st, 200);
        conn.send_event(
            "server_log",
            json!({"serverId": "srv-1", "logLevel": "INFO", "message": "hi"}),
        )
        .await;

        let text = eventually("frames counted", || async {
            let m = p.metrics().await;
            let n = common::metric(&m, "panel_agent_frames_total{direction=\"in\"}")?;
            (n >= 3.0).then_some(m)
        })
        .await;
        // Well-formed: every sample parses and its family has a # TYPE line.
        let s = samples(&text);
        for (name, _, _) in &s {
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "no # TYPE for {name}"
            );
        }
        let get = |series: &str| {
            common::metric(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"))
        };
        assert_eq!(get("panel_agents_online"), 1.0);
        assert_eq!(
            get("panel_commands_total{action=\"start_server\",outcome=\"ok\"}"),
            1.0
        );
        assert_eq!(
            get("panel_commands_total{action=\"create_server\",outcome=\"ok\"}"),
            1.0
        );
        assert_eq!(
            get("panel_commands_total{action=\"start_server\",outcome=\"timeout\"}"),
            0.0
        );
        assert_eq!(get("panel_command_duration_seconds_count"), 2.0);
        assert_eq!(
            get("panel_command_duration_seconds_bucket{le=\"+Inf\"}"),
            2.0
        );
        assert!(get("panel_agent_frames_total{direction=\"out\"}") >= 2.0);
        assert!(get("panel_agent_bytes_total{direction=\"in\"}") > 0.0);
        assert!(get("panel_agent_bytes_total{direction=\"out\"}") > 0.0);
        assert_eq!(get("panel_events_dropped_total"), 0.0);
        assert_eq!(get("panel_rate_limited_total{limiter=\"agent\"}"), 0.0);
        assert_eq!(get("panel_rate_limited_total{limiter=\"api\"}"), 0.0);
    });
}

#[test]
fn bad_flags_exit_2_naming_the_flag_and_help_exits_0() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_panel"))
        .args(["--heartbeat-secs", "0"])
        .output()
        .expect("run panel");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--heartbeat-secs"), "{err}");
    assert!(err.contains("usage:"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_panel"))
        .arg("--frobnicate")
        .output()
        .expect("run panel");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_panel"))
        .arg("--help")
        .output()
        .expect("run panel");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--command-timeout-secs"));
}

#[test]
fn sigterm_with_a_command_in_flight_still_exits_0() {
    // A command timeout far beyond the harness deadline: shutdown must not wait for it.
    let mut h = Harness::with(
        "sigterm-pending",
        PanelOpts::default().arg("--command-timeout-secs", 3600),
    );
    let p = &h.panel;
    let rest = common::Rest::new(&p.base_url(), p.tls.clone()).unwrap();
    let token = p.admin_token.clone();
    let conn = run(async {
        let (a, conn) = online_agent(p, "node-a").await;
        create_server_answered(p, &conn, &a.id, "srv-1").await;
        conn
    });
    // The operator's request runs on another thread and is never answered by the agent.
    let pending = std::thread::spawn(move || {
        smol::block_on(rest.json(
            "POST",
            "/api/servers/srv-1/power",
            Some(&token),
            Some(&json!({"action": "start"})),
        ))
    });
    run(async {
        let cmd = conn.next_command().await;
        assert_eq!(cmd["action"], "start_server");
    });
    let status = h.panel.sigterm_and_wait();
    assert!(status.success(), "{status:?}");
    // The operator got an answer or a closed connection — not a hang.
    match pending.join().expect("operator thread") {
        Ok((st, v)) => assert!(st == 503 || st == 504, "{st} {v}"),
        Err(e) => eprintln!("operator connection closed by shutdown: {e}"),
    }
}

#[test]
fn sigint_is_a_graceful_shutdown_too() {
    let mut h = Harness::start("sigint");
    let conn = run(async { online_agent(&h.panel, "node-a").await.1 });
    let status = h.panel.signal_and_wait(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{status:?}");
    let closed = run(conn.wait_closed());
    assert_eq!(closed.code, Some(1001), "{closed:?}");
}
