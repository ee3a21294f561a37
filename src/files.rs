//! Files memslice reads and writes as root, outside the cgroup tree.
//!
//! Root reads a file only if root owns it and nobody else can change it:
//! the file, and every directory above it, owned by root and not writable
//! by group or others (sshd's StrictModes). Directories above the one that
//! holds the file may be world-writable if they are sticky and root's
//! (/tmp): nobody else can rename root's entries in them. As any other
//! user, memslice reads what that user can read.
//!
//! Files root writes are opened without following symlinks, in
//! directories nobody else can write; a replaced file is written to a
//! temporary file with an unpredictable name (created exclusively), synced
//! and renamed over the old one, and the temporary file is removed on
//! every error path.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing {}: it is {what} owned by {owner} with mode {mode:04o}; as root, memslice reads and writes only where root alone can write (owned by root, not writable by group or others, like sshd's StrictModes): chown root:root and chmod go-w {}",
        path.display(),
        path.display()
    )]
    Untrusted {
        path: PathBuf,
        what: &'static str,
        owner: String,
        mode: u32,
    },
    #[error("refusing {}: it is not a regular file", path.display())]
    NotAFile { path: PathBuf },
}

/// Whether the rules for root apply: memslice runs as root.
pub fn as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Reads `path`; as root, only if root alone can change it.
pub fn read_trusted(path: &Path) -> Result<Vec<u8>, FileError> {
    let read_error = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Nonblocking: a FIFO put in the way must not hold memslice before
    // `check_trusted` refuses it (no effect on a regular file).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    // The size, and one byte more for the read that finds the end.
    let size_hint = if as_root() {
        check_trusted(path, &file)?.saturating_add(1)
    } else {
        8192
    };
    read_all(&file, usize::try_from(size_hint).unwrap_or(8192)).map_err(read_error)
}

/// The rest of `file`, with read(2) alone, into a buffer of `size_hint`
/// bytes to start with. std's `read_to_end` on a `File` asks for its size
/// first (statx, then lseek): two more system calls, and /proc's files
/// report a size of 0 anyway. Through `Take`, std reads as it would any
/// reader, the buffer growing as it fills.
pub fn read_all(file: &File, size_hint: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // A file too big for memory is an error, not an abort.
    bytes
        .try_reserve_exact(size_hint)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::OutOfMemory, err))?;
    Read::take(file, u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether root would read `path` (see [`read_trusted`]), whoever asks:
/// `memslice doctor` says so before root runs into it.
pub fn root_would_read(path: &Path) -> Result<(), FileError> {
    let file = File::open(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_trusted(path, &file).map(drop)
}

/// The file open as `file`, at `path`, and every directory above it are
/// root's alone. Returns the file's size.
fn check_trusted(path: &Path, file: &File) -> Result<u64, FileError> {
    let read_error = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    check_owner(path, "a file", &meta, false)?;
    let real = path.canonicalize().map_err(read_error)?;
    check_directory_chain(parent_dir(&real))?;
    Ok(meta.len())
}

/// Checks `dir` (a canonical path) strictly, and the directories above it
/// allowing root's sticky ones.
fn check_directory_chain(dir: &Path) -> Result<(), FileError> {
    for (depth, dir) in dir.ancestors().enumerate() {
        let meta = fs::metadata(dir).map_err(|source| FileError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        check_owner(dir, "a directory", &meta, depth > 0)?;
    }
    Ok(())
}

fn check_owner(
    path: &Path,
    what: &'static str,
    meta: &fs::Metadata,
    sticky_is_enough: bool,
) -> Result<(), FileError> {
    let mode = meta.mode() & 0o7777;
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if meta.uid() == 0 && (!writable_by_others || (sticky_is_enough && sticky)) {
        return Ok(());
    }
    Err(FileError::Untrusted {
        path: path.to_path_buf(),
        what,
        owner: owner_name(meta.uid()),
        mode,
    })
}

fn owner_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Creates `dir` (and its parents) with `mode` where missing; as root, an
/// existing one must be root's alone.
pub fn private_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    let fail = |source| FileError::Write {
        path: dir.to_path_buf(),
        source,
    };
    match DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(source) => return Err(fail(source)),
    }
    if as_root() {
        check_directory_chain(&dir.canonicalize().map_err(fail)?)?;
    }
    Ok(())
}

/// The directory that holds `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Opens `path` for reading and writing, creating it with `mode`, never
/// through a symlink; as root, an existing file must be root's, and its
/// mode is narrowed to `mode`.
pub fn open_private(path: &Path, mode: u32) -> Result<File, FileError> {
    let fail = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if as_root() {
        if meta.uid() != 0 {
            return Err(FileError::Untrusted {
                path: path.to_path_buf(),
                what: "a file",
                owner: owner_name(meta.uid()),
                mode: meta.mode() & 0o7777,
            });
        }
        if meta.mode() & 0o7777 != mode {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(fail)?;
        }
    }
    Ok(file)
}

/// A new version of a file written beside it, not yet in its place.
/// Dropping it removes the temporary file.
#[derive(Debug)]
pub struct Staged {
    temp: Option<PathBuf>,
    target: PathBuf,
}

/// Writes `bytes` to an unpredictable temporary name beside `path`
/// (created exclusively, never through a symlink) and syncs it.
pub fn stage(path: &Path, bytes: &[u8], mode: u32) -> Result<Staged, FileError> {
    let fail = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::from(ErrorKind::InvalidInput)))?;
    let (temp, mut file) = loop {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{:016x}.tmp", random()));
        let temp = dir.join(temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(fail(err)),
        }
    };
    let staged = Staged {
        temp: Some(temp),
        target: path.to_path_buf(),
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    Ok(staged)
}

impl Staged {
    /// The file this will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the new version over the old one and syncs the directory,
    /// so a crash leaves the old version or the new, never half.
    pub fn commit(mut self) -> Result<(), FileError> {
        let fail = |source| FileError::Write {
            path: self.target.clone(),
            source,
        };
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        if let Err(err) = fs::rename(&temp, &self.target) {
            let _ = fs::remove_file(&temp);
            return Err(fail(err));
        }
        File::open(parent_dir(&self.target))
            .and_then(|dir| dir.sync_all())
            .map_err(fail)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Replaces `path` with `bytes` atomically (see [`stage`]).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    stage(path, bytes, mode)?.commit()
}

/// An exclusive flock on `file`, waiting up to `wait` for another holder
/// to let go; `Ok(None)` when it still holds it. Released on drop.
pub fn lock(
    mut file: File,
    wait: std::time::Duration,
) -> Result<Option<nix::fcntl::Flock<File>>, nix::errno::Errno> {
    let started = std::time::Instant::now();
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(lock)),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                if started.elapsed() >= wait {
                    return Ok(None);
                }
                file = returned;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, errno)) => return Err(errno),
        }
    }
}

/// 64 bits nobody outside can predict: the standard library seeds its
/// hash keys from the kernel's random source.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink};

    /// The ownership rules need root (chown); the suite runs as root, as CI does.
    fn require_root() {
        assert!(
            as_root(),
            "this test checks what root may read; run the suite as root, as CI does"
        );
    }

    #[test]
    fn root_reads_only_what_root_alone_can_change() {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slices.toml");
        fs::write(&path, "x").expect("write");
        assert_eq!(read_trusted(&path).expect("root's own"), b"x");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).expect("chmod");
        let err = read_trusted(&path).expect_err("group-writable");
        assert!(
            err.to_string().contains("it is a file owned by uid 0")
                && err.to_string().contains("mode 0664"),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        chown(&path, Some(65534), None).expect("chown");
        assert!(matches!(
            read_trusted(&path),
            Err(FileError::Untrusted { owner, .. }) if owner.starts_with("uid 65534")
        ));
        chown(&path, Some(0), None).expect("chown");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).expect("chmod");
        let err = read_trusted(&path).expect_err("sticky world-writable directory");
        assert!(err.to_string().contains("it is a directory"), "{err}");
    }

    #[test]
    fn a_symlink_is_judged_by_where_it_leads() {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        fs::write(open.join("slices.toml"), "x").expect("write");
        let link = dir.path().join("slices.toml");
        symlink(open.join("slices.toml"), &link).expect("symlink");
        assert!(matches!(
            read_trusted(&link),
            Err(FileError::Untrusted { .. })
        ));
    }

    #[test]
    fn private_files_never_follow_symlinks_and_narrow_their_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        fs::write(&target, "keep").expect("write");
        let lock = dir.path().join("heal.lock");
        symlink(&target, &lock).expect("symlink");
        assert!(open_private(&lock, 0o600).is_err(), "followed a symlink");
        assert!(
            stage(&lock, b"x", 0o600).expect("stage").commit().is_ok(),
            "a rename replaces the link itself"
        );
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep");
        let plain = dir.path().join("plain.lock");
        fs::write(&plain, "").expect("write");
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).expect("chmod");
        open_private(&plain, 0o600).expect("open");
        if as_root() {
            assert_eq!(fs::metadata(&plain).expect("meta").mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_failed_stage_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heal.state");
        let staged = stage(&path, b"new", 0o644).expect("stage");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
        drop(staged);
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            0,
            "the temporary file was left"
        );
        replace(&path, b"new", 0o644).expect("replace");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn temporary_names_differ() {
        assert_ne!(random(), random());
    }
}
