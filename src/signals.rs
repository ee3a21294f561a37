//! The one owner of signal state. `main` blocks the signals a command
//! reads, before any thread starts, and hands the command a signalfd: no
//! thread ever takes them by surprise (a metrics thread started first
//! would have died with SIGTERM), and nothing installs a handler. A
//! spawned task gets an empty mask and default dispositions back (see
//! `spawn::child`).

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd, siginfo};

/// Signals a supervisor passes on to its command. SIGCHLD is watched, not
/// forwarded.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Signals that stop a daemon.
pub const STOP: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];

/// Which signals a command reads through its signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A supervisor: the forwarded signals and SIGCHLD.
    Supervise,
    /// A daemon that stops on SIGTERM or SIGINT.
    Stop,
}

/// Blocked signals, readable through a close-on-exec signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the signals `usage` needs. Call before any thread starts.
    pub fn block(usage: Use) -> Result<Signals, Errno> {
        let mut set = SigSet::empty();
        match usage {
            Use::Supervise => FORWARDED
                .into_iter()
                .chain([Signal::SIGCHLD])
                .for_each(|signal| set.add(signal)),
            Use::Stop => STOP.into_iter().for_each(|signal| set.add(signal)),
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Signals { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending signal, if any (the fd is non-blocking).
    pub fn read(&self) -> Result<Option<siginfo>, Errno> {
        match self.fd.read_signal() {
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
            other => other,
        }
    }
}
