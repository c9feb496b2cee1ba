//! The login page, the shell and the shared modules (console, dialog, chart, live socket)
//! on a panel without agents; the asset budget and the console flood.

use e2e::TempDir;
use e2e::cdp::{Browser, Page, Problem, chromium_or_skip};
use e2e::panel::Panel;
use serde_json::{Value, json};

/// The UI budget from issue 11: every asset together, before compression.
const BUDGET: u64 = 150 * 1024;

struct World {
    // Field order is drop order: the browser first, then the panel, then its files.
    browser: Browser,
    panel: Panel,
    _dir: TempDir,
}

fn world(test: &str) -> Option<World> {
    let chromium = chromium_or_skip(test)?;
    let dir = TempDir::new(test);
    let panel = Panel::start(
        &dir.path().join("panel"),
        "ui-test-admin-token",
        "127.0.0.1:0",
    );
    let browser = Browser::launch(&chromium);
    Some(World {
        browser,
        panel,
        _dir: dir,
    })
}

/// The session probe `GET /api/auth/me` answers 401 without a session (404 on a panel
/// without sessions); Chromium logs that as a failed load. Nothing else is allowed.
fn session_probe(p: &Problem) -> bool {
    p.kind == "log.network"
        && p.url.ends_with("/api/auth/me")
        && (p.text.contains("401") || p.text.contains("404"))
}

fn login_page(w: &World, path: &str) -> Page {
    let page = w.browser.page();
    page.goto(&format!("{}{path}", w.panel.url()));
    page.wait_for(
        "!!document.querySelector('form.login-form input[name=username]')",
        "the login form",
    );
    page
}

#[test]
fn deep_link_gets_the_shell_and_an_anonymous_visitor_the_login_page() {
    let Some(w) = world("ui_login") else { return };
    let page = login_page(&w, "/servers/x");
    assert_eq!(page.eval("location.pathname"), json!("/login"));
    assert_eq!(page.eval("location.search"), json!("?next=%2Fservers%2Fx"));
    assert_eq!(page.eval("document.title"), json!("Log in · ctrl"));
    assert_eq!(
        page.eval("document.activeElement.name"),
        json!("username"),
        "the focus starts on the username"
    );
    // Every control has an accessible name.
    let unlabelled = page.eval(
        "[...document.querySelectorAll('input,select,textarea,button')]
           .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                         && !el.textContent.trim()).map(el => el.outerHTML)",
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
    // The header is for logged-in users only.
    assert_eq!(
        page.eval("document.getElementById('topbar').hidden"),
        json!(true)
    );
    let shot = page.screenshot("login");
    assert!(shot.exists());

    // Dark theme: a different background, same page.
    let light_bg = page.eval("getComputedStyle(document.body).backgroundColor");
    page.color_scheme("dark");
    let dark_bg = page.eval("getComputedStyle(document.body).backgroundColor");
    assert_ne!(
        light_bg, dark_bg,
        "prefers-color-scheme: dark changes the theme"
    );
    page.screenshot("login-dark");
    page.color_scheme("light");

    // A 360-px phone: nothing wider than the screen.
    page.viewport(360, 740, true);
    page.wait_for("window.innerWidth === 360", "the phone viewport");
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= 360"),
        json!(true),
        "the login page scrolls sideways at 360 px"
    );
    page.screenshot("login-phone");
    page.assert_clean("login page", session_probe);
}

#[test]
fn a_failed_login_shows_the_apis_message_inline_and_keeps_the_form() {
    let Some(w) = world("ui_login_fail") else {
        return;
    };
    let page = login_page(&w, "/login");
    page.type_into("input[name=username]", "nobody");
    page.type_into("input[name=password]", "wrong password");
    page.press("Enter", false);
    page.wait_for(
        "!!document.querySelector('.login-form .notice[role=alert]:not([hidden])')",
        "the inline error",
    );
    let text = page.eval("document.querySelector('.login-form .notice').textContent");
    let text = text.as_str().unwrap_or_default();
    // 401 AUTH_FAILED once sessions exist; until then the panel's own 404 message.
    assert!(
        text == "Wrong username or password." || text.contains("no route for /api/auth/login"),
        "unexpected message {text:?}"
    );
    assert_eq!(page.eval("location.pathname"), json!("/login"));
    assert_eq!(
        page.eval("document.activeElement.name"),
        json!("password"),
        "the focus goes back to the (cleared) password"
    );
    assert_eq!(
        page.eval("document.querySelector('input[name=password]').value"),
        json!("")
    );
    page.screenshot("login-failed");
    page.assert_clean("failed login", |p| {
        session_probe(p)
            || (p.kind == "log.network"
                && p.url.ends_with("/api/auth/login")
                && (p.text.contains("401") || p.text.contains("404")))
    });
}

#[test]
fn the_harness_sees_csp_violations_exceptions_and_console_errors() {
    let Some(w) = world("ui_harness") else { return };
    let page = login_page(&w, "/login");
    page.assert_clean("before", session_probe);
    // An inline script and an inline style attribute: both refused by the panel's CSP.
    page.eval(
        "(() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';
                  document.body.append(s); document.body.setAttribute('style', 'color: red'); })()",
    );
    assert_eq!(
        page.eval("window.ran === undefined"),
        json!(true),
        "inline script ran"
    );
    page.eval(
        "setTimeout(() => { throw new Error('boom from a test') }); console.error('said error')",
    );
    let found = |pred: &dyn Fn(&Problem) -> bool| page.problems().iter().any(pred);
    e2e::eventually("the problems to be reported", WAIT_PROBLEMS, || {
        let csp = found(&|p| p.text.contains("Content Security Policy"));
        let exc = found(&|p| p.kind == "exception" && p.text.contains("boom from a test"));
        let con = found(&|p| p.kind == "console" && p.text.contains("said error"));
        (csp && exc && con).then_some(())
    });
    let csp: Vec<Problem> = page
        .problems()
        .into_iter()
        .filter(|p| p.text.contains("Content Security Policy"))
        .collect();
    assert!(
        csp.iter().any(|p| p.text.contains("script"))
            && csp.iter().any(|p| p.text.contains("style")),
        "both the script and the style violation are seen: {csp:#?}"
    );
}

const WAIT_PROBLEMS: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn console_renders_ansi_as_text_bounds_its_scrollback_and_follows_only_at_the_bottom() {
    let Some(w) = world("ui_console") else { return };
    let page = login_page(&w, "/login");
    let r = page.eval(
        r#"(async () => {
          const m = await import('/assets/console.js');
          document.getElementById('main').replaceChildren();
          const v = new m.ConsoleView({ maxLines: 100 });
          window.view = v;
          document.getElementById('main').append(v.el);
          v.push('\x1b[1;31mred <img src=x onerror="window.pwned=1"> \x1b[0mplain\x1b[2J\x07\x1b]0;title\x07 end\x1b[94m blue');
          v.flush();
          const line = v.log.lastElementChild;
          return {
            text: line.textContent,
            spans: [...line.querySelectorAll('span')].map(s => [s.className, s.textContent]),
            imgs: document.querySelectorAll('img').length,
          };
        })()"#,
    );
    assert_eq!(
        r["text"],
        json!("red <img src=x onerror=\"window.pwned=1\"> plain end blue")
    );
    assert_eq!(
        r["spans"],
        json!([
            ["fg1 b", "red <img src=x onerror=\"window.pwned=1\"> "],
            ["fg12", " blue"]
        ])
    );
    assert_eq!(r["imgs"], json!(0), "console text became markup");
    assert_eq!(page.eval("window.pwned === undefined"), json!(true));

    // A flood: the DOM keeps the last 100 lines, the view follows the bottom.
    let r = page.eval(
        "(() => { for (let i = 0; i < 5000; i++) view.push('line ' + i); view.flush();
                  const log = view.log;
                  return { n: log.childElementCount, first: log.firstElementChild.textContent,
                           last: log.lastElementChild.textContent,
                           atBottom: log.scrollTop + log.clientHeight >= log.scrollHeight - 8 }; })()",
    );
    assert_eq!(
        r,
        json!({"n": 100, "first": "line 4900", "last": "line 4999", "atBottom": true})
    );

    // Scrolled up by the user: new lines do not move the view; "follow" brings it back.
    page.eval("view.log.scrollTop = 0");
    page.wait_for("view.follow === false", "the scroll to be noticed");
    page.eval("for (let i = 0; i < 10; i++) view.push('more ' + i); view.flush()");
    assert_eq!(page.eval("view.log.scrollTop"), json!(0));
    assert_eq!(page.eval("view.jump.hidden"), json!(false));
    page.screenshot("console-scrolled-up");
    page.click(".console-jump");
    page.wait_for(
        "view.log.scrollTop + view.log.clientHeight >= view.log.scrollHeight - 8 && view.jump.hidden",
        "the view back at the bottom",
    );
    page.assert_clean("console", session_probe);
}

#[test]
fn command_input_sends_on_enter_and_walks_its_history_with_the_arrows() {
    let Some(w) = world("ui_history") else { return };
    let page = login_page(&w, "/login");
    page.eval(
        "(async () => {
          const m = await import('/assets/console.js');
          window.sent = [];
          const input = m.commandInput(async (c) => { window.sent.push(c); });
          input.id = 'cmd';
          document.getElementById('main').replaceChildren(input);
        })()",
    );
    for cmd in ["say one", "say two"] {
        page.type_into("#cmd", cmd);
        page.press("Enter", false);
        page.wait_for(
            &format!(
                "window.sent.includes({cmd:?}) && document.getElementById('cmd').value === ''"
            ),
            "the command to be sent",
        );
    }
    page.type_into("#cmd", "draft");
    let value = || page.eval("document.getElementById('cmd').value");
    page.press("ArrowUp", false);
    assert_eq!(value(), json!("say two"));
    page.press("ArrowUp", false);
    assert_eq!(value(), json!("say one"));
    page.press("ArrowUp", false);
    assert_eq!(value(), json!("say one"), "stays at the oldest");
    page.press("ArrowDown", false);
    assert_eq!(value(), json!("say two"));
    page.press("ArrowDown", false);
    assert_eq!(value(), json!("draft"), "back to what was being typed");
    assert_eq!(page.eval("window.sent"), json!(["say one", "say two"]));
    page.assert_clean("command input", session_probe);
}

#[test]
fn a_confirmation_dialog_is_not_confirmed_by_enter_or_escape() {
    let Some(w) = world("ui_dialog") else { return };
    let page = login_page(&w, "/login");
    let ask = "(async () => {
        const d = await import('/assets/dialog.js');
        window.answer = undefined;
        d.confirm({ title: 'Kill survival-eu?', message: 'The server is stopped at once, without saving.',
                    confirmLabel: 'Kill now' }).then(a => { window.answer = a; });
      })()";
    let open = "!!document.querySelector('dialog[open]')";
    page.eval(ask);
    page.wait_for(open, "the dialog");
    assert_eq!(
        page.eval("document.activeElement.textContent"),
        json!("Cancel"),
        "the focus starts on Cancel"
    );
    page.screenshot("dialog-confirm");
    page.press("Enter", false);
    page.wait_for("window.answer !== undefined", "the dialog to close");
    assert_eq!(page.eval("window.answer"), json!(false), "Enter confirmed");

    page.eval(ask);
    page.wait_for(open, "the dialog again");
    page.press("Escape", false);
    page.wait_for("window.answer !== undefined", "the dialog to close");
    assert_eq!(page.eval("window.answer"), json!(false), "Escape confirmed");

    page.eval(ask);
    page.wait_for(open, "the dialog a third time");
    page.click("dialog[open] .btn-danger");
    page.wait_for("window.answer !== undefined", "the dialog to close");
    assert_eq!(
        page.eval("window.answer"),
        json!(true),
        "the button confirms"
    );
    assert_eq!(page.eval(open), json!(false));
    page.assert_clean("dialog", session_probe);
}

#[test]
fn a_chart_draws_axes_and_describes_itself() {
    let Some(w) = world("ui_chart") else { return };
    let page = login_page(&w, "/login");
    let label = page.eval(
        "(async () => {
          const { LineChart } = await import('/assets/chart.js');
          const { percent } = await import('/assets/format.js');
          const c = new LineChart({ label: 'CPU', format: percent });
          document.getElementById('main').replaceChildren(c.el);
          const now = Date.now();
          c.set(Array.from({ length: 720 }, (_, i) => ({ t: now - (720 - i) * 5000, v: 20 + 15 * Math.sin(i / 30) })));
          await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
          return c.canvas.getAttribute('aria-label');
        })()",
    );
    let label = label.as_str().unwrap_or_default();
    assert!(
        label.starts_with("CPU over the last hour: now ") && label.contains("peak"),
        "{label}"
    );
    let inked = page.eval(
        "(() => { const c = document.querySelector('canvas');
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()",
    );
    assert!(inked.as_u64().unwrap_or(0) > 1000, "the canvas is blank");
    page.screenshot("chart");
    page.assert_clean("chart", session_probe);
}

#[test]
fn an_empty_chart_and_a_running_server_without_samples_say_so() {
    let Some(w) = world("ui_empty") else { return };
    let page = login_page(&w, "/login");
    let r = page.eval(
        "(async () => {
          const { LineChart } = await import('/assets/chart.js');
          const { percent } = await import('/assets/format.js');
          const { serverTable } = await import('/assets/pages/dashboard.js');
          const c = new LineChart({ label: 'CPU', format: percent, max: 100 });
          const t = serverTable([{ serverId: 'srv-a', status: 'running' }, { serverId: 'srv-b', status: 'stopped' }]);
          document.getElementById('main').replaceChildren(c.el, t.table);
          await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
          // The plot's row at three quarters up, between the y labels and the right edge:
          // no grid line or axis label is there, only the empty chart's message.
          const ink = () => { const k = devicePixelRatio, hh = c.canvas.clientHeight, yy = hh - 22 - 0.75 * (hh - 32);
            const d = c.canvas.getContext('2d').getImageData(70 * k, (yy - 4) * k, (c.canvas.clientWidth - 90) * k, 8 * k).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; };
          const before = { label: c.canvas.getAttribute('aria-label') };
          c.setEmpty('Waiting for the first sample');
          await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
          const cells = (id) => [...document.querySelectorAll(`tr[data-server=${id}] td.num`)].map(td => td.textContent);
          const out = { before, after: c.canvas.getAttribute('aria-label'), ink: ink(), a: cells('srv-a'), b: cells('srv-b') };
          t.update({ event: 'resource_update', serverId: 'srv-a', data: { serverId: 'srv-a', cpu: 12.5, memory: { used: '64MiB' } } });
          await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
          out.sampled = cells('srv-a');
          return out;
        })()",
    );
    assert_eq!(r["before"]["label"], "CPU: No history yet", "{r}");
    // The message is written on the canvas.
    assert!(r["ink"].as_u64().unwrap_or(0) > 50, "{r}");
    assert_eq!(r["after"], "CPU: Waiting for the first sample", "{r}");
    let wait = "waiting for first sample";
    assert_eq!(r["a"], json!([wait, wait, "—"]), "{r}");
    assert_eq!(r["b"], json!(["—", "—", "—"]), "{r}");
    let sampled = r["sampled"].as_array().expect("cells");
    assert!(
        sampled[0].as_str().is_some_and(|t| t.ends_with("13 %")),
        "{r}"
    );
    assert!(!sampled[1].as_str().unwrap_or(wait).contains(wait), "{r}");
    page.screenshot("empty-chart-and-waiting-row");
    page.assert_clean("empty states", session_probe);
}

/// Issue 11's budget, measured as the browser receives it: the shell plus every module,
/// stylesheet and icon, before compression.
#[test]
fn all_ui_assets_together_fit_150_kib_in_the_browser() {
    let Some(w) = world("ui_budget") else { return };
    let page = login_page(&w, "/login");
    let pages = [
        "login",
        "dashboard",
        "server",
        "files",
        "access",
        "nodes",
        "node",
        "users",
        "eggs",
        "create-server",
        "keys",
        "backups",
        "schedule",
        "transfer",
        "not-found",
    ];
    let r = page.eval(&format!(
        "(async () => {{
          await Promise.all({pages:?}.map(p => import('/assets/pages/' + p + '.js')));
          await fetch('/assets/icon.svg');
          const res = performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname.startsWith('/assets/'));
          const doc = performance.getEntriesByType('navigation')[0];
          const files = {{}}, wire = {{}};
          for (const e of res) {{ files[new URL(e.name).pathname] = e.decodedBodySize; wire[new URL(e.name).pathname] = e.encodedBodySize; }}
          files['/'] = doc.decodedBodySize;
          wire['/'] = doc.encodedBodySize;
          return {{ files, wire }};
        }})()"
    ));
    let files = r["files"].as_object().expect("a map of sizes");
    let total: u64 = files.values().filter_map(Value::as_u64).sum();
    // What went over the wire: the panel serves gzip to a browser that asks for it.
    let wire: u64 = r["wire"]
        .as_object()
        .expect("a map of sizes")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    eprintln!(
        "UI assets in the browser: {} files, {total} bytes ({:.1} KiB), {wire} bytes ({:.1} KiB) on the wire",
        files.len(),
        total as f64 / 1024.0,
        wire as f64 / 1024.0
    );
    assert!(
        wire * 2 < total,
        "the assets were not served compressed: {wire} of {total} bytes"
    );
    assert!(
        files.len() >= pages.len() + 4,
        "not every asset was loaded: {files:?}"
    );
    assert!(
        total <= BUDGET,
        "UI assets weigh {total} bytes, over {BUDGET}: {files:#?}"
    );
    page.assert_clean("budget", session_probe);
}

/// A chatty server: 100,000 coloured lines through a 2,000-line console. The DOM keeps
/// 2,000 lines; the JS heap after a collection is printed (BENCHMARKS.md), not asserted.
#[test]
fn a_console_flood_keeps_the_dom_bounded() {
    let Some(w) = world("ui_flood") else { return };
    let page = login_page(&w, "/login");
    page.eval(
        "(async () => {
          const m = await import('/assets/console.js');
          window.view = new m.ConsoleView({ maxLines: 2000 });
          document.getElementById('main').replaceChildren(window.view.el);
        })()",
    );
    let nodes = |p: &Page| p.metrics().get("Nodes").copied().unwrap_or(0.0);
    let heap_before = page.heap_after_gc();
    let nodes_before = nodes(&page);
    for round in 0..50 {
        page.eval(&format!(
            "for (let i = 0; i < 2000; i++) view.push('\\x1b[1;3' + (i % 8) + 'm[' + {round} + ':' + i + ']\\x1b[0m player joined the game'); view.flush()"
        ));
    }
    let heap_after = page.heap_after_gc();
    let nodes_after = nodes(&page);
    assert_eq!(page.eval("view.log.childElementCount"), json!(2000));
    assert_eq!(
        page.eval("view.log.lastElementChild.textContent"),
        json!("[49:1999] player joined the game")
    );
    eprintln!(
        "console flood (100,000 lines, 2,000 kept): JS heap {heap_before} -> {heap_after} bytes, DOM nodes {nodes_before} -> {nodes_after}"
    );
    // Each kept line is a div, a span and two text nodes.
    assert!(
        nodes_after - nodes_before <= 2000.0 * 4.0 + 50.0,
        "DOM nodes grew from {nodes_before} to {nodes_after}"
    );
    page.assert_clean("flood", session_probe);
}

/// The live socket without a session: the panel refuses the upgrade, the tab says
/// "reconnecting…" and keeps retrying with backoff; stopping it (logout) hides the banner.
#[test]
fn a_refused_live_socket_shows_the_reconnecting_banner() {
    let Some(w) = world("ui_events") else { return };
    let page = login_page(&w, "/login");
    page.eval(
        "(async () => {
          const { events } = await import('/assets/events.js');
          window.liveEvents = events;
          events.start(document.getElementById('conn-banner'));
        })()",
    );
    page.wait_for(
        "!document.getElementById('conn-banner').hidden",
        "the banner",
    );
    let text = page.eval("document.getElementById('conn-banner').textContent");
    assert!(
        text.as_str().unwrap_or_default().contains("reconnecting…"),
        "{text}"
    );
    assert_eq!(
        page.eval("document.getElementById('conn-banner').getAttribute('role')"),
        json!("status")
    );
    page.screenshot("banner-reconnecting");
    page.eval("window.liveEvents.stop()");
    assert_eq!(
        page.eval("document.getElementById('conn-banner').hidden"),
        json!(true)
    );
    // Chromium logs each refused upgrade ("WebSocket connection to 'wss://…/api/events'
    // failed"); a CSP block would read "Refused to connect … Content Security Policy".
    page.assert_clean("live socket", |p| {
        session_probe(p)
            || (p.kind == "log.network"
                && p.text.contains("/api/events' failed")
                && !p.text.contains("Content Security Policy"))
    });
    assert!(
        page.problems()
            .iter()
            .any(|p| p.text.contains("/api/events' failed")),
        "the refused upgrade was not even attempted: {:#?}",
        page.problems()
    );
}
