//! parse → settle the caller → run → exit code.
//!
//! memslice has no std `main`: std's start-up asks glibc for the main
//! thread's stack bounds (`pthread_getattr_np` parses /proc/self/maps with
//! sscanf), for a stack-overflow message memslice can do without. That was
//! 8% of the instructions of a task's start (callgrind); a stack overflow
//! is now a plain SIGSEGV. The rest of that start-up is done here:
//! descriptors 0-2 open and SIGPIPE ignored (`memslice::start_process`),
//! a panic reported with exit status 101, stdout flushed by `exit`.
//! std reads argv through glibc's init hook either way, which other C
//! libraries do not run: hence glibc only.
#![cfg_attr(not(test), no_main)]

#[cfg(not(target_env = "gnu"))]
compile_error!("memslice's own main needs glibc: std reads argv through glibc's init hook");

mod cli;
mod commands;

use std::ffi::c_int;

/// Exit status of a panic, as std's own `main` has it.
const PANICKED: c_int = 101;
/// Exit status when the process cannot be set up as std would (see
/// `memslice::start_process`); std aborts there.
const STARTUP_FAILED: c_int = 125;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const std::ffi::c_char) -> c_int {
    start()
}

/// The whole run; the test harness brings its own `main`.
#[cfg_attr(test, allow(dead_code))]
fn start() -> c_int {
    if let Err(err) = memslice::start_process() {
        eprintln!("memslice: cannot set up the process: {err}");
        return STARTUP_FAILED;
    }
    let code = std::panic::catch_unwind(|| {
        // In every login, with an environment the user may fill (pam_env's
        // user_readenv): clap, which takes MEMSLICE_* variables for global
        // options and rejects an empty one before memslice runs, never sees it.
        if cli::is_pam_session(std::env::args_os()) {
            return commands::pam_session();
        }
        let (cli, asked) = cli::Cli::parse_and_describe();
        commands::init_logging(&cli);
        commands::main(&cli, &asked)
    })
    .map_or(PANICKED, i32::from);
    std::process::exit(code)
}
