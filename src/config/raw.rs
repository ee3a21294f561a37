//! Reads slices.toml into typed values that still carry their place in the
//! file, so every later complaint can name the line.
//!
//! The walk is done by hand over toml's spanned tables instead of through
//! `#[derive(Deserialize)]`: a slice table mixes settings with child slices,
//! which serde cannot combine with `deny_unknown_fields`, and a misspelt
//! `memory_mx = "1G"` must be reported as an unknown key, not as "invalid type".

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problem;
use super::size::Size;

pub const SLICE_KEYS: [&str; 11] = [
    "description",
    "memory_min",
    "memory_low",
    "memory_high",
    "memory_max",
    "memory_swap_max",
    "oom_group",
    "controllers",
    "services",
    "oom_policy",
    "oom_score_adj",
];
const TOP_KEYS: [&str; 4] = ["node", "slice", "protect", "heal"];
const NODE_KEYS: [&str; 2] = ["memory", "driver"];
const PROTECT_KEYS: [&str; 7] = [
    "slice",
    "memory_max",
    "max_tasks",
    "oom_score_adj",
    "users",
    "groups",
    "oom_group",
];

const HEAL_KEYS: [&str; 20] = [
    "state_file",
    "lock_file",
    "failures_before_down",
    "grace_day",
    "grace_night",
    "night",
    "timezone",
    "interval",
    "protected",
    "service",
    "max_actions",
    "actions_window",
    "stable_after",
    "storm_slice",
    "storm_kills",
    "storm_window",
    "notify",
    "notify_timeout",
    "pressure_slice",
    "pressure_trigger",
];
const SERVICE_KEYS: [&str; 9] = [
    "name",
    "http",
    "expect_status",
    "tcp",
    "command",
    "unit",
    "timeout",
    "restart_unit",
    "restart_command",
];

/// A value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

#[derive(Debug, Default)]
pub struct RawConfig {
    /// `None` means "read MemTotal"; `node.memory = "auto"` is the same.
    pub node_memory: Option<At<Size>>,
    /// `cgroupfs` (default) or `systemd`.
    pub driver: Option<At<String>>,
    /// Parents before children, in file order.
    pub slices: Vec<RawSlice>,
    pub protect: Option<RawProtect>,
    pub heal: Option<RawHeal>,
}

#[derive(Debug, Default)]
pub struct RawHeal {
    pub span: Range<usize>,
    pub state_file: Option<At<String>>,
    pub lock_file: Option<At<String>>,
    pub failures_before_down: Option<At<i64>>,
    pub grace_day: Option<At<String>>,
    pub grace_night: Option<At<String>>,
    pub night: Option<At<String>>,
    pub timezone: Option<At<String>>,
    pub interval: Option<At<String>>,
    pub protected: Option<At<Vec<At<String>>>>,
    pub services: Vec<RawService>,
    pub max_actions: Option<At<i64>>,
    pub actions_window: Option<At<String>>,
    pub stable_after: Option<At<String>>,
    pub storm_slice: Option<At<String>>,
    pub storm_kills: Option<At<i64>>,
    pub storm_window: Option<At<String>>,
    pub notify: Option<At<Vec<At<String>>>>,
    pub notify_timeout: Option<At<String>>,
    pub pressure_slice: Option<At<String>>,
    pub pressure_trigger: Option<At<String>>,
}

#[derive(Debug, Default)]
pub struct RawService {
    pub span: Range<usize>,
    pub name: Option<At<String>>,
    pub http: Option<At<String>>,
    pub expect_status: Option<At<i64>>,
    pub tcp: Option<At<String>>,
    pub command: Option<At<Vec<At<String>>>>,
    pub unit: Option<At<String>>,
    pub timeout: Option<At<String>>,
    pub restart_unit: Option<At<String>>,
    pub restart_command: Option<At<Vec<At<String>>>>,
}

#[derive(Debug, Default)]
pub struct RawSlice {
    pub path: Vec<String>,
    pub span: Range<usize>,
    pub description: Option<String>,
    pub memory_min: Option<At<Size>>,
    pub memory_low: Option<At<Size>>,
    pub memory_high: Option<At<Size>>,
    pub memory_max: Option<At<Size>>,
    pub memory_swap_max: Option<At<Size>>,
    pub oom_group: Option<bool>,
    pub controllers: Option<At<Vec<At<String>>>>,
    /// systemd services placed in this slice by the systemd driver.
    pub services: Option<At<Vec<At<String>>>>,
    pub oom_policy: Option<At<String>>,
    pub oom_score_adj: Option<At<i64>>,
}

#[derive(Debug, Default)]
pub struct RawProtect {
    pub span: Range<usize>,
    pub slice: Option<At<String>>,
    pub memory_max: Option<At<Size>>,
    pub max_tasks: Option<At<i64>>,
    pub oom_score_adj: Option<At<i64>>,
    pub users: Vec<At<String>>,
    pub groups: Vec<At<String>>,
    pub oom_group: Option<bool>,
}

/// Walks the document; every problem found is pushed, none stops the walk.
pub fn read(text: &str, problems: &mut Vec<Problem>) -> RawConfig {
    let mut raw = RawConfig::default();
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(err) => {
            problems.push(Problem {
                span: err.span().unwrap_or(0..0),
                key: String::new(),
                message: format!("not valid TOML: {}", err.message()),
            });
            return raw;
        }
    };
    for (key, value) in document.get_ref() {
        let name = key.get_ref().as_ref();
        match name {
            "node" => read_node(value, &mut raw, problems),
            "slice" => {
                if let Some(slices) = table(value, "slice", problems) {
                    for (child, body) in slices {
                        read_slice(
                            &mut vec![child.get_ref().to_string()],
                            child,
                            body,
                            &mut raw,
                            problems,
                        );
                    }
                }
            }
            "protect" => read_protect(value, &mut raw, problems),
            "heal" => read_heal(value, &mut raw, problems),
            _ => problems.push(unknown_key(key, name, &TOP_KEYS)),
        }
    }
    if raw.slices.is_empty() && problems.is_empty() {
        problems.push(Problem {
            span: 0..0,
            key: "slice".into(),
            message: "no slices are defined; add at least one table like [slice.ops]".into(),
        });
    }
    raw
}

fn read_node(value: &Spanned<DeValue<'_>>, raw: &mut RawConfig, problems: &mut Vec<Problem>) {
    let Some(node) = table(value, "node", problems) else {
        return;
    };
    for (key, value) in node {
        match key.get_ref().as_ref() {
            "memory" if value.get_ref().as_str() == Some("auto") => raw.node_memory = None,
            "memory" => raw.node_memory = size(value, "node.memory", problems),
            "driver" => raw.driver = string(value, "node.driver", problems),
            other => problems.push(unknown_key(key, &format!("node.{other}"), &NODE_KEYS)),
        }
    }
}

fn read_slice(
    path: &mut Vec<String>,
    name: &Spanned<toml::de::DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    raw: &mut RawConfig,
    problems: &mut Vec<Problem>,
) {
    let dotted = format!("slice.{}", path.join("."));
    let Some(body) = table(value, &dotted, problems) else {
        return;
    };
    let index = raw.slices.len();
    raw.slices.push(RawSlice {
        path: path.clone(),
        span: name.span(),
        ..RawSlice::default()
    });
    for (key, value) in body {
        let field = key.get_ref().as_ref();
        let full = format!("{dotted}.{field}");
        if let DeValue::Table(_) = value.get_ref() {
            if SLICE_KEYS.contains(&field) {
                problems.push(wrong_type(value, &full, "a value, not a table"));
                continue;
            }
            path.push(field.to_string());
            read_slice(path, key, value, raw, problems);
            path.pop();
            continue;
        }
        let slice = &mut raw.slices[index];
        match field {
            "description" => slice.description = string(value, &full, problems).map(|at| at.value),
            "memory_min" => slice.memory_min = size(value, &full, problems),
            "memory_low" => slice.memory_low = size(value, &full, problems),
            "memory_high" => slice.memory_high = size(value, &full, problems),
            "memory_max" => slice.memory_max = size(value, &full, problems),
            "memory_swap_max" => slice.memory_swap_max = size(value, &full, problems),
            "oom_group" => slice.oom_group = boolean(value, &full, problems),
            "controllers" => slice.controllers = strings(value, &full, problems),
            "services" => slice.services = strings(value, &full, problems),
            "oom_policy" => slice.oom_policy = string(value, &full, problems),
            "oom_score_adj" => slice.oom_score_adj = integer(value, &full, problems),
            _ => {
                let mut problem = unknown_key(key, &full, &SLICE_KEYS);
                problem.message.push_str(&format!(
                    "; a child slice is a table, written [{dotted}.{field}]"
                ));
                problems.push(problem);
            }
        }
    }
}

fn read_protect(value: &Spanned<DeValue<'_>>, raw: &mut RawConfig, problems: &mut Vec<Problem>) {
    let Some(body) = table(value, "protect", problems) else {
        return;
    };
    let mut protect = RawProtect {
        span: value.span(),
        ..RawProtect::default()
    };
    for (key, value) in body {
        let field = key.get_ref().as_ref();
        let full = format!("protect.{field}");
        match field {
            "slice" => protect.slice = string(value, &full, problems),
            "memory_max" => protect.memory_max = size(value, &full, problems),
            "max_tasks" => protect.max_tasks = integer(value, &full, problems),
            "oom_score_adj" => protect.oom_score_adj = integer(value, &full, problems),
            "users" => {
                protect.users = strings(value, &full, problems)
                    .map(|at| at.value)
                    .unwrap_or_default()
            }
            "groups" => {
                protect.groups = strings(value, &full, problems)
                    .map(|at| at.value)
                    .unwrap_or_default()
            }
            "oom_group" => protect.oom_group = boolean(value, &full, problems),
            _ => problems.push(unknown_key(key, &full, &PROTECT_KEYS)),
        }
    }
    raw.protect = Some(protect);
}

fn read_heal(value: &Spanned<DeValue<'_>>, raw: &mut RawConfig, problems: &mut Vec<Problem>) {
    let Some(body) = table(value, "heal", problems) else {
        return;
    };
    let mut heal = RawHeal {
        span: value.span(),
        ..RawHeal::default()
    };
    for (key, value) in body {
        let field = key.get_ref().as_ref();
        let full = format!("heal.{field}");
        match field {
            "state_file" => heal.state_file = string(value, &full, problems),
            "lock_file" => heal.lock_file = string(value, &full, problems),
            "failures_before_down" => heal.failures_before_down = integer(value, &full, problems),
            "grace_day" => heal.grace_day = string(value, &full, problems),
            "grace_night" => heal.grace_night = string(value, &full, problems),
            "night" => heal.night = string(value, &full, problems),
            "timezone" => heal.timezone = string(value, &full, problems),
            "interval" => heal.interval = string(value, &full, problems),
            "protected" => heal.protected = strings(value, &full, problems),
            "max_actions" => heal.max_actions = integer(value, &full, problems),
            "actions_window" => heal.actions_window = string(value, &full, problems),
            "stable_after" => heal.stable_after = string(value, &full, problems),
            "storm_slice" => heal.storm_slice = string(value, &full, problems),
            "storm_kills" => heal.storm_kills = integer(value, &full, problems),
            "storm_window" => heal.storm_window = string(value, &full, problems),
            "notify" => heal.notify = strings(value, &full, problems),
            "notify_timeout" => heal.notify_timeout = string(value, &full, problems),
            "pressure_slice" => heal.pressure_slice = string(value, &full, problems),
            "pressure_trigger" => heal.pressure_trigger = string(value, &full, problems),
            "service" => {
                let DeValue::Array(items) = value.get_ref() else {
                    problems.push(wrong_type(
                        value,
                        &full,
                        "a list of tables, written [[heal.service]]",
                    ));
                    continue;
                };
                for item in items.iter() {
                    if let Some(service) = read_service(item, problems) {
                        heal.services.push(service);
                    }
                }
            }
            _ => problems.push(unknown_key(key, &full, &HEAL_KEYS)),
        }
    }
    raw.heal = Some(heal);
}

fn read_service(value: &Spanned<DeValue<'_>>, problems: &mut Vec<Problem>) -> Option<RawService> {
    let body = table(value, "heal.service", problems)?;
    let mut service = RawService {
        span: value.span(),
        ..RawService::default()
    };
    for (key, value) in body {
        let field = key.get_ref().as_ref();
        let full = format!("heal.service.{field}");
        match field {
            "name" => service.name = string(value, &full, problems),
            "http" => service.http = string(value, &full, problems),
            "expect_status" => service.expect_status = integer(value, &full, problems),
            "tcp" => service.tcp = string(value, &full, problems),
            "command" => service.command = strings(value, &full, problems),
            "unit" => service.unit = string(value, &full, problems),
            "timeout" => service.timeout = string(value, &full, problems),
            "restart_unit" => service.restart_unit = string(value, &full, problems),
            "restart_command" => service.restart_command = strings(value, &full, problems),
            _ => problems.push(unknown_key(key, &full, &SERVICE_KEYS)),
        }
    }
    Some(service)
}

fn table<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a DeTable<'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        _ => {
            problems.push(wrong_type(value, key, "a table"));
            None
        }
    }
}

fn size(value: &Spanned<DeValue<'_>>, key: &str, problems: &mut Vec<Problem>) -> Option<At<Size>> {
    let parsed = match value.get_ref() {
        DeValue::String(text) => Size::parse(text).map_err(|err| err.to_string()),
        DeValue::Integer(number) => number
            .as_str()
            .parse::<u64>()
            .map(Size::Bytes)
            .map_err(|_| {
                format!(
                    "{} is not a byte count; expected {}",
                    number.as_str(),
                    super::size::SIZE_FORMS
                )
            }),
        _ => Err(format!("expected {}", super::size::SIZE_FORMS)),
    };
    match parsed {
        Ok(size) => Some(At {
            value: size,
            span: value.span(),
        }),
        Err(message) => {
            problems.push(Problem {
                span: value.span(),
                key: key.to_string(),
                message,
            });
            None
        }
    }
}

fn string(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<String>> {
    match value.get_ref().as_str() {
        Some(text) => Some(At {
            value: text.to_string(),
            span: value.span(),
        }),
        None => {
            problems.push(wrong_type(value, key, "a string"));
            None
        }
    }
}

fn boolean(value: &Spanned<DeValue<'_>>, key: &str, problems: &mut Vec<Problem>) -> Option<bool> {
    let found = value.get_ref().as_bool();
    if found.is_none() {
        problems.push(wrong_type(value, key, "true or false"));
    }
    found
}

fn integer(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<i64>> {
    let parsed = value
        .get_ref()
        .as_integer()
        .and_then(|number| number.as_str().replace('_', "").parse::<i64>().ok());
    match parsed {
        Some(number) => Some(At {
            value: number,
            span: value.span(),
        }),
        None => {
            problems.push(wrong_type(value, key, "a whole number"));
            None
        }
    }
}

fn strings(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<Vec<At<String>>>> {
    let DeValue::Array(items) = value.get_ref() else {
        problems.push(wrong_type(value, key, "a list of strings"));
        return None;
    };
    let mut found = Vec::with_capacity(items.len());
    for item in items.iter() {
        found.push(string(item, key, problems)?);
    }
    Some(At {
        value: found,
        span: value.span(),
    })
}

fn wrong_type(value: &Spanned<DeValue<'_>>, key: &str, expected: &str) -> Problem {
    Problem {
        span: value.span(),
        key: key.to_string(),
        message: format!("expected {expected}, found {}", value.get_ref().type_str()),
    }
}

fn unknown_key(key: &Spanned<toml::de::DeString<'_>>, full: &str, allowed: &[&str]) -> Problem {
    Problem {
        span: key.span(),
        key: full.to_string(),
        message: format!("unknown key; allowed here: {}", allowed.join(", ")),
    }
}
