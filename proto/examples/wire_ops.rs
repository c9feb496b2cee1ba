//! Runs one wire operation N times on one frame, for instruction counting under callgrind
//! (deterministic, unlike wall-clock time on a shared machine):
//!
//! ```sh
//! cargo build --release -p proto --example wire_ops
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/wire_ops decode pong 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/wire_ops decode pong 10000
//! ```
//!
//! (instructions at N=10000 − at N=0) ÷ 10000 = instructions per operation. Operations:
//! `decode` (`Decoder::message`), `encode` (`encode_into` a reused buffer), `route`
//! (`Decoder::envelope`). Frames are those of the wire bench (`benches/benches/wire.rs`).

use proto::{Decoder, Message};
use std::hint::black_box;

fn frame(name: &str) -> Vec<u8> {
    if name == "event_server_log_4k" {
        let long = serde_json::json!({
            "type": "event", "timestamp": "2025-01-23T10:05:30Z", "serverId": "server_123",
            "event": "server_log",
            "data": {"serverId": "server_123", "logLevel": "INFO", "message": "x".repeat(4000)}
        });
        return serde_json::to_vec(&long).unwrap();
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let raw = std::fs::read(format!("{dir}/{name}.json")).expect("fixture");
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    serde_json::to_vec(&v).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, name, n] = &args[..] else {
        eprintln!("usage: wire_ops decode|encode|route FRAME N");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("N");
    let frame = frame(name);
    let mut dec = Decoder::default();
    match op.as_str() {
        "decode" => {
            for _ in 0..n {
                let m: Message = dec.message(black_box(&frame)).unwrap();
                black_box(m.kind());
            }
        }
        "encode" => {
            let msg = proto::decode(&frame).unwrap();
            let mut buf = Vec::with_capacity(8192);
            for _ in 0..n {
                buf.clear();
                proto::encode_into(black_box(&msg), &mut buf);
                black_box(buf.len());
            }
        }
        "route" => {
            for _ in 0..n {
                let e = dec.envelope(black_box(&frame)).unwrap();
                black_box((e.kind, e.server_id.is_some()));
            }
        }
        other => panic!("unknown operation {other}"),
    }
}
