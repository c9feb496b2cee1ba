//! `agent register ...` and `agent run ...`; everything lives in the library.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(agent::cli::main(args));
}
