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
use crate::config::heal::HealConfig;

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
/// rule is configured.
pub fn decide(
    probes: &[ProbeResult],
    loaded: &Loaded,
    now: &Zoned,
    oom_kills: Option<u64>,
    config: &HealConfig,
) -> (Verdict, Record) {
    let at = now.timestamp();
    let (mut record, mut record_note) = match loaded {
        Loaded::Record(record) => (record.clone(), None),
        Loaded::Missing => (Record::default(), None),
        Loaded::Corrupt(why) => (
            Record::default(),
            Some(format!(
                "state file unusable ({why}); downtime counts from now"
            )),
        ),
    };
    if record.down_since.is_some_and(|since| since > at) {
        record_note = Some(format!(
            "state file says the outage began in the future ({}); downtime counts from now",
            record
                .down_since
                .map_or_else(String::new, |t| t.to_string())
        ));
        record.down_since = None;
    }
    let mut failures = BTreeMap::new();
    let mut failing = Vec::new();
    let mut down = Vec::new();
    for probe in probes {
        let count = if probe.ok {
            0
        } else {
            record
                .failures
                .get(&probe.service)
                .copied()
                .unwrap_or(0)
                .saturating_add(1)
        };
        if !probe.ok {
            failing.push(probe.service.clone());
        }
        if count >= config.failures_before_down {
            down.push(probe.service.clone());
        }
        failures.insert(probe.service.clone(), count);
    }
    let night = config
        .night
        .is_some_and(|window| window.contains(now.time()));
    let grace = if night {
        config.grace_night
    } else {
        config.grace_day
    };
    let shift = if night { "night" } else { "day" };

    let oom_samples = match (&config.storm, oom_kills) {
        (Some(rule), Some(kills)) => {
            limits::record_sample(&record.oom_samples, OomSample { at, kills }, rule.window)
        }
        _ => Vec::new(),
    };
    let storm = config
        .storm
        .as_ref()
        .and_then(|rule| limits::storm(&oom_samples, rule.kills, rule.window));

    let mut actions: Vec<Timestamp> = record
        .actions
        .iter()
        .copied()
        .filter(|action| limits::recent_actions(&[*action], at, config.actions_window) == 1)
        .collect();
    let up_since = if down.is_empty() {
        Some(record.up_since.unwrap_or(at))
    } else {
        None
    };
    let stable = up_since.is_some_and(|since| {
        Duration::try_from(at.duration_since(since)).unwrap_or_default() >= config.stable_after
    });
    let mut flap_reported = record.flap_reported;
    if stable {
        actions.clear();
        flap_reported = false;
    }

    let since = (!down.is_empty()).then(|| record.down_since.unwrap_or(at));
    let down_for = since.map_or(Duration::ZERO, |since| {
        Duration::try_from(at.duration_since(since)).unwrap_or(Duration::ZERO)
    });
    let past_grace = since.is_some() && down_for >= grace;
    let wanted = past_grace || storm.is_some();
    let allowed = limits::may_act(&actions, at, config.max_actions, config.actions_window);
    let act = wanted && allowed;
    let flapping = wanted && !allowed;
    let flap_tripped_now = flapping && !flap_reported;
    if act {
        actions.push(at);
    }

    let mut reason = match (since, past_grace) {
        (None, _) if failing.is_empty() => format!("all {} service(s) pass", probes.len()),
        (None, _) => format!(
            "{} failing, not yet {} checks in a row",
            failing.join(", "),
            config.failures_before_down
        ),
        (Some(_), true) => format!(
            "{} down for {}, past the {} {shift} grace: killing protected tasks and restarting",
            down.join(", "),
            human(down_for),
            human(grace)
        ),
        (Some(_), false) => format!(
            "{} down for {}; {shift} grace {} not over",
            down.join(", "),
            human(down_for),
            human(grace)
        ),
    };
    if let (Some(found), Some(rule)) = (storm, &config.storm) {
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
    if flapping {
        reason = format!(
            "{reason}, but {} heal action(s) within {} already: holding back until `memslice heal reset` or the window passes",
            actions.len(),
            human(config.actions_window)
        );
    }
    let next = Record {
        // After an action a new grace period starts, so the healer does
        // not act again on every check while the services come back.
        down_since: since.map(|since| if act { at } else { since }),
        failures,
        last_action: record.last_action.clone(),
        actions,
        up_since,
        // A new trip after the healer could act again is reported again.
        flap_reported: !act && (flap_reported || flapping),
        oom_samples,
    };
    let site = match (since.is_some(), failing.is_empty()) {
        (true, _) => Site::Down,
        (false, true) => Site::Up,
        (false, false) => Site::Failing,
    };
    let verdict = Verdict {
        at,
        site,
        failing,
        restart: if past_grace && act {
            down.clone()
        } else {
            Vec::new()
        },
        down,
        down_since: since,
        down_for_seconds: down_for.as_secs(),
        grace_seconds: grace.as_secs(),
        night,
        act,
        reason,
        record_note,
        storm,
        recent_actions: next.actions.len(),
        flapping,
        flap_tripped_now,
    };
    (verdict, next)
}

/// What a check came to, in one word: the journal's `MEMSLICE_DECISION`
/// and the watcher's counts say it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Up,
    /// Some probe failed, not yet often enough to count as down.
    Failing,
    /// Down, within the grace.
    Down,
    /// Would have acted (`--dry-run`).
    WouldAct,
    Acted,
    /// The flap limiter held the healer back.
    HeldBack,
    /// Another process held the heal lock: the check did nothing.
    LockBusy,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Up => "up",
            Decision::Failing => "failing",
            Decision::Down => "down",
            Decision::WouldAct => "would_act",
            Decision::Acted => "acted",
            Decision::HeldBack => "held_back",
            Decision::LockBusy => "lock_busy",
        }
    }
}

impl Verdict {
    pub fn decision(&self, dry_run: bool) -> Decision {
        match (self.act, self.flapping, self.site) {
            (true, _, _) if dry_run => Decision::WouldAct,
            (true, _, _) => Decision::Acted,
            (false, true, _) => Decision::HeldBack,
            (false, false, Site::Up) => Decision::Up,
            (false, false, Site::Failing) => Decision::Failing,
            (false, false, Site::Down) => Decision::Down,
        }
    }
}

pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::heal::{NightWindow, parse_window};
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

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(180)), "3m");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
    }

    fn past_grace_at(now: &Zoned, actions: &[i64]) -> Loaded {
        outage(10, actions, now)
    }

    #[test]
    fn each_check_comes_to_one_decision() {
        let now = at("2026-06-01T12:00", "UTC");
        let check = |loaded: &Loaded| web_down(loaded, &now, &config(None)).0;
        assert_eq!(check(&Loaded::Missing).decision(false), Decision::Failing);
        assert_eq!(check(&down_since(1, &now)).decision(false), Decision::Down);
        let past = check(&past_grace_at(&now, &[]));
        assert_eq!(
            (past.decision(false), past.decision(true)),
            (Decision::Acted, Decision::WouldAct)
        );
        let held = check(&past_grace_at(&now, &[25, 15, 5]));
        assert_eq!(held.decision(false), Decision::HeldBack);
        let (up, _) = decide(
            &[probe("web", true)],
            &Loaded::Missing,
            &now,
            None,
            &config(None),
        );
        assert_eq!(up.decision(false), Decision::Up);
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
}
