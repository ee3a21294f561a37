//! Prometheus text exposition (format 0.0.4, which node_exporter's textfile
//! collector reads): per group usage, limits, events, pressure, processes
//! and protected tasks, and the healer's state.
//!
//! Names follow Prometheus conventions: `memslice_` prefix, base units
//! (`_bytes`, `_seconds`), `_total` on counters, ratios instead of
//! percentages, `+Inf` for "no limit".

use std::fmt::Write as _;

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

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(String, String)>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn limit_value(limit: Limit) -> String {
    match limit {
        Limit::Max => "+Inf".to_string(),
        Limit::Bytes(bytes) => bytes.to_string(),
    }
}

fn group_label(group: &GroupStatus) -> String {
    format!("group=\"{}\"", escape(&group.path))
}

pub fn render(status: &Status, heal: Option<&HealMetrics>) -> String {
    let groups: Vec<&GroupStatus> = status.groups.iter().filter(|g| g.exists).collect();
    let per_group = |pick: &dyn Fn(&GroupStatus) -> Option<String>| -> Vec<(String, String)> {
        groups
            .iter()
            .filter_map(|g| pick(g).map(|value| (group_label(g), value)))
            .collect()
    };
    let mut families = vec![
        Family {
            name: "memslice_memory_current_bytes",
            kind: "gauge",
            help: "Memory charged to the group (memory.current).",
            samples: per_group(&|g| g.current_bytes.map(|b| b.to_string())),
        },
        Family {
            name: "memslice_memory_max_bytes",
            kind: "gauge",
            help: "Hard limit of the group (memory.max); +Inf when unlimited.",
            samples: per_group(&|g| g.max.map(limit_value)),
        },
        Family {
            name: "memslice_memory_high_bytes",
            kind: "gauge",
            help: "Throttling limit of the group (memory.high); +Inf when unlimited.",
            samples: per_group(&|g| g.high.map(limit_value)),
        },
        Family {
            name: "memslice_memory_low_bytes",
            kind: "gauge",
            help: "Best-effort protection of the group (memory.low).",
            samples: per_group(&|g| g.low.map(limit_value)),
        },
        Family {
            name: "memslice_memory_min_bytes",
            kind: "gauge",
            help: "Hard protection of the group (memory.min).",
            samples: per_group(&|g| g.min.map(limit_value)),
        },
    ];
    let mut events = Vec::new();
    for group in &groups {
        let Some(counters) = group.events else {
            continue;
        };
        for (event, value) in [
            ("low", counters.low),
            ("high", counters.high),
            ("max", counters.max),
            ("oom", counters.oom),
            ("oom_kill", counters.oom_kill),
            ("oom_group_kill", counters.oom_group_kill),
        ] {
            events.push((
                format!("{},event=\"{event}\"", group_label(group)),
                value.to_string(),
            ));
        }
    }
    families.push(Family {
        name: "memslice_memory_events_total",
        kind: "counter",
        help: "memory.events counters of the group and its descendants.",
        samples: events,
    });
    families.push(Family {
        name: "memslice_memory_pressure_avg10_ratio",
        kind: "gauge",
        help: "Share of the last 10 s in which some task of the group stalled on memory (memory.pressure some avg10).",
        samples: per_group(&|g| g.pressure_some_avg10.map(|avg| format!("{}", avg / 100.0))),
    });
    families.push(Family {
        name: "memslice_processes",
        kind: "gauge",
        help: "Processes directly in the group (cgroup.procs).",
        samples: per_group(&|g| Some(g.procs.to_string())),
    });
    families.push(Family {
        name: "memslice_tasks",
        kind: "gauge",
        help: "Running task groups (memslice run/protect) directly below the slice.",
        samples: per_group(&|g| g.managed.then(|| g.tasks.to_string())),
    });
    if let Some(heal) = heal {
        families.extend(heal_families(heal));
    }
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (labels, value) in &family.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", family.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", family.name);
            }
        }
    }
    out
}

fn heal_families(heal: &HealMetrics) -> Vec<Family<'static>> {
    let flag = |value: bool| vec![(String::new(), u8::from(value).to_string())];
    let mut families = vec![
        Family {
            name: "memslice_heal_down",
            kind: "gauge",
            help: "1 while the healer counts the site as down.",
            samples: flag(heal.down),
        },
        Family {
            name: "memslice_heal_downtime_seconds",
            kind: "gauge",
            help: "How long the current outage has lasted; 0 when up.",
            samples: vec![(String::new(), heal.downtime_seconds.to_string())],
        },
        Family {
            name: "memslice_heal_flapping",
            kind: "gauge",
            help: "1 while the flap limiter holds the healer back (memslice heal reset).",
            samples: flag(heal.flapping),
        },
        Family {
            name: "memslice_heal_recent_actions",
            kind: "gauge",
            help: "Heal actions within the flap limiter's window.",
            samples: vec![(String::new(), heal.recent_actions.to_string())],
        },
        Family {
            name: "memslice_heal_last_action_timestamp_seconds",
            kind: "gauge",
            help: "Unix time of the last heal action.",
            samples: heal
                .last_action_unix
                .map(|t| vec![(String::new(), t.to_string())])
                .unwrap_or_default(),
        },
    ];
    if let Some(counts) = heal.decisions {
        families.push(Family {
            name: "memslice_heal_decisions_total",
            kind: "counter",
            help: "Heal checks by outcome since heal watch started (lock_busy: skipped, another process held the lock).",
            samples: [
                ("up", counts.up),
                ("down", counts.down),
                ("acted", counts.acted),
                ("held_back", counts.held_back),
                ("lock_busy", counts.lock_busy),
            ]
            .into_iter()
            .map(|(decision, n)| (format!("decision=\"{decision}\""), n.to_string()))
            .collect(),
        });
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
