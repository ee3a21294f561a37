//! A plain directory that behaves like cgroupfs where memslice depends on it:
//! `mkdir` yields the interface files the kernel would create, enabling a
//! controller in cgroup.subtree_control adds that controller's files to the
//! children, and `rmdir` refuses a group with processes or children.
//!
//! This exists so `plan`, `apply` and `status` run end to end in tests and
//! benchmarks without root or a memory controller. It is chosen only when
//! the root holds [`MARKER`], a regular file no real cgroupfs can contain,
//! so it can never be picked on a real host by accident. What only the
//! kernel decides (OOM kills, reclaim) is tested in the VM, not here.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::Path;

use super::parse;
use crate::config::Controller;

pub const MARKER: &str = "memslice-emulated-root";

/// A file in an emulated root that makes it stand for a tree systemd owns
/// (tests of the driver choice): without it, an emulated root is
/// memslice's own, like a delegated subtree. Delegation is then read from
/// the root directory's attributes, as on the kernel.
pub const SYSTEMD_TREE: &str = "memslice-emulated-systemd-tree";

/// Faults to inject, one per line: `OPERATION PATH ERRNO`, with OPERATION
/// `write`, `mkdir` or `rmdir`, PATH relative to the root (`app/web/memory.max`,
/// `app/db`) and ERRNO one of EINVAL, EBUSY, ENOSPC, EIO, EAGAIN: the
/// operation on that path fails so, as the kernel would refuse it.
pub const FAULTS: &str = "memslice-emulated-faults";

/// The injected fault for `operation` on `path`, if the root lists one.
pub fn injected_fault(root: &Path, operation: &str, path: &Path) -> io::Result<()> {
    let Ok(listed) = fs::read_to_string(root.join(FAULTS)) else {
        return Ok(());
    };
    let relative = path.strip_prefix(root).unwrap_or(path);
    for line in listed.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [op, target, errno] = fields.as_slice()
            && *op == operation
            && Path::new(target) == relative
        {
            let code = match *errno {
                "EINVAL" => libc::EINVAL,
                "EBUSY" => libc::EBUSY,
                "ENOSPC" => libc::ENOSPC,
                "EAGAIN" => libc::EAGAIN,
                _ => libc::EIO,
            };
            return Err(io::Error::from_raw_os_error(code));
        }
    }
    Ok(())
}

const CORE_FILES: [(&str, &str); 5] = [
    ("cgroup.procs", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.subtree_control", ""),
    ("cgroup.type", "domain\n"),
    ("cgroup.kill", ""),
];

const MEMORY_FILES: [(&str, &str); 10] = [
    ("memory.min", "0\n"),
    ("memory.low", "0\n"),
    ("memory.high", "max\n"),
    ("memory.max", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.oom.group", "0\n"),
    ("memory.current", "0\n"),
    (
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    ),
    ("memory.stat", "anon 0\nfile 0\nkernel 0\nshmem 0\n"),
    (
        "memory.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    ),
];

/// Lays out an emulated cgroup root in `dir` offering `controllers`.
pub fn create_root(dir: &Path, controllers: &[Controller]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join(MARKER),
        "this directory emulates a cgroup2 root for memslice tests\n",
    )?;
    let names: Vec<&str> = controllers.iter().map(|c| c.name()).collect();
    fs::write(
        dir.join("cgroup.controllers"),
        format!("{}\n", names.join(" ")),
    )?;
    for (name, content) in CORE_FILES {
        fs::write(dir.join(name), content)?;
    }
    Ok(())
}

pub fn is_emulated(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

pub fn is_systemds(dir: &Path) -> bool {
    dir.join(SYSTEMD_TREE).is_file()
}

/// Fills a freshly made group directory as the kernel's mkdir would.
pub fn populate(dir: &Path) -> io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::from(ErrorKind::InvalidInput))?;
    let offered = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
    fs::write(dir.join("cgroup.controllers"), &offered)?;
    for (name, content) in CORE_FILES {
        fs::write(dir.join(name), content)?;
    }
    if parse::controllers(&offered).contains(&Controller::Memory) {
        write_memory_files(dir)?;
    }
    Ok(())
}

fn write_memory_files(dir: &Path) -> io::Result<()> {
    for (name, content) in MEMORY_FILES {
        if !dir.join(name).exists() {
            fs::write(dir.join(name), content)?;
        }
    }
    Ok(())
}

/// Applies `+ctrl -ctrl` as the kernel does, with the kernel's errors:
/// ENOENT for a controller the group is not offered, EBUSY for a non-root
/// group with processes of its own.
pub fn write_subtree_control(dir: &Path, request: &str) -> io::Result<()> {
    let offered = parse::controllers(&fs::read_to_string(dir.join("cgroup.controllers"))?);
    let mut enabled = parse::controllers(&fs::read_to_string(dir.join("cgroup.subtree_control"))?);
    for token in request.split_whitespace() {
        let (enable, name) = match token.split_at_checked(1) {
            Some(("+", name)) => (true, name),
            Some(("-", name)) => (false, name),
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let controller = Controller::from_name(name)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        if !offered.contains(&controller) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        if enable
            && !is_emulated(dir)
            && !fs::read_to_string(dir.join("cgroup.procs"))?
                .trim()
                .is_empty()
        {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        enabled.retain(|c| *c != controller);
        if enable {
            enabled.push(controller);
        }
    }
    enabled.sort();
    let names: Vec<&str> = enabled.iter().map(|c| c.name()).collect();
    fs::write(
        dir.join("cgroup.subtree_control"),
        format!("{}\n", names.join(" ")),
    )?;
    if enabled.contains(&Controller::Memory) {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                write_memory_files(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// cgroup.kill: SIGKILLs the pids listed in the cgroup.procs of the group
/// and every group below it (in an emulated root, only a task memslice
/// spawned writes its own pid there), and memslice's own remaining
/// children, which stand in for the descendants the emulation cannot see
/// (orphans reparented to memslice as subreaper); then empties the lists,
/// as the kernel's do once they are gone. The children are waited for
/// until they are dead but left to memslice to reap, as on the kernel: a
/// supervisor that ends its own task (the stall bound) hears of the
/// command's end from its own wait.
pub fn kill(dir: &Path) -> io::Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let sigkill = |pid: u32| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).ok()?;
        Some(pid)
    };
    kill_listed(dir, &sigkill)?;
    for child in own_children().into_iter().filter_map(sigkill) {
        let _ = waitid(Id::Pid(child), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
    }
    Ok(())
}

fn kill_listed(dir: &Path, sigkill: &impl Fn(u32) -> Option<nix::unistd::Pid>) -> io::Result<()> {
    let listed = parse::pids(&fs::read_to_string(dir.join("cgroup.procs"))?)
        .map_err(|err| io::Error::new(ErrorKind::InvalidData, err))?;
    for pid in listed {
        let _ = sigkill(pid);
    }
    fs::write(dir.join("cgroup.procs"), "")?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            kill_listed(&entry.path(), sigkill)?;
        }
    }
    Ok(())
}

/// /proc/self/task/PID/children (CONFIG_PROC_CHILDREN).
fn own_children() -> Vec<u32> {
    let me = std::process::id();
    fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A write of `pid` to the cgroup.procs of `dir`, with the kernel's
/// refusals: ESRCH for a process that does not run, EBUSY for a group
/// below the root that enables controllers for its children. The pid
/// leaves every other group's list of the tree under `root`.
pub fn move_process(root: &Path, dir: &Path, pid: u32) -> io::Result<()> {
    if !crate::host::process_runs(pid) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control"))?;
    if dir != root && !enabled.trim().is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    forget_pid(root, pid)?;
    let procs = dir.join("cgroup.procs");
    let mut listed = parse::pids(&fs::read_to_string(&procs)?)
        .map_err(|err| io::Error::new(ErrorKind::InvalidData, err))?;
    listed.push(pid);
    let text: String = listed.iter().map(|pid| format!("{pid}\n")).collect();
    fs::write(procs, text)
}

fn forget_pid(dir: &Path, pid: u32) -> io::Result<()> {
    let procs = dir.join("cgroup.procs");
    let listed = parse::pids(&fs::read_to_string(&procs)?)
        .map_err(|err| io::Error::new(ErrorKind::InvalidData, err))?;
    if listed.contains(&pid) {
        let text: String = listed
            .iter()
            .filter(|listed| **listed != pid)
            .map(|pid| format!("{pid}\n"))
            .collect();
        fs::write(procs, text)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            forget_pid(&entry.path(), pid)?;
        }
    }
    Ok(())
}

/// rmdir with the kernel's refusals: EBUSY while processes or child groups
/// remain. A listed pid that no longer runs is gone, as the kernel drops
/// an exited process from cgroup.procs.
pub fn remove(dir: &Path) -> io::Result<()> {
    let busy = fs::read_to_string(dir.join("cgroup.procs"))?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .any(|line| line.trim().parse().map_or(true, crate::host::process_runs))
        || fs::read_dir(dir)?
            .any(|entry| entry.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir())));
    if busy {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        create_root(dir.path(), &[Controller::Memory, Controller::Pids]).expect("root");
        dir
    }

    #[test]
    fn memory_files_appear_only_once_the_parent_enables_memory() {
        let dir = root();
        let child = dir.path().join("app");
        fs::create_dir(&child).expect("mkdir");
        populate(&child).expect("populate");
        assert!(!child.join("memory.max").exists());
        write_subtree_control(dir.path(), "+memory").expect("enable");
        assert_eq!(
            fs::read_to_string(child.join("memory.max")).expect("read"),
            "max\n"
        );
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let dir = root();
        let err = write_subtree_control(dir.path(), "+io").expect_err("io is not offered");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        write_subtree_control(dir.path(), "+memory").expect("enable");
        let child = dir.path().join("busy");
        fs::create_dir(&child).expect("mkdir");
        populate(&child).expect("populate");
        fs::write(
            child.join("cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .expect("list this process");
        let err = write_subtree_control(&child, "+memory").expect_err("internal process");
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(
            remove(&child).expect_err("busy").raw_os_error(),
            Some(libc::EBUSY)
        );
        fs::write(child.join("cgroup.procs"), "not a pid\n").expect("garble the list");
        assert_eq!(
            remove(&child)
                .expect_err("what is listed is unknown")
                .raw_os_error(),
            Some(libc::EBUSY)
        );
        // A zombie until reaped: its pid cannot go to another process.
        let mut ended = std::process::Command::new("true").spawn().expect("spawn");
        while crate::host::process_runs(ended.id()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        fs::write(child.join("cgroup.procs"), format!("{}\n", ended.id()))
            .expect("list a process that ended");
        let removed = remove(&child);
        ended.wait().expect("reap");
        removed.expect("an ended process holds no group");
        assert!(!child.exists());
    }

    #[test]
    fn a_process_moves_between_lists_and_only_into_a_leaf() {
        let dir = root();
        let root = super::super::Root::emulated(dir.path());
        write_subtree_control(dir.path(), "+memory").expect("enable");
        for group in ["app", "app/web", "ops"] {
            root.create(group).expect("create");
        }
        let me = std::process::id();
        root.move_process("ops", me).expect("into ops");
        root.move_process("app/web", me).expect("into app/web");
        assert_eq!(root.procs("ops").expect("ops"), Vec::<u32>::new());
        assert_eq!(root.procs("app/web").expect("web"), [me]);
        write_subtree_control(&dir.path().join("app"), "+memory").expect("enable");
        let err = root.move_process("app", me).expect_err("app is no leaf");
        assert!(
            err.to_string()
                .contains("keeps processes in leaf groups only"),
            "{err}"
        );
        let err = root
            .move_process("ops", u32::MAX)
            .expect_err("no such process");
        assert!(err.to_string().contains("no such process"), "{err}");
    }

    #[test]
    fn kill_and_wait_tells_an_emptied_group_from_a_stuck_one() {
        let dir = root();
        let root = super::super::Root::emulated(dir.path());
        root.create("app").expect("create");
        let mut looks = 0;
        assert!(
            root.kill_and_wait("app", Duration::from_millis(50), || looks += 1)
                .expect("wait")
        );
        assert_eq!(looks, 1);
        fs::write(
            dir.path().join("app/cgroup.events"),
            "populated 1\nfrozen 0\n",
        )
        .expect("stuck");
        assert!(
            !root
                .kill_and_wait("app", Duration::from_millis(50), || {})
                .expect("wait")
        );
        assert!(
            root.kill_and_wait("gone", Duration::from_millis(50), || {})
                .expect("wait"),
            "a removed group is empty"
        );
        fs::write(
            dir.path().join("app/cgroup.events"),
            "populated 1\nfrozen 0\n",
        )
        .expect("busy again");
        let systemd_removes_it = || {
            let _ = fs::remove_dir_all(dir.path().join("app"));
        };
        assert!(
            root.kill_and_wait("app", Duration::from_secs(5), systemd_removes_it)
                .expect("a group removed while waiting is not an error"),
            "a group removed while waiting is empty"
        );
    }
}
