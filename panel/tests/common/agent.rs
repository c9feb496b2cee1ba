//! An in-test fake agent: connects to `/ws/agents` with `Authorization: Bearer` and
//! `X-Agent-ID`, answers the panel's pings with the spec's pong (switchable), hands every
//! command to the test (or to a scripted auto-responder), and sends whatever frames the
//! test asks for — valid responses and events, or garbage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_tungstenite::tungstenite::Message as WsMsg;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{ClientError, DEADLINE, Panel, Ws, net, within};

/// The spec's pong `data`.
pub fn pong_data() -> Value {
    json!({
        "agentStatus": "healthy",
        "activeServers": 3,
        "systemLoad": {"cpu": 25.5, "memory": 65.2, "disk": 40.1}
    })
}

/// How the connection ended.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The close frame's code, if the panel sent one.
    pub code: Option<u16>,
    pub reason: String,
    /// A transport error that ended the stream, if any.
    pub error: Option<String>,
}

enum Out {
    Msg(WsMsg),
}

/// One live WebSocket connection of a fake agent.
pub struct Conn {
    /// Every `command` frame received (unless an auto-responder consumes them).
    pub commands: async_channel::Receiver<Value>,
    /// Every other text frame that is not a ping or command (JSON, or a JSON string for
    /// non-JSON text).
    pub others: async_channel::Receiver<Value>,
    /// Receives exactly one value when the connection ends.
    pub closed: async_channel::Receiver<Closed>,
    /// Pings received so far.
    pub pings: Arc<AtomicU64>,
    answer_pings: Arc<AtomicBool>,
    out: async_channel::Sender<Out>,
    _reader: smol::Task<()>,
    _writer: smol::Task<()>,
}

impl Conn {
    /// Connects as `agent` with its agent token; panics if the panel refuses.
    pub async fn connect(panel: &Panel, agent: &proto::rest::RegisteredAgent) -> Conn {
        Self::connect_with(panel, &agent.token, &agent.id)
            .await
            .unwrap_or_else(|e| panic!("agent {} connect: {e}", agent.id))
    }

    /// Connects with an arbitrary token and agent id header.
    pub async fn connect_with(
        panel: &Panel,
        token: &str,
        agent_id: &str,
    ) -> Result<Conn, ClientError> {
        let auth = format!("Bearer {token}");
        let ws = net::ws_connect(
            &panel.ws_url(),
            panel.tls.clone(),
            &[("Authorization", &auth), ("X-Agent-ID", agent_id)],
        )
        .await?;
        Ok(Conn::from_ws(ws))
    }

    /// Wraps an established WebSocket.
    pub fn from_ws(ws: Ws) -> Conn {
        let (mut sink, mut stream) = ws.split();
        let (out_tx, out_rx) = async_channel::unbounded::<Out>();
        let (cmd_tx, cmd_rx) = async_channel::unbounded();
        let (other_tx, other_rx) = async_channel::unbounded();
        let (closed_tx, closed_rx) = async_channel::bounded(1);
        let pings = Arc::new(AtomicU64::new(0));
        let answer_pings = Arc::new(AtomicBool::new(true));

        let writer = smol::spawn(async move {
            while let Ok(Out::Msg(m)) = out_rx.recv().await {
                let is_close = matches!(m, WsMsg::Close(_));
                if sink.send(m).await.is_err() || is_close {
                    break;
                }
            }
        });

        let reader = {
            let pings = pings.clone();
            let answer = answer_pings.clone();
            let out = out_tx.clone();
            smol::spawn(async move {
                let mut closed = Closed {
                    code: None,
                    reason: String::new(),
                    error: None,
                };
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(WsMsg::Text(t)) => {
                            let v: Value = serde_json::from_str(t.as_str())
                                .unwrap_or_else(|_| Value::String(t.as_str().to_owned()));
                            match v["type"].as_str() {
                                Some("ping") => {
                                    pings.fetch_add(1, Ordering::SeqCst);
                                    if answer.load(Ordering::SeqCst) {
                                        let pong = json!({
                                            "id": v["id"],
                                            "type": "pong",
                                            "timestamp": proto::time::now_rfc3339(),
                                            "data": pong_data(),
                                        });
                                        let _ = out.send(Out::Msg(text(&pong))).await;
                                    }
                                }
                                Some("command") => {
                                    let _ = cmd_tx.send(v).await;
                                }
                                _ => {
                                    let _ = other_tx.send(v).await;
                                }
                            }
                        }
                        Ok(WsMsg::Close(frame)) => {
                            if let Some(f) = frame {
                                closed.code = Some(u16::from(f.code));
                                closed.reason = f.reason.as_str().to_owned();
                            } else {
                                closed.code = Some(1005);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            closed.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                let _ = closed_tx.send(closed).await;
            })
        };

        Conn {
            commands: cmd_rx,
            others: other_rx,
            closed: closed_rx,
            pings,
            answer_pings,
            out: out_tx,
            _reader: reader,
            _writer: writer,
        }
    }

    /// Turns answering pings on or off.
    pub fn set_answer_pings(&self, on: bool) {
        self.answer_pings.store(on, Ordering::SeqCst);
    }

    pub async fn send_json(&self, v: &Value) {
        self.send(text(v)).await;
    }

    pub async fn send_text(&self, s: impl Into<String>) {
        self.send(WsMsg::text(s.into())).await;
    }

    pub async fn send_binary(&self, b: Vec<u8>) {
        self.send(WsMsg::binary(b)).await;
    }

    pub async fn send(&self, m: WsMsg) {
        // The writer may be gone if the panel closed us; tests then observe `closed`.
        let _ = self.out.send(Out::Msg(m)).await;
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&self) {
        self.send(WsMsg::Close(None)).await;
    }

    /// A success response to the command `id`.
    pub async fn respond_ok(&self, id: &str, data: Value) {
        self.send_json(&ok_response(id, data)).await;
    }

    /// An error response to the command `id`.
    pub async fn respond_err(&self, id: &str, code: &str, message: &str) {
        self.send_json(&err_response(id, code, message)).await;
    }

    /// An event frame with `data`.
    pub async fn send_event(&self, event: &str, data: Value) {
        self.send_json(&json!({
            "type": "event",
            "timestamp": proto::time::now_rfc3339(),
            "event": event,
            "data": data,
        }))
        .await;
    }

    /// The next command frame (panics after the deadline).
    pub async fn next_command(&self) -> Value {
        within(
            DEADLINE,
            "a command at the fake agent",
            self.commands.recv(),
        )
        .await
        .expect("agent connection ended while waiting for a command")
    }

    /// The next non-ping, non-command frame.
    pub async fn next_other(&self) -> Value {
        within(DEADLINE, "a frame at the fake agent", self.others.recv())
            .await
            .expect("agent connection ended while waiting for a frame")
    }

    /// Waits for the connection to end.
    pub async fn wait_closed(&self) -> Closed {
        within(DEADLINE, "the agent connection to end", self.closed.recv())
            .await
            .expect("closed channel")
    }

    /// Answers every command with `script(cmd)` (no answer when it returns `None`), in a
    /// background task; returns the commands seen so far.
    pub fn auto_respond(
        &self,
        script: impl Fn(&Value) -> Option<Value> + Send + 'static,
    ) -> AutoResponder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cmds = self.commands.clone();
        let out = self.out.clone();
        let seen2 = seen.clone();
        let task = smol::spawn(async move {
            while let Ok(cmd) = cmds.recv().await {
                seen2.lock().push(cmd.clone());
                if let Some(resp) = script(&cmd)
                    && out.send(Out::Msg(text(&resp))).await.is_err()
                {
                    break;
                }
            }
        });
        AutoResponder { seen, _task: task }
    }
}

/// A background responder; stops when dropped.
pub struct AutoResponder {
    pub seen: Arc<Mutex<Vec<Value>>>,
    _task: smol::Task<()>,
}

fn text(v: &Value) -> WsMsg {
    WsMsg::text(serde_json::to_string(v).expect("serialize"))
}

pub fn ok_response(id: &str, data: Value) -> Value {
    json!({
        "id": id,
        "type": "response",
        "timestamp": proto::time::now_rfc3339(),
        "success": true,
        "message": "ok",
        "data": data,
    })
}

pub fn err_response(id: &str, code: &str, message: &str) -> Value {
    json!({
        "id": id,
        "type": "response",
        "timestamp": proto::time::now_rfc3339(),
        "success": false,
        "error": {"code": code, "message": message},
    })
}

/// The answer a healthy agent gives to each action (used with `Conn::auto_respond`).
pub fn standard_response(cmd: &Value) -> Option<Value> {
    let id = cmd["id"].as_str()?;
    let server_id = cmd["serverId"]
        .as_str()
        .or_else(|| cmd["payload"]["serverId"].as_str())
        .unwrap_or_default()
        .to_owned();
    let status = match cmd["action"].as_str()? {
        "create_server" => "created",
        "start_server" => "starting",
        "stop_server" => "stopping",
        "restart_server" => "restarting",
        "kill_server" => "stopped",
        "delete_server" => "deleted",
        "get_status" => {
            return Some(ok_response(
                id,
                json!({
                    "serverId": server_id,
                    "status": "running",
                    "containerId": "docker_container_id",
                    "uptime": 3600
                }),
            ));
        }
        _ => return Some(ok_response(id, json!({"serverId": server_id}))),
    };
    Some(ok_response(
        id,
        json!({"serverId": server_id, "status": status}),
    ))
}
