//! `loadtest`: flags in, one call into the library, summary out.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        print!("{}", loadtest::config::USAGE);
        return ExitCode::SUCCESS;
    }
    let config = match loadtest::config::Config::parse(
        std::env::args().skip(1),
        std::env::var("PANEL_ADMIN_TOKEN").ok(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match loadtest::run::run(config) {
        Ok(report) => {
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}
