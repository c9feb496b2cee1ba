//! The last console lines of a server, kept so a console that opens can replay them
//! (`get_logs`), the way Wings replays its last 150.
//!
//! Filled from exactly what goes out as `server_log` (console lines after the throttle,
//! and the agent's own `[agent] ...` lines), bounded in lines and in bytes: the oldest go
//! first. Kept in memory only: an agent restart starts with an empty history (the lines
//! printed while no agent ran are in Docker's json-file log, not here).

use parking_lot::Mutex;
use proto::ConsoleLine;
use proto::codec::json_string_len;
use std::collections::VecDeque;

/// Lines kept per server at most (also the most `get_logs` returns).
pub const MAX_LINES: usize = proto::validate::MAX_LOG_LINES;
/// Bytes kept per server at most (text and timestamps).
pub const MAX_BYTES: usize = 256 * 1024;
/// What one line costs on the wire besides its strings
/// (`{"timestamp":,"message":,"logLevel":"ERROR"},`).
const LINE_WIRE_OVERHEAD: usize = 48;

struct Kept {
    timestamp: String,
    message: String,
    level: String,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.timestamp.len() + self.message.len() + self.level.len()
    }
}

#[derive(Default)]
pub struct History {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Kept>,
    bytes: usize,
}

impl History {
    /// Keeps one line, evicting the oldest beyond the bounds.
    pub fn push(&self, timestamp: &str, level: &str, message: &str) {
        let kept = Kept {
            timestamp: timestamp.to_owned(),
            message: message.to_owned(),
            level: level.to_owned(),
        };
        let mut ring = self.inner.lock();
        ring.bytes += kept.bytes();
        ring.lines.push_back(kept);
        while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
            let Some(old) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= old.bytes();
        }
    }

    /// The last `n` lines, oldest first, fewer when more would take over `room` bytes on
    /// the wire (JSON escaping counted).
    pub fn last(&self, n: usize, room: usize) -> Vec<ConsoleLine> {
        let ring = self.inner.lock();
        let mut used = 0usize;
        let mut out: Vec<ConsoleLine> = Vec::new();
        for k in ring.lines.iter().rev().take(n) {
            let cost = json_string_len(&k.message)
                + json_string_len(&k.timestamp)
                + json_string_len(&k.level)
                + LINE_WIRE_OVERHEAD;
            used = used.saturating_add(cost);
            if used > room {
                break;
            }
            out.push(ConsoleLine {
                timestamp: k.timestamp.clone(),
                message: k.message.clone(),
                log_level: Some(k.level.clone()),
            });
        }
        out.reverse();
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().lines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_lines_and_bytes() {
        let h = History::default();
        for i in 0..(MAX_LINES + 10) {
            h.push("t", "INFO", &format!("line {i}"));
        }
        assert_eq!(h.len(), MAX_LINES);
        let last = h.last(3, usize::MAX);
        let texts: Vec<_> = last.iter().map(|l| l.message.as_str()).collect();
        let n = MAX_LINES + 10;
        assert_eq!(
            texts,
            vec![
                format!("line {}", n - 3),
                format!("line {}", n - 2),
                format!("line {}", n - 1)
            ]
        );
        // Long lines: the byte bound wins.
        let big = "x".repeat(8 * 1024);
        for _ in 0..100 {
            h.push("t", "INFO", &big);
        }
        assert!(h.inner.lock().bytes <= MAX_BYTES);
        assert!(h.len() < 40, "{}", h.len());
    }

    #[test]
    fn an_answer_fits_its_room_counting_escapes() {
        let h = History::default();
        let control = "\u{1}".repeat(1000); // six bytes each on the wire
        for _ in 0..10 {
            h.push("2025-01-01T00:00:00Z", "INFO", &control);
        }
        let got = h.last(10, 20_000);
        assert_eq!(got.len(), 3, "6,000+ bytes each");
        let wire = serde_json::to_string(&proto::LogLines { lines: got }).unwrap();
        assert!(wire.len() <= 20_000, "{}", wire.len());
        assert!(h.last(10, 10).is_empty());
    }
}
