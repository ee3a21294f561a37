//! Prometheus text exposition (format 0.0.4, which node_exporter's textfile
//! collector reads): per group usage, limits, events, pressure, processes
//! and protected tasks, and the healer's state.
//!
//! Names follow Prometheus conventions: `memslice_` prefix, base units
//! (`_bytes`, `_seconds`), `_total` on counters, ratios instead of
//! percentages, `+Inf` for "no limit".

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use super::status::{GroupStatus, Status};
use crate::config::Limit;

/// The healer's state as metrics see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealMetrics {
    pub down: bool,
    pub downtime_seconds: u64,
    pub flapping: bool,
    pub recent_actions: usize,
    pub last_action_unix: Option<i64>,
    /// Counted by a running `heal watch` since it started; absent otherwise.
    pub decisions: Option<DecisionCounts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    pub up: u64,
    pub down: u64,
    pub acted: u64,
    pub held_back: u64,
    /// Checks skipped because another process held the heal lock.
    pub lock_busy: u64,
}

/// The labels of one sample, written with their braces.
#[derive(Debug, Clone, Copy)]
enum Labels<'a> {
    None,
    /// An escaped group path.
    Group(&'a str),
    GroupEvent(&'a str, &'a str),
    /// An escaped task group path and its slice's.
    GroupSlice(&'a str, &'a str),
    Decision(&'a str),
}

impl fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Labels::None => Ok(()),
            Labels::Group(group) => write!(f, "{{group=\"{group}\"}}"),
            Labels::GroupEvent(group, event) => {
                write!(f, "{{group=\"{group}\",event=\"{event}\"}}")
            }
            Labels::GroupSlice(group, slice) => {
                write!(f, "{{group=\"{group}\",slice=\"{slice}\"}}")
            }
            Labels::Decision(decision) => write!(f, "{{decision=\"{decision}\"}}"),
        }
    }
}

/// A metric family, written straight into the output: a tree of ten
/// thousand groups is a hundred thousand samples.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

impl Family<'_> {
    /// HELP and TYPE, then one line per sample; nothing at all without a
    /// sample (an empty family is noise to Prometheus).
    fn write<'l, V: fmt::Display>(
        &self,
        out: &mut String,
        samples: impl IntoIterator<Item = (Labels<'l>, V)>,
    ) {
        let mut first = true;
        for (labels, value) in samples {
            if std::mem::take(&mut first) {
                let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
                let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
            }
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

/// A label value as the text format wants it; most need no escaping.
fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// A limit as a sample value: bytes, or `+Inf` for none.
#[derive(Debug, Clone, Copy)]
struct LimitValue(Limit);

impl fmt::Display for LimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Limit::Max => f.write_str("+Inf"),
            Limit::Bytes(bytes) => write!(f, "{bytes}"),
        }
    }
}

pub fn render(status: &Status, heal: Option<&HealMetrics>) -> String {
    let groups: Vec<(&GroupStatus, Cow<'_, str>)> = status
        .groups
        .iter()
        .filter(|g| g.exists)
        .map(|g| (g, escape(&g.path)))
        .collect();
    let mut text = String::with_capacity(groups.len().saturating_mul(1024));
    let out = &mut text;
    let limits = |pick: fn(&GroupStatus) -> Option<Limit>| {
        groups.iter().filter_map(move |(g, label)| {
            pick(g).map(|limit| (Labels::Group(label), LimitValue(limit)))
        })
    };
    Family {
        name: "memslice_memory_current_bytes",
        kind: "gauge",
        help: "Memory charged to the group (memory.current).",
    }
    .write(
        out,
        groups
            .iter()
            .filter_map(|(g, label)| g.current_bytes.map(|bytes| (Labels::Group(label), bytes))),
    );
    Family {
        name: "memslice_memory_max_bytes",
        kind: "gauge",
        help: "Hard limit of the group (memory.max); +Inf when unlimited.",
    }
    .write(out, limits(|g| g.max));
    Family {
        name: "memslice_memory_high_bytes",
        kind: "gauge",
        help: "Throttling limit of the group (memory.high); +Inf when unlimited.",
    }
    .write(out, limits(|g| g.high));
    Family {
        name: "memslice_memory_low_bytes",
        kind: "gauge",
        help: "Best-effort protection of the group (memory.low).",
    }
    .write(out, limits(|g| g.low));
    Family {
        name: "memslice_memory_min_bytes",
        kind: "gauge",
        help: "Hard protection of the group (memory.min).",
    }
    .write(out, limits(|g| g.min));
    Family {
        name: "memslice_memory_events_total",
        kind: "counter",
        help: "memory.events counters of the group and its descendants.",
    }
    .write(
        out,
        groups.iter().flat_map(|(g, label)| {
            g.events.into_iter().flat_map(move |counters| {
                [
                    ("low", counters.low),
                    ("high", counters.high),
                    ("max", counters.max),
                    ("oom", counters.oom),
                    ("oom_kill", counters.oom_kill),
                    ("oom_group_kill", counters.oom_group_kill),
                ]
                .map(|(event, value)| (Labels::GroupEvent(label, event), value))
            })
        }),
    );
    Family {
        name: "memslice_memory_pressure_avg10_ratio",
        kind: "gauge",
        help: "Share of the last 10 s in which some task of the group stalled on memory (memory.pressure some avg10).",
    }
    .write(
        out,
        groups.iter().filter_map(|(g, label)| {
            g.pressure_some_avg10
                .map(|avg| (Labels::Group(label), avg / 100.0))
        }),
    );
    Family {
        name: "memslice_processes",
        kind: "gauge",
        help: "Processes directly in the group (cgroup.procs).",
    }
    .write(
        out,
        groups
            .iter()
            .map(|(g, label)| (Labels::Group(label), g.procs)),
    );
    Family {
        name: "memslice_tasks",
        kind: "gauge",
        help: "Running task groups (memslice run/protect) directly below the slice.",
    }
    .write(
        out,
        groups
            .iter()
            .filter(|(g, _)| g.managed)
            .map(|(g, label)| (Labels::Group(label), g.tasks)),
    );
    let stalled: Vec<(&str, Cow<'_, str>, bool)> = groups
        .iter()
        .filter_map(|(g, label)| {
            g.task
                .as_ref()
                .map(|task| (&**label, escape(&task.slice), task.stalled_since.is_some()))
        })
        .collect();
    Family {
        name: "memslice_task_stalled",
        kind: "gauge",
        help: "1 while a task below a slice stalls at its own memory cap with nothing the kernel may kill (recorded by its memslice).",
    }
    .write(
        out,
        stalled
            .iter()
            .map(|(group, slice, stalled)| (Labels::GroupSlice(group, slice), u8::from(*stalled))),
    );
    if let Some(heal) = heal {
        write_heal(out, heal);
    }
    text
}

fn write_heal(out: &mut String, heal: &HealMetrics) {
    let one = |value: u64| [(Labels::None, value)];
    Family {
        name: "memslice_heal_down",
        kind: "gauge",
        help: "1 while the healer counts the site as down.",
    }
    .write(out, one(u64::from(heal.down)));
    Family {
        name: "memslice_heal_downtime_seconds",
        kind: "gauge",
        help: "How long the current outage has lasted; 0 when up.",
    }
    .write(out, one(heal.downtime_seconds));
    Family {
        name: "memslice_heal_flapping",
        kind: "gauge",
        help: "1 while the flap limiter holds the healer back (memslice heal reset).",
    }
    .write(out, one(u64::from(heal.flapping)));
    Family {
        name: "memslice_heal_recent_actions",
        kind: "gauge",
        help: "Heal actions within the flap limiter's window.",
    }
    .write(out, [(Labels::None, heal.recent_actions)]);
    Family {
        name: "memslice_heal_last_action_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the last heal action.",
    }
    .write(out, heal.last_action_unix.map(|t| (Labels::None, t)));
    if let Some(counts) = heal.decisions {
        Family {
            name: "memslice_heal_decisions_total",
            kind: "counter",
            help: "Heal checks by outcome since heal watch started (lock_busy: skipped, another process held the lock).",
        }
        .write(
            out,
            [
                ("up", counts.up),
                ("down", counts.down),
                ("acted", counts.acted),
                ("held_back", counts.held_back),
                ("lock_busy", counts.lock_busy),
            ]
            .map(|(decision, n)| (Labels::Decision(decision), n)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
