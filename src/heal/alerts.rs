//! What the notify hook hears besides heal actions: OOM kills, per slice,
//! and how often. Each slice is told at most once per `notify_window`, and
//! that message carries every kill since the last one, so an OOM storm is
//! one message, not hundreds. Kills are counted where they happened: a
//! kill in app/web raises app's counter too, and is told once, at app/web.
//!
//! Pure: the book of what was seen and told lives in the state file.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What was seen of each slice's oom_kill counter, and what was told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomBook {
    /// memory.events oom_kill per slice at the last look.
    #[serde(default)]
    pub seen: BTreeMap<String, u64>,
    /// Kills not told yet, per slice.
    #[serde(default)]
    pub untold: BTreeMap<String, u64>,
    /// When each slice was last told about.
    #[serde(default)]
    pub told: BTreeMap<String, Timestamp>,
}

/// One message: kills in one slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OomNotice {
    pub event: &'static str,
    pub at: Timestamp,
    pub slice: String,
    /// OOM kills in the slice itself (not in its child slices) since the
    /// last message about it.
    pub kills: u64,
    /// The last message about this slice, if any.
    pub since: Option<Timestamp>,
}

/// The messages due now, and the book to keep. `counters`: each slice's
/// oom_kill now (slices whose counter cannot be read are left out). The
/// first look only learns the counters: kills before it are history.
pub fn oom_notices(
    book: &OomBook,
    counters: &BTreeMap<String, u64>,
    now: Timestamp,
    window: Duration,
) -> (Vec<OomNotice>, OomBook) {
    let mut next = OomBook {
        seen: counters.clone(),
        untold: book.untold.clone(),
        told: book.told.clone(),
    };
    if book.seen.is_empty() {
        return (Vec::new(), next);
    }
    // A counter that went down belongs to a recreated group: from zero.
    let delta = |slice: &str| {
        let now = counters.get(slice).copied().unwrap_or(0);
        match book.seen.get(slice) {
            Some(&was) if now >= was => now - was,
            _ => now,
        }
    };
    for slice in counters.keys() {
        let children: u64 = counters
            .keys()
            .filter(|other| crate::config::parent_of(other) == Some(slice.as_str()))
            .map(|child| delta(child))
            .fold(0, u64::saturating_add);
        let own = delta(slice).saturating_sub(children);
        if own > 0 {
            let untold = next.untold.entry(slice.clone()).or_insert(0);
            *untold = untold.saturating_add(own);
        }
    }
    let mut notices = Vec::new();
    for (slice, kills) in &mut next.untold {
        let last = next.told.get(slice).copied();
        let due = last.is_none_or(|at| {
            Duration::try_from(now.duration_since(at)).unwrap_or_default() >= window
        });
        if *kills > 0 && due {
            notices.push(OomNotice {
                event: "oom_kill",
                at: now,
                slice: slice.clone(),
                kills: *kills,
                since: last,
            });
            *kills = 0;
        }
    }
    next.untold.retain(|_, kills| *kills > 0);
    for notice in &notices {
        next.told.insert(notice.slice.clone(), now);
    }
    (notices, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("timestamp")
    }

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn the_first_look_learns_and_tells_nothing() {
        let (notices, book) = oom_notices(
            &OomBook::default(),
            &counters(&[("app", 40)]),
            at(0),
            WINDOW,
        );
        assert!(notices.is_empty());
        assert_eq!(book.seen["app"], 40);
    }

    #[test]
    fn a_storm_is_one_message_per_window_with_its_count() {
        let start = OomBook {
            seen: counters(&[("app", 0), ("app/web", 0)]),
            ..OomBook::default()
        };
        let (first, book) = oom_notices(
            &start,
            &counters(&[("app", 1), ("app/web", 1)]),
            at(100),
            WINDOW,
        );
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            (first[0].slice.as_str(), first[0].kills),
            ("app/web", 1),
            "told at the deepest slice"
        );
        let mut book = book;
        for (i, kills) in [5u64, 20, 80, 150].into_iter().enumerate() {
            let (more, next) = oom_notices(
                &book,
                &counters(&[("app", kills), ("app/web", kills)]),
                at(100 + 60 * (i as i64 + 1)),
                WINDOW,
            );
            assert!(more.is_empty(), "within the window: {more:?}");
            book = next;
        }
        let (later, book) = oom_notices(
            &book,
            &counters(&[("app", 151), ("app/web", 151)]),
            at(700),
            WINDOW,
        );
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].kills, 150, "every kill since the last message");
        assert_eq!(later[0].since, Some(at(100)));
        assert!(book.untold.is_empty());
    }

    #[test]
    fn a_kill_in_the_parent_itself_is_told_at_the_parent_and_a_recreated_group_counts_from_zero() {
        let start = OomBook {
            seen: counters(&[("app", 10), ("app/web", 10), ("app/tasks", 7)]),
            ..OomBook::default()
        };
        let (notices, _) = oom_notices(
            &start,
            &counters(&[("app", 13), ("app/web", 11), ("app/tasks", 1)]),
            at(0),
            WINDOW,
        );
        let told: Vec<(&str, u64)> = notices
            .iter()
            .map(|n| (n.slice.as_str(), n.kills))
            .collect();
        assert_eq!(
            told,
            [("app", 1), ("app/tasks", 1), ("app/web", 1)],
            "3 kills under app: one in web, one in the recreated tasks, one in app itself"
        );
    }
}
