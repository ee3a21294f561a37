//! `memslice events`: OOM and limit events as they happen, from inotify on
//! each managed group's memory.events (the kernel notifies on every change;
//! nothing is polled), with the victim from the kernel log.
//!
//! memory.events is hierarchical: one kill in app/web raises app/web and
//! app. Each event is reported once, at the deepest watched group it
//! happened in (its delta less its watched children's).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use serde::Serialize;

use crate::cgroupfs::{self, MemoryEvents, Root};
use crate::config::Limit;
use crate::config::size::human_bytes;

/// The memory.events counters reported, in the order they are reported;
/// serialized as the kernel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Max,
    High,
    Oom,
    OomKill,
    OomGroupKill,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Max,
        EventKind::High,
        EventKind::Oom,
        EventKind::OomKill,
        EventKind::OomGroupKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Max => "max",
            EventKind::High => "high",
            EventKind::Oom => "oom",
            EventKind::OomKill => "oom_kill",
            EventKind::OomGroupKill => "oom_group_kill",
        }
    }

    fn counter(self, events: &MemoryEvents) -> u64 {
        match self {
            EventKind::Max => events.max,
            EventKind::High => events.high,
            EventKind::Oom => events.oom,
            EventKind::OomKill => events.oom_kill,
            EventKind::OomGroupKill => events.oom_group_kill,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Settling time after the first notification, so the parent's and the
/// child's counters are read after the same kernel event.
const SETTLE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Victim {
    pub pid: u32,
    pub command: String,
    /// The victim's cgroup as the kernel log names it.
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub at: Timestamp,
    pub group: String,
    pub kind: EventKind,
    pub delta: u64,
    pub total: u64,
    pub current_bytes: Option<u64>,
    #[serde(serialize_with = "super::status::limit_json")]
    pub max: Option<Limit>,
    pub victim: Option<Victim>,
}

/// Per group and kind, the increase that happened in the group itself or
/// in descendants nobody watches. Pure. A counter that went down (the group
/// was recreated) counts from zero.
pub fn own_deltas(
    before: &BTreeMap<String, MemoryEvents>,
    after: &BTreeMap<String, MemoryEvents>,
) -> Vec<(String, EventKind, u64, u64)> {
    let delta = |group: &str, kind: EventKind| {
        let now = after.get(group).map_or(0, |e| kind.counter(e));
        let was = before.get(group).map_or(0, |e| kind.counter(e));
        if now >= was { now - was } else { now }
    };
    let mut found = Vec::new();
    for group in after.keys() {
        for kind in EventKind::ALL {
            // Saturating: a recreated group's counter counts from zero, so
            // deltas are not bounded by one counter's range.
            let children = after
                .keys()
                .filter(|other| crate::config::parent_of(other) == Some(group.as_str()))
                .map(|child| delta(child, kind))
                .fold(0u64, u64::saturating_add);
            let own = delta(group, kind).saturating_sub(children);
            if own > 0 {
                let total = after.get(group).map_or(0, |e| kind.counter(e));
                found.push((group.clone(), kind, own, total));
            }
        }
    }
    found
}

/// A kernel log line about an OOM kill: the summary line
/// (`... Killed process 540 (hog) total-vm:...`) or the `oom-kill:` line
/// that names the victim's cgroup.
pub fn parse_kill(line: &str) -> Option<Victim> {
    let message = line.split_once(';').map_or(line, |(_, message)| message);
    if let Some(rest) = message.split_once("Killed process ").map(|(_, rest)| rest) {
        let (pid, rest) = rest.split_once(' ')?;
        let command = rest.strip_prefix('(')?.split_once(')')?.0;
        return Some(Victim {
            pid: pid.parse().ok()?,
            command: command.to_string(),
            cgroup: None,
        });
    }
    let fields = message.strip_prefix("oom-kill:")?;
    let field = |key: &str| {
        fields
            .split(',')
            .find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    Some(Victim {
        pid: field("pid")?.parse().ok()?,
        command: field("task")?.to_string(),
        cgroup: field("task_memcg").map(str::to_string),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot watch {}: {err}", path.display())]
    Watch { path: PathBuf, err: nix::Error },
    #[error("inotify: {0}")]
    Inotify(nix::Error),
    #[error(transparent)]
    Cgroup(#[from] cgroupfs::Error),
}

/// Watches the memory.events of `groups` and turns notifications into events.
pub struct Watcher<'a> {
    root: &'a Root,
    inotify: Inotify,
    watches: BTreeMap<WatchDescriptor, String>,
    last: BTreeMap<String, MemoryEvents>,
    /// /dev/kmsg, read from the end, for victims' names; absent without
    /// permission (then events have no victim).
    kmsg: Option<File>,
    /// Kernel log lines seen since the last event, newest last.
    log: Vec<Victim>,
}

impl<'a> Watcher<'a> {
    pub fn new(root: &'a Root, groups: &[String]) -> Result<Watcher<'a>, EventsError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(EventsError::Inotify)?;
        let mut watches = BTreeMap::new();
        let mut last = BTreeMap::new();
        for group in groups.iter().filter(|g| root.exists(g)) {
            let path = root.file(group, "memory.events");
            let wd = inotify
                .add_watch(&path, AddWatchFlags::IN_MODIFY)
                .map_err(|err| EventsError::Watch { path, err })?;
            watches.insert(wd, group.clone());
            last.insert(group.clone(), root.memory_events(group)?);
        }
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut file| file.seek(SeekFrom::End(0)).map(|_| file))
            .ok();
        Ok(Watcher {
            root,
            inotify,
            watches,
            last,
            kmsg,
            log: Vec::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Counters as last read, per group.
    pub fn totals(&self) -> &BTreeMap<String, MemoryEvents> {
        &self.last
    }

    /// Waits up to `timeout` (forever with `None`) for a change and returns
    /// the events it carried; empty on timeout.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Vec<Event>, EventsError> {
        let millis = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::NONE),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Ok(_) => {}
            Err(err) => return Err(EventsError::Inotify(err)),
        }
        self.collect()
    }

    /// Reads what the notifications say changed (call when fd() is readable).
    pub fn collect(&mut self) -> Result<Vec<Event>, EventsError> {
        std::thread::sleep(SETTLE);
        match self.inotify.read_events() {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(err) => return Err(EventsError::Inotify(err)),
        }
        let mut now = BTreeMap::new();
        for group in self.watches.values() {
            now.insert(group.clone(), self.root.memory_events(group)?);
        }
        let changes = own_deltas(&self.last, &now);
        self.last = now;
        if changes
            .iter()
            .any(|(_, kind, _, _)| *kind == EventKind::OomKill)
        {
            self.read_kernel_log();
        }
        let at = Timestamp::now();
        let mut events = Vec::with_capacity(changes.len());
        for (group, kind, delta, total) in changes {
            let victim = (kind == EventKind::OomKill)
                .then(|| self.victim_in(&group))
                .flatten();
            events.push(Event {
                at,
                current_bytes: self.root.memory_current(&group).ok().flatten(),
                max: self.root.limit(&group, "memory.max").ok().flatten(),
                group,
                kind,
                delta,
                total,
                victim,
            });
        }
        Ok(events)
    }

    fn read_kernel_log(&mut self) {
        let Some(kmsg) = &mut self.kmsg else { return };
        let mut record = [0u8; 8192];
        // One read is one record; EAGAIN when there is no more.
        while let Ok(length) = kmsg.read(&mut record) {
            if length == 0 {
                break;
            }
            if let Some(victim) = parse_kill(&String::from_utf8_lossy(&record[..length])) {
                match self.log.last_mut() {
                    // The summary line follows the oom-kill line of the same kill.
                    Some(last) if last.pid == victim.pid => {
                        last.cgroup = last.cgroup.take().or(victim.cgroup)
                    }
                    _ => self.log.push(victim),
                }
            }
        }
    }

    /// The most recent victim the kernel log placed in `group` or below.
    fn victim_in(&mut self, group: &str) -> Option<Victim> {
        let wanted = format!("/{group}");
        let index = self.log.iter().rposition(|victim| {
            victim
                .cgroup
                .as_deref()
                .is_none_or(|cgroup| cgroup == wanted || cgroup.starts_with(&format!("{wanted}/")))
        })?;
        Some(self.log.remove(index))
    }
}

impl Event {
    /// One line for people and logs.
    pub fn line(&self) -> String {
        let usage = match (self.current_bytes, self.max) {
            (Some(current), Some(max)) => format!("{} of {max}", human_bytes(current)),
            (Some(current), None) => human_bytes(current),
            _ => "-".to_string(),
        };
        let mut line = format!(
            "{} {} {} +{} (total {}), usage {usage}",
            self.at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
            self.group,
            self.kind,
            self.delta,
            self.total
        );
        if let Some(victim) = &self.victim {
            line.push_str(&format!(", victim pid {} ({})", victim.pid, victim.command));
            if let Some(cgroup) = &victim.cgroup {
                line.push_str(&format!(" in {cgroup}"));
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(oom: u64, oom_kill: u64, max: u64) -> MemoryEvents {
        MemoryEvents {
            max,
            oom,
            oom_kill,
            ..MemoryEvents::default()
        }
    }

    #[test]
    fn a_kill_is_reported_once_at_the_deepest_group() {
        let before = BTreeMap::from([
            ("app".to_string(), events(0, 0, 0)),
            ("app/web".to_string(), events(0, 0, 0)),
        ]);
        // The app limit was hit (max, oom counted at app); the victim was in app/web.
        let after = BTreeMap::from([
            ("app".to_string(), events(1, 1, 3)),
            ("app/web".to_string(), events(0, 1, 0)),
        ]);
        assert_eq!(
            own_deltas(&before, &after),
            vec![
                ("app".to_string(), EventKind::Max, 3, 3),
                ("app".to_string(), EventKind::Oom, 1, 1),
                ("app/web".to_string(), EventKind::OomKill, 1, 1)
            ]
        );
    }

    #[test]
    fn a_recreated_group_counts_from_zero() {
        let before = BTreeMap::from([("app/tasks".to_string(), events(5, 5, 5))]);
        let after = BTreeMap::from([("app/tasks".to_string(), events(0, 1, 0))]);
        assert_eq!(
            own_deltas(&before, &after),
            vec![("app/tasks".to_string(), EventKind::OomKill, 1, 1)]
        );
    }

    #[test]
    fn children_near_the_counter_limit_do_not_overflow() {
        let before = BTreeMap::from([
            ("app/a".to_string(), events(0, u64::MAX, 0)),
            ("app/b".to_string(), events(0, u64::MAX, 0)),
        ]);
        let after = BTreeMap::from([
            ("app".to_string(), events(0, 5, 0)),
            ("app/a".to_string(), events(0, u64::MAX - 1, 0)),
            ("app/b".to_string(), events(0, u64::MAX - 1, 0)),
        ]);
        let deltas = own_deltas(&before, &after);
        assert!(
            deltas.iter().all(|(group, ..)| group != "app"),
            "{deltas:?}"
        );
    }

    #[test]
    fn kinds_serialize_as_the_kernel_names_them() {
        let names: Vec<String> = EventKind::ALL
            .iter()
            .map(|kind| serde_json::to_string(kind).expect("json"))
            .collect();
        assert_eq!(
            names,
            [
                "\"max\"",
                "\"high\"",
                "\"oom\"",
                "\"oom_kill\"",
                "\"oom_group_kill\""
            ]
        );
    }

    #[test]
    fn victims_from_both_kernel_log_lines() {
        let summary = "3,512,9587894,-;Memory cgroup out of memory: Killed process 197 (hog) total-vm:134636kB, anon-rss:130612kB";
        assert_eq!(
            parse_kill(summary),
            Some(Victim {
                pid: 197,
                command: "hog".into(),
                cgroup: None
            })
        );
        let detail = "6,511,9587000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/app,task_memcg=/app/web,task=hog,pid=197,uid=0";
        assert_eq!(
            parse_kill(detail).and_then(|v| v.cgroup),
            Some("/app/web".to_string())
        );
        assert_eq!(parse_kill("6,1,1,-;eth0: link up"), None);
    }
}
