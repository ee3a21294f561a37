//! Who is asking, settled before anything else is read.
//!
//! memslice runs as root, and `protect` is handed to app users with a
//! sudoers line (`app ALL=(root) NOPASSWD: /usr/bin/memslice protect *`).
//! Through sudo, only `run` and `protect` with the task's own options
//! count: every global option (the config, the cgroup root, the driver,
//! the unit directory, the log level) and every `MEMSLICE_*` variable is
//! refused, so the policy always comes from root's own files. A setuid or
//! setgid copy refuses to run at all.
//!
//! The rules are pure ([`resolve`]); [`Process::current`] and the user
//! database lookups are the side effects.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

/// A user as the policy sees it and as a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub uid: u32,
    /// Primary group the task runs with.
    pub gid: u32,
    /// Names of every group the user is in, the primary one included.
    pub groups: Vec<String>,
    /// Supplementary gids to set before exec.
    pub gids: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// The ids a process takes on: one type for every place that drops
/// privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Person {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
            gids: self.gids.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Real root, not through sudo.
    Root,
    /// A user who invoked memslice through sudo (memslice runs as root).
    Sudo(Person),
    /// A user running memslice directly, without privileges.
    Unprivileged(Person),
}

/// The process's ids and what the environment says about sudo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sudo_uid: Option<String>,
    pub sudo_gid: Option<String>,
    /// Names of the `MEMSLICE_*` variables in the environment.
    pub memslice_variables: Vec<String>,
}

/// What the command line asked for, as far as the trust rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The subcommand, as typed (`protect`, `heal check`).
    pub command: String,
    /// Whether the subcommand starts a task (`run`, `protect`).
    pub starts_a_task: bool,
    /// Options the caller set that belong to memslice, not to the task
    /// (`--config`, `--cgroup-root`, `--user` …), from the command line or
    /// the environment.
    pub privileged_options: Vec<&'static str>,
}

/// Variables a test build reads to move memslice's fixed paths; they do
/// not exist in a release build (see `locations`).
#[cfg(feature = "emulated-root")]
const TEST_VARIABLES: &str = "MEMSLICE_TEST_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error(
        "memslice runs setuid or setgid here (real uid {ruid}, effective uid {euid}, real gid {rgid}, effective gid {egid}) and refuses to: remove the bit (chmod u-s,g-s) and hand `memslice protect` to users through sudo"
    )]
    SetId {
        ruid: u32,
        euid: u32,
        rgid: u32,
        egid: u32,
    },
    #[error("{name}={value:?} set by sudo is not a number")]
    BadSudoVariable { name: &'static str, value: String },
    #[error("no user with uid {0} in the user database")]
    UnknownUid(u32),
    #[error("no user {0:?} in the user database")]
    UnknownUser(String),
    #[error("cannot read the user database: {0}")]
    Database(String),
    #[error(
        "SUDO_GID={gid} is not a group of {user} (their groups: {theirs}); run sudo from a shell with one of their own groups"
    )]
    SudoGidNotTheirs {
        gid: u32,
        user: String,
        theirs: String,
    },
    #[error(
        "through sudo, only `memslice protect` and `memslice run` are allowed, not `memslice {0}`; ask root to run it"
    )]
    SudoCommand(String),
    #[error(
        "through sudo, {} refused: only the task's own options count (--name, --memory-max, --slice within the protect slice, --oom-group, --allow-unprotected and the command); the config, the cgroup root and the driver are root's, from /etc/memslice",
        list_options(.0)
    )]
    SudoOptions(Vec<&'static str>),
    #[error(
        "through sudo, the environment variable{} {} refused: memslice's settings are root's, from /etc/memslice; unset {}",
        if .0.len() == 1 { "" } else { "s" },
        list_variables(.0),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    SudoEnvironment(Vec<String>),
}

fn list_options(options: &[&'static str]) -> String {
    let joined = options.join(", ");
    if options.len() == 1 {
        format!("{joined} is")
    } else {
        format!("{joined} are")
    }
}

fn list_variables(names: &[String]) -> String {
    let joined = names.join(", ");
    if names.len() == 1 {
        format!("{joined} is")
    } else {
        format!("{joined} are")
    }
}

/// Settles who is asking and whether they may ask this. `lookup` finds a
/// user by uid. Pure.
pub fn resolve(
    process: &Process,
    asked: &Asked,
    lookup: impl Fn(u32) -> Result<Person, CallerError>,
) -> Result<Caller, CallerError> {
    if process.ruid != process.euid || process.rgid != process.egid {
        return Err(CallerError::SetId {
            ruid: process.ruid,
            euid: process.euid,
            rgid: process.rgid,
            egid: process.egid,
        });
    }
    if process.euid != 0 {
        // SUDO_* is only believed from root: anyone can set it.
        return Ok(Caller::Unprivileged(lookup(process.ruid)?));
    }
    let Some(text) = &process.sudo_uid else {
        return Ok(Caller::Root);
    };
    let uid = number("SUDO_UID", text)?;
    if uid == 0 {
        return Ok(Caller::Root);
    }
    check_sudo_request(process, asked)?;
    let mut person = lookup(uid)?;
    if let Some(text) = &process.sudo_gid {
        let gid = number("SUDO_GID", text)?;
        if gid != person.gid && !person.gids.contains(&gid) {
            return Err(CallerError::SudoGidNotTheirs {
                gid,
                theirs: person
                    .gids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                user: person.name,
            });
        }
        person.gid = gid;
    }
    Ok(Caller::Sudo(person))
}

fn number(name: &'static str, text: &str) -> Result<u32, CallerError> {
    text.parse().map_err(|_| CallerError::BadSudoVariable {
        name,
        value: text.to_string(),
    })
}

fn check_sudo_request(process: &Process, asked: &Asked) -> Result<(), CallerError> {
    if !asked.starts_a_task {
        return Err(CallerError::SudoCommand(asked.command.clone()));
    }
    if !asked.privileged_options.is_empty() {
        return Err(CallerError::SudoOptions(asked.privileged_options.clone()));
    }
    let variables: Vec<String> = process
        .memslice_variables
        .iter()
        .filter(|name| is_refused_variable(name))
        .cloned()
        .collect();
    if !variables.is_empty() {
        return Err(CallerError::SudoEnvironment(variables));
    }
    Ok(())
}

#[cfg(feature = "emulated-root")]
fn is_refused_variable(name: &str) -> bool {
    !name.starts_with(TEST_VARIABLES)
}

#[cfg(not(feature = "emulated-root"))]
fn is_refused_variable(_name: &str) -> bool {
    true
}

impl Process {
    pub fn current() -> Process {
        let text = |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let mut memslice_variables: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| {
                let name = name.to_string_lossy().into_owned();
                name.starts_with("MEMSLICE_").then_some(name)
            })
            .collect();
        memslice_variables.sort();
        Process {
            ruid: Uid::current().as_raw(),
            euid: Uid::effective().as_raw(),
            rgid: Gid::current().as_raw(),
            egid: Gid::effective().as_raw(),
            sudo_uid: text("SUDO_UID"),
            sudo_gid: text("SUDO_GID"),
            memslice_variables,
        }
    }
}

pub fn person_by_name(name: &str) -> Result<Person, CallerError> {
    let user = User::from_name(name)
        .map_err(|errno| CallerError::Database(errno.to_string()))?
        .ok_or_else(|| CallerError::UnknownUser(name.to_string()))?;
    person(user)
}

pub fn person_by_uid(uid: u32) -> Result<Person, CallerError> {
    let user = User::from_uid(Uid::from_raw(uid))
        .map_err(|errno| CallerError::Database(errno.to_string()))?
        .ok_or(CallerError::UnknownUid(uid))?;
    person(user)
}

/// The uid of `name`; `Ok(None)` when there is no such user.
pub fn uid_of(name: &str) -> Result<Option<u32>, String> {
    User::from_name(name)
        .map(|user| user.map(|user| user.uid.as_raw()))
        .map_err(|errno| format!("the user database: {errno}"))
}

fn person(user: User) -> Result<Person, CallerError> {
    let name =
        CString::new(user.name.clone()).map_err(|_| CallerError::UnknownUser(user.name.clone()))?;
    let gids =
        getgrouplist(&name, user.gid).map_err(|errno| CallerError::Database(errno.to_string()))?;
    let groups = gids
        .iter()
        .filter_map(|gid| Group::from_gid(*gid).ok().flatten().map(|group| group.name))
        .collect();
    Ok(Person {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        gids: gids.into_iter().map(Gid::as_raw).collect(),
        home: user.dir,
        shell: user.shell,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(uid: u32) -> Result<Person, CallerError> {
        Ok(Person {
            name: "alice".into(),
            uid,
            gid: 1000,
            groups: vec!["alice".into(), "importers".into()],
            gids: vec![1000, 1500],
            home: PathBuf::from("/home/alice"),
            shell: PathBuf::from("/bin/bash"),
        })
    }

    fn root() -> Process {
        Process::default()
    }

    fn sudo(uid: &str) -> Process {
        Process {
            sudo_uid: Some(uid.into()),
            ..root()
        }
    }

    fn protect() -> Asked {
        Asked {
            command: "protect".into(),
            starts_a_task: true,
            privileged_options: Vec::new(),
        }
    }

    #[test]
    fn root_is_root_and_sudo_names_the_user() {
        assert_eq!(resolve(&root(), &protect(), alice), Ok(Caller::Root));
        let caller = resolve(&sudo("1000"), &protect(), alice).expect("sudo");
        assert!(matches!(caller, Caller::Sudo(person) if person.uid == 1000));
        assert_eq!(
            resolve(&sudo("0"), &protect(), alice),
            Ok(Caller::Root),
            "root through sudo is root"
        );
    }

    #[test]
    fn sudo_variables_are_ignored_without_root() {
        let user = Process {
            ruid: 1000,
            euid: 1000,
            rgid: 1000,
            egid: 1000,
            sudo_uid: Some("0".into()),
            ..root()
        };
        assert!(matches!(
            resolve(&user, &protect(), alice),
            Ok(Caller::Unprivileged(person)) if person.uid == 1000
        ));
    }

    #[test]
    fn a_setuid_or_setgid_copy_refuses_to_run() {
        let setuid = Process {
            ruid: 65534,
            rgid: 65534,
            egid: 65534,
            sudo_uid: Some("1000".into()),
            ..root()
        };
        let err = resolve(&setuid, &protect(), alice).expect_err("setuid");
        assert!(err.to_string().contains("real uid 65534, effective uid 0"));
        let setgid = Process {
            egid: 0,
            rgid: 1000,
            ..root()
        };
        assert!(matches!(
            resolve(&setgid, &protect(), alice),
            Err(CallerError::SetId { .. })
        ));
    }

    #[test]
    fn through_sudo_only_tasks_with_their_own_options() {
        let status = Asked {
            command: "status".into(),
            starts_a_task: false,
            privileged_options: Vec::new(),
        };
        assert_eq!(
            resolve(&sudo("1000"), &status, alice),
            Err(CallerError::SudoCommand("status".into()))
        );
        let with_config = Asked {
            privileged_options: vec!["--config", "--cgroup-root"],
            ..protect()
        };
        let err = resolve(&sudo("1000"), &with_config, alice).expect_err("options");
        assert!(
            err.to_string()
                .starts_with("through sudo, --config, --cgroup-root are refused"),
            "{err}"
        );
        let mut with_variable = sudo("1000");
        with_variable.memslice_variables = vec!["MEMSLICE_CONFIG".into()];
        let err = resolve(&with_variable, &protect(), alice).expect_err("env");
        assert!(
            err.to_string()
                .starts_with("through sudo, the environment variable MEMSLICE_CONFIG is refused"),
            "{err}"
        );
        assert_eq!(
            resolve(&root(), &with_config, alice),
            Ok(Caller::Root),
            "root may set anything"
        );
    }

    #[test]
    fn sudo_gid_must_be_one_of_the_users_groups() {
        let mut own = sudo("1000");
        own.sudo_gid = Some("1500".into());
        assert!(matches!(
            resolve(&own, &protect(), alice),
            Ok(Caller::Sudo(person)) if person.gid == 1500
        ));
        let mut forged = sudo("1000");
        forged.sudo_gid = Some("0".into());
        assert_eq!(
            resolve(&forged, &protect(), alice),
            Err(CallerError::SudoGidNotTheirs {
                gid: 0,
                user: "alice".into(),
                theirs: "1000, 1500".into()
            })
        );
        let mut garbage = sudo("x");
        garbage.sudo_gid = Some("1000".into());
        assert!(matches!(
            resolve(&garbage, &protect(), alice),
            Err(CallerError::BadSudoVariable {
                name: "SUDO_UID",
                ..
            })
        ));
    }
}
