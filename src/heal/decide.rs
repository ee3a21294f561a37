//! The healer's decision, as a pure function of the probe results, the
//! stored record, the time and the config, so every rule is a unit test.
//!
//! Downtime is measured between instants (DST cannot stretch or shrink
//! it); which grace is in force is read off the local clock at `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use super::limits::{self, OomSample, Storm};
use crate::config::duration::human;
use crate::config::heal::{HealConfig, StormConfig};

/// What survives between runs, in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the site was first seen down in the current outage.
    pub down_since: Option<Timestamp>,
    /// Consecutive failed checks per service.
    pub failures: BTreeMap<String, u32>,
    pub last_action: Option<ActionRecord>,
    /// Heal actions within the flap limiter's window.
    #[serde(default)]
    pub actions: Vec<Timestamp>,
    /// Since when every service passes; the action history is forgotten
    /// once this lasts `stable_after`.
    #[serde(default)]
    pub up_since: Option<Timestamp>,
    /// The flap limiter's trip was logged (once per trip).
    #[serde(default)]
    pub flap_reported: bool,
    /// Recent readings of the storm slice's oom_kill counter.
    #[serde(default)]
    pub oom_samples: Vec<OomSample>,
    /// OOM kills per slice seen and told to the notify hook (boxed: the
    /// record is passed around by value and most of it is small).
    #[serde(default)]
    pub oom_book: Box<super::alerts::OomBook>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub at: Timestamp,
    pub reason: String,
    pub killed: Vec<String>,
    pub restarted: Vec<String>,
}

/// The state file as it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Record(Record),
    /// First run, or the file was removed.
    Missing,
    /// Unreadable or not a record: treated as unknown, downtime counts
    /// from now, never from some old or zero instant.
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub service: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    Up,
    /// Some probe failed, not yet often enough to count as down.
    Failing,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub at: Timestamp,
    pub site: Site,
    pub failing: Vec<String>,
    pub down: Vec<String>,
    pub down_since: Option<Timestamp>,
    pub down_for_seconds: u64,
    pub grace_seconds: u64,
    pub night: bool,
    pub act: bool,
    /// Services whose restart runs with the action (empty for a storm
    /// response before the grace is over).
    pub restart: Vec<String>,
    pub reason: String,
    /// Why the stored record was not used as it was.
    pub record_note: Option<String>,
    /// The OOM storm that triggered (or would trigger) an action.
    pub storm: Option<Storm>,
    /// Heal actions within the limiter's window, this one included.
    pub recent_actions: usize,
    /// The flap limiter holds the healer back.
    pub flapping: bool,
    /// First check since the limiter tripped: log and notify once.
    pub flap_tripped_now: bool,
}

/// `oom_kills`: the storm slice's memory.events oom_kill now, when a storm
/// rule is configured. The phases run in order: the stored record is
/// checked, the probes tallied, the outage measured against the grace in
/// force, the storm detected, and the flap limiter has the last word.
pub fn decide(
    probes: &[ProbeResult],
    loaded: &Loaded,
    now: &Zoned,
    oom_kills: Option<u64>,
    config: &HealConfig,
) -> (Verdict, Record) {
    let at = now.timestamp();
    let (record, record_note) = usable_record(loaded, at);
    let tally = tally(probes, &record.failures, config.failures_before_down);
    let outage = outage(record.down_since, !tally.down.is_empty(), at);
    let shift = shift(now, config);
    let past_grace = outage.past(shift.grace);
    let (oom_samples, storm) = storm(&record.oom_samples, oom_kills, at, config.storm.as_ref());
    let mut history = history(&record, tally.down.is_empty(), at, config);
    let limiter = limiter(past_grace || storm.is_some(), &history, at, config);
    if limiter.act {
        history.actions.push(at);
    }
    let reason = reason(
        &tally,
        &outage,
        &shift,
        storm.as_ref().zip(config.storm.as_ref()),
        limiter.flapping.then_some(history.actions.len()),
        config,
    );
    let next = Record {
        // After an action a new grace period starts, so the healer does
        // not act again on every check while the services come back.
        down_since: outage
            .since
            .map(|since| if limiter.act { at } else { since }),
        failures: tally.failures,
        last_action: record.last_action,
        up_since: history.up_since,
        // A new trip after the healer could act again is reported again.
        flap_reported: !limiter.act && (history.flap_reported || limiter.flapping),
        actions: history.actions,
        oom_samples,
        // Kept as it was: check() updates it when it tells the hook.
        oom_book: record.oom_book,
    };
    let site = match (outage.since.is_some(), tally.failing.is_empty()) {
        (true, _) => Site::Down,
        (false, true) => Site::Up,
        (false, false) => Site::Failing,
    };
    let verdict = Verdict {
        at,
        site,
        failing: tally.failing,
        restart: if past_grace && limiter.act {
            tally.down.clone()
        } else {
            Vec::new()
        },
        down: tally.down,
        down_since: outage.since,
        down_for_seconds: outage.down_for.as_secs(),
        grace_seconds: shift.grace.as_secs(),
        night: shift.night,
        act: limiter.act,
        reason,
        record_note,
        storm,
        recent_actions: next.actions.len(),
        flapping: limiter.flapping,
        flap_tripped_now: limiter.tripped_now,
    };
    (verdict, next)
}

/// The stored record as far as it can be trusted, and why it was not
/// used as it was: unusable or from the future, downtime counts from now.
fn usable_record(loaded: &Loaded, at: Timestamp) -> (Record, Option<String>) {
    let (mut record, mut note) = match loaded {
        Loaded::Record(record) => (record.clone(), None),
        Loaded::Missing => (Record::default(), None),
        Loaded::Corrupt(why) => (
            Record::default(),
            Some(format!(
                "state file unusable ({why}); downtime counts from now"
            )),
        ),
    };
    if let Some(since) = record.down_since.filter(|since| *since > at) {
        note = Some(format!(
            "state file says the outage began in the future ({since}); downtime counts from now"
        ));
        record.down_since = None;
    }
    (record, note)
}

/// What this check's probes say, counted against the failures before.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    /// Consecutive failures per service, this check included.
    failures: BTreeMap<String, u32>,
    /// Services whose probe failed now.
    failing: Vec<String>,
    /// Services that failed `failures_before_down` checks in a row.
    down: Vec<String>,
}

fn tally(
    probes: &[ProbeResult],
    before: &BTreeMap<String, u32>,
    failures_before_down: u32,
) -> Tally {
    let mut tally = Tally {
        failures: BTreeMap::new(),
        failing: Vec::new(),
        down: Vec::new(),
    };
    for probe in probes {
        let count = if probe.ok {
            0
        } else {
            tally.failing.push(probe.service.clone());
            before
                .get(&probe.service)
                .copied()
                .unwrap_or(0)
                .saturating_add(1)
        };
        if count >= failures_before_down {
            tally.down.push(probe.service.clone());
        }
        tally.failures.insert(probe.service.clone(), count);
    }
    tally
}

/// The current outage: when it began (`None` while the site is not down)
/// and how long it has lasted, measured between instants.
#[derive(Debug, PartialEq, Eq)]
struct Outage {
    since: Option<Timestamp>,
    down_for: Duration,
}

impl Outage {
    fn past(&self, grace: Duration) -> bool {
        self.since.is_some() && self.down_for >= grace
    }
}

fn outage(recorded: Option<Timestamp>, down: bool, at: Timestamp) -> Outage {
    let since = down.then(|| recorded.unwrap_or(at));
    Outage {
        since,
        down_for: since.map_or(Duration::ZERO, |since| {
            Duration::try_from(at.duration_since(since)).unwrap_or(Duration::ZERO)
        }),
    }
}

/// Which grace is in force, read off the local clock.
#[derive(Debug, PartialEq, Eq)]
struct Shift {
    night: bool,
    grace: Duration,
}

impl Shift {
    fn name(&self) -> &'static str {
        if self.night { "night" } else { "day" }
    }
}

fn shift(now: &Zoned, config: &HealConfig) -> Shift {
    let night = config
        .night
        .is_some_and(|window| window.contains(now.time()));
    Shift {
        night,
        grace: if night {
            config.grace_night
        } else {
            config.grace_day
        },
    }
}

/// Records this check's oom_kill reading and looks for a storm in the
/// rule's window. Without a rule or a reading, nothing is kept.
fn storm(
    before: &[OomSample],
    oom_kills: Option<u64>,
    at: Timestamp,
    rule: Option<&StormConfig>,
) -> (Vec<OomSample>, Option<Storm>) {
    let (Some(rule), Some(kills)) = (rule, oom_kills) else {
        return (Vec::new(), None);
    };
    let samples = limits::record_sample(before, OomSample { at, kills }, rule.window);
    let storm = limits::storm(&samples, rule.kills, rule.window);
    (samples, storm)
}

/// The flap limiter's memory after this check: actions still within the
/// window, since when every service passes, whether the trip was told.
#[derive(Debug, PartialEq, Eq)]
struct History {
    actions: Vec<Timestamp>,
    up_since: Option<Timestamp>,
    flap_reported: bool,
}

/// Forgets actions outside the window, and the whole history once every
/// service has been up for `stable_after` (not on the first pass).
fn history(record: &Record, all_up: bool, at: Timestamp, config: &HealConfig) -> History {
    let up_since = all_up.then(|| record.up_since.unwrap_or(at));
    let stable = up_since.is_some_and(|since| {
        Duration::try_from(at.duration_since(since)).unwrap_or_default() >= config.stable_after
    });
    if stable {
        return History {
            actions: Vec::new(),
            up_since,
            flap_reported: false,
        };
    }
    History {
        actions: record
            .actions
            .iter()
            .copied()
            .filter(|action| limits::recent_actions(&[*action], at, config.actions_window) == 1)
            .collect(),
        up_since,
        flap_reported: record.flap_reported,
    }
}

/// Whether the healer acts on what it wants, or the flap limiter holds it.
#[derive(Debug, PartialEq, Eq)]
struct Limiter {
    act: bool,
    flapping: bool,
    /// First check since the limiter tripped: log and notify once.
    tripped_now: bool,
}

fn limiter(wanted: bool, history: &History, at: Timestamp, config: &HealConfig) -> Limiter {
    let allowed = limits::may_act(
        &history.actions,
        at,
        config.max_actions,
        config.actions_window,
    );
    let flapping = wanted && !allowed;
    Limiter {
        act: wanted && allowed,
        flapping,
        tripped_now: flapping && !history.flap_reported,
    }
}

/// The one line that says why: the probes, the outage against the grace,
/// a storm, and the limiter holding back (`held_back`: the actions within
/// the window).
fn reason(
    tally: &Tally,
    outage: &Outage,
    shift: &Shift,
    storm: Option<(&Storm, &StormConfig)>,
    held_back: Option<usize>,
    config: &HealConfig,
) -> String {
    let past_grace = outage.past(shift.grace);
    let mut reason = match outage.since {
        None if tally.failing.is_empty() => {
            format!("all {} service(s) pass", tally.failures.len())
        }
        None => format!(
            "{} failing, not yet {} checks in a row",
            tally.failing.join(", "),
            config.failures_before_down
        ),
        Some(_) if past_grace => format!(
            "{} down for {}, past the {} {} grace: killing protected tasks and restarting",
            tally.down.join(", "),
            human(outage.down_for),
            human(shift.grace),
            shift.name()
        ),
        Some(_) => format!(
            "{} down for {}; {} grace {} not over",
            tally.down.join(", "),
            human(outage.down_for),
            shift.name(),
            human(shift.grace)
        ),
    };
    if let Some((found, rule)) = storm {
        let storm_reason = format!(
            "OOM storm in {}: {} kills in {:.1}s ({:.1}/s, the limit is {} per {}): killing protected tasks now",
            rule.slice,
            found.kills,
            found.seconds,
            found.per_second,
            rule.kills,
            human(rule.window)
        );
        reason = if past_grace {
            format!("{reason}; {storm_reason}")
        } else {
            storm_reason
        };
    }
    if let Some(actions) = held_back {
        reason = format!(
            "{reason}, but {actions} heal action(s) within {} already: holding back until `memslice heal reset` or the window passes",
            human(config.actions_window)
        );
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::duration::{NightWindow, parse_window};
    use jiff::tz::TimeZone;

    fn config(night: Option<NightWindow>) -> HealConfig {
        HealConfig {
            night,
            ..crate::config::heal::example()
        }
    }

    /// One check with the web service failing.
    fn web_down(loaded: &Loaded, now: &Zoned, config: &HealConfig) -> (Verdict, Record) {
        decide(&[probe("web", false)], loaded, now, None, config)
    }

    fn probe(service: &str, ok: bool) -> ProbeResult {
        ProbeResult {
            service: service.into(),
            ok,
            detail: String::new(),
        }
    }

    fn at(text: &str, zone: &str) -> Zoned {
        let tz = TimeZone::get(zone).unwrap_or_else(|err| {
            panic!("{zone} ({err}): the tests need the system tz database (apt-get install tzdata)")
        });
        text.parse::<jiff::civil::DateTime>()
            .expect("datetime")
            .to_zoned(tz)
            .expect("zoned")
    }

    /// A stored outage that began `minutes_before`, with heal actions taken
    /// `actions` minutes ago.
    fn outage(minutes_before: i64, actions: &[i64], now: &Zoned) -> Loaded {
        let ago = |minutes: i64| now.timestamp() - jiff::SignedDuration::from_mins(minutes);
        Loaded::Record(Record {
            down_since: Some(ago(minutes_before)),
            failures: BTreeMap::from([("web".to_string(), 5)]),
            actions: actions.iter().map(|m| ago(*m)).collect(),
            ..Record::default()
        })
    }

    fn down_since(minutes_before: i64, now: &Zoned) -> Loaded {
        outage(minutes_before, &[], now)
    }

    #[test]
    fn all_passing_resets_the_outage() {
        let now = at("2026-06-01T12:00", "Europe/Amsterdam");
        let (verdict, next) = decide(
            &[probe("web", true)],
            &down_since(60, &now),
            &now,
            None,
            &config(None),
        );
        assert_eq!(verdict.site, Site::Up);
        assert!(!verdict.act);
        assert_eq!(next.down_since, None);
        assert_eq!(next.failures["web"], 0);
    }

    #[test]
    fn one_failure_is_not_yet_down() {
        let now = at("2026-06-01T12:00", "UTC");
        let (verdict, next) = web_down(&Loaded::Missing, &now, &config(None));
        assert_eq!(verdict.site, Site::Failing);
        assert_eq!(verdict.reason, "web failing, not yet 2 checks in a row");
        assert_eq!((next.failures["web"], next.down_since), (1, None));
        let (verdict, next) = web_down(&Loaded::Record(next), &now, &config(None));
        assert_eq!(verdict.site, Site::Down);
        assert_eq!(next.down_since, Some(now.timestamp()));
        assert!(!verdict.act, "a new outage starts its grace now");
    }

    #[test]
    fn day_grace_applies_by_day() {
        let night = parse_window("22:00-07:00").ok();
        let now = at("2026-06-01T14:00", "Europe/Amsterdam");
        let (verdict, _) = web_down(&down_since(2, &now), &now, &config(night));
        assert_eq!(
            (verdict.night, verdict.grace_seconds, verdict.act),
            (false, 180, false)
        );
        assert_eq!(verdict.reason, "web down for 2m; day grace 3m not over");
        let (verdict, next) = web_down(&down_since(4, &now), &now, &config(night));
        assert!(verdict.act);
        assert_eq!(
            verdict.reason,
            "web down for 4m, past the 3m day grace: killing protected tasks and restarting"
        );
        assert_eq!(
            verdict.down_since,
            Some(now.timestamp() - jiff::SignedDuration::from_mins(4))
        );
        assert_eq!(
            next.down_since,
            Some(now.timestamp()),
            "a new grace starts after acting"
        );
    }

    #[test]
    fn night_grace_applies_across_midnight() {
        let night = parse_window("22:00-07:00").ok();
        for clock in ["2026-06-01T23:30", "2026-06-02T00:10", "2026-06-02T06:59"] {
            let now = at(clock, "Europe/Amsterdam");
            let (verdict, _) = web_down(&down_since(10, &now), &now, &config(night));
            assert_eq!(
                (verdict.night, verdict.grace_seconds, verdict.act),
                (true, 900, false),
                "{clock}"
            );
        }
        let now = at("2026-06-02T07:00", "Europe/Amsterdam");
        let (verdict, _) = web_down(&down_since(10, &now), &now, &config(night));
        assert_eq!(
            (verdict.night, verdict.act),
            (false, true),
            "07:00 is day again and 10m is past 3m"
        );
    }

    #[test]
    fn the_night_is_read_in_the_configured_zone() {
        let night = parse_window("22:00-07:00").ok();
        // 21:30 UTC is 23:30 in Amsterdam (CEST): night there.
        let utc = at("2026-06-01T21:30", "UTC");
        let amsterdam = utc.with_time_zone(TimeZone::get("Europe/Amsterdam").expect("tz"));
        let (in_utc, _) = web_down(&down_since(10, &utc), &utc, &config(night));
        let (in_ams, _) = web_down(&down_since(10, &amsterdam), &amsterdam, &config(night));
        assert!(!in_utc.night && in_ams.night);
    }

    #[test]
    fn dst_does_not_stretch_the_downtime() {
        // Europe/Amsterdam springs forward at 02:00 CET to 03:00 CEST on 2026-03-29.
        let before = at("2026-03-29T01:55", "Europe/Amsterdam");
        let after = at("2026-03-29T03:05", "Europe/Amsterdam");
        let record = Loaded::Record(Record {
            down_since: Some(before.timestamp()),
            failures: BTreeMap::from([("web".to_string(), 3)]),
            ..Record::default()
        });
        let (verdict, _) = web_down(&record, &after, &config(None));
        assert_eq!(
            verdict.down_for_seconds, 600,
            "70 minutes on the wall clock are 10 real minutes"
        );
        assert!(verdict.act, "10m is past the 3m day grace");
        let night = parse_window("02:30-06:00").ok();
        let (verdict, _) = web_down(&record, &after, &config(night));
        assert!(verdict.night, "03:05 CEST is inside 02:30-06:00");
    }

    #[test]
    fn a_record_from_the_future_counts_from_now() {
        let now = at("2026-06-01T12:00", "UTC");
        let (verdict, next) = web_down(&down_since(-60, &now), &now, &config(None));
        assert_eq!(verdict.down_for_seconds, 0);
        assert!(!verdict.act);
        assert!(
            verdict
                .record_note
                .as_deref()
                .is_some_and(|n| n.contains("in the future")),
            "{verdict:?}"
        );
        assert_eq!(next.down_since, Some(now.timestamp()));
    }

    #[test]
    fn a_corrupt_record_is_unknown_not_a_long_outage() {
        let now = at("2026-06-01T12:00", "UTC");
        let corrupt = Loaded::Corrupt("expected value at line 1".into());
        let (verdict, next) = web_down(&corrupt, &now, &config(None));
        assert_eq!(
            verdict.site,
            Site::Failing,
            "failure counts restart from zero"
        );
        assert!(!verdict.act);
        assert!(
            verdict
                .record_note
                .as_deref()
                .is_some_and(|n| n.contains("unusable"))
        );
        let (verdict, _) = web_down(&Loaded::Record(next), &now, &config(None));
        assert_eq!(
            (verdict.site, verdict.down_for_seconds, verdict.act),
            (Site::Down, 0, false)
        );
    }

    fn past_grace_at(now: &Zoned, actions: &[i64]) -> Loaded {
        outage(10, actions, now)
    }

    #[test]
    fn the_flap_limiter_holds_back_the_fourth_action_and_says_so_once() {
        let now = at("2026-06-01T12:00", "UTC");
        let (verdict, next) = web_down(&past_grace_at(&now, &[25, 15]), &now, &config(None));
        assert!(verdict.act && !verdict.flapping);
        assert_eq!(
            (verdict.recent_actions, verdict.restart.clone()),
            (3, vec!["web".to_string()])
        );
        let (verdict, next) = decide(
            &[probe("web", false)],
            &Loaded::Record(Record {
                down_since: next
                    .down_since
                    .map(|t| t - jiff::SignedDuration::from_mins(10)),
                ..next
            }),
            &now,
            None,
            &config(None),
        );
        assert!(
            !verdict.act && verdict.flapping && verdict.flap_tripped_now,
            "{verdict:?}"
        );
        assert!(verdict.reason.ends_with("but 3 heal action(s) within 30m already: holding back until `memslice heal reset` or the window passes"), "{}", verdict.reason);
        let (verdict, _) = web_down(&Loaded::Record(next), &now, &config(None));
        assert!(
            verdict.flapping && !verdict.flap_tripped_now,
            "logged once per trip"
        );
    }

    #[test]
    fn the_window_passing_lets_the_healer_act_again() {
        let now = at("2026-06-01T12:00", "UTC");
        let Loaded::Record(tripped) = past_grace_at(&now, &[40, 35, 20]) else {
            unreachable!("past_grace_at gives a record")
        };
        let tripped = Loaded::Record(Record {
            flap_reported: true,
            ..tripped
        });
        let (verdict, next) = web_down(&tripped, &now, &config(None));
        assert!(verdict.act, "two of three actions left the 30m window");
        assert_eq!(next.actions.len(), 2);
        assert!(
            !next.flap_reported,
            "the next trip is a new one, reported again"
        );
    }

    #[test]
    fn the_history_resets_after_a_stable_period_not_on_the_first_pass() {
        let now = at("2026-06-01T12:00", "UTC");
        let flapping = Record {
            actions: vec![now.timestamp() - jiff::SignedDuration::from_mins(5); 3],
            flap_reported: true,
            ..Record::default()
        };
        let (first, next) = decide(
            &[probe("web", true)],
            &Loaded::Record(flapping),
            &now,
            None,
            &config(None),
        );
        assert_eq!(
            (first.site, next.actions.len(), next.up_since),
            (Site::Up, 3, Some(now.timestamp())),
            "one pass is not stable"
        );
        let later = at("2026-06-01T12:09", "UTC");
        let (_, still) = decide(
            &[probe("web", true)],
            &Loaded::Record(next.clone()),
            &later,
            None,
            &config(None),
        );
        assert_eq!(
            still.actions.len(),
            3,
            "9 minutes is not the 10m stable_after"
        );
        let stable = at("2026-06-01T12:10", "UTC");
        let (_, reset) = decide(
            &[probe("web", true)],
            &Loaded::Record(next),
            &stable,
            None,
            &config(None),
        );
        assert!(reset.actions.is_empty() && !reset.flap_reported);
    }

    #[test]
    fn an_oom_storm_acts_before_the_grace_without_restarting() {
        let storm = crate::config::heal::StormConfig {
            slice: "app".into(),
            kills: 5,
            window: Duration::from_secs(1),
        };
        let config = HealConfig {
            storm: Some(storm),
            ..config(None)
        };
        let now = at("2026-06-01T12:00:00", "UTC");
        let (quiet, record) = decide(
            &[probe("web", true)],
            &Loaded::Missing,
            &now,
            Some(100),
            &config,
        );
        assert!(!quiet.act && quiet.storm.is_none());
        let soon = at("2026-06-01T12:00:01", "UTC");
        let (verdict, next) = decide(
            &[probe("web", true)],
            &Loaded::Record(record),
            &soon,
            Some(107),
            &config,
        );
        assert!(verdict.act, "{verdict:?}");
        assert_eq!(verdict.storm.map(|s| s.kills), Some(7));
        assert!(
            verdict.restart.is_empty(),
            "the services are up: nothing to restart"
        );
        assert_eq!(
            verdict.reason,
            "OOM storm in app: 7 kills in 1.0s (7.0/s, the limit is 5 per 1s): killing protected tasks now"
        );
        assert_eq!(
            next.actions,
            vec![soon.timestamp()],
            "a storm response counts for the flap limiter"
        );
        let calm = at("2026-06-01T12:01:00", "UTC");
        let (verdict, _) = decide(
            &[probe("web", true)],
            &Loaded::Record(next),
            &calm,
            Some(109),
            &config,
        );
        assert!(!verdict.act, "2 kills in a minute is no storm");
    }

    // The phases one by one.

    fn instant(minute: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + minute * 60).expect("timestamp")
    }

    #[test]
    fn tally_counts_failures_in_a_row_and_forgets_them_on_a_pass() {
        let before = BTreeMap::from([("web".to_string(), 1), ("db".to_string(), u32::MAX)]);
        let probes = [probe("web", false), probe("db", false), probe("php", true)];
        let tally = tally(&probes, &before, 2);
        assert_eq!(
            tally.failures,
            BTreeMap::from([
                ("web".to_string(), 2),
                ("db".to_string(), u32::MAX),
                ("php".to_string(), 0)
            ]),
            "a count saturates, never wraps to zero"
        );
        assert_eq!(tally.failing, ["web", "db"]);
        assert_eq!(tally.down, ["web", "db"]);
    }

    #[test]
    fn an_outage_starts_at_its_first_down_check() {
        let now = instant(10);
        assert_eq!(super::outage(Some(instant(4)), false, now).since, None);
        assert_eq!(
            super::outage(None, true, now),
            Outage {
                since: Some(now),
                down_for: Duration::ZERO
            }
        );
        let going = super::outage(Some(instant(4)), true, now);
        assert_eq!(going.down_for, Duration::from_secs(360));
        assert!(going.past(Duration::from_secs(360)) && !going.past(Duration::from_secs(361)));
    }

    #[test]
    fn the_shift_picks_the_grace() {
        let config = config(parse_window("22:00-07:00").ok());
        let day = shift(&at("2026-06-01T12:00", "UTC"), &config);
        let night = shift(&at("2026-06-01T23:00", "UTC"), &config);
        assert_eq!((day.name(), day.grace.as_secs()), ("day", 180));
        assert_eq!((night.name(), night.grace.as_secs()), ("night", 900));
    }

    #[test]
    fn a_future_or_corrupt_record_counts_from_now() {
        let now = instant(0);
        let future = Loaded::Record(Record {
            down_since: Some(instant(5)),
            ..Record::default()
        });
        let (record, note) = usable_record(&future, now);
        assert_eq!(record.down_since, None);
        assert!(note.is_some_and(|n| n.contains("in the future")));
        let (record, note) = usable_record(&Loaded::Corrupt("eof".into()), now);
        assert_eq!(record, Record::default());
        assert!(note.is_some_and(|n| n.contains("unusable (eof)")));
        assert_eq!(
            usable_record(&Loaded::Missing, now),
            (Record::default(), None)
        );
    }

    #[test]
    fn storm_samples_are_kept_only_with_a_rule_and_a_reading() {
        let rule = crate::config::heal::StormConfig {
            slice: "app".into(),
            kills: 5,
            window: Duration::from_secs(60),
        };
        assert_eq!(storm(&[], Some(3), instant(0), None), (Vec::new(), None));
        assert_eq!(
            storm(&[], None, instant(0), Some(&rule)),
            (Vec::new(), None)
        );
        let (samples, found) = storm(&[], Some(3), instant(0), Some(&rule));
        assert_eq!((samples.len(), found), (1, None));
        let (_, found) = storm(&samples, Some(9), instant(1), Some(&rule));
        assert_eq!(found.map(|s| s.kills), Some(6));
    }

    #[test]
    fn history_forgets_old_actions_and_resets_when_stable() {
        let config = config(None);
        let record = Record {
            actions: vec![instant(-40), instant(-10)],
            up_since: Some(instant(-5)),
            flap_reported: true,
            ..Record::default()
        };
        let failing = history(&record, false, instant(0), &config);
        assert_eq!(failing.actions, [instant(-10)], "30m window");
        assert_eq!((failing.up_since, failing.flap_reported), (None, true));
        let up = history(&record, true, instant(0), &config);
        assert_eq!(up.up_since, Some(instant(-5)), "5 of the 10 stable minutes");
        assert_eq!(up.actions.len(), 1);
        let stable = history(&record, true, instant(5), &config);
        assert!(stable.actions.is_empty() && !stable.flap_reported);
    }

    #[test]
    fn the_limiter_trips_once() {
        let config = config(None);
        let full = History {
            actions: vec![instant(-3), instant(-2), instant(-1)],
            up_since: None,
            flap_reported: false,
        };
        let held = limiter(true, &full, instant(0), &config);
        assert_eq!(
            held,
            Limiter {
                act: false,
                flapping: true,
                tripped_now: true
            }
        );
        let told = History {
            flap_reported: true,
            ..full
        };
        assert!(!limiter(true, &told, instant(0), &config).tripped_now);
        let quiet = limiter(false, &told, instant(0), &config);
        assert!(!quiet.act && !quiet.flapping);
        let room = History {
            actions: Vec::new(),
            up_since: None,
            flap_reported: false,
        };
        assert!(limiter(true, &room, instant(0), &config).act);
    }

    #[test]
    fn the_reason_names_the_outage_and_the_brakes() {
        let config = config(None);
        let tally = tally(
            &[probe("web", false)],
            &BTreeMap::from([("web".into(), 1)]),
            2,
        );
        let outage = super::outage(Some(instant(0)), true, instant(4));
        let day = Shift {
            night: false,
            grace: Duration::from_secs(180),
        };
        assert_eq!(
            reason(&tally, &outage, &day, None, Some(3), &config),
            "web down for 4m, past the 3m day grace: killing protected tasks and restarting, \
             but 3 heal action(s) within 30m already: holding back until `memslice heal reset` or the window passes"
        );
        let up = super::tally(&[probe("web", true)], &BTreeMap::new(), 2);
        let none = super::outage(None, false, instant(4));
        assert_eq!(
            reason(&up, &none, &day, None, None, &config),
            "all 1 service(s) pass"
        );
    }
}
