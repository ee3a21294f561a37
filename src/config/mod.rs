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
mod validate;

pub use validate::{CGROUP_ROOT_MAX, TASK_NAME_MAX, effective_max};

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use crate::layout::Driver;
pub use size::{Limit, Size};

/// What the node contributes to resolving a config: percentages need its RAM,
/// and the kernel stores limits in whole pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    pub memory: u64,
    pub page_size: u64,
}

/// What a command needs of the config: the checks are the same for every
/// scope; only what is resolved against the host differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: plan, apply, heal, and what reads the tree.
    Node,
    /// A task's start (`run`, `protect`), which never heals: `[heal]` is
    /// checked as for the node but its time zone is not looked up (jiff
    /// walks the whole tz database for any zone, which costs a task's start
    /// more than the rest of the load), and the config has no `heal`.
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
    pub driver: Driver,
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
    /// Reads and validates `path`; as root, only a file root alone can
    /// change (see `files`). Nothing on the host is touched.
    pub fn load(path: &Path, node: NodeFacts) -> Result<Config, ConfigError> {
        Config::load_for(path, node, Scope::Node)
    }

    /// [`Config::load`] for what `scope` needs.
    pub fn load_for(path: &Path, node: NodeFacts, scope: Scope) -> Result<Config, ConfigError> {
        let bytes = crate::files::read_trusted(path).map_err(|err| ConfigError::File { err })?;
        Config::parse_bytes_for(path, &bytes, node, scope)
    }

    /// Validates `bytes`, which must be UTF-8 as TOML requires; `path` only
    /// names the file in errors.
    pub fn parse_bytes(path: &Path, bytes: &[u8], node: NodeFacts) -> Result<Config, ConfigError> {
        Config::parse_bytes_for(path, bytes, node, Scope::Node)
    }

    fn parse_bytes_for(
        path: &Path,
        bytes: &[u8],
        node: NodeFacts,
        scope: Scope,
    ) -> Result<Config, ConfigError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Config::parse_for(path, text, node, scope),
            Err(err) => {
                let valid = &bytes[..err.valid_up_to()];
                // The prefix up to the first invalid byte is valid UTF-8.
                let before = std::str::from_utf8(valid).unwrap_or_default();
                let bad = bytes.get(err.valid_up_to()).copied().unwrap_or_default();
                let problem = Problem {
                    span: before.len()..before.len(),
                    key: String::new(),
                    message: format!(
                        "not UTF-8: byte 0x{bad:02x} here is not valid UTF-8 text, which TOML requires"
                    ),
                };
                Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    problems: vec![locate(path, before, problem)],
                })
            }
        }
    }

    /// Validates `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str, node: NodeFacts) -> Result<Config, ConfigError> {
        Config::parse_for(path, text, node, Scope::Node)
    }

    /// [`Config::parse`] for what `scope` needs.
    pub fn parse_for(
        path: &Path,
        text: &str,
        node: NodeFacts,
        scope: Scope,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let raw = raw::read(text, &mut problems);
        let config = validate::validate(&raw, node, scope, &mut problems);
        if problems.is_empty() {
            return Ok(config);
        }
        problems.sort_by_key(|problem| problem.span.start);
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: problems
                .into_iter()
                .map(|p| locate(path, text, p))
                .collect(),
        })
    }

    pub fn slice(&self, path: &str) -> Option<&Slice> {
        self.slices.iter().find(|slice| slice.path == path)
    }
}

/// Line and column (in characters, as editors count) of a problem's start.
fn locate(file: &Path, text: &str, problem: Problem) -> Located {
    let mut start = problem.span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    Located {
        file: file.to_path_buf(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        key: problem.key,
        message: problem.message,
    }
}

/// Parent of a slice path, `None` for a top-level slice.
pub fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
