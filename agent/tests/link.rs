//! The link to the panel against a fake panel (TLS + WebSocket, self-signed CA), with the
//! real servers layer behind it. No Docker is needed: the agent points at a missing socket,
//! so Docker-bound commands answer `DOCKER_ERROR` — which is itself part of what is tested.
//!
//! Covered: the upgrade's `Authorization`/`X-Agent-ID` headers, pong with the spec's data,
//! responses matched by id (success and error codes, undecodable commands answered with
//! `INVALID_MESSAGE`), events streamed while connected, events produced while disconnected
//! delivered in order after the automatic reconnect, a clean stop, and a backlog sent at
//! the node policy's frame pace (`frameRate`/`frameBurst`), not all at once.

use agent::config::AgentConfig;
use agent::link::Link;
use agent::link::creds::Credentials;
use agent::link::outbox::Outbox;
use agent::node::NodePolicy;
use agent::servers::{Servers, ServersConfig};
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use e2e::TempDir;
use futures_rustls::TlsAcceptor;
use proto::{Event, EventKind, ServerLog, ServerState, StatusChanged};
use serde_json::{Value, json};
use smol::net::TcpListener;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{Ws, next_json, send, tls};

const AGENT_ID: &str = "agent-link-test";

struct FakePanel {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl FakePanel {
    /// Accepts one agent connection; returns it with the upgrade's auth headers.
    async fn accept(&self) -> (Ws, String, String) {
        let (tcp, _) = self.listener.accept().await.unwrap();
        let tls = self.acceptor.accept(tcp).await.unwrap();
        let seen = Arc::new(Mutex::new((String::new(), String::new())));
        let record = seen.clone();
        // The signature is tungstenite's `Callback`, large error type included.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            *record.lock().unwrap() = (h("authorization"), h("x-agent-id"));
            Ok(resp)
        };
        let ws = async_tungstenite::accept_hdr_async(tls, callback)
            .await
            .unwrap();
        let (auth, id) = seen.lock().unwrap().clone();
        (ws, auth, id)
    }
}

/// Reads frames until the response to `id`.
async fn response_to(ws: &mut Ws, id: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == "response" && v["id"] == id {
            return v;
        }
    }
}

fn command(id: &str, server: Option<&str>, action: &str, payload: Option<Value>) -> Value {
    let mut v = json!({"id": id, "type": "command", "timestamp": proto::time::now_rfc3339(), "agentId": AGENT_ID, "action": action});
    if let Some(s) = server {
        v["serverId"] = json!(s);
    }
    if let Some(p) = payload {
        v["payload"] = p;
    }
    v
}

fn log_event(message: &str) -> Event<'static> {
    Event {
        id: None,
        timestamp: Cow::Owned(proto::time::now_rfc3339()),
        agent_id: Some(Cow::Borrowed(AGENT_ID)),
        server_id: Some(Cow::Borrowed("s1")),
        kind: EventKind::ServerLog(ServerLog {
            server_id: Cow::Borrowed("s1"),
            log_level: Cow::Borrowed("INFO"),
            message: Cow::Owned(message.to_owned()),
            stream: Some(Cow::Borrowed("stdout")),
            dropped: None,
        }),
    }
}

/// A fake panel and, connected to it, the real link and servers layer of an agent whose
/// Docker socket does not exist.
struct AgentUnderTest {
    panel: FakePanel,
    config_path: std::path::PathBuf,
    outbox: Arc<Outbox>,
    /// Send `()` to stop the link.
    stop: async_channel::Sender<()>,
    running: smol::Task<()>,
}

async fn start_agent(
    dir: &std::path::Path,
    server_tls: Arc<rustls::ServerConfig>,
    name: &str,
    token: &str,
) -> AgentUnderTest {
    start_agent_with(dir, server_tls, name, token, NodePolicy::default()).await
}

async fn start_agent_with(
    dir: &std::path::Path,
    server_tls: Arc<rustls::ServerConfig>,
    name: &str,
    token: &str,
    policy: NodePolicy,
) -> AgentUnderTest {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let panel = FakePanel {
        listener,
        acceptor: TlsAcceptor::from(server_tls),
    };
    let config_path = dir.join("agent.json");
    let config = AgentConfig {
        id: AGENT_ID.into(),
        name: name.into(),
        token: token.into(),
        refresh_token: "refresh-1".into(),
        websocket_url: format!("wss://127.0.0.1:{port}/ws/agents"),
        panel_url: format!("https://127.0.0.1:{port}"),
        ca_cert: Some(dir.join("ca.pem")),
    };
    config.save(&config_path).unwrap();
    let client_tls = ctrl_io::tls_config(config.ca_cert.as_deref()).unwrap();
    let creds = Arc::new(Credentials::new(config, config_path.clone(), client_tls));
    let outbox = Arc::new(Outbox::default());
    let mut scfg = ServersConfig::new(
        AGENT_ID,
        "/nonexistent/docker.sock".into(),
        dir.join("data"),
    );
    scfg.policy = policy;
    let servers = Arc::new(Servers::start(scfg, outbox.clone()).unwrap());
    let link = Link::new(servers, outbox.clone(), creds).unwrap();
    let (stop, stop_rx) = async_channel::bounded::<()>(1);
    let running = smol::spawn(link.run(async move {
        let _ = stop_rx.recv().await;
    }));
    AgentUnderTest {
        panel,
        config_path,
        outbox,
        stop,
        running,
    }
}

#[test]
fn the_link_serves_commands_pings_and_events_across_a_reconnect() {
    let dir = TempDir::new("link");
    let server_tls = tls(dir.path());
    smol::block_on(async {
        let AgentUnderTest {
            panel,
            outbox,
            stop: stop_tx,
            running,
            ..
        } = start_agent(dir.path(), server_tls, "link", "tok-1").await;

        // The upgrade carries the agent's credentials.
        let (mut ws, auth, id) = panel.accept().await;
        assert_eq!(auth, "Bearer tok-1");
        assert_eq!(id, AGENT_ID);

        // Heartbeat: pong echoes the id with the spec's data.
        send(
            &mut ws,
            json!({"id": "hb-1", "type": "ping", "timestamp": proto::time::now_rfc3339()}),
        )
        .await;
        let pong = loop {
            let v = next_json(&mut ws).await;
            if v["type"] == "pong" {
                break v;
            }
        };
        assert_eq!(pong["id"], "hb-1");
        assert_eq!(pong["data"]["agentStatus"], "degraded", "no Docker here");
        assert_eq!(pong["data"]["activeServers"], 0);
        assert!(pong["data"]["systemLoad"]["memory"].is_number());

        // Commands are answered by id, concurrently, with the right codes.
        send(&mut ws, command("c-1", Some("nope"), "get_status", None)).await;
        send(&mut ws, command("c-2", Some("nope"), "reticulate", None)).await;
        send(
            &mut ws,
            command(
                "c-3",
                None,
                "create_server",
                Some(json!({"serverId": "s1", "eggConfig": {
            "name": "fakegame", "image": "ctrl-fakegame:latest", "ports": {"25565": 25565},
            "limits": {"memory": "64m", "cpu": "0.5", "disk": "1g"}, "startup": "fakegame"}})),
            ),
        )
        .await;
        // list_files without its payload cannot be decoded, but it has an id to answer.
        send(&mut ws, command("c-4", Some("s1"), "list_files", None)).await;
        let mut codes = std::collections::BTreeMap::new();
        while codes.len() < 4 {
            let v = next_json(&mut ws).await;
            if v["type"] == "response" {
                assert_eq!(v["success"], false, "{v}");
                codes.insert(
                    v["id"].as_str().unwrap().to_owned(),
                    v["error"]["code"].as_str().unwrap().to_owned(),
                );
            }
        }
        assert_eq!(codes["c-1"], "SERVER_NOT_FOUND");
        assert_eq!(codes["c-2"], "UNKNOWN_ACTION");
        assert_eq!(codes["c-3"], "DOCKER_ERROR");
        assert_eq!(codes["c-4"], "INVALID_MESSAGE");
        let r = {
            send(&mut ws, command("c-5", Some("s1"), "get_status", None)).await;
            response_to(&mut ws, "c-5").await
        };
        assert_eq!(
            r["error"]["code"], "SERVER_NOT_FOUND",
            "a failed create leaves nothing"
        );

        // Events flow while connected.
        outbox.push(log_event("live line"));
        let ev = loop {
            let v = next_json(&mut ws).await;
            if v["type"] == "event" {
                break v;
            }
        };
        assert_eq!(ev["event"], "server_log");
        assert_eq!(ev["data"]["message"], "live line");
        assert_eq!(ev["serverId"], "s1");

        // The panel goes away; events produced meanwhile wait, then arrive in order.
        ws.close(None).await.unwrap();
        drop(ws);
        smol::Timer::after(Duration::from_millis(200)).await;
        outbox.push(Event {
            kind: EventKind::ServerStatusChanged(StatusChanged {
                server_id: Cow::Borrowed("s1"),
                previous_status: ServerState::Running,
                current_status: ServerState::Crashed,
                pid: None,
                exit_code: Some(3),
                oom_killed: Some(false),
                reason: Some(Cow::Borrowed("crashed with exit code 3")),
            }),
            ..log_event("")
        });
        outbox.push(log_event("while away"));
        let (mut ws, auth, _) = panel.accept().await;
        assert_eq!(auth, "Bearer tok-1");
        let mut got = Vec::new();
        while got.len() < 2 {
            let v = next_json(&mut ws).await;
            if v["type"] == "event" {
                got.push(v);
            }
        }
        assert_eq!(got[0]["event"], "server_status_changed");
        assert_eq!(got[0]["data"]["currentStatus"], "crashed");
        assert_eq!(got[0]["data"]["exitCode"], 3);
        assert_eq!(got[1]["data"]["message"], "while away");

        // A clean stop ends the link.
        stop_tx.send(()).await.unwrap();
        futures_lite::future::or(running, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            panic!("the link did not stop");
        })
        .await;
    });
}

impl FakePanel {
    /// Refuses one WebSocket upgrade with HTTP 401.
    async fn refuse(&self) {
        let (tcp, _) = self.listener.accept().await.unwrap();
        let tls = self.acceptor.accept(tcp).await.unwrap();
        #[allow(clippy::result_large_err)]
        let callback = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
            let mut resp = ErrorResponse::new(Some("bad token".into()));
            *resp.status_mut() = async_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            Err(resp)
        };
        assert!(
            async_tungstenite::accept_hdr_async(tls, callback)
                .await
                .is_err()
        );
    }

    /// Serves one `POST /api/agents/refresh`; returns the request body.
    async fn refresh(&self, answer: Value) -> Value {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let (tcp, _) = self.listener.accept().await.unwrap();
        let mut tls = self.acceptor.accept(tcp).await.unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut byte).await.unwrap(), 1);
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        assert!(head.starts_with("POST /api/agents/refresh "), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body).await.unwrap();
        let payload = answer.to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        tls.write_all(resp.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.close().await;
        serde_json::from_slice(&body).unwrap()
    }
}

#[test]
fn a_refused_token_is_refreshed_persisted_and_used() {
    let dir = TempDir::new("refresh");
    let server_tls = tls(dir.path());
    smol::block_on(async {
        let AgentUnderTest {
            panel,
            config_path,
            stop: stop_tx,
            running,
            ..
        } = start_agent(dir.path(), server_tls, "refresh", "expired").await;

        panel.refuse().await;
        let sent = panel
            .refresh(json!({"success": true, "agent": {"id": AGENT_ID, "token": "tok-2", "refreshToken": "refresh-2"}}))
            .await;
        assert_eq!(sent["refreshToken"], "refresh-1");
        let (_ws, auth, _) = panel.accept().await;
        assert_eq!(auth, "Bearer tok-2");
        // The new pair is on disk before it is used (the old refresh token is dead).
        let saved = AgentConfig::load(&config_path).unwrap();
        assert_eq!(
            (saved.token.as_str(), saved.refresh_token.as_str()),
            ("tok-2", "refresh-2")
        );

        stop_tx.send(()).await.unwrap();
        running.await;
    });
}

#[test]
fn a_backlog_goes_out_at_the_frame_pace() {
    const RATE: f64 = 200.0;
    const BURST: f64 = 50.0;
    const BACKLOG: usize = 300;
    let dir = TempDir::new("link-pace");
    let server_tls = tls(dir.path());
    let policy = NodePolicy {
        frame_rate: RATE,
        frame_burst: BURST,
        console_rate: RATE,
        console_burst: BURST,
        ..NodePolicy::default()
    };
    policy.check().unwrap();
    smol::block_on(async {
        let agent = start_agent_with(dir.path(), server_tls, "pace", "tok-1", policy).await;
        // Queued while no panel is there: the backlog a reconnect finds.
        for i in 0..BACKLOG {
            agent.outbox.push(log_event(&format!("backlog {i}")));
        }
        let (mut ws, _, _) = agent.panel.accept().await;
        let t0 = Instant::now();
        let mut seen = 0;
        while seen < BACKLOG {
            let v = next_json(&mut ws).await;
            if v["type"] != "event" {
                continue;
            }
            assert_eq!(v["data"]["message"], format!("backlog {seen}"), "in order");
            seen += 1;
            // A frame arrives after it was sent, so a slow host only lowers the count: at
            // any time, at most the burst plus the rate since the connection (a few frames
            // of slack for the agent's clock starting just before ours).
            let allowed = BURST + RATE * t0.elapsed().as_secs_f64() + 5.0;
            assert!(
                seen as f64 <= allowed,
                "{seen} frames within {:?}: faster than {RATE}/s, burst {BURST}",
                t0.elapsed()
            );
        }
        agent.stop.send(()).await.unwrap();
        agent.running.await;
    });
}
