//! The binary's edge: settles who is asking, loads the config, turns the
//! subcommand into one library call, prints for people, and maps errors to
//! exit codes in one place.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use memslice::caller::{self, Asked, Caller, CallerError, Process};
use memslice::cgroupfs::Root;
use memslice::config::heal::NotifyEvent;
use memslice::config::{
    Config, ConfigError, DriverSetting, NodeFacts, Scope, Size, size::human_bytes,
};
use memslice::doctor;
use memslice::driver::{self, DriverError};
use memslice::footprint::{self, FootprintError, Placing};
use memslice::heal::{self, HealError};
use memslice::host;
use memslice::locations;
use memslice::observe;
use memslice::observe::metrics::DecisionCounts;
use memslice::plan::Plan;
use memslice::printable::printable;
use memslice::provision::{self, Applied, Planned, ProvisionError, Target};
use memslice::signals::{Signals, Use};
use memslice::spawn::policy::{self, Mode, Request};
use memslice::spawn::{self, Leftovers, Notify, SpawnError, TaskSpec, task};

use crate::cli::{Cli, Command, HealCommand, TaskArgs, TaskCommand, TasksCommand};

/// The process's exit status (see `main`, which hands it to `exit`).
pub type ExitCode = u8;
const EXIT_SUCCESS: ExitCode = 0;
const EXIT_FAILURE: ExitCode = 1;
/// `plan --detailed-exitcode`: the tree does not match the config.
const EXIT_CHANGES_PENDING: ExitCode = 2;
/// An invalid config or command line, or a refusal (see `--help`).
const EXIT_INVALID: ExitCode = 2;
/// No usable cgroup v2 memory controller on this host.
const EXIT_HOST_UNUSABLE: ExitCode = 3;

pub fn init_logging(cli: &Cli) {
    // The healer's decisions are its log: heal commands log them by default.
    let quiet = if matches!(cli.command, Command::Heal(_)) {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    let chosen = match cli.global.verbose {
        0 => quiet,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // A plain level: no filter language to parse on every start. The PAM
    // hook reads nothing from its environment but PAM_USER and PAM_TYPE.
    let asked = match cli.command {
        Command::PamSession => None,
        _ => std::env::var("MEMSLICE_LOG").ok(),
    };
    let level = asked
        .and_then(|text| text.parse::<tracing::Level>().ok())
        .unwrap_or(chosen);
    let journal_error = if memslice::journal::stderr_is_journal() {
        match init_journal(level) {
            Ok(()) => return,
            Err(err) => Some(err),
        }
    } else {
        None
    };
    // Set once, first thing: nothing can have set another.
    let _ = tracing::subscriber::set_global_default(memslice::stderr_log::StderrLog::new(level));
    if let Some(err) = journal_error {
        tracing::warn!("cannot log to the journal, logging to stderr: {err}");
    }
}

/// Logs through the journal's protocol: every field of a log call as a
/// `MEMSLICE_*` field, levels as priorities (info is 6, not tracing-journald's
/// 5: a passing check is routine), and errors logged to
/// [`memslice::journal::CRITICAL`] at priority 2.
fn init_journal(level: tracing::Level) -> io::Result<()> {
    use memslice::journal::{CRITICAL, FIELD_PREFIX};
    use tracing_journald::{Priority, PriorityMappings};
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    use tracing_subscriber::prelude::*;

    let layer = |error| -> io::Result<tracing_journald::Layer> {
        Ok(tracing_journald::layer()?
            .with_field_prefix(Some(FIELD_PREFIX.to_string()))
            .with_syslog_identifier("memslice".to_string())
            .with_priority_mappings(PriorityMappings {
                error,
                warn: Priority::Warning,
                info: Priority::Informational,
                debug: Priority::Debug,
                trace: Priority::Debug,
            }))
    };
    let plain = layer(Priority::Error)?.with_filter(filter_fn(|meta| meta.target() != CRITICAL));
    let critical =
        layer(Priority::Critical)?.with_filter(filter_fn(|meta| meta.target() == CRITICAL));
    tracing_subscriber::registry()
        .with(LevelFilter::from_level(level))
        .with(plain)
        .with(critical)
        .init();
    Ok(())
}

/// Runs the command and turns its end into an exit code.
pub fn main(cli: &Cli, asked: &Asked) -> ExitCode {
    match run(cli, asked) {
        Ok(code) => code,
        Err(err) if broken_pipe(&err) => EXIT_SUCCESS,
        Err(err) => {
            say(&format!("error: {}", render_error(&err)));
            exit_code_for(cli, &err)
        }
    }
}

/// A line on stderr; a closed stderr is no reason to fail.
fn say(line: &str) {
    let _ = writeln!(io::stderr().lock(), "memslice: {line}");
}

/// The reader of our output went away (`memslice plan | head -1`): stop
/// quietly, as ripgrep does.
fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Everything printed on stdout goes through here, so a closed pipe is an
/// error the caller sees (and `main` ends quietly on).
fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The message and its causes, each once: library errors already name
/// their cause in their own text.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn exit_code_for(cli: &Cli, err: &anyhow::Error) -> ExitCode {
    if matches!(cli.command, Command::Exec { .. }) {
        let code = err
            .downcast_ref::<FootprintError>()
            .map_or(125, FootprintError::exec_status);
        return code;
    }
    if matches!(cli.command, Command::Task(_)) {
        // Like env(1): the command's own codes stay unambiguous.
        let code = err
            .downcast_ref::<SpawnError>()
            .map_or(125, SpawnError::exit_code);
        return code;
    }
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<CallerError>().is_some()
            || cause.downcast_ref::<DriverError>().is_some()
            || cause
                .downcast_ref::<FootprintError>()
                .is_some_and(FootprintError::is_refusal)
            || cause
                .downcast_ref::<ProvisionError>()
                .is_some_and(ProvisionError::driver_refused)
        {
            return EXIT_INVALID;
        }
        let unusable = cause
            .downcast_ref::<host::HostError>()
            .is_some_and(host::HostError::unusable)
            || cause
                .downcast_ref::<ProvisionError>()
                .is_some_and(ProvisionError::host_unusable);
        if unusable {
            return EXIT_HOST_UNUSABLE;
        }
    }
    EXIT_FAILURE
}

/// Which signals the command reads; blocked here, before any thread starts.
fn signal_use(command: &Command) -> Option<Use> {
    match command {
        Command::Task(_) => Some(Use::Supervise),
        Command::Heal(HealCommand::Watch { .. }) => Some(Use::Stop),
        _ => None,
    }
}

fn run(cli: &Cli, asked: &Asked) -> Result<ExitCode> {
    let signals = signal_use(&cli.command)
        .map(Signals::block)
        .transpose()
        .context("cannot block signals")?;
    if matches!(cli.command, Command::PamSession) {
        // With global options, which it ignores (`main` runs the plain form).
        return Ok(pam_session());
    }
    let caller = caller::resolve(&Process::current(), asked, caller::person_by_uid)?;
    let global = &cli.global;
    let asked_driver = match &global.driver {
        None => None,
        Some(asked) => Some(
            asked
                .to_str()
                .and_then(DriverSetting::parse)
                .ok_or_else(|| DriverError::Unknown(asked.to_string_lossy().into_owned()))?,
        ),
    };
    if let Command::Doctor { json } = &cli.command {
        // Whatever is wrong with the config is one of its findings.
        return run_doctor(cli, asked_driver, *json);
    }
    let node = host::node_facts()?;
    let scope = if asked.starts_a_task {
        Scope::Task
    } else {
        Scope::Node
    };
    let mut config = Config::load_for(&global.config, node, scope)?;
    let setting = asked_driver.unwrap_or(config.setting);
    let resolved = driver::resolve(setting, &driver::facts(&global.cgroup_root));
    config.place(resolved.driver, &global.config, caller::uid_of)?;
    let target = Target {
        config: &config,
        config_path: &global.config,
        cgroup_root: &global.cgroup_root,
        unit_dir: &global.unit_dir,
        driver: &resolved,
    };
    match &cli.command {
        Command::Plan { detailed_exitcode } => {
            if let Err(misfit) = resolved.check_writes(&global.cgroup_root) {
                say(&format!("warning: {misfit}; `apply` would refuse"));
            }
            let planned = provision::plan(&target)?;
            print(&render_planned(&planned))?;
            Ok(if *detailed_exitcode && planned.pending() {
                EXIT_CHANGES_PENDING
            } else {
                EXIT_SUCCESS
            })
        }
        Command::Apply => {
            let applied = provision::apply(&target)?;
            print(&render_applied(
                &applied,
                &global.config.display().to_string(),
            ))?;
            Ok(EXIT_SUCCESS)
        }
        Command::Task(TaskCommand::Run {
            slice,
            oom_group,
            no_oom_group,
            oom_score_adj,
            task,
        }) => {
            // A task group is a write to the tree, as apply's are.
            resolved.check_writes(&global.cgroup_root)?;
            let oom_group = match (oom_group, no_oom_group) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let request = request(
                Mode::Run,
                slice.clone(),
                oom_group,
                *oom_score_adj,
                task,
                &config,
                node,
            )?;
            run_task(cli, &config, &caller, &request, task, signals.as_ref())
        }
        Command::Task(TaskCommand::Protect { task }) => {
            resolved.check_writes(&global.cgroup_root)?;
            let request = request(Mode::Protect, None, None, None, task, &config, node)?;
            run_task(cli, &config, &caller, &request, task, signals.as_ref())
        }
        Command::Heal(heal) => run_heal(cli, &config, heal, signals.as_ref()),
        Command::Events { follow, json } => {
            let root = open_root(cli)?;
            let groups = cgroups(&config);
            let mut watcher = observe::events::Watcher::new(&root, &groups)?;
            if !follow {
                let mut out = String::new();
                for (group, events) in watcher.totals() {
                    if *json {
                        out.push_str(&format!(
                            "{}\n",
                            serde_json::json!({ "group": group, "events": events })
                        ));
                    } else {
                        out.push_str(&format!(
                            "{group}: max {} high {} oom {} oom_kill {} oom_group_kill {}\n",
                            events.max,
                            events.high,
                            events.oom,
                            events.oom_kill,
                            events.oom_group_kill
                        ));
                    }
                }
                print(&out)?;
                return Ok(EXIT_SUCCESS);
            }
            loop {
                let mut out = String::new();
                for event in watcher.wait(None)? {
                    let line = if *json {
                        serde_json::to_string(&event)?
                    } else {
                        event.line()
                    };
                    out.push_str(&line);
                    out.push('\n');
                }
                print(&out)?;
            }
        }
        Command::PamSession | Command::Doctor { .. } => {
            unreachable!("handled before the config is read")
        }
        Command::Exec { slice, command } => {
            let group = placing(&caller, &target, slice, Placing::Exec)?;
            let root = open_root(cli)?;
            Err(footprint::exec(&root, &group, command).into())
        }
        Command::Move { slice, pids } => {
            let group = placing(&caller, &target, slice, Placing::Move)?;
            let root = open_root(cli)?;
            let mut out = String::new();
            let mut failed = 0;
            for (pid, moved) in footprint::move_processes(&root, &group, pids)? {
                // A process picks its own name: no escape reaches the terminal.
                let name = host::process_name(pid)
                    .map_or_else(|| "?".into(), |name| printable(&name).into_owned());
                match moved {
                    Ok(()) => out.push_str(&format!("moved {pid} ({name}) to {group}\n")),
                    Err(err) => {
                        failed += 1;
                        say(&format!("cannot move {pid} ({name}): {err}"));
                    }
                }
            }
            print(&out)?;
            Ok(if failed == 0 {
                EXIT_SUCCESS
            } else {
                EXIT_FAILURE
            })
        }
        Command::Metrics => {
            let root = open_root(cli)?;
            print(&render_metrics(&root, &config, None))?;
            Ok(EXIT_SUCCESS)
        }
        Command::Tasks { action, json } => run_tasks(cli, &config, action.as_ref(), *json),
        Command::Status { json } => {
            let root = open_root(cli)?;
            let text = if *json {
                let status = observe::status(&root, &config).context("cannot read the tree")?;
                format!("{}\n", serde_json::to_string_pretty(&status)?)
            } else {
                let status = observe::summary(&root, &config).context("cannot read the tree")?;
                status.render_text(io::stdout().is_terminal())
            };
            print(&text)?;
            Ok(EXIT_SUCCESS)
        }
    }
}

fn run_doctor(cli: &Cli, asked_driver: Option<DriverSetting>, json: bool) -> Result<ExitCode> {
    let global = &cli.global;
    let facts = doctor::gather(&global.config, &global.cgroup_root, asked_driver);
    let report = doctor::checks(&facts);
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        report.render_text(&format!(
            "memslice doctor: {} on {}",
            global.config.display(),
            global.cgroup_root.display()
        ))
    };
    print(&text)?;
    Ok(if report.status == doctor::Status::Fail {
        EXIT_FAILURE
    } else {
        EXIT_SUCCESS
    })
}

/// The group `exec` or `move` puts processes in; root alone may ask.
fn placing(caller: &Caller, target: &Target<'_>, slice: &str, how: Placing) -> Result<String> {
    if *caller != Caller::Root {
        return Err(FootprintError::NotRoot(match how {
            Placing::Exec => "memslice exec",
            Placing::Move => "memslice move",
        })
        .into());
    }
    Ok(footprint::placement(
        target.config,
        target.driver,
        target.cgroup_root,
        slice,
        how,
    )?)
}

/// `memslice pam-session`: whatever happens, the login goes on (exit 0);
/// a session left outside its slice is said in the system log and on
/// stderr (pam_exec's log file, when it has one). It settles its caller
/// itself: the PAM environment is no evidence. `main` calls it before
/// the command line is parsed (see `cli::is_pam_session`).
pub fn pam_session() -> ExitCode {
    footprint::arm_deadline();
    let request = footprint::PamRequest::from_env(std::env::vars_os());
    let (config, cgroup_root) = (locations::config(), locations::cgroup_root());
    let host = footprint::PamHost {
        config: &config,
        cgroup_root: &cgroup_root,
        parent: nix::unistd::getppid().as_raw().try_into().unwrap_or(0),
        as_root: nix::unistd::getuid().is_root() && nix::unistd::geteuid().is_root(),
    };
    match footprint::pam_session(&request, &host) {
        footprint::PamOutcome::Placed { user, pid, group } => {
            tracing::debug!(user, pid, group, "session placed");
        }
        footprint::PamOutcome::Ignored(why) => tracing::debug!("nothing to place: {why}"),
        footprint::PamOutcome::Unplaced(why) => {
            say(&format!("pam-session: {why}"));
            if let Err(err) = footprint::system_log(&format!("pam-session: {why}")) {
                tracing::debug!("the system log is not there: {err}");
            }
        }
    }
    EXIT_SUCCESS
}

/// What the task's command line asked for, sizes resolved on this node.
fn request(
    mode: Mode,
    slice: Option<String>,
    oom_group: Option<bool>,
    oom_score_adj: Option<i32>,
    task: &TaskArgs,
    config: &Config,
    node: NodeFacts,
) -> Result<Request> {
    let memory_max = match &task.memory_max {
        None => None,
        Some(text) => Some(
            Size::parse(text)
                .with_context(|| format!("--memory-max {text}"))?
                .resolve(config.node_memory, node.page_size),
        ),
    };
    let user = task
        .user
        .as_deref()
        .map(caller::person_by_name)
        .transpose()?;
    Ok(Request {
        mode,
        slice,
        memory_max,
        oom_group,
        oom_score_adj,
        user,
    })
}

fn run_task(
    cli: &Cli,
    config: &Config,
    caller: &Caller,
    request: &Request,
    task: &TaskArgs,
    signals: Option<&Signals>,
) -> Result<ExitCode> {
    let launch = policy::decide(request, config, caller).map_err(SpawnError::from)?;
    let root = open_root(cli)?;
    let signals = signals.context("the supervisor's signals were not blocked")?;
    let spec = TaskSpec {
        launch: &launch,
        command: &task.command,
        name: task.name.as_deref(),
        allow_unprotected: task.allow_unprotected,
        leftovers: match (task.wait, task.kill_leftovers) {
            (true, _) => Leftovers::Wait,
            (_, true) => Leftovers::Kill,
            _ => Leftovers::Keep,
        },
        signals,
        notify: config
            .heal
            .as_ref()
            .and_then(|heal| heal.hook_for(NotifyEvent::Stall))
            .map(|(hook, timeout)| Notify { hook, timeout }),
    };
    let outcome = spawn::run(&root, &config.layout, &spec)?;
    for warning in &outcome.warnings {
        say(&format!("warning: {warning}"));
    }
    if let Some(reason) = &outcome.killed_by {
        say(&format!("{} was killed by {reason}", outcome.group));
    } else if outcome.killed_by_sigkill() && outcome.oom_kills == 0 {
        say(&format!(
            "the command was killed with SIGKILL from outside memslice, and nobody recorded why (echo 1 > {}/cgroup.kill or kill -9 by hand?)",
            outcome.group
        ));
    }
    if outcome.detached {
        say(&format!(
            "the command left processes running in {}: they stay there, capped and protected as it was, and a background memslice removes the group once they end (`memslice tasks` lists them)",
            outcome.group
        ));
    }
    if outcome.oom_kills > 0 {
        let limit = outcome
            .memory_max
            .map_or_else(|| "the slice's".to_string(), |l| l.to_string());
        let peak = outcome
            .peak
            .map_or_else(|| "unknown".to_string(), human_bytes);
        let what = if outcome.oom_killed_command() {
            "the command was killed"
        } else {
            "the command itself survived"
        };
        say(&format!(
            "the kernel OOM-killed {} process(es) in {} (memory.max {limit}, peak {peak}); {what}",
            outcome.oom_kills, outcome.group
        ));
    }
    Ok(outcome.exit_code())
}

fn run_heal(
    cli: &Cli,
    config: &Config,
    command: &HealCommand,
    signals: Option<&Signals>,
) -> Result<ExitCode> {
    let heal_config = config.heal.as_ref().ok_or(HealError::NotConfigured)?;
    let tz = heal_config.timezone.clone();
    match command {
        HealCommand::Watch { metrics_addr } => {
            let signals = signals.context("the watcher's signals were not blocked")?;
            let root = open_root(cli)?;
            let groups = cgroups(config);
            let counts = Arc::new(Mutex::new(DecisionCounts::default()));
            if let Some(addr) = metrics_addr {
                let (root, config, counts) = (root.clone(), config.clone(), Arc::clone(&counts));
                let bound = observe::serve::serve(addr, move || {
                    let decisions = counts.lock().map(|c| *c).ok();
                    render_metrics(&root, &config, decisions)
                })?;
                tracing::info!(%bound, "serving metrics at /metrics");
            }
            heal::watch(&root, heal_config, &tz, &groups, Some(&counts), signals)?;
            Ok(EXIT_SUCCESS)
        }
        HealCommand::Reset => match heal::reset(heal_config)? {
            Some(forgotten) => {
                print(&format!(
                    "flap limiter reset: {forgotten} recorded action(s) forgotten\n"
                ))?;
                Ok(EXIT_SUCCESS)
            }
            None => {
                say(&format!(
                    "another heal run holds {}; try again",
                    heal_config.lock_file.display()
                ));
                Ok(EXIT_FAILURE)
            }
        },
        HealCommand::Check { dry_run, json } => {
            let options = heal::CheckOptions {
                dry_run: *dry_run,
                lock_wait: std::time::Duration::from_secs(5),
            };
            let report = match heal::check(&open_root(cli)?, heal_config, &tz, options, None)? {
                heal::CheckOutcome::Done(report) => report,
                heal::CheckOutcome::Busy => {
                    tracing::error!(
                        decision = heal::decide::Decision::LockBusy.as_str(),
                        "another process holds {} past the wait; this check did nothing",
                        heal_config.lock_file.display()
                    );
                    return Ok(EXIT_SUCCESS);
                }
            };
            let text = if *json {
                format!("{}\n", serde_json::to_string_pretty(&report)?)
            } else {
                render_check(&report)
            };
            print(&text)?;
            let failed = report
                .actions
                .as_ref()
                .is_some_and(|a| !a.failures.is_empty());
            Ok(if failed { EXIT_FAILURE } else { EXIT_SUCCESS })
        }
    }
}

fn run_tasks(
    cli: &Cli,
    config: &Config,
    action: Option<&TasksCommand>,
    json: bool,
) -> Result<ExitCode> {
    let root = open_root(cli)?;
    let slices = cgroups(config);
    match action {
        None => {
            let mut tasks = task::list(&root, &slices).context("cannot read the task groups")?;
            task::name_users(&mut tasks);
            let text = if json {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks }))?
                )
            } else {
                render_tasks(&tasks)
            };
            print(&text)?;
            Ok(EXIT_SUCCESS)
        }
        Some(TasksCommand::Gc) => {
            let removed = task::gc(&root, &slices).context("cannot collect the task groups")?;
            let text: String = removed
                .iter()
                .map(|group| format!("removed {group}\n"))
                .collect();
            print(if text.is_empty() {
                "no task group was left behind\n"
            } else {
                &text
            })?;
            Ok(EXIT_SUCCESS)
        }
        Some(TasksCommand::Kill { name }) => {
            let tasks = task::list(&root, &slices).context("cannot read the task groups")?;
            let found = task::find(&tasks, name);
            let [target] = found.as_slice() else {
                let known: Vec<&str> = found.iter().map(|t| t.group.as_str()).collect();
                anyhow::bail!(
                    "{} task group(s) match {name:?}{}; name one by its group name (see `memslice tasks`)",
                    found.len(),
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", known.join(", "))
                    }
                );
            };
            let reason = format!("memslice tasks kill, by {}", caller_name());
            if task::kill(&root, &target.group, &reason, task::KILL_TIMEOUT)? {
                print(&format!("killed {}\n", target.group))?;
                Ok(EXIT_SUCCESS)
            } else {
                say(&format!(
                    "{} still has processes {}s after cgroup.kill (stuck in the kernel?)",
                    target.group,
                    task::KILL_TIMEOUT.as_secs()
                ));
                Ok(EXIT_FAILURE)
            }
        }
    }
}

/// Who runs this memslice, for the reason a kill records.
fn caller_name() -> String {
    let uid = nix::unistd::Uid::current();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name)
}

fn render_tasks(tasks: &[task::TaskInfo]) -> String {
    if tasks.is_empty() {
        return "no tasks\n".to_string();
    }
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".to_string(), human_bytes);
    let rows: Vec<[String; 8]> = tasks
        .iter()
        .map(|t| {
            [
                t.group.clone(),
                format!("{:?}", t.state).to_lowercase(),
                t.user
                    .clone()
                    .or_else(|| t.uid.map(|uid| format!("uid {uid}")))
                    .unwrap_or_else(|| "-".into()),
                t.started.map_or_else(
                    || "-".into(),
                    |at| at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                ),
                bytes(t.memory_current_bytes),
                bytes(t.memory_peak_bytes),
                t.memory_max.map_or_else(|| "-".into(), |l| l.to_string()),
                t.command.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "GROUP",
        "STATE",
        "USER",
        "STARTED (UTC)",
        "MEMORY",
        "PEAK",
        "MAX",
        "COMMAND",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn render_check(report: &heal::Report) -> String {
    let verdict = &report.verdict;
    let prefix = match (&report.actions, report.dry_run && verdict.act) {
        (Some(_), _) => "acted",
        (None, true) => "would act",
        (None, false) => match verdict.site {
            heal::decide::Site::Up => "up",
            heal::decide::Site::Failing => "failing",
            heal::decide::Site::Down => "down",
        },
    };
    let mut out = format!("{prefix}: {}\n", verdict.reason);
    if let Some(actions) = &report.actions {
        out.push_str(&format!(
            "  killed: {}; restarted: {}\n",
            list(&actions.killed),
            list(&actions.restarted)
        ));
        for failure in &actions.failures {
            out.push_str(&format!("  failed: {failure}\n"));
        }
    }
    out
}

/// The metrics text; a tree that cannot be read becomes a comment, so a
/// scrape still answers and says why.
fn render_metrics(root: &Root, config: &Config, decisions: Option<DecisionCounts>) -> String {
    let heal = config
        .heal
        .as_ref()
        .map(|heal_config| heal::metrics(heal_config, decisions));
    match observe::status(root, config) {
        Ok(status) => observe::metrics::render(&status, heal.as_ref()),
        Err(err) => format!(
            "# memslice cannot read the tree: {}\n",
            err.to_string().replace('\n', " ")
        ),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

/// The cgroups of the managed slices, as the driver lays them out.
fn cgroups(config: &Config) -> Vec<String> {
    config
        .slices
        .iter()
        .map(|s| config.layout.cgroup_of(&s.path))
        .collect()
}

fn open_root(cli: &Cli) -> Result<Root> {
    Ok(host::open_root(&cli.global.cgroup_root)?)
}

fn render_planned(planned: &Planned) -> String {
    match planned {
        Planned::Tree {
            root,
            plan,
            unusable,
        } => {
            let mut out = String::new();
            if let Some(err) = unusable {
                say(&format!("warning: {err}"));
                say(&format!(
                    "warning: planning against an empty tree; `apply` would refuse {}",
                    root.display()
                ));
            }
            out.push_str(&render_plan(plan));
            out
        }
        Planned::Units { dir, changes } => {
            let mut out = String::new();
            if changes.is_empty() {
                out.push_str(&format!(
                    "no changes: the units in {} match the config\n",
                    dir.display()
                ));
            }
            for change in changes {
                out.push_str(&change.render());
            }
            if !changes.is_empty() {
                out.push_str(&format!(
                    "{} file change(s) in {}\n",
                    changes.len(),
                    dir.display()
                ));
            }
            out
        }
    }
}

fn render_applied(applied: &Applied, config_path: &str) -> String {
    match applied {
        Applied::Tree { root, plan, writes } => {
            if *writes == 0 {
                format!(
                    "nothing to do: {} matches {config_path} (0 writes)\n",
                    root.display()
                )
            } else {
                format!(
                    "{}applied {writes} change(s) to {}\n",
                    render_plan(plan),
                    root.display()
                )
            }
        }
        Applied::Units {
            dir,
            changes,
            written,
        } => {
            if *written == 0 {
                return format!(
                    "nothing to do: the units in {} match {config_path} (0 writes)\n",
                    dir.display()
                );
            }
            let mut out: String = changes.iter().map(|c| c.render()).collect();
            out.push_str(&format!(
                "applied {written} file change(s) to {}; systemd reloaded\n",
                dir.display()
            ));
            let moved: Vec<&str> = changes
                .iter()
                .filter_map(|c| c.path().parent())
                .filter_map(|dir| dir.to_str()?.strip_suffix(".d"))
                .filter(|unit| unit.ends_with(".service"))
                .collect();
            if !moved.is_empty() {
                out.push_str(&format!(
                    "restart to move them into their slices: systemctl restart {}\n",
                    moved.join(" ")
                ));
            }
            out
        }
    }
}

fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() {
        out.push_str("no changes: the tree matches the config\n");
    }
    for change in &plan.changes {
        out.push_str(&format!("  {change}\n"));
    }
    for (group, procs) in &plan.unmanaged {
        out.push_str(&format!(
            "  note    {group} is not in the config ({procs} process(es)); left alone\n"
        ));
    }
    for blocker in &plan.blockers {
        out.push_str(&format!("  BLOCKED {blocker}\n"));
    }
    if !plan.changes.is_empty() {
        out.push_str(&format!("{} change(s)\n", plan.changes.len()));
    }
    out
}
