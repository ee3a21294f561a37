//! The detached keeper: work a command leaves running when it ends
//! (`screen -d -m`, `nohup … &`, `setsid`, `tmux new -d`) stays in the task's
//! group, protected and capped, and the prompt comes back. A memslice of
//! its own stays behind for it: it bounds its stall, and removes the group
//! once it is empty (a systemd scope goes by itself).
//!
//! The keeper is a fork of the supervisor, in a session of its own (a
//! closed terminal does not end it), with the supervisor's low OOM score,
//! stdin and stdout on /dev/null; it keeps stderr, where it says why it
//! ended a stalled task. It records itself as the group's supervisor, so
//! `memslice tasks` shows the group as detached, not orphaned.

use std::fs::File;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::SpawnError;
use super::stall::StallWatch;
use super::supervise::{Notify, handle_stall, poll_timeout};
use super::task::{self, Role, Supervisor};
use crate::cgroupfs::Root;

/// How often the keeper looks at the group without a notification (a
/// removed scope sends none).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// What the keeper keeps.
pub struct Charge<'a> {
    pub group: &'a str,
    pub stall_timeout: Option<Duration>,
    pub notify: Option<Notify<'a>>,
    /// The group is memslice's to remove once empty (not a scope).
    pub remove: bool,
}

/// Forks the keeper and returns in the supervisor at once.
pub fn hand_over(root: &Root, charge: &Charge<'_>) -> Result<(), SpawnError> {
    crate::sys::fork(|| {
        let code = match keep(root, charge) {
            Ok(()) => 0,
            Err(err) => {
                tracing::error!("the keeper of {} stopped: {err}", charge.group);
                1
            }
        };
        crate::sys::exit_child(code)
    })
    .map(drop)
    .map_err(|err| SpawnError::Setup {
        what: "fork the detached keeper",
        source: super::child::errno_of(&err),
    })
}

/// The keeper's life: detach, then watch until the group is empty.
fn keep(root: &Root, charge: &Charge<'_>) -> Result<(), SpawnError> {
    let group = charge.group;
    let _ = nix::unistd::setsid();
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
        let _ = nix::unistd::dup2_stdout(null.as_fd());
    }
    task::set_supervisor(root, group, Supervisor::this(Role::Keeper))?;
    let events =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|source| {
            SpawnError::Setup {
                what: "watch the task group",
                source,
            }
        })?;
    // Not fatal: the periodic look finds the end too.
    let _ = events.add_watch(&root.file(group, "cgroup.events"), AddWatchFlags::IN_MODIFY);
    let mut stall = StallWatch::new(root, group, charge.stall_timeout);
    while root.populated(group)? {
        let mut fds = vec![PollFd::new(events.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = stall.fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let wait = stall.timeout().map_or(LOOK_EVERY, |t| t.min(LOOK_EVERY));
        match poll(&mut fds, poll_timeout(wait)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                return Err(SpawnError::Setup {
                    what: "wait for the task group",
                    source,
                });
            }
        }
        let _ = events.read_events();
        handle_stall(root, &mut stall, charge.notify);
    }
    if charge.remove {
        root.remove(group)?;
    }
    tracing::info!(%group, "the detached work ended; its group is gone");
    Ok(())
}
