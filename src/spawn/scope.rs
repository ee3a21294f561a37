//! `run` and `protect` under the systemd driver: the task gets a transient
//! scope in its slice, made by systemd (`systemd-run --scope`), so systemd
//! stays the only writer of its tree. memslice is still the parent: it
//! forks, lowers oom_score_adj while root, execs systemd-run, which
//! registers the scope and execs `memslice task-exec` inside it, which sets
//! memory.oom.group, drops to the target user and execs the command: one
//! process all along, supervised as with the cgroupfs driver.

use std::ffi::{CString, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{Pid, execvp, pipe2};

use super::child::{self, Prepared, drop_privileges};
use super::policy::Launch;
use super::{
    Outcome, SpawnError, Started, TaskSpec, become_subreaper, follow, group_name, policy,
    protected, read_reports, record, running_tasks, task,
};
use crate::caller::Credentials;
use crate::cgroupfs::{self, GroupHandle, Root};

/// Where the task's scope lives and what to call it.
pub struct ScopePlace<'a> {
    /// The slice's cgroup, like `app.slice/app-tasks.slice`.
    pub slice_cgroup: &'a str,
    /// The slice unit, like `app-tasks.slice`.
    pub slice_unit: &'a str,
    /// This memslice binary, run again inside the scope.
    pub memslice: &'a Path,
}

/// The systemd-run command line for a task. Pure.
pub fn command_line(
    launch: &Launch,
    command: &[OsString],
    place: &ScopePlace<'_>,
    unit: &str,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        crate::locations::systemd_run().into_os_string(),
        "--scope".into(),
        "--quiet".into(),
        "--collect".into(),
        format!("--unit={unit}").into(),
        format!("--slice={}", place.slice_unit).into(),
    ];
    if let Some(max) = launch.memory_max {
        argv.push(format!("--property=MemoryMax={}", crate::systemd::limit(max)).into());
    }
    if protected(launch) {
        // systemd-oomd ignores oom_score_adj; this it honours (systemd 248+).
        argv.push("--property=ManagedOOMPreference=omit".into());
    }
    argv.extend([
        "--".into(),
        place.memslice.as_os_str().to_owned(),
        "task-exec".into(),
    ]);
    if launch.oom_group {
        argv.push("--oom-group".into());
    }
    if let Some(person) = &launch.run_as {
        let groups: Vec<String> = person.gids.iter().map(u32::to_string).collect();
        argv.push(format!("--uid={}", person.uid).into());
        argv.push(format!("--gid={}", person.gid).into());
        argv.push(format!("--groups={}", groups.join(",")).into());
    }
    argv.push("--".into());
    argv.extend(command.iter().cloned());
    argv
}

/// How long systemd may take to make the scope.
const SCOPE_APPEARS: Duration = Duration::from_secs(10);

pub fn run(
    root: &Root,
    spec: &TaskSpec<'_>,
    place: &ScopePlace<'_>,
) -> Result<Outcome, SpawnError> {
    let launch = spec.launch;
    let name = group_name(spec.name, spec.command)?;
    let unit = format!("memslice-{name}.scope");
    let scope = cgroupfs::join(place.slice_cgroup, &unit);
    let slice_lock = match launch.max_tasks {
        Some(_) => Some(
            root.lock_group(place.slice_cgroup, SCOPE_APPEARS)?
                .ok_or_else(|| SpawnError::SliceBusy(launch.slice.clone()))?,
        ),
        None => None,
    };
    if launch.max_tasks.is_some() {
        let running = running_tasks(root, place.slice_cgroup, &scope)?;
        policy::check_task_count(launch, running + 1)?;
    }
    let slice_before = root
        .memory_events_if_enabled(place.slice_cgroup)?
        .unwrap_or_default();
    let argv: Vec<CString> = command_line(launch, spec.command, place, &unit)
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| SpawnError::NulInCommand))
        .collect::<Result<_, _>>()?;
    become_subreaper()?;
    let prepared = Prepared {
        program: argv[0].clone(),
        argv,
        env: child::task_environment(launch.run_as.as_ref())?,
        move_into: None,
        oom_score_adj: launch.oom_score_adj,
        allow_unprotected: spec.allow_unprotected,
        run_as: None,
    };
    let (report_read, report_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|source| SpawnError::Setup {
            what: "create a pipe",
            source,
        })?;
    let pid = crate::sys::fork(|| child::exec(&prepared, report_write.as_fd())).map_err(|err| {
        SpawnError::Setup {
            what: "fork",
            source: child::errno_of(&err),
        }
    })?;
    drop(report_write);
    tracing::debug!(%unit, pid = pid.as_raw(), "spawned through systemd-run --scope");
    let mut warnings = Vec::new();
    if let Some((step, errno)) = read_reports(report_read, &mut warnings) {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(SpawnError::Child {
            program: crate::locations::systemd_run().display().to_string(),
            step,
            errno,
        });
    }
    let handle = wait_for_scope(root, &scope, pid);
    if handle.is_some()
        && let Err(err) = task::mark(root, &scope, &record(spec, &name), protected(launch))
        && !err.group_vanished()
    {
        return Err(err.into());
    }
    // The scope holds the command: the next protect counts it.
    drop(slice_lock);
    follow(
        root,
        spec,
        Started {
            pid,
            group: scope,
            handle,
            ours: false,
            warnings,
            gone_scope: Some((place.slice_cgroup.to_string(), slice_before)),
        },
    )
}

/// The scope once systemd made it and the command is in it; `None` when
/// the command ended (and systemd removed the scope) before it was seen.
fn wait_for_scope(root: &Root, scope: &str, command: Pid) -> Option<GroupHandle> {
    let started = Instant::now();
    loop {
        if let Ok(handle) = root.open_group(scope) {
            return Some(handle);
        }
        if !crate::host::process_runs(command.as_raw().unsigned_abs())
            || started.elapsed() > SCOPE_APPEARS
        {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskExecError {
    #[error("cannot set memory.oom.group of the task's scope {path}: {err}")]
    OomGroup { path: String, err: std::io::Error },
    #[error("cannot switch to uid {uid}: {errno}")]
    Identity { uid: u32, errno: Errno },
    #[error("{program}: cannot execute the command: {errno}")]
    Exec { program: String, errno: Errno },
    #[error("cannot reset the signal state for the command: {0}")]
    Signals(Errno),
    #[error("the command contains a NUL byte")]
    Nul,
}

impl TaskExecError {
    /// 127 not found, 126 anything else, as a shell would.
    pub fn exit_code(&self) -> u8 {
        match self {
            TaskExecError::Exec {
                errno: Errno::ENOENT,
                ..
            } => 127,
            _ => 126,
        }
    }
}

/// `memslice task-exec`, inside the scope: sets memory.oom.group on it,
/// becomes the target user, execs the command. Returns only on failure.
pub fn task_exec(
    oom_group: bool,
    identity: Option<&Credentials>,
    command: &[OsString],
) -> TaskExecError {
    if oom_group {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = crate::host::parse_mountinfo(&mountinfo);
        let own = mounts
            .iter()
            .find(|m| m.fs_type == "cgroup2")
            .and_then(|mount| {
                let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
                crate::host::own_cgroup_dir(&text, &mount.point)
            });
        let Some(dir) = own else {
            return TaskExecError::OomGroup {
                path: "(unknown)".into(),
                err: std::io::Error::from(std::io::ErrorKind::NotFound),
            };
        };
        if let Err(err) = std::fs::write(dir.join("memory.oom.group"), "1") {
            return TaskExecError::OomGroup {
                path: dir.display().to_string(),
                err,
            };
        }
    }
    if let Some(who) = identity
        && let Err(errno) = drop_privileges(who)
    {
        return TaskExecError::Identity {
            uid: who.uid,
            errno,
        };
    }
    // systemd-run and this very process (Rust ignores SIGPIPE) ran before
    // the command: it must not inherit their signal state.
    if let Err(errno) = child::clean_signal_state() {
        return TaskExecError::Signals(errno);
    }
    let Ok(argv) = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return TaskExecError::Nul;
    };
    let Some(program) = argv.first() else {
        return TaskExecError::Nul;
    };
    let Err(errno) = execvp(program, &argv);
    TaskExecError::Exec {
        program: program.to_string_lossy().into_owned(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Person;
    use crate::config::Limit;
    use crate::spawn::policy::Mode;

    #[test]
    fn the_systemd_run_line_carries_the_limits_and_the_identity() {
        let launch = Launch {
            slice: "app/tasks".into(),
            memory_max: Some(Limit::Bytes(64 << 20)),
            oom_group: true,
            oom_score_adj: Some(-1000),
            run_as: Some(Person {
                name: "app".into(),
                uid: 1000,
                gid: 1000,
                groups: vec!["app".into()],
                gids: vec![1000, 33],
                home: "/home/app".into(),
                shell: "/bin/sh".into(),
            }),
            max_tasks: Some(2),
            mode: Mode::Protect,
            stall_timeout: None,
        };
        let command = vec![OsString::from("php"), OsString::from("import.php")];

        let place = ScopePlace {
            slice_cgroup: "app.slice/app-tasks.slice",
            slice_unit: "app-tasks.slice",
            memslice: Path::new("/usr/local/bin/memslice"),
        };
        let line: Vec<String> = command_line(&launch, &command, &place, "memslice-php-1.scope")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            line[1..],
            [
                "--scope",
                "--quiet",
                "--collect",
                "--unit=memslice-php-1.scope",
                "--slice=app-tasks.slice",
                "--property=MemoryMax=67108864",
                "--property=ManagedOOMPreference=omit",
                "--",
                "/usr/local/bin/memslice",
                "task-exec",
                "--oom-group",
                "--uid=1000",
                "--gid=1000",
                "--groups=1000,33",
                "--",
                "php",
                "import.php",
            ]
        );
    }
}
