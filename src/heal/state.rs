//! The downtime record on disk, and the lock that keeps two heal runs
//! from acting at once.
//!
//! The record is replaced atomically: written to a temporary file beside
//! it, fsynced, renamed over the old one, and the directory fsynced, so a
//! crash or power loss leaves either the old record or the new, never half.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::decide::{Loaded, Record};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write the heal state {}: {err}", path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error("cannot open the heal lock {}: {err}", path.display())]
    Lock { path: PathBuf, err: std::io::Error },
}

pub fn load(path: &Path) -> Loaded {
    match fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<Record>(&text) {
            Ok(record) => Loaded::Record(record),
            Err(err) => Loaded::Corrupt(format!("{}: {err}", path.display())),
        },
        Err(err) if err.kind() == ErrorKind::NotFound => Loaded::Missing,
        Err(err) => Loaded::Corrupt(format!("{}: {err}", path.display())),
    }
}

/// A new record written beside the old one, not yet in its place.
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

pub fn stage(path: &Path, record: &Record) -> Result<Staged, StateError> {
    let fail = |err| StateError::Write {
        path: path.to_path_buf(),
        err,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(fail)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    let temp = dir.join(name);
    let mut bytes =
        serde_json::to_vec_pretty(record).map_err(|err| fail(std::io::Error::other(err)))?;
    bytes.push(b'\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(fail)?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    Ok(Staged {
        temp,
        target: path.to_path_buf(),
    })
}

impl Staged {
    pub fn commit(self) -> Result<(), StateError> {
        let fail = |err| StateError::Write {
            path: self.target.clone(),
            err,
        };
        fs::rename(&self.temp, &self.target).map_err(fail)?;
        let dir = self
            .target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    let started = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(fail)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // Who holds it, for the operator who finds a stuck lock.
                let _ = lock.set_len(0);
                let _ = writeln!(&mut *lock, "{}", std::process::id());
                return Ok(Some(HealLock { _lock: lock }));
            }
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                if started.elapsed() >= wait {
                    return Ok(None);
                }
                file = returned;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => return Err(fail(std::io::Error::from(errno))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        drop(staged); // the process dies here: no rename
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
}
