//! Reads slices.toml into typed values that still carry their place in the
//! file, so every later complaint can name the line.
//!
//! Each section is one table of keys, each key with the reader that checks
//! its value: the "allowed here" list of an unknown key and the parsing come
//! from the same entries and cannot drift apart. Everything a single value
//! can be wrong about (its type, its form, its range) is caught here; rules
//! across keys and slices are `validate`'s.
//!
//! The walk is done by hand over toml's spanned tables instead of through
//! `#[derive(Deserialize)]`: a slice table mixes settings with child slices,
//! which serde cannot combine with `deny_unknown_fields`, and a misspelt
//! `memory_mx = "1G"` must be reported as an unknown key, not as "invalid type".

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::duration::{self, Bounds, NightWindow};
use super::heal::{self, NotifyEvent, PressureKind};
use super::size::{SIZE_FORMS, Size};
use super::{Controller, DriverSetting, OomPolicy, Problem};

// Ranges of the duration keys, as slices.toml documents them.
/// heal.grace_day, heal.grace_night: 0s acts on the first check that finds
/// the site down; a day is the longest outage a healer should sit out.
const GRACE: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(24 * 3600));
/// heal.interval: fast enough for tests and impatient sites, never so slow
/// that `heal watch` stops watching.
const INTERVAL: Bounds = Bounds::new(Duration::from_millis(100), Duration::from_secs(3600));
/// Probe and hook timeouts: zero fails every probe (the healer would act on
/// a healthy site); ten minutes is longer than any probe should hang.
const TIMEOUT: Bounds = Bounds::new(Duration::from_millis(1), Duration::from_secs(600));
/// actions_window, stable_after, storm_window.
const WINDOW: Bounds = Bounds::new(Duration::from_secs(1), Duration::from_secs(7 * 86_400));
/// protect.stall_timeout: shorter than 10 s would end tasks that recover
/// from a brief stall by reclaim; longer than a day keeps a stuck task.
const STALL: Bounds = Bounds::new(Duration::from_secs(10), Duration::from_secs(24 * 3600));

/// The smallest node.memory taken: below it no slice tree makes sense, and
/// a typo such as `memory = 1` would make every percentage zero.
const NODE_MEMORY_MIN: u64 = 64 << 20;

/// One key a section allows, and the reader that checks its value and
/// stores it; the reader gets the dotted key for its messages.
struct Key<S> {
    name: &'static str,
    read: fn(&mut S, &Spanned<DeValue<'_>>, &str, &mut Vec<Problem>),
}

const TOP: &[Key<RawConfig>] = &[
    Key {
        name: "node",
        read: |raw, value, key, problems| {
            section(value, key, NODE, raw, problems);
        },
    },
    Key {
        name: "slice",
        read: read_slices,
    },
    Key {
        name: "protect",
        read: |raw, value, key, problems| {
            let mut protect = RawProtect {
                span: value.span(),
                ..RawProtect::default()
            };
            if let Some(present) = section(value, key, PROTECT, &mut protect, problems) {
                raw.protect = Some(RawProtect { present, ..protect });
            }
        },
    },
    Key {
        name: "heal",
        read: |raw, value, key, problems| {
            let mut heal = RawHeal {
                span: value.span(),
                ..RawHeal::default()
            };
            if let Some(present) = section(value, key, HEAL, &mut heal, problems) {
                raw.heal = Some(RawHeal { present, ..heal });
            }
        },
    },
];

const NODE: &[Key<RawConfig>] = &[
    Key {
        name: "memory",
        read: |raw, value, key, problems| raw.node_memory = node_memory(value, key, problems),
    },
    Key {
        name: "driver",
        read: |raw, value, key, problems| {
            raw.driver = parsed(value, key, problems, |text| {
                DriverSetting::parse(text).ok_or_else(|| {
                    format!(
                        "{text:?} is not a driver; use \"auto\" (systemd where systemd owns the tree, cgroupfs elsewhere), \"cgroupfs\" or \"systemd\""
                    )
                })
            })
        },
    },
];

const SLICE: &[Key<RawSlice>] = &[
    Key {
        name: "description",
        read: |slice, value, key, problems| {
            slice.description = parsed(value, key, problems, description).map(|at| at.value)
        },
    },
    Key {
        name: "memory_min",
        read: |slice, value, key, problems| slice.memory_min = size(value, key, problems),
    },
    Key {
        name: "memory_low",
        read: |slice, value, key, problems| slice.memory_low = size(value, key, problems),
    },
    Key {
        name: "memory_high",
        read: |slice, value, key, problems| slice.memory_high = size(value, key, problems),
    },
    Key {
        name: "memory_max",
        read: |slice, value, key, problems| slice.memory_max = size(value, key, problems),
    },
    Key {
        name: "memory_swap_max",
        read: |slice, value, key, problems| slice.memory_swap_max = size(value, key, problems),
    },
    Key {
        name: "oom_group",
        read: |slice, value, key, problems| slice.oom_group = boolean(value, key, problems),
    },
    Key {
        name: "controllers",
        read: |slice, value, key, problems| slice.controllers = controllers(value, key, problems),
    },
    Key {
        name: "services",
        read: |slice, value, key, problems| {
            slice.services = list(value, key, problems, service_unit)
        },
    },
    Key {
        name: "oom_policy",
        read: |slice, value, key, problems| {
            slice.oom_policy = parsed(value, key, problems, OomPolicy::parse)
        },
    },
    Key {
        name: "oom_score_adj",
        read: |slice, value, key, problems| {
            slice.oom_score_adj = number(value, key, problems, oom_score_adj)
        },
    },
    Key {
        name: "users",
        read: |slice, value, key, problems| slice.users = list(value, key, problems, account_name),
    },
];

const PROTECT: &[Key<RawProtect>] = &[
    Key {
        name: "slice",
        read: |protect, value, key, problems| protect.slice = string(value, key, problems),
    },
    Key {
        name: "memory_max",
        read: |protect, value, key, problems| protect.memory_max = size(value, key, problems),
    },
    Key {
        name: "max_tasks",
        read: |protect, value, key, problems| protect.max_tasks = count(value, key, problems),
    },
    Key {
        name: "oom_score_adj",
        read: |protect, value, key, problems| {
            protect.oom_score_adj = number(value, key, problems, oom_score_adj)
        },
    },
    Key {
        name: "users",
        read: |protect, value, key, problems| {
            protect.users = list(value, key, problems, account_name).map(unwrap_list)
        },
    },
    Key {
        name: "groups",
        read: |protect, value, key, problems| {
            protect.groups = list(value, key, problems, account_name).map(unwrap_list)
        },
    },
    Key {
        name: "oom_group",
        read: |protect, value, key, problems| protect.oom_group = boolean(value, key, problems),
    },
    Key {
        name: "stall_timeout",
        read: |protect, value, key, problems| {
            protect.stall_timeout = parsed(value, key, problems, |text| match text {
                "off" => Ok(None),
                _ => duration::parse_duration(text, STALL)
                    .map(Some)
                    .map_err(|message| format!("{message}, or \"off\"")),
            })
        },
    },
];

const HEAL: &[Key<RawHeal>] = &[
    Key {
        name: "state_file",
        read: |heal, value, key, problems| {
            heal.state_file = parsed(value, key, problems, heal::file_path)
        },
    },
    Key {
        name: "lock_file",
        read: |heal, value, key, problems| {
            heal.lock_file = parsed(value, key, problems, heal::file_path)
        },
    },
    Key {
        name: "failures_before_down",
        read: |heal, value, key, problems| heal.failures_before_down = count(value, key, problems),
    },
    Key {
        name: "grace_day",
        read: |heal, value, key, problems| heal.grace_day = duration(value, key, GRACE, problems),
    },
    Key {
        name: "grace_night",
        read: |heal, value, key, problems| heal.grace_night = duration(value, key, GRACE, problems),
    },
    Key {
        name: "night",
        read: |heal, value, key, problems| {
            heal.night = parsed(value, key, problems, duration::parse_window)
        },
    },
    Key {
        name: "timezone",
        read: |heal, value, key, problems| {
            // A name here; looked up in the tz database by validation.
            heal.timezone = string(value, key, problems)
        },
    },
    Key {
        name: "interval",
        read: |heal, value, key, problems| heal.interval = duration(value, key, INTERVAL, problems),
    },
    Key {
        name: "protected",
        read: |heal, value, key, problems| heal.protected = list(value, key, problems, any_text),
    },
    Key {
        name: "service",
        read: read_services,
    },
    Key {
        name: "max_actions",
        read: |heal, value, key, problems| heal.max_actions = count(value, key, problems),
    },
    Key {
        name: "actions_window",
        read: |heal, value, key, problems| {
            heal.actions_window = duration(value, key, WINDOW, problems)
        },
    },
    Key {
        name: "stable_after",
        read: |heal, value, key, problems| {
            heal.stable_after = duration(value, key, WINDOW, problems)
        },
    },
    Key {
        name: "storm_slice",
        read: |heal, value, key, problems| heal.storm_slice = string(value, key, problems),
    },
    Key {
        name: "storm_kills",
        read: |heal, value, key, problems| heal.storm_kills = count(value, key, problems),
    },
    Key {
        name: "storm_window",
        read: |heal, value, key, problems| {
            heal.storm_window = duration(value, key, WINDOW, problems)
        },
    },
    Key {
        name: "notify",
        read: |heal, value, key, problems| heal.notify = command(value, key, problems),
    },
    Key {
        name: "notify_timeout",
        read: |heal, value, key, problems| {
            heal.notify_timeout = duration(value, key, TIMEOUT, problems)
        },
    },
    Key {
        name: "notify_events",
        read: |heal, value, key, problems| {
            heal.notify_events = list(value, key, problems, NotifyEvent::parse)
        },
    },
    Key {
        name: "notify_window",
        read: |heal, value, key, problems| {
            heal.notify_window = duration(value, key, WINDOW, problems)
        },
    },
    Key {
        name: "pressure_slice",
        read: |heal, value, key, problems| heal.pressure_slice = string(value, key, problems),
    },
    Key {
        name: "pressure_trigger",
        read: |heal, value, key, problems| {
            heal.pressure_trigger = parsed(value, key, problems, heal::parse_trigger)
        },
    },
];

const SERVICE: &[Key<RawService>] = &[
    Key {
        name: "name",
        read: |service, value, key, problems| service.name = parsed(value, key, problems, name),
    },
    Key {
        name: "http",
        read: |service, value, key, problems| {
            service.http = parsed(value, key, problems, heal::http_url)
        },
    },
    Key {
        name: "expect_status",
        read: |service, value, key, problems| {
            service.expect_status = number(value, key, problems, |status| {
                u16::try_from(status)
                    .ok()
                    .filter(|s| (100..600).contains(s))
                    .ok_or_else(|| format!("{status} is not an HTTP status (100 to 599)"))
            })
        },
    },
    Key {
        name: "tcp",
        read: |service, value, key, problems| {
            service.tcp = parsed(value, key, problems, heal::tcp_address)
        },
    },
    Key {
        name: "command",
        read: |service, value, key, problems| service.command = command(value, key, problems),
    },
    Key {
        name: "unit",
        read: |service, value, key, problems| service.unit = parsed(value, key, problems, name),
    },
    Key {
        name: "timeout",
        read: |service, value, key, problems| {
            service.timeout = duration(value, key, TIMEOUT, problems)
        },
    },
    Key {
        name: "restart_unit",
        read: |service, value, key, problems| {
            service.restart_unit = parsed(value, key, problems, name)
        },
    },
    Key {
        name: "restart_command",
        read: |service, value, key, problems| {
            service.restart_command = command(value, key, problems)
        },
    },
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
    pub node_memory: Option<At<u64>>,
    pub driver: Option<At<DriverSetting>>,
    /// Parents before children, in file order.
    pub slices: Vec<RawSlice>,
    pub protect: Option<RawProtect>,
    pub heal: Option<RawHeal>,
}

#[derive(Debug, Default)]
pub struct RawHeal {
    pub span: Range<usize>,
    /// The keys written, whether or not their values were taken.
    pub present: Vec<&'static str>,
    pub state_file: Option<At<PathBuf>>,
    pub lock_file: Option<At<PathBuf>>,
    pub failures_before_down: Option<At<u32>>,
    pub grace_day: Option<At<Duration>>,
    pub grace_night: Option<At<Duration>>,
    pub night: Option<At<NightWindow>>,
    pub timezone: Option<At<String>>,
    pub interval: Option<At<Duration>>,
    pub protected: Option<At<Vec<At<String>>>>,
    pub services: Vec<RawService>,
    pub max_actions: Option<At<u32>>,
    pub actions_window: Option<At<Duration>>,
    pub stable_after: Option<At<Duration>>,
    pub storm_slice: Option<At<String>>,
    pub storm_kills: Option<At<u32>>,
    pub storm_window: Option<At<Duration>>,
    pub notify: Option<At<Vec<String>>>,
    pub notify_timeout: Option<At<Duration>>,
    pub notify_events: Option<At<Vec<At<NotifyEvent>>>>,
    pub notify_window: Option<At<Duration>>,
    pub pressure_slice: Option<At<String>>,
    pub pressure_trigger: Option<At<(PressureKind, Duration, Duration)>>,
}

#[derive(Debug, Default)]
pub struct RawService {
    pub span: Range<usize>,
    /// The keys written, whether or not their values were taken.
    pub present: Vec<&'static str>,
    pub name: Option<At<String>>,
    pub http: Option<At<String>>,
    pub expect_status: Option<At<u16>>,
    pub tcp: Option<At<String>>,
    pub command: Option<At<Vec<String>>>,
    pub unit: Option<At<String>>,
    pub timeout: Option<At<Duration>>,
    pub restart_unit: Option<At<String>>,
    pub restart_command: Option<At<Vec<String>>>,
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
    pub controllers: Option<At<Vec<Controller>>>,
    /// systemd services placed in this slice by the systemd driver.
    pub services: Option<At<Vec<At<String>>>>,
    pub oom_policy: Option<At<OomPolicy>>,
    pub oom_score_adj: Option<At<i32>>,
    /// Users whose every process belongs to this slice.
    pub users: Option<At<Vec<At<String>>>>,
}

#[derive(Debug, Default)]
pub struct RawProtect {
    pub span: Range<usize>,
    /// The keys written, whether or not their values were taken.
    pub present: Vec<&'static str>,
    pub slice: Option<At<String>>,
    pub memory_max: Option<At<Size>>,
    pub max_tasks: Option<At<u32>>,
    pub oom_score_adj: Option<At<i32>>,
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub oom_group: Option<bool>,
    /// `None` inside: "off".
    pub stall_timeout: Option<At<Option<Duration>>>,
}

/// Walks the (merged) document; every problem found is pushed, none stops
/// the walk.
pub fn read(document: &DeTable<'_>, problems: &mut Vec<Problem>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (key, value) in document {
        read_key(key, value, "", TOP, &mut raw, problems);
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

/// Reads a table with `keys` into `into`. Returns the keys it had (a
/// refused value is still a key that was written), `None` when `value` is
/// no table.
fn section<S>(
    value: &Spanned<DeValue<'_>>,
    dotted: &str,
    keys: &[Key<S>],
    into: &mut S,
    problems: &mut Vec<Problem>,
) -> Option<Vec<&'static str>> {
    let body = table(value, dotted, problems)?;
    Some(
        body.iter()
            .filter_map(|(key, value)| read_key(key, value, dotted, keys, into, problems))
            .collect(),
    )
}

fn read_key<S>(
    key: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    dotted: &str,
    keys: &[Key<S>],
    into: &mut S,
    problems: &mut Vec<Problem>,
) -> Option<&'static str> {
    let name = key.get_ref().as_ref();
    let full = join_key(dotted, name);
    match keys.iter().find(|known| known.name == name) {
        Some(known) => {
            (known.read)(into, value, &full, problems);
            Some(known.name)
        }
        None => {
            problems.push(unknown_key(key, &full, keys));
            None
        }
    }
}

fn join_key(dotted: &str, name: &str) -> String {
    if dotted.is_empty() {
        name.to_string()
    } else {
        [dotted, ".", name].concat()
    }
}

fn read_slices(
    raw: &mut RawConfig,
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(slices) = table(value, key, problems) {
        for (child, body) in slices {
            read_slice(
                &mut vec![child.get_ref().to_string()],
                child,
                body,
                raw,
                problems,
            );
        }
    }
}

/// A slice's settings, and its child slices: any table that is not a key.
fn read_slice(
    path: &mut Vec<String>,
    name: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    raw: &mut RawConfig,
    problems: &mut Vec<Problem>,
) {
    let dotted = ["slice.", &path.join(".")].concat();
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
        let known = SLICE.iter().find(|known| known.name == field);
        let full = join_key(&dotted, field);
        match (known, value.get_ref()) {
            (None, DeValue::Table(_)) => {
                path.push(field.to_string());
                read_slice(path, key, value, raw, problems);
                path.pop();
            }
            (Some(_), DeValue::Table(_)) => {
                problems.push(wrong_type(value, &full, "a value, not a table"));
            }
            (Some(known), _) => (known.read)(&mut raw.slices[index], value, &full, problems),
            (None, _) => {
                let mut problem = unknown_key(key, &full, SLICE);
                problem.message.push_str(&format!(
                    "; a child slice is a table, written [{dotted}.{field}]"
                ));
                problems.push(problem);
            }
        }
    }
}

fn read_services(
    heal: &mut RawHeal,
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) {
    let DeValue::Array(items) = value.get_ref() else {
        problems.push(wrong_type(
            value,
            key,
            "a list of tables, written [[heal.service]]",
        ));
        return;
    };
    for item in items.iter() {
        let mut service = RawService {
            span: item.span(),
            ..RawService::default()
        };
        if let Some(present) = section(item, key, SERVICE, &mut service, problems) {
            heal.services.push(RawService { present, ..service });
        }
    }
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

/// A string checked by `parse`; its message becomes the problem's.
fn parsed<T>(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<At<T>> {
    let Some(text) = value.get_ref().as_str() else {
        problems.push(wrong_type(value, key, "a string"));
        return None;
    };
    checked(value, key, problems, parse(text))
}

fn checked<T>(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
    outcome: Result<T, String>,
) -> Option<At<T>> {
    match outcome {
        Ok(parsed) => Some(At {
            value: parsed,
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
    parsed(value, key, problems, any_text)
}

fn any_text(text: &str) -> Result<String, String> {
    Ok(text.to_string())
}

/// Descriptions and names end up in unit files, logs and metrics labels,
/// where a line break would start a new line of its own.
fn one_line(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{text:?} contains a control character (a line break or NUL); keep it on one line"
        ));
    }
    Ok(text.to_string())
}

/// A slice's description, which the systemd driver writes into its unit,
/// where a line ending in a backslash goes on onto the next one.
fn description(text: &str) -> Result<String, String> {
    if text.ends_with('\\') {
        return Err(format!(
            "{text:?} ends with a backslash, which systemd reads as the line going on onto the next; remove it"
        ));
    }
    one_line(text)
}

fn name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("is empty; give a name".into());
    }
    one_line(text)
}

fn account_name(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        Err("an empty name matches nobody; remove it".into())
    } else {
        Ok(name.to_string())
    }
}

fn service_unit(unit: &str) -> Result<String, String> {
    let valid = unit.len() > ".service".len()
        && unit.ends_with(".service")
        && !unit.contains('/')
        && !unit.chars().any(|c| c.is_control() || c.is_whitespace());
    if valid {
        Ok(unit.to_string())
    } else {
        Err(format!(
            "{unit:?} is not a service unit name like \"nginx.service\""
        ))
    }
}

fn duration(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    bounds: Bounds,
    problems: &mut Vec<Problem>,
) -> Option<At<Duration>> {
    parsed(value, key, problems, |text| {
        duration::parse_duration(text, bounds)
    })
}

fn size(value: &Spanned<DeValue<'_>>, key: &str, problems: &mut Vec<Problem>) -> Option<At<Size>> {
    let outcome = match value.get_ref() {
        DeValue::String(text) => Size::parse(text).map_err(|err| err.to_string()),
        DeValue::Integer(number) => u64::from_str_radix(number.as_str(), number.radix())
            .map(Size::Bytes)
            .map_err(|_| format!("{number} is not a byte count; expected {SIZE_FORMS}")),
        _ => Err(format!("expected {SIZE_FORMS}")),
    };
    checked(value, key, problems, outcome)
}

/// `"auto"`, or an absolute size of at least 64M.
fn node_memory(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<u64>> {
    if value.get_ref().as_str() == Some("auto") {
        return None;
    }
    let At { value: size, span } = size(value, key, problems)?;
    let outcome = match size {
        Size::Bytes(bytes) if bytes >= NODE_MEMORY_MIN => Ok(bytes),
        Size::Bytes(_) => Err(format!(
            "must be at least {}: no slice tree fits in less; use \"auto\" to read MemTotal",
            super::size::human_bytes(NODE_MEMORY_MIN)
        )),
        Size::Percent(_) | Size::Max => {
            Err("must be \"auto\" (read MemTotal) or an absolute size like \"16G\"".into())
        }
    };
    match outcome {
        Ok(bytes) => Some(At { value: bytes, span }),
        Err(message) => {
            problems.push(Problem {
                span,
                key: key.to_string(),
                message,
            });
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

/// A whole number checked by `check`.
fn number<T>(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
    check: impl FnOnce(i64) -> Result<T, String>,
) -> Option<At<T>> {
    let Some(integer) = value.get_ref().as_integer() else {
        problems.push(wrong_type(value, key, "a whole number"));
        return None;
    };
    let outcome = match i64::from_str_radix(integer.as_str(), integer.radix()) {
        Ok(number) => check(number),
        Err(_) => Err(format!("{integer} is far too large")),
    };
    checked(value, key, problems, outcome)
}

fn count(value: &Spanned<DeValue<'_>>, key: &str, problems: &mut Vec<Problem>) -> Option<At<u32>> {
    number(value, key, problems, |count| {
        u32::try_from(count)
            .ok()
            .filter(|count| *count >= 1)
            .ok_or_else(|| format!("{count} is not allowed; use a whole number from 1 up"))
    })
}

fn oom_score_adj(adj: i64) -> Result<i32, String> {
    i32::try_from(adj)
        .ok()
        .filter(|adj| (-1000..=1000).contains(adj))
        .ok_or_else(|| format!("{adj} is outside the kernel's range -1000 to 1000"))
}

/// A list of strings, each checked by `parse`; `None` if any item fails.
fn list<T>(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<At<Vec<At<T>>>> {
    let DeValue::Array(items) = value.get_ref() else {
        problems.push(wrong_type(value, key, "a list of strings"));
        return None;
    };
    let before = problems.len();
    let found: Vec<At<T>> = items
        .iter()
        .filter_map(|item| parsed(item, key, problems, parse))
        .collect();
    (problems.len() == before).then(|| At {
        value: found,
        span: value.span(),
    })
}

fn unwrap_list<T>(list: At<Vec<At<T>>>) -> Vec<T> {
    list.value.into_iter().map(|at| at.value).collect()
}

/// A program and its arguments, run without a shell.
fn command(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<Vec<String>>> {
    let argv = list(value, key, problems, |arg| {
        if arg.contains('\0') {
            Err(format!(
                "{arg:?} contains a NUL byte, which no program argument can hold"
            ))
        } else {
            Ok(arg.to_string())
        }
    })?;
    let outcome = match argv.value.first() {
        None => Err("an empty command runs nothing; give the program and its arguments, like [\"systemctl\", \"restart\", \"nginx\"]".to_string()),
        Some(program) if program.value.trim().is_empty() => {
            Err("no program: the first item, the program to run, is empty".to_string())
        }
        Some(program) if program.value.contains('/') && !program.value.starts_with('/') => {
            Err(format!(
                "the program {:?} is a relative path, which would be found from whatever directory memslice runs in; give an absolute path, or a bare name looked up in PATH",
                program.value
            ))
        }
        Some(_) => Ok(unwrap_list(argv)),
    };
    checked(value, key, problems, outcome)
}

fn controllers(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<At<Vec<Controller>>> {
    let listed = list(value, key, problems, |name| {
        Controller::from_name(name).ok_or_else(|| {
            format!(
                "unknown controller {name:?}; known: {}",
                Controller::ALL.map(Controller::name).join(", ")
            )
        })
    })?;
    let mut found: Vec<Controller> = Vec::with_capacity(listed.value.len());
    for item in &listed.value {
        if found.contains(&item.value) {
            problems.push(Problem {
                span: item.span.clone(),
                key: key.to_string(),
                message: format!("{:?} is listed twice", item.value.name()),
            });
        } else {
            found.push(item.value);
        }
    }
    found.sort();
    Some(At {
        value: found,
        span: listed.span,
    })
}

fn wrong_type(value: &Spanned<DeValue<'_>>, key: &str, expected: &str) -> Problem {
    Problem {
        span: value.span(),
        key: key.to_string(),
        message: format!("expected {expected}, found {}", value.get_ref().type_str()),
    }
}

fn unknown_key<S>(key: &Spanned<DeString<'_>>, full: &str, allowed: &[Key<S>]) -> Problem {
    let names: Vec<&str> = allowed.iter().map(|known| known.name).collect();
    Problem {
        span: key.span(),
        key: full.to_string(),
        message: format!("unknown key; allowed here: {}", names.join(", ")),
    }
}
