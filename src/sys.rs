//! The system calls nix and the standard library do not wrap, each a few
//! lines with typed arguments. The only `unsafe` in memslice lives here.
//!
//! - Creating a task's process: clone3(2) with CLONE_INTO_CGROUP, so the
//!   child is charged to its group from its first instruction, or a clone
//!   that moves itself through cgroup.procs on kernels without it. The
//!   child shares memslice's memory on a stack of its own until it execs,
//!   memslice suspended meanwhile (CLONE_VM | CLONE_VFORK, as posix_spawn
//!   does; the clone3 entry is x86-64 assembly, elsewhere clone3 copies the
//!   process as fork does). The child runs `child`, which ends in exec or
//!   `_exit` (a return would `_exit(127)`), and allocates nothing (see
//!   spawn::child). fork(2) for the processes that run beside memslice (the
//!   scope path's child waits for systemd, the detached keeper).
//! - A task's exec: its argv and environment as the pointer arrays
//!   execvpe(3) takes, made before the clone ([`ExecLine`]).
//! - Credentials of a child (setgroups(2), setgid(2), setuid(2)) without
//!   glibc's broadcast to memslice's threads.
//! - Default signal dispositions for a task (rt_sigaction(2)).
//! - Extended attributes on cgroup directories (setxattr(2), getxattr(2)):
//!   what memslice records about a task group, and the markers userspace
//!   OOM killers honour. Reading through an open descriptor works after
//!   the group is removed, as long as the descriptor is open.
//!
//! # References
//! - clone3(2), CLONE_INTO_CGROUP (Linux 5.7); clone(2), CLONE_VM, CLONE_VFORK
//! - glibc's sysdeps/unix/sysv/linux/spawni.c: the child's stack size, its
//!   signals blocked, oom_score_adj for a vfork child (proc(5))
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

/// clone3 into the cgroup whose directory is open as `cgroup_dir`, the
/// child sharing memslice's memory until it execs (see [`vfork`]) where
/// memslice has the entry code for it (x86-64), a copy of it elsewhere.
pub fn clone_into_cgroup<F: FnOnce()>(
    cgroup_dir: BorrowedFd<'_>,
    argc: usize,
    child: F,
) -> io::Result<Spawned> {
    let cgroup = u64::try_from(cgroup_dir.as_raw_fd())
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    match clone3_into(cgroup, argc, child) {
        Ok(pid) => Ok(Spawned::IntoCgroup(pid)),
        // No clone3 (before 5.3), or clone_args without `cgroup` (before 5.7).
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG)) => {
            Ok(Spawned::Unsupported)
        }
        Err(err) => Err(err),
    }
}

#[cfg(target_arch = "x86_64")]
fn clone3_into<F: FnOnce()>(cgroup: u64, argc: usize, child: F) -> io::Result<Pid> {
    let stack = ChildStack::new(argc)?;
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.size as u64,
        cgroup,
        ..CloneArgs::default()
    };
    let mut slot = Some(child);
    let _around = AroundSharedClone::new()?;
    let result: i64;
    // SAFETY: `args` is a valid clone_args of the size passed. The parent
    // is suspended until the child execs or exits (CLONE_VFORK), so the
    // child may use `slot`, which lives in this frame, and the stack,
    // which is unmapped only after the parent resumes. In the child the
    // kernel returns 0 with rsp at the top of that stack (16-byte aligned),
    // and the child calls `enter_child`, which never returns; the parent
    // returns the pid or -errno in rax. syscall clobbers rcx and r11,
    // declared as outputs so that no input lives in them.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, {slot}",
            "call {entry}",
            "ud2",
            "2:",
            slot = in(reg) std::ptr::from_mut(&mut slot),
            entry = sym enter_child::<F>,
            inlateout("rax") libc::SYS_clone3 => result,
            in("rdi") std::ptr::from_mut(&mut args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    if result < 0 {
        let errno = i32::try_from(-result).unwrap_or(libc::EINVAL);
        return Err(io::Error::from_raw_os_error(errno));
    }
    pid_of(result)
}

/// Elsewhere, a clone3 like fork's: no stack given, the child a copy.
#[cfg(not(target_arch = "x86_64"))]
fn clone3_into<F: FnOnce()>(cgroup: u64, _argc: usize, child: F) -> io::Result<Pid> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
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
        pid if pid > 0 => pid_of(pid.into()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A child that shares memslice's memory, and runs `child` on a stack of
/// its own while memslice waits (CLONE_VM | CLONE_VFORK, as posix_spawn
/// starts a program): nothing of memslice's memory is copied or
/// write-protected, so neither process takes a fault for each page it then
/// writes (a fifth of a task's start, counted in page faults). `child` runs
/// with every signal blocked and must end in exec or `_exit` without
/// allocating or panicking: the heap and the thread-local state it would
/// change are memslice's (a panic would leave memslice's panic count
/// raised). A user it switches to marks the shared memory not dumpable
/// (commit_creds), as posix_spawn's child does; memslice marks it
/// dumpable again once the child has exec'd (`DumpableKept`).
pub fn vfork<F: FnOnce()>(argc: usize, child: F) -> io::Result<Pid> {
    let stack = ChildStack::new(argc)?;
    let mut slot = Some(child);
    let _around = AroundSharedClone::new()?;
    // SAFETY: glibc's clone runs `enter_child` on the given stack top,
    // which outlives the child's use of it (the parent is suspended until
    // the child execs or exits); `slot` lives in this frame, likewise.
    let pid = unsafe {
        libc::clone(
            enter_child::<F>,
            stack.top().cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_mut(&mut slot).cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pid::from_raw(pid))
}

/// The first frame of a child on its own stack: runs the closure in `slot`
/// (an `Option<F>`), then ends the child if the closure returned.
extern "C" fn enter_child<F: FnOnce()>(slot: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the parent passed a pointer to its `Option<F>`, alive and
    // untouched by it until this child execs or exits.
    let slot = unsafe { &mut *slot.cast::<Option<F>>() };
    if let Some(child) = slot.take() {
        child();
    }
    exit_child(127)
}

/// A task's stack between clone and exec, below a guard page, so that a
/// deeper stack faults instead of writing into memslice's memory. Sized as
/// glibc's posix_spawn sizes its own: execvpe may put a PATH_MAX buffer on
/// it (the PATH search) and a copy of argv's pointers (a script without
/// `#!` goes to /bin/sh). Pages nothing touches are never allocated.
struct ChildStack {
    /// The lowest usable address, above the guard page.
    base: *mut u8,
    size: usize,
    mapping: *mut libc::c_void,
    mapped: usize,
}

impl ChildStack {
    /// What memslice's own code and glibc's exec need beyond argv.
    const BASE_SIZE: usize = 64 * 1024 + libc::PATH_MAX as usize;
    const GUARD: usize = 64 * 1024;

    fn new(argc: usize) -> io::Result<ChildStack> {
        // Not E2BIG: that is what clone3 says when it has no CLONE_INTO_CGROUP.
        let too_big = || io::Error::from_raw_os_error(libc::ENOMEM);
        // SAFETY: sysconf only reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::last_os_error())?;
        let round_up = |size: usize| size.checked_next_multiple_of(page).ok_or_else(too_big);
        let size = argc
            .checked_add(3)
            .and_then(|pointers| pointers.checked_mul(std::mem::size_of::<*const u8>()))
            .and_then(|argv| argv.checked_add(Self::BASE_SIZE))
            .ok_or_else(too_big)
            .and_then(round_up)?;
        let guard = round_up(Self::GUARD)?;
        let mapped = size.checked_add(guard).ok_or_else(too_big)?;
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack {
            // SAFETY: guard < mapped: inside the mapping.
            base: unsafe { mapping.cast::<u8>().add(guard) },
            size,
            mapping,
            mapped,
        };
        // SAFETY: the range is the upper part of the mapping just made.
        let result = unsafe {
            libc::mprotect(
                stack.base.cast(),
                stack.size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the top, page-aligned (so 16-byte aligned).
    fn top(&self) -> *mut u8 {
        // SAFETY: one past the end of the usable range, inside the mapping's bounds.
        unsafe { self.base.add(self.size) }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and the child no longer runs on it
        // (the parent resumed, so it has exec'd or exited).
        unsafe {
            libc::munmap(self.mapping, self.mapped);
        }
    }
}

/// What memslice keeps around a clone whose child shares its memory, until
/// the child has exec'd: its dumpable flag, and every signal blocked.
/// Dropped in this order: the flag back first, then the signal mask.
struct AroundSharedClone {
    _dumpable: DumpableKept,
    _blocked: AllSignalsBlocked,
}

impl AroundSharedClone {
    fn new() -> io::Result<AroundSharedClone> {
        Ok(AroundSharedClone {
            _dumpable: DumpableKept::new(),
            _blocked: AllSignalsBlocked::new()?,
        })
    }
}

/// memslice's dumpable flag, put back once a child that shared its memory
/// has exec'd: the child's switch to another user marks the memory they
/// share not dumpable (commit_creds), which would leave memslice, still
/// root, without a core dump for the rest of the task's supervision.
struct DumpableKept(bool);

impl DumpableKept {
    fn new() -> DumpableKept {
        DumpableKept(nix::sys::prctl::get_dumpable().unwrap_or(false))
    }
}

impl Drop for DumpableKept {
    fn drop(&mut self) {
        if self.0 && nix::sys::prctl::get_dumpable().is_ok_and(|now| !now) {
            if let Err(err) = nix::sys::prctl::set_dumpable(true) {
                tracing::debug!("memslice stays without core dumps: {err}");
            }
        }
    }
}

/// Every signal blocked while a child shares memslice's memory, so that no
/// handler runs in the child on memslice's stack and data before the child
/// sets its own dispositions and mask; the mask before, back on drop.
struct AllSignalsBlocked {
    before: nix::sys::signal::SigSet,
}

impl AllSignalsBlocked {
    fn new() -> io::Result<AllSignalsBlocked> {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        let mut before = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut before),
        )?;
        Ok(AllSignalsBlocked { before })
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        use nix::sys::signal::{SigmaskHow, pthread_sigmask};
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.before), None);
    }
}

fn pid_of(raw: i64) -> io::Result<Pid> {
    i32::try_from(raw)
        .map(Pid::from_raw)
        .map_err(|_| io::Error::other("pid out of range"))
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
/// an EPIPE error (`memslice plan | head -1` ends quietly). And SIGCHLD at
/// its default: a caller's SIG_IGN survives exec, and with it the kernel
/// reaps memslice's children itself and sends no SIGCHLD, so memslice
/// would wait for its task forever. Programs
/// memslice starts get SIGPIPE's default back (`reset_signal_dispositions`,
/// and std's `Command`).
pub fn start_process() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
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
    // SAFETY: SIG_IGN and SIG_DFL install no handler; no code of ours runs
    // on delivery.
    unsafe {
        signal(Signal::SIGPIPE, SigHandler::SigIgn)?;
        signal(Signal::SIGCHLD, SigHandler::SigDfl)?;
    }
    Ok(())
}

/// A set of signals, bit N-1 for signal N: the kernel's layout, as
/// /proc/PID/status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSet(pub u64);

impl SignalSet {
    pub const ALL: SignalSet = SignalSet(u64::MAX);

    pub fn contains(self, signal: i32) -> bool {
        (1..=64).contains(&signal) && self.0 & (1 << (signal - 1)) != 0
    }
}

/// Sets the catchable signals of `changed`, real-time ones included, back
/// to their default action, as a process started by a shell has them: Rust
/// ignores SIGPIPE at start-up, a parent may have ignored others, and an
/// ignored signal stays ignored across exec. `changed` is what the process
/// ignores or catches (`host::changed_signal_dispositions`): the others are
/// at their default already, and each call is a system call the suspended
/// parent waits for. The raw system call, because the C library refuses
/// the two real-time signals it keeps for itself (32, 33), which a parent
/// spawned through posix_spawn may still have ignored. Runs in the child.
pub fn reset_signal_dispositions(changed: SignalSet) -> Result<(), nix::errno::Errno> {
    // A zeroed kernel `struct sigaction` is SIG_DFL with no flags and an
    // empty mask whatever the architecture's field order; 32 bytes cover
    // every 64-bit layout.
    let default = [0u64; 4];
    let kernel_sigset_size: usize = 8;
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || !changed.contains(signal) {
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

/// The program, argv and environment, with the NULL-terminated arrays of
/// pointers execvpe takes, made before the clone.
pub struct ExecLine {
    /// The program first (execvpe's file is argv[0]), then its arguments.
    argv: Vec<CString>,
    /// `NAME=value` entries, made for the user the task runs as; read
    /// through `env_pointers`.
    _env: Vec<CString>,
    argv_pointers: Vec<*const std::ffi::c_char>,
    env_pointers: Vec<*const std::ffi::c_char>,
}

impl ExecLine {
    pub fn new(program: CString, arguments: Vec<CString>, env: Vec<CString>) -> ExecLine {
        let argv: Vec<CString> = std::iter::once(program).chain(arguments).collect();
        // Each pointer is to a CString's own heap buffer, which stays where
        // it is for as long as the ExecLine holds the (never changed) CString.
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|string| string.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        ExecLine {
            argv_pointers: pointers(&argv),
            env_pointers: pointers(&env),
            argv,
            _env: env,
        }
    }

    pub fn argc(&self) -> usize {
        self.argv.len()
    }

    /// execvpe(3); returns only when it failed.
    pub fn exec(&self) -> nix::errno::Errno {
        // SAFETY: argv_pointers[0] is the program (argv holds it first) and
        // both arrays are NULL-terminated arrays of pointers to C strings
        // that `self` keeps alive (see `new`).
        unsafe {
            libc::execvpe(
                self.argv_pointers[0],
                self.argv_pointers.as_ptr(),
                self.env_pointers.as_ptr(),
            );
        }
        nix::errno::Errno::last()
    }
}

/// Sets the calling process's supplementary groups, group and user, in
/// that order, through the system calls themselves: glibc's wrappers would
/// have every thread of the process change with it (its setxid broadcast),
/// and a child sharing memslice's memory (see [`vfork`]) shares glibc's
/// list of memslice's threads. The kernel changes the calling process only.
pub fn become_user(gids: &[u32], gid: u32, uid: u32) -> Result<(), nix::errno::Errno> {
    #[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
    use libc::{SYS_setgid as SETGID, SYS_setgroups as SETGROUPS, SYS_setuid as SETUID};
    #[cfg(any(target_arch = "x86", target_arch = "arm"))]
    use libc::{SYS_setgid32 as SETGID, SYS_setgroups32 as SETGROUPS, SYS_setuid32 as SETUID};
    let check = |result: libc::c_long| {
        if result == 0 {
            Ok(())
        } else {
            Err(nix::errno::Errno::last())
        }
    };
    // SAFETY: setgroups reads `gids.len()` gid_t (u32) values from `gids`;
    // setgid and setuid take plain numbers.
    unsafe {
        check(libc::syscall(SETGROUPS, gids.len(), gids.as_ptr()))?;
        check(libc::syscall(SETGID, gid))?;
        check(libc::syscall(SETUID, uid))
    }
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
///
/// The buffer is not zeroed first: the kernel writes the value into it,
/// and zeroing 64 KiB touched 16 fresh pages at every command (a page
/// fault each, the most costly step of a task's start under emulation).
pub fn get_xattr(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = c_string(name.as_bytes())?;
    let mut buffer: Vec<u8> = Vec::with_capacity(XATTR_READ_MAX);
    // SAFETY: `name` is NUL-terminated; `buffer` has room for
    // XATTR_READ_MAX bytes, and the kernel writes at most that many.
    let length = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            XATTR_READ_MAX,
        )
    };
    match usize::try_from(length) {
        Ok(length) => {
            // SAFETY: the kernel wrote `length` bytes, at most the capacity.
            unsafe { buffer.set_len(length.min(XATTR_READ_MAX)) };
            buffer.shrink_to_fit();
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// The value comes back exactly as written, whatever its length (the
    /// buffer is not zeroed, so a wrong length would show stale bytes).
    #[test]
    fn an_attribute_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("group");
        std::fs::create_dir(&path).expect("dir");
        let open = std::fs::File::open(&path).expect("open");
        assert_eq!(
            get_xattr(open.as_fd(), "user.memslice.test").expect("read"),
            None
        );
        for value in [b"1".to_vec(), vec![b'x'; 4000], Vec::new()] {
            set_xattr(&path, "user.memslice.test", &value).unwrap_or_else(|err| {
                panic!(
                    "user.* attribute on {}: {err}; the tests need a TMPDIR that takes them (ext4, or tmpfs on Linux 6.6 or later)",
                    path.display()
                )
            });
            assert_eq!(
                get_xattr(open.as_fd(), "user.memslice.test").expect("read"),
                Some(value)
            );
        }
        remove_xattr(&path, "user.memslice.test").expect("remove");
        assert_eq!(
            get_xattr(open.as_fd(), "user.memslice.test").expect("read"),
            None
        );
    }
}
