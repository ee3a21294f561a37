//! All file access under the cgroup root goes through [`Root`]: the root is
//! a value, never a constant, so the same code runs on /sys/fs/cgroup, on a
//! subtree delegated to memslice, and on a temp dir in tests.
//!
//! Groups are named by their path relative to the root (`app/web`; `""` is
//! the root itself). Writes open with `create(false)`, so a misspelt knob
//! fails with ENOENT instead of leaving a stray file behind.
//!
//! Which backend answers (the kernel, or in test builds an emulation) is
//! this module's business alone: callers ask for what they need (a
//! directory to clone into, a pressure trigger), never for the backend.

#[cfg(any(test, feature = "emulated-root"))]
pub mod emulated;
pub mod parse;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Controller, Limit};
use crate::locks;

pub use parse::{MemoryEvents, ParseError, Pressure};

/// Who answers the file operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// A real cgroup2 mount: the kernel creates interface files and checks
    /// every write.
    Kernel,
    /// A plain directory marked by `emulated::MARKER` (test builds only).
    #[cfg(any(test, feature = "emulated-root"))]
    Emulated,
}

#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {value:?} to {}: {source}{}", path.display(), write_hint(path, source))]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("failed to create cgroup {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to remove cgroup {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected content in {}: {source}", path.display())]
    Parse { path: PathBuf, source: ParseError },
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A group's directory, listed a moment ago, cannot be opened: gone
    /// when the error is ENOENT (see [`Error::group_vanished`]).
    #[error("cannot open the group {}: {source}", path.display())]
    OpenGroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a cgroup v2 hierarchy", path.display())]
    NotCgroup2 { path: PathBuf },
    #[error(transparent)]
    Lock(#[from] crate::files::FileError),
}

impl Error {
    /// The group was removed while memslice looked at it: ENOENT for a path
    /// that is gone, ENODEV for a file of a cgroup being removed (systemd
    /// removes an empty scope the moment its last process exits).
    pub fn group_vanished(&self) -> bool {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::OpenGroup { source, .. } => {
                source.kind() == ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENODEV)
            }
            _ => false,
        }
    }
}

/// The kernel answers with bare errnos; say what they mean for cgroupfs.
fn write_hint(path: &Path, err: &std::io::Error) -> &'static str {
    let subtree = path
        .file_name()
        .is_some_and(|name| name == "cgroup.subtree_control");
    let procs = path.file_name().is_some_and(|name| name == "cgroup.procs");
    match err.raw_os_error() {
        Some(libc::EBUSY) if procs => {
            " (the group enables controllers for child groups; cgroup v2 keeps processes in leaf groups only)"
        }
        Some(libc::ESRCH) if procs => " (no such process: it has ended)",
        Some(libc::EBUSY) if subtree => {
            " (the group has processes of its own; cgroup v2's \"no internal processes\" rule forbids enabling controllers for its children until they move into a leaf group)"
        }
        Some(libc::ENOENT) if subtree => {
            " (the controller is not enabled in the parent's cgroup.subtree_control)"
        }
        Some(libc::ENOENT) => {
            " (no such file: is the controller enabled in the parent's cgroup.subtree_control?)"
        }
        Some(libc::EINVAL) => " (the kernel refused the value)",
        Some(libc::EACCES | libc::EPERM) => {
            " (permission denied: run as root, or point --cgroup-root at a subtree delegated to this user)"
        }
        _ => "",
    }
}

impl Root {
    /// `path` as a root, once it is known to be a cgroup2 directory: its
    /// file system says so (statfs, no mount table needed). In test builds
    /// a directory holding the emulation's marker is an emulated root.
    pub fn open(path: &Path) -> Result<Root, Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if emulated::is_emulated(path) {
            tracing::info!(root = %path.display(), "using an emulated cgroup root (test build)");
            return Ok(Root::emulated(path));
        }
        let fail = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let dir = File::open(path).map_err(fail)?;
        let stat = nix::sys::statfs::fstatfs(&dir).map_err(|errno| fail(errno.into()))?;
        if stat.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(Error::NotCgroup2 {
                path: path.to_path_buf(),
            });
        }
        Ok(Root {
            path: path.to_path_buf(),
            backend: Backend::Kernel,
        })
    }

    /// An emulated root in `path` (see [`emulated`]).
    #[cfg(any(test, feature = "emulated-root"))]
    pub fn emulated(path: impl Into<PathBuf>) -> Root {
        Root {
            path: path.into(),
            backend: Backend::Emulated,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The one place a group's directory is built.
    pub fn dir(&self, group: &str) -> PathBuf {
        self.path_of(group, "")
    }

    pub fn file(&self, group: &str, name: &str) -> PathBuf {
        self.path_of(group, name)
    }

    /// ROOT/GROUP/NAME in one allocation (reading a large tree builds
    /// tens of thousands of these); an empty GROUP or NAME is left out.
    fn path_of(&self, group: &str, name: &str) -> PathBuf {
        let root = self.path.as_os_str();
        let mut path = std::ffi::OsString::with_capacity(
            root.len()
                .saturating_add(group.len())
                .saturating_add(name.len())
                .saturating_add(2),
        );
        path.push(root);
        for part in [group, name] {
            if !part.is_empty() {
                path.push("/");
                path.push(part);
            }
        }
        PathBuf::from(path)
    }

    pub fn exists(&self, group: &str) -> bool {
        self.file(group, "cgroup.procs").is_file()
    }

    /// Creates the group; `Ok(false)` when it already existed.
    pub fn create(&self, group: &str) -> Result<bool, Error> {
        let path = self.dir(group);
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            emulated::injected_fault(&self.path, "mkdir", &path).map_err(|source| {
                Error::Create {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(source) => return Err(Error::Create { path, source }),
        }
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            emulated::populate(&path).map_err(|source| Error::Create { path, source })?;
        }
        Ok(true)
    }

    /// Removes an empty group. The kernel refuses (EBUSY) while it has
    /// processes or children; the emulation refuses the same way.
    pub fn remove(&self, group: &str) -> Result<(), Error> {
        let path = self.dir(group);
        let result = match self.backend {
            Backend::Kernel => std::fs::remove_dir(&path),
            #[cfg(any(test, feature = "emulated-root"))]
            Backend::Emulated => emulated::injected_fault(&self.path, "rmdir", &path)
                .and_then(|()| emulated::remove(&path)),
        };
        result.map_err(|source| Error::Remove { path, source })
    }

    /// SIGKILLs every process in the group and its descendants: cgroup.kill
    /// (Linux 5.14) where it exists, otherwise each pid in cgroup.procs,
    /// re-read until no new one appears, since processes fork while being
    /// killed. Returns before they are gone; see [`Root::populated`].
    pub fn kill(&self, group: &str) -> Result<(), Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            let path = self.dir(group);
            return emulated::kill(&path).map_err(|source| Error::Write {
                path: path.join("cgroup.kill"),
                value: "1".into(),
                source,
            });
        }
        match self.write(group, "cgroup.kill", "1") {
            Err(Error::Write { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let mut killed = std::collections::BTreeSet::new();
        loop {
            let fresh: Vec<u32> = self
                .procs(group)?
                .into_iter()
                .filter(|pid| killed.insert(*pid))
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            for pid in fresh {
                if let Ok(pid) = i32::try_from(pid) {
                    // ESRCH: it exited meanwhile, which is the goal.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// Kills the group (see [`Root::kill`]) and waits up to `timeout` for it
    /// to be empty or gone (systemd removes an empty scope at once), calling
    /// `meanwhile` between looks (the supervisor reaps there). `Ok(false)`
    /// when processes remain at the timeout, stuck in the kernel.
    pub fn kill_and_wait(
        &self,
        group: &str,
        timeout: Duration,
        mut meanwhile: impl FnMut(),
    ) -> Result<bool, Error> {
        match self.kill(group) {
            Err(err) if err.group_vanished() => {}
            other => other?,
        }
        let started = Instant::now();
        loop {
            meanwhile();
            if !self.populated(group)? {
                return Ok(true);
            }
            if started.elapsed() > timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn read(&self, group: &str, name: &str) -> Result<String, Error> {
        let path = self.file(group, name);
        read_text(&path, Records::of(name)).map_err(|source| Error::Read { path, source })
    }

    /// Like [`Root::read`], but a missing file is `None`: knobs such as
    /// memory.swap.max exist only with some kernel options.
    pub fn read_optional(&self, group: &str, name: &str) -> Result<Option<String>, Error> {
        match self.read(group, name) {
            Ok(text) => Ok(Some(text)),
            Err(Error::Read { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub fn write(&self, group: &str, name: &str, value: &str) -> Result<(), Error> {
        let path = self.file(group, name);
        let fail = |source| Error::Write {
            path: path.clone(),
            value: value.to_string(),
            source,
        };
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            emulated::injected_fault(&self.path, "write", &path).map_err(fail)?;
            if name == "cgroup.subtree_control" {
                return emulated::write_subtree_control(&self.dir(group), value).map_err(fail);
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(false)
            .open(&path)
            .map_err(fail)?;
        // One write call: the kernel parses each write(2) as a whole value.
        file.write_all(value.as_bytes()).map_err(fail)
    }

    fn parsed<T>(
        &self,
        group: &str,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<T, Error> {
        let text = self.read(group, name)?;
        parse(&text).map_err(|source| Error::Parse {
            path: self.file(group, name),
            source,
        })
    }

    pub fn limit(&self, group: &str, name: &str) -> Result<Option<Limit>, Error> {
        let Some(text) = self.read_optional(group, name)? else {
            return Ok(None);
        };
        Limit::parse_kernel(&text)
            .map(Some)
            .ok_or_else(|| Error::Parse {
                path: self.file(group, name),
                source: ParseError {
                    line: text.trim().to_string(),
                    reason: "expected a byte count or \"max\"",
                },
            })
    }

    pub fn memory_current(&self, group: &str) -> Result<Option<u64>, Error> {
        Ok(self.limit(group, "memory.current")?.and_then(Limit::bytes))
    }

    pub fn memory_events(&self, group: &str) -> Result<MemoryEvents, Error> {
        self.parsed(group, "memory.events", parse::memory_events)
    }

    pub fn memory_stat(&self, group: &str) -> Result<Vec<(String, u64)>, Error> {
        self.parsed(group, "memory.stat", |text| {
            parse::flat_keyed(text)
                .map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        })
    }

    /// memory.events, or `None` where the group has no memory controller.
    pub fn memory_events_if_enabled(&self, group: &str) -> Result<Option<MemoryEvents>, Error> {
        self.parsed_optional(group, "memory.events", parse::memory_events)
    }

    pub fn memory_pressure(&self, group: &str) -> Result<Option<Pressure>, Error> {
        self.parsed_optional(group, "memory.pressure", parse::pressure)
    }

    fn parsed_optional<T>(
        &self,
        group: &str,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, Error> {
        match self.read_optional(group, name)? {
            None => Ok(None),
            Some(text) => parse(&text).map(Some).map_err(|source| Error::Parse {
                path: self.file(group, name),
                source,
            }),
        }
    }

    pub fn procs(&self, group: &str) -> Result<Vec<u32>, Error> {
        self.parsed(group, "cgroup.procs", parse::pids)
    }

    /// A group that is gone, or being removed, has no processes: systemd
    /// removes an empty scope while others still look at it.
    pub fn populated(&self, group: &str) -> Result<bool, Error> {
        let populated = match self.parsed(group, "cgroup.events", parse::populated) {
            Err(err) if err.group_vanished() => return Ok(false),
            other => other?,
        };
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated && !populated {
            // The emulation's "populated": a listed pid still runs.
            return Ok(self
                .procs(group)?
                .into_iter()
                .any(crate::host::process_runs));
        }
        Ok(populated)
    }

    pub fn controllers(&self, group: &str) -> Result<Vec<Controller>, Error> {
        Ok(parse::controllers(&self.read(group, "cgroup.controllers")?))
    }

    pub fn subtree_control(&self, group: &str) -> Result<Vec<Controller>, Error> {
        Ok(parse::controllers(
            &self.read(group, "cgroup.subtree_control")?,
        ))
    }

    /// The group's directory as clone3(CLONE_INTO_CGROUP) takes it; `None`
    /// where only a process's own write to cgroup.procs can place it (an
    /// emulated root), see [`Root::open_procs`].
    pub fn clone_target<'h>(&self, handle: &'h GroupHandle) -> Option<BorrowedFd<'h>> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            return None;
        }
        Some(handle.dir.as_fd())
    }

    /// The group's cgroup.procs, open for a forked child to move itself in.
    pub fn open_procs(&self, group: &str) -> Result<File, Error> {
        let path = self.file(group, "cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| Error::Open { path, source })
    }

    /// Arms a PSI trigger (`some 150000 1000000`) on the group's
    /// memory.pressure: the returned file polls POLLPRI when it fires, and
    /// closing it disarms it. `None` where there is no PSI (an emulated root).
    pub fn arm_pressure_trigger(&self, group: &str, trigger: &str) -> Result<Option<File>, Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            return Ok(None);
        }
        let path = self.file(group, "memory.pressure");
        let fail = |source| Error::Write {
            path: path.clone(),
            value: trigger.to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(fail)?;
        file.write_all(trigger.as_bytes()).map_err(fail)?;
        Ok(Some(file))
    }

    /// Moves the process `pid` (all its threads) into the group, as
    /// writing it to cgroup.procs does: its children stay where they are.
    /// The emulation moves it between the lists of its groups and refuses
    /// what the kernel refuses (a group with controllers enabled for its
    /// children, a process that does not run).
    pub fn move_process(&self, group: &str, pid: u32) -> Result<(), Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            let dir = self.dir(group);
            return emulated::move_process(&self.path, &dir, pid).map_err(|source| Error::Write {
                path: dir.join("cgroup.procs"),
                value: pid.to_string(),
                source,
            });
        }
        self.write(group, "cgroup.procs", &pid.to_string())
    }

    /// Whether `pid` is in the group or below it. Fails rather than
    /// guessing: a caller that must never kill itself asks this first.
    pub fn holds_pid(&self, group: &str, pid: u32) -> Result<bool, Error> {
        match self.procs(group) {
            Ok(pids) if pids.contains(&pid) => return Ok(true),
            Ok(_) => {}
            Err(err) if err.group_vanished() => return Ok(false),
            Err(err) => return Err(err),
        }
        let children = match self.children(group) {
            Ok(children) => children,
            Err(err) if err.group_vanished() => return Ok(false),
            Err(err) => return Err(err),
        };
        for child in children {
            if self.holds_pid(&join(group, &child), pid)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes the tree's lock, waiting up to `wait` (see [`crate::locks`]),
    /// so two memslice runs never change the same tree at once. `None`
    /// when another run still holds it.
    pub fn lock_tree(&self, wait: Duration) -> Result<Option<locks::Held>, Error> {
        Ok(locks::lock(&self.path, wait)?)
    }

    /// Takes a group's lock, as [`Root::lock_tree`] takes the root's: the
    /// protect slice's, while counting its tasks and starting one.
    pub fn lock_group(&self, group: &str, wait: Duration) -> Result<Option<locks::Held>, Error> {
        Ok(locks::lock(&self.dir(group), wait)?)
    }

    /// Sets an extended attribute of the group's directory (see `sys`):
    /// what memslice records about a task, the markers userspace OOM
    /// killers honour.
    pub fn set_attribute(&self, group: &str, name: &str, value: &[u8]) -> Result<(), Error> {
        let path = self.dir(group);
        crate::sys::set_xattr(&path, name, value).map_err(|source| Error::Write {
            path,
            value: format!("xattr {name}"),
            source,
        })
    }

    pub fn remove_attribute(&self, group: &str, name: &str) -> Result<(), Error> {
        let path = self.dir(group);
        crate::sys::remove_xattr(&path, name).map_err(|source| Error::Write {
            path,
            value: format!("removal of xattr {name}"),
            source,
        })
    }

    /// The group's directory, held open: its attributes stay readable
    /// after the group is removed (systemd removes an empty scope at once).
    pub fn open_group(&self, group: &str) -> Result<GroupHandle, Error> {
        let path = self.dir(group);
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&path)
            .map(|dir| GroupHandle {
                dir,
                path: path.clone(),
            })
            .map_err(|source| Error::OpenGroup { path, source })
    }

    /// An attribute of the group; `None` when it is not set.
    pub fn attribute(&self, group: &str, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.open_group(group)?.attribute(name)
    }

    /// Whether the root lies in a subtree systemd delegated: the root, or
    /// a cgroup above it up to the top of the hierarchy, carries one of
    /// [`DELEGATION_MARKERS`]. A mark that cannot be read (no permission,
    /// a kernel without user attributes on cgroupfs) counts as absent. An
    /// emulated root is memslice's own unless it holds
    /// `emulated::SYSTEMD_TREE`, which stands for systemd's tree.
    pub fn delegation(&self) -> Result<Option<Delegation>, Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated && !emulated::is_systemds(&self.path) {
            return Ok(Some(Delegation {
                at: self.path.clone(),
                marker: emulated::MARKER,
            }));
        }
        for dir in self.hierarchy()? {
            let open = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(&dir)
                .map_err(|source| Error::Open {
                    path: dir.clone(),
                    source,
                })?;
            for marker in DELEGATION_MARKERS {
                if let Ok(Some(value)) = crate::sys::get_xattr(open.as_fd(), marker)
                    && value == b"1"
                {
                    return Ok(Some(Delegation { at: dir, marker }));
                }
            }
        }
        Ok(None)
    }

    /// The root's path below the top of its cgroup2 hierarchy, as
    /// /proc/PID/cgroup names cgroups (`/` for the mount itself); `/` for
    /// an emulated root.
    pub fn hierarchy_path(&self) -> Result<PathBuf, Error> {
        let dirs = self.hierarchy()?;
        let top = dirs.last().unwrap_or(&self.path);
        let below = dirs
            .first()
            .and_then(|root| root.strip_prefix(top).ok())
            .unwrap_or(Path::new(""));
        Ok(Path::new("/").join(below))
    }

    /// The root's directory and those above it on the same cgroup2 file
    /// system, the root first, the hierarchy's top last.
    fn hierarchy(&self) -> Result<Vec<PathBuf>, Error> {
        #[cfg(any(test, feature = "emulated-root"))]
        if self.backend == Backend::Emulated {
            return Ok(vec![self.path.clone()]);
        }
        let root = self.path.canonicalize().map_err(|source| Error::Open {
            path: self.path.clone(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in root.ancestors() {
            let on_cgroup2 = nix::sys::statfs::statfs(dir)
                .is_ok_and(|stat| stat.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
            if !on_cgroup2 {
                break;
            }
            dirs.push(dir.to_path_buf());
        }
        Ok(dirs)
    }

    /// Names of the child groups, sorted.
    pub fn children(&self, group: &str) -> Result<Vec<String>, Error> {
        let path = self.dir(group);
        let entries = std::fs::read_dir(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            if entry.file_type().is_ok_and(|kind| kind.is_dir())
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// An open group directory (see [`Root::open_group`]).
#[derive(Debug)]
pub struct GroupHandle {
    dir: File,
    path: PathBuf,
}

impl GroupHandle {
    /// Whether root, or the user memslice runs as, owns the group's
    /// directory: only then are the records on it memslice's (a user may
    /// set `user.*` attributes on a group delegated to them). As root that
    /// is root alone; a memslice of a user's own, on a subtree delegated
    /// to them, makes its task groups as that user.
    pub fn owned_by_root_or_us(&self) -> Result<bool, Error> {
        use std::os::unix::fs::MetadataExt;
        let us = nix::unistd::geteuid().as_raw();
        self.dir
            .metadata()
            .map(|meta| meta.uid() == 0 || meta.uid() == us)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })
    }

    pub fn attribute(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        crate::sys::get_xattr(self.dir.as_fd(), name).map_err(|source| Error::Read {
            path: self.path.join(format!("(xattr {name})")),
            source,
        })
    }
}

/// systemd's marks on a cgroup it delegated (`Delegate=yes`), value `1`:
/// `trusted.delegate` since systemd 244, and `user.delegate` as well since
/// 251, which readers without CAP_SYS_ADMIN can see (user attributes on
/// cgroupfs need Linux 5.7). systemd's cg_is_delegated() reads them in
/// this order.
pub const DELEGATION_MARKERS: [&str; 2] = ["trusted.delegate", "user.delegate"];

/// Where a subtree was delegated, and the mark that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub at: PathBuf,
    pub marker: &'static str,
}

/// How a cgroup interface file hands out its text. Every file but the
/// process lists prints one seq_file record, and a regular file (the
/// emulation) ends where a read comes short: for them a read shorter than
/// the buffer is the end, which spares the read that returns 0. The process
/// lists are read record by record, and only a read of 0 ends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Records {
    One,
    Many,
}

impl Records {
    fn of(name: &str) -> Records {
        if matches!(name, "cgroup.procs" | "cgroup.threads") {
            Records::Many
        } else {
            Records::One
        }
    }
}

/// open, read, close: no stat for a size hint (cgroupfs reports 0 or 4096
/// whatever the text), no read at the end of a one-record file.
fn read_text(path: &Path, records: Records) -> std::io::Result<String> {
    // Most files hold a line or two; a small chunk is cheap to zero.
    const CHUNK: usize = 1024;
    let mut file = File::open(path)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        text.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if n == 0 || (records == Records::One && n < CHUNK) {
            break;
        }
    }
    String::from_utf8(text).map_err(|err| std::io::Error::new(ErrorKind::InvalidData, err))
}

/// Joins a parent group and a child name into a group path.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_error(source: std::io::Error) -> Error {
        Error::Read {
            path: PathBuf::from("/sys/fs/cgroup/app.slice/x.scope/cgroup.events"),
            source,
        }
    }

    #[test]
    fn a_cgroup2_mount_is_the_top_of_its_hierarchy() {
        // A hybrid host mounts cgroup2 at /sys/fs/cgroup/unified, others
        // at /sys/fs/cgroup; a host with neither has nothing to show.
        let Some(root) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find_map(|path| Root::open(Path::new(path)).ok())
        else {
            return;
        };
        assert_eq!(root.hierarchy_path().expect("walk"), PathBuf::from("/"));
        // Marked or not (a container's root may be a delegated scope), the
        // marks are read without error.
        root.delegation().expect("delegation marks");
    }

    #[test]
    fn files_longer_than_a_read_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::emulated(dir.path());
        let stat: String = (0..400).map(|i| format!("key{i} {i}\n")).collect();
        let pids: String = (1000..3000).map(|pid| format!("{pid}\n")).collect();
        std::fs::write(dir.path().join("memory.stat"), &stat).expect("write");
        std::fs::write(dir.path().join("cgroup.procs"), &pids).expect("write");
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        assert_eq!(root.read("", "memory.stat").expect("read"), stat);
        assert_eq!(root.procs("").expect("procs").len(), 2000);
        assert_eq!(root.read("", "memory.max").expect("read"), "max\n");
        assert!(
            root.read_optional("", "memory.swap.max")
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn a_group_removed_under_a_reader_counts_as_vanished() {
        let enodev = std::io::Error::from_raw_os_error(libc::ENODEV);
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(read_error(enodev).group_vanished());
        assert!(read_error(enoent).group_vanished());
        assert!(!read_error(eacces).group_vanished());
        // Listed, then gone before its directory was opened.
        let open_group = Error::OpenGroup {
            path: PathBuf::from("/sys/fs/cgroup/app/tasks/churn-4"),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(open_group.group_vanished());
        // A root or a lock directory that is missing is no churn.
        let open = Error::Open {
            path: PathBuf::from("/sys/fs/cgroup/app/tasks"),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(!open.group_vanished());
        let parse = Error::Parse {
            path: PathBuf::from("cgroup.events"),
            source: parse::populated("frozen 0\n").expect_err("no populated line"),
        };
        assert!(!parse.group_vanished());
    }
}
