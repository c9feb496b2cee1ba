//! The stderr logger for the `log` facade that the panel and the agent install:
//! `TIME LEVEL target: message`, one line each. stdout stays free for what scripts and tests
//! parse (the panel's start-up banner).
//!
//! The level comes from an environment variable named by the program (`PANEL_LOG`,
//! `AGENT_LOG`): error, warn, info (default), debug, trace, off. Dependencies are chatty below
//! warn, so their debug/info lines show only at trace; the program's own modules (and this
//! crate's) follow the level.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr {
    /// Target prefix of the program's own modules (`panel`, `agent`).
    own: &'static str,
}

impl Stderr {
    fn shows(&self, target: &str, level: Level, max: LevelFilter) -> bool {
        if level > max {
            return false;
        }
        let ours = target.starts_with(self.own) || target.starts_with("ctrl_io");
        ours || level <= Level::Warn || max >= LevelFilter::Trace
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.shows(record.target(), record.level(), log::max_level()) {
            return;
        }
        // Formatted first, then written with one system call: stderr is unbuffered, and
        // `writeln!` straight into it issues a `write` per piece (about eight per line; a
        // reconnect storm logs two lines per agent).
        let mut line = String::with_capacity(128);
        let _ = writeln!(
            line,
            "{} {} {}: {}",
            proto::time::now_rfc3339(),
            record.level(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<Stderr> = OnceLock::new();

/// The level an environment variable's value asks for (unset or unknown: info).
pub fn level_from(value: Option<&str>) -> LevelFilter {
    match value {
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        Some("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger once, at the level `env_var` asks for; `own_target` is the program's
/// crate name (`"panel"`, `"agent"`). Later calls do nothing.
pub fn init(env_var: &str, own_target: &'static str) {
    let level = level_from(std::env::var(env_var).ok().as_deref());
    let logger = LOGGER.get_or_init(|| Stderr { own: own_target });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_the_variable() {
        assert_eq!(level_from(None), LevelFilter::Info);
        assert_eq!(level_from(Some("warn")), LevelFilter::Warn);
        assert_eq!(level_from(Some("trace")), LevelFilter::Trace);
        assert_eq!(level_from(Some("off")), LevelFilter::Off);
        assert_eq!(level_from(Some("loud")), LevelFilter::Info);
    }

    #[test]
    fn dependencies_are_quiet_below_warn_unless_tracing() {
        let l = Stderr { own: "agent" };
        let info = LevelFilter::Info;
        assert!(l.shows("agent::link", Level::Info, info));
        assert!(l.shows("ctrl_io::rest", Level::Info, info));
        assert!(!l.shows("agent::link", Level::Debug, info));
        assert!(!l.shows("rustls::conn", Level::Info, info));
        assert!(l.shows("rustls::conn", Level::Warn, info));
        assert!(!l.shows("rustls::conn", Level::Debug, LevelFilter::Debug));
        assert!(l.shows("rustls::conn", Level::Debug, LevelFilter::Trace));
        assert!(!l.shows("agent", Level::Error, LevelFilter::Off));
    }
}
