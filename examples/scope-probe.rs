//! Test program for the systemd VM scenarios: asks systemd for a transient
//! scope through memslice's own D-Bus client (`memslice::systemd::bus`).
//!
//! `scope-probe spawn [OPTIONS] -- COMMAND...` starts COMMAND, puts it in
//! the scope (PIDs = its pid), waits for the job, prints what it sees
//! (pid, job, socket, call and job times, /proc/PID/cgroup) and waits for
//! COMMAND, or with `--detach` leaves it running.
//!
//! `scope-probe exec [OPTIONS] -- COMMAND...` puts itself in the scope,
//! waits for the job and execs COMMAND: what `systemd-run --scope` does,
//! so the two can be timed side by side.
//!
//! OPTIONS: `--unit NAME.scope` (required), `--slice NAME.slice`
//! (required), `--description TEXT`, `--memory-max BYTES`, `--omit`
//! (ManagedOOMPreference=omit), `--detach` (spawn only).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use memslice::systemd::bus::{self, DEFAULT_TIMEOUT, ScopeRequest};

struct Options {
    exec: bool,
    unit: String,
    slice: String,
    description: String,
    memory_max: Option<u64>,
    omit: bool,
    detach: bool,
    command: Vec<String>,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let exec = match args.next().as_deref() {
        Some("exec") => true,
        Some("spawn") => false,
        _ => return Err("the first argument is spawn or exec".into()),
    };
    let mut options = Options {
        exec,
        unit: String::new(),
        slice: String::new(),
        description: "memslice scope-probe".into(),
        memory_max: None,
        omit: false,
        detach: false,
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--unit" => options.unit = value("--unit")?,
            "--slice" => options.slice = value("--slice")?,
            "--description" => options.description = value("--description")?,
            "--memory-max" => {
                let text = value("--memory-max")?;
                options.memory_max = Some(text.parse().map_err(|_| format!("bad size {text}"))?);
            }
            "--omit" => options.omit = true,
            "--detach" => options.detach = true,
            "--" => {
                options.command = args.collect();
                break;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.command.is_empty() {
        return Err("no command after --".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("scope-probe: {err}");
            eprintln!(
                "usage: scope-probe spawn|exec --unit NAME.scope --slice NAME.slice \
                 [--description TEXT] [--memory-max BYTES] [--omit] [--detach] -- COMMAND..."
            );
            return ExitCode::from(2);
        }
    };
    let mut command = Command::new(&options.command[0]);
    command.args(&options.command[1..]);
    if options.detach {
        // Holds no pipe of the caller's open once the probe has exited.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let (pid, mut child) = if options.exec {
        (std::process::id(), None)
    } else {
        match command.spawn() {
            Ok(child) => (child.id(), Some(child)),
            Err(err) => {
                eprintln!("scope-probe: cannot start {}: {err}", options.command[0]);
                return ExitCode::from(127);
            }
        }
    };
    let request = ScopeRequest {
        unit: &options.unit,
        slice: &options.slice,
        description: &options.description,
        pids: &[pid],
        memory_max: options.memory_max,
        omit_from_userspace_oom: options.omit,
    };
    let started = Instant::now();
    let outcome = bus::start_scope(&request, DEFAULT_TIMEOUT).and_then(|job| {
        let called = started.elapsed();
        let path = job.path().to_string();
        let socket = job.socket().to_string();
        job.wait(DEFAULT_TIMEOUT)
            .map(|()| (path, socket, called, started.elapsed()))
    });
    let (job, socket, called, done) = match outcome {
        Ok(seen) => seen,
        Err(err) => {
            eprintln!("scope-probe: {err}");
            if let Some(child) = child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return ExitCode::from(1);
        }
    };
    if options.exec {
        let err = command.exec();
        eprintln!("scope-probe: cannot exec {}: {err}", options.command[0]);
        return ExitCode::from(127);
    }
    println!("pid {pid}");
    println!("job {job}");
    println!("socket {socket}");
    println!("call_us {}", called.as_micros());
    println!("job_us {}", done.as_micros());
    match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(text) => print!("cgroup {text}"),
        Err(err) => println!("cgroup unreadable: {err}"),
    }
    let Some(mut child) = child.filter(|_| !options.detach) else {
        return ExitCode::SUCCESS;
    };
    match child.wait() {
        Ok(status) => ExitCode::from(status.code().map_or(1, |code| code as u8)),
        Err(err) => {
            eprintln!("scope-probe: waiting for the command: {err}");
            ExitCode::from(1)
        }
    }
}
