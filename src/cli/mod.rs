//! Command-line definitions. Kept apart from `main` so the help texts stay
//! next to each other and in step with README and slices.toml.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use memslice::caller::Asked;
use memslice::locations;

mod task_line;

#[derive(Debug, Parser)]
#[command(
    name = "memslice",
    version,
    about = "cgroup v2 memory slices for hosting nodes: keep the operations side alive whatever the customers do",
    after_help = "Exit status: 0 success, 1 failure on the host, 2 invalid config or arguments, \
                  3 the host has no usable cgroup v2 memory controller.\n\
                  Logging: -v, -vv, or MEMSLICE_LOG=debug.\n\
                  Through sudo only `protect` and `run` are accepted, with the task's own options; \
                  every global option and MEMSLICE_* variable is refused."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The slice tree to build. As root, it and its directories must be
    /// root's alone (owned by root, not writable by group or others).
    #[arg(
        long,
        global = true,
        env = "MEMSLICE_CONFIG",
        default_value_os_t = locations::config()
    )]
    pub config: PathBuf,
    /// cgroup v2 directory memslice manages: the mount itself, or a subtree
    /// delegated to memslice.
    #[arg(
        long,
        global = true,
        env = "MEMSLICE_CGROUP_ROOT",
        default_value_os_t = locations::cgroup_root()
    )]
    pub cgroup_root: PathBuf,
    /// Who writes the tree: `auto` (systemd where systemd is PID 1 and owns
    /// the cgroup root, cgroupfs elsewhere), `cgroupfs` (memslice, under
    /// --cgroup-root) or `systemd` (slice units and drop-ins). Default: [node] driver, else auto.
    // Checked when used, not here: `pam-session` must run (and ignore it)
    // whatever a PAM environment puts in MEMSLICE_DRIVER.
    #[arg(
        long,
        global = true,
        env = "MEMSLICE_DRIVER",
        value_name = "auto|cgroupfs|systemd"
    )]
    pub driver: Option<std::ffi::OsString>,
    /// Where the systemd driver writes its units.
    #[arg(long, global = true, default_value_os_t = locations::unit_dir())]
    pub unit_dir: PathBuf,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Options that belong to memslice rather than to the task, by clap id and
/// as the caller would write them: refused through sudo.
const PRIVILEGED_OPTIONS: [(&str, &str); 6] = [
    ("config", "--config"),
    ("cgroup_root", "--cgroup-root"),
    ("driver", "--driver"),
    ("unit_dir", "--unit-dir"),
    ("verbose", "--verbose"),
    ("user", "--user"),
];

impl Cli {
    /// Parses the command line, and says what it asked for as far as the
    /// trust rules care (see `memslice::caller`). A plain task's start is
    /// read by `task_line`; everything else, and whatever it gives up on,
    /// by clap.
    pub fn parse_and_describe() -> (Cli, Asked) {
        let args: Vec<OsString> = std::env::args_os().collect();
        let (cli, privileged_options) =
            task_line::parse(&args, |name| std::env::var_os(name).is_some()).unwrap_or_else(|| {
                let (cli, matches) = parse::<Cli>(&args).unwrap_or_else(|err| err.exit());
                let privileged = set_by_caller(&matches);
                std::mem::forget(matches);
                (cli, privileged)
            });
        let asked = Asked {
            command: cli.command.name(),
            starts_a_task: matches!(cli.command, Command::Task(_)),
            privileged_options,
        };
        (cli, asked)
    }
}

/// Whether the command line is the one PAM runs, `memslice pam-session`
/// and nothing else: `main` then runs it without clap (see there).
pub fn is_pam_session(mut args: impl Iterator<Item = OsString>) -> bool {
    args.nth(1).is_some_and(|arg| arg == "pam-session") && args.next().is_none()
}

/// `args` (the program's name first) parsed by `P`, with clap's matches.
fn parse<P: CommandFactory + FromArgMatches>(
    args: &[OsString],
) -> Result<(P, ArgMatches), clap::Error> {
    let mut command = P::command();
    let matches = command.try_get_matches_from_mut(args)?;
    // Freeing the command tree and the matches costs a task's start
    // about a tenth of memslice's own instructions (callgrind); the
    // process keeps them until it exits.
    std::mem::forget(command);
    let parsed = P::from_arg_matches(&matches)?;
    Ok((parsed, matches))
}

/// The privileged options given on the command line or through the
/// environment, wherever they stand on the line.
fn set_by_caller(matches: &ArgMatches) -> Vec<&'static str> {
    let mut found = Vec::new();
    let mut level = Some(matches);
    while let Some(current) = level {
        for (id, option) in PRIVILEGED_OPTIONS {
            let given = current.ids().any(|known| known.as_str() == id)
                && matches!(
                    current.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
            if given && !found.contains(&option) {
                found.push(option);
            }
        }
        level = current.subcommand().map(|(_, sub)| sub);
    }
    found
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
    #[command(flatten)]
    Task(TaskCommand),
    /// Auto-heal: kill protected tasks and restart services after a grace period of downtime.
    #[command(subcommand)]
    Heal(HealCommand),
    /// OOM and limit events of the managed slices (memory.events).
    ///
    /// Without --follow: the counters so far. With it: one line per oom,
    /// oom_kill, oom_group_kill, high and max event as the kernel reports it
    /// (inotify, no polling), at the deepest slice it happened in, with the
    /// group's usage and limit and, for a kill, the victim from the kernel log.
    Events {
        /// Keep watching and print events as they happen.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Prometheus text format of the tree and the healer (for node_exporter's textfile collector).
    Metrics,
    /// Run a command in a slice, in place: memslice moves itself into the
    /// slice's leaf group and execs the command (cgroupfs driver, root only).
    ///
    /// For init scripts and service files: no supervision, the command
    /// keeps memslice's pid, identity, environment and descriptors. The
    /// leaf is SLICE/sessions for a slice with users, the slice itself for
    /// one without child slices. Under the systemd driver use
    /// `systemd-run --scope --slice=UNIT` or Slice= instead. Exit 125:
    /// memslice refused or failed; 126: the command cannot be run; 127:
    /// not found.
    Exec {
        /// The slice, like app/cron.
        #[arg(long)]
        slice: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Move running processes into a slice's leaf group, like cgclassify
    /// (cgroupfs driver, root only).
    ///
    /// Each process moves with all its threads; processes it started
    /// before stay where they are, so name them too. Every pid must run,
    /// or nothing is moved.
    Move {
        /// The slice, like app/web.
        #[arg(long)]
        slice: String,
        #[arg(required = true, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
        pids: Vec<u32>,
    },
    /// For pam_exec: place the session a slice's user opens in that slice
    /// (cgroupfs driver).
    ///
    /// In /etc/pam.d/common-session and common-session-noninteractive (Debian):
    ///   session optional pam_exec.so quiet seteuid type=open_session /usr/bin/memslice pam-session
    /// Moves the process opening the session (pam_exec's parent: sshd's,
    /// su's, cron's, sudo's) into SLICE/sessions, so the shell or job it
    /// starts is charged there. Reads only PAM_USER and PAM_TYPE from its
    /// environment, /etc/memslice/slices.toml and /sys/fs/cgroup (no global
    /// option counts). Never fails a login: always exits 0 within 2 s, and
    /// says in the system log (authpriv) why a session stayed outside. Does
    /// nothing under the systemd driver, where pam_systemd and logind place
    /// sessions.
    PamSession,
    /// The tasks started with run and protect: what runs, for whom, since when.
    ///
    /// Every task group under the managed slices, with its slice, name,
    /// user, command, start, memory now and at its peak, and its state:
    /// running, stalled (at its own cap, nothing the kernel may kill),
    /// detached (the command ended, work it left runs on under a keeper),
    /// orphaned (no memslice watches it any more) or empty.
    Tasks {
        #[command(subcommand)]
        action: Option<TasksCommand>,
        /// Machine-readable output (schema in the README).
        #[arg(long)]
        json: bool,
    },
    /// Every fact about this host memslice relies on, each OK, WARN or FAIL
    /// with what to do.
    ///
    /// cgroup v2 with memory (FAIL with apply's own advice where it is
    /// missing), memory_recursiveprot, PSI, cgroup.kill (Linux 5.14),
    /// clone3 into a cgroup (5.7), systemd's version for OOMPolicy= (243)
    /// and ManagedOOMPreference= (248), whether the driver fits (one
    /// writer per tree, delegation), userspace OOM killers and what they
    /// do to protected tasks, the healer's units (timer or watcher, not
    /// both), /dev/kmsg, the tz database, the config's ownership, where
    /// the processes of the slices' users are, and the PAM hook (cgroupfs)
    /// or cron's logind sessions (systemd). Exit 1 when a check FAILs (for
    /// configuration management), 0 otherwise.
    Doctor {
        /// Machine-readable output (schema in the README).
        #[arg(long)]
        json: bool,
    },
    /// The tree with usage against limits and OOM counters.
    Status {
        /// Machine-readable output (schema in the README).
        #[arg(long)]
        json: bool,
    },
}

/// The subcommands that start a task (`task_line` reads their plain forms).
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Start a command in its own transient group under a slice, and supervise it.
    ///
    /// memslice stays the parent while the command runs: it reaps every
    /// descendant, forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
    /// SIGUSR2, and exits with the command's status (128+N for signal N,
    /// 137 when the kernel OOM-killed it). What the command leaves running
    /// (screen -d -m, nohup … &, setsid) stays in the group, capped and
    /// protected as the command was, under a background memslice that
    /// removes the group once it is empty; --wait and --kill-leftovers
    /// change that. Exit 125: memslice itself failed; 126: the command
    /// cannot run; 127: not found.
    Run {
        /// Slice to run in, like app/tasks (default: the [protect] slice).
        #[arg(long)]
        slice: Option<String>,
        /// Kill the whole task when one of its processes is OOM-killed (memory.oom.group).
        #[arg(long, overrides_with = "no_oom_group")]
        oom_group: bool,
        /// Let the kernel OOM-kill single processes of the task (the default for run).
        #[arg(long)]
        no_oom_group: bool,
        /// oom_score_adj of the command and its children (-1000 to 1000); below 0 needs root.
        #[arg(long, allow_hyphen_values = true)]
        oom_score_adj: Option<i32>,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// `run` with the [protect] policy: exempt from the OOM killer (oom_score_adj -1000).
    ///
    /// The command and every child it spawns are protected; the caller's shell
    /// is not. Through sudo the command runs as the invoking user, and the
    /// policy in slices.toml says who may protect, how much memory a task may
    /// take and how many may run at once.
    Protect {
        #[command(flatten)]
        task: TaskArgs,
    },
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// memory.max of the task's group, like 2G or 25% (at most the slice's own limit).
    #[arg(long)]
    pub memory_max: Option<String>,
    /// Name of the task's group (the group is NAME-PID; default: the command's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Run as this user (root only; through sudo the task runs as the invoking user).
    #[arg(long)]
    pub user: Option<String>,
    /// Run the command even where oom_score_adj cannot be set (unprivileged containers).
    #[arg(long)]
    pub allow_unprotected: bool,
    /// Stay until every process of the task's group has ended, not only the command.
    #[arg(long, conflicts_with = "kill_leftovers")]
    pub wait: bool,
    /// When the command ends, kill what it left running in its group.
    #[arg(long)]
    pub kill_leftovers: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

impl Command {
    /// The subcommand as typed, for messages.
    pub fn name(&self) -> String {
        let name = match self {
            Command::Plan { .. } => "plan",
            Command::Apply => "apply",
            Command::Task(TaskCommand::Run { .. }) => "run",
            Command::Task(TaskCommand::Protect { .. }) => "protect",
            Command::Heal(HealCommand::Check { .. }) => "heal check",
            Command::Heal(HealCommand::Watch { .. }) => "heal watch",
            Command::Heal(HealCommand::Reset) => "heal reset",
            Command::Events { .. } => "events",
            Command::Metrics => "metrics",
            Command::Exec { .. } => "exec",
            Command::Move { .. } => "move",
            Command::PamSession => "pam-session",
            Command::Doctor { .. } => "doctor",
            Command::Tasks {
                action: Some(TasksCommand::Kill { .. }),
                ..
            } => "tasks kill",
            Command::Tasks {
                action: Some(TasksCommand::Gc),
                ..
            } => "tasks gc",
            Command::Tasks { action: None, .. } => "tasks",
            Command::Status { .. } => "status",
        };
        name.to_string()
    }
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// End a task: its whole group (cgroup.kill), with the reason recorded
    /// for the memslice that started it to tell its caller.
    Kill {
        /// The task's group name (import-1234) or its name (import).
        name: String,
    },
    /// Remove the empty task groups a killed memslice left behind
    /// (the healer does this on every check too).
    Gc,
}

#[derive(Debug, Subcommand)]
pub enum HealCommand {
    /// One run, for a timer: probe, update the downtime record, decide, act.
    ///
    /// Exit 0 whatever the site's state (this is a healer, not a monitor);
    /// 1 when an action failed. When another run holds the lock for more
    /// than a few seconds, says so and exits 0.
    Check {
        /// Decide and print, without acting or writing the state file.
        #[arg(long)]
        dry_run: bool,
        /// Print the decision as JSON (verdict, probes, actions).
        #[arg(long)]
        json: bool,
    },
    /// Repeat `check` on the wall clock every heal.interval, as a daemon; stops on SIGTERM or SIGINT.
    ///
    /// Also logs every memory event of the managed slices as it happens.
    Watch {
        /// Serve Prometheus metrics on ADDR (like 127.0.0.1:9464) at /metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
    },
    /// Clear the flap limiter's action history, so a held-back healer acts again.
    Reset,
}
