//! The notify hook: a command told about each heal action (and a tripped
//! flap limiter) with a JSON description on its standard input, so
//! operators can wire it to mail, chat or a pager. It runs after the
//! action, with a timeout that covers writing the notice: a hook that fails,
//! hangs or never reads never holds healing.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::Actions;
use super::decide::Verdict;
use super::limits::Storm;
use super::probe;
pub use super::probe::Environment;
use crate::config::heal::NotifyEvent;

#[derive(Debug, Serialize)]
pub struct Notice<'a> {
    /// `heal` (past the grace), `storm` (OOM storm), `flapping` (the
    /// limiter held an action back), or `unrecorded` (the state file could
    /// not take the action, so `heal check` held it back).
    #[serde(serialize_with = "event_name")]
    pub event: NotifyEvent,
    pub at: Timestamp,
    pub reason: &'a str,
    pub down: &'a [String],
    pub down_for_seconds: u64,
    pub grace_seconds: u64,
    pub night: bool,
    pub killed: &'a [String],
    pub restarted: &'a [String],
    pub failures: &'a [String],
    pub storm: Option<Storm>,
    /// Why the state file could not take the record, when it could not.
    pub unrecorded: Option<String>,
}

pub fn notice<'a>(
    verdict: &'a Verdict,
    actions: Option<&'a Actions>,
    unrecorded: Option<&super::state::StateError>,
) -> Notice<'a> {
    let event = match (
        actions.is_some(),
        verdict.storm.is_some() && verdict.restart.is_empty(),
    ) {
        (false, _) if unrecorded.is_some() => NotifyEvent::Unrecorded,
        (false, _) => NotifyEvent::Flapping,
        (true, true) => NotifyEvent::Storm,
        (true, false) => NotifyEvent::Heal,
    };
    let none: &[String] = &[];
    Notice {
        event,
        at: verdict.at,
        reason: &verdict.reason,
        down: &verdict.down,
        down_for_seconds: verdict.down_for_seconds,
        grace_seconds: verdict.grace_seconds,
        night: verdict.night,
        killed: actions.map_or(none, |a| &a.killed),
        restarted: actions.map_or(none, |a| &a.restarted),
        failures: actions.map_or(none, |a| &a.failures),
        storm: verdict.storm,
        unrecorded: unrecorded.map(ToString::to_string),
    }
}

fn event_name<S: serde::Serializer>(event: &NotifyEvent, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(event.name())
}

/// A protected task ended by the stall bound (event `stall`).
#[derive(Debug, Serialize)]
pub struct StallNotice<'a> {
    pub event: &'static str,
    pub at: Timestamp,
    pub group: &'a str,
    pub reason: &'a str,
    pub stalled_seconds: u64,
}

/// Runs the hook with `notice` as one line of JSON on its standard input.
pub fn send(
    hook: &[String],
    notice: &impl Serialize,
    timeout: Duration,
    environment: probe::Environment,
) -> Result<(), String> {
    let mut json = serde_json::to_vec(notice).map_err(|err| err.to_string())?;
    json.push(b'\n');
    probe::run(hook, Some(&json), timeout, environment).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn verdict() -> Verdict {
        Verdict {
            at: Timestamp::UNIX_EPOCH,
            site: super::super::decide::Site::Down,
            failing: vec!["web".into()],
            down: vec!["web".into()],
            down_since: None,
            down_for_seconds: 200,
            grace_seconds: 180,
            night: false,
            act: true,
            restart: vec!["web".into()],
            reason: "web down for 3m20s".into(),
            record_note: None,
            storm: None,
            recent_actions: 1,
            flapping: false,
            flap_tripped_now: false,
        }
    }

    #[test]
    fn the_hook_gets_the_action_as_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("notice.json");
        let hook = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("cat > {}", out.display()),
        ];
        let actions = Actions {
            killed: vec!["app/tasks".into()],
            restarted: vec!["web".into()],
            failures: vec![],
        };
        let verdict = verdict();
        send(
            &hook,
            &notice(&verdict, Some(&actions), None),
            Duration::from_secs(5),
            Environment::Inherited,
        )
        .expect("hook ran");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out).expect("written")).expect("json");
        assert_eq!(json["event"], "heal");
        assert_eq!(json["killed"][0], "app/tasks");
        assert_eq!(json["down_for_seconds"], 200);
        assert_eq!(json["grace_seconds"], 180);
        assert_eq!(json["night"], false);
    }

    #[test]
    fn a_hanging_or_failing_hook_is_cut_off_and_reported() {
        let verdict = verdict();
        let started = Instant::now();
        let hung = send(
            &["sleep".into(), "30".into()],
            &notice(&verdict, None, None),
            Duration::from_millis(300),
            Environment::Inherited,
        );
        assert!(hung.is_err_and(|e| e.contains("killed")));
        assert!(started.elapsed() < Duration::from_secs(3));
        let failed = send(
            &["false".into()],
            &notice(&verdict, None, None),
            Duration::from_secs(5),
            Environment::Inherited,
        );
        assert!(failed.is_err());
        assert_eq!(notice(&verdict, None, None).event, NotifyEvent::Flapping);
    }

    #[test]
    fn a_large_notice_reaches_a_reading_hook_and_cannot_hold_one_that_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("notice.json");
        let reading = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("cat > '{}'", out.display()),
        ];
        let reason = "x".repeat(1 << 20);
        let sent = super::super::probe::tests::within(Duration::from_secs(15), move || {
            let mut verdict = verdict();
            verdict.reason = reason;
            let reached = send(
                &reading,
                &notice(&verdict, None, None),
                Duration::from_secs(10),
                Environment::Inherited,
            );
            let started = Instant::now();
            let ignored = send(
                &["sleep".into(), "30".into()],
                &notice(&verdict, None, None),
                Duration::from_millis(300),
                Environment::Inherited,
            );
            (reached, ignored, started.elapsed())
        });
        let (reached, ignored, took) = sent;
        assert!(reached.is_ok(), "{reached:?}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out).expect("written")).expect("json");
        assert_eq!(json["reason"].as_str().map(str::len), Some(1 << 20));
        assert!(ignored.is_err_and(|e| e.contains("killed")));
        assert!(took < Duration::from_millis(1300), "took {took:?}");
    }
}
