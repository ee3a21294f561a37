//! A protected task (oom_score_adj below 0, -1000 for `protect`) that
//! reaches its own memory.max cannot be OOM-killed: the kernel finds no
//! victim and the task stalls in its allocations until memory is freed or
//! its group is killed. memslice cannot choose for the operator whether
//! that is acceptable, but it says so once, as soon as the kernel shows it:
//! OOM events keep coming in the task's group and no kill follows.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroupfs::{MemoryEvents, Root};

/// OOM events without a kill before the task counts as stalled: one event
/// can precede its kill by a moment; a stalled task raises hundreds.
const STALL_EVENTS: u64 = 3;
/// How long to wait for a systemd scope to appear before giving up.
const APPEAR: Duration = Duration::from_secs(5);

/// Whether the counters show a task stuck at its limit. Pure.
pub fn stalled(start: &MemoryEvents, now: &MemoryEvents) -> bool {
    now.oom >= start.oom + STALL_EVENTS && now.oom_kill == start.oom_kill
}

pub struct StallWatch<'a> {
    root: &'a Root,
    group: String,
    state: State,
}

enum State {
    /// The group does not exist yet (a scope systemd is still creating).
    Waiting { since: Instant },
    Watching {
        inotify: Inotify,
        start: MemoryEvents,
    },
    /// Warned already, or nothing to watch.
    Done,
}

impl<'a> StallWatch<'a> {
    pub fn new(root: &'a Root, group: &str) -> StallWatch<'a> {
        let mut watch = StallWatch {
            root,
            group: group.to_string(),
            state: State::Waiting {
                since: Instant::now(),
            },
        };
        watch.try_start();
        watch
    }

    fn try_start(&mut self) {
        let State::Waiting { since } = self.state else {
            return;
        };
        let path = self.root.file(&self.group, "memory.events");
        if !path.exists() {
            if since.elapsed() > APPEAR {
                self.state = State::Done;
            }
            return;
        }
        let started =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|inotify| {
                inotify
                    .add_watch(&path, AddWatchFlags::IN_MODIFY)
                    .map(|_| inotify)
            });
        self.state = match (started, self.root.memory_events(&self.group)) {
            (Ok(inotify), Ok(start)) => State::Watching { inotify, start },
            _ => State::Done,
        };
    }

    /// The fd to poll while watching.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Watching { inotify, .. } => Some(inotify.as_fd()),
            _ => None,
        }
    }

    /// How long the supervisor may sleep before `wake` should look again.
    pub fn timeout(&self) -> Option<Duration> {
        matches!(self.state, State::Waiting { .. }).then_some(Duration::from_millis(100))
    }

    /// Called when the fd is readable or the timeout passed; returns the
    /// warning, once.
    pub fn wake(&mut self) -> Option<String> {
        self.try_start();
        let State::Watching { inotify, start } = &self.state else {
            return None;
        };
        let _ = inotify.read_events();
        let now = self.root.memory_events(&self.group).ok()?;
        if !stalled(start, &now) {
            return None;
        }
        self.state = State::Done;
        let limit = self
            .root
            .limit(&self.group, "memory.max")
            .ok()
            .flatten()
            .map_or_else(
                || "its memory.max".to_string(),
                |l| format!("its memory.max ({l})"),
            );
        Some(format!(
            "{} is at {limit} and the kernel finds nothing it may kill (the task is protected): it stalls until memory is freed or the group is killed (memslice heal, or echo 1 > {})",
            self.group,
            self.root.file(&self.group, "cgroup.kill").display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(oom: u64, oom_kill: u64) -> MemoryEvents {
        MemoryEvents {
            oom,
            oom_kill,
            ..MemoryEvents::default()
        }
    }

    #[test]
    fn a_stall_is_ooms_without_kills() {
        assert!(
            !stalled(&events(0, 0), &events(1, 0)),
            "one OOM may be followed by its kill"
        );
        assert!(!stalled(&events(0, 0), &events(5, 1)), "a kill happened");
        assert!(stalled(&events(0, 0), &events(3, 0)));
        assert!(stalled(&events(10, 2), &events(400, 2)));
    }
}
