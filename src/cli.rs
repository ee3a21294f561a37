//! Command-line definitions. Kept apart from `main` so the help texts stay
//! next to each other and in step with README and slices.toml.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "memslice",
    version,
    about = "cgroup v2 memory slices for hosting nodes: keep the operations side alive whatever the customers do",
    after_help = "Exit status: 0 success, 1 failure on the host, 2 invalid config or arguments, \
                  3 the host has no usable cgroup v2 memory controller.\n\
                  Logging: -v, -vv, or MEMSLICE_LOG=debug."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The slice tree to build (production nodes: /etc/memslice/slices.toml).
    #[arg(
        long,
        global = true,
        env = "MEMSLICE_CONFIG",
        default_value = "slices.toml"
    )]
    pub config: PathBuf,
    /// cgroup v2 directory memslice manages: the mount itself, or a subtree
    /// delegated to memslice.
    #[arg(
        long,
        global = true,
        env = "MEMSLICE_CGROUP_ROOT",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `apply` would change, per group and per file; writes nothing.
    Plan {
        /// Exit 2 when there are changes to apply, 0 when the tree matches
        /// (for drift checks from configuration management).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make the live tree match the config. Idempotent; never removes a group.
    Apply,
    /// The tree with usage against limits and OOM counters.
    Status {
        /// Machine-readable output (schema in the README).
        #[arg(long)]
        json: bool,
    },
}
