//! The file manager end to end: the real panel and agent on real Docker.
//!
//! - A 100 MiB upload (`PUT …/files/upload`, streamed) and download (`GET …/files/download`,
//!   streamed) round-trip byte for byte (SHA-256), and neither the panel's nor the agent's
//!   resident memory grows by anything near the file's size while they run (their peak RSS,
//!   reset before each transfer, is read from `/proc`). A memory bound is a correctness
//!   assertion here: the file must never be held whole.
//! - Chunked request bodies, the upload size limit, a client hanging up mid-upload (the
//!   agent's temp file is removed), `Content-Disposition` of an awkward name, rename, mkdir,
//!   delete, paged listings and the console replay (`…/logs`).
//!
//! The throughput printed is what BENCHMARKS.md records (not asserted).

use e2e::events::is_status;
use e2e::stack::{SLOW, Stack};
use e2e::transfer::{Client, Framing, Generator, memory, reset_peak};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const BIG: u64 = 100 * MIB;
/// What a transfer may add to a process's peak RSS. The file is 100 MiB; a few chunks in
/// flight take a few MiB.
const MAX_GROWTH: u64 = 40 * MIB;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `f` and returns how much it raised the peak RSS of each pid above its RSS before.
fn peak_growth<T>(pids: &[(&str, u32)], f: impl FnOnce() -> T) -> (T, Vec<(String, u64, u64)>) {
    let before: Vec<u64> = pids
        .iter()
        .map(|(name, pid)| {
            assert!(reset_peak(*pid), "cannot reset the peak RSS of the {name}");
            memory(*pid).0
        })
        .collect();
    let out = f();
    let growth = pids
        .iter()
        .zip(before)
        .map(|((name, pid), before)| {
            let (_, peak) = memory(*pid);
            (name.to_string(), before, peak.saturating_sub(before))
        })
        .collect();
    (out, growth)
}

fn assert_bounded(what: &str, growth: &[(String, u64, u64)]) {
    for (name, before, grew) in growth {
        eprintln!(
            "{what}: {name} RSS {} MiB before, peak +{:.1} MiB",
            before / MIB,
            *grew as f64 / MIB as f64
        );
        assert!(
            *grew <= MAX_GROWTH,
            "{what}: the {name}'s peak RSS grew by {grew} bytes (over {MAX_GROWTH})"
        );
    }
}

#[test]
fn a_100_mib_transfer_round_trips_in_bounded_memory() {
    let Some(mut s) = Stack::start("transfer") else {
        return;
    };
    let a = s.add_agent("a");
    s.subscribe();
    let id = s.create_fakegame(a, "xfer", "");
    let client = Client::new(&s.panel.url(), s.panel.api.tls(), &s.panel.token);
    let pids = [
        ("panel", s.panel.proc.pid()),
        ("agent", s.agents[a].proc.as_ref().expect("running").pid()),
    ];
    let volume = s.agents[a].data_dir.join("volumes").join(&id);
    let base = format!("/api/servers/{id}/files");

    // Upload 100 MiB.
    let started = Instant::now();
    let (up, growth) = peak_growth(&pids, || {
        client.put(
            &format!("{base}/upload?path={}", enc("/server/data/big.bin")),
            Generator::new(42, BIG),
            Framing::ContentLength,
        )
    });
    let up = up.expect("upload");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(up.status, 200, "{}", up.small_body);
    let body: Value = serde_json::from_str(&up.small_body).unwrap();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["size"], BIG);
    eprintln!("upload: 100 MiB in {secs:.2} s = {:.1} MiB/s", 100.0 / secs);
    assert_bounded("upload", &growth);
    assert_eq!(
        std::fs::metadata(volume.join("data/big.bin"))
            .unwrap()
            .len(),
        BIG
    );

    // Download it again.
    let started = Instant::now();
    let (down, growth) = peak_growth(&pids, || {
        client.get(&format!(
            "{base}/download?path={}",
            enc("/server/data/big.bin")
        ))
    });
    let down = down.expect("download");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(down.status, 200, "{}", down.small_body);
    assert_eq!(
        down.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert_eq!(
        down.header("content-disposition"),
        Some("attachment; filename=\"big.bin\"; filename*=UTF-8''big.bin")
    );
    assert_eq!(down.len, BIG);
    assert_eq!(
        down.sha256,
        Generator::new(42, BIG).sha256(),
        "bytes differ"
    );
    eprintln!(
        "download: 100 MiB in {secs:.2} s = {:.1} MiB/s",
        100.0 / secs
    );
    assert_bounded("download", &growth);

    // A chunked request body round-trips too.
    let small = 3 * MIB + 12_345;
    let up = client
        .put(
            &format!("{base}/upload?path={}", enc("/server/chunked.bin")),
            Generator::new(7, small),
            Framing::Chunked,
        )
        .expect("chunked upload");
    assert_eq!(up.status, 200, "{}", up.small_body);
    let down = client
        .get(&format!(
            "{base}/download?path={}",
            enc("/server/chunked.bin")
        ))
        .unwrap();
    assert_eq!(down.sha256, Generator::new(7, small).sha256());

    // An empty file, and a name that needs encoding in the header.
    let odd = "/server/we\"ird näme;.txt";
    let up = client
        .put(
            &format!("{base}/upload?path={}", enc(odd)),
            Generator::new(1, 0),
            Framing::ContentLength,
        )
        .unwrap();
    assert_eq!(up.status, 200, "{}", up.small_body);
    let down = client
        .get(&format!("{base}/download?path={}", enc(odd)))
        .unwrap();
    assert_eq!(down.status, 200, "{}", down.small_body);
    assert_eq!(down.len, 0);
    assert_eq!(
        down.header("content-disposition"),
        Some(
            "attachment; filename=\"we_ird n_me_.txt\"; filename*=UTF-8''we%22ird%20n%C3%A4me%3B.txt"
        )
    );

    // A client that hangs up mid-upload leaves no temp file on the agent.
    client
        .put_and_hang_up(
            &format!("{base}/upload?path={}", enc("/server/cut.bin")),
            50 * MIB,
            5 * MIB,
        )
        .expect("partial upload");
    e2e::eventually(
        "the temp file of the cut upload removed",
        Duration::from_secs(30),
        || {
            let staged = std::fs::read_dir(volume.join(".ctrl-uploads"))
                .map(|d| d.count())
                .unwrap_or(0);
            (staged == 0).then_some(())
        },
    );
    assert!(!volume.join("cut.bin").exists());

    // Over the upload limit (1 GiB by default): refused before a byte is read.
    let api = &s.panel.api;
    let over = client
        .put_head_only(
            &format!("{base}/upload?path={}", enc("/server/huge.bin")),
            2 << 30,
        )
        .expect("an answer to the head");
    assert_eq!(over.status, 413, "{}", over.small_body);
    assert!(over.small_body.contains("PAYLOAD_TOO_LARGE"));

    // Downloads of what is not a file: the agent's code, passed through.
    let r = client
        .get(&format!("{base}/download?path={}", enc("/server/data")))
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.small_body);
    assert!(r.small_body.contains("INVALID_PATH"), "{}", r.small_body);
    let r = client
        .get(&format!(
            "{base}/download?path={}",
            enc("/server/../etc/passwd")
        ))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.small_body);

    // mkdir, rename, delete, paging.
    api.post(
        &format!("{base}/mkdir"),
        &json!({"path": "/server/dir/sub"}),
    )
    .ok("mkdir");
    assert!(volume.join("dir/sub").is_dir());
    api.post(
        &format!("{base}/rename"),
        &json!({"from": "/server/chunked.bin", "to": "/server/dir/sub/c.bin"}),
    )
    .ok("rename");
    assert!(volume.join("dir/sub/c.bin").exists());
    api.post(
        &format!("{base}/rename"),
        &json!({"from": "/server/dir", "to": "/server/dir/sub/x"}),
    )
    .err("rename into itself", 400, "INVALID_PATH");
    for i in 0..5 {
        api.post(
            &format!("{base}/mkdir"),
            &json!({"path": format!("/server/many/d{i}")}),
        )
        .ok("mkdir");
    }
    let page = api
        .get(&format!("{base}?path=/server/many&offset=1&limit=2"))
        .ok("page");
    let names: Vec<&str> = page["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d1", "d2"]);
    assert_eq!(page["data"]["nextOffset"], 3);
    assert_eq!(page["data"]["total"], 5);
    api.delete(&format!("{base}?path=/server/dir")).ok("delete");
    assert!(!volume.join("dir").exists());
    api.delete(&format!("{base}?path=/server/dir"))
        .err("delete again", 502, "FILE_NOT_FOUND");

    // The console replay.
    let mark = s.events().mark();
    api.power(&id, &json!({"action": "start"}));
    s.events()
        .wait_after(mark, "running", SLOW, |v| is_status(v, &id, "running"));
    let logs = e2e::eventually("console lines", SLOW, || {
        let r = api
            .get(&format!("/api/servers/{id}/logs?lines=5"))
            .ok("logs");
        let lines = r["lines"].as_array().cloned().unwrap_or_default();
        (!lines.is_empty()).then_some(lines)
    });
    assert!(logs.len() <= 5);
    assert!(logs[0]["message"].is_string() && logs[0]["timestamp"].is_string());
    api.get(&format!("/api/servers/{id}/logs?lines=5000")).err(
        "too many lines",
        400,
        "INVALID_MESSAGE",
    );
}
