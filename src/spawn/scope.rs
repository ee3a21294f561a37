//! `run` and `protect` under the systemd driver: the task gets a transient
//! scope in its slice, made by systemd on memslice's own D-Bus call
//! (StartTransientUnit with PIDs = the child memslice forked, see
//! `systemd::bus`), so systemd stays the only writer of its tree. The
//! child waits, blocked before anything else, until systemd has moved it
//! into the scope; then it does what a cgroupfs task's child does
//! (signals, oom_score_adj, user, exec). One process all along, supervised
//! as with the cgroupfs driver.
//!
//! memory.oom.group is the one file memslice writes in systemd's tree:
//! systemd 252 has no scope property for it.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};

use super::child::{self, Prepared};
use super::{
    DESCRIPTION_COMMAND_MAX, Outcome, SpawnError, Started, TaskSpec, become_subreaper,
    command_cstrings, command_line, follow, group_name, policy, protected, read_reports, record,
    running_tasks, task,
};
use crate::cgroupfs::{self, Root};
use crate::systemd::bus::{self, ScopeRequest};

/// Where the task's scope lives.
pub struct ScopePlace<'a> {
    /// The slice's cgroup, like `app.slice/app-tasks.slice`.
    pub slice_cgroup: &'a str,
    /// The slice unit, like `app-tasks.slice`.
    pub slice_unit: &'a str,
}

/// How long systemd may take to make the scope.
const SCOPE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(
    root: &Root,
    spec: &TaskSpec<'_>,
    place: &ScopePlace<'_>,
) -> Result<Outcome, SpawnError> {
    let launch = spec.launch;
    let name = group_name(spec.name, spec.command)?;
    let unit = format!("memslice-{name}.scope");
    let scope = cgroupfs::join(place.slice_cgroup, &unit);
    let (program, arguments) = command_cstrings(spec.command)?;
    let slice_lock = match launch.max_tasks {
        Some(_) => Some(
            root.lock_group(place.slice_cgroup, SCOPE_TIMEOUT)?
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
    become_subreaper()?;
    let pipe = || {
        pipe2(OFlag::O_CLOEXEC).map_err(|source| SpawnError::Setup {
            what: "create a pipe",
            source,
        })
    };
    let (go_read, go_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let mut prepared = Prepared::for_task(spec, program, arguments, Some(go_read))?;
    let pid = crate::sys::fork(|| child::exec(&prepared, report_write.as_fd())).map_err(|err| {
        SpawnError::Setup {
            what: "fork",
            source: child::errno_of(&err),
        }
    })?;
    drop(report_write);
    prepared.wait_for = None;
    let ready = place_in_scope(spec, place, &unit, pid).and_then(|()| {
        // No scope property for it in systemd 252.
        root.write(
            &scope,
            "memory.oom.group",
            if launch.oom_group { "1" } else { "0" },
        )?;
        let handle = root.open_group(&scope)?;
        task::mark(root, &scope, &record(spec, &name), protected(launch))?;
        Ok(handle)
    });
    let handle = match ready {
        Ok(handle) => handle,
        Err(err) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(err);
        }
    };
    // In its scope: the child may go on, and the next protect counts the
    // scope, whatever its exec does (it may block: a program on a FUSE
    // mount its user serves).
    let _ = nix::unistd::write(&go_write, &[1]);
    drop(go_write);
    drop(slice_lock);
    tracing::debug!(%unit, pid = pid.as_raw(), "started in a transient scope");
    let warnings = read_reports(report_read, pid, spec)?;
    follow(
        root,
        spec,
        Started {
            pid,
            group: scope,
            handle: Some(handle),
            ours: false,
            warnings,
            gone_scope: Some((place.slice_cgroup.to_string(), slice_before)),
        },
    )
}

/// Asks systemd for the task's scope with the child in it, and waits until
/// the child is there.
fn place_in_scope(
    spec: &TaskSpec<'_>,
    place: &ScopePlace<'_>,
    unit: &str,
    pid: Pid,
) -> Result<(), SpawnError> {
    let launch = spec.launch;
    let description = format!(
        "memslice {} task: {}",
        match launch.mode {
            policy::Mode::Run => "run",
            policy::Mode::Protect => "protect",
        },
        command_line(spec.command, DESCRIPTION_COMMAND_MAX)
    );
    let pids = [pid.as_raw().unsigned_abs()];
    let request = ScopeRequest {
        unit,
        slice: place.slice_unit,
        description: &description,
        pids: &pids,
        memory_max: launch.memory_max.map(|max| max.bytes().unwrap_or(u64::MAX)),
        // systemd-oomd ignores oom_score_adj; this it honours.
        omit_from_userspace_oom: protected(launch),
    };
    bus::start_scope(&request, SCOPE_TIMEOUT)
        .and_then(|job| job.wait(SCOPE_TIMEOUT))
        .map_err(SpawnError::Scope)
}
