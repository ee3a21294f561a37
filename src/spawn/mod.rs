//! `run` and `protect`: a command in its own transient group under a slice,
//! supervised until it ends.
//!
//! memslice stays the parent while the command runs: it is the child
//! subreaper, so every orphaned descendant is reparented to it and reaped
//! (no zombie is left counted as working), it forwards the usual signals,
//! bounds a protected task's stall at its own cap, and returns the
//! command's status. What the command leaves running when it ends
//! (`screen -d -m`, `nohup … &`) stays in the group, protected and capped,
//! under a keeper that removes the group once it is empty ([`Leftovers`]).
//!
//! - `group`: the cgroupfs launcher (a group memslice makes);
//! - `scope`: the systemd launcher (a transient scope);
//! - `supervise`: what both do once the command runs; `keeper`: what stays
//!   behind for detached work; `stall`: the stall bound;
//! - `task`: what memslice records on a task group, `memslice tasks`;
//! - `child`: the task's process between clone and exec; `policy`: who may
//!   start what (pure).

pub mod child;
mod group;
mod keeper;
pub mod policy;
pub mod scope;
mod stall;
mod supervise;
pub mod task;

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroupfs::{self, GroupHandle, Root};
use crate::config::{Driver, Layout, Limit};
use crate::signals::Signals;
use child::Step;
use policy::{Launch, Refusal};
use stall::StallWatch;
pub use supervise::Notify;
use task::KILL_TIMEOUT;

const NAME_MAX: usize = crate::config::TASK_NAME_MAX;

/// What becomes of the processes the command leaves running when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leftovers {
    /// They stay in the group, protected and capped; memslice returns the
    /// command's status at once, and a keeper removes the group once it is
    /// empty (the seed's `protect -- screen -d -m …`).
    #[default]
    Keep,
    /// memslice waits until the whole group is empty.
    Wait,
    /// memslice kills them (cgroup.kill) and removes the group.
    Kill,
}

pub struct TaskSpec<'a> {
    pub launch: &'a Launch,
    pub command: &'a [OsString],
    pub name: Option<&'a str>,
    pub allow_unprotected: bool,
    pub leftovers: Leftovers,
    /// The supervisor's signals, blocked by `main` before anything started.
    pub signals: &'a Signals,
    /// Told when the stall bound ends the task.
    pub notify: Option<Notify<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(Signal),
}

impl Ended {
    /// As a shell reports it: the exit code, or 128+N for signal N.
    pub fn exit_code(self) -> u8 {
        let code = match self {
            Ended::Exited(code) => code,
            Ended::Signaled(signal) => 128 + signal as i32,
        };
        u8::try_from(code & 0xff).unwrap_or(1)
    }
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
    /// Who killed the task and why, as the killer recorded it.
    pub killed_by: Option<String>,
    /// Processes of the group run on after the command ended, under a keeper.
    pub detached: bool,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        self.ended.exit_code()
    }

    pub fn oom_killed_command(&self) -> bool {
        self.oom_kills > 0 && self.killed_by_sigkill()
    }

    pub fn killed_by_sigkill(&self) -> bool {
        self.ended == Ended::Signaled(Signal::SIGKILL)
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
    #[error("another protect is starting a task in {0} and did not finish within 10s; try again")]
    SliceBusy(String),
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
    #[error("systemd did not make the task's scope: {0}")]
    Scope(#[from] crate::systemd::bus::BusError),
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
pub fn run(root: &Root, layout: &Layout, spec: &TaskSpec<'_>) -> Result<Outcome, SpawnError> {
    match layout.driver() {
        Driver::Cgroupfs => group::run(root, spec),
        Driver::Systemd => {
            let place = scope::ScopePlace {
                slice_cgroup: &layout.cgroup_of(&spec.launch.slice),
                slice_unit: &layout.slice_unit(&spec.launch.slice),
            };
            scope::run(root, spec, &place)
        }
    }
}

/// A command that runs in its group.
struct Started {
    pid: Pid,
    group: String,
    /// Open on the group: what a killer recorded stays readable after the
    /// group is gone. `None` for a scope gone before it was seen.
    handle: Option<GroupHandle>,
    /// memslice made the group and removes it; systemd removes a scope.
    ours: bool,
    warnings: Vec<String>,
    /// For a scope: its slice and the slice's counters before the task, to
    /// count OOM kills when systemd removed the scope before it was read
    /// (other tasks' kills included).
    gone_scope: Option<(String, cgroupfs::MemoryEvents)>,
}

/// What both launchers do once the command runs: supervise it, then deal
/// with what it left running, and say how it ended.
fn follow(root: &Root, spec: &TaskSpec<'_>, started: Started) -> Result<Outcome, SpawnError> {
    let launch = spec.launch;
    let group = started.group.as_str();
    supervise::protect_self();
    let mut stall = protected(launch).then(|| StallWatch::new(root, group, launch.stall_timeout));
    let ended = supervise::supervise(root, spec.signals, started.pid, stall.as_mut(), spec.notify)?;
    drop(stall);
    let oom_kills = match (root.memory_events_if_enabled(group), &started.gone_scope) {
        (Ok(Some(events)), _) => events.oom_kill,
        (_, Some((slice, before))) => root
            .memory_events_if_enabled(slice)?
            .unwrap_or_default()
            .oom_kill
            .saturating_sub(before.oom_kill),
        _ => 0,
    };
    let peak = root
        .limit(group, "memory.peak")
        .ok()
        .flatten()
        .and_then(Limit::bytes);
    let killed_by = started
        .handle
        .as_ref()
        .filter(|_| ended == Ended::Signaled(Signal::SIGKILL))
        .and_then(task::killed_by);
    let detached = match spec.leftovers {
        Leftovers::Kill => {
            supervise::empty(root, group)?;
            false
        }
        Leftovers::Wait => {
            supervise::wait_empty(root, group)?;
            false
        }
        Leftovers::Keep => root.populated(group)?,
    };
    if detached {
        keeper::hand_over(
            root,
            &keeper::Charge {
                group,
                stall_timeout: launch.stall_timeout,
                notify: spec.notify,
                remove: started.ours,
            },
        )?;
    } else if started.ours {
        root.remove(group)?;
    }
    Ok(Outcome {
        group: started.group,
        ended,
        oom_kills,
        peak,
        memory_max: launch.memory_max,
        warnings: started.warnings,
        killed_by,
        detached,
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

/// The command as C strings: the program, then its arguments.
fn command_cstrings(command: &[OsString]) -> Result<(CString, Vec<CString>), SpawnError> {
    let mut argv = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| SpawnError::NulInCommand));
    let program = argv.next().ok_or(SpawnError::NulInCommand)??;
    Ok((program, argv.collect::<Result<_, _>>()?))
}

/// Reads the child's reports until exec closes the pipe: the warnings it
/// sent, or, when a step failed, the error, with the child reaped.
fn read_reports(
    read_end: OwnedFd,
    pid: Pid,
    spec: &TaskSpec<'_>,
) -> Result<Vec<String>, SpawnError> {
    // A few bytes at most; the pipe closes when the child execs.
    let bytes = crate::files::read_all(&File::from(read_end), 64).unwrap_or_default();
    let mut warnings = Vec::new();
    let mut fatal = None;
    for (step, errno) in child::parse_reports(&bytes) {
        if step == Step::OomScoreAdjSkipped {
            warnings.push(format!("could not set oom_score_adj ({errno}); the task runs unprotected as --allow-unprotected allows"));
        } else {
            fatal = Some((step, errno));
        }
    }
    let Some((step, errno)) = fatal else {
        return Ok(warnings);
    };
    let _ = nix::sys::wait::waitpid(pid, None);
    Err(SpawnError::Child {
        program: spec
            .command
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        step,
        errno,
    })
}

/// Other protected tasks of the slice that still have processes (running
/// or detached): what `max_tasks` counts. Groups that are no protected
/// task do not count: a `run` task (the OOM killer may take it), a child
/// slice, the sessions of a slice's users, a group made by hand.
fn running_tasks(root: &Root, slice: &str, own: &str) -> Result<usize, cgroupfs::Error> {
    let mut running = 0;
    for child in root.children(slice)? {
        let path = cgroupfs::join(slice, &child);
        if path == own {
            continue;
        }
        if task::is_running(root, &path, Some(task::Mode::Protect))? {
            running += 1;
        }
    }
    Ok(running)
}

/// The task's record, for `memslice tasks`; `group_name` is the group's
/// own name, NAME-PID.
fn record(spec: &TaskSpec<'_>, group_name: &str) -> task::TaskRecord {
    let suffix = format!("-{}", std::process::id());
    let name = group_name.strip_suffix(&suffix).unwrap_or(group_name);
    let uid = spec
        .launch
        .run_as
        .as_ref()
        .map_or_else(|| nix::unistd::Uid::current().as_raw(), |person| person.uid);
    task::TaskRecord {
        name: name.to_string(),
        mode: spec.launch.mode,
        uid,
        command: recorded_command(spec.command),
        started: jiff::Timestamp::now(),
    }
}

/// The most of a command line a task record keeps. A command line may be
/// 2 MiB, a cgroup's user xattr at most 64 KiB (kernfs; 128 KiB for all of
/// a group's), and a file's on ext4 share one 4 KiB block (an emulated
/// root): 1 KiB, at most 2 KiB once the record's JSON escapes it, and
/// `memslice tasks` shows a line, as ps does.
const RECORDED_COMMAND_MAX: usize = 1024;

/// The most of a command line a scope's Description keeps (`systemctl
/// status` shows it on one line).
const DESCRIPTION_COMMAND_MAX: usize = 200;

/// The command line as a task record keeps it.
fn recorded_command(command: &[OsString]) -> String {
    command_line(command, RECORDED_COMMAND_MAX)
}

/// The command line to show: arguments joined by spaces, control
/// characters written out (the caller chose them, and root's terminal or
/// journal shows them), cut to `max` bytes with an ellipsis.
fn command_line(command: &[OsString], max: usize) -> String {
    const CUT: char = '…';
    let joined = command
        .iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = crate::printable::printable(&joined).into_owned();
    if line.len() > max {
        let mut end = max.saturating_sub(CUT.len_utf8());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push(CUT);
    }
    line
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
    fn a_command_line_is_recorded_printable_and_cut_at_a_character() {
        let short = command("php");
        assert_eq!(recorded_command(&short), "php --flag");
        // Two-byte characters from an odd offset: the cut falls inside one.
        let long = [OsString::from("php"), OsString::from("é".repeat(800))];
        let line = recorded_command(&long);
        assert_eq!(line.len(), RECORDED_COMMAND_MAX - 1);
        assert!(line.starts_with("php ééé"), "{line}");
        assert!(line.ends_with("é…"), "{line}");
        let escape = [OsString::from("echo"), OsString::from("\x1b]0;x\x07")];
        assert_eq!(recorded_command(&escape), "echo \\x1b]0;x\\x07");
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
            killed_by: None,
            detached: false,
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
