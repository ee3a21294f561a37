//! The downtime record on disk, and the lock that keeps two heal runs
//! from acting at once.
//!
//! The record is replaced atomically (see `files::stage`): a crash or
//! power loss leaves either the old record or the new, never half. The
//! lock is a root-only file (0600) in a root-only directory (0700):
//! anyone who could open it could hold it and switch the healer off.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::Flock;

use super::decide::{Loaded, Record};
use crate::files::{self, FileError};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write the heal state {}: {err}", path.display())]
    Write { path: PathBuf, err: FileError },
    #[error("cannot open the heal lock {}: {err}", path.display())]
    Lock { path: PathBuf, err: FileError },
}

/// Mode of the state file: the downtime record is no secret.
const STATE_MODE: u32 = 0o644;
const STATE_DIR_MODE: u32 = 0o755;
const LOCK_MODE: u32 = 0o600;
const LOCK_DIR_MODE: u32 = 0o700;

/// The record, read as root reads what it trusts (see `files`): a record
/// another user could have written or replaced (a state_file in a
/// directory others can write) could skip the grace and the flap limiter,
/// so it counts as corrupt.
pub fn load(path: &Path) -> Loaded {
    match files::read_trusted(path) {
        Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) => Loaded::Record(record),
            Err(err) => Loaded::Corrupt(format!("{}: {err}", path.display())),
        },
        Err(FileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Loaded::Missing
        }
        Err(err) => Loaded::Corrupt(err.to_string()),
    }
}

/// A new record written beside the old one, not yet in its place.
pub struct Staged(files::Staged);

pub fn stage(path: &Path, record: &Record) -> Result<Staged, StateError> {
    let fail = |err| StateError::Write {
        path: path.to_path_buf(),
        err,
    };
    files::private_dir(files::parent_dir(path), STATE_DIR_MODE).map_err(fail)?;
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|err| {
        fail(FileError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(err),
        })
    })?;
    bytes.push(b'\n');
    files::stage(path, &bytes, STATE_MODE)
        .map(Staged)
        .map_err(fail)
}

impl Staged {
    pub fn commit(self) -> Result<(), StateError> {
        let path = self.0.target().to_path_buf();
        self.0
            .commit()
            .map_err(|err| StateError::Write { path, err })
    }
}

pub fn save(path: &Path, record: &Record) -> Result<(), StateError> {
    stage(path, record)?.commit()
}

/// Held while a heal run decides and acts; released on drop.
pub struct HealLock {
    _lock: Flock<File>,
}

/// Takes the lock, waiting up to `wait`. `Ok(None)`: another run holds it.
pub fn lock(path: &Path, wait: Duration) -> Result<Option<HealLock>, StateError> {
    let fail = |err| StateError::Lock {
        path: path.to_path_buf(),
        err,
    };
    files::private_dir(files::parent_dir(path), LOCK_DIR_MODE).map_err(fail)?;
    let file = files::open_private(path, LOCK_MODE).map_err(fail)?;
    let lock = files::lock(file, wait).map_err(|errno| {
        fail(FileError::Write {
            path: path.to_path_buf(),
            source: errno.into(),
        })
    })?;
    Ok(lock.map(|mut lock| {
        // Who holds it, for the operator who finds a stuck lock.
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = writeln!(&mut *lock, "{}", std::process::id());
        HealLock { _lock: lock }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::time::Instant;

    fn record(minutes: i64) -> Record {
        Record {
            down_since: Some(
                jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(minutes),
            ),
            ..Record::default()
        }
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/heal.state");
        assert_eq!(load(&path), Loaded::Missing);
        save(&path, &record(5)).expect("save");
        assert_eq!(load(&path), Loaded::Record(record(5)));
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_crash_between_write_and_rename_leaves_the_old_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heal.state");
        save(&path, &record(5)).expect("save");
        let staged = stage(&path, &record(99)).expect("stage");
        drop(staged); // no rename: the write failed or the process died
        assert_eq!(load(&path), Loaded::Record(record(5)));
        save(&path, &record(7)).expect("the next run saves over the leftover");
        assert_eq!(load(&path), Loaded::Record(record(7)));
    }

    #[test]
    fn garbage_and_unreadable_files_are_corrupt_not_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heal.state");
        fs::write(&path, "{\"down_since\": \"yesterday\"").expect("write");
        assert!(matches!(load(&path), Loaded::Corrupt(why) if why.contains("heal.state")));
        assert!(
            matches!(load(dir.path()), Loaded::Corrupt(_)),
            "a directory is not a record"
        );
    }

    /// A record someone else could have written counts for nothing: it
    /// could say the site has been down for hours. A FIFO in its place
    /// does not hold the healer.
    #[test]
    fn as_root_a_record_another_user_could_write_is_corrupt() {
        assert!(files::as_root(), "needs root, as the suite runs");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heal.state");
        save(&path, &record(5)).expect("save");
        let nobody = nix::unistd::Uid::from_raw(65534);
        std::os::unix::fs::chown(&path, Some(nobody.as_raw()), None).expect("chown");
        assert!(
            matches!(load(&path), Loaded::Corrupt(why) if why.contains("refusing") && why.contains("owned by")),
            "{:?}",
            load(&path)
        );
        fs::remove_file(&path).expect("rm");
        save(&path, &record(5)).expect("save");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(load(&path), Loaded::Corrupt(why) if why.contains("refusing")));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::remove_file(&path).expect("rm");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let started = Instant::now();
        assert!(matches!(load(&path), Loaded::Corrupt(why) if why.contains("not a regular file")));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_second_lock_waits_then_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heal.lock");
        let held = lock(&path, Duration::ZERO).expect("lock").expect("free");
        let started = Instant::now();
        assert!(
            lock(&path, Duration::from_millis(200))
                .expect("lock")
                .is_none()
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(held);
        assert!(lock(&path, Duration::ZERO).expect("lock").is_some());
    }

    #[test]
    fn the_lock_is_roots_alone_and_never_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/heal.lock");
        let held = lock(&path, Duration::ZERO).expect("lock").expect("free");
        let mode = |p: &Path| fs::metadata(p).expect("meta").mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "lock file mode");
        assert_eq!(mode(&dir.path().join("run")), 0o700, "lock directory mode");
        drop(held);
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "precious").expect("write");
        let planted = dir.path().join("planted.lock");
        symlink(&elsewhere, &planted).expect("symlink");
        assert!(
            lock(&planted, Duration::ZERO).is_err(),
            "followed a symlink"
        );
        assert_eq!(fs::read_to_string(&elsewhere).expect("read"), "precious");
    }
}
