//! What every launcher does once the command runs: wait for it while
//! reaping every descendant reparented to memslice (it is the child
//! subreaper, so no zombie is left counted as working), forward the usual
//! signals, watch for a stall at the task's cap and end it past the bound,
//! then deal with what the command left running. The detached keeper
//! (`keeper`) shares the stall handling.

use std::io::Write;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::stall::{Found, StallWatch};
use super::{Ended, SpawnError, task};
use crate::cgroupfs::Root;
use crate::signals::Signals;

/// si_code of a signal the kernel raised itself, such as the terminal's
/// SIGINT on Ctrl-C, which the command's process group already received.
const SI_KERNEL: i32 = 0x80;

/// Who to tell when the stall bound ends a task: the notify hook of
/// `[heal]`, with its timeout.
#[derive(Debug, Clone, Copy)]
pub struct Notify<'a> {
    pub hook: &'a [String],
    pub timeout: Duration,
}

/// Waits for the command, reaping every descendant and forwarding
/// signals, until the command itself has ended.
pub fn supervise(
    root: &Root,
    signals: &Signals,
    command: Pid,
    mut stall: Option<&mut StallWatch<'_>>,
    notify: Option<Notify<'_>>,
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
                .map_or(PollTimeout::NONE, poll_timeout);
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
        if let (true, Some(watch)) = (stall_woke, stall.as_deref_mut()) {
            handle_stall(root, watch, notify);
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

/// A poll timeout, rounded up to whole milliseconds (never 0 for a
/// duration above 0, which would spin).
pub fn poll_timeout(wait: Duration) -> PollTimeout {
    let millis = wait.as_micros().div_ceil(1000);
    PollTimeout::try_from(i32::try_from(millis).unwrap_or(i32::MAX)).unwrap_or(PollTimeout::MAX)
}

/// Acts on what the stall watch found: tells the caller once, records it
/// on the group, and past the bound ends the task, saying why.
pub fn handle_stall(root: &Root, watch: &mut StallWatch<'_>, notify: Option<Notify<'_>>) {
    let group = watch.group().to_string();
    match watch.wake() {
        None => {}
        Some(Found::Stalled) => {
            say(&format!("warning: {}", watch.describe()));
            tracing::warn!(%group, "protected task stalls at its memory cap");
            task::set_stalled(root, &group, Some(jiff::Timestamp::now()));
        }
        Some(Found::Recovered) => {
            tracing::info!(%group, "protected task got memory back");
            task::set_stalled(root, &group, None);
        }
        Some(Found::TooLong(lasted)) => {
            let reason = format!(
                "memslice: stalled at its own memory cap for {}, past [protect] stall_timeout",
                crate::config::duration::human(lasted)
            );
            say(&format!("ending {group}: {reason}"));
            tracing::error!(%group, "ending a stalled protected task: {reason}");
            if let Err(err) = task::kill(root, &group, &reason, Duration::ZERO) {
                tracing::error!("cannot end the stalled task {group}: {err}");
            }
            if let Some(notify) = notify {
                let notice = crate::heal::notify::StallNotice {
                    event: "stall",
                    at: jiff::Timestamp::now(),
                    group: &group,
                    reason: &reason,
                    stalled_seconds: lasted.as_secs(),
                };
                if let Err(err) = crate::heal::notify::send(
                    notify.hook,
                    &notice,
                    notify.timeout,
                    crate::heal::notify::Environment::FixedPath,
                ) {
                    tracing::warn!("notify hook failed: {err}");
                }
            }
        }
    }
}

/// A line on stderr for the person who started the task; a closed stderr
/// must not end the supervision.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "memslice: {line}");
}

/// Reaps every child that has ended; returns how `command` ended if it did.
pub fn reap(command: Pid) -> Option<Ended> {
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

/// Kills what is left in the group, reaping while it empties (a systemd
/// scope is removed by systemd once empty).
pub fn empty(root: &Root, group: &str) -> Result<(), SpawnError> {
    if root.kill_and_wait(group, task::KILL_TIMEOUT, || {
        reap(Pid::from_raw(0));
    })? {
        Ok(())
    } else {
        Err(SpawnError::NotEmptied {
            group: group.to_string(),
        })
    }
}

/// Waits, reaping, until the group is empty or gone.
pub fn wait_empty(root: &Root, group: &str) -> Result<(), SpawnError> {
    while root.populated(group)? {
        reap(Pid::from_raw(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The supervisor keeps out of the OOM killer's way (root only): if it
/// died, nothing would remove the task's group or bound its stall. Called
/// after the command started, which took its own score.
pub fn protect_self() {
    if let Err(err) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        tracing::debug!("the supervisor stays at its oom_score_adj: {err}");
    }
}
