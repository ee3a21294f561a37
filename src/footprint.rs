//! Where the processes of a slice go, and putting them there.
//!
//! Under the cgroupfs driver memslice places processes itself, in a
//! slice's leaf group: `SLICE/sessions` for a slice with users, the slice
//! itself for one without child slices (cgroup v2 keeps processes in leaf
//! groups only). Three ways in:
//! - the PAM session hook (`memslice pam-session`, run by pam_exec) moves
//!   the process that opens a session of a user a slice names, pam_exec's
//!   parent (sshd's, su's, cron's or sudo's session process), so the shell
//!   or job it starts next is charged to the slice;
//! - `memslice exec --slice S -- CMD` moves itself and execs CMD in place,
//!   unsupervised (init scripts, service files);
//! - `memslice move --slice S PID...` moves running processes.
//!
//! Under the systemd driver systemd places processes: logind puts a
//! user's sessions in their user-UID.slice (pam_systemd), units carry
//! Slice=. `exec` and `move` then refuse and say the systemd way; the
//! hook does nothing.
//!
//! The hook runs as root inside every login, so it never holds one up: a
//! deadline bounds it, it reads nothing from its environment but PAM_USER
//! and PAM_TYPE (not SUDO_*, not MEMSLICE_*), takes root's own config and
//! the fixed cgroup root, and when it cannot place a session it says why
//! in the system log and lets the login go on (exit 0).

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crate::cgroupfs::{self, Root};
use crate::config::{Config, ConfigError, Driver, Scope, parent_of, slice_list};
use crate::driver::{self, DriverError, Resolved};
use crate::host::{self, HostError};

/// The two commands that place processes, for their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placing {
    Exec,
    Move,
}

impl Placing {
    fn command(self) -> &'static str {
        match self {
            Placing::Exec => "memslice exec",
            Placing::Move => "memslice move",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("{0} needs root: it moves processes between cgroups")]
    NotRoot(&'static str),
    #[error("slice {slice:?} is not in the config; known slices: {known}")]
    UnknownSlice { slice: String, known: String },
    #[error(
        "slice {slice} has child slices, and cgroup v2 keeps processes in leaf groups only: name one of them ({children})"
    )]
    NotALeaf { slice: String, children: String },
    #[error(
        "slice {0} holds the groups of protected tasks, one per task: start a command there with `memslice run` or `memslice protect`"
    )]
    TaskSlice(String),
    #[error("under the systemd driver systemd places processes, not {command}: {advice}")]
    Systemd {
        command: &'static str,
        advice: String,
    },
    #[error("no process {}: {} not running; nothing was moved", list(.0), if .0.len() == 1 { "it is" } else { "they are" })]
    NoSuchProcess(Vec<u32>),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Cgroup(#[from] cgroupfs::Error),
    #[error("cannot run {program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
}

fn list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FootprintError {
    /// The request cannot be done as asked (exit 2), as opposed to a
    /// failure on the host.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FootprintError::NotRoot(_)
                | FootprintError::UnknownSlice { .. }
                | FootprintError::NotALeaf { .. }
                | FootprintError::TaskSlice(_)
                | FootprintError::Systemd { .. }
                | FootprintError::NoSuchProcess(_)
                | FootprintError::Driver(_)
        )
    }

    /// `exec`'s status, as env(1) and nice(1) have it: 127 the command is
    /// not found, 126 it cannot be run, 125 memslice failed or refused.
    pub fn exec_status(&self) -> u8 {
        match self {
            FootprintError::Exec { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            FootprintError::Exec { .. } => 126,
            _ => 125,
        }
    }
}

/// The group processes of `slice` go to under the cgroupfs driver. Pure.
pub fn leaf(config: &Config, slice: &str) -> Result<String, FootprintError> {
    let slice = slice.trim_matches('/');
    let Some(found) = config.slice(slice) else {
        return Err(FootprintError::UnknownSlice {
            slice: slice.to_string(),
            known: slice_list(&config.slices),
        });
    };
    if let Some(sessions) = config.sessions_leaf(found) {
        return Ok(sessions);
    }
    let children: Vec<&str> = config
        .slices
        .iter()
        .filter(|child| parent_of(&child.path) == Some(slice))
        .map(|child| child.path.as_str())
        .collect();
    if !children.is_empty() {
        return Err(FootprintError::NotALeaf {
            slice: slice.to_string(),
            children: children.join(", "),
        });
    }
    if config.protect.as_ref().is_some_and(|p| p.slice == slice) {
        return Err(FootprintError::TaskSlice(slice.to_string()));
    }
    Ok(slice.to_string())
}

/// Where `exec` or `move` would put processes of `slice` on this host, or
/// why not: the driver must be cgroupfs and may write the tree. Pure.
pub fn placement(
    config: &Config,
    resolved: &Resolved,
    cgroup_root: &Path,
    slice: &str,
    placing: Placing,
) -> Result<String, FootprintError> {
    if resolved.driver == Driver::Systemd {
        let unit = config.layout.slice_unit(slice.trim_matches('/'));
        let advice = match placing {
            Placing::Exec => format!(
                "start the command with `systemd-run --scope --slice={unit} -- COMMAND`, or give its service Slice={unit} (list it in the slice's `services`)"
            ),
            Placing::Move => format!(
                "a running process cannot be moved into a slice from outside systemd; start it again in the slice: list its service in the slice's `services`, or run it with `systemd-run --scope --slice={unit}`"
            ),
        };
        return Err(FootprintError::Systemd {
            command: placing.command(),
            advice,
        });
    }
    resolved.check_writes(cgroup_root)?;
    leaf(config, slice)
}

/// One pid of `move`, and what moving it came to (a process may end
/// between the check and the move).
pub type Moved = (u32, Result<(), cgroupfs::Error>);

/// Moves `pids` into `group`, all or none refused up front: every pid
/// must run.
pub fn move_processes(
    root: &Root,
    group: &str,
    pids: &[u32],
) -> Result<Vec<Moved>, FootprintError> {
    let missing: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| !host::process_runs(*pid))
        .collect();
    if !missing.is_empty() {
        return Err(FootprintError::NoSuchProcess(missing));
    }
    Ok(pids
        .iter()
        .map(|pid| (*pid, root.move_process(group, *pid)))
        .collect())
}

/// Moves this process into `group`, then becomes `command` (only returns
/// on failure). The command keeps memslice's identity, environment and
/// descriptors; SIGPIPE, which Rust ignores, is reset as exec resets it.
pub fn exec(root: &Root, group: &str, command: &[OsString]) -> FootprintError {
    let Some((program, args)) = command.split_first() else {
        return FootprintError::Exec {
            program: String::new(),
            source: std::io::ErrorKind::InvalidInput.into(),
        };
    };
    if let Err(err) = root.move_process(group, std::process::id()) {
        return err.into();
    }
    let source = std::process::Command::new(program).args(args).exec();
    FootprintError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// What pam_exec passed. pam_exec appends PAM_TYPE and PAM_USER after the
/// PAM environment, which pam_env may fill from a file the user writes
/// (~/.pam_environment with user_readenv): so the last of each counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PamRequest {
    /// PAM_TYPE: `open_session`, `close_session`, ...
    pub kind: Option<String>,
    /// PAM_USER: whose session it is.
    pub user: Option<String>,
}

impl PamRequest {
    pub fn from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> PamRequest {
        let mut request = PamRequest::default();
        for (name, value) in vars {
            let value = Some(value.to_string_lossy().into_owned());
            match name.to_str() {
                Some("PAM_TYPE") => request.kind = value,
                Some("PAM_USER") => request.user = value,
                _ => {}
            }
        }
        request
    }
}

/// What the hook reads besides its request: the fixed places, and who it
/// runs as and for.
#[derive(Debug, Clone, Copy)]
pub struct PamHost<'a> {
    pub config: &'a Path,
    pub cgroup_root: &'a Path,
    /// The process that opens the session: pam_exec's parent.
    pub parent: u32,
    /// Real and effective uid 0 (pam_exec's `seteuid` makes it so under su).
    pub as_root: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamOutcome {
    Placed {
        user: String,
        pid: u32,
        group: String,
    },
    /// Nothing to do here: not a session opening, a user no slice names,
    /// or the systemd driver (logind places sessions).
    Ignored(&'static str),
    /// The session goes on where it is; this says why, for the log.
    Unplaced(String),
}

/// The hook: places the session `request` opens, if a slice names its
/// user. Never fails: what goes wrong is an [`PamOutcome::Unplaced`].
pub fn pam_session(request: &PamRequest, host: &PamHost<'_>) -> PamOutcome {
    if request.kind.as_deref() != Some("open_session") {
        return PamOutcome::Ignored("not the opening of a session");
    }
    let Some(user) = request.user.as_deref() else {
        return PamOutcome::Unplaced(
            "PAM_USER is not set: memslice pam-session is run by pam_exec (see its --help)"
                .to_string(),
        );
    };
    let unplaced = |reason: String| {
        PamOutcome::Unplaced(format!(
            "the session of {user} (pid {}) stays outside its slice: {reason}",
            host.parent
        ))
    };
    if !host.as_root {
        return unplaced(
            "memslice pam-session runs as root only: give the pam_exec line the seteuid option"
                .to_string(),
        );
    }
    let mut config = match host::node_facts()
        .map_err(|err| err.to_string())
        .and_then(|node| {
            // A login never heals: no time zone lookup, and nothing read
            // from the PAM environment's TZ.
            Config::load_for(host.config, node, Scope::Task)
                .map_err(|err: ConfigError| err.to_string())
        }) {
        Ok(config) => config,
        Err(err) => return unplaced(err),
    };
    if config.slice_of_user(user).is_none() {
        return PamOutcome::Ignored("no slice names this user");
    }
    let resolved = driver::resolve(config.setting, &driver::facts(host.cgroup_root));
    if resolved.driver == Driver::Systemd {
        return PamOutcome::Ignored("the systemd driver: logind places sessions");
    }
    if let Err(err) = resolved.check_writes(host.cgroup_root) {
        return unplaced(err.to_string());
    }
    // An orphaned hook's parent is init or a subreaper: never move those.
    if host.parent <= 1 {
        return unplaced("the process that opened it is gone".to_string());
    }
    // The cgroupfs driver looks no user up.
    if let Err(err) = config.place(Driver::Cgroupfs, host.config, |_| Ok(None)) {
        return unplaced(err.to_string());
    }
    let Some(group) = config
        .slice_of_user(user)
        .and_then(|slice| config.sessions_leaf(slice))
    else {
        return PamOutcome::Ignored("no slice names this user");
    };
    let moved = host::open_root(host.cgroup_root)
        .map_err(|err| err.to_string())
        .and_then(|root| {
            root.move_process(&group, host.parent)
                .map_err(|err| err.to_string())
        });
    match moved {
        Ok(()) => PamOutcome::Placed {
            user: user.to_string(),
            pid: host.parent,
            group,
        },
        Err(err) => unplaced(err),
    }
}

/// How long the hook may take, whatever it waits on (a hung file system,
/// a full log socket): then SIGALRM ends it and the login goes on.
pub const PAM_DEADLINE: Duration = Duration::from_secs(2);

/// Arms [`PAM_DEADLINE`]: SIGALRM back at its default action (ending the
/// process), unblocked, whatever sshd, cron or su left it at.
pub fn arm_deadline() {
    let _ = crate::sys::reset_signal_dispositions(crate::sys::SignalSet::ALL);
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let seconds = u32::try_from(PAM_DEADLINE.as_secs()).unwrap_or(2);
    nix::unistd::alarm::set(seconds);
}

/// syslog's authpriv facility at warning: where PAM modules report.
const AUTHPRIV_WARNING: u8 = (10 << 3) | 4;

/// One line to the system log (/dev/log: journald or syslogd), sent
/// without waiting: a full or absent log socket never holds up a login.
pub fn system_log(message: &str) -> std::io::Result<()> {
    // In UTC: the local zone would come from TZ, which the PAM environment
    // may set (to a FIFO that holds the hook). journald and rsyslog stamp
    // a local message with the time they got it anyway.
    let stamp = jiff::Timestamp::now().strftime("%b %e %H:%M:%S");
    let line = format!(
        "<{AUTHPRIV_WARNING}>{stamp} memslice[{}]: {}",
        std::process::id(),
        message.replace('\n', " ")
    );
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to(line.as_bytes(), crate::locations::dev_log())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parsed as config;
    use crate::driver::{Facts, RootFacts};
    use crate::layout::DriverSetting;

    const TREE: &str = "[node]\ndriver = \"cgroupfs\"\n[slice.ops]\n[slice.app]\nusers = [\"app\"]\n[slice.app.web]\n[slice.app.cron]\n[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\n";

    #[test]
    fn processes_go_to_a_leaf() {
        let config = config(TREE);
        assert_eq!(leaf(&config, "app").expect("app"), "app/sessions");
        assert_eq!(leaf(&config, "/app/cron/").expect("cron"), "app/cron");
        assert_eq!(leaf(&config, "ops").expect("ops"), "ops");
        let tasks = leaf(&config, "app/tasks").expect_err("tasks").to_string();
        assert!(
            tasks.contains("holds the groups of protected tasks"),
            "{tasks}"
        );
        let unknown = leaf(&config, "db").expect_err("db").to_string();
        assert_eq!(
            unknown,
            "slice \"db\" is not in the config; known slices: ops, app, app/web, app/cron, app/tasks"
        );
        let mut parent = config;
        parent.slices[1].users.clear();
        let err = leaf(&parent, "app").expect_err("a parent").to_string();
        assert_eq!(
            err,
            "slice app has child slices, and cgroup v2 keeps processes in leaf groups only: name one of them (app/web, app/cron, app/tasks)"
        );
    }

    #[test]
    fn systemd_places_processes_itself() {
        let mut config = config(&TREE.replace("cgroupfs", "systemd"));
        config
            .place(Driver::Systemd, Path::new("slices.toml"), |_| {
                Ok(Some(1000))
            })
            .expect("placed");
        let resolved = driver::resolve(
            DriverSetting::Auto,
            &Facts {
                systemd_booted: true,
                root: RootFacts::Cgroup2 { delegation: None },
            },
        );
        let root = Path::new("/sys/fs/cgroup");
        let exec = placement(&config, &resolved, root, "app/cron", Placing::Exec)
            .expect_err("systemd")
            .to_string();
        assert!(
            exec.starts_with("under the systemd driver systemd places processes, not memslice exec: start the command with `systemd-run --scope --slice=user-1000-cron.slice -- COMMAND`"),
            "{exec}"
        );
        let moved = placement(&config, &resolved, root, "app", Placing::Move)
            .expect_err("systemd")
            .to_string();
        assert!(
            moved.contains("cannot be moved into a slice from outside systemd"),
            "{moved}"
        );
        let cgroupfs = driver::resolve(
            DriverSetting::Cgroupfs,
            &Facts {
                systemd_booted: true,
                root: RootFacts::Cgroup2 { delegation: None },
            },
        );
        let err = placement(&config, &cgroupfs, root, "app", Placing::Move).expect_err("misfit");
        assert!(matches!(err, FootprintError::Driver(_)), "{err}");
        assert!(err.is_refusal());
    }

    #[test]
    fn the_last_pam_variables_are_pams() {
        let env = [
            ("PAM_USER", "root"),
            ("HOME", "/home/app"),
            ("PAM_USER", "app"),
            ("PAM_TYPE", "open_session"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        assert_eq!(
            PamRequest::from_env(env),
            PamRequest {
                kind: Some("open_session".into()),
                user: Some("app".into()),
            }
        );
    }

    #[test]
    fn the_hook_leaves_what_is_not_its_business() {
        let host = PamHost {
            config: Path::new("/nonexistent/slices.toml"),
            cgroup_root: Path::new("/nonexistent"),
            parent: 4242,
            as_root: true,
        };
        let closing = PamRequest {
            kind: Some("close_session".into()),
            user: Some("app".into()),
        };
        assert_eq!(
            pam_session(&closing, &host),
            PamOutcome::Ignored("not the opening of a session")
        );
        let opening = PamRequest {
            kind: Some("open_session".into()),
            user: Some("app".into()),
        };
        let PamOutcome::Unplaced(why) = pam_session(&opening, &host) else {
            panic!("no config, no placing");
        };
        assert!(
            why.starts_with("the session of app (pid 4242) stays outside its slice: config: cannot read /nonexistent/slices.toml"),
            "{why}"
        );
        let not_root = PamHost {
            as_root: false,
            ..host
        };
        let PamOutcome::Unplaced(why) = pam_session(&opening, &not_root) else {
            panic!("not root");
        };
        assert!(
            why.contains("give the pam_exec line the seteuid option"),
            "{why}"
        );
        let nobody = PamRequest {
            kind: Some("open_session".into()),
            user: None,
        };
        assert!(matches!(
            pam_session(&nobody, &host),
            PamOutcome::Unplaced(_)
        ));
    }

    #[test]
    fn exec_statuses_follow_env() {
        let not_found = FootprintError::Exec {
            program: "nope".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(not_found.exec_status(), 127);
        let denied = FootprintError::Exec {
            program: "/etc/passwd".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert_eq!(denied.exec_status(), 126);
        assert_eq!(FootprintError::NotRoot("memslice exec").exec_status(), 125);
    }
}
