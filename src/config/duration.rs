//! Durations and time-of-day windows as operators write them (`"90s"`,
//! `"3m"`, `"22:00-07:00"`), and the range each key allows.
//!
//! Every duration key has bounds: a value the healer cannot use (a zero
//! probe timeout fails every probe, an interval of years never checks)
//! is refused at load with the range, instead of misbehaving at 3 a.m.

use std::fmt;
use std::time::Duration;

use jiff::civil::Time;

pub const DURATION_FORMS: &str =
    "a duration such as \"90s\", \"3m\", \"1h\", \"7d\" or \"500ms\" (a whole number and a unit)";

/// The range a key's durations must fall in, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    pub const fn new(min: Duration, max: Duration) -> Bounds {
        Bounds { min, max }
    }

    fn check(self, text: &str, duration: Duration) -> Result<Duration, String> {
        if (self.min..=self.max).contains(&duration) {
            Ok(duration)
        } else {
            Err(format!("{text:?} is outside the allowed range: use {self}"))
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "from {} to {}", human(self.min), human(self.max))
    }
}

/// `"3m"` → 180 s, within `bounds`. Units ms, s, m, h, d; a number too
/// large for its unit is refused, never wrapped or saturated.
pub fn parse_duration(text: &str, bounds: Bounds) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let not_a_duration = || format!("{text:?} is not a duration; expected {DURATION_FORMS}");
    if digits.is_empty() {
        return Err(not_a_duration());
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(not_a_duration()),
    };
    let too_large = || format!("{text:?} is too large; use {bounds}");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let millis = number.checked_mul(millis_per_unit).ok_or_else(too_large)?;
    bounds.check(text, Duration::from_millis(millis))
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

/// Short form for messages and logs: `500ms`, `45s`, `3m05s`, `1h02m`,
/// `24h`, `7d`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 && !duration.is_zero() {
        return format!("{}ms", duration.as_millis());
    }
    let (days, hours) = (seconds / 86_400, seconds % 86_400 / 3600);
    if days >= 2 {
        return match hours {
            0 => format!("{days}d"),
            _ => format!("{days}d{hours:02}h"),
        };
    }
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

    const ANY: Bounds = Bounds::new(Duration::ZERO, Duration::MAX);

    fn time(text: &str) -> Time {
        text.parse().expect("time")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3m", ANY), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("90s", ANY), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h", ANY), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d", ANY), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("500ms", ANY), Ok(Duration::from_millis(500)));
        for bad in ["", "3", "m", "3 minutes", "-1s", "1.5m", "1w", "ms"] {
            let err = parse_duration(bad, ANY).expect_err(bad);
            assert!(err.contains("expected a duration such as"), "{err}");
        }
    }

    #[test]
    fn huge_numbers_are_refused_not_saturated() {
        for huge in [
            "18446744073709551615h",
            "18446744073709551615s",
            "99999999999999999999ms",
        ] {
            let err = parse_duration(huge, ANY).expect_err(huge);
            assert!(err.contains("too large"), "{err}");
        }
        assert_eq!(
            parse_duration("18446744073709551615ms", ANY),
            Ok(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn bounds_are_inclusive_and_named_in_the_message() {
        let interval = Bounds::new(Duration::from_millis(100), Duration::from_secs(3600));
        assert!(parse_duration("100ms", interval).is_ok());
        assert!(parse_duration("1h", interval).is_ok());
        let err = parse_duration("61m", interval).expect_err("above");
        assert_eq!(
            err,
            "\"61m\" is outside the allowed range: use from 100ms to 1h"
        );
        assert!(parse_duration("0s", interval).is_err());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_millis(1)), "1ms");
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(180)), "3m");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(human(Duration::from_secs(86_400)), "24h");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 7200)), "3d02h");
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
