//! BENCHMARKS.md's browser numbers (measured, printed, not asserted as timings): the
//! dashboard's first paint with 1,000 servers, and the dashboard and an open console under
//! 1,000 events/s with the JS heap (after a collection) and DOM nodes before and after.
//! The servers are real records on a real panel, made and fed by `loadtest`'s simulated
//! agents (real WSS, real JWTs; each answers `get_status` like an agent). Ignored by default:
//!
//! `cargo build -p loadtest && cargo test -p e2e --test ui bench -- --ignored --nocapture`

use std::process::Command;
use std::time::Duration;

use e2e::cdp::{Browser, Page, chromium_or_skip};
use e2e::events::Events;
use e2e::panel::Panel;
use e2e::{Proc, TempDir, binary, eventually};
use serde_json::json;

const USER: (&str, &str) = ("bench", "bench's long password");
/// How long each flood is watched.
const WATCH: Duration = Duration::from_secs(60);

/// `loadtest` with `agents` simulated agents (one server each) and `rate` events/s in total.
fn loadtest(panel: &Panel, prefix: &str, agents: usize, rate: u32) -> Proc {
    let mut cmd = Command::new(binary("loadtest"));
    cmd.args(["--panel", &panel.url(), "--ca-cert"])
        .arg(panel.ca_cert())
        .args([
            "--agents",
            &agents.to_string(),
            "--servers",
            &agents.to_string(),
        ])
        .args(["--duration", "600", "--events-per-sec", &rate.to_string()])
        .args(["--subscribers", "1", "--name-prefix", prefix, "--quiet"])
        .env("PANEL_ADMIN_TOKEN", &panel.token);
    Proc::spawn(&format!("loadtest {prefix}"), cmd)
}

fn servers_named(panel: &Panel, prefix: &str) -> Vec<String> {
    panel
        .api
        .server_ids()
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .collect()
}

/// Over `WATCH`: events the page handled against those a Rust subscriber (admin token) got
/// from the panel in the same window, the main thread's long tasks (ms busy in tasks over
/// 50 ms), JS heap after a collection and DOM nodes before and after; printed as one line.
fn watch(page: &Page, panel: &Panel, what: &str) {
    page.eval(
        "(async () => { const { events } = await import('/assets/events.js');
           window.seen = 0; events.on(() => { window.seen += 1; });
           window.busy = 0; new PerformanceObserver(l => { for (const e of l.getEntries()) window.busy += e.duration; })
             .observe({ type: 'longtask' }); })()",
    );
    let reference = Events::subscribe(panel);
    let nodes = |p: &Page| p.metrics().get("Nodes").copied().unwrap_or(0.0);
    let heap0 = page.heap_after_gc();
    let nodes0 = nodes(page);
    let count = |p: &Page| {
        let v = p.eval("[window.seen, window.busy]");
        (v[0].as_u64().unwrap_or(0), v[1].as_f64().unwrap_or(0.0))
    };
    let (seen0, busy0) = count(page);
    let ref0 = reference.mark();
    std::thread::sleep(WATCH);
    let (seen1, busy1) = count(page);
    let ref1 = reference.mark();
    let heap1 = page.heap_after_gc();
    let nodes1 = nodes(page);
    let secs = WATCH.as_secs();
    println!(
        "{what}: page handled {} events/s, the panel sent a Rust subscriber {} events/s ({secs} s); \
         long tasks {:.0} ms per s; JS heap after GC {heap0} -> {heap1} bytes; DOM nodes {nodes0} -> {nodes1}",
        (seen1 - seen0) / secs,
        (ref1 - ref0) as u64 / secs,
        (busy1 - busy0) / secs as f64,
    );
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture (see the module docs)"]
fn bench_dashboard_and_console_in_chromium() {
    let Some(chromium) = chromium_or_skip("ui_bench") else {
        return;
    };
    let dir = TempDir::new("ui_bench");
    let token = e2e::stack::random_hex(24);
    let panel = Panel::start_with(
        &dir.path().join("panel"),
        &token,
        "127.0.0.1:0",
        &["--heartbeat-secs", "15", "--max-conns-per-ip", "0"]
            .iter()
            .chain(&["--admin-rate", "100000", "--admin-burst", "100000"])
            .chain(&["--agent-rate", "5000", "--agent-burst", "10000"])
            .copied()
            .collect::<Vec<_>>(),
    );
    panel
        .api
        .post(
            "/api/users",
            &json!({"name": USER.0, "password": USER.1, "admin": true}),
        )
        .ok("bench user");

    // 1,000 agents with a server each; 1,000 events/s spread over them.
    let mut many = loadtest(&panel, "many", 1000, 1000);
    eventually("1,000 servers", Duration::from_secs(600), || {
        (servers_named(&panel, "many").len() >= 1000).then_some(())
    });

    let browser = Browser::launch(&chromium);
    let page = browser.page();
    page.goto(&format!("{}/login", panel.url()));
    page.wait_for("!!document.querySelector('input[name=username]')", "login");
    page.type_into("input[name=username]", USER.0);
    page.type_into("input[name=password]", USER.1);
    page.press("Enter", false);
    page.wait_for(
        "!!document.querySelector('.page-dashboard h1')",
        "the dashboard",
    );

    // First paint with 1,000 rows: a reload, timed from navigation start to the frame
    // after the 1,000th row is in the table (an observer installed before any script).
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "new MutationObserver((_, o) => {
            if (document.querySelectorAll('tr[data-server]').length >= 1000) {
              o.disconnect(); window.rowsAt = performance.now();
              requestAnimationFrame(() => { window.paintedAt = performance.now(); });
            } }).observe(document, { childList: true, subtree: true });"}),
    );
    for run in 1..=3 {
        page.goto(&format!("{}/", panel.url()));
        page.wait_for("window.paintedAt !== undefined", "1,000 rows painted");
        let t = page.eval(
            "({ painted: window.paintedAt, rows: window.rowsAt,
                api: Object.fromEntries(performance.getEntriesByType('resource')
                  .filter(e => /\\/api\\/(servers|agents)$/.test(e.name))
                  .map(e => [new URL(e.name).pathname, [Math.round(e.startTime), Math.round(e.responseEnd), e.decodedBodySize]])) })",
        );
        println!("dashboard with 1,000 servers, load {run}: {t}");
    }
    page.screenshot("bench-dashboard-1000");
    watch(&page, &panel, "dashboard, 1,000 servers, 1,000 events/s");
    let _ = many.terminate(Duration::from_secs(10));

    // One agent, one server, 1,000 events/s on it: its console page.
    let _one = loadtest(&panel, "one", 1, 1000);
    let id = eventually("the console server", Duration::from_secs(120), || {
        servers_named(&panel, "one").pop()
    });
    page.goto(&format!("{}/servers/{id}", panel.url()));
    page.wait_for(
        "document.querySelectorAll('.console-log > *').length >= 2000",
        "a full console",
    );
    watch(&page, &panel, "console, 1,000 events/s on its server");
    page.screenshot("bench-console-flood");
}
