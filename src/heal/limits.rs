//! The healer's brakes and its emergency trigger, as pure functions:
//! the flap limiter (no restart loops), the OOM-storm detector, and the
//! wall-clock schedule of `heal watch`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Actions taken within `window` before `now`.
pub fn recent_actions(history: &[Timestamp], now: Timestamp, window: Duration) -> usize {
    let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    history
        .iter()
        .filter(|at| **at <= now && now.duration_since(**at) < window)
        .count()
}

/// Whether one more action stays within `max` per `window`.
pub fn may_act(history: &[Timestamp], now: Timestamp, max: u32, window: Duration) -> bool {
    recent_actions(history, now, window) < max as usize
}

/// One reading of the storm slice's memory.events oom_kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomSample {
    pub at: Timestamp,
    pub kills: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Storm {
    pub kills: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// Adds `now` to the samples and keeps what the window needs: the samples
/// inside it and the last one before it. A counter that went down (the
/// group was recreated) starts the series again.
pub fn record_sample(samples: &[OomSample], now: OomSample, window: Duration) -> Vec<OomSample> {
    let mut kept: Vec<OomSample> = samples
        .iter()
        .copied()
        .filter(|s| s.at <= now.at && s.kills <= now.kills)
        .collect();
    let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    let inside = kept
        .iter()
        .position(|s| now.at.duration_since(s.at) <= window)
        .unwrap_or(kept.len());
    kept.drain(..inside.saturating_sub(1));
    kept.push(now);
    kept
}

/// The kill rate over the window ending at the newest sample, if it
/// reaches `kills` per `window` (5 per 1 s is Hypernode's rule).
pub fn storm(samples: &[OomSample], kills: u32, window: Duration) -> Option<Storm> {
    let newest = samples.last()?;
    let oldest = samples.first()?;
    let seconds = newest.at.duration_since(oldest.at).as_secs_f64();
    let delta = newest.kills.saturating_sub(oldest.kills);
    if delta == 0 || seconds <= 0.0 {
        return None;
    }
    // Over a span longer than the window, the rate is what counts;
    // within it, the count.
    let per_second = delta as f64 / seconds.max(window.as_secs_f64());
    let threshold = f64::from(kills) / window.as_secs_f64().max(f64::MIN_POSITIVE);
    (per_second >= threshold).then_some(Storm {
        kills: delta,
        seconds,
        per_second,
    })
}

/// `heal watch` runs on the wall clock: the next check is the first tick
/// of the `interval` grid after `now`. Returns it with how many ticks were
/// missed since `planned` (a suspend or a stall): those are not run one
/// after another, the check after a jump is one check.
pub fn next_tick(planned: Timestamp, now: Timestamp, interval: Duration) -> (Timestamp, u64) {
    if now < planned {
        // The clock went back, or we are early: keep the plan.
        return (planned, 0);
    }
    // In nanoseconds as i128, checked: no interval or gap can wrap, and a
    // grid beyond the last representable instant ends there.
    let step = i128::try_from(interval.as_nanos())
        .unwrap_or(i128::MAX)
        .max(1_000_000);
    let missed = now.duration_since(planned).as_nanos() / step;
    let next = missed
        .checked_add(1)
        .and_then(|ticks| ticks.checked_mul(step))
        .and_then(|ahead| planned.as_nanosecond().checked_add(ahead))
        .and_then(|nanos| Timestamp::from_nanosecond(nanos).ok())
        .unwrap_or(Timestamp::MAX);
    (next, u64::try_from(missed).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + seconds).expect("timestamp")
    }

    #[test]
    fn the_limiter_counts_actions_in_the_window_only() {
        let window = Duration::from_secs(1800);
        let history = [t(0), t(600), t(1200)];
        assert!(!may_act(&history, t(1500), 3, window), "three within 30m");
        assert!(
            may_act(&history, t(1800), 3, window),
            "the first one left the window"
        );
        assert!(may_act(&history[..2], t(1300), 3, window));
        assert_eq!(
            recent_actions(&history, t(-10), window),
            0,
            "actions from the future do not count"
        );
    }

    #[test]
    fn a_storm_is_a_rate_not_a_count() {
        let window = Duration::from_secs(1);
        let quiet = [
            OomSample {
                at: t(0),
                kills: 10,
            },
            OomSample {
                at: t(60),
                kills: 14,
            },
        ];
        assert_eq!(storm(&quiet, 5, window), None, "4 kills in a minute");
        let burst = [
            OomSample {
                at: t(0),
                kills: 10,
            },
            OomSample {
                at: t(1),
                kills: 16,
            },
        ];
        let found = storm(&burst, 5, window).expect("6 kills in a second");
        assert_eq!(found.kills, 6);
        let slow = [
            OomSample { at: t(0), kills: 0 },
            OomSample {
                at: t(10),
                kills: 20,
            },
        ];
        assert_eq!(storm(&slow, 5, window), None, "2 per second");
        assert_eq!(
            storm(&slow, 20, Duration::from_secs(10)).map(|s| s.kills),
            Some(20),
            "20 per 10 s"
        );
    }

    #[test]
    fn samples_keep_the_window_and_restart_after_a_counter_reset() {
        let window = Duration::from_secs(5);
        let mut samples = Vec::new();
        for (second, kills) in [(0, 0), (2, 1), (4, 2), (6, 3), (8, 9)] {
            samples = record_sample(
                &samples,
                OomSample {
                    at: t(second),
                    kills,
                },
                window,
            );
        }
        assert_eq!(
            samples.first().map(|s| s.at),
            Some(t(2)),
            "one sample before the window is kept"
        );
        assert_eq!(storm(&samples, 5, window).map(|s| s.kills), Some(8));
        let reset = record_sample(&samples, OomSample { at: t(9), kills: 0 }, window);
        assert_eq!(reset, vec![OomSample { at: t(9), kills: 0 }]);
    }

    #[test]
    fn the_schedule_follows_the_wall_clock_and_survives_jumps() {
        let interval = Duration::from_secs(30);
        assert_eq!(next_tick(t(30), t(31), interval), (t(60), 0), "on time");
        assert_eq!(
            next_tick(t(30), t(20), interval),
            (t(30), 0),
            "early or clock went back"
        );
        let (next, missed) = next_tick(t(30), t(3630), interval);
        assert_eq!(
            (next, missed),
            (t(3660), 120),
            "an hour of suspend: one check now, the next on the grid"
        );
    }

    #[test]
    fn a_huge_interval_waits_long_not_one_second() {
        let huge = Duration::from_secs(u64::MAX);
        let (next, missed) = next_tick(t(0), t(5), huge);
        assert_eq!(missed, 0);
        assert!(next > t(86_400 * 365), "{next}");
    }

    fn any_instant(seconds: i64) -> Timestamp {
        let seconds = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        Timestamp::from_second(seconds).expect("in range")
    }

    proptest::proptest! {
        #[test]
        fn the_brakes_never_overflow(
            instants in proptest::collection::vec(proptest::num::i64::ANY, 1..6),
            kills in proptest::collection::vec(proptest::num::u64::ANY, 1..6),
            window_ms in proptest::num::u64::ANY,
            max in proptest::num::u32::ANY,
        ) {
            let window = Duration::from_millis(window_ms);
            let history: Vec<Timestamp> = instants.iter().copied().map(any_instant).collect();
            let now = history[0];
            let _ = may_act(&history, now, max, window);
            let mut samples = Vec::new();
            for (at, kills) in history.iter().zip(&kills) {
                samples = record_sample(&samples, OomSample { at: *at, kills: *kills }, window);
            }
            let _ = storm(&samples, max, window);
        }

        #[test]
        fn the_schedule_never_overflows(
            planned in proptest::num::i64::ANY,
            now in proptest::num::i64::ANY,
            interval_ms in proptest::num::u64::ANY,
        ) {
            let (planned, now) = (any_instant(planned), any_instant(now));
            let (next, _) = next_tick(planned, now, Duration::from_millis(interval_ms));
            proptest::prop_assert!(next >= planned.min(now));
            proptest::prop_assert!(next > now || now == Timestamp::MAX || next == planned);
        }
    }
}
