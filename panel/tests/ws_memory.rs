//! Memory held by the server per idle, upgraded WebSocket (TLS state, replay buffer,
//! tungstenite buffers, the connection task). The budget is 40 KiB per socket.
//!
//! A counting global allocator attributes every live allocation to the side that made it:
//! the test thread runs the clients, everything else (smol's executor threads, where the
//! server's tasks run) is the server. Each allocation carries a small header recording its
//! side, so frees on the other thread are still accounted correctly.

#![allow(unsafe_code, reason = "a counting global allocator")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use async_io::Async;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_util::StreamExt;
use panel::http::{Method, Reply, Request, Router, ServerConfig, ServerStats, WsStream, handler};
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
        // SAFETY: `full` has a non-zero size.
        let p = unsafe { System.alloc(full) };
        if p.is_null() {
            return p;
        }
        let s = side();
        // SAFETY: the header lies inside the allocation and is 16-byte aligned or more.
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

const SOCKETS: usize = 150;
const BUDGET: isize = 40 * 1024;

#[test]
fn idle_websocket_costs_the_server_less_than_40_kib() {
    IS_CLIENT.with(|c| c.set(true));
    let dir = std::env::temp_dir().join(format!("panel-ws-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tls = panel::tls::setup(&dir, None, None, &[]).unwrap();
    let pem = std::fs::read(&tls.cert_path).unwrap();
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();

    let mut router = Router::new();
    router.route(
        Method::Get,
        "/ws",
        handler(|_req: Request| async {
            Reply::Upgrade {
                // The library default (128 KiB read buffer): the server caps it.
                config: WebSocketConfig::default(),
                run: Box::new(|mut ws: WsStream| {
                    Box::pin(async move {
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_close() {
                                break;
                            }
                        }
                    })
                }),
            }
        }),
    );
    let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let shutdown = Shutdown::new();
    let stats = Arc::new(ServerStats::new());
    let server = smol::spawn(panel::http::serve(
        listener,
        tls.config.clone(),
        Arc::new(router),
        ServerConfig::default(),
        stats.clone(),
        shutdown.clone(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = futures_rustls::TlsConnector::from(Arc::new(client_cfg));

    smol::block_on(async {
        let open = |n: usize| {
            let connector = connector.clone();
            async move {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let tcp = Async::<TcpStream>::connect(addr).await.unwrap();
                    let tls = connector
                        .connect(ServerName::try_from("localhost").unwrap(), tcp)
                        .await
                        .unwrap();
                    let (mut ws, _) = async_tungstenite::client_async("wss://localhost/ws", tls)
                        .await
                        .unwrap();
                    // One round of traffic so every buffer has been used once.
                    ws.send(Message::text("x".repeat(200))).await.unwrap();
                    v.push(ws);
                }
                v
            }
        };
        // Warm-up: first-use allocations (session cache, executor queues) are not per socket.
        let warm = open(20).await;
        settle(&stats, 20).await;
        let before = LIVE[SERVER].load(Ordering::Relaxed);
        let conns = open(SOCKETS).await;
        settle(&stats, 20 + SOCKETS as u64).await;
        let after = LIVE[SERVER].load(Ordering::Relaxed);
        let per_socket = (after - before) / SOCKETS as isize;
        eprintln!("server memory per idle WebSocket: {per_socket} bytes");
        assert!(
            per_socket <= BUDGET,
            "{per_socket} bytes per idle WebSocket exceeds the {BUDGET}-byte budget"
        );
        drop(conns);
        drop(warm);
    });
    shutdown.trigger();
    smol::block_on(server).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `n` sockets are upgraded and the server has gone quiet (the last text frame
/// processed). Progress-based, not time-based: polls the counters.
async fn settle(stats: &ServerStats, n: u64) {
    while stats.upgrades_total.load(Ordering::Relaxed) < n {
        async_io::Timer::after(std::time::Duration::from_millis(5)).await;
    }
    // Let the executor finish the reads triggered by the last frames.
    let mut last = LIVE[SERVER].load(Ordering::Relaxed);
    loop {
        async_io::Timer::after(std::time::Duration::from_millis(50)).await;
        let now = LIVE[SERVER].load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}
