//! The real fakegame binary, invoked the way the container runs it (`sh -c LINE`): console,
//! Server List Ping over TCP, signals, crash, file writing and flag errors.

#![allow(unsafe_code, reason = "kill(2) on the test's own child")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};

struct Game {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Drop for Game {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(line: &str, dir: &std::path::Path) -> Game {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fakegame"))
        .arg0("sh")
        .args(["-c", line])
        .current_dir(dir)
        .env_remove("SERVER_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fakegame");
    let out = BufReader::new(child.stdout.take().unwrap());
    Game { child, out }
}

impl Game {
    fn line(&mut self) -> String {
        let mut l = String::new();
        assert!(self.out.read_line(&mut l).unwrap() > 0, "stdout closed");
        l.trim_end().to_owned()
    }
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line();
            if l.starts_with(prefix) {
                return l;
            }
        }
    }
    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
    fn port(&mut self) -> u16 {
        let l = self.until("[INFO] Server started on port ");
        l.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fakegame-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn varint(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_varint(r: &mut impl Read) -> u32 {
    let mut v = 0u32;
    for i in 0..5 {
        let mut b = [0u8];
        r.read_exact(&mut b).unwrap();
        v |= ((b[0] & 0x7f) as u32) << (7 * i);
        if b[0] & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint too long")
}

fn pkt(id: u32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    varint(id, &mut inner);
    inner.extend_from_slice(body);
    let mut out = Vec::new();
    varint(inner.len() as u32, &mut out);
    out.extend(inner);
    out
}

/// A Server List Ping client written independently of the server's encoder.
fn ping(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut hs = Vec::new();
    varint(765, &mut hs);
    varint(9, &mut hs);
    hs.extend_from_slice(b"127.0.0.1");
    hs.extend_from_slice(&port.to_be_bytes());
    varint(1, &mut hs);
    s.write_all(&pkt(0, &hs)).unwrap();
    s.write_all(&pkt(0, &[])).unwrap();
    let _len = read_varint(&mut s);
    assert_eq!(read_varint(&mut s), 0, "status response id");
    let n = read_varint(&mut s) as usize;
    let mut json = vec![0u8; n];
    s.read_exact(&mut json).unwrap();
    s.write_all(&pkt(1, &77i64.to_be_bytes())).unwrap();
    assert_eq!(read_varint(&mut s), 9);
    assert_eq!(read_varint(&mut s), 1, "pong id");
    let mut payload = [0u8; 8];
    s.read_exact(&mut payload).unwrap();
    assert_eq!(i64::from_be_bytes(payload), 77);
    String::from_utf8(json).unwrap()
}

#[test]
fn console_ping_and_stop_command() {
    let dir = tempdir("console");
    let mut g = start(
        "fakegame --port 0 --max-players 7 --players alice --write-file out.txt --symlink up=..",
        &dir,
    );
    assert!(g.line().starts_with("[INFO] Starting fakegame"));
    assert_eq!(g.line(), "[INFO] Wrote file out.txt");
    assert_eq!(g.line(), "[INFO] Linked up -> ..");
    assert_eq!(
        std::fs::read_link(dir.join("up")).unwrap(),
        std::path::Path::new("..")
    );
    let port = g.port();
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "fakegame test file\nline two: ok\n"
    );
    let json = ping(port);
    assert!(
        json.contains("\"players\":{\"max\":7,\"online\":1,\"sample\":[{\"name\":\"alice\""),
        "{json}"
    );
    assert!(
        json.contains("\"version\":{\"name\":\"fakegame 1.0\",\"protocol\":765}"),
        "{json}"
    );

    g.send("say hello there");
    assert_eq!(g.line(), "[INFO] hello there");
    g.send("join bob");
    assert_eq!(g.line(), "[INFO] bob joined the game");
    g.send("list");
    assert_eq!(
        g.line(),
        "[INFO] There are 2 of a max of 7 players online: alice, bob"
    );
    assert!(ping(port).contains("\"online\":2"));
    g.send("nonsense");
    assert_eq!(g.line(), "[WARN] Unknown command: nonsense");
    g.send("stop");
    g.until("[INFO] Stopping server");
    assert_eq!(g.child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_and_sigint_exit_cleanly() {
    let dir = tempdir("signals");
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut g = start("exec fakegame --port 0 --spam 50", &dir);
        g.port();
        g.until("[INFO] spam line 3");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(g.child.id() as i32, sig) };
        g.until(&format!("[INFO] Received {name}, shutting down"));
        g.until("[INFO] Stopping server");
        assert_eq!(g.child.wait().unwrap().code(), Some(0), "{name}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ignore_signals_keeps_running_until_stop() {
    let dir = tempdir("ignore");
    let mut g = start("fakegame --port 0 --ignore-signals", &dir);
    g.port();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(g.child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        g.line(),
        "[WARN] Received SIGTERM, ignoring it (--ignore-signals)"
    );
    g.send("say still here");
    assert_eq!(g.line(), "[INFO] still here");
    g.send("stop");
    g.until("[INFO] Stopping server");
    assert_eq!(g.child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crash_after_exits_with_code_3_and_an_error_line() {
    let dir = tempdir("crash");
    let mut g = start("fakegame --port 0 --crash-after 0", &dir);
    let status = g.child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let mut err = String::new();
    g.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("[ERROR] Simulated crash after 0 s"), "{err}");
    assert!(err.contains("[WARN] "), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let dir = tempdir("bad");
    for line in [
        "fakegame --port nope",
        "fakegame --frobnicate",
        "fakegame | cat",
    ] {
        let mut g = start(line, &dir);
        assert_eq!(g.child.wait().unwrap().code(), Some(2), "{line}");
        let mut err = String::new();
        g.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.starts_with("[ERROR] fakegame: "), "{line}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
