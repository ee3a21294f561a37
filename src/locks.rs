//! The locks that keep two memslice runs from changing the same thing at
//! once: the cgroup tree (apply), a protect slice (counting its tasks and
//! starting one), the unit directory (the systemd driver's apply).
//!
//! As root, each is a file only root can open, in [`locations::lock_dir`],
//! named after the directory it stands for (device and inode). An flock
//! on the directory itself, which memslice took before, is one any user
//! who can open the directory may take too, and hold for as long as they
//! like: every apply and every protect would then wait and give up. As
//! another user, memslice locks the directory itself: that run has no
//! privilege for others to hold up.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::Flock;

use crate::files::{self, FileError};
use crate::locations;

const LOCK_DIR_MODE: u32 = 0o700;
const LOCK_MODE: u32 = 0o600;

/// A lock memslice holds; released on drop.
#[derive(Debug)]
pub struct Held {
    lock: Flock<File>,
}

impl Held {
    /// Another descriptor for the same lock: unlocking either lets go of
    /// it (flock locks belong to the open file, not the descriptor).
    pub fn duplicate(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.lock.try_clone().map(std::os::fd::OwnedFd::from)
    }
}

/// Takes the lock that stands for `dir`, waiting up to `wait` for another
/// memslice run to let go of it; `Ok(None)` when it still holds it.
pub fn lock(dir: &Path, wait: Duration) -> Result<Option<Held>, FileError> {
    let file = if files::as_root() {
        let path = lock_file(&locations::lock_dir(), dir)?;
        files::private_dir(files::parent_dir(&path), LOCK_DIR_MODE)?;
        files::open_private(&path, LOCK_MODE)?
    } else {
        File::open(dir).map_err(|source| FileError::Read {
            path: dir.to_path_buf(),
            source,
        })?
    };
    let lock = files::lock(file, wait).map_err(|errno| FileError::Write {
        path: dir.to_path_buf(),
        source: errno.into(),
    })?;
    Ok(lock.map(|lock| Held { lock }))
}

/// Where root's lock for `dir` is, in `locks`: one file per directory,
/// whatever path names it.
fn lock_file(locks: &Path, dir: &Path) -> Result<PathBuf, FileError> {
    let meta = std::fs::metadata(dir).map_err(|source| FileError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(locks.join(format!("dir-{:x}-{:x}.lock", meta.dev(), meta.ino())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_is_named_after_the_directory_not_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let locks = Path::new("/run/memslice/locks");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).expect("symlink");
        let named = lock_file(locks, dir.path()).expect("lock file");
        assert_eq!(named, lock_file(locks, &link).expect("lock file"));
        let meta = std::fs::metadata(dir.path()).expect("stat");
        assert_eq!(
            named,
            locks.join(format!("dir-{:x}-{:x}.lock", meta.dev(), meta.ino()))
        );
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(named, lock_file(locks, other.path()).expect("lock file"));
        let missing = dir.path().join("missing");
        let message = lock_file(locks, &missing).expect_err("missing").to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
    }
}
