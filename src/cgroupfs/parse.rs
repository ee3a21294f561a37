//! Parsers for the text the kernel puts in cgroup files. Each takes the
//! file's content, never a path, so they are tested on plain strings.

use serde::Serialize;

use crate::config::Controller;

/// memory.events: how often the group hit each boundary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

/// One line of a pressure file (`some` or `full`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Microseconds stalled since the group was created.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub some: PressureLine,
    pub full: PressureLine,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line:?}: {reason}")]
pub struct ParseError {
    pub line: String,
    pub reason: &'static str,
}

/// Flat keyed files (`key value` per line): memory.events, memory.stat,
/// cgroup.events. Unknown keys are kept; newer kernels add them.
pub fn flat_keyed(text: &str) -> Result<Vec<(&str, u64)>, ParseError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fail = |reason| ParseError {
                line: line.to_string(),
                reason,
            };
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| fail("expected `key value`"))?;
            let value = value
                .trim()
                .parse()
                .map_err(|_| fail("value is not a whole number"))?;
            Ok((key, value))
        })
        .collect()
}

pub fn memory_events(text: &str) -> Result<MemoryEvents, ParseError> {
    let mut events = MemoryEvents::default();
    for (key, value) in flat_keyed(text)? {
        match key {
            "low" => events.low = value,
            "high" => events.high = value,
            "max" => events.max = value,
            "oom" => events.oom = value,
            "oom_kill" => events.oom_kill = value,
            "oom_group_kill" => events.oom_group_kill = value,
            _ => {}
        }
    }
    Ok(events)
}

/// cgroup.events `populated`: whether the group or a descendant has a process.
pub fn populated(text: &str) -> Result<bool, ParseError> {
    flat_keyed(text)?
        .into_iter()
        .find(|(key, _)| *key == "populated")
        .map(|(_, value)| value != 0)
        .ok_or_else(|| ParseError {
            line: text.to_string(),
            reason: "no `populated` key",
        })
}

/// memory.pressure / cpu.pressure / io.pressure.
pub fn pressure(text: &str) -> Result<Pressure, ParseError> {
    let mut result = Pressure::default();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fail = |reason| ParseError {
            line: line.to_string(),
            reason,
        };
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut result.some,
            Some("full") => &mut result.full,
            _ => return Err(fail("expected `some` or `full`")),
        };
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| fail("expected key=value"))?;
            let number = || value.parse::<f64>().map_err(|_| fail("not a number"));
            match key {
                "avg10" => slot.avg10 = number()?,
                "avg60" => slot.avg60 = number()?,
                "avg300" => slot.avg300 = number()?,
                "total" => {
                    slot.total = value
                        .parse()
                        .map_err(|_| fail("total is not a whole number"))?
                }
                _ => {}
            }
        }
    }
    Ok(result)
}

/// cgroup.controllers / cgroup.subtree_control. Controllers memslice does
/// not know (a newer kernel's) are skipped, not refused.
pub fn controllers(text: &str) -> Vec<Controller> {
    let mut found: Vec<Controller> = text
        .split_whitespace()
        .filter_map(Controller::from_name)
        .collect();
    found.sort();
    found
}

/// cgroup.procs: one pid per line.
pub fn pids(text: &str) -> Result<Vec<u32>, ParseError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim().parse().map_err(|_| ParseError {
                line: line.to_string(),
                reason: "not a pid",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_events_from_a_6_1_kernel() {
        let text = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 1\n";
        let events = memory_events(text).expect("parses");
        assert_eq!(
            events,
            MemoryEvents {
                low: 0,
                high: 12,
                max: 40,
                oom: 3,
                oom_kill: 2,
                oom_group_kill: 1
            }
        );
    }

    #[test]
    fn memory_events_from_an_older_kernel_without_oom_group_kill() {
        let events = memory_events("low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n").expect("parses");
        assert_eq!(events.oom_kill, 1);
        assert_eq!(events.oom_group_kill, 0);
    }

    #[test]
    fn flat_keyed_rejects_garbage_and_names_the_line() {
        let err = memory_events("low 0\noom_kill lots\n").expect_err("garbage");
        assert_eq!(err.line, "oom_kill lots");
        assert!(flat_keyed("justakey\n").is_err());
    }

    #[test]
    fn pressure_both_lines() {
        let text = "some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\nfull avg10=0.75 avg60=0.10 avg300=0.00 total=678\n";
        let parsed = pressure(text).expect("parses");
        assert!((parsed.some.avg10 - 1.5).abs() < f64::EPSILON);
        assert_eq!(parsed.some.total, 12345);
        assert!((parsed.full.avg10 - 0.75).abs() < f64::EPSILON);
        assert!(pressure("partial avg10=1").is_err());
        assert!(pressure("some avg10=x").is_err());
    }

    #[test]
    fn populated_flag() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Ok(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Ok(false));
        assert!(populated("frozen 0\n").is_err());
    }

    #[test]
    fn controllers_skip_unknown_names() {
        assert_eq!(
            controllers("cpuset cpu io memory hugetlb pids rdma misc dmem\n").len(),
            8
        );
        assert_eq!(
            controllers("memory pids"),
            vec![Controller::Memory, Controller::Pids]
        );
        assert!(controllers("").is_empty());
    }

    #[test]
    fn pids_per_line() {
        assert_eq!(pids("1\n42\n"), Ok(vec![1, 42]));
        assert_eq!(pids(""), Ok(vec![]));
        assert!(pids("1\nabc\n").is_err());
    }
}
