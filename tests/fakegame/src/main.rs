//! `fakegame`: a tiny, statically linked stand-in for a game server, for the agent and
//! end-to-end tests. It logs like a game server, takes console commands on stdin, answers the
//! Minecraft Server List Ping, can crash, spam logs, use memory and write a file on demand,
//! and exits cleanly on `stop`, SIGTERM and SIGINT.
//!
//! Installed as `/bin/sh` in a FROM-scratch image, so `["/bin/sh", "-c", "<startup>"]` runs
//! it with the startup line as its flags (see `args`).

mod args;
mod signals;
mod slp;

use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the process is ending, and with which exit code.
struct Exit {
    code: i32,
    line: String,
}

/// Everything threads share.
struct Game {
    players: Mutex<Vec<String>>,
    max: u32,
}

impl Game {
    fn status(&self) -> slp::Status {
        slp::Status {
            max: self.max,
            players: self
                .players
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            motd: "A fakegame test server".to_owned(),
        }
    }
}

fn info(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[INFO] {msg}");
    let _ = out.flush();
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cfg = match args::from_argv(&argv, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[ERROR] fakegame: {e}");
            std::process::exit(2);
        }
    };
    let code = run(cfg);
    std::process::exit(code);
}

fn run(cfg: args::Config) -> i32 {
    let (tx, rx) = mpsc::channel::<Exit>();
    let game = Arc::new(Game {
        players: Mutex::new(cfg.players.clone()),
        max: cfg.max_players,
    });

    let sig_tx = tx.clone();
    let ignore = cfg.ignore_signals;
    if let Err(e) = signals::install(move |name| {
        if ignore {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "[WARN] Received {name}, ignoring it (--ignore-signals)"
            );
            let _ = out.flush();
            return;
        }
        let _ = sig_tx.send(Exit {
            code: 0,
            line: format!("Received {name}, shutting down"),
        });
    }) {
        eprintln!("[ERROR] installing signal handlers: {e}");
        return 1;
    }

    info(&format!(
        "Starting fakegame {} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        slp::PROTOCOL_VERSION
    ));
    eprintln!("[WARN] This is a fake game server for tests; nothing here is persistent");
    if let Some(m) = cfg.memory_limit_mb {
        info(&format!("Memory limit: {m} MiB"));
    }

    // Memory first, so that stats show it as soon as the server reports started.
    let _ballast = if cfg.mem_mb > 0 {
        let b = touch_memory(cfg.mem_mb);
        info(&format!("Allocated {} MiB", cfg.mem_mb));
        Some(b)
    } else {
        None
    };

    if let Some(name) = &cfg.write_file {
        match std::fs::write(name, args::FILE_CONTENT) {
            Ok(()) => info(&format!("Wrote file {name}")),
            Err(e) => {
                eprintln!("[ERROR] writing {name}: {e}");
                return 1;
            }
        }
    }

    for (link, target) in &cfg.symlinks {
        let _ = std::fs::remove_file(link);
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => info(&format!("Linked {link} -> {target}")),
            Err(e) => {
                eprintln!("[ERROR] symlink {link} -> {target}: {e}");
                return 1;
            }
        }
    }

    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("[ERROR] cannot bind port {}: {e}", cfg.port);
            return 1;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.port);
    let g = game.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let g = g.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
                let _ = slp::serve_conn(&mut conn, || g.status());
            });
        }
    });
    info(&format!("Server started on port {port}"));

    if cfg.spam > 0 {
        // Paced by the clock, not by a sleep per line (a sleep costs far more than 20 µs):
        // the lines due since the last round go out together, one write per round, so
        // high rates (`--spam 50000`) are really reached.
        let rate = f64::from(cfg.spam);
        let round = Duration::from_secs_f64((1.0 / rate).max(0.001));
        std::thread::spawn(move || {
            use std::fmt::Write as _;
            let start = std::time::Instant::now();
            let mut n: u64 = 0;
            let mut batch = String::new();
            loop {
                let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                batch.clear();
                while n < due {
                    n += 1;
                    let _ = writeln!(batch, "[INFO] spam line {n}");
                }
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(batch.as_bytes());
                let _ = out.flush();
                drop(out);
                std::thread::sleep(round);
            }
        });
    }

    if let Some(secs) = cfg.crash_after {
        let tx = tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            let _ = tx.send(Exit {
                code: 3,
                line: format!("Simulated crash after {secs} s"),
            });
        });
    }

    let g = game.clone();
    let console_tx = tx.clone();
    std::thread::spawn(move || console(&g, &console_tx));
    drop(tx);

    // Every sender lives in a thread that may end (stdin EOF); the signal thread keeps one
    // for the life of the process, so `recv` only fails if that thread died.
    let exit = rx.recv().unwrap_or(Exit {
        code: 1,
        line: "internal error: all exit sources gone".to_owned(),
    });
    if exit.code == 0 {
        info(&exit.line);
        info("Stopping server");
        info("Saving worlds... done");
    } else {
        eprintln!("[ERROR] {}", exit.line);
    }
    let _ = std::io::stdout().flush();
    exit.code
}

/// Reads console lines until EOF. `say`, `list`, `join`, `leave`, `stop`.
fn console(game: &Game, tx: &mpsc::Sender<Exit>) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match cmd {
            "" => {}
            "say" => info(rest),
            "list" => {
                let st = game.status();
                info(&format!(
                    "There are {} of a max of {} players online: {}",
                    st.players.len(),
                    st.max,
                    st.players.join(", ")
                ));
            }
            "join" if !rest.is_empty() => {
                game.players
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(rest.to_owned());
                info(&format!("{rest} joined the game"));
            }
            "leave" if !rest.is_empty() => {
                game.players
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|p| p != rest);
                info(&format!("{rest} left the game"));
            }
            "stop" => {
                let _ = tx.send(Exit {
                    code: 0,
                    line: "Console requested stop".to_owned(),
                });
                return;
            }
            _ => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "[WARN] Unknown command: {line}");
                let _ = out.flush();
            }
        }
    }
}

/// Allocates `mb` MiB and writes every page so it is resident (counted by the cgroup).
fn touch_memory(mb: u64) -> Vec<u8> {
    let len = (mb as usize) * 1024 * 1024;
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate().step_by(4096) {
        *b = (i / 4096) as u8 | 1;
    }
    std::hint::black_box(&v);
    v
}
