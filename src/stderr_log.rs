//! Log lines on stderr, where stderr is not the journal (see `journal`):
//! `TIMESTAMP LEVEL message field=value …`, one write per line.
//!
//! memslice logs events with fields and no spans, so this is all a
//! subscriber has to do. tracing-subscriber's fmt layer did the same
//! through its span registry, which allocates 32 KiB and runs ~30,000
//! instructions at every start, a task's too (callgrind); the lines are
//! the ones it printed: RFC 3339 UTC time to the microsecond, the level
//! right-aligned in five columns, the message, then each field as
//! `name=value` (text quoted, as Debug prints it). As fmt did, control
//! characters in a message or a value are written out (`printable`): an
//! error may carry text from outside (an HTTP reason, a probe's output).
//! On a terminal the level is colored; fmt also dimmed the time.

use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::printable::printable;

/// Writes the events at `max` and above to stderr.
pub struct StderrLog {
    max: Level,
    colored: bool,
    write: fn(&str),
}

impl StderrLog {
    /// Colored levels where stderr is a terminal.
    pub fn new(max: Level) -> StderrLog {
        StderrLog {
            max,
            colored: io::stderr().is_terminal(),
            write: write_stderr,
        }
    }
}

fn write_stderr(line: &str) {
    // A closed stderr is no reason to fail.
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

impl Subscriber for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // memslice opens no spans; one id serves any a dependency opens.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Timestamp::now panics on a clock beyond ±9999 years.
        let time = jiff::Timestamp::try_from(std::time::SystemTime::now()).ok();
        let line = line(
            time.as_ref(),
            *event.metadata().level(),
            &fields,
            self.colored,
        );
        (self.write)(&line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message and its other fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(&printable(value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message.push_str(&printable(&text));
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), printable(&text));
        }
    }
}

/// One line. Pure.
fn line(time: Option<&jiff::Timestamp>, level: Level, fields: &Fields, colored: bool) -> String {
    let (start, end) = match (colored, level) {
        (false, _) => ("", ""),
        (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
        (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
        (true, Level::INFO) => ("\x1b[32m", "\x1b[0m"),
        (true, Level::DEBUG) => ("\x1b[34m", "\x1b[0m"),
        (true, Level::TRACE) => ("\x1b[35m", "\x1b[0m"),
    };
    let time = match time {
        Some(time) => format!("{time:.6}"),
        None => "(clock out of range)".to_string(),
    };
    let rest = if fields.message.is_empty() {
        fields.rest.trim_start()
    } else {
        &fields.rest
    };
    format!("{time} {start}{level:>5}{end} {}{rest}\n", fields.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(message: &str, rest: &str) -> Fields {
        Fields {
            message: message.into(),
            rest: rest.into(),
        }
    }

    #[test]
    fn a_line_is_time_level_message_and_fields() {
        let time: jiff::Timestamp = "2026-12-06T05:37:23.5591404Z".parse().expect("time");
        assert_eq!(
            line(
                Some(&time),
                Level::INFO,
                &fields("unit file changed", " file=/x"),
                false
            ),
            "2026-12-06T05:37:23.559140Z  INFO unit file changed file=/x\n"
        );
        let whole: jiff::Timestamp = "2026-12-06T05:37:23Z".parse().expect("time");
        assert_eq!(
            line(Some(&whole), Level::ERROR, &fields("failed", ""), false),
            "2026-12-06T05:37:23.000000Z ERROR failed\n"
        );
        assert_eq!(
            line(Some(&whole), Level::WARN, &fields("w", ""), true),
            "2026-12-06T05:37:23.000000Z \x1b[33m WARN\x1b[0m w\n"
        );
        assert_eq!(
            line(None, Level::INFO, &fields("", " group=a"), false),
            "(clock out of range)  INFO group=a\n"
        );
    }

    thread_local! {
        static WRITTEN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn keep(line: &str) {
        WRITTEN.with_borrow_mut(|lines| lines.push(line.to_string()));
    }

    #[test]
    fn events_at_the_level_and_above_print_their_fields_as_tracing_records_them() {
        let log = StderrLog {
            max: Level::INFO,
            colored: false,
            write: keep,
        };
        tracing::subscriber::with_default(log, || {
            let group = "app/x";
            tracing::warn!(group = %group, event = "kill", count = 3, "killed {}", "them");
            tracing::debug!("not at info");
            let reason = "503 \x1b]0;owned\x07\nERROR fake";
            tracing::error!(service = %reason, "probe failed: {reason}");
        });
        let written = WRITTEN.with_borrow(Vec::clone);
        assert_eq!(written.len(), 2, "{written:?}");
        let (_, forged) = written[1].split_once(' ').expect("a time first");
        assert_eq!(
            forged,
            "ERROR probe failed: 503 \\x1b]0;owned\\x07\\x0aERROR fake \
             service=503 \\x1b]0;owned\\x07\\x0aERROR fake\n"
        );
        let (time, rest) = written[0].split_once(' ').expect("a time first");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        assert_eq!(
            rest,
            " WARN killed them group=app/x event=\"kill\" count=3\n"
        );
    }
}
