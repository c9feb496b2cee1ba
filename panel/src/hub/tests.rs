//! The hub against fake agents on loopback WebSockets.

use super::*;
use crate::panel_metrics::Outcome;
use crate::shutdown::Shutdown;
use crate::store::tests::{agent, server, temp_dir};
use async_io::Async;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt, StreamExt};
use proto::ErrorCode;
use proto::message::Action;
use std::net::{TcpListener, TcpStream};

struct Fixture {
    hub: Arc<Hub>,
    store: Arc<Store>,
    events: Arc<Events>,
    metrics: Arc<PanelMetrics>,
    shutdown: Shutdown,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn fixture(tag: &str, heartbeat: Duration, timeout: Duration) -> Fixture {
    fixture_with(
        tag,
        HubSettings {
            heartbeat,
            command_timeout: timeout,
            max_frame: 4096,
            agent_rate: 1000.0,
            agent_burst: 1000.0,
            queue: 16,
        },
    )
}

fn fixture_with(tag: &str, settings: HubSettings) -> Fixture {
    let dir = temp_dir(tag);
    let store = Arc::new(Store::open(&dir).unwrap());
    let (auth, _) = Auth::init(&dir, store.clone(), Some("t".into())).unwrap();
    for id in ["a1", "a2"] {
        store.put_agent(&agent(id, "8g")).unwrap();
    }
    store.put_server(&server("s1", "a1", 100)).unwrap();
    store.put_server(&server("s2", "a2", 100)).unwrap();
    let metrics = Arc::new(PanelMetrics::default());
    let events = Events::new(16, metrics.clone());
    let nodes = crate::health::NodeHooks {
        health: crate::health::Health::new(
            300,
            events.clone(),
            Arc::new(crate::node_metrics::NodeMetrics::default()),
        ),
        history: Arc::new(crate::history::History::load(store.clone(), 5, 0).unwrap()),
        statuses: Arc::default(),
    };
    let hub = Hub::new(
        settings,
        store.clone(),
        Arc::new(auth),
        events.clone(),
        metrics.clone(),
        nodes,
    );
    Fixture {
        hub,
        store,
        events,
        metrics,
        shutdown: Shutdown::new(),
        dir,
    }
}

type Ws = WebSocketStream<Async<TcpStream>>;

/// Both ends of a fresh loopback TCP connection: (client, server).
async fn loopback() -> (Async<TcpStream>, Async<TcpStream>) {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let client = Async::<TcpStream>::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Connects a fake agent `agent_id` (family "fam1", as `store::tests::agent` sets) over a
/// loopback socket and returns its end.
async fn connect(f: &Fixture, agent_id: &str) -> Ws {
    let (client, server) = loopback().await;
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(4096))
        .max_frame_size(Some(4096));
    let server_ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(cfg)).await;
    let client_ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    smol::spawn(f.hub.clone().serve_agent(
        server_ws,
        agent_id.to_owned(),
        "fam1".to_owned(),
        f.shutdown.clone(),
    ))
    .detach();
    while !f.hub.is_online(agent_id) {
        Timer::after(Duration::from_millis(5)).await;
    }
    client_ws
}

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.next().await.expect("socket open").expect("frame") {
            WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            WsMessage::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Close(c))) => return c,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

fn response(id: &str, server: &str, ok: bool) -> WsMessage {
    let body = if ok {
        format!(
            r#"{{"id":"{id}","type":"response","timestamp":"2025-01-23T10:01:01Z","success":true,"data":{{"serverId":"{server}","status":"starting"}}}}"#
        )
    } else {
        format!(
            r#"{{"id":"{id}","type":"response","timestamp":"2025-01-23T10:01:01Z","success":false,"error":{{"code":"CONTAINER_NOT_FOUND","message":"gone"}}}}"#
        )
    };
    WsMessage::Text(body.into())
}

#[test]
fn command_is_answered_by_id() {
    let f = fixture(
        "hub-cmd",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::StartServer).await });
        let cmd = next_json(&mut agent).await;
        assert_eq!(cmd["type"], "command");
        assert_eq!(cmd["action"], "start_server");
        assert_eq!(cmd["serverId"], "s1");
        let id = cmd["id"].as_str().unwrap().to_owned();
        // A response to an unknown id first: ignored and counted.
        agent
            .send(response("someone-else", "s1", true))
            .await
            .unwrap();
        agent.send(response(&id, "s1", true)).await.unwrap();
        let r = call.await.unwrap();
        assert!(r.success);
        assert_eq!(r.id, id);
        assert_eq!(r.data.unwrap()["status"], "starting");
        assert_eq!(f.metrics.responses_unmatched.get(), 1);
        assert_eq!(
            f.metrics
                .commands(proto::ActionName::StartServer, Outcome::Ok),
            1
        );

        // An agent error is still an answer.
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
        let cmd = next_json(&mut agent).await;
        agent
            .send(response(cmd["id"].as_str().unwrap(), "s1", false))
            .await
            .unwrap();
        let r = call.await.unwrap();
        assert!(!r.success);
        assert_eq!(r.error.unwrap().code, "CONTAINER_NOT_FOUND");
    });
}

#[test]
fn unanswered_command_times_out_and_late_answer_is_dropped() {
    let f = fixture(
        "hub-timeout",
        Duration::from_secs(3600),
        Duration::from_millis(200),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        let err = f
            .hub
            .command("a1", Some("s1"), Action::StartServer)
            .await
            .unwrap_err();
        assert!(matches!(err, HubError::Timeout { .. }), "{err:?}");
        assert_eq!(err.code(), ErrorCode::Timeout);
        let cmd = next_json(&mut agent).await;
        agent
            .send(response(cmd["id"].as_str().unwrap(), "s1", true))
            .await
            .unwrap();
        // Prove the late answer was processed: a following pong round-trip.
        while f.metrics.responses_unmatched.get() == 0 {
            Timer::after(Duration::from_millis(5)).await;
        }
        assert!(f.hub.waiters.is_empty());
    });
}

#[test]
fn offline_agent_fails_at_once_and_disconnect_fails_pending() {
    let f = fixture(
        "hub-offline",
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    smol::block_on(async {
        let err = f
            .hub
            .command("a1", None, Action::GetStatus)
            .await
            .unwrap_err();
        assert_eq!(err, HubError::Offline("a1".into()));
        assert_eq!(err.http_status(), 503);

        let mut agent = connect(&f, "a1").await;
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::StartServer).await });
        let _cmd = next_json(&mut agent).await;
        agent.close(None).await.ok();
        drop(agent);
        // The command timeout is an hour: only the disconnect can end this. The command
        // went out, so the agent may have acted: lost, still 503.
        let err = call.await.unwrap_err();
        assert_eq!(err, HubError::Lost("a1".into()));
        assert_eq!(err.http_status(), 503);
        assert!(!f.hub.is_online("a1"));
    });
}

#[test]
fn agents_are_trusted_only_for_their_own_servers() {
    let f = fixture(
        "hub-trust",
        Duration::from_secs(3600),
        Duration::from_millis(300),
    );
    smol::block_on(async {
        let sub = f.events.subscribe(crate::events::Filter::default());
        let mut a1 = connect(&f, "a1").await;
        let mut a2 = connect(&f, "a2").await;
        // a2 answers a command sent to a1: dropped; the command times out.
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::StartServer).await });
        let cmd = next_json(&mut a1).await;
        a2.send(response(cmd["id"].as_str().unwrap(), "s2", true))
            .await
            .unwrap();
        assert!(matches!(call.await, Err(HubError::Timeout { .. })));
        // a1 reports an event about a2's server: dropped and counted.
        let foreign = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s2","logLevel":"INFO","message":"x"}}"#;
        let own = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s1","logLevel":"INFO","message":"y"}}"#;
        a1.send(WsMessage::Text(foreign.into())).await.unwrap();
        a1.send(WsMessage::Text(own.into())).await.unwrap();
        let got = sub.queue.pop().await.unwrap();
        // The one forwarded frame is the agent's own event, byte for byte.
        assert_eq!(got, WsMessage::Text(own.into()));
        assert!(f.metrics.frames_foreign.get() >= 2);
        assert!(sub.queue.is_empty());
    });
}

#[test]
fn garbage_is_answered_with_invalid_message() {
    let f = fixture(
        "hub-garbage",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        agent
            .send(WsMessage::Text("{not json".into()))
            .await
            .unwrap();
        let reply = next_json(&mut agent).await;
        assert_eq!(reply["type"], "response");
        assert_eq!(reply["success"], false);
        assert_eq!(reply["error"]["code"], "INVALID_MESSAGE");
        agent
            .send(WsMessage::Text(
                r#"{"id":"x","type":"command","timestamp":"t","action":"start_server"}"#.into(),
            ))
            .await
            .unwrap();
        let reply = next_json(&mut agent).await;
        assert_eq!(reply["id"], "x");
        assert_eq!(reply["error"]["code"], "INVALID_MESSAGE");
        assert_eq!(f.metrics.frames_invalid.get(), 2);
        // Still connected and serving.
        assert!(f.hub.is_online("a1"));
    });
}

#[test]
fn frames_over_the_rate_are_refused_with_rate_limited() {
    let f = fixture_with(
        "hub-rate",
        HubSettings {
            heartbeat: Duration::from_secs(3600),
            command_timeout: Duration::from_secs(30),
            max_frame: 4096,
            // Practically no refill during the test: the burst is all there is.
            agent_rate: 0.001,
            agent_burst: 2.0,
            queue: 16,
        },
    );
    smol::block_on(async {
        let sub = f.events.subscribe(crate::events::Filter::default());
        let mut agent = connect(&f, "a1").await;
        let ev = r#"{"type":"event","timestamp":"2025-01-23T10:05:00Z","event":"server_log","data":{"serverId":"s1","logLevel":"INFO","message":"y"}}"#;
        for _ in 0..3 {
            agent.send(WsMessage::Text(ev.into())).await.unwrap();
        }
        let reply = next_json(&mut agent).await;
        assert_eq!(reply["error"]["code"], "RATE_LIMITED", "{reply}");
        assert_eq!(f.metrics.rate_limited_agent.get(), 1);
        // The first two went through, the third did not.
        assert_eq!(sub.queue.len(), 2);
    });
}

#[test]
fn answers_to_awaited_commands_are_not_rate_limited() {
    let f = fixture_with(
        "hub-rate-answers",
        HubSettings {
            heartbeat: Duration::from_secs(3600),
            command_timeout: Duration::from_secs(30),
            max_frame: 4096,
            agent_rate: 0.001,
            agent_burst: 1.0,
            queue: 16,
        },
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        // Five commands in a row (a transfer's chunks): every answer arrives although the
        // frame budget holds one token.
        for _ in 0..5 {
            let hub = f.hub.clone();
            let call =
                smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
            let cmd = next_json(&mut agent).await;
            let id = cmd["id"].as_str().unwrap();
            agent.send(response(id, "s1", true)).await.unwrap();
            assert!(call.await.unwrap().success);
        }
        assert_eq!(f.metrics.rate_limited_agent.get(), 0);
        // An answer nobody waits for spends the budget like any frame.
        for _ in 0..2 {
            agent
                .send(response("cmd_nobody", "s1", true))
                .await
                .unwrap();
        }
        let reply = next_json(&mut agent).await;
        assert_eq!(reply["error"]["code"], "RATE_LIMITED", "{reply}");
    });
}

#[test]
fn oversize_message_closes_with_1009() {
    let f = fixture(
        "hub-size",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        let big = format!(r#"{{"type":"event","pad":"{}"}}"#, "x".repeat(8000));
        agent.send(WsMessage::Text(big.into())).await.unwrap();
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::Size);
        assert_eq!(f.metrics.frames_oversize.get(), 1);
    });
}

#[test]
fn missed_pongs_make_the_agent_offline() {
    let f = fixture(
        "hub-heartbeat",
        Duration::from_millis(30),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        // Answer the first ping with a pong carrying data; ignore the rest.
        let ping = next_json(&mut agent).await;
        assert_eq!(ping["type"], "ping");
        let pong = format!(
            r#"{{"id":"{}","type":"pong","timestamp":"2025-01-23T10:09:01Z","data":{{"agentStatus":"healthy","activeServers":3,"systemLoad":{{"cpu":25.5,"memory":65.2,"disk":40.1}}}}}}"#,
            ping["id"].as_str().unwrap()
        );
        agent.send(WsMessage::Text(pong.into())).await.unwrap();
        loop {
            let live = f.hub.live("a1").expect("still online");
            if let Some(p) = live.pong {
                assert_eq!(p.active_servers, 3);
                break;
            }
            Timer::after(Duration::from_millis(5)).await;
        }
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::from(CLOSE_HEARTBEAT));
        assert!(!f.hub.is_online("a1"));
        assert_eq!(f.metrics.heartbeat_timeouts.get(), 1);
        assert_eq!(f.metrics.agents_online.get(), 0);
    });
}

#[test]
fn new_connection_replaces_the_old_one() {
    let f = fixture(
        "hub-replace",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut first = connect(&f, "a1").await;
        let before = f.hub.registry.get("a1").unwrap().id;
        let mut second = connect_again(&f, "a1", before).await;
        let close = next_close(&mut first).await.expect("close frame");
        assert_eq!(close.code, CloseCode::from(CLOSE_REPLACED));
        assert!(f.hub.is_online("a1"));
        assert_eq!(f.metrics.agents_online.get(), 1);
        // Commands go to the new connection.
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
        let cmd = next_json(&mut second).await;
        second
            .send(response(cmd["id"].as_str().unwrap(), "s1", true))
            .await
            .unwrap();
        assert!(call.await.unwrap().success);
    });
}

async fn connect_again(f: &Fixture, agent_id: &str, old: u64) -> Ws {
    let ws = connect(f, agent_id).await;
    while f.hub.registry.get(agent_id).unwrap().id == old {
        Timer::after(Duration::from_millis(5)).await;
    }
    ws
}

#[test]
fn revoked_family_is_disconnected_at_the_next_heartbeat() {
    let f = fixture(
        "hub-revoke",
        Duration::from_millis(30),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        f.store
            .rotate_refresh("a1", "fam1", "not-current", "x", 1)
            .unwrap();
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::Policy);
        assert!(!f.hub.is_online("a1"));
    });
}

#[test]
fn shutdown_closes_agents_with_going_away() {
    let f = fixture(
        "hub-shutdown",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        f.shutdown.trigger();
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::Away);
        f.hub.close_all(Duration::from_secs(5)).await;
        assert_eq!(f.hub.online_count(), 0);
    });
}

#[test]
fn shutdown_waits_for_an_admitted_agent_whose_task_has_not_started() {
    let f = fixture(
        "hub-admit",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        // The upgrade handler admits the socket; then shutdown begins before its task runs.
        let admitted = f.hub.admit();
        assert!(admitted.is_some());
        f.shutdown.trigger();
        let mut idle = Box::pin(f.hub.tracker.idle());
        assert!(future::poll_once(&mut idle).await.is_none(), "must wait");
        assert!(f.hub.admit().is_none(), "no admission once shutdown began");
        let (client, server) = loopback().await;
        let server_ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut agent = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let task = smol::spawn(f.hub.clone().serve_agent_admitted(
            admitted,
            server_ws,
            "a1".to_owned(),
            "fam1".to_owned(),
            f.shutdown.clone(),
        ));
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::Away);
        task.await;
        idle.await;
        assert_eq!(f.hub.online_count(), 0);
    });
}

/// A socket that panics inside `poll_read` once `armed` is set: a bug (ours or a
/// library's) unwinding through the connection task.
struct PanicOnRead<S> {
    inner: S,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for PanicOnRead<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the agent socket");
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PanicOnRead<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[test]
fn a_panic_in_the_connection_task_still_detaches_the_agent() {
    let f = fixture(
        "hub-panic",
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    smol::block_on(async {
        let (client, server) = loopback().await;
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let socket = PanicOnRead {
            inner: server,
            armed: armed.clone(),
        };
        let server_ws = WebSocketStream::from_raw_socket(socket, Role::Server, None).await;
        let mut agent = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        // As the HTTP server runs an upgraded socket: the panic is caught, the task ends.
        let task = smol::spawn(
            std::panic::AssertUnwindSafe(f.hub.clone().serve_agent(
                server_ws,
                "a1".to_owned(),
                "fam1".to_owned(),
                f.shutdown.clone(),
            ))
            .catch_unwind(),
        );
        while !f.hub.is_online("a1") {
            Timer::after(Duration::from_millis(5)).await;
        }
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::StartServer).await });
        let _cmd = next_json(&mut agent).await;
        armed.store(true, std::sync::atomic::Ordering::SeqCst);
        agent.send(WsMessage::Text("{}".into())).await.unwrap();
        assert!(task.await.is_err(), "the injected panic ended the task");
        // Offline at once, and the pending command failed without waiting for its
        // (hour-long) timeout.
        assert!(!f.hub.is_online("a1"));
        assert_eq!(f.metrics.agents_online.get(), 0);
        assert_eq!(call.await.unwrap_err(), HubError::Lost("a1".into()));
        assert!(f.hub.waiters.is_empty());
    });
}

#[test]
fn pongs_that_answer_no_ping_do_not_keep_an_agent_online() {
    let f = fixture(
        "hub-fake-pongs",
        Duration::from_millis(30),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        let fake = r#"{"id":"hb_999","type":"pong","timestamp":"2025-01-23T10:09:01Z","data":{"agentStatus":"healthy","activeServers":3,"systemLoad":{"cpu":1,"memory":1,"disk":1}}}"#;
        // Unsolicited pongs (ids of pings never sent) while ignoring the real pings.
        let started = std::time::Instant::now();
        let closed = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "fake pongs kept the agent online"
            );
            agent.send(WsMessage::Text(fake.into())).await.ok();
            let next = future::or(async { Some(agent.next().await) }, async {
                Timer::after(Duration::from_millis(10)).await;
                None
            })
            .await;
            match next {
                Some(Some(Ok(WsMessage::Close(c)))) => break c,
                Some(None) | Some(Some(Err(_))) => break None,
                _ => {}
            }
        };
        assert_eq!(closed.unwrap().code, CloseCode::from(CLOSE_HEARTBEAT));
        assert!(f.hub.live("a1").is_none());
        assert_eq!(f.metrics.heartbeat_timeouts.get(), 1);
    });
}

#[test]
fn control_frames_over_the_budget_close_with_1008() {
    let f = fixture_with(
        "hub-ping-flood",
        HubSettings {
            heartbeat: Duration::from_secs(3600),
            command_timeout: Duration::from_secs(30),
            max_frame: 4096,
            agent_rate: 0.001,
            agent_burst: 2.0,
            queue: 16,
        },
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        for _ in 0..3 {
            agent
                .send(WsMessage::Ping(vec![7u8; 4].into()))
                .await
                .unwrap();
        }
        let close = next_close(&mut agent).await.expect("close frame");
        assert_eq!(close.code, CloseCode::Policy);
        assert_eq!(f.metrics.rate_limited_agent.get(), 1);
        assert!(!f.hub.is_online("a1"));
    });
}

#[test]
fn a_command_over_the_frame_limit_is_refused_before_it_is_sent() {
    let f = fixture(
        "hub-big-command",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let mut agent = connect(&f, "a1").await;
        let action = Action::SendCommand(proto::message::SendCommand {
            command: "x".repeat(8192).into(),
        });
        let err = f.hub.command("a1", Some("s1"), action).await.unwrap_err();
        assert!(
            matches!(err, HubError::TooLarge { max: 4096, .. }),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 413);
        // Nothing reached the agent, which is still connected and served.
        let hub = f.hub.clone();
        let call =
            smol::spawn(async move { hub.command("a1", Some("s1"), Action::GetStatus).await });
        let cmd = next_json(&mut agent).await;
        assert_eq!(cmd["action"], "get_status");
        agent
            .send(response(cmd["id"].as_str().unwrap(), "s1", true))
            .await
            .unwrap();
        assert!(call.await.unwrap().success);
    });
}

/// The future of an agent connection lives as long as the connection, one per agent: its
/// size is per-agent memory. It used to keep the WebSocket it was given (300+ bytes, moved
/// into the split halves at once) for its whole life: 1,464 bytes in a debug build.
#[test]
fn an_agent_connection_future_is_small() {
    use crate::http::ws::Upgraded;
    let f = fixture(
        "hub-sizes",
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    smol::block_on(async {
        let (_client, server) = loopback().await;
        let ws = WebSocketStream::from_raw_socket(
            Upgraded::from_stream(server, Vec::new()),
            Role::Server,
            None,
        )
        .await;
        let ws_size = std::mem::size_of_val(&ws);
        let serve = f.hub.clone().serve_agent_admitted(
            None,
            ws,
            "a1".into(),
            "fam1".into(),
            f.shutdown.clone(),
        );
        let size = std::mem::size_of_val(&serve);
        eprintln!("agent connection future: {size} bytes (the WebSocket: {ws_size})");
        assert!(size <= 1200, "agent connection future is {size} bytes");
        // Not admitted: it closes the socket and ends.
        serve.await;
    });
}
