//! `[heal]`: which services to probe, how long the site may be down before
//! the healer steps in (longer at night, when heavy crons are normal), what
//! it kills and how it restarts. Owns the parsers of heal's own values
//! (probe addresses, state paths, time zone, PSI trigger) and the rules
//! across heal's keys.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;

use super::duration::{Bounds, NightWindow, parse_duration};
use super::raw::{At, RawHeal, RawService};
use super::{Layout, Problem, Scope, Slice};

#[derive(Debug, Clone, PartialEq)]
pub struct HealConfig {
    pub state_file: PathBuf,
    pub lock_file: PathBuf,
    /// Consecutive failed checks before a service counts as down.
    pub failures_before_down: u32,
    pub grace_day: Duration,
    pub grace_night: Duration,
    pub night: Option<NightWindow>,
    /// Resolved at load: `heal.timezone`, or the system's zone; UTC, never
    /// used, when loaded for a task (see `Scope::Task`).
    pub timezone: TimeZone,
    /// Probe interval of `heal watch`.
    pub interval: Duration,
    /// Slices whose processes (protected tasks) the healer kills.
    pub protected: Vec<String>,
    pub services: Vec<Service>,
    /// Flap limiter: at most `max_actions` heal actions per `actions_window`.
    pub max_actions: u32,
    pub actions_window: Duration,
    /// Up this long after an action, the action history is forgotten.
    pub stable_after: Duration,
    pub storm: Option<StormConfig>,
    /// Command told about each action, with JSON on its standard input.
    pub notify: Option<Vec<String>>,
    pub notify_timeout: Duration,
    /// What the hook hears (all kinds unless `notify_events` says less).
    pub notify_events: Vec<NotifyEvent>,
    /// Per kind and slice, at most one message per window: an OOM storm
    /// is one message with its count, not hundreds.
    pub notify_window: Duration,
    /// Every managed slice, whose OOM kills the hook hears about.
    pub slices: Vec<String>,
    /// PSI trigger on a slice: `heal watch` checks at once when memory
    /// pressure crosses it, instead of at the next tick.
    pub pressure: Option<PressureTrigger>,
    /// How slice paths map to cgroups (the systemd driver nests `.slice`s);
    /// set with the config's own by `Config::place`.
    pub layout: Layout,
}

/// What the notify hook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    /// A heal action past the grace.
    Heal,
    /// An action before the grace, for an OOM storm.
    Storm,
    /// The flap limiter held an action back (once per trip).
    Flapping,
    /// The state file could not take the action, so it was held back.
    Unrecorded,
    /// The kernel OOM-killed in a slice (per slice, once per window).
    OomKill,
    /// The stall bound ended a protected task.
    Stall,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::Heal,
        NotifyEvent::Storm,
        NotifyEvent::Flapping,
        NotifyEvent::Unrecorded,
        NotifyEvent::OomKill,
        NotifyEvent::Stall,
    ];

    /// As the JSON's `event` and `notify_events` name it.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Heal => "heal",
            NotifyEvent::Storm => "storm",
            NotifyEvent::Flapping => "flapping",
            NotifyEvent::Unrecorded => "unrecorded",
            NotifyEvent::OomKill => "oom_kill",
            NotifyEvent::Stall => "stall",
        }
    }

    pub fn parse(text: &str) -> Result<NotifyEvent, String> {
        NotifyEvent::ALL
            .into_iter()
            .find(|event| event.name() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not an event; use {}",
                    NotifyEvent::ALL.map(NotifyEvent::name).join(", ")
                )
            })
    }
}

impl HealConfig {
    /// The hook and its timeout, when it wants to hear about `event`.
    pub fn hook_for(&self, event: NotifyEvent) -> Option<(&[String], Duration)> {
        let hook = self.notify.as_deref()?;
        self.notify_events
            .contains(&event)
            .then_some((hook, self.notify_timeout))
    }
}

/// Which stall a PSI trigger counts (the kernel's psi.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureKind {
    /// Some task stalled on memory.
    Some,
    /// Every task stalled at once.
    Full,
}

impl PressureKind {
    pub fn name(self) -> &'static str {
        match self {
            PressureKind::Some => "some",
            PressureKind::Full => "full",
        }
    }
}

impl std::fmt::Display for PressureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressureTrigger {
    pub slice: String,
    pub kind: PressureKind,
    pub stall: Duration,
    pub window: Duration,
}

impl PressureTrigger {
    /// What to write into memory.pressure (microseconds), per the kernel's
    /// PSI documentation.
    pub fn kernel_text(&self) -> String {
        format!(
            "{} {} {}",
            self.kind,
            self.stall.as_micros(),
            self.window.as_micros()
        )
    }
}

/// The kernel takes PSI windows from 500 ms to 10 s.
const PSI_WINDOW: Bounds = Bounds::new(Duration::from_millis(500), Duration::from_secs(10));
const PSI_STALL: Bounds = Bounds::new(Duration::from_millis(1), Duration::from_secs(10));

/// `"some 150ms 1s"`: stalled for 150 ms within any 1 s window.
pub fn parse_trigger(text: &str) -> Result<(PressureKind, Duration, Duration), String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [kind, stall, window] = fields.as_slice() else {
        return Err(format!(
            "{text:?} is not a trigger; expected \"some 150ms 1s\" (some or full, stall, window)"
        ));
    };
    let kind = match *kind {
        "some" => PressureKind::Some,
        "full" => PressureKind::Full,
        other => return Err(format!("{other:?} is neither \"some\" nor \"full\"")),
    };
    let window = parse_duration(window, PSI_WINDOW).map_err(|err| format!("window {err}"))?;
    let stall = parse_duration(stall, PSI_STALL).map_err(|err| format!("stall {err}"))?;
    if stall > window {
        return Err(format!(
            "stall must be above zero and at most the window in {text:?}"
        ));
    }
    Ok((kind, stall, window))
}

/// OOM storm: `kills` OOM kills per `window` in `slice` (memory.events
/// oom_kill) is an emergency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormConfig {
    pub slice: String,
    pub kills: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub probe: Probe,
    pub timeout: Duration,
    pub restart: Option<Restart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// GET; passes on the expected status.
    Http { url: String, expect_status: u16 },
    /// A TCP connect to host:port.
    Tcp { address: String },
    /// Exit code 0 passes.
    Command(Vec<String>),
    /// `systemctl is-active` passes.
    Unit(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    Unit(String),
    Command(Vec<String>),
}

const PORT_RULE: &str = "the port must be a number from 1 to 65535";

/// A URL the HTTP probe (ureq, built without TLS) can fetch: parsed with
/// the same `http::Uri` ureq uses, then held to what ureq needs at run time.
pub fn http_url(text: &str) -> Result<String, String> {
    let example = "expected a URL like \"http://127.0.0.1/health\"";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("{text:?} is not a URL; {example}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{text:?}: only http:// URLs are probed, as this memslice is built without TLS; probe https with a command such as [\"curl\", \"-fsS\", \"--max-time\", \"5\", \"{text}\"]"
            ));
        }
        _ => return Err(format!("{text:?}: only http:// URLs are probed; {example}")),
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err(format!("{text:?} has no host; {example}"));
    }
    text.parse::<ureq::http::Uri>()
        .map_err(|err| format!("{text:?} is not a URL ({err}); {example}"))?;
    let port = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once(']')
            .and_then(|(_, after)| after.strip_prefix(':')),
        None => host_port.split_once(':').map(|(_, port)| port),
    };
    if port.is_some_and(|port| parse_port(port).is_none()) {
        return Err(format!("{text:?}: {PORT_RULE}"));
    }
    Ok(text.to_string())
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// `host:port` for the TCP probe; an IPv6 address goes in brackets.
pub fn tcp_address(text: &str) -> Result<String, String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let Some((address, after)) = bracketed.split_once(']') else {
                return Err(format!("{text:?}: the IPv6 address has no closing ']'"));
            };
            if address.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{address:?} is not an IPv6 address"));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(format!("{text:?} needs a port, like \"[::1]:3306\""));
            };
            (address, port)
        }
        None => {
            let Some((host, port)) = text.rsplit_once(':') else {
                return Err(format!("{text:?} needs a port, like \"127.0.0.1:3306\""));
            };
            if host.contains(':') {
                return Err(format!(
                    "{text:?}: an IPv6 address goes in brackets, like \"[::1]:3306\""
                ));
            }
            (host, port)
        }
    };
    if host.trim().is_empty() {
        return Err(format!(
            "{text:?} has no host; expected \"host:port\", like \"127.0.0.1:3306\""
        ));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{host:?} is not a host name"));
    }
    match parse_port(port) {
        Some(_) => Ok(text.to_string()),
        None => Err(format!("{text:?}: {PORT_RULE}")),
    }
}

/// The state and lock files: an absolute path that names a file. Where the
/// path exists and is a directory, the message says so.
pub fn file_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "{text:?} must be an absolute path to a file, like \"/var/lib/memslice/heal.state\""
        ));
    }
    if text.contains('\0') {
        return Err(format!("{text:?} contains a NUL byte"));
    }
    if text.ends_with('/') {
        return Err(format!(
            "{text:?} ends in '/': name the file, not its directory"
        ));
    }
    let path = Path::new(text);
    if path.file_name().is_none() {
        return Err(format!("{text:?} has no file name at its end"));
    }
    if path.is_dir() {
        return Err(format!(
            "{text:?} is a directory; name a file in it, like \"{text}/heal.state\""
        ));
    }
    Ok(path.to_path_buf())
}

/// `heal.timezone`: an IANA name from the system tz database, "UTC" (which
/// needs no database: minimal nodes and containers have none), or "system"
/// (/etc/localtime).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "UTC" => Ok(TimeZone::UTC),
        "system" => TimeZone::try_system().map_err(|err| {
            format!("the system time zone (/etc/localtime) cannot be read: {err}; name the zone, such as \"Europe/Amsterdam\" or \"UTC\"")
        }),
        _ => TimeZone::get(name).map_err(|err| {
            format!("{name:?} is not a time zone in the system tz database (/usr/share/zoneinfo): {err}; use an IANA name such as \"Europe/Amsterdam\", \"UTC\" or \"system\"")
        }),
    }
}

/// The zone `heal.timezone` names, looked up in the tz database; not set,
/// the system's zone, and like the C library, UTC on a system that has
/// none (minimal containers), not a refusal.
fn zone(name: Option<&At<String>>, problems: &mut Vec<Problem>) -> TimeZone {
    let Some(at) = name else {
        return TimeZone::try_system().unwrap_or(TimeZone::UTC);
    };
    time_zone(&at.value).unwrap_or_else(|message| {
        push(problems, &at.span, "heal.timezone", message);
        TimeZone::UTC
    })
}

fn push(problems: &mut Vec<Problem>, span: &std::ops::Range<usize>, key: &str, message: String) {
    problems.push(Problem {
        span: span.clone(),
        key: key.to_string(),
        message,
    });
}

fn value_or<T: Clone>(at: &Option<At<T>>, default: T) -> T {
    at.as_ref().map_or(default, |at| at.value.clone())
}

/// `default_target` is `[protect] slice` of a valid protect policy: what
/// the healer kills when heal.protected is not set.
pub(super) fn validate(
    raw: &RawHeal,
    slices: &[Slice],
    default_target: Option<&At<String>>,
    layout: &Layout,
    scope: Scope,
    problems: &mut Vec<Problem>,
) -> HealConfig {
    let timezone = match scope {
        Scope::Node => zone(raw.timezone.as_ref(), problems),
        // Never used: a task does not heal (see Scope::Task).
        Scope::Task => TimeZone::UTC,
    };
    let protected = protected(raw, slices, default_target, problems);
    let mut services: Vec<Service> = Vec::new();
    for raw_service in &raw.services {
        if let Some(service) = service(raw_service, problems) {
            if services.iter().any(|s| s.name == service.name) {
                push(
                    problems,
                    &raw_service.span,
                    "heal.service.name",
                    format!("{:?} is named twice", service.name),
                );
            }
            services.push(service);
        }
    }
    if raw.services.is_empty() {
        push(
            problems,
            &raw.span,
            "heal.service",
            "no services to probe; add a [[heal.service]] table".into(),
        );
    }
    let state_file = value_or(&raw.state_file, "/var/lib/memslice/heal.state".into());
    let lock_file = value_or(&raw.lock_file, "/run/memslice/heal.lock".into());
    if state_file == lock_file {
        let span = raw.lock_file.as_ref().map_or(&raw.span, |at| &at.span);
        push(
            problems,
            span,
            "heal.lock_file",
            "is the state file too: saving the state would replace the lock; use two files".into(),
        );
    }
    HealConfig {
        state_file,
        lock_file,
        failures_before_down: value_or(&raw.failures_before_down, 2),
        grace_day: value_or(&raw.grace_day, Duration::from_secs(180)),
        grace_night: value_or(&raw.grace_night, Duration::from_secs(900)),
        night: raw.night.as_ref().map(|at| at.value),
        timezone,
        interval: value_or(&raw.interval, Duration::from_secs(30)),
        protected,
        services,
        max_actions: value_or(&raw.max_actions, 3),
        actions_window: value_or(&raw.actions_window, Duration::from_secs(1800)),
        stable_after: value_or(&raw.stable_after, Duration::from_secs(600)),
        storm: storm(raw, slices, problems),
        notify: raw.notify.as_ref().map(|at| at.value.clone()),
        notify_timeout: value_or(&raw.notify_timeout, Duration::from_secs(10)),
        notify_events: raw.notify_events.as_ref().map_or_else(
            || NotifyEvent::ALL.to_vec(),
            |at| at.value.iter().map(|event| event.value).collect(),
        ),
        notify_window: value_or(&raw.notify_window, Duration::from_secs(600)),
        slices: slices.iter().map(|slice| slice.path.clone()).collect(),
        pressure: pressure(raw, slices, problems),
        layout: layout.clone(),
    }
}

fn known_slice(
    at: &At<String>,
    key: &str,
    slices: &[Slice],
    problems: &mut Vec<Problem>,
) -> String {
    let path = at.value.trim_matches('/').to_string();
    if !slices.iter().any(|s| s.path == path) {
        push(
            problems,
            &at.span,
            key,
            format!("{:?} is not a slice of this file", at.value),
        );
    }
    path
}

fn pressure(
    raw: &RawHeal,
    slices: &[Slice],
    problems: &mut Vec<Problem>,
) -> Option<PressureTrigger> {
    let written = |key| raw.present.contains(&key);
    if written("pressure_slice") != written("pressure_trigger") {
        let span = raw
            .pressure_slice
            .as_ref()
            .map(|at| &at.span)
            .or(raw.pressure_trigger.as_ref().map(|at| &at.span))
            .unwrap_or(&raw.span);
        push(
            problems,
            span,
            "heal.pressure_trigger",
            "pressure_slice and pressure_trigger go together".into(),
        );
    }
    let (slice, trigger) = (raw.pressure_slice.as_ref()?, raw.pressure_trigger.as_ref()?);
    let (kind, stall, window) = trigger.value;
    Some(PressureTrigger {
        slice: known_slice(slice, "heal.pressure_slice", slices, problems),
        kind,
        stall,
        window,
    })
}

/// Off unless storm_slice is set; then kills and window have defaults.
fn storm(raw: &RawHeal, slices: &[Slice], problems: &mut Vec<Problem>) -> Option<StormConfig> {
    let Some(slice) = &raw.storm_slice else {
        let stray = [
            (
                "heal.storm_kills",
                raw.storm_kills.as_ref().map(|a| &a.span),
            ),
            (
                "heal.storm_window",
                raw.storm_window.as_ref().map(|a| &a.span),
            ),
        ];
        for (key, span) in stray {
            if let Some(span) = span {
                push(
                    problems,
                    span,
                    key,
                    "has no effect without heal.storm_slice, the slice whose OOM kills are counted"
                        .into(),
                );
            }
        }
        return None;
    };
    Some(StormConfig {
        slice: known_slice(slice, "heal.storm_slice", slices, problems),
        kills: value_or(&raw.storm_kills, 5),
        window: value_or(&raw.storm_window, Duration::from_secs(1)),
    })
}

/// The slices the healer kills. The default, `[protect] slice`, goes
/// through the same rule as a listed slice; its problems point at
/// `protect.slice` and say the value came from there.
fn protected(
    raw: &RawHeal,
    slices: &[Slice],
    default_target: Option<&At<String>>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let (targets, key, origin): (Vec<&At<String>>, &str, &str) = match (
        &raw.protected,
        default_target,
    ) {
        (Some(listed), _) => (listed.value.iter().collect(), "heal.protected", ""),
        (None, Some(target)) => (
            vec![target],
            "protect.slice",
            "heal.protected is not set, so the healer would kill this [protect] slice: ",
        ),
        (None, None) => {
            push(
                    problems,
                    &raw.span,
                    "heal.protected",
                    "no protected slices: set heal.protected, or a [protect] policy whose slice is used"
                        .into(),
                );
            return Vec::new();
        }
    };
    let mut paths = Vec::new();
    for at in targets {
        match kill_target(&at.value, slices) {
            Ok(path) => paths.push(path),
            Err(why) => push(problems, &at.span, key, format!("{origin}{why}")),
        }
    }
    paths
}

/// The healer may only kill slices that hold nothing but tasks: never a
/// top-level slice (the operations side is one), never a slice with
/// service slices below it.
fn kill_target(name: &str, slices: &[Slice]) -> Result<String, String> {
    let path = name.trim_matches('/').to_string();
    if !slices.iter().any(|s| s.path == path) {
        return Err(format!("{name:?} is not a slice of this file"));
    }
    if !path.contains('/') {
        return Err(format!(
            "{path} is a top-level slice (a whole side of the node, such as ops or app); name the slice below it that holds the tasks"
        ));
    }
    let below: Vec<&str> = slices
        .iter()
        .filter(|s| {
            s.path
                .strip_prefix(path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|s| s.path.as_str())
        .collect();
    if !below.is_empty() {
        return Err(format!(
            "{path} holds the slices {}, which a kill would take down too; name the slice that holds the tasks",
            below.join(", ")
        ));
    }
    Ok(path)
}

fn service(raw: &RawService, problems: &mut Vec<Problem>) -> Option<Service> {
    let Some(name) = &raw.name else {
        if !raw.present.contains(&"name") {
            push(
                problems,
                &raw.span,
                "heal.service.name",
                "required: a name for logs and metrics".into(),
            );
        }
        return None;
    };
    let written = ["http", "tcp", "command", "unit"]
        .into_iter()
        .filter(|key| raw.present.contains(key))
        .count();
    if written != 1 {
        push(
            problems,
            &name.span,
            "heal.service",
            format!(
                "service {:?} needs exactly one probe of: http, tcp, command, unit (it has {written})",
                name.value
            ),
        );
        return None;
    }
    let mut probes = Vec::new();
    if let Some(url) = &raw.http {
        probes.push(Probe::Http {
            url: url.value.clone(),
            expect_status: value_or(&raw.expect_status, 200),
        });
    }
    if let Some(address) = &raw.tcp {
        probes.push(Probe::Tcp {
            address: address.value.clone(),
        });
    }
    if let Some(command) = &raw.command {
        probes.push(Probe::Command(command.value.clone()));
    }
    if let Some(unit) = &raw.unit {
        probes.push(Probe::Unit(unit.value.clone()));
    }
    // The one probe written was refused when none is left.
    let probe = probes.pop()?;
    let restart = match (&raw.restart_unit, &raw.restart_command) {
        (Some(_), Some(at)) => {
            push(
                problems,
                &at.span,
                "heal.service.restart_command",
                "give restart_unit or restart_command, not both".into(),
            );
            None
        }
        (Some(unit), None) => Some(Restart::Unit(unit.value.clone())),
        (None, Some(command)) => Some(Restart::Command(command.value.clone())),
        (None, None) => None,
    };
    Some(Service {
        name: name.value.clone(),
        probe,
        timeout: value_or(&raw.timeout, Duration::from_secs(5)),
        restart,
    })
}

/// A config for tests elsewhere: 3 m / 15 m graces, two failures, three
/// actions per 30 m, protected app/tasks, no services.
#[cfg(test)]
pub fn example() -> HealConfig {
    HealConfig {
        state_file: "/nonexistent/heal.state".into(),
        lock_file: "/nonexistent/heal.lock".into(),
        failures_before_down: 2,
        grace_day: Duration::from_secs(180),
        grace_night: Duration::from_secs(900),
        night: None,
        timezone: TimeZone::UTC,
        interval: Duration::from_secs(30),
        protected: vec!["app/tasks".into()],
        services: Vec::new(),
        max_actions: 3,
        actions_window: Duration::from_secs(1800),
        stable_after: Duration::from_secs(600),
        storm: None,
        notify: None,
        notify_timeout: Duration::from_secs(10),
        notify_events: NotifyEvent::ALL.to_vec(),
        notify_window: Duration::from_secs(600),
        slices: Vec::new(),
        pressure: None,
        layout: Layout::cgroupfs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_triggers() {
        let (kind, stall, window) = parse_trigger("some 150ms 1s").expect("trigger");
        let trigger = PressureTrigger {
            slice: "app".into(),
            kind,
            stall,
            window,
        };
        assert_eq!(trigger.kernel_text(), "some 150000 1000000");
        assert_eq!(
            parse_trigger("full 2s 10s").map(|(kind, ..)| kind),
            Ok(PressureKind::Full)
        );
        for bad in [
            "some 150ms",
            "most 1s 2s",
            "some 150ms 100ms",
            "some 2s 1s",
            "some 0s 1s",
            "some 1s 20s",
            "some 18446744073709551615h 1s",
        ] {
            assert!(parse_trigger(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_urls_are_what_ureq_without_tls_can_fetch() {
        for good in [
            "http://127.0.0.1/health",
            "http://shop.example:8080/",
            "http://[::1]:8080/health",
            "http://[::1]/",
            "http://user:secret@shop.example/",
            "HTTP://shop.example",
        ] {
            assert_eq!(http_url(good).as_deref(), Ok(good), "{good}");
        }
        let cases = [
            ("http://", "has no host"),
            ("http://:80/", "has no host"),
            ("http://exa mple/", "is not a URL"),
            ("http://shop.example:99999/", "from 1 to 65535"),
            ("http://shop.example:0/", "from 1 to 65535"),
            ("http://shop.example:http/", "from 1 to 65535"),
            ("https://shop.example/", "built without TLS"),
            ("ftp://shop.example/", "only http:// URLs"),
            ("shop.example", "is not a URL"),
        ];
        for (bad, fragment) in cases {
            let err = http_url(bad).expect_err(bad);
            assert!(err.contains(fragment), "{bad}: {err}");
        }
    }

    #[test]
    fn tcp_addresses_need_a_host_and_a_numeric_port() {
        for good in [
            "127.0.0.1:3306",
            "db.internal:5432",
            "[::1]:3306",
            "[fe80::1]:1",
        ] {
            assert_eq!(tcp_address(good).as_deref(), Ok(good), "{good}");
        }
        let cases = [
            ("127.0.0.1", "needs a port"),
            ("localhost:http-ish", "from 1 to 65535"),
            ("localhost:65536", "from 1 to 65535"),
            ("localhost:+80", "from 1 to 65535"),
            ("localhost:", "from 1 to 65535"),
            (":3306", "has no host"),
            ("::1:3306", "in brackets"),
            ("[::1]", "needs a port"),
            ("[::1:3306", "no closing"),
            ("[db]:3306", "not an IPv6 address"),
            ("my host:80", "not a host name"),
        ];
        for (bad, fragment) in cases {
            let err = tcp_address(bad).expect_err(bad);
            assert!(err.contains(fragment), "{bad}: {err}");
        }
    }

    #[test]
    fn utc_needs_no_tz_database() {
        assert_eq!(time_zone("UTC"), Ok(TimeZone::UTC));
        let err = time_zone("Mars/Olympus").expect_err("no such zone");
        assert!(err.contains("not a time zone"), "{err}");
    }
}
