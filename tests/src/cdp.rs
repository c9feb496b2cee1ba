//! A small Chrome DevTools Protocol client for the browser tests: launches Debian's headless
//! `chromium` with a temporary profile, talks to it over one WebSocket (async-tungstenite on
//! smol, in a background thread) and gives tests blocking calls — navigate, evaluate, click,
//! type, keys, viewport, theme, screenshots, heap — plus everything the page reported as a
//! problem: console errors and warnings, uncaught exceptions, and browser log entries (CSP
//! violations and failed loads arrive there).
//!
//! One browser process per test; pages are targets attached in "flat" mode, so every
//! command and event carries the page's `sessionId` over the same socket.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Proc, TempDir, repo_root};

/// How long one DevTools call may take (a busy 2-core machine runs several builds at once).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Page::wait_for`] waits by default. A deadline, never a measurement.
pub const WAIT: Duration = Duration::from_secs(30);
/// Largest DevTools message accepted (screenshots are base64 PNGs).
const MAX_MESSAGE: usize = 64 << 20;
/// Events kept for debugging; problems are kept separately and never dropped.
const EVENT_LOG: usize = 2000;

/// The `chromium` binary: `$CHROMIUM`, else `chromium` on `PATH`. Without it the test skips
/// with a notice, except with `CI=true`, where a missing browser is a failure.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: chromium is required when CI=true (apt-get install chromium)"
        );
        eprintln!("SKIP {test}: chromium not installed (apt-get install chromium)");
    }
    found
}

/// Where screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("ui-screenshots")
}

/// Something a page reported that a clean page never does.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `console.error`, `exception`, or `log.<source>` (e.g. `log.security`, `log.network`).
    pub kind: String,
    pub level: String,
    pub text: String,
    pub url: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.kind, self.level, self.text)?;
        if !self.url.is_empty() {
            write!(f, " ({})", self.url)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    replies: HashMap<u64, Value>,
    /// JavaScript dialogs per page session: (type, message).
    dialogs: HashMap<String, Vec<(String, String)>>,
    /// Problems per page session.
    problems: HashMap<String, Vec<Problem>>,
    events: VecDeque<Value>,
    closed: Option<String>,
}

struct Conn {
    out: async_channel::Sender<String>,
    state: Mutex<State>,
    changed: Condvar,
    next_id: Mutex<u64>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self) -> u64 {
        let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    /// One command; `Err` carries the protocol's error or why no answer came.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        let id = self.id();
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.out
            .send_blocking(msg.to_string())
            .map_err(|_| format!("{method}: the DevTools connection is closed"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut st = self.lock();
        loop {
            if let Some(mut reply) = st.replies.remove(&id) {
                if let Some(err) = reply.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(reply["result"].take());
            }
            if let Some(why) = &st.closed {
                return Err(format!("{method}: DevTools connection closed: {why}"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("{method}: no answer within {CALL_TIMEOUT:?}"));
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn receive(&self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if msg["method"] == "Page.javascriptDialogOpening" {
            self.answer_dialog(&msg);
        }
        let mut st = self.lock();
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            st.replies.insert(id, msg);
        } else {
            if let (Some(session), Some(p)) = (msg["sessionId"].as_str(), problem(&msg)) {
                st.problems.entry(session.to_owned()).or_default().push(p);
            }
            if st.events.len() == EVENT_LOG {
                st.events.pop_front();
            }
            st.events.push_back(msg);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// A JavaScript dialog blocks the page (and a pending `Page.navigate`) until answered,
    /// so it is answered here, on the I/O thread: `beforeunload` ("leave the page?") is
    /// accepted, anything else dismissed and reported as a problem (the UI never uses
    /// `alert`/`confirm`/`prompt`). Tests read them with [`Page::dialogs`].
    fn answer_dialog(&self, msg: &Value) {
        let Some(session) = msg["sessionId"].as_str() else {
            return;
        };
        let kind = msg["params"]["type"].as_str().unwrap_or("").to_owned();
        let text = msg["params"]["message"].as_str().unwrap_or("").to_owned();
        let accept = kind == "beforeunload";
        let answer = json!({"id": self.id(), "sessionId": session,
            "method": "Page.handleJavaScriptDialog", "params": {"accept": accept}});
        let _ = self.out.try_send(answer.to_string());
        let mut st = self.lock();
        if !accept {
            st.problems
                .entry(session.to_owned())
                .or_default()
                .push(Problem {
                    kind: "dialog".into(),
                    level: kind.clone(),
                    text: text.clone(),
                    url: String::new(),
                });
        }
        st.dialogs
            .entry(session.to_owned())
            .or_default()
            .push((kind, text));
    }

    fn close(&self, why: String) {
        self.lock().closed.get_or_insert(why);
        self.changed.notify_all();
    }
}

/// The problem an event reports, if any.
fn problem(msg: &Value) -> Option<Problem> {
    let p = &msg["params"];
    match msg["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let level = p["type"].as_str().unwrap_or("");
            if !matches!(level, "error" | "warning" | "assert") {
                return None;
            }
            let text = p["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|a| {
                            a["value"]
                                .as_str()
                                .map(str::to_owned)
                                .or_else(|| a["description"].as_str().map(str::to_owned))
                                .unwrap_or_else(|| a["value"].to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            Some(Problem {
                kind: "console".into(),
                level: level.into(),
                text,
                url: String::new(),
            })
        }
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            let text = d["exception"]["description"]
                .as_str()
                .or_else(|| d["text"].as_str())
                .unwrap_or("exception")
                .to_owned();
            Some(Problem {
                kind: "exception".into(),
                level: "error".into(),
                text,
                url: d["url"].as_str().unwrap_or("").into(),
            })
        }
        "Log.entryAdded" => {
            let e = &p["entry"];
            let level = e["level"].as_str().unwrap_or("");
            if !matches!(level, "error" | "warning") {
                return None;
            }
            Some(Problem {
                kind: format!("log.{}", e["source"].as_str().unwrap_or("other")),
                level: level.into(),
                text: e["text"].as_str().unwrap_or("").into(),
                url: e["url"].as_str().unwrap_or("").into(),
            })
        }
        _ => None,
    }
}

/// A headless Chromium with its own temporary profile; killed (with every process it
/// started) on drop.
pub struct Browser {
    conn: Arc<Conn>,
    proc: Proc,
    _profile: TempDir,
}

impl Browser {
    /// Launches `chromium` (see [`chromium_or_skip`]) and connects to its DevTools socket.
    /// The panel's self-signed certificate is accepted with `--ignore-certificate-errors`
    /// (tests only).
    #[allow(unsafe_code, reason = "geteuid(2) through libc")]
    pub fn launch(chromium: &Path) -> Browser {
        let profile = TempDir::new("chromium");
        let mut cmd = Command::new(chromium);
        cmd.arg("--headless")
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args([
                "--ignore-certificate-errors",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--mute-audio",
                "--lang=en-US",
                "--window-size=1280,900",
            ]);
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            // Chromium refuses to run its sandbox as root (CI runs as root).
            cmd.arg("--no-sandbox");
        }
        cmd.arg("about:blank");
        // Its own process group, so drop can end every process it started (renderers,
        // zygote, utilities) and nothing else.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let proc = Proc::spawn("chromium", cmd);
        let line = proc.wait_for_line("DevTools listening on ws://", Duration::from_secs(60));
        let url = line
            .split("DevTools listening on ")
            .nth(1)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        let conn = connect(&url);
        Browser {
            conn,
            proc,
            _profile: profile,
        }
    }

    /// A new tab (1280×900), with console, log, page and performance reporting on.
    pub fn page(&self) -> Page {
        let target = self
            .conn
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let page = Page {
            conn: self.conn.clone(),
            session: attached["sessionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        for domain in ["Runtime", "Log", "Page", "Performance"] {
            page.call(&format!("{domain}.enable"), json!({}));
        }
        page.viewport(1280, 900, false);
        page
    }
}

impl Drop for Browser {
    #[allow(
        unsafe_code,
        reason = "kill(2) on the browser's process group through libc"
    )]
    fn drop(&mut self) {
        let _ = self.conn.call(None, "Browser.close", json!({}));
        let pid = self.proc.pid() as i32;
        if pid > 0 {
            // SAFETY: kill(2) on the process group we created for this browser.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        self.proc.kill9();
    }
}

fn connect(url: &str) -> Arc<Conn> {
    let (tx, rx) = async_channel::unbounded::<String>();
    let conn = Arc::new(Conn {
        out: tx,
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        next_id: Mutex::new(0),
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let c = conn.clone();
    let ws_url = url.to_owned();
    std::thread::spawn(move || {
        let url = ws_url;
        smol::block_on(async move {
            let addr = url
                .strip_prefix("ws://")
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_owned();
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            let ws = match smol::net::TcpStream::connect(&addr).await {
                Ok(tcp) => {
                    async_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config))
                        .await
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("connecting to {addr}: {e}")));
                    return;
                }
            };
            let (mut sink, mut stream) = match ws {
                Ok((ws, _)) => ws.split(),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("DevTools handshake: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let writer = async {
                while let Ok(text) = rx.recv().await {
                    if let Err(e) = sink.send(Message::text(text)).await {
                        return format!("send: {e}");
                    }
                }
                "closed by the test".to_owned()
            };
            let reader = async {
                while let Some(msg) = stream.next().await {
                    match msg {
                        Ok(Message::Text(t)) => c.receive(t.as_str()),
                        Ok(Message::Close(_)) => return "the browser closed it".to_owned(),
                        Ok(_) => {}
                        Err(e) => return format!("receive: {e}"),
                    }
                }
                "stream ended".to_owned()
            };
            let why = futures_lite::future::or(reader, writer).await;
            c.close(why);
        });
    });
    match ready_rx.recv_timeout(CALL_TIMEOUT) {
        Ok(Ok(())) => conn,
        Ok(Err(e)) => panic!("DevTools at {url}: {e}"),
        Err(_) => panic!("DevTools at {url}: no connection within {CALL_TIMEOUT:?}"),
    }
}

/// One tab.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
}

/// Keys [`Page::press`] knows: (key, code, virtual key code, text).
const KEYS: &[(&str, &str, u32, &str)] = &[
    ("Enter", "Enter", 13, "\r"),
    ("Escape", "Escape", 27, ""),
    ("Tab", "Tab", 9, ""),
    ("ArrowUp", "ArrowUp", 38, ""),
    ("ArrowDown", "ArrowDown", 40, ""),
    ("s", "KeyS", 83, "s"),
];

impl Page {
    /// A raw DevTools call on this page; panics on a protocol error.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.conn
            .call(Some(&self.session), method, params)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads `url` and waits for the document (not the app) to finish loading.
    /// Chromium abandons a navigation with `ERR_NETWORK_CHANGED` when an interface comes or
    /// goes (Docker adds veths while tests run): that one is tried again, a few times.
    pub fn goto(&self, url: &str) {
        for attempt in 1.. {
            let r = self.call("Page.navigate", json!({"url": url}));
            match r["errorText"].as_str() {
                Some("net::ERR_NETWORK_CHANGED") if attempt < 5 => continue,
                Some(err) => panic!("navigating to {url}: {err}"),
                None => break,
            }
        }
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            &format!("{url} to load"),
        );
    }

    /// Evaluates `expr` (promises awaited) and returns its JSON value; a thrown exception
    /// is `Err` with its description.
    pub fn try_eval(&self, expr: &str) -> Result<Value, String> {
        let mut r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception");
            return Err(text.to_owned());
        }
        Ok(r["result"]["value"].take())
    }

    /// Like [`try_eval`](Self::try_eval); panics on an exception.
    pub fn eval(&self, expr: &str) -> Value {
        self.try_eval(expr)
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// Polls `expr` until it is `true`; panics after [`WAIT`] naming `what`, with the page's
    /// text and problems.
    pub fn wait_for(&self, expr: &str, what: &str) {
        self.wait_for_long(expr, what, WAIT);
    }

    /// [`Page::wait_for`] with its own deadline (a server moved between nodes, …).
    pub fn wait_for_long(&self, expr: &str, what: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            if self.try_eval(expr) == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() > deadline {
                let text = self
                    .try_eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
                    .unwrap_or_default();
                panic!(
                    "timed out waiting for {what} ({expr});\npage text: {text}\nproblems: {:#?}",
                    self.problems()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the centre of the first element matching `selector` with real mouse events.
    pub fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let rect = self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return null; \
             el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (Some(x), Some(y)) = (rect[0].as_f64(), rect[1].as_f64()) else {
            panic!("click: nothing matches {selector}");
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Focuses `selector` and types `text` as keyboard input would insert it.
    pub fn type_into(&self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let found = self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.focus(); return true; }})()"
        ));
        assert_eq!(
            found,
            Value::Bool(true),
            "type_into: nothing matches {selector}"
        );
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Presses and releases one key of [`KEYS`] on the focused element; `ctrl` holds Control.
    pub fn press(&self, key: &str, ctrl: bool) {
        let &(key, code, vk, text) = KEYS
            .iter()
            .find(|k| k.0 == key)
            .unwrap_or_else(|| panic!("press: unknown key {key}"));
        let modifiers = if ctrl { 2 } else { 0 };
        let text = if ctrl { "" } else { text };
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": if text.is_empty() { "rawKeyDown" } else { "keyDown" }, "key": key, "code": code,
                   "windowsVirtualKeyCode": vk, "text": text, "unmodifiedText": text, "modifiers": modifiers}),
        );
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers}),
        );
    }

    /// Emulates a screen `width`×`height` CSS pixels (`mobile` for a phone).
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Emulates `prefers-color-scheme: light|dark`.
    pub fn color_scheme(&self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
    }

    /// Writes a PNG of the viewport to `target/ui-screenshots/<name>.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot {name}: bad base64: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot {name}: not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// JS heap in use after a full garbage collection, in bytes.
    pub fn heap_after_gc(&self) -> u64 {
        self.call("HeapProfiler.collectGarbage", json!({}));
        self.call("Runtime.getHeapUsage", json!({}))["usedSize"]
            .as_f64()
            .unwrap_or(0.0) as u64
    }

    /// `Performance.getMetrics` as name → value.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let r = self.call("Performance.getMetrics", json!({}));
        r["metrics"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| Some((x["name"].as_str()?.to_owned(), x["value"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every problem this page reported so far.
    pub fn problems(&self) -> Vec<Problem> {
        self.conn
            .lock()
            .problems
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// The JavaScript dialogs this page opened so far: (type, message). `beforeunload`
    /// ones were accepted.
    pub fn dialogs(&self) -> Vec<(String, String)> {
        self.conn
            .lock()
            .dialogs
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets the problems reported so far (after a deliberate one).
    pub fn clear_problems(&self) {
        self.conn.lock().problems.remove(&self.session);
    }

    /// Panics with the list unless the page reported no problem other than those `allowed`
    /// accepts (e.g. the expected `401` of the session probe).
    pub fn assert_clean(&self, what: &str, allowed: impl Fn(&Problem) -> bool) {
        let bad: Vec<String> = self
            .problems()
            .into_iter()
            .filter(|p| !allowed(p))
            .map(|p| p.to_string())
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: the page reported problems:\n{}",
            bad.join("\n")
        );
    }
}
