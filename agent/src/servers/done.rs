//! The egg's "done" strings: a run is `starting` until its console prints a line that
//! contains one of them, then `running` (Pterodactyl's and Pelican's `startup.done`).
//!
//! Lines are matched before the console's throttle, so a done line is seen even when a
//! chatty server's output is being dropped. Matching stops at the first hit; a line longer
//! than the console's line cap is matched on its first 8 KiB (done strings are at most
//! 1 KiB, see `proto::eggs::check::done`).

use crate::logs::LineSplitter;

/// Looks for the done strings in one run's output.
pub struct DoneWatch {
    strings: Vec<String>,
    stdout: LineSplitter,
    stderr: LineSplitter,
    seen: bool,
}

impl DoneWatch {
    /// `None` when the egg has no done strings (the run counts as up at once).
    pub fn new(strings: Vec<String>) -> Option<DoneWatch> {
        (!strings.is_empty()).then(|| DoneWatch {
            strings,
            stdout: LineSplitter::new(),
            stderr: LineSplitter::new(),
            seen: false,
        })
    }

    /// Feeds a chunk of stdout (`stderr` false) or stderr; true the first time a complete
    /// line contains a done string.
    pub fn push(&mut self, stderr: bool, chunk: &[u8]) -> bool {
        if self.seen {
            return false;
        }
        let strings = &self.strings;
        let splitter = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        let mut hit = false;
        splitter.push(chunk, &mut |line| {
            hit = hit || {
                let text = line.text();
                strings.iter().any(|d| text.contains(d.as_str()))
            };
        });
        self.seen = hit;
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(strings: &[&str]) -> DoneWatch {
        DoneWatch::new(strings.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn a_done_string_anywhere_in_a_line_is_seen_once_across_chunks() {
        let mut w = watch(&[")! For help, type ", "Server started"]);
        assert!(!w.push(false, b"[INFO] Loading\n[INFO] Done (3.2s)! For"));
        assert!(w.push(false, b" help, type \"help\"\n"));
        assert!(!w.push(false, b"Done (1s)! For help, type \n"));
    }

    #[test]
    fn partial_lines_wait_for_their_end_and_streams_are_separate() {
        let mut w = watch(&["Server started"]);
        assert!(!w.push(false, b"Server sta"));
        assert!(!w.push(true, b"rted\n"));
        assert!(w.push(false, b"rted on port 1\n"));
        // Escape sequences are matched as printed.
        let mut w = watch(&["\u{1b}[32mready"]);
        assert!(w.push(true, b"wine: \x1b[32mready\x1b[0m\n"));
    }

    #[test]
    fn no_strings_means_no_watch() {
        assert!(DoneWatch::new(Vec::new()).is_none());
    }
}
