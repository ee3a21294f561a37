//! slices.toml: the operator's description of the tree, checked completely
//! before anything on the host is touched.
//!
//! Loading goes in two pure steps, as ripgrep layers its arguments: `raw`
//! reads the TOML into typed values that remember their line, `validate`
//! checks the tree as a whole against the node's RAM. Only a `Config` that
//! passed both reaches the code that writes to cgroupfs.

pub mod heal;
mod raw;
pub mod size;
mod validate;

pub use validate::effective_max;

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
    /// OOMPolicy= of those services: `continue` (the default) keeps a
    /// service running when the kernel kills one of its workers.
    pub oom_policy: String,
    pub oom_score_adj: Option<i32>,
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

/// A problem placed in its file, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
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
            path.display(),
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
        let bytes = crate::files::read_trusted(path).map_err(|err| ConfigError::File { err })?;
        let text = String::from_utf8(bytes).map_err(|err| ConfigError::File {
            err: crate::files::FileError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            },
        })?;
        Config::parse(path, &text, node)
    }

    /// Validates `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str, node: NodeFacts) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let raw = raw::read(text, &mut problems);
        let config = validate::validate(&raw, node, &mut problems);
        if problems.is_empty() {
            return Ok(config);
        }
        problems.sort_by_key(|problem| problem.span.start);
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: problems.into_iter().map(|p| locate(text, p)).collect(),
        })
    }

    pub fn slice(&self, path: &str) -> Option<&Slice> {
        self.slices.iter().find(|slice| slice.path == path)
    }
}

fn locate(text: &str, problem: Problem) -> Located {
    let start = problem.span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(start, |newline| start - newline - 1)
        + 1;
    Located {
        line,
        column,
        key: problem.key,
        message: problem.message,
    }
}

/// Parent of a slice path, `None` for a top-level slice.
pub fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

#[cfg(test)]
mod tests;
