//! Checks a read config as a whole: names the kernel accepts, limits that
//! agree with each other and with the parent slice, a protect policy with
//! bounds. Pure: the node's RAM and page size come in as values.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::raw::{At, RawConfig, RawProtect, RawSlice};
use super::size::{Limit, Size, human_bytes};
use super::{
    Config, Controller, Driver, MemorySettings, NodeFacts, Problem, ProtectPolicy,
    ServicePlacement, Slice, parent_of,
};

const NAME_MAX: usize = 64;
const NAME_RULE: &str = "1 to 64 characters from a-z, A-Z, 0-9, '_' and '-', not starting with '-'";

pub fn validate(raw: &RawConfig, host: NodeFacts, problems: &mut Vec<Problem>) -> Config {
    let node_memory = node_memory(raw, host, problems);
    let resolve = |size: &Option<At<Size>>| {
        size.as_ref()
            .map(|at| at.value.resolve(node_memory, host.page_size))
    };
    // Paths that have child slices, found once: the tree may be large.
    let parents: HashSet<&[String]> = raw
        .slices
        .iter()
        .filter_map(|s| s.path.split_last().map(|(_, parent)| parent))
        .collect();
    let mut slices: Vec<Slice> = Vec::with_capacity(raw.slices.len());
    for raw_slice in &raw.slices {
        check_names(raw_slice, problems);
        let memory = MemorySettings {
            min: resolve(&raw_slice.memory_min),
            low: resolve(&raw_slice.memory_low),
            high: resolve(&raw_slice.memory_high),
            max: resolve(&raw_slice.memory_max),
            swap_max: resolve(&raw_slice.memory_swap_max),
            oom_group: raw_slice.oom_group,
        };
        check_own_limits(raw_slice, &memory, problems);
        let path = raw_slice.path.join("/");
        // The protect slice holds one transient group per task, so it is
        // a parent like any slice with children.
        let holds_tasks = raw
            .protect
            .as_ref()
            .and_then(|p| p.slice.as_ref())
            .is_some_and(|at| at.value.trim_matches('/') == path);
        let has_children = holds_tasks || parents.contains(raw_slice.path.as_slice());
        let controllers = controllers(raw_slice, has_children, problems);
        let services = services(raw_slice, problems);
        slices.push(Slice {
            path,
            description: raw_slice.description.clone(),
            memory,
            controllers,
            services,
        });
    }
    let root_controllers = root_controllers(&slices);
    let mut children: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (index, slice) in slices.iter().enumerate() {
        children
            .entry(parent_of(&slice.path))
            .or_default()
            .push(index);
    }
    let index_of: HashMap<&str, usize> = slices
        .iter()
        .enumerate()
        .map(|(i, s)| (s.path.as_str(), i))
        .collect();
    for (raw_slice, slice) in raw.slices.iter().zip(&slices) {
        let parent = parent_of(&slice.path)
            .and_then(|p| index_of.get(p))
            .map(|i| &slices[*i]);
        check_against_parent(raw_slice, slice, parent, problems);
    }
    check_reservations(&raw.slices, &slices, &children, node_memory, problems);
    let protect = raw
        .protect
        .as_ref()
        .and_then(|protect| protect_policy(protect, &slices, node_memory, host, problems));
    let driver = match &raw.driver {
        None => Driver::Cgroupfs,
        Some(at) => Driver::parse(&at.value).unwrap_or_else(|| {
            problems.push(Problem {
                span: at.span.clone(),
                key: "node.driver".into(),
                message: format!(
                    "{:?} is not a driver; use \"cgroupfs\" or \"systemd\"",
                    at.value
                ),
            });
            Driver::Cgroupfs
        }),
    };
    let heal = raw
        .heal
        .as_ref()
        .map(|heal| super::heal::validate(heal, &slices, protect.as_ref(), driver, problems));
    check_services_once(&raw.slices, &slices, problems);
    Config {
        slices,
        root_controllers,
        protect,
        heal,
        node_memory,
        driver,
    }
}

fn node_memory(raw: &RawConfig, host: NodeFacts, problems: &mut Vec<Problem>) -> u64 {
    match &raw.node_memory {
        None => host.memory,
        Some(At {
            value: Size::Bytes(bytes),
            ..
        }) if *bytes > 0 => *bytes,
        Some(at) => {
            problems.push(Problem {
                span: at.span.clone(),
                key: "node.memory".into(),
                message: "must be \"auto\" (read MemTotal) or an absolute size like \"16G\"".into(),
            });
            host.memory
        }
    }
}

fn services(raw: &RawSlice, problems: &mut Vec<Problem>) -> ServicePlacement {
    let dotted = raw.path.join(".");
    let mut placement = ServicePlacement {
        units: Vec::new(),
        oom_policy: "continue".into(),
        oom_score_adj: None,
    };
    for unit in raw.services.iter().flat_map(|at| &at.value) {
        let valid = unit.value.ends_with(".service")
            && unit.value.len() > ".service".len()
            && !unit.value.contains('/');
        if valid {
            placement.units.push(unit.value.clone());
        } else {
            problems.push(Problem {
                span: unit.span.clone(),
                key: format!("slice.{dotted}.services"),
                message: format!(
                    "{:?} is not a service unit name like \"nginx.service\"",
                    unit.value
                ),
            });
        }
    }
    if let Some(at) = &raw.oom_policy {
        if ["continue", "stop", "kill"].contains(&at.value.as_str()) {
            placement.oom_policy = at.value.clone();
        } else {
            problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{dotted}.oom_policy"),
                message: format!(
                    "{:?} is not an OOMPolicy=; use continue, stop or kill (systemd.service(5))",
                    at.value
                ),
            });
        }
    }
    if let Some(at) = &raw.oom_score_adj {
        match i32::try_from(at.value) {
            Ok(adj) if (-1000..=1000).contains(&adj) => placement.oom_score_adj = Some(adj),
            _ => problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{dotted}.oom_score_adj"),
                message: format!("{} is outside the kernel's range -1000 to 1000", at.value),
            }),
        }
    }
    placement
}

/// A service in two slices would get two drop-ins fighting over Slice=.
fn check_services_once(raw: &[RawSlice], slices: &[Slice], problems: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (raw_slice, slice) in raw.iter().zip(slices) {
        for unit in &slice.services.units {
            if let Some(first) = seen.insert(unit.as_str(), slice.path.as_str()) {
                problems.push(Problem {
                    span: raw_slice
                        .services
                        .as_ref()
                        .map_or(raw_slice.span.clone(), |at| at.span.clone()),
                    key: format!("slice.{}.services", raw_slice.path.join(".")),
                    message: format!("{unit} is already placed in slice {first}"),
                });
            }
        }
    }
}

fn check_names(slice: &RawSlice, problems: &mut Vec<Problem>) {
    let Some(name) = slice.path.last() else {
        return;
    };
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        problems.push(Problem {
            span: slice.span.clone(),
            key: format!("slice.{}", slice.path.join(".")),
            message: format!(
                "{name:?} is not a usable cgroup directory name: use {NAME_RULE} (dots would clash with the kernel's interface files such as memory.max)"
            ),
        });
    }
}

fn check_own_limits(raw: &RawSlice, memory: &MemorySettings, problems: &mut Vec<Problem>) {
    let Some(max) = memory.max else { return };
    let below_max = [
        ("memory_min", memory.min, &raw.memory_min),
        ("memory_low", memory.low, &raw.memory_low),
        ("memory_high", memory.high, &raw.memory_high),
    ];
    for (name, value, at) in below_max {
        if let (Some(value), Some(at)) = (value, at)
            && value > max
        {
            problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{}.{name}", raw.path.join(".")),
                message: format!("{value} is above this slice's memory_max ({max}); it must be at most memory_max"),
            });
        }
    }
}

fn controllers(raw: &RawSlice, has_children: bool, problems: &mut Vec<Problem>) -> Vec<Controller> {
    let key = format!("slice.{}.controllers", raw.path.join("."));
    let Some(listed) = &raw.controllers else {
        return if has_children {
            vec![Controller::Memory]
        } else {
            Vec::new()
        };
    };
    let mut found = BTreeSet::new();
    for name in &listed.value {
        match Controller::from_name(&name.value) {
            Some(controller) if !found.insert(controller) => problems.push(Problem {
                span: name.span.clone(),
                key: key.clone(),
                message: format!("{:?} is listed twice", name.value),
            }),
            Some(_) => {}
            None => problems.push(Problem {
                span: name.span.clone(),
                key: key.clone(),
                message: format!(
                    "unknown controller {:?}; known: {}",
                    name.value,
                    Controller::ALL.map(Controller::name).join(", ")
                ),
            }),
        }
    }
    if has_children && !found.contains(&Controller::Memory) {
        problems.push(Problem {
            span: listed.span.clone(),
            key,
            message: "this slice has child slices or holds protected tasks, so it must enable \"memory\" for their memory settings".into(),
        });
    }
    found.into_iter().collect()
}

fn root_controllers(slices: &[Slice]) -> Vec<Controller> {
    let mut union: BTreeSet<Controller> = [Controller::Memory].into();
    union.extend(
        slices
            .iter()
            .filter(|slice| parent_of(&slice.path).is_none())
            .flat_map(|slice| slice.controllers.iter().copied()),
    );
    union.into_iter().collect()
}

fn check_against_parent(
    raw: &RawSlice,
    slice: &Slice,
    parent: Option<&Slice>,
    problems: &mut Vec<Problem>,
) {
    let Some(parent_path) = parent_of(&slice.path) else {
        return;
    };
    let Some(parent) = parent else {
        return;
    };
    let dotted = raw.path.join(".");
    for controller in &slice.controllers {
        if !parent.controllers.contains(controller) {
            problems.push(Problem {
                span: raw.controllers.as_ref().map_or(raw.span.clone(), |c| c.span.clone()),
                key: format!("slice.{dotted}.controllers"),
                message: format!(
                    "{controller} is not enabled by the parent slice {parent_path}; the kernel only lets a group enable what its parent enables"
                ),
            });
        }
    }
    let protections = [
        (
            "memory_min",
            slice.memory.min,
            parent.memory.min,
            &raw.memory_min,
        ),
        (
            "memory_low",
            slice.memory.low,
            parent.memory.low,
            &raw.memory_low,
        ),
    ];
    for (name, child, parent_value, at) in protections {
        let (Some(Limit::Bytes(child)), Some(at)) = (child, at) else {
            continue;
        };
        let parent_bytes = parent_value.map_or(0, |limit| limit.bytes().unwrap_or(u64::MAX));
        if child > parent_bytes {
            problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{dotted}.{name}"),
                message: format!(
                    "{} exceeds the parent slice {parent_path}'s {name} ({}); the kernel caps a child's protection at its parent's, so raise the parent's first",
                    human_bytes(child),
                    parent_value.map_or_else(|| "unset, so 0".to_string(), |limit| limit.to_string()),
                ),
            });
        }
    }
}

/// Children that together reserve more than their parent guarantees get a
/// silently scaled-down share from the kernel; say so instead.
fn check_reservations(
    raw: &[RawSlice],
    slices: &[Slice],
    children_of: &HashMap<Option<&str>, Vec<usize>>,
    node_memory: u64,
    problems: &mut Vec<Problem>,
) {
    type Pick = fn(&MemorySettings) -> Option<Limit>;
    let knobs: [(&str, Pick); 2] = [("memory_min", |m| m.min), ("memory_low", |m| m.low)];
    let parents = std::iter::once(None).chain(slices.iter().map(Some));
    for parent in parents {
        let children: Vec<(usize, &Slice)> = children_of
            .get(&parent.map(|p| p.path.as_str()))
            .map(|indexes| indexes.iter().map(|i| (*i, &slices[*i])).collect())
            .unwrap_or_default();
        for (name, pick) in knobs {
            let budget = match parent {
                None => node_memory,
                Some(parent) => match pick(&parent.memory) {
                    Some(Limit::Bytes(bytes)) => bytes,
                    _ => continue,
                },
            };
            let reserved: Vec<u64> = children
                .iter()
                .filter_map(|(_, child)| pick(&child.memory).and_then(Limit::bytes))
                .collect();
            let total: u64 = reserved.iter().sum();
            // A lone child over its parent is already reported by check_against_parent.
            if total > budget
                && (reserved.len() > 1 || parent.is_none())
                && let Some((index, _)) = children
                    .iter()
                    .rev()
                    .find(|(_, child)| pick(&child.memory).is_some())
            {
                let owner = parent.map_or_else(
                    || "the node's RAM".to_string(),
                    |p| format!("{}'s {name}", p.path),
                );
                problems.push(Problem {
                    span: raw[*index].span.clone(),
                    key: format!("slice.{}.{name}", raw[*index].path.join(".")),
                    message: format!(
                        "the slices beside it reserve {} in {name} together, more than {owner} ({})",
                        human_bytes(total),
                        human_bytes(budget)
                    ),
                });
            }
        }
    }
}

fn protect_policy(
    raw: &RawProtect,
    slices: &[Slice],
    node_memory: u64,
    host: NodeFacts,
    problems: &mut Vec<Problem>,
) -> Option<ProtectPolicy> {
    let missing = |key: &str, what: &str| Problem {
        span: raw.span.clone(),
        key: format!("protect.{key}"),
        message: format!(
            "required: a protected task is exempt from the OOM killer, so the policy must bound {what}"
        ),
    };
    let mut complete = true;
    let slice = match &raw.slice {
        None => {
            problems.push(missing(
                "slice",
                "where it runs (the slice that holds protected tasks)",
            ));
            complete = false;
            String::new()
        }
        Some(at) => {
            let path = at.value.trim_matches('/').to_string();
            if !slices.iter().any(|s| s.path == path) {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.slice".into(),
                    message: format!(
                        "{:?} is not a slice of this file; known: {}",
                        at.value,
                        slices
                            .iter()
                            .map(|s| s.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                complete = false;
            }
            path
        }
    };
    let memory_max = match &raw.memory_max {
        None => {
            problems.push(missing("memory_max", "how much memory each task may take"));
            complete = false;
            Limit::Max
        }
        Some(at) => {
            let limit = at.value.resolve(node_memory, host.page_size);
            if limit == Limit::Max {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.memory_max".into(),
                    message: "must be a size, not \"max\": an unbounded task the OOM killer skips can take the whole node".into(),
                });
                complete = false;
            } else if let Some(ceiling) = effective_max(slices, &slice)
                && limit > ceiling
            {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.memory_max".into(),
                    message: format!("{limit} is above the memory_max of slice {slice} and its parents ({ceiling})"),
                });
                complete = false;
            }
            limit
        }
    };
    let max_tasks = match &raw.max_tasks {
        None => {
            problems.push(missing(
                "max_tasks",
                "how many protected tasks may run at once",
            ));
            complete = false;
            0
        }
        Some(at) => match u32::try_from(at.value) {
            Ok(count) if count >= 1 => count,
            _ => {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.max_tasks".into(),
                    message: format!("{} is not allowed; use a whole number from 1 up", at.value),
                });
                complete = false;
                0
            }
        },
    };
    let oom_score_adj = match &raw.oom_score_adj {
        None => -1000,
        Some(at) => match i32::try_from(at.value) {
            Ok(adj) if (-1000..=1000).contains(&adj) => adj,
            _ => {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.oom_score_adj".into(),
                    message: format!("{} is outside the kernel's range -1000 to 1000", at.value),
                });
                complete = false;
                0
            }
        },
    };
    for (key, names) in [("users", &raw.users), ("groups", &raw.groups)] {
        for name in names.iter().filter(|name| name.value.trim().is_empty()) {
            problems.push(Problem {
                span: name.span.clone(),
                key: format!("protect.{key}"),
                message: "an empty name matches nobody; remove it".into(),
            });
            complete = false;
        }
    }
    complete.then(|| ProtectPolicy {
        slice,
        memory_max,
        max_tasks,
        oom_score_adj,
        oom_group: raw.oom_group.unwrap_or(true),
        users: raw.users.iter().map(|at| at.value.clone()).collect(),
        groups: raw.groups.iter().map(|at| at.value.clone()).collect(),
    })
}

/// The tightest memory_max on the path from the root to `path`.
pub fn effective_max(slices: &[Slice], path: &str) -> Option<Limit> {
    slices
        .iter()
        .filter(|slice| path == slice.path || path.starts_with(&format!("{}/", slice.path)))
        .filter_map(|slice| slice.memory.max)
        .min()
}
