//! The ordered list of changes from the observed tree to the desired one.
//! Pure, so every ordering rule is a unit test.
//!
//! Order, in three passes:
//! 1. groups created and controllers enabled top-down (a child's memory
//!    files exist only once its parent enables memory);
//! 2. values that relax or are new, top-down;
//! 3. ceilings that go down (memory.max/high/swap.max), bottom-up: children
//!    are brought within the new bound before the parent is, so reclaim
//!    starts in the narrowest group, and every group exists first.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::observe::{KnobState, ObservedGroup};
use super::{DesiredGroup, Knob, Value, display_group};
use crate::config::{Controller, parent_of};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create {
        group: String,
    },
    Enable {
        group: String,
        controllers: Vec<Controller>,
    },
    Set {
        group: String,
        knob: Knob,
        from: Option<Value>,
        to: Value,
    },
}

/// Something that would make the kernel refuse part of the plan; `apply`
/// refuses the whole plan up front rather than stop half-way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    InternalProcesses {
        group: String,
        procs: usize,
    },
    NotOffered {
        group: String,
        controller: Controller,
    },
    MissingFile {
        group: String,
        knob: Knob,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub blockers: Vec<Blocker>,
    /// Child groups under managed slices that the config does not name;
    /// left alone (they may be running tasks), reported with their process count.
    pub unmanaged: Vec<(String, usize)>,
}

pub fn diff(desired: &[DesiredGroup], observed: &BTreeMap<String, ObservedGroup>) -> Plan {
    let mut plan = Plan::default();
    let mut lowered = Vec::new();
    let mut relaxed = Vec::new();
    // Groups whose memory controller this plan enables: their children's
    // memory files appear only then. A set, so the diff stays linear.
    let mut enabling_memory: HashSet<&str> = HashSet::new();
    for group in desired {
        let path = &group.path;
        let seen = observed.get(path);
        if seen.is_none() && !path.is_empty() {
            plan.changes.push(Change::Create {
                group: path.clone(),
            });
        }
        let enabled = seen
            .map(|s| s.subtree_control.as_slice())
            .unwrap_or_default();
        let missing: Vec<Controller> = group
            .subtree_control
            .iter()
            .filter(|c| !enabled.contains(c))
            .copied()
            .collect();
        if !missing.is_empty() {
            if let Some(seen) = seen {
                if let Some(procs) = seen.procs.filter(|n| *n > 0 && !path.is_empty()) {
                    plan.blockers.push(Blocker::InternalProcesses {
                        group: path.clone(),
                        procs,
                    });
                }
                if path.is_empty() {
                    for controller in missing.iter().filter(|c| !seen.offered.contains(c)) {
                        plan.blockers.push(Blocker::NotOffered {
                            group: path.clone(),
                            controller: *controller,
                        });
                    }
                }
            }
            if missing.contains(&Controller::Memory) {
                enabling_memory.insert(path);
            }
            plan.changes.push(Change::Enable {
                group: path.clone(),
                controllers: missing,
            });
        }
        let parent_enables_memory_now =
            !path.is_empty() && enabling_memory.contains(parent_of(path).unwrap_or(""));
        for (knob, to) in &group.knobs {
            let from = match seen.map(|s| s.knobs.get(knob)) {
                None | Some(None) => None,
                Some(Some(KnobState::Is(value))) => Some(*value),
                Some(Some(KnobState::Missing)) => {
                    if !parent_enables_memory_now {
                        plan.blockers.push(Blocker::MissingFile {
                            group: path.clone(),
                            knob: *knob,
                        });
                    }
                    None
                }
            };
            if from == Some(*to) {
                continue;
            }
            let change = Change::Set {
                group: path.clone(),
                knob: *knob,
                from,
                to: *to,
            };
            if is_lowering(*knob, from, *to) {
                lowered.push(change);
            } else {
                relaxed.push(change);
            }
        }
        if let Some(seen) = seen {
            plan.unmanaged
                .extend(seen.unmanaged_children.iter().cloned());
        }
    }
    plan.changes.extend(relaxed);
    plan.changes.extend(lowered.into_iter().rev());
    plan
}

fn is_lowering(knob: Knob, from: Option<Value>, to: Value) -> bool {
    match (from, to) {
        (Some(Value::Limit(from)), Value::Limit(to)) => knob.is_ceiling() && to < from,
        _ => false,
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { group } => write!(f, "create  {group}"),
            Change::Enable { group, controllers } => {
                let names: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
                write!(
                    f,
                    "enable  {}  cgroup.subtree_control: {}",
                    display_group(group),
                    names.join(" ")
                )
            }
            Change::Set {
                group,
                knob,
                from,
                to,
            } => {
                let from = from.map_or_else(|| "(new)".to_string(), |v| v.to_string());
                write!(
                    f,
                    "set     {}  {}: {from} -> {to}",
                    display_group(group),
                    knob.file()
                )
            }
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::InternalProcesses { group, procs } => write!(
                f,
                "{group} has {procs} process(es) of its own; cgroup v2's \"no internal processes\" rule forbids enabling controllers for its children: move them into a leaf group first"
            ),
            Blocker::NotOffered { group, controller } => write!(
                f,
                "{} does not offer the {controller} controller (not in its cgroup.controllers)",
                display_group(group)
            ),
            Blocker::MissingFile { group, knob } => write!(
                f,
                "{group} has no {} although its parent enables memory: the kernel lacks this feature (memory.swap.max needs swap accounting)",
                knob.file()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limit;

    const G: u64 = 1 << 30;

    fn group(path: &str, knobs: &[(Knob, Value)], controllers: &[Controller]) -> DesiredGroup {
        DesiredGroup {
            path: path.into(),
            knobs: knobs.to_vec(),
            subtree_control: controllers.to_vec(),
        }
    }

    fn bytes(n: u64) -> Value {
        Value::Limit(Limit::Bytes(n))
    }

    fn seen(knobs: &[(Knob, Value)], controllers: &[Controller]) -> ObservedGroup {
        ObservedGroup {
            knobs: knobs.iter().map(|(k, v)| (*k, KnobState::Is(*v))).collect(),
            subtree_control: controllers.to_vec(),
            offered: vec![Controller::Memory, Controller::Pids],
            procs: None,
            unmanaged_children: Vec::new(),
        }
    }

    fn tree() -> Vec<DesiredGroup> {
        vec![
            group("", &[], &[Controller::Memory]),
            group("app", &[(Knob::Max, bytes(8 * G))], &[Controller::Memory]),
            group(
                "app/web",
                &[
                    (Knob::Max, bytes(4 * G)),
                    (Knob::OomGroup, Value::Flag(false)),
                ],
                &[],
            ),
        ]
    }

    #[test]
    fn an_empty_tree_is_built_top_down() {
        let plan = diff(&tree(), &BTreeMap::new());
        let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "enable  (root)  cgroup.subtree_control: +memory",
                "create  app",
                "enable  app  cgroup.subtree_control: +memory",
                "create  app/web",
                "set     app  memory.max: (new) -> 8G",
                "set     app/web  memory.max: (new) -> 4G",
                "set     app/web  memory.oom.group: (new) -> 0",
            ]
        );
        assert!(plan.blockers.is_empty());
    }

    /// The tree() groups as observed, with app and app/web at these values.
    fn observed(
        app_max: Value,
        web_max: Value,
        web_oom_group: bool,
    ) -> BTreeMap<String, ObservedGroup> {
        BTreeMap::from([
            (String::new(), seen(&[], &[Controller::Memory])),
            (
                "app".to_string(),
                seen(&[(Knob::Max, app_max)], &[Controller::Memory]),
            ),
            (
                "app/web".to_string(),
                seen(
                    &[
                        (Knob::Max, web_max),
                        (Knob::OomGroup, Value::Flag(web_oom_group)),
                    ],
                    &[],
                ),
            ),
        ])
    }

    fn set_order(plan: &Plan) -> Vec<(&str, Knob)> {
        plan.changes
            .iter()
            .filter_map(|c| match c {
                Change::Set { group, knob, .. } => Some((group.as_str(), *knob)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_matching_tree_needs_nothing() {
        assert_eq!(
            diff(&tree(), &observed(bytes(8 * G), bytes(4 * G), false)),
            Plan::default()
        );
    }

    #[test]
    fn drift_shows_exactly_the_changed_value() {
        let plan = diff(
            &tree(),
            &observed(bytes(8 * G), Value::Limit(Limit::Max), false),
        );
        assert_eq!(
            plan.changes,
            vec![Change::Set {
                group: "app/web".into(),
                knob: Knob::Max,
                from: Some(Value::Limit(Limit::Max)),
                to: bytes(4 * G),
            }]
        );
    }

    #[test]
    fn lowered_ceilings_go_children_first_after_everything_else() {
        let plan = diff(&tree(), &observed(bytes(16 * G), bytes(12 * G), true));
        assert_eq!(
            set_order(&plan),
            [
                ("app/web", Knob::OomGroup),
                ("app/web", Knob::Max),
                ("app", Knob::Max)
            ]
        );
    }

    #[test]
    fn raised_ceilings_go_parents_first() {
        let plan = diff(&tree(), &observed(bytes(4 * G), bytes(2 * G), false));
        assert_eq!(
            set_order(&plan),
            [("app", Knob::Max), ("app/web", Knob::Max)]
        );
    }

    #[test]
    fn internal_processes_block_enabling_controllers() {
        let mut busy = seen(&[(Knob::Max, bytes(8 * G))], &[]);
        busy.procs = Some(3);
        let observed = BTreeMap::from([
            ("".to_string(), seen(&[], &[Controller::Memory])),
            ("app".to_string(), busy),
        ]);
        let plan = diff(&tree(), &observed);
        assert_eq!(
            plan.blockers,
            vec![Blocker::InternalProcesses {
                group: "app".into(),
                procs: 3
            }]
        );
        assert!(
            plan.blockers[0]
                .to_string()
                .contains("no internal processes")
        );
    }

    #[test]
    fn a_root_without_memory_blocks() {
        let mut root = seen(&[], &[]);
        root.offered = vec![Controller::Pids];
        let plan = diff(&tree()[..1], &BTreeMap::from([("".to_string(), root)]));
        assert_eq!(
            plan.blockers,
            vec![Blocker::NotOffered {
                group: String::new(),
                controller: Controller::Memory
            }]
        );
    }

    #[test]
    fn a_missing_knob_file_blocks_unless_the_parent_is_enabling_memory_now() {
        let desired = vec![
            group("", &[], &[Controller::Memory]),
            group("ops", &[(Knob::SwapMax, Value::Limit(Limit::Max))], &[]),
        ];
        let mut ops = seen(&[], &[]);
        ops.knobs.insert(Knob::SwapMax, KnobState::Missing);
        let enabled = BTreeMap::from([
            ("".to_string(), seen(&[], &[Controller::Memory])),
            ("ops".to_string(), ops.clone()),
        ]);
        assert_eq!(
            diff(&desired, &enabled).blockers,
            vec![Blocker::MissingFile {
                group: "ops".into(),
                knob: Knob::SwapMax
            }]
        );
        let not_yet = BTreeMap::from([("".to_string(), seen(&[], &[])), ("ops".to_string(), ops)]);
        assert!(diff(&desired, &not_yet).blockers.is_empty());
    }

    #[test]
    fn unmanaged_children_are_reported_not_removed() {
        let mut app = seen(&[(Knob::Max, bytes(8 * G))], &[Controller::Memory]);
        app.unmanaged_children = vec![("app/legacy".into(), 2)];
        let observed = BTreeMap::from([
            ("".to_string(), seen(&[], &[Controller::Memory])),
            ("app".to_string(), app),
        ]);
        let plan = diff(&tree()[..2], &observed);
        assert_eq!(plan.unmanaged, vec![("app/legacy".to_string(), 2)]);
        assert!(plan.changes.is_empty());
    }
}
