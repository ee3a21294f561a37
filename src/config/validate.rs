//! Checks a read config as a whole: names the kernel accepts, paths that
//! fit its limits, limits that agree with each other and with the parent
//! slice, a protect policy with bounds. Pure: the node's RAM and page size
//! come in as values.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::raw::{At, RawConfig, RawProtect, RawSlice};
use super::size::{Limit, Size, human_bytes};
use super::{
    Config, Controller, DriverSetting, Layout, MemorySettings, NodeFacts, Problem, ProtectPolicy,
    Scope, ServicePlacement, Slice, UserSlice, parent_of,
};
use crate::layout::SESSIONS;

const SLICE_NAME_MAX: usize = 64;
const NAME_RULE: &str = "1 to 64 characters from a-z, A-Z, 0-9, '_' and '-', not starting with '-'";

/// Linux refuses a path of PATH_MAX bytes or more (the limit counts the
/// NUL; include/uapi/linux/limits.h).
const PATH_MAX: usize = 4096;
/// systemd refuses a unit name longer than this (UNIT_NAME_MAX, 256 with
/// its NUL). It also keeps every cgroup directory below the kernel's
/// NAME_MAX of 255, as slice names themselves are at most 64.
const UNIT_NAME_MAX: usize = 255;
/// Paths are checked for a cgroup root up to this long: the default
/// /sys/fs/cgroup and any delegated --cgroup-root of up to 256 bytes pass
/// the same check at load, with no need to know the root there.
pub const CGROUP_ROOT_MAX: usize = 256;
/// `--name` of a task (spawn::group_name): at most this many bytes.
pub const TASK_NAME_MAX: usize = 40;
/// A task's group is NAME-PID; a pid has at most 7 digits (the kernel's
/// PID_MAX_LIMIT is 4194304).
const TASK_GROUP_MAX: usize = TASK_NAME_MAX + 1 + 7;
/// Under the systemd driver a task runs in the scope memslice-GROUP.scope
/// (spawn::scope).
const TASK_SCOPE_MAX: usize = "memslice-".len() + TASK_GROUP_MAX + ".scope".len();
/// The longest file name memslice writes in a group.
const LONGEST_FILE: usize = "cgroup.subtree_control".len();

pub fn validate(
    raw: &RawConfig,
    host: NodeFacts,
    scope: Scope,
    problems: &mut Vec<Problem>,
) -> Config {
    let node_memory = raw.node_memory.as_ref().map_or(host.memory, |at| at.value);
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
        check_own_limits(raw_slice, &memory, host.page_size, problems);
        let path = raw_slice.path.join("/");
        // The protect slice holds one transient group per task, so it is
        // a parent like any slice with children.
        let holds_tasks = raw
            .protect
            .as_ref()
            .and_then(|p| p.slice.as_ref())
            .is_some_and(|at| at.value.trim_matches('/') == path);
        // A slice with users holds their sessions in a leaf group
        // (cgroupfs) or session scopes (systemd): a parent too.
        let has_users = raw_slice
            .users
            .as_ref()
            .is_some_and(|at| !at.value.is_empty());
        let has_children = holds_tasks || has_users || parents.contains(raw_slice.path.as_slice());
        let controllers = controllers(raw_slice, has_children, problems);
        slices.push(Slice {
            path,
            description: raw_slice.description.clone(),
            memory,
            controllers,
            services: services(raw_slice),
            users: users(raw_slice),
        });
    }
    let setting = raw
        .driver
        .as_ref()
        .map_or(DriverSetting::default(), |at| at.value);
    check_users(&raw.slices, setting, problems);
    check_path_lengths(&raw.slices, &slices, setting, problems);
    let layout = match setting {
        DriverSetting::Systemd => Layout::systemd(Vec::new()),
        DriverSetting::Auto | DriverSetting::Cgroupfs => Layout::cgroupfs(),
    };
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
    check_reservations(
        &raw.slices,
        &slices,
        &children,
        &index_of,
        node_memory,
        problems,
    );
    let protect = raw
        .protect
        .as_ref()
        .and_then(|protect| protect_policy(protect, &slices, node_memory, host, problems));
    // The healer's default target is the protect slice of a valid policy.
    let default_target = raw
        .protect
        .as_ref()
        .and_then(|p| p.slice.as_ref())
        .filter(|_| protect.is_some());
    let heal = raw
        .heal
        .as_ref()
        .map(|heal| super::heal::validate(heal, &slices, default_target, &layout, scope, problems));
    check_services_once(&raw.slices, &slices, problems);
    Config {
        slices,
        root_controllers,
        protect,
        heal,
        node_memory,
        setting,
        layout,
    }
}

fn users(raw: &RawSlice) -> Vec<String> {
    raw.users
        .iter()
        .flat_map(|at| &at.value)
        .map(|user| user.value.clone())
        .collect()
}

/// A user belongs to one slice. Where the systemd driver may be picked,
/// a slice with users is that user's own `user-UID.slice`, whose place
/// logind fixes: below user.slice (so only a top-level slice), one user
/// each, never root's. A slice's users' sessions go to its `sessions`
/// leaf under the cgroupfs driver, a name no child slice may take.
fn check_users(raw: &[RawSlice], setting: DriverSetting, problems: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, &[String]> = HashMap::new();
    for slice in raw {
        let Some(listed) = &slice.users else { continue };
        let key = format!("slice.{}.users", slice.path.join("."));
        let mut refuse = |span: &std::ops::Range<usize>, message: String| {
            problems.push(Problem {
                span: span.clone(),
                key: key.clone(),
                message,
            });
        };
        for user in &listed.value {
            if let Some(first) = seen.insert(user.value.as_str(), slice.path.as_slice()) {
                refuse(
                    &user.span,
                    format!(
                        "{:?} is already a user of slice {}; a user's processes belong to one slice",
                        user.value,
                        first.join("/")
                    ),
                );
            }
        }
        if !setting.may_be_systemd() || listed.value.is_empty() {
            continue;
        }
        let why = if setting == DriverSetting::Auto {
            "driver \"auto\" may pick systemd, where"
        } else {
            "under the systemd driver"
        };
        if slice.path.len() > 1 {
            refuse(
                &listed.span,
                format!(
                    "{why} a slice with users is that user's own user-UID.slice, which logind always puts below user.slice: only a top-level slice can have users; move the key to [slice.{}]",
                    slice.path[0]
                ),
            );
        } else if listed.value.len() > 1 {
            refuse(
                &listed.span,
                format!(
                    "{why} a slice with users is that user's own user-UID.slice, and logind gives each user their own: name one user here, and give each other user a slice of their own (use driver = \"cgroupfs\" for several users in one slice)"
                ),
            );
        } else if let Some(root) = listed.value.iter().find(|user| user.value == "root") {
            refuse(
                &root.span,
                format!(
                    "{why} a slice with users is that user's user-UID.slice; root's logins stay in user.slice/user-0.slice (outside the app cap, not covered by ops' protection), and root's services belong in ops through `services`"
                ),
            );
        }
    }
    for slice in raw {
        let is_sessions_below_users = slice.path.split_last().is_some_and(|(name, parent)| {
            name == SESSIONS
                && raw.iter().any(|other| {
                    other.path == parent
                        && other.users.as_ref().is_some_and(|at| !at.value.is_empty())
                })
        });
        if is_sessions_below_users {
            problems.push(Problem {
                span: slice.span.clone(),
                key: format!("slice.{}", slice.path.join(".")),
                message: format!(
                    "the parent slice has users, whose sessions the cgroupfs driver keeps in its leaf group {SESSIONS:?}: name this slice otherwise"
                ),
            });
        }
    }
}

fn services(raw: &RawSlice) -> ServicePlacement {
    ServicePlacement {
        units: raw
            .services
            .iter()
            .flat_map(|at| &at.value)
            .map(|unit| unit.value.clone())
            .collect(),
        oom_policy: raw
            .oom_policy
            .as_ref()
            .map_or_else(Default::default, |at| at.value),
        oom_score_adj: raw.oom_score_adj.as_ref().map(|at| at.value),
    }
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
        && name.len() <= SLICE_NAME_MAX
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

fn check_own_limits(
    raw: &RawSlice,
    memory: &MemorySettings,
    page_size: u64,
    problems: &mut Vec<Problem>,
) {
    let dotted = raw.path.join(".");
    for (name, value, at) in [
        ("memory_high", memory.high, &raw.memory_high),
        ("memory_max", memory.max, &raw.memory_max),
    ] {
        if let (Some(value), Some(at)) = (value, at)
            && let Some(zero) = zero_limit(name, at.value, value, page_size)
        {
            problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{dotted}.{name}"),
                message: zero,
            });
        }
    }
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
                key: format!("slice.{dotted}.{name}"),
                message: format!("{value} is above this slice's memory_max ({max}); it must be at most memory_max"),
            });
        }
    }
}

/// A ceiling of zero bytes stops every process at once: refused, saying
/// whether the value was zero or rounded down to it. (A floor of zero,
/// memory_min or memory_low, just means no protection.)
fn zero_limit(name: &str, written: Size, resolved: Limit, page_size: u64) -> Option<String> {
    if resolved != Limit::Bytes(0) {
        return None;
    }
    let what = match written {
        Size::Bytes(0) | Size::Percent(0) => "this is 0 bytes".to_string(),
        _ => {
            format!("this rounds down to 0 bytes (the kernel stores whole {page_size}-byte pages)")
        }
    };
    Some(format!(
        "{what}: a {name} of 0 kills or stalls every process at once; leave the key out for no limit, or give a size"
    ))
}

fn controllers(raw: &RawSlice, has_children: bool, problems: &mut Vec<Problem>) -> Vec<Controller> {
    let Some(listed) = &raw.controllers else {
        return if has_children {
            vec![Controller::Memory]
        } else {
            Vec::new()
        };
    };
    if has_children && !listed.value.contains(&Controller::Memory) {
        problems.push(Problem {
            span: listed.span.clone(),
            key: format!("slice.{}.controllers", raw.path.join(".")),
            message: "this slice has child slices or holds protected tasks, so it must enable \"memory\" for their memory settings".into(),
        });
    }
    listed.value.clone()
}

/// Every path memslice or systemd builds for a slice must stay within the
/// kernel's and systemd's limits, or apply would stop half-way with "File
/// name too long". systemd's own limits apply where its driver may be
/// picked (`systemd`, `auto`): its unit names repeat the whole path, which
/// would cap a cgroupfs tree far below the kernel's limits. Below a slice that is too long, its children
/// are not reported again.
fn check_path_lengths(
    raw: &[RawSlice],
    slices: &[Slice],
    setting: DriverSetting,
    problems: &mut Vec<Problem>,
) {
    let mut too_long: HashSet<&str> = HashSet::new();
    // The longest names a user slice can take: its uid is known on the host only.
    let systemd = Layout::systemd(
        slices
            .iter()
            .filter(|slice| !slice.users.is_empty() && parent_of(&slice.path).is_none())
            .map(|slice| UserSlice {
                slice: slice.path.clone(),
                uid: u32::MAX,
            })
            .collect(),
    );
    // ROOT/SLICE/TASK/FILE: three slashes besides the parts.
    let fixed = CGROUP_ROOT_MAX + 3 + LONGEST_FILE;
    for (raw_slice, slice) in raw.iter().zip(slices) {
        if parent_of(&slice.path).is_some_and(|parent| too_long.contains(parent)) {
            too_long.insert(&slice.path);
            continue;
        }
        let cgroupfs = fixed + slice.path.len() + TASK_GROUP_MAX;
        let unit_length = || systemd.slice_unit(&slice.path).len();
        let message = if cgroupfs >= PATH_MAX {
            format!(
                "the cgroup path is too long for the kernel: a task's group below this slice makes paths of up to {cgroupfs} bytes (with a cgroup root of up to {CGROUP_ROOT_MAX} bytes and the file cgroup.subtree_control), and PATH_MAX allows {}; shorten the slice names or nest fewer levels",
                PATH_MAX - 1
            )
        } else if !setting.may_be_systemd() {
            continue;
        } else if unit_length() > UNIT_NAME_MAX {
            format!(
                "under the systemd driver this slice is a unit named after its whole path, here {} characters, and systemd allows {UNIT_NAME_MAX} (a '-' in a name counts 4, escaped as \\x2d); shorten the slice names or nest fewer levels",
                unit_length()
            )
        } else {
            let longest = fixed + systemd.cgroup_of(&slice.path).len() + TASK_SCOPE_MAX;
            if longest < PATH_MAX {
                continue;
            }
            format!(
                "the cgroup path is too long for the kernel under the systemd driver, which repeats every parent's name (app.slice/app-web.slice/...): a task's scope below this slice makes paths of up to {longest} bytes, and PATH_MAX allows {}; shorten the slice names or nest fewer levels",
                PATH_MAX - 1
            )
        };
        problems.push(Problem {
            span: raw_slice.span.clone(),
            key: format!("slice.{}", raw_slice.path.join(".")),
            message,
        });
        too_long.insert(&slice.path);
    }
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
        let (Some(child), Some(at)) = (child, at) else {
            continue;
        };
        // "max" under a parent that protects something counts as the
        // whole parent's; the kernel caps it there.
        let exceeds = match (child, parent_value) {
            (Limit::Bytes(0), _) => false,
            (_, None) => true,
            (Limit::Bytes(child), Some(Limit::Bytes(parent))) => child > parent,
            (Limit::Max, Some(_)) | (Limit::Bytes(_), Some(Limit::Max)) => false,
        };
        if exceeds {
            problems.push(Problem {
                span: at.span.clone(),
                key: format!("slice.{dotted}.{name}"),
                message: format!(
                    "{child} exceeds the parent slice {parent_path}'s {name} ({}); the kernel caps a child's protection at its parent's, so raise the parent's first",
                    parent_value.map_or_else(|| "unset, so 0".to_string(), |limit| limit.to_string()),
                ),
            });
        }
    }
}

/// Children that together reserve more than their parent guarantees get a
/// silently scaled-down share from the kernel; say so instead. A
/// reservation of "max" counts as all its parent has (the node's RAM for a
/// top-level slice), and sums cannot overflow.
fn check_reservations(
    raw: &[RawSlice],
    slices: &[Slice],
    children_of: &HashMap<Option<&str>, Vec<usize>>,
    index_of: &HashMap<&str, usize>,
    node_memory: u64,
    problems: &mut Vec<Problem>,
) {
    type Pick = fn(&MemorySettings) -> Option<Limit>;
    let knobs: [(&str, Pick); 2] = [("memory_min", |m| m.min), ("memory_low", |m| m.low)];
    for (name, pick) in knobs {
        // What each slice really holds, top-down (slices come in preorder).
        let mut held: Vec<u64> = Vec::with_capacity(slices.len());
        for slice in slices {
            let parent_holds = parent_of(&slice.path)
                .and_then(|parent| index_of.get(parent))
                .map_or(node_memory, |index| held[*index]);
            held.push(match pick(&slice.memory) {
                None => 0,
                Some(Limit::Bytes(bytes)) => bytes,
                Some(Limit::Max) => parent_holds,
            });
        }
        let parents = std::iter::once(None).chain(slices.iter().map(Some));
        for parent in parents {
            let budget = match parent {
                None => node_memory,
                Some(parent) if pick(&parent.memory).is_none() => continue,
                Some(parent) => held[index_of[parent.path.as_str()]],
            };
            let reserving: Vec<usize> = children_of
                .get(&parent.map(|p| p.path.as_str()))
                .into_iter()
                .flatten()
                .copied()
                .filter(|index| pick(&slices[*index].memory).is_some())
                .collect();
            let total: u128 = reserving.iter().map(|index| u128::from(held[*index])).sum();
            let counts_max = reserving
                .iter()
                .any(|index| pick(&slices[*index].memory) == Some(Limit::Max));
            // A lone child over its parent is already reported by check_against_parent.
            if total > u128::from(budget)
                && (reserving.len() > 1 || parent.is_none())
                && let Some(index) = reserving.last()
            {
                let owner = parent.map_or_else(
                    || "the node's RAM".to_string(),
                    |p| format!("{}'s {name}", p.path),
                );
                problems.push(Problem {
                    span: raw[*index].span.clone(),
                    key: format!("slice.{}.{name}", raw[*index].path.join(".")),
                    message: format!(
                        "the slices beside it reserve {} in {name} together, more than {owner} ({}){}",
                        human_total(total),
                        human_bytes(budget),
                        if counts_max {
                            "; \"max\" reserves all the parent has"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
    }
}

/// A sum of reservations for a message; beyond u64 it is only "too much".
fn human_total(total: u128) -> String {
    u64::try_from(total).map_or_else(|_| "more than 16 EiB".to_string(), human_bytes)
}

fn protect_policy(
    raw: &RawProtect,
    slices: &[Slice],
    node_memory: u64,
    host: NodeFacts,
    problems: &mut Vec<Problem>,
) -> Option<ProtectPolicy> {
    // A key written with a refused value is reported already, not missing.
    let missing = |key: &'static str, what: &str| {
        (!raw.present.contains(&key)).then(|| Problem {
            span: raw.span.clone(),
            key: format!("protect.{key}"),
            message: format!(
                "required: a protected task is exempt from the OOM killer, so the policy must bound {what}"
            ),
        })
    };
    let mut complete = true;
    let slice = match &raw.slice {
        None => {
            problems.extend(missing(
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
                        super::slice_list(slices)
                    ),
                });
                complete = false;
            }
            path
        }
    };
    let memory_max = match &raw.memory_max {
        None => {
            problems.extend(missing("memory_max", "how much memory each task may take"));
            complete = false;
            Limit::Max
        }
        Some(at) => {
            let limit = at.value.resolve(node_memory, host.page_size);
            let refusal = if limit == Limit::Max {
                Some("must be a size, not \"max\": an unbounded task the OOM killer skips can take the whole node".to_string())
            } else if let Some(zero) = zero_limit("memory_max", at.value, limit, host.page_size) {
                Some(zero)
            } else {
                effective_max(slices, &slice)
                    .filter(|ceiling| limit > *ceiling)
                    .map(|ceiling| format!("{limit} is above the memory_max of slice {slice} and its parents ({ceiling})"))
            };
            if let Some(message) = refusal {
                problems.push(Problem {
                    span: at.span.clone(),
                    key: "protect.memory_max".into(),
                    message,
                });
                complete = false;
            }
            limit
        }
    };
    let max_tasks = match &raw.max_tasks {
        None => {
            problems.extend(missing(
                "max_tasks",
                "how many protected tasks may run at once",
            ));
            complete = false;
            0
        }
        Some(at) => at.value,
    };
    complete.then(|| ProtectPolicy {
        slice,
        memory_max,
        max_tasks,
        oom_score_adj: raw.oom_score_adj.as_ref().map_or(-1000, |at| at.value),
        oom_group: raw.oom_group.unwrap_or(true),
        users: raw.users.clone().unwrap_or_default(),
        groups: raw.groups.clone().unwrap_or_default(),
        stall_timeout: raw
            .stall_timeout
            .as_ref()
            .map_or(Some(DEFAULT_STALL_TIMEOUT), |at| at.value),
    })
}

/// How long a protected task may stall at its own cap before memslice
/// ends it, unless `[protect] stall_timeout` says otherwise.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The tightest memory_max on the path from the root to `path`.
pub fn effective_max(slices: &[Slice], path: &str) -> Option<Limit> {
    slices
        .iter()
        .filter(|slice| path == slice.path || path.starts_with(&format!("{}/", slice.path)))
        .filter_map(|slice| slice.memory.max)
        .min()
}
