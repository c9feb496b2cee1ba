//! A live subscription to the panel's `GET /api/events` WebSocket, collected in the
//! background so tests can wait for "an event like this, after that point".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_lite::StreamExt;
use serde_json::Value;
use std::sync::Mutex;

use crate::panel::Panel;

/// Every event frame received so far, in arrival order.
pub struct Events {
    frames: Arc<Mutex<Vec<Value>>>,
    closed: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Events {
    /// Subscribes (the upgrade has completed when this returns).
    pub fn subscribe(panel: &Panel) -> Events {
        let url = panel.api.rest.wss_url("/api/events");
        let tls = panel.api.tls();
        let auth = format!("Bearer {}", panel.token);
        let ws = smol::block_on(ctrl_io::ws_connect(
            &url,
            tls,
            &[("Authorization", auth.as_str())],
        ))
        .unwrap_or_else(|e| panic!("subscribing to {url}: {e}"));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, c, s) = (frames.clone(), closed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            smol::block_on(async move {
                let mut ws = ws;
                loop {
                    if s.load(Ordering::Relaxed) {
                        let _ = ws.close(None).await;
                        return;
                    }
                    let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
                        smol::Timer::after(Duration::from_millis(200)).await;
                        None
                    })
                    .await;
                    let end =
                        |why: String| *c.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    match next {
                        None => continue,
                        Some(None) => return end("stream ended".into()),
                        Some(Some(Err(e))) => return end(format!("error: {e}")),
                        Some(Some(Ok(WsMessage::Text(t)))) => {
                            // Every frame must be one of the spec's event messages.
                            match proto::codec::decode(t.as_bytes()) {
                                Ok(proto::Message::Event(_)) => {}
                                Ok(other) => {
                                    return end(format!("non-event frame {other:?}: {t}"));
                                }
                                Err(e) => return end(format!("undecodable frame ({e}): {t}")),
                            }
                            match serde_json::from_str(t.as_str()) {
                                Ok(v) => f.lock().unwrap_or_else(|e| e.into_inner()).push(v),
                                Err(e) => return end(format!("frame is not JSON ({e}): {t}")),
                            }
                        }
                        Some(Some(Ok(WsMessage::Close(fr)))) => {
                            return end(format!("closed by the panel: {fr:?}"));
                        }
                        Some(Some(Ok(_))) => {}
                    }
                }
            })
        });
        Events {
            frames,
            closed,
            stop,
            thread: Some(thread),
        }
    }

    /// A copy of every frame so far.
    pub fn all(&self) -> Vec<Value> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many frames have arrived (a "mark" for [`Events::wait_after`]).
    pub fn mark(&self) -> usize {
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for a frame at index ≥ `from` matching `pred`; returns `(index, frame)`.
    pub fn wait_after(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((i, v)) = frames.iter().enumerate().skip(from).find(|(_, v)| pred(v)) {
                    return (i, v.clone());
                }
            }
            let closed = self
                .closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if Instant::now() > deadline || closed.is_some() {
                let frames = self.all();
                let tail: Vec<String> = frames
                    .iter()
                    .skip(frames.len().saturating_sub(40))
                    .map(|v| v.to_string())
                    .collect();
                panic!(
                    "no event {what} (from #{from}; {} frames; subscription {}); last frames:\n{}",
                    frames.len(),
                    closed.as_deref().unwrap_or("open"),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `event` name of a frame.
pub fn kind(v: &Value) -> &str {
    v["event"].as_str().unwrap_or("")
}

/// `data.serverId` (or top-level `serverId`) of a frame.
pub fn server_of(v: &Value) -> &str {
    v["data"]["serverId"]
        .as_str()
        .or_else(|| v["serverId"].as_str())
        .unwrap_or("")
}

/// A `server_status_changed` frame of `server` whose `currentStatus` is `status`.
pub fn is_status(v: &Value, server: &str, status: &str) -> bool {
    kind(v) == "server_status_changed"
        && server_of(v) == server
        && v["data"]["currentStatus"] == status
}

/// A `server_log` frame of `server` whose message contains `needle`.
pub fn is_log(v: &Value, server: &str, needle: &str) -> bool {
    kind(v) == "server_log"
        && server_of(v) == server
        && v["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle))
}

/// A `resource_update` frame of `server` with non-zero memory used.
pub fn is_resource_with_memory(v: &Value, server: &str) -> bool {
    kind(v) == "resource_update"
        && server_of(v) == server
        && v["data"]["memory"]["used"]
            .as_str()
            .and_then(|q| proto::quantity::Bytes::parse(q).ok())
            .is_some_and(|b| b.0 > 0)
}
