//! The binary's edge: turns subcommands into library calls, prints for
//! people, and maps errors to exit codes in one place.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use memslice::cgroupfs::Root;
use memslice::config::{Config, ConfigError, Driver, NodeFacts, Size, size::human_bytes};
use memslice::heal;
use memslice::host::{self, HostError};
use memslice::observe;
use memslice::observe::metrics::DecisionCounts;
use memslice::plan::{self, Plan};
use memslice::spawn::policy::{self, Mode, Request};
use memslice::spawn::{self, SpawnError, TaskSpec, identity};
use memslice::systemd;

use crate::cli::{Cli, Command, HealCommand, TaskArgs};

const EXIT_CHANGES_PENDING: u8 = 2;

pub fn init_logging(cli: &Cli) {
    // The healer's decisions are its log: heal commands log them by default.
    let quiet = if matches!(cli.command, Command::Heal(_)) {
        "info"
    } else {
        "warn"
    };
    let default = match cli.global.verbose {
        0 => quiet,
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMSLICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
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

pub fn exit_code_for(cli: &Cli, err: &anyhow::Error) -> ExitCode {
    if matches!(cli.command, Command::Run { .. } | Command::Protect { .. }) {
        // Like env(1): the command's own codes stay unambiguous.
        let code = err
            .downcast_ref::<SpawnError>()
            .map_or(125, SpawnError::exit_code);
        return ExitCode::from(code);
    }
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
            return ExitCode::from(2);
        }
        if let Some(HostError::NotCgroup2 { .. } | HostError::NoMemoryController { .. }) =
            cause.downcast_ref::<HostError>()
        {
            return ExitCode::from(3);
        }
    }
    ExitCode::FAILURE
}

pub fn run(cli: &Cli) -> Result<ExitCode> {
    if let Command::TaskExec {
        oom_group,
        uid,
        gid,
        groups,
        command,
    } = &cli.command
    {
        let identity = uid.map(|uid| spawn::scope::Identity {
            uid,
            gid: gid.unwrap_or(uid),
            groups: groups.clone(),
        });
        let err = spawn::scope::task_exec(*oom_group, identity.as_ref(), command);
        eprintln!("memslice: {err}");
        return Ok(ExitCode::from(err.exit_code()));
    }
    let global = &cli.global;
    let node = host::node_facts()?;
    let mut config = Config::load(&global.config, node)?;
    if let Some(driver) = global.driver.as_deref().and_then(Driver::parse) {
        config.driver = driver;
        if let Some(heal) = &mut config.heal {
            heal.driver = driver;
        }
    }
    if config.driver == Driver::Systemd {
        if let Some(code) = run_systemd(cli, &config)? {
            return Ok(code);
        }
    }
    match &cli.command {
        Command::Plan { detailed_exitcode } => {
            let plan = plan_for(cli, &config)?;
            print!("{}", render_plan(&plan));
            let pending = !plan.changes.is_empty();
            Ok(if *detailed_exitcode && pending {
                ExitCode::from(EXIT_CHANGES_PENDING)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Apply => {
            let root = open_root(cli)?;
            let plan = observe_and_diff(&root, &config)?;
            let report = plan::apply(&root, &plan)?;
            if report.writes == 0 {
                println!(
                    "nothing to do: {} matches {} (0 writes)",
                    root.path().display(),
                    global.config.display()
                );
            } else {
                print!("{}", render_plan(&plan));
                println!(
                    "applied {} change(s) to {}",
                    report.writes,
                    root.path().display()
                );
            }
            for (group, procs) in &plan.unmanaged {
                tracing::debug!(group, procs, "left alone: not named in the config");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            slice,
            oom_group,
            no_oom_group,
            oom_score_adj,
            task,
        } => {
            let oom_group = match (oom_group, no_oom_group) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            run_task(
                cli,
                &config,
                node,
                Mode::Run,
                slice.clone(),
                oom_group,
                *oom_score_adj,
                task,
            )
        }
        Command::Protect { task } => {
            run_task(cli, &config, node, Mode::Protect, None, None, None, task)
        }
        Command::Heal(heal) => run_heal(cli, &config, heal),
        Command::Events { follow, json } => {
            let root = open_root(cli)?;
            let groups = cgroups(&config);
            let mut watcher = observe::events::Watcher::new(&root, &groups)?;
            if !follow {
                for (group, events) in watcher.totals() {
                    if *json {
                        println!(
                            "{}",
                            serde_json::json!({ "group": group, "events": events })
                        );
                    } else {
                        println!(
                            "{group}: max {} high {} oom {} oom_kill {} oom_group_kill {}",
                            events.max,
                            events.high,
                            events.oom,
                            events.oom_kill,
                            events.oom_group_kill
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            loop {
                for event in watcher.wait(None)? {
                    let line = if *json {
                        serde_json::to_string(&event)?
                    } else {
                        event.line()
                    };
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
            }
        }
        Command::TaskExec { .. } => unreachable!("task-exec is handled before the config is read"),
        Command::Metrics => {
            let root = open_root(cli)?;
            print!("{}", render_metrics(&root, &config, None));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let root = open_root(cli)?;
            let status = observe::status(&root, &config).context("cannot read the tree")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render_text(std::io::stdout().is_terminal()));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    cli: &Cli,
    config: &Config,
    node: NodeFacts,
    mode: Mode,
    slice: Option<String>,
    oom_group: Option<bool>,
    oom_score_adj: Option<i32>,
    task: &TaskArgs,
) -> Result<ExitCode> {
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
        .map(identity::person_by_name)
        .transpose()?;
    let request = Request {
        mode,
        slice,
        memory_max,
        oom_group,
        oom_score_adj,
        user,
    };
    let caller = identity::caller()?;
    let launch = policy::decide(&request, config, &caller).map_err(SpawnError::from)?;
    let root = open_root(cli)?;
    let spec = TaskSpec {
        launch: &launch,
        command: &task.command,
        name: task.name.as_deref(),
        allow_unprotected: task.allow_unprotected,
    };
    let outcome = match config.driver {
        Driver::Cgroupfs => spawn::run_task(&root, &spec)?,
        Driver::Systemd => {
            let memslice = std::env::current_exe()
                .context("cannot find the memslice binary to run in the scope")?;
            let place = spawn::scope::ScopePlace {
                slice_cgroup: &systemd::cgroup_path(&launch.slice),
                slice_unit: &systemd::slice_unit(&launch.slice),
                memslice: &memslice,
            };
            spawn::scope::run_in_scope(&root, &spec, &place)?
        }
    };
    for warning in &outcome.warnings {
        eprintln!("memslice: warning: {warning}");
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
        eprintln!(
            "memslice: the kernel OOM-killed {} process(es) in {} (memory.max {limit}, peak {peak}); {what}",
            outcome.oom_kills, outcome.group
        );
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

fn run_heal(cli: &Cli, config: &Config, command: &HealCommand) -> Result<ExitCode> {
    let heal_config = config.heal.as_ref().ok_or(heal::HealError::NotConfigured)?;
    let tz = heal_config.timezone.clone();
    match command {
        HealCommand::Watch { metrics_addr } => {
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
            heal::watch(&root, heal_config, &tz, &groups, Some(&counts))?;
            Ok(ExitCode::SUCCESS)
        }
        HealCommand::Reset => match heal::reset(heal_config)? {
            Some(forgotten) => {
                println!("flap limiter reset: {forgotten} recorded action(s) forgotten");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!(
                    "memslice: another heal run holds {}; try again",
                    heal_config.lock_file.display()
                );
                Ok(ExitCode::FAILURE)
            }
        },
        HealCommand::Check { dry_run, json } => {
            let options = heal::CheckOptions {
                dry_run: *dry_run,
                lock_wait: std::time::Duration::from_secs(5),
            };
            let report = match heal::check(&open_root(cli)?, heal_config, &tz, options)? {
                heal::CheckOutcome::Done(report) => report,
                heal::CheckOutcome::Busy => {
                    eprintln!(
                        "memslice: another heal run holds {}; this one did nothing",
                        heal_config.lock_file.display()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
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
                println!("{prefix}: {}", verdict.reason);
                if let Some(actions) = &report.actions {
                    println!(
                        "  killed: {}; restarted: {}",
                        list(&actions.killed),
                        list(&actions.restarted)
                    );
                    for failure in &actions.failures {
                        println!("  failed: {failure}");
                    }
                }
            }
            let failed = report
                .actions
                .as_ref()
                .is_some_and(|a| !a.failures.is_empty());
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
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
        .map(|s| config.driver.cgroup_of(&s.path))
        .collect()
}

/// plan and apply with the systemd driver write unit files, not cgroups;
/// `None` for the commands that work the same with either driver.
fn run_systemd(cli: &Cli, config: &Config) -> Result<Option<ExitCode>> {
    let unit_dir = &cli.global.unit_dir;
    let changes = || -> Result<Vec<systemd::UnitChange>> {
        let desired = systemd::desired_units(config, &cli.global.config);
        let existing = systemd::observe(unit_dir, &desired)?;
        Ok(systemd::diff_units(&desired, &existing)?)
    };
    match &cli.command {
        Command::Plan { detailed_exitcode } => {
            let changes = changes()?;
            if changes.is_empty() {
                println!(
                    "no changes: the units in {} match the config",
                    unit_dir.display()
                );
            }
            for change in &changes {
                print!("{}", change.render());
            }
            if !changes.is_empty() {
                println!("{} file change(s) in {}", changes.len(), unit_dir.display());
            }
            Ok(Some(if *detailed_exitcode && !changes.is_empty() {
                ExitCode::from(EXIT_CHANGES_PENDING)
            } else {
                ExitCode::SUCCESS
            }))
        }
        Command::Apply => {
            let changes = changes()?;
            let slices: Vec<String> = config
                .slices
                .iter()
                .map(|s| systemd::slice_unit(&s.path))
                .collect();
            let written = systemd::apply(unit_dir, &changes, &slices)?;
            if written == 0 {
                println!(
                    "nothing to do: the units in {} match {} (0 writes)",
                    unit_dir.display(),
                    cli.global.config.display()
                );
            } else {
                for change in &changes {
                    print!("{}", change.render());
                }
                println!(
                    "applied {written} file change(s) to {}; systemd reloaded",
                    unit_dir.display()
                );
                let moved: Vec<&str> = changes
                    .iter()
                    .filter_map(|c| c.path().parent())
                    .filter_map(|dir| dir.to_str()?.strip_suffix(".d"))
                    .collect();
                if !moved.is_empty() {
                    println!(
                        "restart to move them into their slices: systemctl restart {}",
                        moved.join(" ")
                    );
                }
            }
            Ok(Some(ExitCode::SUCCESS))
        }
        _ => Ok(None),
    }
}

fn open_root(cli: &Cli) -> Result<Root> {
    let mountinfo = host::read_mountinfo()?;
    Ok(host::open_root(&cli.global.cgroup_root, &mountinfo)?)
}

fn observe_and_diff(root: &Root, config: &Config) -> Result<Plan> {
    let desired = plan::desired(config);
    let observed = plan::observe(root, &desired).context("cannot read the live tree")?;
    Ok(plan::diff(&desired, &observed))
}

/// Plans against the live tree; where the root is not a usable cgroup v2
/// hierarchy, says why and plans against an empty tree, so a config can be
/// reviewed anywhere. `apply` refuses such a root.
fn plan_for(cli: &Cli, config: &Config) -> Result<Plan> {
    match open_root(cli) {
        Ok(root) => observe_and_diff(&root, config),
        Err(err) => match err.downcast_ref::<HostError>() {
            Some(HostError::NotCgroup2 { .. } | HostError::NoMemoryController { .. }) => {
                eprintln!("memslice: warning: {}", render_error(&err));
                eprintln!(
                    "memslice: warning: planning against an empty tree; `apply` would refuse {}",
                    cli.global.cgroup_root.display()
                );
                Ok(plan::diff(&plan::desired(config), &Default::default()))
            }
            _ => Err(err),
        },
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
