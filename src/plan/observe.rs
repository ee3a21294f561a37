//! Reads the part of the live tree the config speaks about. Nothing here
//! writes; `plan` is this plus `diff`.
//!
//! It reads what the diff compares and no more, so a re-apply costs about
//! what reading the files back costs (benches/apply_tree.rs measures it
//! against a C floor): per group the listing of its children (which also
//! says whether it exists), the knobs the config sets, and
//! cgroup.subtree_control where the config enables controllers; the
//! processes of a group only where a controller is still to be enabled,
//! the one change they block.

use std::collections::{BTreeMap, HashSet};

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
    /// Read where the config enables controllers; empty elsewhere.
    pub subtree_control: Vec<Controller>,
    /// cgroup.controllers of the root: what the host offers. Empty for
    /// other groups, which are offered what their parent enables.
    pub offered: Vec<Controller>,
    /// Processes of the group's own, counted where a controller is still
    /// to be enabled; `None` where nothing is.
    pub procs: Option<usize>,
    /// Child directories the config does not name, with their process count.
    pub unmanaged_children: Vec<(String, usize)>,
}

/// Observes every desired group that exists; absent groups are absent keys.
pub fn observe(
    root: &Root,
    desired: &[DesiredGroup],
) -> Result<BTreeMap<String, ObservedGroup>, cgroupfs::Error> {
    let named: HashSet<&str> = desired.iter().map(|d| d.path.as_str()).collect();
    let mut observed = BTreeMap::new();
    for group in desired {
        let path = group.path.as_str();
        let mut seen = ObservedGroup::default();
        if path.is_empty() {
            let Some(offered) = root.read_optional("", "cgroup.controllers")? else {
                // Not a cgroup root at all (plan against an empty directory):
                // everything is to be created.
                continue;
            };
            seen.offered = cgroupfs::parse::controllers(&offered);
        } else {
            let children = match root.children(path) {
                Ok(children) => children,
                Err(err) if err.group_vanished() => continue,
                Err(err) => return Err(err),
            };
            for child in children {
                let full = cgroupfs::join(path, &child);
                if !named.contains(full.as_str()) {
                    let procs = root.procs(&full).map_or(0, |pids| pids.len());
                    seen.unmanaged_children.push((full, procs));
                }
            }
        }
        for (knob, _) in &group.knobs {
            seen.knobs.insert(*knob, observe_knob(root, path, *knob)?);
        }
        if !group.subtree_control.is_empty() {
            seen.subtree_control = root.subtree_control(path)?;
            let all_enabled = group
                .subtree_control
                .iter()
                .all(|c| seen.subtree_control.contains(c));
            if !all_enabled && !path.is_empty() {
                seen.procs = Some(root.procs(path)?.len());
            }
        }
        observed.insert(group.path.clone(), seen);
    }
    Ok(observed)
}

fn observe_knob(root: &Root, path: &str, knob: Knob) -> Result<KnobState, cgroupfs::Error> {
    let Some(text) = root.read_optional(path, knob.file())? else {
        return Ok(KnobState::Missing);
    };
    knob.parse(&text)
        .map(KnobState::Is)
        .ok_or_else(|| cgroupfs::Error::Parse {
            path: root.file(path, knob.file()),
            source: cgroupfs::ParseError {
                line: text.trim().to_string(),
                reason: "not a value this knob takes",
            },
        })
}
