//! What the task's process does between clone and exec, and how it tells
//! the parent what went wrong: each step that fails writes a five-byte
//! record (step, errno) to a close-on-exec pipe, so the parent reads EOF
//! when exec succeeded and the failing step otherwise.
//!
//! Order matters: the process moves into its group (fork path only), takes
//! back the signals memslice blocked, lowers oom_score_adj while it is
//! still root (lowering needs CAP_SYS_RESOURCE), then drops to the target
//! user, then execs.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{Gid, Uid, execvp, setgid, setgroups, setuid};

use super::clone3::exit_child;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    MoveIntoGroup = 1,
    OomScoreAdj = 2,
    /// oom_score_adj could not be set, and `--allow-unprotected` said to go on.
    OomScoreAdjSkipped = 3,
    DropPrivileges = 4,
    Exec = 5,
}

impl Step {
    fn from_byte(byte: u8) -> Option<Step> {
        [
            Step::MoveIntoGroup,
            Step::OomScoreAdj,
            Step::OomScoreAdjSkipped,
            Step::DropPrivileges,
            Step::Exec,
        ]
        .into_iter()
        .find(|step| *step as u8 == byte)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::MoveIntoGroup => "move into the task group (cgroup.procs)",
            Step::OomScoreAdj => "set /proc/self/oom_score_adj",
            Step::OomScoreAdjSkipped => "set /proc/self/oom_score_adj (continuing unprotected)",
            Step::DropPrivileges => "switch to the target user",
            Step::Exec => "execute the command",
        }
    }
}

/// Everything the child needs, built before cloning.
pub struct Prepared {
    pub program: CString,
    pub argv: Vec<CString>,
    /// Fork path: the group's cgroup.procs, opened by the parent.
    pub move_into: Option<File>,
    pub oom_score_adj: Option<i32>,
    pub allow_unprotected: bool,
    pub run_as: Option<(Uid, Gid, Vec<Gid>)>,
}

/// Runs in the child; never returns.
pub fn exec(prepared: &Prepared, report: BorrowedFd<'_>) -> ! {
    let fail = |step: Step, errno: Errno, code: i32| -> ! {
        send(report, step, errno);
        exit_child(code)
    };
    if let Some(procs) = &prepared.move_into {
        let mut procs: &File = procs;
        if let Err(err) = procs.write_all(std::process::id().to_string().as_bytes()) {
            fail(Step::MoveIntoGroup, errno_of(&err), 126);
        }
    }
    if let Err(errno) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        fail(Step::Exec, errno, 126);
    }
    if let Some(adj) = prepared.oom_score_adj
        && let Err(err) = std::fs::write("/proc/self/oom_score_adj", adj.to_string())
    {
        if prepared.allow_unprotected {
            send(report, Step::OomScoreAdjSkipped, errno_of(&err));
        } else {
            fail(Step::OomScoreAdj, errno_of(&err), 126);
        }
    }
    if let Some((uid, gid, groups)) = &prepared.run_as {
        let dropped = setgroups(groups)
            .and_then(|()| setgid(*gid))
            .and_then(|()| setuid(*uid));
        if let Err(errno) = dropped {
            fail(Step::DropPrivileges, errno, 126);
        }
    }
    let Err(errno) = execvp(&prepared.program, &prepared.argv);
    let code = if errno == Errno::ENOENT { 127 } else { 126 };
    fail(Step::Exec, errno, code)
}

fn send(report: BorrowedFd<'_>, step: Step, errno: Errno) {
    let mut record = [0u8; 5];
    record[0] = step as u8;
    record[1..].copy_from_slice(&(errno as i32).to_le_bytes());
    // Five bytes are below PIPE_BUF, so one write is atomic; nothing to do
    // if the parent is gone.
    let _ = nix::unistd::write(report, &record);
}

pub fn errno_of(err: &std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// Parses what the child sent before exec or death.
pub fn parse_reports(bytes: &[u8]) -> Vec<(Step, Errno)> {
    bytes
        .chunks_exact(5)
        .filter_map(|record| {
            let step = Step::from_byte(record[0])?;
            let errno = i32::from_le_bytes([record[1], record[2], record[3], record[4]]);
            Some((step, Errno::from_raw(errno)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let mut bytes = vec![Step::OomScoreAdjSkipped as u8];
        bytes.extend_from_slice(&libc::EACCES.to_le_bytes());
        bytes.push(Step::Exec as u8);
        bytes.extend_from_slice(&libc::ENOENT.to_le_bytes());
        bytes.push(9);
        assert_eq!(
            parse_reports(&bytes),
            vec![
                (Step::OomScoreAdjSkipped, Errno::EACCES),
                (Step::Exec, Errno::ENOENT)
            ]
        );
        assert!(parse_reports(&[42, 1, 0, 0, 0]).is_empty());
    }
}
