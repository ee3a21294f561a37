//! Writes what the package ships about the CLI, from the CLI's own
//! definitions (src/cli/): memslice(1) and one page per subcommand
//! (memslice-protect(1), memslice-heal-check(1) ...), and the bash, zsh
//! and fish completions. `dist/build-deb.sh` runs it:
//!
//! `cargo run --example package-docs -- DIR` writes `DIR/man/*.1` and
//! `DIR/completions/{memslice.bash,_memslice,memslice.fish}`.
//!
//! A build step of its own rather than a subcommand or a build script: the
//! shipped binary carries no generator and does no work for it, and a
//! normal build does not regenerate pages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_complete::Shell;

// The binary's own definitions; the rest of the file (the trust rules'
// view of the command line) is the binary's business.
#[allow(dead_code)]
#[path = "../src/cli/mod.rs"]
mod cli;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: package-docs DIR");
        return ExitCode::from(2);
    };
    match write(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("package-docs: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(cli::Cli::command(), &man)?;
    let mut shown = without_hidden(cli::Cli::command());
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut shown, "memslice", &completions)?;
    }
    Ok(())
}

/// The command without its hidden subcommands (task-exec is memslice's
/// own step inside a systemd scope): the completion generators offer every
/// subcommand, hidden or not, and clap cannot remove one.
fn without_hidden(full: Command) -> Command {
    let mut shown = Command::new("memslice").version(env!("CARGO_PKG_VERSION"));
    for arg in full.get_arguments() {
        shown = shown.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        shown = shown.subcommand(sub.clone());
    }
    shown
}
