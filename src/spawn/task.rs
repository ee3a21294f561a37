//! Task groups and what memslice records on them, as extended attributes
//! of the group's cgroup directory: who started what and when, which
//! memslice watches it now, since when it stalls, who killed it and why.
//! The records live and die with the group, so nothing goes stale and
//! `memslice tasks` is a walk of the tree.
//!
//! Also the markers userspace OOM killers honour (systemd-oomd and oomd
//! ignore oom_score_adj and kill whole cgroups by pressure): a protected
//! task's group carries them from its start.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cgroupfs::{self, GroupHandle, Root};
use crate::config::Limit;

/// The task's record: set once, when the group is made.
pub const RECORD: &str = "user.memslice.task";
/// `PID STARTTIME ROLE` of the memslice that watches the group now.
pub const SUPERVISOR: &str = "user.memslice.supervisor";
/// Unix seconds since the task stalls at its own memory cap.
pub const STALLED_SINCE: &str = "user.memslice.stalled_since";
/// Who killed the task and why, written before the kill.
pub const KILLED_BY: &str = "user.memslice.killed_by";

/// What userspace OOM killers read to leave a cgroup alone: systemd-oomd
/// the `user.` names (it sets them itself for ManagedOOMPreference=omit and
/// avoid), oomd (Meta's) the `trusted.` one (root only).
pub const OOMD_OMIT: [&str; 2] = ["user.oomd_omit", "trusted.oomd_avoid"];

/// How long a kill may take to empty a group (reclaim under pressure is slow).
pub const KILL_TIMEOUT: Duration = Duration::from_secs(30);

pub use super::policy::Mode;

/// Who started what, and when. The user is kept as the uid alone and
/// named when the task is listed: a name lookup goes through NSS (nscd,
/// nsswitch.conf, /etc/passwd, maybe LDAP), and took a tenth of a task's
/// start as root. Records from before this carry a `user` name too; it is
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub name: String,
    pub mode: Mode,
    pub uid: u32,
    /// The command line, arguments joined by spaces.
    pub command: String,
    pub started: Timestamp,
}

/// What a supervisor is doing for its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The memslice that started the command, waiting for it.
    Foreground,
    /// The memslice that stayed behind for work the command left running.
    Keeper,
}

/// The memslice process that watches a group, told apart from a later
/// process with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervisor {
    pub pid: u32,
    pub start_time: u64,
    pub role: Role,
}

impl Supervisor {
    /// This process, in `role`.
    pub fn this(role: Role) -> Supervisor {
        let pid = std::process::id();
        Supervisor {
            pid,
            start_time: crate::host::process_start_time(pid).unwrap_or(0),
            role,
        }
    }

    fn text(self) -> String {
        let role = match self.role {
            Role::Foreground => "foreground",
            Role::Keeper => "keeper",
        };
        format!("{} {} {role}", self.pid, self.start_time)
    }

    fn parse(text: &str) -> Option<Supervisor> {
        let mut fields = text.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let start_time = fields.next()?.parse().ok()?;
        let role = match fields.next()? {
            "foreground" => Role::Foreground,
            "keeper" => Role::Keeper,
            _ => return None,
        };
        Some(Supervisor {
            pid,
            start_time,
            role,
        })
    }

    /// Whether that very process still runs.
    pub fn alive(self) -> bool {
        crate::host::process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Marks a new group as a task: its supervisor, its record, and, for a
/// protected task, the userspace OOM killers' markers. The supervisor
/// first: a `tasks gc` in between would otherwise find a task's record on
/// an empty group with nobody watching it, and remove the group.
pub fn mark(
    root: &Root,
    group: &str,
    record: &TaskRecord,
    protected: bool,
) -> Result<(), cgroupfs::Error> {
    set_supervisor(root, group, Supervisor::this(Role::Foreground))?;
    let json = serde_json::to_vec(record).unwrap_or_default();
    root.set_attribute(group, RECORD, &json)?;
    if protected {
        for name in OOMD_OMIT {
            if let Err(err) = root.set_attribute(group, name, b"1") {
                tracing::warn!("userspace OOM killers may not skip {group}: {err}");
            }
        }
    }
    Ok(())
}

pub fn set_supervisor(
    root: &Root,
    group: &str,
    supervisor: Supervisor,
) -> Result<(), cgroupfs::Error> {
    root.set_attribute(group, SUPERVISOR, supervisor.text().as_bytes())
}

/// Records whether (and since when) the task stalls at its cap.
pub fn set_stalled(root: &Root, group: &str, since: Option<Timestamp>) {
    let result = match since {
        Some(at) => root.set_attribute(group, STALLED_SINCE, at.as_second().to_string().as_bytes()),
        None => root.remove_attribute(group, STALLED_SINCE),
    };
    if let Err(err) = result
        && !err.group_vanished()
    {
        tracing::debug!("cannot record the stall of {group}: {err}");
    }
}

/// Since when the task has stalled at its cap, as its memslice recorded it;
/// `None` while it makes progress (or is no task).
fn stalled_since(handle: &GroupHandle) -> Result<Option<Timestamp>, cgroupfs::Error> {
    Ok(handle
        .attribute(STALLED_SINCE)?
        .and_then(|bytes| String::from_utf8_lossy(&bytes).trim().parse::<i64>().ok())
        .and_then(|seconds| Timestamp::from_second(seconds).ok()))
}

/// Kills the task group, saying first who and why, so the task's memslice
/// can tell its caller; waits up to `timeout` for it to empty.
pub fn kill(
    root: &Root,
    group: &str,
    reason: &str,
    timeout: Duration,
) -> Result<bool, cgroupfs::Error> {
    if let Err(err) = root.set_attribute(group, KILLED_BY, reason.as_bytes())
        && !err.group_vanished()
    {
        tracing::warn!("cannot record why {group} is killed: {err}");
    }
    root.kill_and_wait(group, timeout, || {})
}

/// Says on every task group below `slice` who is about to kill it and
/// why, before the slice is killed as a whole (the healer does that).
pub fn record_kill_below(root: &Root, slice: &str, reason: &str) {
    let Ok(children) = root.children(slice) else {
        return;
    };
    for child in children {
        let group = cgroupfs::join(slice, &child);
        if let Err(err) = root.set_attribute(&group, KILLED_BY, reason.as_bytes())
            && !err.group_vanished()
        {
            tracing::warn!("cannot record why {group} is killed: {err}");
        }
    }
}

/// Who killed the group and why, as the killer recorded it.
pub fn killed_by(handle: &GroupHandle) -> Option<String> {
    let bytes = handle.attribute(KILLED_BY).ok()??;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A task group as `memslice tasks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    /// The group, relative to the cgroup root.
    pub group: String,
    /// The group that holds it (the slice's cgroup).
    pub slice: String,
    pub name: Option<String>,
    pub mode: Option<Mode>,
    pub user: Option<String>,
    pub uid: Option<u32>,
    pub command: Option<String>,
    pub started: Option<Timestamp>,
    pub state: State,
    pub memory_current_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    #[serde(serialize_with = "crate::observe::limit_json")]
    pub memory_max: Option<Limit>,
    pub supervisor_pid: Option<u32>,
    pub stalled_since: Option<Timestamp>,
    pub killed_by: Option<String>,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its command runs, its memslice waits for it.
    Running,
    /// At its own memory cap, with nothing the kernel may kill.
    Stalled,
    /// The command ended; work it left behind runs on, watched by a keeper.
    Detached,
    /// Processes run, and no memslice watches them (it was killed).
    Orphaned,
    /// No process left; the group waits for removal (`tasks gc`).
    Empty,
}

/// Every task group under `slices` (cgroups of the managed slices, as the
/// driver lays them out): a child group that carries a task record, or a
/// scope memslice named.
pub fn list(root: &Root, slices: &[String]) -> Result<Vec<TaskInfo>, cgroupfs::Error> {
    let mut tasks = Vec::new();
    for slice in slices {
        let children = match root.children(slice) {
            Ok(children) => children,
            Err(err) if err.group_vanished() => continue,
            Err(err) => return Err(err),
        };
        for child in children {
            let group = cgroupfs::join(slice, &child);
            if slices.contains(&group) {
                continue;
            }
            match describe(root, slice, &group) {
                Ok(Some(info)) => tasks.push(info),
                Ok(None) => {}
                Err(err) if err.group_vanished() => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(tasks)
}

/// Names each task's user as the user database has it now (`None` for a
/// uid it does not know: a user removed since), one lookup per uid. Only
/// `memslice tasks` shows them: the healer and `status` list tasks too, and
/// must not wait on NSS (nscd, LDAP) when memory is short.
pub fn name_users(tasks: &mut [TaskInfo]) {
    let mut names: BTreeMap<u32, Option<String>> = BTreeMap::new();
    for task in tasks {
        task.user = task.uid.and_then(|uid| {
            names
                .entry(uid)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map(|user| user.name)
                })
                .clone()
        });
    }
}

/// How a group shows it is a task of memslice's.
enum Mark {
    Recorded(TaskRecord),
    /// A scope of memslice's name without a record (yet, or any more).
    Scope,
}

/// `group`'s mark, read through `handle`; `None` when it is no task of
/// memslice's: no record and no scope of memslice's name, or a directory
/// owned by another user than root or memslice's own (a record there is
/// the owner's forgery).
fn mark_of(handle: &GroupHandle, group: &str) -> Result<Option<Mark>, cgroupfs::Error> {
    if !handle.owned_by_root_or_us()? {
        return Ok(None);
    }
    let record: Option<TaskRecord> = handle
        .attribute(RECORD)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let scope = group
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("memslice-") && name.ends_with(".scope"));
    Ok(match record {
        Some(record) => Some(Mark::Recorded(record)),
        None if scope => Some(Mark::Scope),
        None => None,
    })
}

/// Whether `group` is a task of memslice's with processes, of the `mode`
/// given (either for `None`); a scope of memslice's name whose record is
/// missing counts as either. A slice may hold other groups: a child slice,
/// a group made by hand, a user's sessions (under the systemd driver their
/// session scopes and user@UID.service). A group removed while it is read
/// runs nothing.
pub fn is_running(root: &Root, group: &str, mode: Option<Mode>) -> Result<bool, cgroupfs::Error> {
    let running = root.populated(group).and_then(|populated| {
        if !populated {
            return Ok(false);
        }
        let handle = root.open_group(group)?;
        Ok(match mark_of(&handle, group)? {
            None => false,
            Some(Mark::Scope) => true,
            Some(Mark::Recorded(record)) => mode.is_none_or(|mode| record.mode == mode),
        })
    });
    match running {
        Err(err) if err.group_vanished() => Ok(false),
        other => other,
    }
}

/// The task in `group` below `slice`, or `None` when it is no task of
/// memslice's (see `mark_of`).
pub fn describe(
    root: &Root,
    slice: &str,
    group: &str,
) -> Result<Option<TaskInfo>, cgroupfs::Error> {
    let handle = root.open_group(group)?;
    let record = match mark_of(&handle, group)? {
        None => return Ok(None),
        Some(Mark::Recorded(record)) => Some(record),
        Some(Mark::Scope) => None,
    };
    let supervisor = handle
        .attribute(SUPERVISOR)?
        .and_then(|bytes| Supervisor::parse(&String::from_utf8_lossy(&bytes)));
    let stalled_since = stalled_since(&handle)?;
    let populated = root.populated(group)?;
    let watched = supervisor.filter(|s| s.alive());
    let state = match (populated, watched) {
        (false, _) => State::Empty,
        (true, None) => State::Orphaned,
        (true, Some(_)) if stalled_since.is_some() => State::Stalled,
        (true, Some(s)) if s.role == Role::Keeper => State::Detached,
        (true, Some(_)) => State::Running,
    };
    Ok(Some(TaskInfo {
        group: group.to_string(),
        slice: slice.to_string(),
        name: record.as_ref().map(|r| r.name.clone()),
        mode: record.as_ref().map(|r| r.mode),
        user: None,
        uid: record.as_ref().map(|r| r.uid),
        // memslice writes a command's control characters out when it
        // records it; a record from an older one, by a task still running
        // across an upgrade, may hold them raw.
        command: record
            .as_ref()
            .map(|r| crate::printable::printable(&r.command).into_owned()),
        started: record.as_ref().map(|r| r.started),
        state,
        memory_current_bytes: root.memory_current(group).ok().flatten(),
        memory_peak_bytes: root
            .limit(group, "memory.peak")
            .ok()
            .flatten()
            .and_then(Limit::bytes),
        memory_max: root.limit(group, "memory.max").ok().flatten(),
        supervisor_pid: supervisor.map(|s| s.pid),
        stalled_since,
        killed_by: killed_by(&handle),
    }))
}

/// Removes the task groups nobody will remove: empty, and the memslice
/// that watched them is gone (killed). Returns the groups removed.
pub fn gc(root: &Root, slices: &[String]) -> Result<Vec<String>, cgroupfs::Error> {
    let mut removed = Vec::new();
    for task in list(root, slices)? {
        if task.state != State::Empty {
            continue;
        }
        let supervised = root
            .attribute(&task.group, SUPERVISOR)
            .ok()
            .flatten()
            .and_then(|bytes| Supervisor::parse(&String::from_utf8_lossy(&bytes)))
            .is_some_and(Supervisor::alive);
        if supervised {
            continue;
        }
        match root.remove(&task.group) {
            Ok(()) => {
                tracing::info!(group = %task.group, "removed an empty task group its memslice left behind");
                removed.push(task.group);
            }
            Err(err) => tracing::warn!("cannot remove the empty task group {}: {err}", task.group),
        }
    }
    Ok(removed)
}

/// The task groups whose group name, or task name, is `name`.
pub fn find<'a>(tasks: &'a [TaskInfo], name: &str) -> Vec<&'a TaskInfo> {
    tasks
        .iter()
        .filter(|task| {
            task.group.rsplit('/').next() == Some(name) || task.name.as_deref() == Some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = Supervisor::this(Role::Keeper);
        assert!(me.alive());
        assert_eq!(Supervisor::parse(&me.text()), Some(me));
        let impostor = Supervisor {
            start_time: me.start_time.wrapping_add(1),
            ..me
        };
        assert!(!impostor.alive(), "a reused pid is another process");
        assert_eq!(Supervisor::parse("12 34 boss"), None);
    }

    /// An emulated root with `groups` made, kept while the directory lives.
    fn root_with(groups: &[&str]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::cgroupfs::emulated::create_root(dir.path(), &[crate::config::Controller::Memory])
            .expect("root");
        let root = Root::emulated(dir.path());
        for group in groups {
            root.create(group).expect("create");
        }
        (dir, root)
    }

    #[test]
    fn a_task_is_named_from_its_uid_when_listed_and_older_records_still_read_safely() {
        let (_dir, root) = root_with(&["app", "app/tasks", "app/tasks/old-7", "app/tasks/gone-8"]);
        let before = br#"{"name":"old","mode":"run","user":"someone","uid":0,"command":"true \u001b]0;owned\u0007","started":"2026-01-01T00:00:00Z"}"#;
        root.set_attribute("app/tasks/old-7", RECORD, before)
            .expect("record");
        let unknown = TaskRecord {
            name: "gone".into(),
            mode: Mode::Run,
            uid: 4_000_000_000,
            command: "true".into(),
            started: Timestamp::UNIX_EPOCH,
        };
        mark(&root, "app/tasks/gone-8", &unknown, false).expect("mark");
        let mut tasks = list(&root, &["app/tasks".to_string()]).expect("list");
        assert!(
            tasks.iter().all(|task| task.user.is_none()),
            "listing names no user: the healer lists tasks too"
        );
        name_users(&mut tasks);
        let [gone, old] = tasks.as_slice() else {
            panic!("two tasks: {tasks:?}");
        };
        assert_eq!(old.name.as_deref(), Some("old"));
        assert_eq!(
            old.command.as_deref(),
            Some("true \\x1b]0;owned\\x07"),
            "an older record's control characters are written out"
        );
        assert_eq!(old.uid, Some(0));
        assert_eq!(
            old.user.as_deref(),
            Some("root"),
            "named from the uid now, not from the name it recorded"
        );
        assert_eq!(
            (gone.uid, gone.user.as_deref()),
            (Some(4_000_000_000), None)
        );
    }

    #[test]
    fn records_round_trip_on_a_group_and_list_shows_them() {
        let (_dir, root) = root_with(&[
            "app",
            "app/tasks",
            "app/tasks/import-7",
            "app/tasks/by-hand",
        ]);
        let record = TaskRecord {
            name: "import".into(),
            mode: Mode::Protect,
            uid: 1000,
            command: "php import.php".into(),
            started: Timestamp::UNIX_EPOCH,
        };
        mark(&root, "app/tasks/import-7", &record, true).expect("mark");
        let slices = vec!["app".to_string(), "app/tasks".to_string()];
        let tasks = list(&root, &slices).expect("list");
        assert_eq!(tasks.len(), 1, "a group made by hand is no task: {tasks:?}");
        assert_eq!(tasks[0].name.as_deref(), Some("import"));
        assert_eq!(tasks[0].supervisor_pid, Some(std::process::id()));
        assert_eq!(
            tasks[0].state,
            State::Empty,
            "the emulation has no processes"
        );
        assert_eq!(find(&tasks, "import").len(), 1);
        assert_eq!(find(&tasks, "import-7").len(), 1);
        assert!(
            gc(&root, &slices).expect("gc").is_empty(),
            "its supervisor is alive"
        );
        set_supervisor(
            &root,
            "app/tasks/import-7",
            Supervisor {
                pid: std::process::id(),
                start_time: 1,
                role: Role::Foreground,
            },
        )
        .expect("a dead supervisor");
        assert_eq!(gc(&root, &slices).expect("gc"), ["app/tasks/import-7"]);
        assert!(!root.exists("app/tasks/import-7"));
        assert!(
            root.exists("app/tasks/by-hand"),
            "gc removes task groups only"
        );
    }
}
