//! From config to writes: what the tree should be (`desired`), what it is
//! (`observe`, reads only), the ordered difference (`diff`, pure), and the
//! writes that close it (`apply`).

mod apply;
mod diff;
mod observe;

use std::fmt;

use crate::config::{Config, Controller, Limit};

pub use apply::{ApplyError, Report, apply};
pub use diff::{Blocker, Change, Plan, diff};
pub use observe::{KnobState, ObservedGroup, observe};

/// A memory file memslice manages in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Knob {
    Min,
    Low,
    High,
    Max,
    SwapMax,
    OomGroup,
}

impl Knob {
    pub fn file(self) -> &'static str {
        match self {
            Knob::Min => "memory.min",
            Knob::Low => "memory.low",
            Knob::High => "memory.high",
            Knob::Max => "memory.max",
            Knob::SwapMax => "memory.swap.max",
            Knob::OomGroup => "memory.oom.group",
        }
    }

    /// Lowering a limit can reclaim or OOM-kill inside the group, so such
    /// writes are ordered after the children have theirs.
    fn is_ceiling(self) -> bool {
        matches!(self, Knob::High | Knob::Max | Knob::SwapMax)
    }

    fn parse(self, text: &str) -> Option<Value> {
        match self {
            Knob::OomGroup => match text.trim() {
                "0" => Some(Value::Flag(false)),
                "1" => Some(Value::Flag(true)),
                _ => None,
            },
            _ => Limit::parse_kernel(text).map(Value::Limit),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Limit(Limit),
    Flag(bool),
}

impl Value {
    pub fn kernel_text(self) -> String {
        match self {
            Value::Limit(limit) => limit.kernel_text(),
            Value::Flag(flag) => u8::from(flag).to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Limit(limit) => limit.fmt(f),
            Value::Flag(flag) => f.write_str(if *flag { "1" } else { "0" }),
        }
    }
}

/// One group as the config wants it. The root (`""`) carries only the
/// controllers it must enable for the top-level slices.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredGroup {
    pub path: String,
    pub knobs: Vec<(Knob, Value)>,
    pub subtree_control: Vec<Controller>,
}

/// The root, then every slice in preorder, each slice with users followed
/// by the leaf that holds their sessions (`SLICE/sessions`).
pub fn desired(config: &Config) -> Vec<DesiredGroup> {
    let root = DesiredGroup {
        path: String::new(),
        knobs: Vec::new(),
        subtree_control: config.root_controllers.clone(),
    };
    let slices = config.slices.iter().flat_map(|slice| {
        let memory = &slice.memory;
        let limits = [
            (Knob::Min, memory.min),
            (Knob::Low, memory.low),
            (Knob::High, memory.high),
            (Knob::Max, memory.max),
            (Knob::SwapMax, memory.swap_max),
        ];
        let mut knobs: Vec<(Knob, Value)> = limits
            .into_iter()
            .filter_map(|(knob, limit)| limit.map(|limit| (knob, Value::Limit(limit))))
            .collect();
        if let Some(flag) = memory.oom_group {
            knobs.push((Knob::OomGroup, Value::Flag(flag)));
        }
        let group = DesiredGroup {
            path: slice.path.clone(),
            knobs,
            subtree_control: slice.controllers.clone(),
        };
        let sessions = config.sessions_leaf(slice).map(|path| DesiredGroup {
            path,
            knobs: Vec::new(),
            subtree_control: Vec::new(),
        });
        std::iter::once(group).chain(sessions)
    });
    std::iter::once(root).chain(slices).collect()
}

/// How a group is named to people: the root has no name of its own.
pub fn display_group(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}
