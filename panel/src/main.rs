//! `panel [flags]` and `panel up`: flags in, one call into the library.

use std::process::ExitCode;

use panel::config::{self, Invocation};
use panel::shutdown::Shutdown;

fn main() -> ExitCode {
    let invocation = match config::parse(std::env::args().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("panel: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("SMOL_THREADS").is_none() {
        // General executor threads besides the main one: cores − 2 (none on 2 cores). The
        // main thread runs tasks and drives the reactor, and one more thread runs only
        // urgent tasks (commands; see `panel::exec`). On 2 cores one general thread cost
        // 22-35 % less CPU per event than two (fewer futex wake-ups and context switches
        // between threads; BENCHMARKS.md, "Round 2" and "Round 4").
        let n = std::thread::available_parallelism().map_or(0, |n| n.get().saturating_sub(2));
        // SAFETY: nothing else runs yet (no threads spawned), so no concurrent env access.
        #[allow(unsafe_code, reason = "the executor reads SMOL_THREADS")]
        unsafe {
            std::env::set_var("SMOL_THREADS", n.to_string())
        };
    }
    ctrl_io::logger::init("PANEL_LOG", "panel");
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.on_signals() {
        eprintln!("panel: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let result = match invocation {
        Invocation::Help => {
            println!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Invocation::Run(cfg) => {
            panel::exec::block_on(panel::app::run(cfg, shutdown)).map_err(|e| e.to_string())
        }
        Invocation::User(cmd) => {
            panel::users::cli::run(&cmd, &mut std::io::stdout()).map_err(|e| e.to_string())
        }
        Invocation::Up(cfg) => {
            panel::exec::block_on(panel::up::run(cfg, shutdown)).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("panel: {e}");
            ExitCode::FAILURE
        }
    }
}
