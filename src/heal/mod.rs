//! Auto-heal: probe the site, keep the downtime record, and when the site
//! has been down past the grace in force, kill the protected tasks and
//! restart the services (the Hypernode practice in the seeds).
//!
//! `check` is one run, for a timer; `watch` repeats it as a daemon. Both
//! take the lock first, so two runs never act at once.

mod act;
pub mod alerts;
pub mod decide;
pub mod limits;
pub mod notify;
mod probe;
pub mod state;
mod watchdog;

use std::os::fd::AsFd;
use std::time::Duration;

use jiff::Zoned;
use jiff::tz::TimeZone;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;

pub use act::Actions;
use decide::{ActionRecord, Decision, ProbeResult, Site, Verdict};

use crate::cgroupfs::Root;
use crate::config::heal::{HealConfig, NotifyEvent};
use crate::observe::events::Watcher;
use crate::observe::metrics::{DecisionCounts, HealMetrics};
use crate::signals::Signals;
use std::fs::File;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error("the config has no [heal] section")]
    NotConfigured,
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot watch for signals: {0}")]
    Signals(nix::errno::Errno),
}

#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    pub dry_run: bool,
    /// How long to wait for another run's lock before giving up.
    pub lock_wait: Duration,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub probes: Vec<ProbeResult>,
    /// What was done; `null` when nothing was (or, with --dry-run, would be).
    pub actions: Option<Actions>,
    pub dry_run: bool,
}

#[derive(Debug)]
pub enum CheckOutcome {
    Done(Box<Report>),
    /// Another heal run holds the lock.
    Busy,
}

/// The record a watcher keeps in memory while the state file cannot take
/// it (a full disk): the flap limiter keeps counting its actions.
#[derive(Debug, Default)]
pub struct Remembered(Option<decide::Record>);

/// One check. The action is recorded before it is taken: a healer that
/// cannot record it would not know, next time, that it acted, and the flap
/// limiter could not hold back a loop of kills and restarts. `heal check`
/// then does not act; a watcher acts on the record it keeps in memory
/// (`remembered`).
pub fn check(
    root: &Root,
    config: &HealConfig,
    tz: &TimeZone,
    options: CheckOptions,
    mut remembered: Option<&mut Remembered>,
) -> Result<CheckOutcome, HealError> {
    let _lock = if options.dry_run {
        None
    } else {
        match state::lock(&config.lock_file, options.lock_wait)? {
            Some(lock) => Some(lock),
            None => return Ok(CheckOutcome::Busy),
        }
    };
    if !options.dry_run {
        collect_leftover_groups(root, config);
    }
    let probes: Vec<ProbeResult> = config.services.iter().map(probe::probe).collect();
    let loaded = match remembered.as_deref().and_then(|kept| kept.0.clone()) {
        Some(record) => decide::Loaded::Record(record),
        None => state::load(&config.state_file),
    };
    let now = Zoned::now().with_time_zone(tz.clone());
    let oom_kills = match &config.storm {
        Some(rule) => match root.memory_events(&config.layout.cgroup_of(&rule.slice)) {
            Ok(events) => Some(events.oom_kill),
            Err(err) => {
                tracing::error!("cannot read the storm slice's OOM kills: {err}");
                None
            }
        },
        None => None,
    };
    let (mut verdict, mut next) = decide::decide(&probes, &loaded, &now, oom_kills, config);
    if let Some(note) = &verdict.record_note {
        tracing::error!("{note}");
    }
    if options.dry_run {
        log(&verdict, &probes, None, true);
        return Ok(CheckOutcome::Done(Box::new(Report {
            verdict,
            probes,
            actions: None,
            dry_run: true,
        })));
    }
    let mut unrecorded = None;
    if verdict.act {
        let previous = next.last_action.replace(ActionRecord {
            at: verdict.at,
            reason: verdict.reason.clone(),
            killed: Vec::new(),
            restarted: Vec::new(),
        });
        if let Err(err) = record(config, &next, remembered.as_deref_mut()) {
            if remembered.is_none() {
                // Held back: the record must not count an action that
                // did not happen.
                next.last_action = previous;
                next.actions.retain(|at| *at != verdict.at);
                verdict.act = false;
                verdict.reason = format!(
                    "{}; not acting: the action cannot be recorded ({err}), and unrecorded the flap limiter could not hold back a loop of actions",
                    verdict.reason
                );
            }
            unrecorded = Some(err);
        }
    }
    let actions = verdict
        .act
        .then(|| act::heal(root, config, &verdict.restart, &verdict.reason));
    if let Some(actions) = &actions {
        next.last_action = Some(ActionRecord {
            at: verdict.at,
            reason: verdict.reason.clone(),
            killed: actions.killed.clone(),
            restarted: actions.restarted.clone(),
        });
    }
    log(&verdict, &probes, actions.as_ref(), false);
    *next.oom_book = tell_oom_kills(root, config, &next.oom_book, verdict.at);
    let saved = record(config, &next, remembered.as_deref_mut());
    let notice = notify::notice(&verdict, actions.as_ref(), unrecorded.as_ref());
    let tell = actions.is_some() || verdict.flap_tripped_now || unrecorded.is_some();
    if let (Some((hook, timeout)), true) = (config.hook_for(notice.event), tell)
        && let Err(err) = notify::send(hook, &notice, timeout, probe::Environment::Inherited)
    {
        tracing::warn!("notify hook failed (healing is not affected): {err}");
    }
    match (saved, remembered.is_some()) {
        (Err(err), false) if unrecorded.is_none() => return Err(err.into()),
        _ => {}
    }
    Ok(CheckOutcome::Done(Box::new(Report {
        verdict,
        probes,
        actions,
        dry_run: false,
    })))
}

/// Reads every managed slice's OOM kills and tells the notify hook about
/// new ones (per slice, once per notify_window). Returns the book to keep.
fn tell_oom_kills(
    root: &Root,
    config: &HealConfig,
    book: &alerts::OomBook,
    now: jiff::Timestamp,
) -> alerts::OomBook {
    let counters = config
        .slices
        .iter()
        .filter_map(|slice| {
            let events = root
                .memory_events_if_enabled(&config.layout.cgroup_of(slice))
                .ok()??;
            Some((slice.clone(), events.oom_kill))
        })
        .collect();
    let (notices, next) = alerts::oom_notices(book, &counters, now, config.notify_window);
    for notice in &notices {
        tracing::warn!(
            slice = %notice.slice,
            kills = notice.kills,
            "the kernel OOM-killed {} process(es) in {}",
            notice.kills,
            notice.slice
        );
        if let Some((hook, timeout)) = config.hook_for(NotifyEvent::OomKill)
            && let Err(err) = notify::send(hook, notice, timeout, probe::Environment::Inherited)
        {
            tracing::warn!("notify hook failed: {err}");
        }
    }
    next
}

/// Removes the empty task groups a killed memslice left behind in the
/// protected slices, so no operator has to remember `memslice tasks gc`.
fn collect_leftover_groups(root: &Root, config: &HealConfig) {
    let slices: Vec<String> = config
        .protected
        .iter()
        .map(|slice| config.layout.cgroup_of(slice))
        .collect();
    if let Err(err) = crate::spawn::task::gc(root, &slices) {
        tracing::warn!("cannot look for task groups left behind: {err}");
    }
}

/// Saves the record; when that fails, a watcher keeps it in memory (and
/// forgets it once the file takes a record again).
fn record(
    config: &HealConfig,
    next: &decide::Record,
    remembered: Option<&mut Remembered>,
) -> Result<(), state::StateError> {
    let saved = state::save(&config.state_file, next);
    if let Err(err) = &saved {
        tracing::error!("cannot record the heal state: {err}");
    }
    if let Some(kept) = remembered {
        kept.0 = saved.is_err().then(|| next.clone());
    }
    saved
}

/// One line per decision, with the downtime, the grace in force and why.
/// The actions log their own lines, with their group or service.
fn log(verdict: &Verdict, probes: &[ProbeResult], actions: Option<&Actions>, dry_run: bool) {
    let shift = if verdict.night { "night" } else { "day" };
    let decision = verdict.decision(dry_run).as_str();
    let failing: Vec<&str> = probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| p.detail.as_str())
        .collect();
    match (verdict.site, actions) {
        (_, Some(actions)) => tracing::warn!(
            decision,
            down_for_s = verdict.down_for_seconds,
            grace_s = verdict.grace_seconds,
            shift,
            killed = ?actions.killed,
            restarted = ?actions.restarted,
            "acted: {} [{}]",
            verdict.reason,
            failing.join("; ")
        ),
        (Site::Up, _) => tracing::info!(
            decision,
            down_for_s = 0,
            grace_s = verdict.grace_seconds,
            shift,
            "up: {}",
            verdict.reason
        ),
        (_, None) if verdict.flap_tripped_now => tracing::error!(
            decision,
            down_for_s = verdict.down_for_seconds,
            grace_s = verdict.grace_seconds,
            shift,
            recent_actions = verdict.recent_actions,
            "flap limiter tripped: {}",
            verdict.reason
        ),
        (_, None) => tracing::warn!(
            decision,
            down_for_s = verdict.down_for_seconds,
            grace_s = verdict.grace_seconds,
            shift,
            dry_run,
            "{}{} [{}]",
            if dry_run && verdict.act {
                "would act: "
            } else {
                ""
            },
            verdict.reason,
            failing.join("; ")
        ),
    }
}

/// Runs `check` on the wall-clock grid of `interval` until SIGTERM or
/// SIGINT. After a suspend or a stall it checks once, says how far it fell
/// behind, and goes back to the grid; it never runs the missed checks.
/// `counts`, when given, tallies each check's outcome for the metrics endpoint.
pub fn watch(
    root: &Root,
    config: &HealConfig,
    tz: &TimeZone,
    event_groups: &[String],
    counts: Option<&Mutex<DecisionCounts>>,
    signals: &Signals,
) -> Result<(), HealError> {
    let mut events = match Watcher::new(root, event_groups) {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::error!("memory events will not be logged: {err}");
            None
        }
    };
    tracing::info!(
        interval_s = config.interval.as_secs_f64(),
        "heal watch started"
    );
    let pressure = arm_pressure(root, config);
    let ops_group = config.layout.cgroup_of(crate::journal::OPS_SLICE);
    let mut notifier = watchdog::Notifier::from_env();
    let budget = watchdog::check_budget(config, WATCH_LOCK_WAIT);
    let mut planned = jiff::Timestamp::now();
    let mut remembered = Remembered::default();
    loop {
        notifier.check_starts(budget);
        let outcome = check(
            root,
            config,
            tz,
            CheckOptions {
                dry_run: false,
                lock_wait: WATCH_LOCK_WAIT,
            },
            Some(&mut remembered),
        );
        let status = match outcome {
            Ok(CheckOutcome::Busy) => {
                // Counted before it is logged: whoever reads the log line
                // finds the count already there.
                if let Some(mut counts) = counts.and_then(|c| c.lock().ok()) {
                    counts.lock_busy += 1;
                }
                tracing::error!(
                    decision = Decision::LockBusy.as_str(),
                    "another process holds {} past the wait; this check was skipped",
                    config.lock_file.display()
                );
                format!(
                    "check skipped: another process holds {}",
                    config.lock_file.display()
                )
            }
            Ok(CheckOutcome::Done(report)) => {
                if let Some(mut counts) = counts.and_then(|c| c.lock().ok()) {
                    match report.verdict.decision(false) {
                        Decision::Acted => counts.acted += 1,
                        Decision::HeldBack => counts.held_back += 1,
                        Decision::Up => counts.up += 1,
                        _ => counts.down += 1,
                    }
                }
                watchdog::status_line(&report.verdict)
            }
            Err(err) => {
                tracing::error!("heal check failed: {err}");
                format!("check failed: {err}")
            }
        };
        notifier.check_done(&status);
        let (next, missed) = limits::next_tick(planned, jiff::Timestamp::now(), config.interval);
        if missed > 1 {
            tracing::warn!(
                missed,
                "heal watch fell behind the clock by {missed} intervals (suspend or stall); the next check is on the grid"
            );
        }
        planned = next;
        match wait_until(
            next,
            signals,
            events.as_mut(),
            pressure.as_ref(),
            &ops_group,
            &mut notifier,
        )? {
            Wake::Stop => {
                notifier.stopping();
                return Ok(());
            }
            Wake::Tick => {}
            Wake::Pressure => {
                if let Some(trigger) = &config.pressure {
                    tracing::warn!(
                        slice = %trigger.slice,
                        "memory pressure crossed {} {:?} per {:?}: checking now",
                        trigger.kind,
                        trigger.stall,
                        trigger.window
                    );
                }
                planned = jiff::Timestamp::now();
            }
        }
    }
}

/// How long a watcher's check waits for another run's lock.
const WATCH_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Why `heal watch` woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The next tick of the grid.
    Tick,
    /// The PSI trigger fired: check now.
    Pressure,
    /// SIGTERM or SIGINT.
    Stop,
}

/// Sleeps until `next`, logging memory events and pinging systemd's
/// watchdog meanwhile; wakes early for a signal or the pressure trigger.
/// `ops_group` is the operations slice's cgroup: an OOM kill in it is critical.
fn wait_until(
    next: jiff::Timestamp,
    signals: &Signals,
    mut events: Option<&mut Watcher<'_>>,
    pressure: Option<&File>,
    ops_group: &str,
    notifier: &mut watchdog::Notifier,
) -> Result<Wake, HealError> {
    loop {
        notifier.ping_if_due();
        let mut wait =
            Duration::try_from(next.duration_since(jiff::Timestamp::now())).unwrap_or_default();
        if wait.is_zero() {
            return Ok(Wake::Tick);
        }
        if let Some(deadline) = notifier.ping_deadline() {
            wait = wait.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        // Rounded up, so the loop does not spin through the last millisecond.
        let millis = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let (signalled, event, pressed) = {
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            let event_at = events.as_deref().map(|watcher| {
                fds.push(PollFd::new(watcher.fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let pressure_at = pressure.map(|file| {
                fds.push(PollFd::new(file.as_fd(), PollFlags::POLLPRI));
                fds.len() - 1
            });
            match poll(
                &mut fds,
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(HealError::Signals(errno)),
            }
            let ready = |at: Option<usize>| at.is_some_and(|i| fds[i].any().unwrap_or(false));
            (ready(Some(0)), ready(event_at), ready(pressure_at))
        };
        // Events first: a stop must not drop the kills that came before it.
        if let (true, Some(watcher)) = (event, events.as_deref_mut()) {
            match watcher.collect() {
                Ok(found) => found
                    .iter()
                    .for_each(|event| log_memory_event(event, ops_group)),
                Err(err) => tracing::error!("cannot read memory events: {err}"),
            }
        }
        if signalled {
            let signal = signals.read().ok().flatten().map(|info| info.ssi_signo);
            tracing::info!(signal, "heal watch stopping");
            return Ok(Wake::Stop);
        }
        if pressed {
            return Ok(Wake::Pressure);
        }
    }
}

/// One line per memory event, with its group and kind for the journal; an
/// OOM kill on the operations side is critical.
fn log_memory_event(event: &crate::observe::events::Event, ops_group: &str) {
    if crate::journal::is_ops_kill(&event.group, event.kind, ops_group) {
        tracing::error!(
            target: crate::journal::CRITICAL,
            group = %event.group,
            event = event.kind.name(),
            "OOM kill in the operations slice: {}",
            event.line()
        );
    } else {
        tracing::warn!(
            group = %event.group,
            event = event.kind.name(),
            "memory event: {}",
            event.line()
        );
    }
}

/// Arms the PSI trigger on the slice's memory.pressure (an emulated root
/// has none). The file must stay open: closing it removes the trigger.
fn arm_pressure(root: &Root, config: &HealConfig) -> Option<File> {
    let trigger = config.pressure.as_ref()?;
    let group = config.layout.cgroup_of(&trigger.slice);
    match root.arm_pressure_trigger(&group, &trigger.kernel_text()) {
        Ok(Some(file)) => {
            tracing::info!(slice = %trigger.slice, trigger = %trigger.kernel_text(), "memory pressure trigger armed");
            Some(file)
        }
        Ok(None) => {
            tracing::info!("pressure trigger skipped: this cgroup root has no PSI");
            None
        }
        Err(err) => {
            tracing::error!("cannot arm the pressure trigger: {err}");
            None
        }
    }
}

/// The healer's state for `memslice metrics` and the watch endpoint, from
/// the state file (an unreadable one reads as no outage).
pub fn metrics(config: &HealConfig, decisions: Option<DecisionCounts>) -> HealMetrics {
    let record = match state::load(&config.state_file) {
        decide::Loaded::Record(record) => record,
        decide::Loaded::Missing | decide::Loaded::Corrupt(_) => decide::Record::default(),
    };
    let now = jiff::Timestamp::now();
    HealMetrics {
        down: record.down_since.is_some(),
        downtime_seconds: record
            .down_since
            .and_then(|since| Duration::try_from(now.duration_since(since)).ok())
            .map_or(0, |d| d.as_secs()),
        flapping: record.flap_reported,
        recent_actions: limits::recent_actions(&record.actions, now, config.actions_window),
        last_action_unix: record.last_action.map(|action| action.at.as_second()),
        decisions,
    }
}

/// `memslice heal reset`: forget the action history so a tripped flap
/// limiter lets the healer act again. Returns how many actions it forgot.
pub fn reset(config: &HealConfig) -> Result<Option<usize>, HealError> {
    let Some(_lock) = state::lock(&config.lock_file, Duration::from_secs(5))? else {
        return Ok(None);
    };
    let mut record = match state::load(&config.state_file) {
        decide::Loaded::Record(record) => record,
        decide::Loaded::Missing | decide::Loaded::Corrupt(_) => decide::Record::default(),
    };
    let forgotten = record.actions.len();
    record.actions.clear();
    record.flap_reported = false;
    state::save(&config.state_file, &record)?;
    tracing::warn!(
        forgotten,
        "heal reset: the flap limiter's history was cleared by hand"
    );
    Ok(Some(forgotten))
}
