//! parse → run → exit code.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::init_logging(&cli);
    match commands::run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("memslice: error: {}", commands::render_error(&err));
            commands::exit_code_for(&cli, &err)
        }
    }
}
