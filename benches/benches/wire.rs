//! Wire codec benchmarks, side by side in one run:
//! - `decode/<frame>`: full decode with our simd-json decoder vs `serde_json::from_slice`;
//! - `route/<frame>`: envelope-only decode (what the panel does per frame) with the skimmer,
//!   with simd-json's serde path, and a full `serde_json` decode of the same frame (the
//!   obvious alternative);
//! - `encode/<frame>`: `serde_json::to_writer` vs `simd_json::to_writer` into a reused buffer.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use proto::{Decoder, Message};

const FIXTURES: &[&str] = &[
    "command_create_server",
    "command_stop_server",
    "response_status",
    "event_server_log",
    "event_resource_update",
    "pong",
];

fn frames() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = FIXTURES
        .iter()
        .map(|name| {
            let raw = std::fs::read(format!("{dir}/{name}.json")).expect("fixture");
            // Benchmark the compact form agents actually send.
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            (name.to_string(), serde_json::to_vec(&v).unwrap())
        })
        .collect();
    let long = serde_json::json!({
        "type": "event", "timestamp": "2025-01-23T10:05:30Z", "serverId": "server_123",
        "event": "server_log",
        "data": {"serverId": "server_123", "logLevel": "INFO", "message": "x".repeat(4000)}
    });
    out.push((
        "event_server_log_4k".into(),
        serde_json::to_vec(&long).unwrap(),
    ));
    out
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, frame) in frames() {
        g.throughput(Throughput::Bytes(frame.len() as u64));
        let mut dec = Decoder::default();
        g.bench_with_input(BenchmarkId::new("simd_json", &name), &frame, |b, f| {
            b.iter(|| {
                let m = dec.message(black_box(f)).unwrap();
                black_box(m.kind());
            })
        });
        g.bench_with_input(BenchmarkId::new("serde_json", &name), &frame, |b, f| {
            b.iter(|| {
                let m: Message = serde_json::from_slice(black_box(f)).unwrap();
                black_box(m.kind());
            })
        });
    }
    g.finish();
}

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for (name, frame) in frames() {
        g.throughput(Throughput::Bytes(frame.len() as u64));
        let mut dec = Decoder::default();
        g.bench_with_input(BenchmarkId::new("envelope_skim", &name), &frame, |b, f| {
            b.iter(|| {
                let e = dec.envelope(black_box(f)).unwrap();
                black_box((e.kind, e.server_id.is_some()));
            })
        });
        g.bench_with_input(
            BenchmarkId::new("envelope_simd_json", &name),
            &frame,
            |b, f| {
                b.iter(|| {
                    let e = dec.envelope_with_simd_json(black_box(f)).unwrap();
                    black_box((e.kind, e.server_id.is_some()));
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("full_serde_json", &name),
            &frame,
            |b, f| {
                b.iter(|| {
                    let m: Message = serde_json::from_slice(black_box(f)).unwrap();
                    black_box(m.kind());
                })
            },
        );
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, frame) in frames() {
        let msg = proto::decode(&frame).unwrap();
        let mut buf = Vec::with_capacity(8192);
        g.bench_with_input(BenchmarkId::new("serde_json", &name), &msg, |b, m| {
            b.iter(|| {
                buf.clear();
                serde_json::to_writer(&mut buf, black_box(m)).unwrap();
                black_box(buf.len());
            })
        });
        g.bench_with_input(BenchmarkId::new("simd_json", &name), &msg, |b, m| {
            b.iter(|| {
                buf.clear();
                simd_json::to_writer(&mut buf, black_box(m)).unwrap();
                black_box(buf.len());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, route, encode);
criterion_main!(benches);
