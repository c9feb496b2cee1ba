//! A minimal stderr logger for the `log` facade: `LEVEL target: message`, one line each.
//! The level comes from `AGENT_LOG` (error, warn, info, debug, trace; default info).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Dependencies log at debug/trace a lot; keep them at warn unless asked for trace.
        let ours = record.target().starts_with("agent");
        if !ours && record.level() > Level::Warn && log::max_level() < LevelFilter::Trace {
            return;
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "{} {} {}: {}",
            proto::time::now_rfc3339(),
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let level = match std::env::var("AGENT_LOG").as_deref() {
        Ok("error") => LevelFilter::Error,
        Ok("warn") => LevelFilter::Warn,
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        Ok("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
