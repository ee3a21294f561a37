//! A protected task (oom_score_adj below 0, -1000 for `protect`) that
//! reaches its own memory.max cannot be OOM-killed: the kernel finds no
//! victim and the task stalls in its allocations until memory is freed or
//! its group is killed. memslice says so as soon as the kernel shows it
//! (OOM events keep coming in the task's group and no kill follows), and
//! ends the task once the stall has lasted `[protect] stall_timeout`.
//!
//! [`Stall`] is the pure bookkeeping; [`StallWatch`] reads the group's
//! memory.events when inotify says it changed.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroupfs::{MemoryEvents, Root};

/// OOM events without a kill before the task counts as stalled: one event
/// can precede its kill by a moment; a stalled task raises hundreds.
const STALL_EVENTS: u64 = 3;
/// Without an OOM event for this long, the task got memory back.
const QUIET: Duration = Duration::from_secs(10);
/// How long to wait for a systemd scope to appear before giving up.
const APPEAR: Duration = Duration::from_secs(5);

/// What the watch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The task just started to stall (reported once per stall).
    Stalled,
    /// It has stalled longer than the bound: end it.
    TooLong(Duration),
    /// It got memory back.
    Recovered,
}

/// The stall bookkeeping, from successive readings of memory.events. Pure.
#[derive(Debug, Clone)]
pub struct Stall {
    last: MemoryEvents,
    /// When OOM events without kills began, and how many came since.
    since: Option<Instant>,
    events: u64,
    last_event: Option<Instant>,
    reported: bool,
    /// The bound was passed and said so: the task is being ended.
    ending: bool,
    timeout: Option<Duration>,
}

impl Stall {
    pub fn new(start: MemoryEvents, timeout: Option<Duration>) -> Stall {
        Stall {
            last: start,
            since: None,
            events: 0,
            last_event: None,
            reported: false,
            ending: false,
            timeout,
        }
    }

    /// A reading of memory.events at `now`.
    pub fn observe(&mut self, now_events: MemoryEvents, now: Instant) -> Option<Found> {
        let kills = now_events.oom_kill.saturating_sub(self.last.oom_kill);
        let ooms = now_events.oom.saturating_sub(self.last.oom);
        self.last = now_events;
        if kills > 0 {
            return self.recover();
        }
        if ooms > 0 {
            self.since.get_or_insert(now);
            self.events = self.events.saturating_add(ooms);
            self.last_event = Some(now);
        }
        self.check(now)
    }

    /// Time passing without a reading.
    pub fn tick(&mut self, now: Instant) -> Option<Found> {
        if self
            .last_event
            .is_some_and(|at| now.saturating_duration_since(at) >= QUIET)
        {
            return self.recover();
        }
        self.check(now)
    }

    fn check(&mut self, now: Instant) -> Option<Found> {
        let since = self.since?;
        if self.events < STALL_EVENTS || self.ending {
            return None;
        }
        let lasted = now.saturating_duration_since(since);
        if let Some(timeout) = self.timeout
            && lasted >= timeout
        {
            self.ending = true;
            return Some(Found::TooLong(lasted));
        }
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(Found::Stalled)
    }

    fn recover(&mut self) -> Option<Found> {
        let was = self.reported;
        self.since = None;
        self.events = 0;
        self.last_event = None;
        self.reported = false;
        self.ending = false;
        was.then_some(Found::Recovered)
    }

    /// How long the caller may sleep before [`Stall::tick`] matters.
    pub fn next_tick(&self, now: Instant) -> Option<Duration> {
        if self.ending {
            return None;
        }
        let quiet = self
            .last_event
            .map(|at| (at + QUIET).saturating_duration_since(now));
        let bound = match (self.since, self.timeout) {
            (Some(since), Some(timeout)) if self.events >= STALL_EVENTS => {
                Some((since + timeout).saturating_duration_since(now))
            }
            _ => None,
        };
        match (quiet, bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Watches a task group's memory.events with inotify.
pub struct StallWatch<'a> {
    root: &'a Root,
    group: String,
    timeout: Option<Duration>,
    state: State,
}

enum State {
    /// The group does not exist yet (a scope systemd is still creating).
    Waiting {
        since: Instant,
    },
    Watching {
        inotify: Inotify,
        stall: Stall,
    },
    /// Nothing to watch.
    Done,
}

impl<'a> StallWatch<'a> {
    pub fn new(root: &'a Root, group: &str, timeout: Option<Duration>) -> StallWatch<'a> {
        let mut watch = StallWatch {
            root,
            group: group.to_string(),
            timeout,
            state: State::Waiting {
                since: Instant::now(),
            },
        };
        watch.try_start();
        watch
    }

    pub fn group(&self) -> &str {
        &self.group
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
            (Ok(inotify), Ok(start)) => State::Watching {
                inotify,
                stall: Stall::new(start, self.timeout),
            },
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

    /// How long the caller may sleep before calling [`StallWatch::wake`].
    pub fn timeout(&self) -> Option<Duration> {
        match &self.state {
            State::Waiting { .. } => Some(Duration::from_millis(100)),
            State::Watching { stall, .. } => stall.next_tick(Instant::now()),
            State::Done => None,
        }
    }

    /// Called when the fd is readable or the timeout passed.
    pub fn wake(&mut self) -> Option<Found> {
        self.try_start();
        let State::Watching { inotify, stall } = &mut self.state else {
            return None;
        };
        let now = Instant::now();
        let changed = matches!(inotify.read_events(), Ok(events) if !events.is_empty());
        match changed.then(|| self.root.memory_events(&self.group)) {
            Some(Ok(events)) => stall.observe(events, now),
            Some(Err(_)) => None,
            None => stall.tick(now),
        }
    }

    /// What to tell people about a stall that began.
    pub fn describe(&self) -> String {
        let limit = self
            .root
            .limit(&self.group, "memory.max")
            .ok()
            .flatten()
            .map_or_else(
                || "its memory.max".to_string(),
                |l| format!("its memory.max ({l})"),
            );
        let bound = match self.timeout {
            Some(timeout) => format!(
                "memslice ends it after {} ([protect] stall_timeout)",
                crate::config::duration::human(timeout)
            ),
            None => format!(
                "it stalls until memory is freed or the group is killed (memslice tasks kill, or echo 1 > {})",
                self.root.file(&self.group, "cgroup.kill").display()
            ),
        };
        format!(
            "{} is at {limit} and the kernel finds nothing it may kill (the task is protected): {bound}",
            self.group
        )
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
    fn a_stall_is_ooms_without_kills_reported_once() {
        let t0 = Instant::now();
        let mut stall = Stall::new(events(0, 0), None);
        assert_eq!(
            stall.observe(events(1, 0), t0),
            None,
            "one OOM may be followed by its kill"
        );
        assert_eq!(stall.observe(events(2, 1), t0), None, "a kill happened");
        assert_eq!(stall.observe(events(5, 1), t0), Some(Found::Stalled));
        assert_eq!(
            stall.observe(events(400, 1), t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            stall.observe(events(401, 2), t0 + Duration::from_secs(2)),
            Some(Found::Recovered)
        );
    }

    #[test]
    fn a_stall_longer_than_the_bound_is_too_long() {
        let t0 = Instant::now();
        let bound = Duration::from_secs(60);
        let mut stall = Stall::new(events(10, 2), Some(bound));
        assert_eq!(stall.observe(events(20, 2), t0), Some(Found::Stalled));
        assert_eq!(stall.next_tick(t0), Some(QUIET));
        let later = t0 + Duration::from_secs(9);
        assert_eq!(stall.observe(events(500, 2), later), None);
        assert_eq!(stall.next_tick(later), Some(QUIET));
        let end = t0 + bound;
        assert_eq!(
            stall.observe(events(900, 2), end - Duration::from_secs(1)),
            None
        );
        assert_eq!(stall.tick(end), Some(Found::TooLong(bound)));
        assert_eq!(
            stall.tick(end + QUIET / 2),
            None,
            "said once while the task ends"
        );
        assert_eq!(stall.next_tick(end), None);
    }

    #[test]
    fn a_task_that_gets_memory_back_is_no_longer_stalled() {
        let t0 = Instant::now();
        let mut stall = Stall::new(events(0, 0), Some(Duration::from_secs(60)));
        assert_eq!(stall.observe(events(5, 0), t0), Some(Found::Stalled));
        assert_eq!(stall.tick(t0 + QUIET), Some(Found::Recovered));
        assert_eq!(
            stall.tick(t0 + Duration::from_secs(120)),
            None,
            "the bound no longer runs"
        );
        assert_eq!(stall.next_tick(t0 + QUIET), None);
    }
}
