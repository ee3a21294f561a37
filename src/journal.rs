//! Logging to the systemd journal: whether stderr is the journal, and the
//! names an operator filters on.
//!
//! A service's stderr under systemd is a stream that journald stores line
//! by line, flat and at one priority. When stderr is that stream, the
//! binary logs through the journal's own protocol instead (tracing-journald),
//! so every field of a log call becomes a journal field under
//! [`FIELD_PREFIX`] (`group` is `MEMSLICE_GROUP`) and levels become
//! priorities. systemd says which stream it is in `JOURNAL_STREAM`
//! (`DEVICE:INODE`, systemd.exec(5)); the variable alone proves nothing,
//! since a service's children inherit it with stderr sent elsewhere.

use std::io;

use crate::observe::events::EventKind;

/// Prefix of memslice's journal fields: `MEMSLICE_GROUP`, `MEMSLICE_EVENT`,
/// `MEMSLICE_DECISION`, `MEMSLICE_SERVICE` ...
pub const FIELD_PREFIX: &str = "MEMSLICE";

/// The target of error events that are critical (journal priority 2):
/// tracing has no level above error.
pub const CRITICAL: &str = "memslice::critical";

/// The operations side, by the name the shipped units give it
/// (`Slice=ops.slice`): an OOM kill in there is what memslice exists to
/// prevent, and is logged as critical.
pub const OPS_SLICE: &str = "ops";

/// Whether `JOURNAL_STREAM`'s value names the file with this device and
/// inode. Pure.
pub fn names_stream(journal_stream: &str, device: u64, inode: u64) -> bool {
    journal_stream
        .split_once(':')
        .is_some_and(|(dev, ino)| dev.parse() == Ok(device) && ino.parse() == Ok(inode))
}

/// Whether stderr is the journal stream systemd connected.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    nix::sys::stat::fstat(io::stderr())
        .is_ok_and(|stat| names_stream(value, stat.st_dev, stat.st_ino))
}

/// Whether a memory event in `group` (a cgroup path as the driver lays it
/// out) of `kind` is an OOM kill on the operations side.
pub fn is_ops_kill(group: &str, kind: EventKind, ops_group: &str) -> bool {
    matches!(kind, EventKind::OomKill | EventKind::OomGroupKill)
        && group
            .strip_prefix(ops_group)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_must_be_stderrs_own() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346), "another inode");
        assert!(!names_stream("9:12345", 8, 12345), "another device");
        for bad in ["", "8", "8:", ":12345", "8:12345:1", "x:y", " 8:12345"] {
            assert!(!names_stream(bad, 8, 12345), "{bad:?}");
        }
    }

    #[test]
    fn an_oom_kill_in_ops_or_below_is_critical() {
        assert!(is_ops_kill("ops", EventKind::OomKill, "ops"));
        assert!(is_ops_kill(
            "ops/monitoring",
            EventKind::OomGroupKill,
            "ops"
        ));
        assert!(is_ops_kill("ops.slice", EventKind::OomKill, "ops.slice"));
        assert!(!is_ops_kill("ops", EventKind::Max, "ops"), "not a kill");
        assert!(!is_ops_kill("ops", EventKind::Oom, "ops"), "not a kill");
        assert!(!is_ops_kill("app/web", EventKind::OomKill, "ops"));
        assert!(
            !is_ops_kill("opsx", EventKind::OomKill, "ops"),
            "another slice"
        );
    }
}
