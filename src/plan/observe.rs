//! Reads the part of the live tree the config speaks about. Nothing here
//! writes; `plan` is this plus `diff`.

use std::collections::BTreeMap;

use super::{DesiredGroup, Knob, Value};
use crate::cgroupfs::{self, Root};
use crate::config::Controller;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobState {
    Is(Value),
    /// The file is absent: the controller is not enabled by the parent, or
    /// the kernel lacks the feature (memory.swap.max without swap accounting).
    Missing,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedGroup {
    pub knobs: BTreeMap<Knob, KnobState>,
    pub subtree_control: Vec<Controller>,
    /// cgroup.controllers: what the parent offers this group.
    pub offered: Vec<Controller>,
    pub procs: usize,
    /// Child directories the config does not name, with their process count.
    pub unmanaged_children: Vec<(String, usize)>,
}

/// Observes every desired group that exists; absent groups are absent keys.
pub fn observe(
    root: &Root,
    desired: &[DesiredGroup],
) -> Result<BTreeMap<String, ObservedGroup>, cgroupfs::Error> {
    let mut observed = BTreeMap::new();
    for group in desired {
        let path = group.path.as_str();
        let is_root = path.is_empty();
        if !is_root && !root.exists(path) {
            continue;
        }
        if is_root && root.read_optional("", "cgroup.controllers")?.is_none() {
            // Not a cgroup root at all (plan against an empty directory):
            // everything is to be created.
            continue;
        }
        let mut knobs = BTreeMap::new();
        for (knob, _) in &group.knobs {
            let state = match root.read_optional(path, knob.file())? {
                None => KnobState::Missing,
                Some(text) => {
                    KnobState::Is(knob.parse(&text).ok_or_else(|| cgroupfs::Error::Parse {
                        path: root.file(path, knob.file()),
                        source: cgroupfs::ParseError {
                            line: text.trim().to_string(),
                            reason: "not a value this knob takes",
                        },
                    })?)
                }
            };
            knobs.insert(*knob, state);
        }
        let unmanaged_children = if is_root {
            Vec::new()
        } else {
            root.children(path)?
                .into_iter()
                .map(|child| cgroupfs::join(path, &child))
                .filter(|full| !desired.iter().any(|d| &d.path == full))
                .map(|full| {
                    let procs = root.procs(&full).map_or(0, |pids| pids.len());
                    (full, procs)
                })
                .collect()
        };
        observed.insert(
            group.path.clone(),
            ObservedGroup {
                knobs,
                subtree_control: root.subtree_control(path)?,
                offered: root.controllers(path)?,
                procs: if is_root { 0 } else { root.procs(path)?.len() },
                unmanaged_children,
            },
        );
    }
    Ok(observed)
}
