//! The system calls nix and the standard library do not wrap, each a few
//! lines with typed arguments. The only `unsafe` in memslice lives here.
//!
//! - Creating a task's process: clone3(2) with CLONE_INTO_CGROUP, so the
//!   child is charged to its group from its first instruction, or fork(2)
//!   on kernels without it. Both duplicate the process; the child runs
//!   `child`, which ends in exec or `_exit` (a return would `_exit(127)`).
//!   memslice is single-threaded when it spawns (nothing before this point
//!   starts a thread), so the child may allocate.
//! - Default signal dispositions for a task (rt_sigaction(2)).
//! - Extended attributes on cgroup directories (setxattr(2), getxattr(2)):
//!   what memslice records about a task group, and the markers userspace
//!   OOM killers honour. Reading through an open descriptor works after
//!   the group is removed, as long as the descriptor is open.
//!
//! # References
//! - clone3(2), CLONE_INTO_CGROUP (Linux 5.7)
//! - fork(2), _exit(2), rt_sigaction(2)
//! - xattr(7); cgroup v2 user.* xattrs (Linux 5.7)

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;

/// Not in libc as a u64: libc's constant is an overflowing c_int.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    /// clone3 put the child into the group atomically.
    IntoCgroup(Pid),
    /// The kernel has no clone3 or no CLONE_INTO_CGROUP: the caller must
    /// have the child move itself before it execs.
    Unsupported,
}

/// clone3 into the cgroup whose directory is open as `cgroup_dir`.
pub fn clone_into_cgroup(cgroup_dir: BorrowedFd<'_>, child: impl FnOnce()) -> io::Result<Spawned> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup_dir.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack
    // given, clone3 behaves like fork, and the child only runs `child`,
    // which ends in exec or _exit, never returning into the parent's frames.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_mut(&mut args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match result {
        0 => {
            child();
            exit_child(127)
        }
        pid if pid > 0 => Ok(Spawned::IntoCgroup(Pid::from_raw(
            i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?,
        ))),
        _ => {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // No clone3 (before 5.3), or clone_args without `cgroup` (before 5.7).
                Some(libc::ENOSYS | libc::E2BIG) => Ok(Spawned::Unsupported),
                _ => Err(err),
            }
        }
    }
}

/// Plain fork; the child runs `child`.
pub fn fork(child: impl FnOnce()) -> io::Result<Pid> {
    // SAFETY: memslice is single-threaded here, and the child only runs
    // `child`, which ends in exec or _exit.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            child();
            exit_child(127)
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child),
    }
}

/// What std's own start-up does before `main`, for memslice's own `main`
/// (see main.rs): descriptors 0, 1 and 2 open, on /dev/null where the
/// caller closed them (else the first file memslice opens would become its
/// stdout or stderr), and SIGPIPE ignored, so that a reader going away is
/// an EPIPE error (`memslice plan | head -1` ends quietly). Programs
/// memslice starts get SIGPIPE's default back (`reset_signal_dispositions`,
/// and std's `Command`).
pub fn start_process() -> io::Result<()> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBADF) {
            return Err(err);
        }
        // Lower descriptors are open, so this one takes `fd`; it stays
        // open, across exec too (no O_CLOEXEC): a task inherits 0-2.
        let null = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        )?;
        std::mem::forget(null);
    }
    // SAFETY: SIG_IGN installs no handler; no code of ours runs on delivery.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map(drop)
    .map_err(io::Error::from)
}

/// Sets every catchable signal, real-time ones included, back to its
/// default action, as a process started by a shell has it: Rust ignores
/// SIGPIPE at start-up, a parent may have ignored others, and an ignored
/// signal stays ignored across exec. The raw system call, because the C
/// library refuses the two real-time signals it keeps for itself (32, 33),
/// which a parent spawned through posix_spawn may still have ignored.
/// Runs in the child.
pub fn reset_signal_dispositions() -> Result<(), nix::errno::Errno> {
    // A zeroed kernel `struct sigaction` is SIG_DFL with no flags and an
    // empty mask whatever the architecture's field order; 32 bytes cover
    // every 64-bit layout.
    let default = [0u64; 4];
    let kernel_sigset_size: usize = 8;
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads `default` (valid for 32 bytes) and
        // writes nothing (null old action); SIG_DFL runs no code of ours.
        let result = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                kernel_sigset_size,
            )
        };
        if result != 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

/// Ends a forked child at once: no exit handlers, no second flush of the
/// parent's buffered output (which `std::process::exit` would do).
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit only ends the calling process; it touches no memory.
    unsafe { libc::_exit(code) }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Sets the extended attribute `name` of `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = c_string(path.as_os_str().as_bytes())?;
    let name = c_string(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated and live for the call;
    // `value` is valid for `value.len()` bytes.
    let result = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the extended attribute `name` of `path`; absent is fine.
pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    let path = c_string(path.as_os_str().as_bytes())?;
    let name = c_string(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated and live for the call.
    let result = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    match result {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            err if err.raw_os_error() == Some(libc::ENODATA) => Ok(()),
            err => Err(err),
        },
    }
}

/// Largest attribute value memslice reads; its own are far smaller.
const XATTR_READ_MAX: usize = 64 * 1024;

/// The extended attribute `name` of the open file or directory `fd`;
/// `None` when it is not set.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = c_string(name.as_bytes())?;
    let mut buffer = vec![0u8; XATTR_READ_MAX];
    // SAFETY: `name` is NUL-terminated; `buffer` is valid for its length,
    // and the kernel writes at most that many bytes.
    let length = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    match usize::try_from(length) {
        Ok(length) => {
            buffer.truncate(length);
            Ok(Some(buffer))
        }
        Err(_) => match io::Error::last_os_error() {
            // Not set, or a file system (cgroupfs before Linux 5.7) that
            // holds no such attribute at all.
            err if matches!(err.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(None),
            err => Err(err),
        },
    }
}
