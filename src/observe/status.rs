//! `memslice status`: every managed slice and the groups below it (running
//! tasks included), with usage, limits, OOM counters and memory pressure.
//!
//! JSON schema (stable; fields are only ever added):
//! `{"root": str, "groups": [{"path": str, "managed": bool, "exists": bool,
//! "procs": int, "tasks": int, "current_bytes": int|null, "max": int|"max"|null,
//! "high": …, "low": …, "min": …, "events": {"low","high","max","oom",
//! "oom_kill","oom_group_kill": int}|null, "pressure_some_avg10": float|null,
//! "task": {"slice": str, "stalled_since": int|null}|null}]}`.
//! A limit is bytes, `"max"` for none, or null when the file is absent.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Serialize, Serializer};

use crate::cgroupfs::{self, MemoryEvents, Root};
use crate::config::{Config, Limit, size::human_bytes};
use crate::printable::printable;
use crate::spawn::task;

#[derive(Debug, Serialize)]
pub struct Status {
    pub root: String,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub path: String,
    /// Named in slices.toml (false for tasks and groups made by hand).
    pub managed: bool,
    pub exists: bool,
    pub procs: usize,
    /// Task groups (run/protect) with processes directly below this slice.
    pub tasks: usize,
    pub current_bytes: Option<u64>,
    #[serde(serialize_with = "limit_json")]
    pub max: Option<Limit>,
    #[serde(serialize_with = "limit_json")]
    pub high: Option<Limit>,
    #[serde(serialize_with = "limit_json")]
    pub low: Option<Limit>,
    #[serde(serialize_with = "limit_json")]
    pub min: Option<Limit>,
    pub events: Option<MemoryEvents>,
    pub pressure_some_avg10: Option<f64>,
    /// Set on a task of run/protect directly below a slice (as `memslice
    /// tasks` lists them) by `status --json` and the metrics.
    pub task: Option<TaskStatus>,
}

#[derive(Debug, Serialize)]
pub struct TaskStatus {
    /// The slice it runs in, as slices.toml names it.
    pub slice: String,
    /// Unix time since which it stalls at its own memory cap, as its
    /// memslice recorded it; null while it makes progress, and once no
    /// memslice watches it or it has no process left.
    pub stalled_since: Option<i64>,
}

/// A limit in JSON: bytes, `"max"` for none, null when the file is absent.
pub fn limit_json<S: Serializer>(limit: &Option<Limit>, serializer: S) -> Result<S::Ok, S::Error> {
    match limit {
        None => serializer.serialize_none(),
        Some(Limit::Max) => serializer.serialize_str("max"),
        Some(Limit::Bytes(bytes)) => serializer.serialize_u64(*bytes),
    }
}

/// Deeper groups than this under a slice are not listed: a task's own
/// sub-groups are its business.
const DEPTH_BELOW_SLICE: usize = 2;

/// How much of each group to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Everything: `status --json` and the metrics.
    Full,
    /// What the table shows: usage, max, high, OOM counters and pressure.
    /// Processes, low and min are not read (0 and null).
    Table,
}

/// Every group with every field, for JSON and the metrics.
pub fn status(root: &Root, config: &Config) -> Result<Status, cgroupfs::Error> {
    collect(root, config, Detail::Full)
}

/// Every group with what [`Status::render_text`] shows and nothing more:
/// processes, low and min are left at 0 and null, unread.
pub fn summary(root: &Root, config: &Config) -> Result<Status, cgroupfs::Error> {
    collect(root, config, Detail::Table)
}

fn collect(root: &Root, config: &Config, detail: Detail) -> Result<Status, cgroupfs::Error> {
    let managed: HashSet<String> = config
        .slices
        .iter()
        .map(|s| config.layout.cgroup_of(&s.path))
        .chain(config.slices.iter().filter_map(|s| config.sessions_leaf(s)))
        .collect();
    let mut groups = Vec::new();
    for slice in &config.slices {
        let index = groups.len();
        let cgroup = config.layout.cgroup_of(&slice.path);
        let mut group = group_status(root, &cgroup, true, detail)?;
        group.path.clone_from(&slice.path);
        let exists = group.exists;
        groups.push(group);
        if exists {
            let depth = DEPTH_BELOW_SLICE;
            collect_unmanaged(root, &managed, &cgroup, depth, detail, &mut groups)?;
            let depth = cgroup.matches('/').count() + 1;
            let mut tasks = 0;
            for task in groups[index + 1..]
                .iter_mut()
                .filter(|g| g.path.matches('/').count() == depth)
            {
                if task::is_running(root, &task.path, None)? {
                    tasks += 1;
                }
                if detail == Detail::Full {
                    task.task = task_status(root, &slice.path, &cgroup, &task.path);
                }
            }
            groups[index].tasks = tasks;
        }
        if let Some(leaf) = config.sessions_leaf(slice) {
            groups.push(group_status(root, &leaf, true, detail)?);
        }
    }
    Ok(Status {
        root: root.path().display().to_string(),
        groups,
    })
}

fn collect_unmanaged(
    root: &Root,
    managed: &HashSet<String>,
    parent: &str,
    depth: usize,
    detail: Detail,
    out: &mut Vec<GroupStatus>,
) -> Result<(), cgroupfs::Error> {
    let Some(below) = depth.checked_sub(1) else {
        return Ok(());
    };
    let children = match root.children(parent) {
        Err(err) if err.group_vanished() => return Ok(()),
        other => other?,
    };
    for child in children {
        let path = cgroupfs::join(parent, &child);
        if managed.contains(&path) {
            continue;
        }
        let status = group_status(root, &path, false, detail)?;
        // Task groups and scopes come and go while they are read.
        if !status.exists {
            continue;
        }
        out.push(status);
        // A group another user owns was delegated to them (user@UID.service
        // under the systemd driver): what they make below it is theirs,
        // and would cost every status and scrape as many reads and series
        // as they like.
        if below == 0 {
            continue;
        }
        match root
            .open_group(&path)
            .and_then(|group| group.owned_by_root_or_us())
        {
            Ok(true) => collect_unmanaged(root, managed, &path, below, detail, out)?,
            Ok(false) => {}
            Err(err) if err.group_vanished() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A group that is missing, or removed while it is read (systemd removes
/// an empty scope at once), is reported as missing, not as an error.
fn group_status(
    root: &Root,
    path: &str,
    managed: bool,
    detail: Detail,
) -> Result<GroupStatus, cgroupfs::Error> {
    match read_group_status(root, path, managed, detail) {
        Err(err) if err.group_vanished() => Ok(missing(path, managed)),
        other => other,
    }
}

fn missing(path: &str, managed: bool) -> GroupStatus {
    GroupStatus {
        path: path.to_string(),
        managed,
        exists: false,
        procs: 0,
        tasks: 0,
        current_bytes: None,
        max: None,
        high: None,
        low: None,
        min: None,
        events: None,
        pressure_some_avg10: None,
        task: None,
    }
}

/// The task in `path`, judged as `memslice tasks` judges it (a stall
/// counts while the task has processes and its memslice watches it);
/// `None` for a group that is no task of memslice's or is gone. A record
/// that cannot be read costs a warning, not the whole status.
fn task_status(root: &Root, slice: &str, slice_cgroup: &str, path: &str) -> Option<TaskStatus> {
    match task::describe(root, slice_cgroup, path) {
        Ok(info) => info.map(|info| TaskStatus {
            slice: slice.to_string(),
            stalled_since: info
                .stalled_since
                .filter(|_| info.state == task::State::Stalled)
                .map(|at| at.as_second()),
        }),
        Err(err) if err.group_vanished() => None,
        Err(err) => {
            tracing::warn!("cannot read the task record of {path}: {err}");
            None
        }
    }
}

fn read_group_status(
    root: &Root,
    path: &str,
    managed: bool,
    detail: Detail,
) -> Result<GroupStatus, cgroupfs::Error> {
    let full = detail == Detail::Full;
    // cgroup.procs is in every group: a group without it is gone.
    let procs = if full { root.procs(path)?.len() } else { 0 };
    let current_bytes = root.memory_current(path)?;
    // The table reads no file every group has: a group without
    // memory.current has no memory controller, or is gone.
    if !full && current_bytes.is_none() && !root.exists(path) {
        return Ok(missing(path, managed));
    }
    Ok(GroupStatus {
        path: path.to_string(),
        managed,
        exists: true,
        procs,
        tasks: 0,
        current_bytes,
        max: root.limit(path, "memory.max")?,
        high: root.limit(path, "memory.high")?,
        low: full
            .then(|| root.limit(path, "memory.low"))
            .transpose()?
            .flatten(),
        min: full
            .then(|| root.limit(path, "memory.min"))
            .transpose()?
            .flatten(),
        events: root.memory_events_if_enabled(path)?,
        pressure_some_avg10: root.memory_pressure(path)?.map(|p| p.some.avg10),
        task: None,
    })
}

/// ANSI colours for the terminal; plain text anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Warn,
    Bad,
}

const COLUMNS: [&str; 9] = [
    "GROUP", "CURRENT", "MAX", "USE", "HIGH", "TASKS", "OOM", "OOM_KILL", "PSI10",
];
const BAR: usize = 10;

impl Status {
    /// The table people read: indentation shows the tree; `color` only
    /// when stdout is a terminal.
    pub fn render_text(&self, color: bool) -> String {
        let rows: Vec<Vec<(String, Tone)>> = self.groups.iter().map(row).collect();
        let header: Vec<(String, Tone)> = COLUMNS
            .iter()
            .map(|h| (h.to_string(), Tone::Plain))
            .collect();
        let mut widths = vec![0; COLUMNS.len()];
        for cells in std::iter::once(&header).chain(&rows) {
            for (width, (text, _)) in widths.iter_mut().zip(cells) {
                *width = (*width).max(text.chars().count());
            }
        }
        let mut out = String::new();
        for cells in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (index, ((text, tone), width)) in cells.iter().zip(&widths).enumerate() {
                let padded = if index == 0 {
                    format!("{text:<width$}")
                } else {
                    format!("  {text:>width$}")
                };
                let code = match (color, tone) {
                    (true, Tone::Warn) => Some("33"),
                    (true, Tone::Bad) => Some("31"),
                    _ => None,
                };
                match code {
                    Some(code) => {
                        let _ = write!(line, "\x1b[{code}m{padded}\x1b[0m");
                    }
                    None => line.push_str(&padded),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn row(group: &GroupStatus) -> Vec<(String, Tone)> {
    let depth = group.path.matches('/').count();
    // A user may name a group delegated to them (user@UID.service under
    // the systemd driver): no escape in it reaches the terminal.
    let name = printable(group.path.rsplit('/').next().unwrap_or(&group.path));
    let marker = if group.managed { "" } else { " (task)" };
    let label = format!("{}{name}{marker}", "  ".repeat(depth));
    let plain = |text: String| (text, Tone::Plain);
    if !group.exists {
        let mut cells = vec![plain(label), ("missing".into(), Tone::Bad)];
        cells.resize(COLUMNS.len(), plain("-".into()));
        return cells;
    }
    let show = |limit: Option<Limit>| limit.map_or_else(|| "-".to_string(), |l| l.to_string());
    let usage = match (group.current_bytes, group.max) {
        (Some(current), Some(Limit::Bytes(max))) if max > 0 => {
            // Display only; a rounding error in the percentage is harmless.
            #[allow(clippy::cast_precision_loss)]
            let percent = current as f64 * 100.0 / max as f64;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let filled = ((percent / 100.0 * BAR as f64).round() as usize).min(BAR);
            let tone = match percent {
                p if p >= 90.0 => Tone::Bad,
                p if p >= 75.0 => Tone::Warn,
                _ => Tone::Plain,
            };
            (
                format!(
                    "{}{} {percent:>3.0}%",
                    "#".repeat(filled),
                    ".".repeat(BAR - filled)
                ),
                tone,
            )
        }
        _ => plain("-".into()),
    };
    let events = group.events.unwrap_or_default();
    let kills = (
        events.oom_kill.to_string(),
        if events.oom_kill > 0 {
            Tone::Bad
        } else {
            Tone::Plain
        },
    );
    vec![
        plain(label),
        plain(group.current_bytes.map_or_else(|| "-".into(), human_bytes)),
        plain(show(group.max)),
        usage,
        plain(show(group.high)),
        plain(if group.managed {
            group.tasks.to_string()
        } else {
            "-".into()
        }),
        plain(events.oom.to_string()),
        kills,
        plain(
            group
                .pressure_some_avg10
                .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
        ),
    ]
}
