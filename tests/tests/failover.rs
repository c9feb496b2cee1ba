//! Failover end to end: a panel and two agents on one Docker Engine (separate data dirs,
//! distinct container name prefixes). Agent `a` reaches the panel through a TCP proxy this
//! test runs and cuts.
//!
//! 1. A short partition (fence-after < it < dead-after): `a` fences its server, the panel
//!    starts it again on `a` when `a` reconnects. Then a long one: the proxy is cut → `a` fences itself (its failover server stops) → `a`
//!    turns `dead` → the server runs on `b` from its backup (the file written before the
//!    backup is there), one epoch later → the proxy heals → `a`'s stale copy is stopped,
//!    its container removed, its files kept in `DATA/quarantine/` and the record shows
//!    `"quarantined":[{"agentId": a, "epoch": 0, "at"}]`. `docker ps` is sampled every
//!    200 ms throughout: never two copies running.
//! 2. Reconciliation at start (what fencing cannot cover: an agent process that died while
//!    its container runs): the server is stopped, `b`'s process is killed, the panel fails
//!    the server over to `a` (not started there: it was stopped), `b`'s stale container is
//!    started behind its back (as if it had kept running); `b` is started again → before
//!    anything else its stale copy is stopped and quarantined.

use e2e::events::is_status;
use e2e::moving::docker_running;
use e2e::stack::{SLOW, Stack};
use e2e::{container_running, docker, eventually};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HEARTBEAT: &str = "1";
const DEAD_AFTER: u64 = 15;
const FENCE_AFTER: &str = "5";
/// Beyond dead-after: the failover itself (create, restore, start) on a loaded host.
const MARGIN: Duration = Duration::from_secs(90);

/// A TCP proxy to the panel that the test can cut (every connection closed, new ones
/// refused) and heal.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut list = k.lock().unwrap();
                    list.retain(|s| s.peer_addr().is_ok());
                    list.push(down.try_clone().unwrap());
                    list.push(up.try_clone().unwrap());
                }
                pipe(down.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, down);
            }
        });
        Proxy { addr, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread until either side ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Samples `docker ps` for the server's running copies every 200 ms until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Sampler {
    fn start(server: &str) -> Sampler {
        let s = Sampler {
            stop: Arc::default(),
            most: Arc::default(),
            samples: Arc::default(),
            seen: Arc::default(),
        };
        let (stop, most, samples, seen) = (
            s.stop.clone(),
            s.most.clone(),
            s.samples.clone(),
            s.seen.clone(),
        );
        let label = format!("label=ctrl.server={server}");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let names: Vec<String> =
                    docker(&["ps", "--filter", &label, "--format", "{{.Names}}"])
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                if names.len() > most.load(Ordering::SeqCst) {
                    most.store(names.len(), Ordering::SeqCst);
                    *seen.lock().unwrap() = names;
                }
                samples.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        s
    }

    /// Stops sampling; (most copies running at once, samples taken, the names then).
    fn finish(&self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(400));
        (
            self.most.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
            self.seen.lock().unwrap().clone(),
        )
    }
}

fn health(s: &Stack, i: usize) -> String {
    s.panel
        .api
        .agent_named(&s.agents[i].name)
        .map(|a| a["health"]["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn wait_health(s: &Stack, i: usize, state: &str, within: Duration) {
    eventually(&format!("agent {i} {state}"), within, || {
        (health(s, i) == state).then_some(())
    });
}

fn record(s: &Stack, sid: &str) -> Value {
    let r = s
        .panel
        .api
        .get(&format!("/api/servers/{sid}/info"))
        .ok("info");
    r["server"].clone()
}

/// A panel with the short heartbeat and dead-after these tests wait on (`None`: no Docker).
fn stack(name: &str) -> Option<Stack> {
    let dead_after = DEAD_AFTER.to_string();
    Stack::start_with(
        name,
        &[
            "--heartbeat-secs",
            HEARTBEAT,
            "--dead-after-secs",
            &dead_after,
        ],
    )
}

/// Whether a container of that name exists at all.
fn exists(name: &str) -> bool {
    docker_running(name).is_some()
}

fn quarantine_dirs(data_dir: &std::path::Path, sid: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join("quarantine"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{sid}-e")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_partitioned_node_fences_itself_its_server_moves_and_its_stale_copy_is_quarantined() {
    let Some(mut s) = stack("failover") else {
        return;
    };
    let pid = std::process::id();
    let (pa, pb) = (format!("foa{pid}-"), format!("fob{pid}-"));
    let proxy = Proxy::start(s.panel.addr);
    // Agent a talks to the panel through the proxy.
    let a = s.register("a");
    let cfg_path = s.agents[a].config.clone();
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let url = cfg["websocketUrl"].as_str().unwrap().to_owned();
    let via_proxy = url.replace(
        &format!(":{}/", s.panel.addr.port()),
        &format!(":{}/", proxy.addr.port()),
    );
    assert_ne!(
        url, via_proxy,
        "the agent's URL names the panel's port: {url}"
    );
    cfg["websocketUrl"] = json!(via_proxy);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let b = s.register("b");
    for (i, p) in [(a, &pa), (b, &pb)] {
        s.agents[i].name_prefix = Some(p.clone());
        s.agents[i].run_with(&["--fence-after-secs", FENCE_AFTER]);
        s.agents[i].wait_status(&s.panel, "online");
        wait_health(&s, i, "healthy", SLOW);
    }
    let (ida, idb) = (s.agents[a].id.clone(), s.agents[b].id.clone());
    s.subscribe();
    let api = &s.panel.api;

    // A failover server on a, with a file and a backup of it.
    let sid = s.server_id("fo");
    let (egg, _) = e2e::egg::fakegame("");
    let r = api
        .post(
            "/api/servers",
            &json!({"agentId": ida, "serverId": sid, "eggConfig": egg, "failover": true}),
        )
        .ok("create");
    assert_eq!(r["server"]["failover"], true, "{r}");
    assert_eq!(r["server"]["epoch"], 0, "{r}");
    assert_eq!(r["server"]["quarantined"], json!([]), "{r}");
    // PATCH turns it off and on; anything but a boolean is refused.
    let patch = |v: Value| api.call("PATCH", &format!("/api/servers/{sid}"), Some(&v));
    assert_eq!(
        patch(json!({"failover": false})).ok("off")["server"]["failover"],
        false
    );
    patch(json!({"failover": "yes"})).err("not a boolean", 400, "INVALID_MESSAGE");
    assert_eq!(
        patch(json!({"failover": true})).ok("on")["server"]["failover"],
        true
    );
    let mark = s.events().mark();
    api.power(&sid, &json!({"action": "start"}));
    s.events()
        .wait_after(mark, "running", SLOW, |v| is_status(v, &sid, "running"));
    api.call(
        "PUT",
        &format!("/api/servers/{sid}/files/content?path=/server/world.txt"),
        Some(&json!({"content": "the world before the partition"})),
    )
    .ok("write a file");
    api.post(&format!("/api/servers/{sid}/backups"), &json!({}))
        .ok("backup");
    let on_a = format!("{pa}{sid}");
    let on_b = format!("{pb}{sid}");
    assert!(container_running(&on_a));
    let status = api.get("/api/failover").ok("GET /api/failover");
    assert_eq!(status["failover"]["paused"], false, "{status}");

    let sampler = Sampler::start(&sid);
    // A short partition (longer than fence-after, shorter than dead-after): a fences its
    // server, and the panel starts it again there when a reconnects.
    proxy.cut();
    eventually("a fences its server", SLOW, || {
        (!container_running(&on_a)).then_some(())
    });
    proxy.heal();
    eventually("started again on a after the short partition", SLOW, || {
        container_running(&on_a).then_some(())
    });
    let r = record(&s, &sid);
    assert_eq!(
        (r["agentId"].as_str(), r["epoch"].as_u64()),
        (Some(ida.as_str()), Some(0))
    );
    wait_health(&s, a, "healthy", SLOW);

    // The partition.
    let mark = s.events().mark();
    proxy.cut();
    eventually("a fences its server", SLOW, || {
        (!container_running(&on_a)).then_some(())
    });
    // Fenced before the panel gave up on it: the record still names a.
    assert_eq!(record(&s, &sid)["agentId"], ida.as_str());
    let moved = eventually(
        "the server recorded on b",
        Duration::from_secs(DEAD_AFTER) + MARGIN,
        || {
            let r = record(&s, &sid);
            (r["agentId"] == idb.as_str()).then_some(r)
        },
    );
    assert_eq!(moved["epoch"], 1, "{moved}");
    assert_eq!(health(&s, a), "dead");
    eventually("the server runs on b", SLOW, || {
        container_running(&on_b).then_some(())
    });
    s.events()
        .wait_after(mark, "failover_completed", SLOW, |v| {
            v["event"] == "failover_completed" && v["data"]["serverId"] == sid.as_str()
        });
    let file = api
        .get(&format!(
            "/api/servers/{sid}/files/content?path=/server/world.txt"
        ))
        .ok("the file on b");
    assert_eq!(file["data"]["content"], "the world before the partition");
    let status = api.get("/api/failover").ok("GET /api/failover");
    assert_eq!(status["failover"]["totals"]["done"], 1, "{status}");

    // The partition heals: a's stale copy is quarantined, b's keeps running.
    proxy.heal();
    let q = eventually("the stale copy quarantined", SLOW, || {
        let r = record(&s, &sid);
        (r["quarantined"].as_array().is_some_and(|q| !q.is_empty())).then_some(r)
    });
    assert_eq!(q["quarantined"][0]["agentId"], ida.as_str(), "{q}");
    assert_eq!(q["quarantined"][0]["epoch"], 0, "{q}");
    assert!(q["quarantined"][0]["at"].is_string(), "{q}");
    assert_eq!(q["staleCopies"], json!([]), "{q}");
    assert!(!exists(&on_a), "a's container is removed");
    assert_eq!(
        quarantine_dirs(&s.agents[a].data_dir, &sid).len(),
        1,
        "a keeps the files aside"
    );
    assert!(container_running(&on_b));
    s.events()
        .wait_after(mark, "server_quarantined", SLOW, |v| {
            v["event"] == "server_quarantined" && v["data"]["serverId"] == sid.as_str()
        });
    let (most, samples, names) = sampler.finish();
    eprintln!("{samples} samples of docker ps, at most {most} running copies");
    assert!(samples > 20, "too few samples ({samples})");
    assert!(most <= 1, "two copies ran at once: {names:?}");

    // 2. Reconciliation at start.
    api.power(&sid, &json!({"action": "stop"}));
    eventually("stopped on b", SLOW, || {
        (!container_running(&on_b)).then_some(())
    });
    s.agents[b].kill9();
    let moved = eventually(
        "the server recorded on a",
        Duration::from_secs(DEAD_AFTER) + MARGIN,
        || {
            let r = record(&s, &sid);
            (r["agentId"] == ida.as_str()).then_some(r)
        },
    );
    assert_eq!(moved["epoch"], 2, "{moved}");
    assert!(exists(&on_a), "recreated on a");
    // b's copy runs while b's agent is down (as if it had run all along; a's copy is not
    // started, its desired state being `stopped`, so the host port is free).
    docker(&["start", &on_b]);
    assert!(
        container_running(&on_b),
        "b's stale copy runs while b is down"
    );
    s.agents[b].run_with(&["--fence-after-secs", FENCE_AFTER]);
    let q = eventually("b's stale copy quarantined at its start", SLOW, || {
        let r = record(&s, &sid);
        (r["quarantined"].as_array().is_some_and(|q| q.len() == 2)).then_some(r)
    });
    assert_eq!(q["quarantined"][1]["agentId"], idb.as_str(), "{q}");
    assert_eq!(q["quarantined"][1]["epoch"], 1, "{q}");
    assert!(!exists(&on_b), "b's stale container is removed");
    assert_eq!(quarantine_dirs(&s.agents[b].data_dir, &sid).len(), 1);
}

fn metrics(s: &Stack) -> String {
    let api = &s.panel.api;
    let (status, body) =
        smol::block_on(api.rest.request("GET", "/metrics", Some(&api.token), None))
            .expect("GET /metrics");
    let body = String::from_utf8(body).expect("UTF-8 metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Both nodes dead at once (a fault near the panel is likelier): failover pauses and says
/// so (event, `GET /api/failover`, gauge) and moves nothing until an operator resumes it.
#[test]
fn a_mass_death_pauses_failover_until_an_operator_resumes_it() {
    let Some(mut s) = stack("failover-mass") else {
        return;
    };
    let pid = std::process::id();
    let a = s.add_agent_prefixed("a", &format!("fma{pid}-"));
    let b = s.add_agent_prefixed("b", &format!("fmb{pid}-"));
    for i in [a, b] {
        wait_health(&s, i, "healthy", SLOW);
    }
    let ida = s.agents[a].id.clone();
    s.subscribe();
    let api = &s.panel.api;
    let sid = s.server_id("fm");
    let (egg, _) = e2e::egg::fakegame("");
    api.post(
        "/api/servers",
        &json!({"agentId": ida, "serverId": sid, "eggConfig": egg, "failover": true}),
    )
    .ok("create");
    api.post(&format!("/api/servers/{sid}/backups"), &json!({}))
        .ok("backup");
    assert!(metrics(&s).contains("panel_failover_paused 0"));
    let mark = s.events().mark();
    for i in [a, b] {
        s.agents[i].signal(libc::SIGSTOP);
    }
    let paused = s
        .events()
        .wait_after(
            mark,
            "failover_paused",
            Duration::from_secs(DEAD_AFTER) + SLOW,
            |v| v["event"] == "failover_paused",
        )
        .1;
    assert_eq!(paused["data"]["deadNodes"], 2, "{paused}");
    assert!(
        paused["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("resume"),
        "{paused}"
    );
    let status = api.get("/api/failover").ok("GET /api/failover");
    assert_eq!(status["failover"]["paused"], true, "{status}");
    assert_eq!(status["failover"]["nodes"], 2, "{status}");
    assert!(metrics(&s).contains("panel_failover_paused 1"));
    // Paused: the server stays recorded where it was.
    std::thread::sleep(Duration::from_secs(3));
    let r = record(&s, &sid);
    assert_eq!(
        (r["agentId"].as_str(), r["epoch"].as_u64()),
        (Some(ida.as_str()), Some(0))
    );
    assert_eq!(
        api.get("/api/failover").ok("status")["failover"]["inProgress"],
        json!([])
    );
    // Resumed: it runs again (here it finds no healthy node, and says so).
    let resumed = api.post("/api/failover/resume", &json!({})).ok("resume");
    assert_eq!(resumed["wasPaused"], true, "{resumed}");
    assert_eq!(resumed["failover"]["paused"], false, "{resumed}");
    let failed = s
        .events()
        .wait_after(mark, "failover_failed", SLOW, |v| {
            v["event"] == "failover_failed" && v["data"]["serverId"] == sid.as_str()
        })
        .1;
    assert_eq!(failed["data"]["step"], "placing", "{failed}");
    assert_eq!(
        api.get("/api/failover").ok("status")["failover"]["paused"],
        false
    );
    for i in [a, b] {
        s.agents[i].signal(libc::SIGCONT);
    }
}
