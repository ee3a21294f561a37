//! The cgroupfs launcher: memslice makes the task's group `SLICE/NAME-PID`
//! with its memory.max and memory.oom.group, marks it as a task, and starts
//! the command in it with clone3(CLONE_INTO_CGROUP) where the kernel can
//! (before 5.7, a clone that moves itself through cgroup.procs before it
//! execs), so the command is charged there from its first instruction.
//!
//! With `max_tasks`, counting the slice's running tasks and starting this
//! one is one step under the slice's lock, so concurrent protects cannot
//! all slip under the limit. The step ends when the command's process is
//! in its group, not when its exec completes (see
//! `Prepared::release_before_exec`).

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::{Pid, pipe2};

use super::child::{self, Prepared};
use super::{
    SpawnError, Started, TaskSpec, become_subreaper, command_cstrings, follow, group_name, policy,
    protected, read_reports, record, running_tasks, supervise, task,
};
use crate::cgroupfs::{self, GroupHandle, Root};

/// How long a protect waits for another to finish starting in the slice.
const SLICE_LOCK_WAIT: Duration = Duration::from_secs(10);

pub fn run(root: &Root, spec: &TaskSpec<'_>) -> Result<super::Outcome, SpawnError> {
    let launch = spec.launch;
    let name = group_name(spec.name, spec.command)?;
    let group = cgroupfs::join(&launch.slice, &name);
    let (program, arguments) = command_cstrings(spec.command)?;
    let slice_lock = match launch.max_tasks {
        Some(_) => Some(
            root.lock_group(&launch.slice, SLICE_LOCK_WAIT)?
                .ok_or_else(|| SpawnError::SliceBusy(launch.slice.clone()))?,
        ),
        None => None,
    };
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
    // A group the kernel has just made has memory.oom.group 0.
    if launch.oom_group {
        root.write(&group, "memory.oom.group", "1")?;
    }
    task::mark(root, &group, &record(spec, &name), protected(launch))?;
    if launch.max_tasks.is_some() {
        let running = running_tasks(root, &launch.slice, &group)?;
        policy::check_task_count(launch, running + 1)?;
    }
    let handle = root.open_group(&group)?;
    become_subreaper()?;
    let mut prepared = Prepared::for_task(spec, program, arguments, None)?;
    prepared.release_before_exec = slice_lock
        .as_ref()
        .map(|lock| lock.duplicate())
        .transpose()
        .map_err(|err| SpawnError::Setup {
            what: "duplicate the slice's lock",
            source: child::errno_of(&err),
        })?;
    let (report_read, report_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|source| SpawnError::Setup {
            what: "create a pipe",
            source,
        })?;
    let pid = spawn(root, &group, &handle, &mut prepared, &report_write)?;
    // A keeper forked for detached work must not keep it.
    prepared.release_before_exec = None;
    drop(report_write);
    let warnings = read_reports(report_read, pid, spec)?;
    // The child let go of the lock before its exec, unless it failed first.
    drop(slice_lock);
    guard.armed = false;
    follow(
        root,
        spec,
        Started {
            pid,
            group,
            handle: Some(handle),
            ours: true,
            warnings,
            gone_scope: None,
        },
    )
}

/// clone3 into the group where the kernel can; otherwise clone and let the
/// child move itself before it does anything else.
fn spawn(
    root: &Root,
    group: &str,
    handle: &GroupHandle,
    prepared: &mut Prepared,
    report: &OwnedFd,
) -> Result<Pid, SpawnError> {
    // A child sharing memslice's memory holds memslice suspended: it must
    // not wait for memslice (`wait_for` is the scope path's, with fork).
    debug_assert!(prepared.wait_for.is_none());
    let argc = prepared.line.argc();
    if let Some(dir) = root.clone_target(handle) {
        let spawned =
            crate::sys::clone_into_cgroup(dir, argc, || child::exec(prepared, report.as_fd()))
                .map_err(|err| SpawnError::Setup {
                    what: "clone3 into the task group",
                    source: child::errno_of(&err),
                })?;
        if let crate::sys::Spawned::IntoCgroup(pid) = spawned {
            tracing::debug!(%group, pid = pid.as_raw(), "spawned with clone3(CLONE_INTO_CGROUP)");
            return Ok(pid);
        }
        tracing::debug!(%group, "kernel has no clone3 CLONE_INTO_CGROUP; falling back to clone and cgroup.procs");
    }
    prepared.move_into = Some(root.open_procs(group)?);
    let pid = crate::sys::vfork(argc, || child::exec(prepared, report.as_fd())).map_err(|err| {
        SpawnError::Setup {
            what: "clone",
            source: child::errno_of(&err),
        }
    })?;
    prepared.move_into = None;
    tracing::debug!(%group, pid = pid.as_raw(), "spawned with clone, moved through cgroup.procs");
    Ok(pid)
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
        if !self.armed {
            return;
        }
        let removed = supervise::empty(self.root, &self.group)
            .and_then(|()| self.root.remove(&self.group).map_err(SpawnError::from));
        if let Err(err) = removed {
            tracing::warn!(group = %self.group, "could not remove the task group: {err}");
        }
    }
}
