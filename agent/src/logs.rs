//! Console output → `server_log` lines: splitting across chunks, capping long lines, guessing
//! a level, and an explicit per-server throttle.
//!
//! A game server can print faster than any panel wants to read; the throttle is a token
//! bucket (default 200 lines/s, burst 400). Dropped lines are never silent: the next
//! delivered line carries `dropped: N` (exact count since the previous delivered line), and
//! at most once a second a synthetic line `[agent] N log lines dropped (rate limit)` is
//! emitted as well, so a human reading the console sees it too.
//!
//! Above the per-server throttles, every console of the node draws from one shared
//! [`Budget`] (node policy `consoleRate`/`consoleBurst`, default 800 lines/s, burst 1,600):
//! the panel accepts a bounded number of frames per second from an agent (its
//! `--agent-rate`, default 1,000, burst 2,000) and answers the excess with `RATE_LIMITED`,
//! losing those lines and the `dropped` counts they carry. A line the budget refuses is
//! dropped and counted in its console's `dropped` like a line its own throttle refuses, so
//! five chatty servers lose lines visibly at the agent instead of silently at the panel.
//! Announcements draw from the budget too; one it refuses waits for the next line.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest line delivered; longer lines are cut and marked.
pub const MAX_LINE: usize = 8 * 1024;
/// Appended to a line cut at [`MAX_LINE`].
pub const TRUNCATION_MARK: &str = " [truncated]";
/// Default sustained rate, lines per second per server.
pub const DEFAULT_RATE: f64 = 200.0;
/// Default burst, lines.
pub const DEFAULT_BURST: f64 = 400.0;
/// Default node-wide console budget, lines per second (below the panel's default
/// per-agent frame rate of 1,000, leaving room for resource updates, status changes,
/// responses and pongs).
pub const DEFAULT_NODE_RATE: f64 = 800.0;
/// Default node-wide console burst, lines.
pub const DEFAULT_NODE_BURST: f64 = 1600.0;
/// Minimum spacing of synthetic "dropped" announcements.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits one output stream into lines whatever the chunking. A line longer than
/// [`MAX_LINE`] is delivered cut (with [`TRUNCATION_MARK`]) as soon as it overflows, and the
/// rest of it, up to its newline, is discarded: memory stays bounded.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Inside the discarded tail of an overlong line.
    skipping: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; calls `out` for every complete line (without `\n` / `\r\n`). A line
    /// is handed over as borrowed bytes: the caller decides whether it becomes a `String`
    /// (a throttled console drops most lines of a flood without allocating them).
    pub fn push(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Line<'_>)) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (piece, rest, complete) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if self.skipping {
                if complete {
                    self.skipping = false;
                }
                continue;
            }
            let room = MAX_LINE - self.buf.len();
            if piece.len() > room {
                self.buf.extend_from_slice(&piece[..room]);
                out(Line {
                    bytes: &self.buf,
                    cut: true,
                });
                self.buf.clear();
                self.skipping = !complete;
                continue;
            }
            if complete && self.buf.is_empty() {
                // The whole line is in this chunk: no copy.
                out(Line {
                    bytes: piece,
                    cut: false,
                });
                continue;
            }
            self.buf.extend_from_slice(piece);
            if complete {
                out(Line {
                    bytes: &self.buf,
                    cut: false,
                });
                self.buf.clear();
            }
        }
    }

    /// The stream ended: delivers a final line that had no newline.
    pub fn finish(&mut self, out: &mut impl FnMut(Line<'_>)) {
        if !self.buf.is_empty() && !self.skipping {
            out(Line {
                bytes: &self.buf,
                cut: false,
            });
        }
        self.buf.clear();
        self.skipping = false;
    }
}

/// One line from a [`LineSplitter`], still as the bytes the server wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    bytes: &'a [u8],
    /// Cut at [`MAX_LINE`] (gets [`TRUNCATION_MARK`]).
    cut: bool,
}

impl Line<'_> {
    /// The line's text as written (lossy UTF-8, no truncation mark); borrowed when valid.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.bytes.strip_suffix(b"\r").unwrap_or(self.bytes))
    }

    /// The line as text (lossy UTF-8; a cut line ends with [`TRUNCATION_MARK`]).
    pub fn into_string(self) -> String {
        if self.cut {
            cut_line(self.bytes)
        } else {
            finish_line(self.bytes)
        }
    }
}

fn finish_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn cut_line(bytes: &[u8]) -> String {
    // Cut on a character boundary: drop a trailing partial UTF-8 sequence.
    let mut end = bytes.len();
    match std::str::from_utf8(bytes) {
        Ok(_) => {}
        Err(e) if e.error_len().is_none() => end = e.valid_up_to(),
        Err(_) => {}
    }
    let mut s = String::from_utf8_lossy(&bytes[..end]).into_owned();
    s.push_str(TRUNCATION_MARK);
    s
}

/// Guesses a log level from the line's text (`[Server thread/WARN]`, `ERROR:`, ...), the
/// earliest keyword in the first 160 bytes winning; otherwise INFO for stdout and ERROR for
/// stderr.
pub fn guess_level(line: &str, stream: Stream) -> &'static str {
    const KEYWORDS: &[(&str, &str)] = &[
        ("ERROR", "ERROR"),
        ("SEVERE", "ERROR"),
        ("FATAL", "ERROR"),
        ("CRITICAL", "ERROR"),
        ("WARNING", "WARN"),
        ("WARN", "WARN"),
        ("INFO", "INFO"),
        ("DEBUG", "DEBUG"),
        ("TRACE", "DEBUG"),
    ];
    let mut end = line.len().min(160);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let head = &line[..end];
    let bytes = head.as_bytes();
    let mut best: Option<(usize, &'static str)> = None;
    for (word, level) in KEYWORDS {
        let mut from = 0;
        while let Some(i) = head[from..].find(word) {
            let at = from + i;
            let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphabetic();
            let after = at + word.len();
            let after_ok = after >= bytes.len() || !bytes[after].is_ascii_alphabetic();
            if before_ok && after_ok {
                if best.is_none_or(|(pos, _)| at < pos) {
                    best = Some((at, level));
                }
                break;
            }
            from = at + 1;
        }
    }
    match (best, stream) {
        (Some((_, level)), _) => level,
        (None, Stream::Stdout) => "INFO",
        (None, Stream::Stderr) => "ERROR",
    }
}

/// The node-wide token bucket every console draws from (see the module docs).
#[derive(Debug)]
pub struct Budget {
    rate: f64,
    burst: f64,
    /// Tokens and the time they were counted at.
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    pub fn new(rate: f64, burst: f64) -> Arc<Budget> {
        Arc::new(Budget {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        })
    }

    /// A budget that never refuses (tests, tools).
    pub fn unlimited() -> Arc<Budget> {
        Budget::new(f64::INFINITY, f64::INFINITY)
    }

    /// Takes one token if there is one.
    pub fn try_take(&self, now: Instant) -> bool {
        let mut st = self.state.lock();
        let (tokens, at) = &mut *st;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *at = now.max(*at);
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

/// A token bucket deciding which lines are delivered.
#[derive(Debug, Clone)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Dropped since the last delivered line (goes into its `dropped`).
    dropped_since_delivery: u64,
    /// Dropped since the last synthetic announcement.
    dropped_since_announce: u64,
    last_announce: Option<Instant>,
    /// Lifetime total, for metrics and tests.
    total_dropped: u64,
    /// The node-wide budget shared with the other consoles.
    node: Arc<Budget>,
}

/// The throttle's verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver; `dropped` lines were dropped since the previous delivered line, and
    /// `announce` (if set) is the count to announce in a synthetic line first.
    Deliver {
        dropped: u64,
        announce: Option<u64>,
    },
    Drop,
}

impl Throttle {
    /// A throttle of its own, with no node-wide budget above it.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Throttle::sharing(rate, burst, now, Budget::unlimited())
    }

    /// A throttle whose lines also draw from the node-wide `node` budget.
    pub fn sharing(rate: f64, burst: f64, now: Instant, node: Arc<Budget>) -> Self {
        Throttle {
            rate,
            burst,
            tokens: burst,
            last: now,
            dropped_since_delivery: 0,
            dropped_since_announce: 0,
            last_announce: None,
            total_dropped: 0,
            node,
        }
    }

    pub fn total_dropped(&self) -> u64 {
        self.total_dropped
    }

    /// Decides about one line arriving at `now`.
    pub fn admit(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        // The server's own bucket first: a line it refuses takes nothing from the node's.
        if self.tokens < 1.0 || !self.node.try_take(now) {
            self.dropped_since_delivery += 1;
            self.dropped_since_announce += 1;
            self.total_dropped += 1;
            return Verdict::Drop;
        }
        self.tokens -= 1.0;
        let dropped = std::mem::take(&mut self.dropped_since_delivery);
        Verdict::Deliver {
            dropped,
            announce: self.take_announcement(now),
        }
    }

    /// The count to announce now, if any is pending, the last announcement is at least a
    /// second old and the node's budget has a token for it.
    fn take_announcement(&mut self, now: Instant) -> Option<u64> {
        if self.dropped_since_announce == 0 {
            return None;
        }
        if let Some(last) = self.last_announce
            && now.saturating_duration_since(last) < ANNOUNCE_EVERY
        {
            return None;
        }
        if !self.node.try_take(now) {
            return None;
        }
        self.last_announce = Some(now);
        Some(std::mem::take(&mut self.dropped_since_announce))
    }

    /// The stream ended: whatever was dropped and not yet announced, announce it now.
    pub fn flush(&mut self) -> Option<u64> {
        self.dropped_since_delivery = 0;
        let n = std::mem::take(&mut self.dropped_since_announce);
        (n > 0).then_some(n)
    }
}

/// One line ready to become a `server_log` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    /// `None` for the agent's own synthetic lines.
    pub stream: Option<Stream>,
    pub dropped: Option<u64>,
}

/// The text of the synthetic announcement.
pub fn dropped_message(n: u64) -> String {
    format!("[agent] {n} log lines dropped (rate limit)")
}

/// A server's whole console pipeline: one splitter per stream, one shared throttle.
#[derive(Debug)]
pub struct Console {
    stdout: LineSplitter,
    stderr: LineSplitter,
    throttle: Throttle,
}

impl Console {
    /// `rate` and `burst` are the server's own throttle; `node` the budget it shares.
    pub fn new(rate: f64, burst: f64, node: Arc<Budget>) -> Self {
        Console {
            stdout: LineSplitter::new(),
            stderr: LineSplitter::new(),
            throttle: Throttle::sharing(rate, burst, Instant::now(), node),
        }
    }

    pub fn total_dropped(&self) -> u64 {
        self.throttle.total_dropped()
    }

    /// Feeds one chunk of output; delivered lines are pushed to `out`.
    pub fn push(&mut self, stream: Stream, chunk: &[u8], now: Instant, out: &mut Vec<LogLine>) {
        let throttle = &mut self.throttle;
        let splitter = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        splitter.push(chunk, &mut |line| deliver(throttle, stream, line, now, out));
    }

    /// Announces now whatever the throttle dropped and has not announced yet: called when
    /// the output goes quiet, so a burst's drops are reported without waiting for the next
    /// line.
    pub fn flush_dropped(&mut self, out: &mut Vec<LogLine>) {
        if self.throttle.dropped_since_announce == 0 || !self.throttle.node.try_take(Instant::now())
        {
            return; // nothing to say, or no room for it now: the next tick tries again
        }
        if let Some(n) = self.throttle.flush() {
            out.push(announcement(n));
        }
    }

    /// The output ended (container stopped or stream lost): final partial lines and any
    /// pending drop announcement.
    pub fn finish(&mut self, now: Instant, out: &mut Vec<LogLine>) {
        let throttle = &mut self.throttle;
        self.stdout
            .finish(&mut |line| deliver(throttle, Stream::Stdout, line, now, out));
        self.stderr
            .finish(&mut |line| deliver(throttle, Stream::Stderr, line, now, out));
        if let Some(n) = self.throttle.flush() {
            out.push(announcement(n));
        }
    }
}

fn announcement(n: u64) -> LogLine {
    LogLine {
        level: "WARN",
        message: dropped_message(n),
        stream: None,
        dropped: None,
    }
}

/// The throttle decides first; only a delivered line is turned into text.
fn deliver(
    throttle: &mut Throttle,
    stream: Stream,
    line: Line<'_>,
    now: Instant,
    out: &mut Vec<LogLine>,
) {
    match throttle.admit(now) {
        Verdict::Drop => {}
        Verdict::Deliver { dropped, announce } => {
            if let Some(n) = announce {
                out.push(announcement(n));
            }
            let line = line.into_string();
            out.push(LogLine {
                level: guess_level(&line, stream),
                message: line,
                stream: Some(stream),
                dropped: (dropped > 0).then_some(dropped),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], step: usize) -> Vec<String> {
        let mut s = LineSplitter::new();
        let mut out = Vec::new();
        for c in input.chunks(step) {
            s.push(c, &mut |l| out.push(l.into_string()));
        }
        s.finish(&mut |l| out.push(l.into_string()));
        out
    }

    #[test]
    fn lines_split_identically_at_every_chunking() {
        let input = "first\r\nsecond\n\nthird é\nlast-no-newline".as_bytes();
        let want = vec!["first", "second", "", "third é", "last-no-newline"];
        for step in 1..=input.len() {
            assert_eq!(split_all(input, step), want, "chunk size {step}");
        }
    }

    #[test]
    fn long_lines_are_cut_marked_and_their_tail_skipped() {
        let mut input = vec![b'a'; MAX_LINE * 2 + 10];
        input.extend_from_slice(b"\nnext\n");
        for step in [1, 100, 4096, input.len()] {
            let out = split_all(&input, step);
            assert_eq!(out.len(), 2, "chunk size {step}");
            assert_eq!(out[0].len(), MAX_LINE + TRUNCATION_MARK.len());
            assert!(out[0].ends_with(TRUNCATION_MARK));
            assert_eq!(out[1], "next");
        }
        // A line of exactly MAX_LINE bytes is not cut.
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(split_all(&exact, 1000)[0].len(), MAX_LINE);
    }

    #[test]
    fn cuts_never_split_a_character() {
        let mut input = vec![b'a'; MAX_LINE - 1];
        input.extend_from_slice("é".as_bytes()); // 2 bytes straddling the limit
        input.push(b'\n');
        let out = split_all(&input, 333);
        assert_eq!(out.len(), 1);
        assert!(!out[0].contains('\u{FFFD}'), "no replacement character");
        assert!(out[0].ends_with(&format!("a{TRUNCATION_MARK}")));
    }

    #[test]
    fn levels_are_guessed_from_the_earliest_keyword() {
        let l = |s| guess_level(s, Stream::Stdout);
        assert_eq!(
            l("[10:05:30] [Server thread/INFO]: player1 joined the game"),
            "INFO"
        );
        assert_eq!(l("[10:05:30] [Server thread/WARN]: Can't keep up!"), "WARN");
        assert_eq!(l("[Server thread/INFO]: <bob> ERROR is my name"), "INFO");
        assert_eq!(l("ERROR: disk full"), "ERROR");
        assert_eq!(l("[SEVERE] oops"), "ERROR");
        assert_eq!(l("WARNING: x"), "WARN");
        assert_eq!(l("INFORMATION is not a level"), "INFO"); // default, no keyword
        assert_eq!(l("TERRORIST wins"), "INFO"); // ERROR inside a word does not count
        assert_eq!(guess_level("plain", Stream::Stderr), "ERROR");
        assert_eq!(guess_level("[INFO] via stderr", Stream::Stderr), "INFO");
        assert_eq!(l(&"é".repeat(200)), "INFO"); // no panic on multibyte cut
    }

    #[test]
    fn throttle_allows_the_burst_then_the_rate_and_counts_drops() {
        let t0 = Instant::now();
        let mut t = Throttle::new(10.0, 20.0, t0);
        let mut delivered = 0;
        for _ in 0..100 {
            if matches!(t.admit(t0), Verdict::Deliver { .. }) {
                delivered += 1;
            }
        }
        assert_eq!(delivered, 20, "exactly the burst at one instant");
        assert_eq!(t.total_dropped(), 80);
        // One second later: 10 more tokens; the first delivered line reports the 80 drops.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            t.admit(t1),
            Verdict::Deliver {
                dropped: 80,
                announce: Some(80)
            }
        );
        for _ in 0..9 {
            assert_eq!(
                t.admit(t1),
                Verdict::Deliver {
                    dropped: 0,
                    announce: None
                }
            );
        }
        assert_eq!(t.admit(t1), Verdict::Drop);
        // Within the same second the next announcement waits; the dropped count does not.
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!(
            t.admit(t2),
            Verdict::Deliver {
                dropped: 1,
                announce: None
            }
        );
        assert_eq!(t.flush(), Some(1));
        assert_eq!(t.flush(), None);
    }

    #[test]
    fn a_flood_is_cut_down_and_announced() {
        let mut c = Console::new(200.0, 400.0, Budget::unlimited());
        let now = Instant::now();
        let mut out = Vec::new();
        let flood: String = (0..5000).map(|i| format!("spam {i}\n")).collect();
        c.push(Stream::Stdout, flood.as_bytes(), now, &mut out);
        assert_eq!(out.len(), 400);
        assert_eq!(c.total_dropped(), 4600);
        let later = now + Duration::from_secs(2);
        out.clear();
        c.push(Stream::Stdout, b"after\n", later, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].message, dropped_message(4600));
        assert_eq!(out[0].stream, None);
        assert_eq!(out[1].message, "after");
        assert_eq!(out[1].dropped, Some(4600));
        assert_eq!(out[1].stream, Some(Stream::Stdout));
    }

    #[test]
    fn consoles_share_the_node_budget_and_count_what_it_refuses() {
        let node = Budget::new(100.0, 100.0);
        let mut consoles: Vec<Console> = (0..3)
            .map(|_| Console::new(1000.0, 1000.0, node.clone()))
            .collect();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let flood: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let mut delivered = [0u64; 3];
        for (i, c) in consoles.iter_mut().enumerate() {
            c.push(Stream::Stdout, flood.as_bytes(), t0, &mut out);
            delivered[i] = out.drain(..).count() as u64;
        }
        assert_eq!(
            delivered.iter().sum::<u64>(),
            100,
            "the node's burst, not 3 x 1,000"
        );
        // Two seconds later the budget has refilled: each console's next line carries its
        // own drops, and every line is delivered or counted.
        let t1 = t0 + Duration::from_secs(2);
        for (i, c) in consoles.iter_mut().enumerate() {
            c.push(Stream::Stdout, b"after\n", t1, &mut out);
            let lines = std::mem::take(&mut out);
            let last = lines.last().expect("a line after the refill");
            assert_eq!(last.message, "after");
            let dropped = last.dropped.unwrap_or(0);
            assert_eq!(dropped, 100 - delivered[i], "console {i}");
            assert_eq!(c.total_dropped(), dropped);
            if dropped > 0 {
                assert_eq!(lines[0].message, dropped_message(dropped), "announced");
            }
        }
    }

    #[test]
    fn an_empty_node_budget_postpones_announcements() {
        let node = Budget::new(1.0, 2.0);
        let mut c = Console::new(1000.0, 1000.0, node.clone());
        let t0 = Instant::now();
        let mut out = Vec::new();
        c.push(Stream::Stdout, b"a\nb\nc\n", t0, &mut out);
        assert_eq!(out.len(), 2, "the node's burst of 2");
        out.clear();
        // No token for the quiet announcement yet: it stays pending, not lost.
        assert!(!node.try_take(t0));
        c.flush_dropped(&mut out);
        let later = Instant::now() + Duration::from_secs(2);
        while out.is_empty() && Instant::now() < later {
            std::thread::sleep(Duration::from_millis(50));
            c.flush_dropped(&mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message, dropped_message(1));
    }

    #[test]
    fn stdout_and_stderr_partial_lines_do_not_mix() {
        let mut c = Console::new(1000.0, 1000.0, Budget::unlimited());
        let now = Instant::now();
        let mut out = Vec::new();
        c.push(Stream::Stdout, b"hel", now, &mut out);
        c.push(Stream::Stderr, b"oops\n", now, &mut out);
        c.push(Stream::Stdout, b"lo\n", now, &mut out);
        c.push(Stream::Stderr, b"tail", now, &mut out);
        c.finish(now, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|l| (l.message.as_str(), l.stream, l.level))
            .collect();
        assert_eq!(
            got,
            vec![
                ("oops", Some(Stream::Stderr), "ERROR"),
                ("hello", Some(Stream::Stdout), "INFO"),
                ("tail", Some(Stream::Stderr), "ERROR"),
            ]
        );
    }
}
