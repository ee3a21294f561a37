//! `memslice doctor`: every fact about the host memslice relies on, each
//! with a verdict (OK, WARN, FAIL) and what to do. The verdicts are pure
//! ([`checks`]: facts in, rows out, each rule a unit test); `facts`
//! gathers what they read, thinly. FAIL means memslice cannot do its job
//! here as configured (the exit status is then 1, for configuration
//! management); WARN means it works, with less than it promises.
//!
//! JSON (stable; fields are only ever added): `{"status": "ok"|"warn"|"fail",
//! "checks": [{"check": str, "status": ..., "found": str, "fix": str|null}]}`.

mod facts;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

pub use facts::gather;

use crate::config::{Config, Driver};
use crate::driver::{Fit, Resolved};
use crate::layout::SESSIONS;
use crate::printable::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub found: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub status: Status,
    pub checks: Vec<Check>,
}

/// A process as doctor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Real uid.
    pub uid: u32,
    pub comm: String,
    /// The cgroup v2 path from /proc/PID/cgroup (`/user.slice/...`).
    pub cgroup: String,
    pub kernel_thread: bool,
}

/// Where a slice's user is, and where their processes belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub slice: String,
    pub uid: Option<u32>,
    /// The slice's cgroup as /proc/PID/cgroup names it.
    pub expected: String,
}

/// What the PAM stacks say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pam {
    /// Files of /etc/pam.d that run `memslice pam-session`.
    pub hook_in: Vec<String>,
    /// Whether cron's stack (/etc/pam.d/cron and what it includes) opens
    /// a logind session (pam_systemd); `None` without /etc/pam.d/cron.
    pub cron_logind: Option<bool>,
    /// Stacks that run the hook after pam_env read the user's own
    /// environment (user_readenv=1).
    pub user_environment: Vec<String>,
}

/// Which of the healer's units are enabled (`None`: no systemctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealerUnits {
    pub timer: bool,
    pub watcher: bool,
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub config_path: PathBuf,
    /// The config placed for the driver, or why it cannot be used.
    pub config: Result<Config, String>,
    /// Whether root would read the config and its drop-ins (`files`),
    /// whoever runs doctor.
    pub config_trust: Result<(), String>,
    pub cgroup_root: PathBuf,
    /// `Err`: the refusal `apply` gives for this root.
    pub memory: Result<(), String>,
    /// Options of the cgroup2 mount holding the root; `None`: no such mount.
    pub cgroup2_options: Option<Vec<String>>,
    /// /proc/pressure/memory is readable.
    pub psi: bool,
    /// uname's release, and its major and minor version when they parse.
    pub kernel: (String, Option<(u32, u32)>),
    pub driver: Resolved,
    pub systemd_booted: bool,
    pub systemd_version: Option<u32>,
    pub processes: Vec<Process>,
    pub healer_units: Option<HealerUnits>,
    pub kmsg_readable: bool,
    pub tzdata: bool,
    pub users: Vec<User>,
    pub pam: Pam,
}

/// Every verdict, in the order the table shows them. Pure.
pub fn checks(facts: &Facts) -> Report {
    let config = facts.config.as_ref().ok();
    let mut checks = vec![
        config_check(facts),
        trust_check(facts),
        memory_check(facts),
        recursiveprot_check(facts),
        psi_check(facts.psi, config),
        kernel_check(
            "cgroup.kill",
            &facts.kernel,
            (5, 14),
            "memslice kills a task group pid by pid, re-reading cgroup.procs until no new one appears: slower, and a fork bomb can outrun it",
        ),
        kernel_check(
            "clone3 into cgroup",
            &facts.kernel,
            (5, 7),
            "a task's process starts in memslice's own group and moves itself through cgroup.procs before it execs: a migration per start, and for an instant it counts there",
        ),
        driver_check(facts),
    ];
    checks.extend(systemd_check(facts, config));
    checks.extend(oom_daemon_checks(&facts.processes));
    checks.extend(healer_check(facts.healer_units, config));
    checks.push(kmsg_check(facts.kmsg_readable));
    checks.push(tzdata_check(facts.tzdata));
    checks.extend(
        facts
            .users
            .iter()
            .map(|user| footprint_check(user, &facts.processes, facts.driver.driver)),
    );
    checks.extend(pam_check(facts));
    checks.extend(user_environment_check(&facts.pam.user_environment));
    let status = checks
        .iter()
        .map(|check| check.status)
        .max()
        .unwrap_or(Status::Ok);
    Report { status, checks }
}

fn row(check: &str, status: Status, found: String, fix: Option<String>) -> Check {
    Check {
        check: check.to_string(),
        status,
        found,
        fix,
    }
}

fn config_check(facts: &Facts) -> Check {
    match &facts.config {
        Ok(config) => row(
            "config",
            Status::Ok,
            format!(
                "{}: valid, {} slice(s)",
                facts.config_path.display(),
                config.slices.len()
            ),
            None,
        ),
        Err(err) => row(
            "config",
            Status::Fail,
            err.clone(),
            Some("every other check reads the built-in defaults meanwhile".to_string()),
        ),
    }
}

fn trust_check(facts: &Facts) -> Check {
    match &facts.config_trust {
        Ok(()) => row(
            "config ownership",
            Status::Ok,
            format!(
                "{} and its drop-ins, and the directories above them, are root's alone",
                facts.config_path.display()
            ),
            None,
        ),
        Err(err) => row("config ownership", Status::Fail, err.clone(), None),
    }
}

fn memory_check(facts: &Facts) -> Check {
    match &facts.memory {
        Ok(()) => row(
            "cgroup v2 memory",
            Status::Ok,
            format!(
                "{} is a cgroup v2 directory that offers memory",
                facts.cgroup_root.display()
            ),
            None,
        ),
        // apply's own refusal, which says what to do.
        Err(err) => row("cgroup v2 memory", Status::Fail, err.clone(), None),
    }
}

fn recursiveprot_check(facts: &Facts) -> Check {
    let name = "memory_recursiveprot";
    match &facts.cgroup2_options {
        Some(options) if options.iter().any(|option| option == name) => row(
            name,
            Status::Ok,
            "the cgroup2 mount protects a slice's children within its memory_min/low".to_string(),
            None,
        ),
        Some(_) => row(
            name,
            Status::Warn,
            "the cgroup2 mount lacks memory_recursiveprot: a slice's memory_min/low protect only the groups that claim protection themselves, so the groups of ops' services, sessions and the healer get none unless they ask".to_string(),
            Some("mount -o remount,memory_recursiveprot /sys/fs/cgroup (Linux 5.7+; systemd 247+ mounts it so where the kernel has it)".to_string()),
        ),
        None => row(
            name,
            Status::Warn,
            format!(
                "not checked: no cgroup2 mount holds {}",
                facts.cgroup_root.display()
            ),
            None,
        ),
    }
}

fn psi_check(psi: bool, config: Option<&Config>) -> Check {
    if psi {
        return row(
            "PSI",
            Status::Ok,
            "/proc/pressure/memory is there".to_string(),
            None,
        );
    }
    let trigger = config
        .and_then(|config| config.heal.as_ref())
        .and_then(|heal| heal.pressure.as_ref());
    let (status, found) = match trigger {
        Some(trigger) => (
            Status::Fail,
            format!(
                "no pressure stall information (/proc/pressure/memory), and [heal] pressure_slice {} asks for a trigger on it",
                trigger.slice
            ),
        ),
        None => (
            Status::Warn,
            "no pressure stall information (/proc/pressure/memory): status and metrics show no memory pressure".to_string(),
        ),
    };
    row(
        "PSI",
        status,
        found,
        Some("boot with psi=1 (CONFIG_PSI, Linux 4.20+)".to_string()),
    )
}

fn kernel_check(
    name: &str,
    kernel: &(String, Option<(u32, u32)>),
    needs: (u32, u32),
    without: &str,
) -> Check {
    let (release, version) = kernel;
    let since = format!("Linux {}.{}", needs.0, needs.1);
    match version {
        Some(version) if *version >= needs => row(
            name,
            Status::Ok,
            format!("Linux {release} has it (since {since})"),
            None,
        ),
        Some(_) => row(
            name,
            Status::Warn,
            format!("Linux {release} has none: {without}"),
            Some(format!("{since} or later")),
        ),
        None => row(
            name,
            Status::Warn,
            format!("cannot tell from the kernel release {release:?}: without it, {without}"),
            Some(format!("{since} or later")),
        ),
    }
}

fn driver_check(facts: &Facts) -> Check {
    let resolved = &facts.driver;
    let found = resolved.to_string();
    match resolved.check_writes(&facts.cgroup_root) {
        Err(err) => row("driver", Status::Fail, format!("{found}: {err}"), None),
        Ok(()) if resolved.fit == Fit::NotCgroup2 => row(
            "driver",
            Status::Warn,
            format!("{found}: nothing to write (see cgroup v2 memory)"),
            None,
        ),
        Ok(()) => row("driver", Status::Ok, found, None),
    }
}

/// systemd 243 knows OOMPolicy= (services' drop-ins), 248
/// ManagedOOMPreference= (protected tasks' scopes).
fn systemd_check(facts: &Facts, config: Option<&Config>) -> Option<Check> {
    let drives = facts.driver.driver == Driver::Systemd;
    if !drives && !facts.systemd_booted {
        return None;
    }
    let protects = config.is_some_and(|config| config.protect.is_some());
    let name = "systemd version";
    Some(match facts.systemd_version {
        Some(version) if version >= 248 => row(
            name,
            Status::Ok,
            format!("systemd {version}: knows OOMPolicy= (243+) and ManagedOOMPreference= (248+)"),
            None,
        ),
        Some(version) => {
            let scope_refused = drives && protects;
            let found = if version >= 243 {
                format!("systemd {version} knows OOMPolicy= but not ManagedOOMPreference= (248+)")
            } else {
                format!(
                    "systemd {version} knows neither OOMPolicy= (243+) nor ManagedOOMPreference= (248+): services' drop-ins carry an OOMPolicy= it ignores"
                )
            };
            let found = if scope_refused {
                format!(
                    "{found}; protected tasks' scopes ask for ManagedOOMPreference=omit, which this systemd refuses"
                )
            } else {
                found
            };
            row(
                name,
                if scope_refused {
                    Status::Fail
                } else {
                    Status::Warn
                },
                found,
                Some("systemd 248 or later".to_string()),
            )
        }
        None => row(
            name,
            Status::Warn,
            "cannot tell: `systemctl --version` did not answer".to_string(),
            None,
        ),
    })
}

/// Userspace OOM killers ignore oom_score_adj; what each does to a
/// protected task (README, "Userspace OOM killers").
fn oom_daemon_checks(processes: &[Process]) -> Vec<Check> {
    const DAEMONS: [(&str, Status, &str, Option<&str>); 4] = [
        (
            "systemd-oomd",
            Status::Ok,
            "honours the marks memslice sets on protected task groups (user.oomd_omit, ManagedOOMPreference=omit): never picks them; it may still kill other groups where ManagedOOMSwap= or ManagedOOMMemoryPressure= is on",
            None,
        ),
        (
            "earlyoom",
            Status::Warn,
            "ranks by oom_score, which is 0 for a protected task (-1000): picked last, but picked",
            Some(
                "start earlyoom with --avoid for the protected commands' names, or --ignore (1.8+) to exclude them",
            ),
        ),
        (
            "nohang",
            Status::Ok,
            "never kills a process whose badness is below min_badness (at least 1), so never a protected task",
            None,
        ),
        (
            "oomd",
            Status::Warn,
            "picks a protected task's group (user.oomd_avoid) only when nothing else is left: oomd has no never",
            Some("keep the protect slice out of oomd's kill rulesets"),
        ),
    ];
    let mut checks = Vec::new();
    for (daemon, status, effect, fix) in DAEMONS {
        let pids: Vec<String> = processes
            .iter()
            .filter(|process| process.comm == daemon)
            .map(|process| process.pid.to_string())
            .collect();
        if !pids.is_empty() {
            checks.push(row(
                &format!("OOM daemon {daemon}"),
                status,
                format!("{daemon} runs (pid {}): it {effect}", pids.join(", ")),
                fix.map(str::to_string),
            ));
        }
    }
    if checks.is_empty() {
        checks.push(row(
            "OOM daemons",
            Status::Ok,
            "no userspace OOM killer runs (systemd-oomd, earlyoom, nohang, oomd): the kernel's honours oom_score_adj".to_string(),
            None,
        ));
    }
    checks
}

fn healer_check(units: Option<HealerUnits>, config: Option<&Config>) -> Option<Check> {
    let units = units?;
    let heals = config.is_some_and(|config| config.heal.is_some());
    let name = "healer units";
    Some(match (units.timer, units.watcher) {
        (true, true) => row(
            name,
            Status::Warn,
            "memslice-heal.timer and memslice-heal-watch.service are both enabled: two healers take turns at one lock".to_string(),
            Some("systemctl disable --now memslice-heal.timer (or the watcher): use one".to_string()),
        ),
        (false, false) if heals => row(
            name,
            Status::Warn,
            "[heal] is configured, and neither memslice-heal.timer nor memslice-heal-watch.service is enabled: nothing heals".to_string(),
            Some("systemctl enable --now memslice-heal.timer (or memslice-heal-watch.service)".to_string()),
        ),
        (false, false) => row(
            name,
            Status::Ok,
            "no healer enabled, and [heal] is not configured".to_string(),
            None,
        ),
        (true, false) => row(name, Status::Ok, "memslice-heal.timer is enabled".to_string(), None),
        (false, true) => row(
            name,
            Status::Ok,
            "memslice-heal-watch.service is enabled".to_string(),
            None,
        ),
    })
}

fn kmsg_check(readable: bool) -> Check {
    if readable {
        row(
            "/dev/kmsg",
            Status::Ok,
            "readable: events name the OOM killer's victims".to_string(),
            None,
        )
    } else {
        row(
            "/dev/kmsg",
            Status::Warn,
            "not readable: `events` and the healer's log cannot name the OOM killer's victims"
                .to_string(),
            Some("run memslice as root (/dev/kmsg is root's)".to_string()),
        )
    }
}

fn tzdata_check(present: bool) -> Check {
    if present {
        row(
            "tz database",
            Status::Ok,
            "/usr/share/zoneinfo is there: heal.timezone may name a zone".to_string(),
            None,
        )
    } else {
        row(
            "tz database",
            Status::Warn,
            "no /usr/share/zoneinfo: heal.timezone can only be \"UTC\" (or \"system\" with /etc/localtime), so the night window may be read in UTC".to_string(),
            Some("install the tz database (apt-get install tzdata)".to_string()),
        )
    }
}

/// Most strays a row names.
const STRAYS_SHOWN: usize = 10;

fn footprint_check(user: &User, processes: &[Process], driver: Driver) -> Check {
    let name = format!("footprint of {}", user.name);
    let Some(uid) = user.uid else {
        return row(
            &name,
            Status::Warn,
            format!(
                "no user {:?} on this node, though slice {} names it",
                user.name, user.slice
            ),
            Some("create the user, or remove it from the slice's users".to_string()),
        );
    };
    let theirs: Vec<&Process> = processes
        .iter()
        .filter(|process| process.uid == uid && !process.kernel_thread)
        .collect();
    let inside = |cgroup: &str| {
        cgroup == user.expected
            || cgroup
                .strip_prefix(&user.expected)
                .is_some_and(|rest| rest.starts_with('/') || user.expected == "/")
    };
    let strays: Vec<&&Process> = theirs.iter().filter(|p| !inside(&p.cgroup)).collect();
    if strays.is_empty() {
        return row(
            &name,
            Status::Ok,
            format!(
                "{} process(es) of {}, all in {} ({})",
                theirs.len(),
                user.name,
                user.slice,
                user.expected
            ),
            None,
        );
    }
    let mut shown: Vec<String> = strays
        .iter()
        .take(STRAYS_SHOWN)
        .map(|p| {
            format!(
                "{} ({}, in {})",
                p.pid,
                printable(&p.comm),
                printable(&p.cgroup)
            )
        })
        .collect();
    if strays.len() > STRAYS_SHOWN {
        shown.push(format!("and {} more", strays.len() - STRAYS_SHOWN));
    }
    let fix = match driver {
        Driver::Cgroupfs => format!(
            "sessions and crons: the PAM line (dist/pam.d/memslice); daemons: start them with `memslice exec --slice {slice}/...`; running ones: `memslice move --slice {slice} PID...`",
            slice = user.slice
        ),
        Driver::Systemd => "services: list them in the slice's `services`; sessions go there through pam_systemd (cron needs it in /etc/pam.d/cron); `sudo -u`/`runuser -u` open no logind session, so what they start stays where their caller was".to_string(),
    };
    row(
        &name,
        Status::Warn,
        format!(
            "{} process(es) of {} outside {} ({}): {}",
            strays.len(),
            user.name,
            user.slice,
            user.expected,
            shown.join(", ")
        ),
        Some(fix),
    )
}

/// The PAM hook under cgroupfs; cron's logind sessions under systemd.
fn pam_check(facts: &Facts) -> Option<Check> {
    if facts.users.is_empty() {
        return None;
    }
    let names: Vec<&str> = facts.users.iter().map(|user| user.name.as_str()).collect();
    let names = names.join(", ");
    match facts.driver.driver {
        Driver::Cgroupfs if facts.pam.hook_in.is_empty() => Some(row(
            "PAM hook",
            Status::Warn,
            format!("no file in /etc/pam.d runs memslice pam-session: the logins and crons of {names} start outside their slice's {SESSIONS} leaf"),
            Some("add the line of dist/pam.d/memslice to /etc/pam.d/common-session and common-session-noninteractive (Debian)".to_string()),
        )),
        Driver::Cgroupfs => Some(row(
            "PAM hook",
            Status::Ok,
            format!("memslice pam-session runs from {}", facts.pam.hook_in.join(", ")),
            None,
        )),
        Driver::Systemd => match facts.pam.cron_logind {
            None => None,
            Some(true) => Some(row(
                "cron sessions",
                Status::Ok,
                "cron's PAM stack opens logind sessions (pam_systemd): crons run in their user's slice".to_string(),
                None,
            )),
            Some(false) => Some(row(
                "cron sessions",
                Status::Warn,
                format!("cron's PAM stack (/etc/pam.d/cron) opens no logind session: the crons of {names} run in cron.service, outside their slice"),
                Some(format!("add `session optional pam_systemd.so` to /etc/pam.d/cron, and `loginctl enable-linger {names}` so no cron starts and stops a user manager")),
            )),
        },
    }
}

/// The hook runs as root with the PAM environment: where users may fill
/// it (pam_env's user_readenv), they choose the LD_PRELOAD of a root
/// process, whatever memslice ignores.
fn user_environment_check(stacks: &[String]) -> Option<Check> {
    (!stacks.is_empty()).then(|| {
        row(
            "PAM environment",
            Status::Fail,
            format!(
                "{} run(s) memslice pam-session after pam_env read users' own ~/.pam_environment (user_readenv=1): a user can set LD_PRELOAD for the hook, which runs as root",
                stacks.join(", ")
            ),
            Some("remove user_readenv=1 from pam_env (off by default; Linux-PAM deprecates it)".to_string()),
        )
    })
}

impl Report {
    /// The table: one line per check, its fix indented below it.
    pub fn render_text(&self, header: &str) -> String {
        let width = self
            .checks
            .iter()
            .map(|check| check.check.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!("{header}\n");
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                check.status.label(),
                check.check,
                check.found
            );
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "{:<4}  {:<width$}  fix: {fix}", "", "");
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        let _ = writeln!(
            out,
            "{} FAIL, {} WARN, {} OK",
            count(Status::Fail),
            count(Status::Warn),
            count(Status::Ok)
        );
        out
    }
}

#[cfg(test)]
mod tests;
