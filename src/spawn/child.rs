//! What the task's process does between clone and exec, and how it tells
//! the parent what went wrong: each step that fails writes a five-byte
//! record (step, errno) to a close-on-exec pipe, so the parent reads EOF
//! when exec succeeded and the failing step otherwise.
//!
//! Order matters: the process moves into its group (clone fallback only),
//! gets default signal dispositions and an empty mask (memslice blocks some
//! and Rust ignores SIGPIPE; a task must start as a shell would start it),
//! lowers oom_score_adj while it is still root (lowering needs
//! CAP_SYS_RESOURCE), then drops to the target user (which clears every
//! capability), lets go of the protect slice's lock (see
//! [`Prepared::release_before_exec`]), then execs with the environment
//! made for that user. Every descriptor memslice opened is close-on-exec,
//! so the task gets only what its caller passed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use super::{SpawnError, TaskSpec};
use crate::caller::{Credentials, Person};
use crate::sys::{ExecLine, SignalSet, exit_child, reset_signal_dispositions};

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

/// Everything the child needs, built before cloning: the child allocates
/// nothing, since on the cgroupfs path it runs in memslice's memory.
pub struct Prepared {
    pub line: ExecLine,
    /// The clone fallback (no CLONE_INTO_CGROUP): the group's cgroup.procs,
    /// opened by the parent.
    pub move_into: Option<File>,
    /// A pipe to wait on before anything else, until the parent has had the
    /// child placed (systemd moves it into its scope); a closed pipe with
    /// no byte means the parent gave up. Only for a child made by fork: a
    /// child sharing memslice's memory holds memslice suspended, and would
    /// wait forever.
    pub wait_for: Option<OwnedFd>,
    /// The protect slice's lock (a descriptor of its own for it), let go
    /// of once the child is in its group, right before exec. memslice is
    /// suspended until the exec completes (the child shares its memory),
    /// and an exec may block: a program on a FUSE mount its user serves
    /// would otherwise hold every other protect of the slice back. From
    /// here on the group counts by itself: it has a process.
    pub release_before_exec: Option<OwnedFd>,
    /// Test builds: a descriptor to read one byte from right before exec,
    /// standing for an exec that blocks (MEMSLICE_TEST_EXEC_GATE_FD).
    #[cfg(feature = "emulated-root")]
    pub exec_gate: Option<std::os::fd::RawFd>,
    pub oom_score_adj: Option<i32>,
    pub allow_unprotected: bool,
    pub run_as: Option<Credentials>,
    /// The signals memslice ignores or catches, which the child sets back
    /// to their default action.
    pub signals_to_reset: SignalSet,
}

impl Prepared {
    /// What the child of `spec` needs, `program` and `arguments` being its
    /// command as C strings; `wait_for` as for the field.
    pub fn for_task(
        spec: &TaskSpec<'_>,
        program: CString,
        arguments: Vec<CString>,
        wait_for: Option<OwnedFd>,
    ) -> Result<Prepared, SpawnError> {
        let launch = spec.launch;
        Ok(Prepared {
            line: ExecLine::new(
                program,
                arguments,
                task_environment(launch.run_as.as_ref())?,
            ),
            move_into: None,
            wait_for,
            release_before_exec: None,
            #[cfg(feature = "emulated-root")]
            exec_gate: std::env::var("MEMSLICE_TEST_EXEC_GATE_FD")
                .ok()
                .and_then(|fd| fd.parse().ok()),
            oom_score_adj: launch.oom_score_adj,
            allow_unprotected: spec.allow_unprotected,
            run_as: launch.run_as.as_ref().map(|person| person.credentials()),
            signals_to_reset: crate::host::changed_signal_dispositions(),
        })
    }
}

/// The task's environment: memslice's own, without memslice's variables;
/// for a task that runs as another user, also without sudo's, and with
/// HOME, USER, LOGNAME and SHELL from that user's passwd entry (sudo
/// leaves root's there).
pub fn task_environment(run_as: Option<&Person>) -> Result<Vec<CString>, SpawnError> {
    let current: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    environment_for(&current, run_as)
}

/// [`task_environment`] from a given environment. Pure.
pub fn environment_for(
    current: &[(OsString, OsString)],
    run_as: Option<&Person>,
) -> Result<Vec<CString>, SpawnError> {
    let replaced = ["HOME", "USER", "LOGNAME", "SHELL", "MAIL"];
    let keep = |name: &OsStr| {
        let name = name.as_bytes();
        !name.starts_with(b"MEMSLICE_")
            && (run_as.is_none()
                || !(name.starts_with(b"SUDO_") || replaced.iter().any(|r| r.as_bytes() == name)))
    };
    let mut entries: Vec<Vec<u8>> = current
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes()].concat())
        .collect();
    if let Some(person) = run_as {
        let own = [
            ("HOME", person.home.as_os_str()),
            ("USER", OsStr::new(&person.name)),
            ("LOGNAME", OsStr::new(&person.name)),
            ("SHELL", person.shell.as_os_str()),
        ];
        for (name, value) in own {
            entries.push([name.as_bytes(), b"=", value.as_bytes()].concat());
        }
    }
    entries
        .into_iter()
        .map(|entry| CString::new(entry).map_err(|_| SpawnError::NulInCommand))
        .collect()
}

/// Every signal at its default action and none blocked, as a shell starts
/// a command: what a task gets, whoever ran before it. `changed` are the
/// signals not at their default action now.
pub fn clean_signal_state(changed: SignalSet) -> Result<(), Errno> {
    reset_signal_dispositions(changed)?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Becomes `who`: supplementary groups, then the group, then the user. The
/// one place memslice drops privileges.
pub fn drop_privileges(who: &Credentials) -> Result<(), Errno> {
    crate::sys::become_user(&who.gids, who.gid, who.uid)
}

/// Runs in the child; never returns.
pub fn exec(prepared: &Prepared, report: BorrowedFd<'_>) -> ! {
    let fail = |step: Step, errno: Errno, code: i32| -> ! {
        send(report, step, errno);
        exit_child(code)
    };
    if let Some(go) = &prepared.wait_for {
        let mut byte = [0u8; 1];
        if !matches!(nix::unistd::read(go, &mut byte), Ok(1)) {
            exit_child(125);
        }
    }
    let mut digits = [0u8; 16];
    if let Some(procs) = &prepared.move_into {
        let mut procs: &File = procs;
        if let Err(err) = procs.write_all(decimal(std::process::id(), &mut digits)) {
            fail(Step::MoveIntoGroup, errno_of(&err), 126);
        }
    }
    if let Err(errno) = clean_signal_state(prepared.signals_to_reset) {
        fail(Step::Exec, errno, 126);
    }
    if let Some(adj) = prepared.oom_score_adj
        && let Err(err) = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/oom_score_adj")
            .and_then(|mut file| file.write_all(decimal(adj, &mut digits)))
    {
        if prepared.allow_unprotected {
            send(report, Step::OomScoreAdjSkipped, errno_of(&err));
        } else {
            fail(Step::OomScoreAdj, errno_of(&err), 126);
        }
    }
    if let Some(who) = &prepared.run_as
        && let Err(errno) = drop_privileges(who)
    {
        fail(Step::DropPrivileges, errno, 126);
    }
    if let Some(lock) = &prepared.release_before_exec {
        // SAFETY: flock(2) on a descriptor the child owns; it unlocks the
        // open file description memslice's own lock is on.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_UN) };
    }
    #[cfg(feature = "emulated-root")]
    if let Some(gate) = prepared.exec_gate {
        let mut byte = [0u8; 1];
        // SAFETY: `byte` is valid for one byte; a bad descriptor fails.
        unsafe { libc::read(gate, byte.as_mut_ptr().cast(), 1) };
    }
    let errno = prepared.line.exec();
    let code = if errno == Errno::ENOENT { 127 } else { 126 };
    fail(Step::Exec, errno, code)
}

/// `number` in decimal, written into `buffer` (no allocation: the child
/// must not touch memslice's heap).
fn decimal(number: impl std::fmt::Display, buffer: &mut [u8; 16]) -> &[u8] {
    let mut rest = &mut buffer[..];
    // 16 bytes hold any i32 or u32.
    let _ = write!(rest, "{number}");
    let written = 16 - rest.len();
    &buffer[..written]
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
    use std::path::PathBuf;

    #[test]
    fn a_task_for_another_user_gets_their_environment_not_roots() {
        let current: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("MAIL", "/var/mail/root"),
            ("SUDO_UID", "1000"),
            ("SUDO_COMMAND", "/usr/bin/memslice protect -- php"),
            ("MEMSLICE_LOG", "debug"),
            ("LANG", "C.UTF-8"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let app = Person {
            name: "app".into(),
            uid: 1000,
            gid: 1000,
            groups: vec!["app".into()],
            gids: vec![1000],
            home: PathBuf::from("/home/app"),
            shell: PathBuf::from("/bin/bash"),
        };
        let shown = |env: Vec<CString>| -> Vec<String> {
            env.into_iter()
                .map(|e| e.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            shown(environment_for(&current, Some(&app)).expect("env")),
            [
                "PATH=/usr/bin:/bin",
                "LANG=C.UTF-8",
                "HOME=/home/app",
                "USER=app",
                "LOGNAME=app",
                "SHELL=/bin/bash"
            ]
        );
        let own = shown(environment_for(&current, None).expect("env"));
        assert!(own.contains(&"HOME=/root".to_string()), "{own:?}");
        assert!(
            !own.iter().any(|e| e.starts_with("MEMSLICE_")),
            "memslice's variables stay with memslice: {own:?}"
        );
    }

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
