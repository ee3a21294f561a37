//! parse → settle the caller → run → exit code.

mod cli;
mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, asked) = cli::Cli::parse_and_describe();
    commands::init_logging(&cli);
    commands::main(&cli, &asked)
}
