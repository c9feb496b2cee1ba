//! WebSocket control-frame floods against the real panel (in this process): an agent or an
//! events subscriber that sends pings as fast as it can and never reads the pongs must not
//! grow the panel's memory without bound, and must be disconnected.
//!
//! A counting global allocator attributes every live allocation to the side that made it
//! (as in `ws_memory.rs`): the test thread runs the client, everything else (smol's
//! executor threads, where the panel's tasks run) is the panel. Before the fix, tungstenite
//! queued one pong per ping in an unbounded write buffer: 400,000 pings grew the panel by
//! about 50 MB.

#![allow(unsafe_code, reason = "a counting global allocator")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use panel::app::Panel;
use panel::auth::AdminTokenOrigin;
use panel::config::Config;
use panel::shutdown::Shutdown;
use rustls_pki_types::ServerName;

struct Tagging;

static LIVE: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];
const CLIENT: usize = 0;
const SERVER: usize = 1;

thread_local! {
    static IS_CLIENT: Cell<bool> = const { Cell::new(false) };
}

fn side() -> usize {
    // `try_with`: during thread teardown the TLS slot may be gone.
    IS_CLIENT
        .try_with(|c| if c.get() { CLIENT } else { SERVER })
        .unwrap_or(SERVER)
}

fn header_size(layout: &Layout) -> usize {
    layout.align().max(16)
}

// SAFETY: every method forwards to `System` with a layout grown by a header that keeps the
// caller's alignment, and hands back a pointer inside that allocation.
unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = header_size(&layout);
        let full = Layout::from_size_align(layout.size() + h, layout.align()).unwrap();
        // SAFETY: `full` has a non-zero size (the header).
        let p = unsafe { System.alloc(full) };
        if p.is_null() {
            return p;
        }
        let s = side();
        // SAFETY: the header lies inside the allocation and is aligned for `usize`.
        unsafe { (p as *mut usize).write(s) };
        LIVE[s].fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `h < full.size()`, so the result stays inside the allocation.
        unsafe { p.add(h) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = header_size(&layout);
        // SAFETY: `ptr` came from `alloc` above, which offset it by `h`.
        let p = unsafe { ptr.sub(h) };
        // SAFETY: `alloc` wrote the side into this header.
        let s = unsafe { (p as *const usize).read() };
        LIVE[s].fetch_sub(layout.size() as isize, Ordering::Relaxed);
        let full = Layout::from_size_align(layout.size() + h, layout.align()).unwrap();
        // SAFETY: `p` and `full` are exactly what `alloc` got from `System`.
        unsafe { System.dealloc(p, full) };
    }
}

#[global_allocator]
static ALLOC: Tagging = Tagging;

/// Pings per flood (131 bytes on the wire each: 52 MB of pongs if all were queued).
const PINGS: usize = 400_000;
/// Most the panel may grow by during a flood.
const BOUND: isize = 8 << 20;

type Tls = futures_rustls::client::TlsStream<Async<TcpStream>>;

struct Running {
    addr: SocketAddr,
    token: String,
    connector: futures_rustls::TlsConnector,
    shutdown: Shutdown,
    task: smol::Task<()>,
    dir: std::path::PathBuf,
}

async fn start(tag: &str, tune: impl FnOnce(&mut Config)) -> Running {
    let dir = std::env::temp_dir().join(format!("panel-ws-flood-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        ..Config::default()
    };
    tune(&mut cfg);
    let shutdown = Shutdown::new();
    let panel = Panel::bind(&cfg, shutdown.clone()).await.unwrap();
    let started = panel.started().clone();
    let AdminTokenOrigin::Generated(token) = started.admin_token else {
        panic!("a fresh data dir generates the admin token");
    };
    let pem = std::fs::read(&started.cert_path).unwrap();
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let task = smol::spawn(async move {
        panel.run().await.unwrap();
    });
    Running {
        addr: started.addr,
        token,
        connector: futures_rustls::TlsConnector::from(Arc::new(client_cfg)),
        shutdown,
        task,
        dir,
    }
}

impl Running {
    async fn connect(&self) -> Tls {
        let tcp = Async::<TcpStream>::connect(self.addr).await.unwrap();
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// One request on its own connection; the response body as JSON.
    async fn post(&self, path: &str, body: &str) -> serde_json::Value {
        let mut tls = self.connect().await;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        serde_json::from_slice(&raw[at..]).unwrap()
    }

    /// Opens a WebSocket on `path` with `headers`; returns the socket after the 101.
    async fn upgrade(&self, path: &str, headers: &str) -> Tls {
        let mut tls = self.connect().await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut byte).await.unwrap(), 1, "EOF in the 101");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tls
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A registered agent's WebSocket.
async fn agent_socket(p: &Running) -> Tls {
    let reg = p
        .post(
            "/api/agents/register",
            r#"{"name":"flood","hostname":"127.0.0.1","port":8080,
                "capabilities":{"maxMemory":"1g","maxCpuCores":1,"dockerVersion":"24.0.0",
                "supportedArchitectures":["amd64"]}}"#,
        )
        .await;
    let id = reg["agent"]["id"].as_str().unwrap().to_owned();
    let token = reg["agent"]["token"].as_str().unwrap().to_owned();
    p.upgrade(
        "/ws/agents",
        &format!("Authorization: Bearer {token}\r\nX-Agent-ID: {id}\r\n"),
    )
    .await
}

/// Writes masked 125-byte pings until the panel drops the connection (or `PINGS` are sent,
/// then keeps pinging slowly until it does); never reads. Returns the panel's largest
/// growth seen, in bytes.
async fn flood(mut ws: Tls) -> isize {
    // Mask key 0: the payload goes as is.
    let mut ping = vec![0x89u8, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let batch: Vec<u8> = ping.repeat(1000);
    let base = LIVE[SERVER].load(Ordering::Relaxed);
    let mut peak = 0;
    let mut sent = 0;
    let started = Instant::now();
    loop {
        let chunk: &[u8] = if sent < PINGS { &batch } else { &ping };
        let ok = ws.write_all(chunk).await.is_ok() && ws.flush().await.is_ok();
        peak = peak.max(LIVE[SERVER].load(Ordering::Relaxed) - base);
        if !ok || peak >= BOUND {
            return peak;
        }
        sent += chunk.len() / ping.len();
        if sent >= PINGS {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the panel never closed a client that pings and does not read"
            );
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
    }
}

#[test]
fn ping_floods_are_bounded_and_disconnected() {
    IS_CLIENT.with(|c| c.set(true));
    smol::block_on(async {
        // 1. An agent flooding pings: over its frame rate it is disconnected.
        let p = start("agent", |_| {}).await;
        let peak = flood(agent_socket(&p).await).await;
        eprintln!("agent ping flood: panel grew by at most {peak} bytes");
        assert!(
            peak < BOUND,
            "agent ping flood grew the panel by {peak} bytes"
        );
        p.stop().await;

        // 2. Pings within an unlimited frame rate: the write buffer is bounded, and a peer
        //    that never reads misses its heartbeats and is disconnected.
        let p = start("agent-unlimited", |c| {
            c.agent_rate = 1e12;
            c.agent_burst = 1e12;
            c.heartbeat = Duration::from_secs(1);
        })
        .await;
        let peak = flood(agent_socket(&p).await).await;
        eprintln!("agent ping flood within the rate: panel grew by at most {peak} bytes");
        assert!(
            peak < BOUND,
            "agent ping flood grew the panel by {peak} bytes"
        );
        p.stop().await;

        // 3. An events subscriber flooding pings.
        let p = start("subscriber", |_| {}).await;
        let auth = format!("Authorization: Bearer {}\r\n", p.token);
        let ws = p.upgrade("/api/events", &auth).await;
        let peak = flood(ws).await;
        eprintln!("subscriber ping flood: panel grew by at most {peak} bytes");
        assert!(
            peak < BOUND,
            "subscriber ping flood grew the panel by {peak} bytes"
        );
        p.stop().await;
    });
}
