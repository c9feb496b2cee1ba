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
