//! `memslice status`: every managed slice and the groups below it (running
//! tasks included), with usage, limits, OOM counters and memory pressure.
//!
//! JSON schema (stable; fields are only ever added):
//! `{"root": str, "groups": [{"path": str, "managed": bool, "exists": bool,
//! "procs": int, "current_bytes": int|null, "max": int|"max"|null,
//! "high": …, "low": …, "min": …, "events": {"low","high","max","oom",
//! "oom_kill","oom_group_kill": int}|null, "pressure_some_avg10": float|null}]}`.
//! A limit is bytes, `"max"` for none, or null when the file is absent.

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

use crate::cgroupfs::{self, MemoryEvents, Root};
use crate::config::{Config, Limit, size::human_bytes};

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
}

fn limit_json<S: Serializer>(limit: &Option<Limit>, serializer: S) -> Result<S::Ok, S::Error> {
    match limit {
        None => serializer.serialize_none(),
        Some(Limit::Max) => serializer.serialize_str("max"),
        Some(Limit::Bytes(bytes)) => serializer.serialize_u64(*bytes),
    }
}

/// Deeper groups than this under a slice are not listed: a task's own
/// sub-groups are its business.
const DEPTH_BELOW_SLICE: usize = 2;

pub fn status(root: &Root, config: &Config) -> Result<Status, cgroupfs::Error> {
    let mut groups = Vec::new();
    for slice in &config.slices {
        groups.push(group_status(root, &slice.path, true)?);
        if root.exists(&slice.path) {
            collect_unmanaged(root, config, &slice.path, DEPTH_BELOW_SLICE, &mut groups)?;
        }
    }
    Ok(Status {
        root: root.path().display().to_string(),
        groups,
    })
}

fn collect_unmanaged(
    root: &Root,
    config: &Config,
    parent: &str,
    depth: usize,
    out: &mut Vec<GroupStatus>,
) -> Result<(), cgroupfs::Error> {
    if depth == 0 {
        return Ok(());
    }
    for child in root.children(parent)? {
        let path = cgroupfs::join(parent, &child);
        if config.slice(&path).is_some() {
            continue;
        }
        out.push(group_status(root, &path, false)?);
        collect_unmanaged(root, config, &path, depth - 1, out)?;
    }
    Ok(())
}

fn group_status(root: &Root, path: &str, managed: bool) -> Result<GroupStatus, cgroupfs::Error> {
    if !root.exists(path) {
        return Ok(GroupStatus {
            path: path.to_string(),
            managed,
            exists: false,
            procs: 0,
            current_bytes: None,
            max: None,
            high: None,
            low: None,
            min: None,
            events: None,
            pressure_some_avg10: None,
        });
    }
    let has_events = root.read_optional(path, "memory.events")?.is_some();
    Ok(GroupStatus {
        path: path.to_string(),
        managed,
        exists: true,
        procs: root.procs(path)?.len(),
        current_bytes: root.memory_current(path)?,
        max: root.limit(path, "memory.max")?,
        high: root.limit(path, "memory.high")?,
        low: root.limit(path, "memory.low")?,
        min: root.limit(path, "memory.min")?,
        events: if has_events {
            Some(root.memory_events(path)?)
        } else {
            None
        },
        pressure_some_avg10: root.memory_pressure(path)?.map(|p| p.some.avg10),
    })
}

impl Status {
    /// The table people read: indentation shows the tree.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let rows: Vec<[String; 8]> = self.groups.iter().map(row).collect();
        let header = [
            "GROUP", "CURRENT", "MAX", "USE", "HIGH", "OOM", "OOM_KILL", "PSI10",
        ]
        .map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for cells in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if index == 0 {
                    let _ = write!(line, "{cell:<width$}");
                } else {
                    let _ = write!(line, "  {cell:>width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn row(group: &GroupStatus) -> [String; 8] {
    let depth = group.path.matches('/').count();
    let name = group.path.rsplit('/').next().unwrap_or(&group.path);
    let marker = if group.managed { "" } else { " (task)" };
    let label = format!("{}{name}{marker}", "  ".repeat(depth));
    if !group.exists {
        return [
            label,
            "missing".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ];
    }
    let show = |limit: Option<Limit>| limit.map_or_else(|| "-".to_string(), |l| l.to_string());
    let usage = match (group.current_bytes, group.max) {
        (Some(current), Some(Limit::Bytes(max))) if max > 0 => {
            // Display only; a rounding error in the percentage is harmless.
            #[allow(clippy::cast_precision_loss)]
            let percent = current as f64 * 100.0 / max as f64;
            format!("{percent:.0}%")
        }
        _ => "-".into(),
    };
    let events = group.events.unwrap_or_default();
    [
        label,
        group.current_bytes.map_or_else(|| "-".into(), human_bytes),
        show(group.max),
        usage,
        show(group.high),
        events.oom.to_string(),
        events.oom_kill.to_string(),
        group
            .pressure_some_avg10
            .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
    ]
}
