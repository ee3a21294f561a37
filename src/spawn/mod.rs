//! `run` and `protect`: a command in its own transient group under a slice,
//! supervised until it ends.
//!
//! memslice stays the parent: it is the child subreaper, so every orphaned
//! descendant is reparented to it and reaped (no zombie is left counted as
//! working), it forwards the usual signals to the command, and when the
//! command ends it kills what is left in the group and removes the group.

pub mod child;
mod clone3;
pub mod policy;
pub mod scope;
mod stall;

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::cgroupfs::{self, Root};
use crate::config::{Driver, Limit};
use crate::signals::Signals;
use child::{Prepared, Step};
use policy::{Launch, Refusal};
use stall::StallWatch;

/// si_code of a signal the kernel raised itself, such as the terminal's
/// SIGINT on Ctrl-C, which the command's process group already received.
const SI_KERNEL: i32 = 0x80;

/// How long the group may take to empty after cgroup.kill.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

const NAME_MAX: usize = crate::config::TASK_NAME_MAX;

pub struct TaskSpec<'a> {
    pub launch: &'a Launch,
    pub command: &'a [OsString],
    pub name: Option<&'a str>,
    pub allow_unprotected: bool,
    /// The supervisor's signals, blocked by `main` before anything started.
    pub signals: &'a Signals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(Signal),
}

#[derive(Debug)]
pub struct Outcome {
    pub group: String,
    pub ended: Ended,
    /// memory.events oom_kill of the task's group: processes the kernel
    /// OOM-killed in it.
    pub oom_kills: u64,
    pub peak: Option<u64>,
    pub memory_max: Option<Limit>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// As a shell reports it: the exit code, or 128+N for signal N.
    pub fn exit_code(&self) -> u8 {
        let code = match self.ended {
            Ended::Exited(code) => code,
            Ended::Signaled(signal) => 128 + signal as i32,
        };
        u8::try_from(code & 0xff).unwrap_or(1)
    }

    pub fn oom_killed_command(&self) -> bool {
        self.oom_kills > 0 && self.ended == Ended::Signaled(Signal::SIGKILL)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Cgroup(#[from] cgroupfs::Error),
    #[error(
        "--name {0:?} is not usable: use 1 to {NAME_MAX} characters from a-z, A-Z, 0-9, '_' and '-'"
    )]
    BadName(String),
    #[error("task group {0} already exists; pick another --name")]
    GroupExists(String),
    #[error("{program}: cannot {}: {errno}{}", step.describe(), step_hint(*step))]
    Child {
        program: String,
        step: Step,
        errno: Errno,
    },
    #[error("cannot {what}: {source}")]
    Setup { what: &'static str, source: Errno },
    #[error("the command contains a NUL byte")]
    NulInCommand,
    #[error("cannot find the memslice binary to run in the task's scope: {0}")]
    OwnBinary(std::io::Error),
    #[error("task group {group} still had processes {}s after cgroup.kill (stuck in the kernel?); it was left in place", KILL_TIMEOUT.as_secs())]
    NotEmptied { group: String },
}

fn step_hint(step: Step) -> &'static str {
    match step {
        Step::OomScoreAdj => {
            " (lowering it needs CAP_SYS_RESOURCE, which unprivileged containers lack); memslice does not run a task unprotected unless --allow-unprotected is given"
        }
        _ => "",
    }
}

impl SpawnError {
    /// As a shell would: 127 not found, 126 not executable, 125 for
    /// memslice's own failures (as env(1) and nice(1) do).
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::Child {
                step: Step::Exec,
                errno: Errno::ENOENT,
                ..
            } => 127,
            SpawnError::Child { .. } => 126,
            _ => 125,
        }
    }
}

/// The group's name: `--name` or the command's file name, then memslice's
/// pid, which is unique among running tasks.
pub fn group_name(name: Option<&str>, command: &[OsString]) -> Result<String, SpawnError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= NAME_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let base = match name {
        Some(name) if valid(name) => name.to_string(),
        Some(name) => return Err(SpawnError::BadName(name.to_string())),
        None => {
            let program = command
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = program.rsplit('/').next().unwrap_or_default();
            let cleaned: String = file
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(NAME_MAX)
                .collect();
            if cleaned.is_empty() {
                "task".to_string()
            } else {
                cleaned
            }
        }
    };
    Ok(format!("{base}-{}", std::process::id()))
}

/// Starts the task the way the driver places it (a group memslice makes,
/// or a systemd scope) and supervises it until it ends.
pub fn run(root: &Root, driver: Driver, spec: &TaskSpec<'_>) -> Result<Outcome, SpawnError> {
    match driver {
        Driver::Cgroupfs => run_task(root, spec),
        Driver::Systemd => {
            let memslice = std::env::current_exe().map_err(SpawnError::OwnBinary)?;
            let place = scope::ScopePlace {
                slice_cgroup: &crate::layout::cgroup_path(&spec.launch.slice),
                slice_unit: &crate::layout::slice_unit(&spec.launch.slice),
                memslice: &memslice,
            };
            scope::run_in_scope(root, spec, &place)
        }
    }
}

fn run_task(root: &Root, spec: &TaskSpec<'_>) -> Result<Outcome, SpawnError> {
    let launch = spec.launch;
    let group = cgroupfs::join(&launch.slice, &group_name(spec.name, spec.command)?);
    let prepared_command = command_cstrings(spec.command)?;
    if !root.create(&group)? {
        return Err(SpawnError::GroupExists(group));
    }
    let mut guard = GroupGuard {
        root,
        group: group.clone(),
        armed: true,
    };
    if let Some(max) = launch.memory_max {
        root.write(&group, "memory.max", &max.kernel_text())?;
    }
    root.write(
        &group,
        "memory.oom.group",
        if launch.oom_group { "1" } else { "0" },
    )?;
    if launch.max_tasks.is_some() {
        let running = running_tasks(root, &launch.slice, &group)?;
        policy::check_task_count(launch, running + 1)?;
    }

    become_subreaper()?;

    let (program, argv) = prepared_command;
    let mut prepared = Prepared {
        program,
        argv,
        env: child::task_environment(launch.run_as.as_ref())?,
        move_into: None,
        oom_score_adj: launch.oom_score_adj,
        allow_unprotected: spec.allow_unprotected,
        run_as: launch.run_as.as_ref().map(|person| person.credentials()),
    };
    let (report_read, report_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|source| SpawnError::Setup {
            what: "create a pipe",
            source,
        })?;
    let pid = spawn(root, &group, &mut prepared, &report_write)?;
    drop(report_write);
    let mut warnings = Vec::new();
    if let Some((step, errno)) = read_reports(report_read, &mut warnings) {
        let _ = waitpid(pid, None);
        return Err(SpawnError::Child {
            program: spec
                .command
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            step,
            errno,
        });
    }

    let mut stall = protected(launch).then(|| StallWatch::new(root, &group));
    let ended = supervise(spec.signals, pid, stall.as_mut())?;
    let events = root.memory_events(&group).unwrap_or_default();
    let peak = root
        .limit(&group, "memory.peak")
        .ok()
        .flatten()
        .and_then(Limit::bytes);
    guard.armed = false;
    empty_and_remove(root, &group)?;
    Ok(Outcome {
        group,
        ended,
        oom_kills: events.oom_kill,
        peak,
        memory_max: launch.memory_max,
        warnings,
    })
}

/// Whether the task is exempt from the OOM killer, so it can stall at its cap.
fn protected(launch: &Launch) -> bool {
    launch.oom_score_adj.is_some_and(|adj| adj < 0)
}

/// Makes memslice the child subreaper before the command exists, so no
/// orphan is missed. The signals were blocked by `main` (see `signals`).
fn become_subreaper() -> Result<(), SpawnError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| SpawnError::Setup {
        what: "become child subreaper",
        source,
    })
}

fn command_cstrings(command: &[OsString]) -> Result<(CString, Vec<CString>), SpawnError> {
    let argv: Vec<CString> = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| SpawnError::NulInCommand))
        .collect::<Result<_, _>>()?;
    let program = argv.first().cloned().ok_or(SpawnError::NulInCommand)?;
    Ok((program, argv))
}

/// clone3 into the group where the kernel can; otherwise fork and let the
/// child move itself before it does anything else.
fn spawn(
    root: &Root,
    group: &str,
    prepared: &mut Prepared,
    report: &OwnedFd,
) -> Result<Pid, SpawnError> {
    if let Some(dir) = root.open_for_clone(group)? {
        let spawned =
            clone3::clone_into_cgroup(dir.as_fd(), || child::exec(prepared, report.as_fd()))
                .map_err(|err| SpawnError::Setup {
                    what: "clone3 into the task group",
                    source: child::errno_of(&err),
                })?;
        if let clone3::Spawned::IntoCgroup(pid) = spawned {
            tracing::debug!(%group, pid = pid.as_raw(), "spawned with clone3(CLONE_INTO_CGROUP)");
            return Ok(pid);
        }
        tracing::debug!(%group, "kernel has no clone3 CLONE_INTO_CGROUP; falling back to fork and cgroup.procs");
    }
    prepared.move_into = Some(root.open_procs(group)?);
    let pid = clone3::fork(|| child::exec(prepared, report.as_fd())).map_err(|err| {
        SpawnError::Setup {
            what: "fork",
            source: child::errno_of(&err),
        }
    })?;
    prepared.move_into = None;
    tracing::debug!(%group, pid = pid.as_raw(), "spawned with fork, moved through cgroup.procs");
    Ok(pid)
}

/// Reads the child's reports until exec closes the pipe. Returns the fatal
/// step, if one failed; warnings are collected.
fn read_reports(read_end: OwnedFd, warnings: &mut Vec<String>) -> Option<(Step, Errno)> {
    let mut bytes = Vec::new();
    let _ = File::from(read_end).read_to_end(&mut bytes);
    let mut fatal = None;
    for (step, errno) in child::parse_reports(&bytes) {
        if step == Step::OomScoreAdjSkipped {
            warnings.push(format!("could not set oom_score_adj ({errno}); the task runs unprotected as --allow-unprotected allows"));
        } else {
            fatal = Some((step, errno));
        }
    }
    fatal
}

/// Waits for the command, reaping every descendant reparented to memslice
/// and forwarding signals, until the command itself has ended.
fn supervise(
    signals: &Signals,
    command: Pid,
    mut stall: Option<&mut StallWatch<'_>>,
) -> Result<Ended, SpawnError> {
    loop {
        let (signalled, stall_woke) = {
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            let stall_fd = stall.as_deref().and_then(StallWatch::fd);
            if let Some(fd) = stall_fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let timeout = stall
                .as_deref()
                .and_then(StallWatch::timeout)
                .and_then(|t| PollTimeout::try_from(t).ok())
                .unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(0) => (false, true),
                Ok(_) => (
                    fds[0].any().unwrap_or(false),
                    fds.get(1).is_some_and(|fd| fd.any().unwrap_or(false)),
                ),
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(SpawnError::Setup {
                        what: "wait for signals",
                        source,
                    });
                }
            }
        };
        if let (true, Some(watch)) = (stall_woke, stall.as_deref_mut())
            && let Some(warning) = watch.wake()
        {
            // A closed stderr must not end the supervision.
            let _ = writeln!(std::io::stderr(), "memslice: warning: {warning}");
        }
        if !signalled {
            continue;
        }
        let info = match signals.read() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(source) => {
                return Err(SpawnError::Setup {
                    what: "read the signalfd",
                    source,
                });
            }
        };
        let Ok(signal) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
            continue;
        };
        if signal == Signal::SIGCHLD {
            if let Some(ended) = reap(command) {
                return Ok(ended);
            }
        } else if info.ssi_code != SI_KERNEL {
            tracing::debug!(%signal, pid = command.as_raw(), "forwarding signal");
            let _ = kill(command, signal);
        }
    }
}

/// Reaps every child that has ended; returns how `command` ended if it did.
fn reap(command: Pid) -> Option<Ended> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                ended = Some(Ended::Exited(code))
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                ended = Some(Ended::Signaled(signal))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(other) => tracing::debug!(?other, "reaped a descendant"),
        }
    }
}

/// Kills what is left in the group, waits (reaping) until it is empty,
/// and removes it.
fn empty_and_remove(root: &Root, group: &str) -> Result<(), SpawnError> {
    empty(root, group)?;
    root.remove(group)?;
    Ok(())
}

/// Kills what is left in the group, reaping while it empties (a systemd
/// scope is removed by systemd once empty).
fn empty(root: &Root, group: &str) -> Result<(), SpawnError> {
    if root.kill_and_wait(group, KILL_TIMEOUT, || {
        reap(Pid::from_raw(0));
    })? {
        Ok(())
    } else {
        Err(SpawnError::NotEmptied {
            group: group.to_string(),
        })
    }
}

/// Other task groups of the slice that still have processes.
fn running_tasks(root: &Root, slice: &str, own: &str) -> Result<usize, cgroupfs::Error> {
    let mut running = 0;
    for child in root.children(slice)? {
        let path = cgroupfs::join(slice, &child);
        if path != own && root.populated(&path)? {
            running += 1;
        }
    }
    Ok(running)
}

/// Removes the task group on the error paths between its creation and the
/// command's start.
struct GroupGuard<'a> {
    root: &'a Root,
    group: String,
    armed: bool,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(err) = empty_and_remove(self.root, &self.group)
        {
            tracing::warn!(group = %self.group, "could not remove the task group: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(program: &str) -> Vec<OsString> {
        vec![OsString::from(program), OsString::from("--flag")]
    }

    #[test]
    fn group_names_come_from_the_command_or_name() {
        let pid = std::process::id();
        assert_eq!(
            group_name(None, &command("/usr/bin/php8.2")).expect("ok"),
            format!("php8_2-{pid}")
        );
        assert_eq!(
            group_name(Some("import"), &command("php")).expect("ok"),
            format!("import-{pid}")
        );
        assert!(matches!(
            group_name(Some("a/b"), &command("php")),
            Err(SpawnError::BadName(_))
        ));
        assert!(matches!(
            group_name(Some(""), &command("php")),
            Err(SpawnError::BadName(_))
        ));
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let outcome = |ended| Outcome {
            group: String::new(),
            ended,
            oom_kills: 0,
            peak: None,
            memory_max: None,
            warnings: Vec::new(),
        };
        assert_eq!(outcome(Ended::Exited(3)).exit_code(), 3);
        assert_eq!(outcome(Ended::Signaled(Signal::SIGTERM)).exit_code(), 143);
        assert_eq!(outcome(Ended::Signaled(Signal::SIGKILL)).exit_code(), 137);
        let missing = SpawnError::Child {
            program: "x".into(),
            step: Step::Exec,
            errno: Errno::ENOENT,
        };
        assert_eq!(missing.exit_code(), 127);
        let denied = SpawnError::Child {
            program: "x".into(),
            step: Step::Exec,
            errno: Errno::EACCES,
        };
        assert_eq!(denied.exit_code(), 126);
        assert_eq!(SpawnError::GroupExists("g".into()).exit_code(), 125);
    }
}
