//! What `heal watch` tells systemd when it runs as a `Type=notify` service
//! (sd_notify(3)): `READY=1` once the first check ran, `STATUS=` with the
//! site's state after every check, and `WATCHDOG=1` at least every
//! WatchdogSec/2, so that systemd restarts a hung watcher.
//!
//! The pings come from the watch loop itself, never from a thread of their
//! own, which would go on pinging while the loop is stuck. A check may
//! rightly take longer than WatchdogSec (probes at their timeouts, killing
//! tasks, restarting services), so before each check the loop tells systemd
//! how long it may take at most (`WATCHDOG_USEC=`, and `EXTEND_TIMEOUT_USEC=`
//! for the first one, before READY=1), and sets WatchdogSec back after it.
//! Without a watchdog the loop gets no extra wake-up; outside systemd (no
//! `NOTIFY_SOCKET`) nothing is sent.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::act;
use super::decide::{Decision, Verdict};
use crate::config::duration::human;
use crate::config::heal::HealConfig;

/// Slack on top of the sum of a check's timeouts, for the work between them.
const SLACK: Duration = Duration::from_secs(10);

pub struct Notifier {
    /// WatchdogSec, when systemd set one for this process.
    watchdog: Option<Duration>,
    last_ping: Instant,
    ready: bool,
    /// A failure to reach systemd is logged once, not at every ping.
    warned: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: Instant::now(),
            ready: false,
            warned: false,
        }
    }

    /// When the loop must be awake to ping, at the latest; `None` without
    /// a watchdog.
    pub fn ping_deadline(&self) -> Option<Instant> {
        self.watchdog.map(|period| self.last_ping + period / 2)
    }

    /// Pings when the deadline has come.
    pub fn ping_if_due(&mut self) {
        if self
            .ping_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Before a check that may take up to `budget`.
    pub fn check_starts(&mut self, budget: Duration) {
        let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let mut states = Vec::new();
        if !self.ready {
            states.push(NotifyState::ExtendTimeoutUsec(micros(budget)));
        }
        if let Some(period) = self.watchdog {
            states.push(NotifyState::WatchdogUsec(micros(budget.max(period))));
            states.push(NotifyState::Watchdog);
        }
        self.send(&states);
    }

    /// After a check, with the status line it came to.
    pub fn check_done(&mut self, status: &str) {
        let mut states = Vec::new();
        if !self.ready {
            states.push(NotifyState::Ready);
        }
        states.push(NotifyState::Status(status));
        if let Some(period) = self.watchdog {
            let micros = u32::try_from(period.as_micros()).unwrap_or(u32::MAX);
            states.push(NotifyState::WatchdogUsec(micros));
            states.push(NotifyState::Watchdog);
        }
        self.send(&states);
        self.ready = true;
    }

    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if states.is_empty() {
            return;
        }
        if states.iter().any(|s| matches!(s, NotifyState::Watchdog)) {
            self.last_ping = Instant::now();
        }
        if let Err(err) = sd_notify::notify(states) {
            if !self.warned {
                tracing::error!("cannot notify systemd (NOTIFY_SOCKET): {err}");
            }
            self.warned = true;
        }
    }
}

/// The longest one check may take: each probe at its timeout (twice: a TCP
/// probe tries each address of a name), the lock wait, an action (kills
/// and restarts at their timeouts), the notify hook for the action and for
/// each slice's OOM kills.
pub fn check_budget(config: &HealConfig, lock_wait: Duration) -> Duration {
    let probes: Duration = config.services.iter().map(|s| s.timeout * 2).sum();
    let hooks = u32::try_from(config.slices.len() + 1).unwrap_or(u32::MAX);
    probes + lock_wait + act::longest(config) + config.notify_timeout.saturating_mul(hooks) + SLACK
}

/// The watcher's STATUS=: the site's state and the grace in force, like
/// `up; grace 3m (day)` or `web down 2m10s of 3m (day)`.
pub fn status_line(verdict: &Verdict) -> String {
    let shift = if verdict.night { "night" } else { "day" };
    let grace = human(Duration::from_secs(verdict.grace_seconds));
    let site = if !verdict.down.is_empty() {
        format!(
            "{} down {} of {grace} ({shift})",
            verdict.down.join(", "),
            human(Duration::from_secs(verdict.down_for_seconds))
        )
    } else if !verdict.failing.is_empty() {
        format!(
            "{} failing; grace {grace} ({shift})",
            verdict.failing.join(", ")
        )
    } else {
        format!("up; grace {grace} ({shift})")
    };
    let storm = if verdict.storm.is_some() {
        "; OOM storm"
    } else {
        ""
    };
    let decision = match verdict.decision(false) {
        Decision::Acted => "; acted",
        Decision::HeldBack => "; held back by the flap limiter (memslice heal reset)",
        _ => "",
    };
    format!("{site}{storm}{decision}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::decide::Site;
    use crate::heal::limits::Storm;

    fn verdict(site: Site, down_for_seconds: u64) -> Verdict {
        Verdict {
            at: jiff::Timestamp::UNIX_EPOCH,
            site,
            failing: Vec::new(),
            down: Vec::new(),
            down_since: None,
            down_for_seconds,
            grace_seconds: 180,
            night: false,
            act: false,
            restart: Vec::new(),
            reason: String::new(),
            record_note: None,
            storm: None,
            recent_actions: 0,
            flapping: false,
            flap_tripped_now: false,
        }
    }

    #[test]
    fn the_status_says_the_state_and_the_grace_in_force() {
        assert_eq!(status_line(&verdict(Site::Up, 0)), "up; grace 3m (day)");
        let failing = Verdict {
            failing: vec!["web".into()],
            night: true,
            grace_seconds: 900,
            ..verdict(Site::Failing, 0)
        };
        assert_eq!(status_line(&failing), "web failing; grace 15m (night)");
        let down = Verdict {
            failing: vec!["web".into(), "db".into()],
            down: vec!["web".into(), "db".into()],
            ..verdict(Site::Down, 130)
        };
        assert_eq!(status_line(&down), "web, db down 2m10s of 3m (day)");
        let acted = Verdict {
            act: true,
            ..down.clone()
        };
        assert_eq!(status_line(&acted), "web, db down 2m10s of 3m (day); acted");
        let held = Verdict {
            flapping: true,
            ..down
        };
        assert_eq!(
            status_line(&held),
            "web, db down 2m10s of 3m (day); held back by the flap limiter (memslice heal reset)"
        );
        let storm = Verdict {
            act: true,
            storm: Some(Storm {
                kills: 9,
                seconds: 1.0,
                per_second: 9.0,
            }),
            ..verdict(Site::Up, 0)
        };
        assert_eq!(status_line(&storm), "up; grace 3m (day); OOM storm; acted");
    }

    #[test]
    fn the_budget_covers_every_timeout_of_a_check() {
        let config = crate::config::heal::example();
        let budget = check_budget(&config, Duration::from_secs(1));
        let probes: Duration = config.services.iter().map(|s| s.timeout).sum();
        assert!(
            budget > probes + act::longest(&config) + config.notify_timeout,
            "{budget:?}"
        );
    }

    #[test]
    fn without_a_watchdog_the_loop_has_no_deadline() {
        let mut notifier = Notifier {
            watchdog: None,
            last_ping: Instant::now(),
            ready: false,
            warned: false,
        };
        assert_eq!(notifier.ping_deadline(), None);
        notifier.watchdog = Some(Duration::from_secs(30));
        let deadline = notifier.ping_deadline().expect("a deadline");
        assert_eq!(deadline - notifier.last_ping, Duration::from_secs(15));
    }
}
