//! slices.toml: the operator's description of the tree, checked completely
//! before anything on the host is touched. Loading is the only gate: what
//! can be known without changing the host is refused here, with
//! `file:line:column`, the key and what is allowed, never later by the
//! kernel or the healer.
//!
//! Loading goes in two steps, as ripgrep layers its arguments: `raw` reads
//! the TOML into typed values that remember their place (one table of keys
//! per section), `validate` checks the tree as a whole against the node's
//! RAM and the kernel's path limits. Both are pure but for two reads: the tz
//! database for heal.timezone, and whether a state or lock path is a
//! directory. Only a `Config` that passed both reaches the code that writes
//! to cgroupfs.

pub mod duration;
pub mod heal;
mod nesting;
mod raw;
pub mod size;
mod sources;
mod validate;

pub use validate::{CGROUP_ROOT_MAX, DEFAULT_STALL_TIMEOUT, TASK_NAME_MAX, effective_max};

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use crate::layout::{Driver, DriverSetting, Layout, UserSlice};
pub use size::{Limit, Size};
use sources::Sources;
pub use sources::dropin_dir;

/// What the node contributes to resolving a config: percentages need its RAM,
/// and the kernel stores limits in whole pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    pub memory: u64,
    pub page_size: u64,
}

/// What a command needs of the config. Every rule is checked in every
/// scope but one: the time zone's name is looked up only for the node, so
/// an unknown zone is refused by plan, apply and heal, not by a task's
/// start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: plan, apply, heal, and what reads the tree.
    Node,
    /// A task's start (`run`, `protect`, the PAM hook's placing of a
    /// login), which never heals: `[heal]` is
    /// checked as for the node and kept (a stalled task is reported through
    /// its notify hook), but its time zone is not looked up and stays UTC
    /// (jiff walks the whole tz database for any zone, which costs a task's
    /// start more than the rest of the load).
    Task,
}

/// A validated config, with every size resolved to what the kernel stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Slices in preorder: a parent always comes before its children.
    pub slices: Vec<Slice>,
    /// Controllers the cgroup root must enable for the top-level slices.
    pub root_controllers: Vec<Controller>,
    pub protect: Option<ProtectPolicy>,
    pub heal: Option<heal::HealConfig>,
    pub node_memory: u64,
    /// What `[node] driver` says (`auto` when it is left out).
    pub setting: DriverSetting,
    /// Where each slice lives. Until [`Config::place`] settles the driver
    /// on the host, the file's driver with `auto` read as cgroupfs: every
    /// command places its config before it touches the host.
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Relative to the cgroup root, segments joined by `/`: `app/web`.
    pub path: String,
    pub description: Option<String>,
    pub memory: MemorySettings,
    /// Written to this slice's cgroup.subtree_control for its children.
    pub controllers: Vec<Controller>,
    /// For the systemd driver: services that run in this slice.
    pub services: ServicePlacement,
    /// Users whose every process belongs here: their sessions, crons and
    /// user services (`users = ["app"]`).
    pub users: Vec<String>,
}

/// Services the systemd driver places in a slice, and how they meet the
/// OOM killer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePlacement {
    pub units: Vec<String>,
    pub oom_policy: OomPolicy,
    pub oom_score_adj: Option<i32>,
}

/// systemd's OOMPolicy= for the services of a slice (systemd.service(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OomPolicy {
    /// Keeps a service running when the kernel kills one of its workers:
    /// memslice's default, unlike systemd's `stop`.
    #[default]
    Continue,
    /// Stops the service cleanly after a kill.
    Stop,
    /// Kills the whole service after a kill.
    Kill,
}

impl OomPolicy {
    pub const ALL: [OomPolicy; 3] = [OomPolicy::Continue, OomPolicy::Stop, OomPolicy::Kill];

    /// The spelling systemd takes.
    pub fn name(self) -> &'static str {
        match self {
            OomPolicy::Continue => "continue",
            OomPolicy::Stop => "stop",
            OomPolicy::Kill => "kill",
        }
    }

    pub fn parse(text: &str) -> Result<OomPolicy, String> {
        OomPolicy::ALL
            .into_iter()
            .find(|policy| policy.name() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not an OOMPolicy=; use continue, stop or kill (systemd.service(5))"
                )
            })
    }
}

impl fmt::Display for OomPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The memory knobs a slice sets; `None` leaves the kernel's value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemorySettings {
    pub min: Option<Limit>,
    pub low: Option<Limit>,
    pub high: Option<Limit>,
    pub max: Option<Limit>,
    pub swap_max: Option<Limit>,
    pub oom_group: Option<bool>,
}

/// Who may start protected tasks, where, and how much they may take.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectPolicy {
    pub slice: String,
    pub memory_max: Limit,
    pub max_tasks: u32,
    pub oom_score_adj: i32,
    pub oom_group: bool,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// A protected task stalled at its own cap longer than this is ended;
    /// `None`: never (stall_timeout = "off").
    pub stall_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpu,
    Cpuset,
    Hugetlb,
    Io,
    Memory,
    Misc,
    Pids,
    Rdma,
}

impl Controller {
    pub const ALL: [Controller; 8] = [
        Controller::Cpu,
        Controller::Cpuset,
        Controller::Hugetlb,
        Controller::Io,
        Controller::Memory,
        Controller::Misc,
        Controller::Pids,
        Controller::Rdma,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuset => "cpuset",
            Controller::Hugetlb => "hugetlb",
            Controller::Io => "io",
            Controller::Memory => "memory",
            Controller::Misc => "misc",
            Controller::Pids => "pids",
            Controller::Rdma => "rdma",
        }
    }

    pub fn from_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing wrong with the file, at a byte range of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Range<usize>,
    /// Dotted key, like `slice.app.web.memory_max`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

/// A problem placed in its file, ready to print. Each names its own file,
/// so problems from several files can be listed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {err}{}", missing_hint(err))]
    File { err: crate::files::FileError },
    #[error("{}", render_invalid(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Located>,
    },
    /// The config cannot be placed on this host (see [`Config::place`]).
    #[error("{}: {key}: {message}", path.display())]
    Placement {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The drop-ins of `main`, in name order: `*.toml` in `slices.d/` beside
/// it (none when the directory is absent).
fn dropins(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = dropin_dir(main);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::File {
                err: crate::files::FileError::Read { path: dir, source },
            });
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".toml") && !name.starts_with('.'))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// A missing config says where the shipped example is.
fn missing_hint(err: &crate::files::FileError) -> String {
    match err {
        crate::files::FileError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            format!(
                "; start from the shipped example ({}, or slices.toml in the source tree): copy it to {} and edit it, or pass --config FILE",
                crate::locations::EXAMPLE,
                crate::locations::CONFIG
            )
        }
        _ => String::new(),
    }
}

fn render_invalid(path: &Path, problems: &[Located]) -> String {
    let mut out = format!(
        "{} is not valid ({} problem{}); nothing was changed",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str(&format!(
            "\n  {}:{}:{}: ",
            problem.file.display(),
            problem.line,
            problem.column
        ));
        if !problem.key.is_empty() {
            out.push_str(&format!("{}: ", problem.key));
        }
        out.push_str(&problem.message);
    }
    out
}

impl Config {
    /// Reads and validates `path` and its drop-ins (`slices.d/*.toml`
    /// beside it, merged in name order); as root, only files root alone
    /// can change (see `files`). Nothing on the host is touched.
    pub fn load(path: &Path, node: NodeFacts) -> Result<Config, ConfigError> {
        Config::load_for(path, node, Scope::Node)
    }

    /// [`Config::load`] for what `scope` needs.
    pub fn load_for(path: &Path, node: NodeFacts, scope: Scope) -> Result<Config, ConfigError> {
        let read = |path: &Path| {
            crate::files::read_trusted(path)
                .map(|bytes| (path.to_path_buf(), bytes))
                .map_err(|err| ConfigError::File { err })
        };
        let files = Config::files(path)?
            .iter()
            .map(|file| read(file))
            .collect::<Result<Vec<_>, _>>()?;
        Config::parse_files_for(files, node, scope)
    }

    /// The files a config is read from: `path`, then its drop-ins in name
    /// order.
    pub fn files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
        Ok(std::iter::once(path.to_path_buf())
            .chain(dropins(path)?)
            .collect())
    }

    /// Validates one file's `bytes`; `path` only names the file in errors.
    pub fn parse_bytes(path: &Path, bytes: &[u8], node: NodeFacts) -> Result<Config, ConfigError> {
        Config::parse_files(vec![(path.to_path_buf(), bytes.to_vec())], node)
    }

    /// Validates one file's `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str, node: NodeFacts) -> Result<Config, ConfigError> {
        Config::parse_bytes(path, text.as_bytes(), node)
    }

    /// [`Config::parse`] for what `scope` needs.
    pub fn parse_for(
        path: &Path,
        text: &str,
        node: NodeFacts,
        scope: Scope,
    ) -> Result<Config, ConfigError> {
        Config::parse_files_for(
            vec![(path.to_path_buf(), text.as_bytes().to_vec())],
            node,
            scope,
        )
    }

    /// Validates the main file and its drop-ins, in merge order. Each must
    /// be UTF-8, as TOML requires; a problem names the file it is in.
    pub fn parse_files(
        files: Vec<(PathBuf, Vec<u8>)>,
        node: NodeFacts,
    ) -> Result<Config, ConfigError> {
        Config::parse_files_for(files, node, Scope::Node)
    }

    /// [`Config::parse_files`] for what `scope` needs.
    fn parse_files_for(
        files: Vec<(PathBuf, Vec<u8>)>,
        node: NodeFacts,
        scope: Scope,
    ) -> Result<Config, ConfigError> {
        let main = files
            .first()
            .map_or_else(|| PathBuf::from("slices.toml"), |(path, _)| path.clone());
        let mut encoding = Vec::new();
        let mut texts = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            match String::from_utf8(bytes) {
                Ok(text) => texts.push((path, text)),
                Err(err) => {
                    let valid_up_to = err.utf8_error().valid_up_to();
                    let bytes = err.into_bytes();
                    let bad = bytes.get(valid_up_to).copied().unwrap_or_default();
                    // The prefix up to the first invalid byte is valid UTF-8.
                    let before = String::from_utf8_lossy(&bytes[..valid_up_to]).into_owned();
                    let one = Sources::new(vec![(path, before)]);
                    encoding.push(one.locate(Problem {
                        span: valid_up_to..valid_up_to,
                        key: String::new(),
                        message: format!(
                            "not UTF-8: byte 0x{bad:02x} here is not valid UTF-8 text, which TOML requires"
                        ),
                    }));
                }
            }
        }
        if !encoding.is_empty() {
            return Err(ConfigError::Invalid {
                path: main,
                problems: encoding,
            });
        }
        let sources = Sources::new(texts);
        let mut problems = Vec::new();
        let document = sources.document(&mut problems);
        let raw = raw::read(&document, &mut problems);
        let config = validate::validate(&raw, node, scope, &mut problems);
        if problems.is_empty() {
            return Ok(config);
        }
        problems.sort_by_key(|problem| problem.span.start);
        Err(ConfigError::Invalid {
            path: main,
            problems: problems.into_iter().map(|p| sources.locate(p)).collect(),
        })
    }

    pub fn slice(&self, path: &str) -> Option<&Slice> {
        self.slices.iter().find(|slice| slice.path == path)
    }

    /// Under the cgroupfs driver, the leaf group that holds the sessions of
    /// a slice's users (`app/sessions`), which apply creates. Under the
    /// systemd driver logind makes session scopes instead.
    pub fn sessions_leaf(&self, slice: &Slice) -> Option<String> {
        (self.layout.driver() == Driver::Cgroupfs && !slice.users.is_empty())
            .then(|| crate::cgroupfs::join(&slice.path, crate::layout::SESSIONS))
    }

    /// The slice that names `user` in its `users`.
    pub fn slice_of_user(&self, user: &str) -> Option<&Slice> {
        self.slices
            .iter()
            .find(|slice| slice.users.iter().any(|name| name == user))
    }

    /// Settles where every slice lives under `driver` (the host's choice
    /// for `auto`, see `driver::resolve`). Under the systemd driver a slice
    /// with a user is that user's `user-UID.slice`, so the user must exist:
    /// `uid_of` looks the name up (`Ok(None)`: no such user). `path` names
    /// the file in errors.
    pub fn place(
        &mut self,
        driver: Driver,
        path: &Path,
        uid_of: impl Fn(&str) -> Result<Option<u32>, String>,
    ) -> Result<(), ConfigError> {
        let layout = match driver {
            Driver::Cgroupfs => Layout::cgroupfs(),
            Driver::Systemd => Layout::systemd(self.user_slices(path, uid_of)?),
        };
        if let Some(heal) = &mut self.heal {
            heal.layout = layout.clone();
        }
        self.layout = layout;
        Ok(())
    }

    fn user_slices(
        &self,
        path: &Path,
        uid_of: impl Fn(&str) -> Result<Option<u32>, String>,
    ) -> Result<Vec<UserSlice>, ConfigError> {
        let mut found: Vec<UserSlice> = Vec::new();
        for slice in &self.slices {
            // Validation allows one user, on a top-level slice, where the
            // systemd driver may be picked.
            let Some(user) = slice.users.first() else {
                continue;
            };
            let fail = |message: String| ConfigError::Placement {
                path: path.to_path_buf(),
                key: format!("slice.{}.users", slice.path.replace('/', ".")),
                message,
            };
            let uid = uid_of(user)
                .map_err(|err| fail(format!("cannot look up user {user:?}: {err}")))?
                .ok_or_else(|| {
                    fail(format!(
                        "no user {user:?} on this node; under the systemd driver [slice.{}] is that user's own slice (user.slice/user-UID.slice, where logind puts their sessions), so the user must exist: create it, or remove the key",
                        slice.path
                    ))
                })?;
            if uid == 0 {
                return Err(fail(format!(
                    "{user:?} is root (uid 0): root's logins stay in user.slice/user-0.slice and root's services go to ops with `services`; name the app user here"
                )));
            }
            if let Some(other) = found.iter().find(|placed| placed.uid == uid) {
                return Err(fail(format!(
                    "{user:?} has uid {uid}, the user of slice {} too: one user-{uid}.slice cannot be two slices",
                    other.slice
                )));
            }
            found.push(UserSlice {
                slice: slice.path.clone(),
                uid,
            });
        }
        Ok(found)
    }
}

/// The slices' paths, for messages that list what is known.
pub fn slice_list(slices: &[Slice]) -> String {
    slices
        .iter()
        .map(|s| s.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A config from `text` on a 16G node with 4K pages, for unit tests
/// across the crate.
#[cfg(test)]
pub(crate) fn parsed(text: &str) -> Config {
    Config::parse(
        Path::new("slices.toml"),
        text,
        NodeFacts {
            memory: 16 << 30,
            page_size: 4096,
        },
    )
    .unwrap_or_else(|err| panic!("{err}"))
}

/// Parent of a slice path, `None` for a top-level slice.
pub fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
