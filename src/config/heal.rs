//! `[heal]`: which services to probe, how long the site may be down before
//! the healer steps in (longer at night, when heavy crons are normal), what
//! it kills and how it restarts.

use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::Time;

use super::raw::{At, RawHeal, RawService};
use super::{Driver, Problem, ProtectPolicy, Slice};

#[derive(Debug, Clone, PartialEq)]
pub struct HealConfig {
    pub state_file: PathBuf,
    pub lock_file: PathBuf,
    /// Consecutive failed checks before a service counts as down.
    pub failures_before_down: u32,
    pub grace_day: Duration,
    pub grace_night: Duration,
    pub night: Option<NightWindow>,
    /// IANA name; `None` is the system's zone (/etc/localtime).
    pub timezone: Option<String>,
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
    /// PSI trigger on a slice: `heal watch` checks at once when memory
    /// pressure crosses it, instead of at the next tick.
    pub pressure: Option<PressureTrigger>,
    /// How slice paths map to cgroups (the systemd driver nests `.slice`s).
    pub driver: Driver,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressureTrigger {
    pub slice: String,
    /// `some` (any task stalled) or `full` (all stalled).
    pub kind: String,
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

/// `"some 150ms 1s"`: stalled for 150 ms within any 1 s window. The kernel
/// takes windows from 500 ms to 10 s.
pub fn parse_trigger(text: &str) -> Result<(String, Duration, Duration), String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [kind, stall, window] = fields.as_slice() else {
        return Err(format!(
            "{text:?} is not a trigger; expected \"some 150ms 1s\" (some or full, stall, window)"
        ));
    };
    if !["some", "full"].contains(kind) {
        return Err(format!("{kind:?} is neither \"some\" nor \"full\""));
    }
    let (stall, window) = (parse_duration(stall)?, parse_duration(window)?);
    if !(Duration::from_millis(500)..=Duration::from_secs(10)).contains(&window) {
        return Err(format!(
            "window {} is outside the kernel's 500ms to 10s",
            text
        ));
    }
    if stall.is_zero() || stall > window {
        return Err(format!(
            "stall must be above zero and at most the window in {text:?}"
        ));
    }
    Ok(((*kind).to_string(), stall, window))
}

/// OOM storm: `kills` OOM kills per `window` in `slice` (memory.events
/// oom_kill) is an emergency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormConfig {
    pub slice: String,
    pub kills: u32,
    pub window: Duration,
}

/// Local time of day, `start` inclusive, `end` exclusive; crosses midnight
/// when `end` is before `start` (22:00-07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NightWindow {
    pub start: Time,
    pub end: Time,
}

impl NightWindow {
    pub fn contains(self, time: Time) -> bool {
        if self.start <= self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
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

const DURATION_FORMS: &str = "a duration such as \"90s\", \"3m\", \"1h\" or \"500ms\"";

/// `"3m"` → 180 s. Pure; units ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; expected {DURATION_FORMS}"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => {
            return Err(format!(
                "{text:?} has no known unit; expected {DURATION_FORMS}"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// `"22:00-07:00"` → a window.
pub fn parse_window(text: &str) -> Result<NightWindow, String> {
    let fail = || format!("{text:?} is not a window; expected local times like \"22:00-07:00\"");
    let (start, end) = text.split_once('-').ok_or_else(fail)?;
    let time = |part: &str| part.trim().parse::<Time>().map_err(|_| fail());
    let window = NightWindow {
        start: time(start)?,
        end: time(end)?,
    };
    if window.start == window.end {
        return Err(format!(
            "{text:?} is empty: start and end are the same time"
        ));
    }
    Ok(window)
}

fn push(problems: &mut Vec<Problem>, span: &std::ops::Range<usize>, key: &str, message: String) {
    problems.push(Problem {
        span: span.clone(),
        key: key.to_string(),
        message,
    });
}

fn duration_or(
    at: &Option<At<String>>,
    key: &str,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    match at {
        None => default,
        Some(at) => parse_duration(&at.value).unwrap_or_else(|message| {
            push(problems, &at.span, key, message);
            default
        }),
    }
}

pub(super) fn validate(
    raw: &RawHeal,
    slices: &[Slice],
    protect: Option<&ProtectPolicy>,
    driver: Driver,
    problems: &mut Vec<Problem>,
) -> HealConfig {
    let grace_day = duration_or(
        &raw.grace_day,
        "heal.grace_day",
        Duration::from_secs(180),
        problems,
    );
    let grace_night = duration_or(
        &raw.grace_night,
        "heal.grace_night",
        Duration::from_secs(900),
        problems,
    );
    let interval = duration_or(
        &raw.interval,
        "heal.interval",
        Duration::from_secs(30),
        problems,
    );
    if interval.is_zero() {
        let span = raw
            .interval
            .as_ref()
            .map_or(raw.span.clone(), |at| at.span.clone());
        push(
            problems,
            &span,
            "heal.interval",
            "must be above zero".into(),
        );
    }
    let night = raw
        .night
        .as_ref()
        .and_then(|at| match parse_window(&at.value) {
            Ok(window) => Some(window),
            Err(message) => {
                push(problems, &at.span, "heal.night", message);
                None
            }
        });
    let failures_before_down = positive(
        &raw.failures_before_down,
        "heal.failures_before_down",
        2,
        problems,
    );
    let timezone = raw
        .timezone
        .as_ref()
        .map(|at| at.value.clone())
        .filter(|name| name != "system");
    let protected = protected(raw, slices, protect, problems);
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
    if protected.is_empty() && raw.protected.is_none() {
        push(
            problems,
            &raw.span,
            "heal.protected",
            "no protected slices: set heal.protected, or a [protect] policy whose slice is used"
                .into(),
        );
    }
    let max_actions = positive(&raw.max_actions, "heal.max_actions", 3, problems);
    let actions_window = duration_or(
        &raw.actions_window,
        "heal.actions_window",
        Duration::from_secs(1800),
        problems,
    );
    let stable_after = duration_or(
        &raw.stable_after,
        "heal.stable_after",
        Duration::from_secs(600),
        problems,
    );
    let storm = storm(raw, slices, problems);
    let notify = raw.notify.as_ref().map(|at| {
        at.value
            .iter()
            .map(|item| item.value.clone())
            .collect::<Vec<_>>()
    });
    if let Some(at) = raw.notify.as_ref().filter(|at| at.value.is_empty()) {
        push(
            problems,
            &at.span,
            "heal.notify",
            "an empty command runs nothing; remove the key to notify nobody".into(),
        );
    }
    let notify_timeout = duration_or(
        &raw.notify_timeout,
        "heal.notify_timeout",
        Duration::from_secs(10),
        problems,
    );
    let pressure = pressure(raw, slices, problems);
    HealConfig {
        state_file: path_or(&raw.state_file, "/var/lib/memslice/heal.state"),
        lock_file: path_or(&raw.lock_file, "/run/memslice/heal.lock"),
        failures_before_down,
        grace_day,
        grace_night,
        night,
        timezone,
        interval,
        protected,
        services,
        max_actions,
        actions_window,
        stable_after,
        storm,
        notify,
        notify_timeout,
        pressure,
        driver,
    }
}

fn pressure(
    raw: &RawHeal,
    slices: &[Slice],
    problems: &mut Vec<Problem>,
) -> Option<PressureTrigger> {
    let (slice, trigger) = match (&raw.pressure_slice, &raw.pressure_trigger) {
        (None, None) => return None,
        (Some(slice), Some(trigger)) => (slice, trigger),
        (Some(at), None) | (None, Some(at)) => {
            push(
                problems,
                &at.span,
                "heal.pressure_trigger",
                "pressure_slice and pressure_trigger go together".into(),
            );
            return None;
        }
    };
    let path = slice.value.trim_matches('/').to_string();
    if !slices.iter().any(|s| s.path == path) {
        push(
            problems,
            &slice.span,
            "heal.pressure_slice",
            format!("{:?} is not a slice of this file", slice.value),
        );
    }
    match parse_trigger(&trigger.value) {
        Ok((kind, stall, window)) => Some(PressureTrigger {
            slice: path,
            kind,
            stall,
            window,
        }),
        Err(message) => {
            push(problems, &trigger.span, "heal.pressure_trigger", message);
            None
        }
    }
}

fn positive(at: &Option<At<i64>>, key: &str, default: u32, problems: &mut Vec<Problem>) -> u32 {
    match at {
        None => default,
        Some(at) => match u32::try_from(at.value) {
            Ok(count) if count >= 1 => count,
            _ => {
                push(
                    problems,
                    &at.span,
                    key,
                    format!("{} is not allowed; use a whole number from 1 up", at.value),
                );
                default
            }
        },
    }
}

/// Off unless storm_slice is set; then kills and window have defaults.
fn storm(raw: &RawHeal, slices: &[Slice], problems: &mut Vec<Problem>) -> Option<StormConfig> {
    let Some(slice) = &raw.storm_slice else {
        for (key, present) in [
            (
                "heal.storm_kills",
                raw.storm_kills.as_ref().map(|a| a.span.clone()),
            ),
            (
                "heal.storm_window",
                raw.storm_window.as_ref().map(|a| a.span.clone()),
            ),
        ] {
            if let Some(span) = present {
                push(
                    problems,
                    &span,
                    key,
                    "has no effect without heal.storm_slice, the slice whose OOM kills are counted"
                        .into(),
                );
            }
        }
        return None;
    };
    let path = slice.value.trim_matches('/').to_string();
    if !slices.iter().any(|s| s.path == path) {
        push(
            problems,
            &slice.span,
            "heal.storm_slice",
            format!("{:?} is not a slice of this file", slice.value),
        );
    }
    let window = duration_or(
        &raw.storm_window,
        "heal.storm_window",
        Duration::from_secs(1),
        problems,
    );
    if window.is_zero() {
        push(
            problems,
            &raw.span,
            "heal.storm_window",
            "must be above zero".into(),
        );
    }
    Some(StormConfig {
        slice: path,
        kills: positive(&raw.storm_kills, "heal.storm_kills", 5, problems),
        window,
    })
}

fn path_or(at: &Option<At<String>>, default: &str) -> PathBuf {
    PathBuf::from(at.as_ref().map_or(default, |at| at.value.as_str()))
}

/// The healer may only kill slices that hold nothing but tasks: never a
/// top-level slice (the operations side is one), never a slice with
/// service slices below it.
fn protected(
    raw: &RawHeal,
    slices: &[Slice],
    protect: Option<&ProtectPolicy>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let Some(listed) = &raw.protected else {
        return protect.map(|p| vec![p.slice.clone()]).unwrap_or_default();
    };
    let mut paths = Vec::new();
    for at in &listed.value {
        let path = at.value.trim_matches('/').to_string();
        if !slices.iter().any(|s| s.path == path) {
            push(
                problems,
                &at.span,
                "heal.protected",
                format!("{:?} is not a slice of this file", at.value),
            );
            continue;
        }
        if !path.contains('/') {
            push(
                problems,
                &at.span,
                "heal.protected",
                format!(
                    "{path} is a top-level slice (a whole side of the node, such as ops or app); name the slice below it that holds the tasks"
                ),
            );
            continue;
        }
        let below: Vec<&str> = slices
            .iter()
            .filter(|s| s.path.starts_with(&format!("{path}/")))
            .map(|s| s.path.as_str())
            .collect();
        if !below.is_empty() {
            push(
                problems,
                &at.span,
                "heal.protected",
                format!(
                    "{path} holds the slices {}, which a kill would take down too; name the slice that holds the tasks",
                    below.join(", ")
                ),
            );
            continue;
        }
        paths.push(path);
    }
    paths
}

fn service(raw: &RawService, problems: &mut Vec<Problem>) -> Option<Service> {
    let Some(name) = &raw.name else {
        push(
            problems,
            &raw.span,
            "heal.service.name",
            "required: a name for logs and metrics".into(),
        );
        return None;
    };
    let list = |at: &At<Vec<At<String>>>| {
        at.value
            .iter()
            .map(|item| item.value.clone())
            .collect::<Vec<_>>()
    };
    let mut probes = Vec::new();
    if let Some(url) = &raw.http {
        if !url.value.starts_with("http://") {
            push(
                problems,
                &url.span,
                "heal.service.http",
                format!(
                    "{:?}: only http:// URLs are probed (memslice has no TLS); probe https with a command such as curl",
                    url.value
                ),
            );
        }
        let expect_status = match &raw.expect_status {
            None => 200,
            Some(at) => u16::try_from(at.value)
                .ok()
                .filter(|s| (100..600).contains(s))
                .unwrap_or_else(|| {
                    push(
                        problems,
                        &at.span,
                        "heal.service.expect_status",
                        format!("{} is not an HTTP status (100 to 599)", at.value),
                    );
                    200
                }),
        };
        probes.push(Probe::Http {
            url: url.value.clone(),
            expect_status,
        });
    }
    if let Some(address) = &raw.tcp {
        if !address.value.contains(':') {
            push(
                problems,
                &address.span,
                "heal.service.tcp",
                format!("{:?} needs a port, like \"127.0.0.1:3306\"", address.value),
            );
        }
        probes.push(Probe::Tcp {
            address: address.value.clone(),
        });
    }
    if let Some(command) = &raw.command {
        if command.value.is_empty() {
            push(
                problems,
                &command.span,
                "heal.service.command",
                "an empty command runs nothing".into(),
            );
        }
        probes.push(Probe::Command(list(command)));
    }
    if let Some(unit) = &raw.unit {
        probes.push(Probe::Unit(unit.value.clone()));
    }
    if probes.len() != 1 {
        push(
            problems,
            &name.span,
            "heal.service",
            format!(
                "service {:?} needs exactly one probe of: http, tcp, command, unit (it has {})",
                name.value,
                probes.len()
            ),
        );
        return None;
    }
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
        (None, Some(command)) => Some(Restart::Command(list(command))),
        (None, None) => None,
    };
    let timeout = match &raw.timeout {
        None => Duration::from_secs(5),
        Some(at) => parse_duration(&at.value).unwrap_or_else(|message| {
            push(problems, &at.span, "heal.service.timeout", message);
            Duration::from_secs(5)
        }),
    };
    Some(Service {
        name: name.value.clone(),
        probe: probes.remove(0),
        timeout,
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
        timezone: None,
        interval: Duration::from_secs(30),
        protected: vec!["app/tasks".into()],
        services: Vec::new(),
        max_actions: 3,
        actions_window: Duration::from_secs(1800),
        stable_after: Duration::from_secs(600),
        storm: None,
        notify: None,
        notify_timeout: Duration::from_secs(10),
        pressure: None,
        driver: Driver::Cgroupfs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> Time {
        text.parse().expect("time")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "3", "m", "3 minutes", "-1s", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
        assert!(parse_trigger("full 2s 10s").is_ok());
        for bad in [
            "some 150ms",
            "most 1s 2s",
            "some 150ms 100ms",
            "some 2s 1s",
            "some 0s 1s",
            "some 1s 20s",
        ] {
            assert!(parse_trigger(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_night_window_may_cross_midnight() {
        let night = parse_window("22:00-07:00").expect("window");
        assert!(night.contains(time("23:30")));
        assert!(night.contains(time("00:00")));
        assert!(night.contains(time("06:59:59")));
        assert!(!night.contains(time("07:00")));
        assert!(!night.contains(time("12:00")));
        assert!(night.contains(time("22:00")));
        let siesta = parse_window("13:00-15:00").expect("window");
        assert!(
            siesta.contains(time("14:00"))
                && !siesta.contains(time("15:00"))
                && !siesta.contains(time("12:59"))
        );
        assert!(parse_window("22:00").is_err());
        assert!(parse_window("25:00-07:00").is_err());
        assert!(parse_window("07:00-07:00").is_err());
    }
}
