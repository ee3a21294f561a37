//! A task's start, read without clap: `memslice [GLOBAL…] run|protect
//! [OPTION…] -- COMMAND…` in its plain forms. A task's start is the one
//! command paid for at every start, and clap built and walked its whole
//! definition there: 30% of the instructions of `run -- /bin/true` and a
//! third of the code it ran (callgrind), which under emulation is
//! translated anew at every start.
//!
//! It takes only what it reads exactly as `Cli` does and gives up on
//! anything else (`None`): help and version, an option it does not know,
//! one given twice, a value that starts with `-` (but `--oom-score-adj`'s
//! number) or is empty, a value it would have to check beyond that,
//! options that conflict or override each other, and any MEMSLICE_*
//! variable clap would read. `Cli` then parses the line as always, errors
//! and help included. The tests hold both parsers to the same result
//! over generated lines.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use memslice::locations;

use super::{Cli, Command, Global, PRIVILEGED_OPTIONS, TaskArgs, TaskCommand};

/// The variables `Global` reads (clap's `env`): with one of them set, clap
/// decides.
pub const GLOBAL_VARIABLES: [&str; 3] =
    ["MEMSLICE_CONFIG", "MEMSLICE_CGROUP_ROOT", "MEMSLICE_DRIVER"];

/// A long option a task's start may carry, by its name on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Config,
    CgroupRoot,
    Driver,
    UnitDir,
    Verbose,
    Slice,
    OomGroup,
    NoOomGroup,
    OomScoreAdj,
    MemoryMax,
    Name,
    User,
    AllowUnprotected,
    Wait,
    KillLeftovers,
}

impl Known {
    const GLOBAL: [(&'static str, Known); 5] = [
        ("config", Known::Config),
        ("cgroup-root", Known::CgroupRoot),
        ("driver", Known::Driver),
        ("unit-dir", Known::UnitDir),
        ("verbose", Known::Verbose),
    ];
    const TASK: [(&'static str, Known); 6] = [
        ("memory-max", Known::MemoryMax),
        ("name", Known::Name),
        ("user", Known::User),
        ("allow-unprotected", Known::AllowUnprotected),
        ("wait", Known::Wait),
        ("kill-leftovers", Known::KillLeftovers),
    ];
    const RUN_ONLY: [(&'static str, Known); 4] = [
        ("slice", Known::Slice),
        ("oom-group", Known::OomGroup),
        ("no-oom-group", Known::NoOomGroup),
        ("oom-score-adj", Known::OomScoreAdj),
    ];

    /// The option `name` (without `--`) where it stands: globals anywhere,
    /// the task's own after its subcommand.
    fn find(name: &str, subcommand: Option<Subcommand>) -> Option<Known> {
        let task: &[(&str, Known)] = if subcommand.is_some() {
            &Self::TASK
        } else {
            &[]
        };
        let run: &[(&str, Known)] = if subcommand == Some(Subcommand::Run) {
            &Self::RUN_ONLY
        } else {
            &[]
        };
        Self::GLOBAL
            .iter()
            .chain(task)
            .chain(run)
            .find(|(known, _)| *known == name)
            .map(|(_, option)| *option)
    }

    fn takes_value(self) -> bool {
        !matches!(
            self,
            Known::Verbose
                | Known::OomGroup
                | Known::NoOomGroup
                | Known::AllowUnprotected
                | Known::Wait
                | Known::KillLeftovers
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subcommand {
    Run,
    Protect,
}

/// What the line set, each at most once.
#[derive(Default)]
struct Given {
    values: Vec<(Known, OsString)>,
    flags: Vec<Known>,
    verbose: Option<u8>,
}

impl Given {
    fn has(&self, option: Known) -> bool {
        self.flags.contains(&option) || self.values.iter().any(|(known, _)| *known == option)
    }

    fn value(&self, option: Known) -> Option<&OsStr> {
        self.values
            .iter()
            .find(|(known, _)| *known == option)
            .map(|(_, value)| value.as_os_str())
    }

    /// A value clap keeps as a `String`.
    fn text(&self, option: Known) -> Result<Option<String>, ()> {
        self.value(option)
            .map(|value| value.to_str().map(str::to_owned).ok_or(()))
            .transpose()
    }
}

/// `args` (the program's name first) as `Cli` would parse them, with the
/// privileged options the caller set; `None` for anything but a plain
/// task's start. `variable_set` says whether an environment variable is set.
pub fn parse(
    args: &[OsString],
    variable_set: impl Fn(&str) -> bool,
) -> Option<(Cli, Vec<&'static str>)> {
    if GLOBAL_VARIABLES.iter().any(|name| variable_set(name)) {
        return None;
    }
    let mut subcommand = None;
    let mut given = Given::default();
    let mut tokens = args.iter().skip(1);
    let command: Vec<OsString> = loop {
        let token = tokens.next()?;
        let text = token.to_str()?;
        if text == "--" {
            subcommand?;
            break tokens.cloned().collect();
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let option = Known::find(name, subcommand)?;
            if given.has(option) || (option == Known::Verbose && given.verbose.is_some()) {
                return None;
            }
            if option == Known::Verbose {
                inline.is_none().then_some(())?;
                given.verbose = Some(1);
            } else if option.takes_value() {
                let value = match inline {
                    Some(value) => OsString::from(value),
                    None => tokens.next()?.clone(),
                };
                plain_value(option, &value)?;
                given.values.push((option, value));
            } else {
                inline.is_none().then_some(())?;
                given.flags.push(option);
            }
        } else if let Some(shorts) = text.strip_prefix('-') {
            let count = u8::try_from(shorts.len()).ok()?;
            let only_v = !shorts.is_empty() && shorts.bytes().all(|short| short == b'v');
            if !only_v || given.verbose.is_some() {
                return None;
            }
            given.verbose = Some(count);
        } else if subcommand.is_none() {
            subcommand = Some(match text {
                "run" => Subcommand::Run,
                "protect" => Subcommand::Protect,
                _ => return None,
            });
        } else {
            return None;
        }
    };
    if command.is_empty()
        || (given.has(Known::Wait) && given.has(Known::KillLeftovers))
        || (given.has(Known::OomGroup) && given.has(Known::NoOomGroup))
    {
        return None;
    }
    let cli = build(subcommand?, &given, command).ok()?;
    let mut privileged = Vec::new();
    for (id, option) in PRIVILEGED_OPTIONS {
        if privileged_given(&given, id)? {
            privileged.push(option);
        }
    }
    Some((cli, privileged))
}

/// A value read as given: not empty, not option-like (but a number for
/// `--oom-score-adj`, which takes `-500`), a number where one is expected.
fn plain_value(option: Known, value: &OsStr) -> Option<()> {
    let bytes = value.as_encoded_bytes();
    if option == Known::OomScoreAdj {
        let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
        let number =
            !digits.is_empty() && digits.len() <= 4 && digits.iter().all(u8::is_ascii_digit);
        return number.then_some(());
    }
    (!bytes.is_empty() && !bytes.starts_with(b"-")).then_some(())
}

/// Whether the line set the privileged option clap knows as `id`; `None`
/// for an id this does not know, so that a privileged option added to
/// `Cli` alone leaves every line to clap rather than slipping through.
fn privileged_given(given: &Given, id: &str) -> Option<bool> {
    Some(match id {
        "config" => given.has(Known::Config),
        "cgroup_root" => given.has(Known::CgroupRoot),
        "driver" => given.has(Known::Driver),
        "unit_dir" => given.has(Known::UnitDir),
        "verbose" => given.verbose.is_some(),
        "user" => given.has(Known::User),
        _ => return None,
    })
}

fn build(subcommand: Subcommand, given: &Given, command: Vec<OsString>) -> Result<Cli, ()> {
    let path =
        |option, default: fn() -> PathBuf| given.value(option).map_or_else(default, PathBuf::from);
    let global = Global {
        config: path(Known::Config, locations::config),
        cgroup_root: path(Known::CgroupRoot, locations::cgroup_root),
        driver: given.value(Known::Driver).map(OsStr::to_owned),
        unit_dir: path(Known::UnitDir, locations::unit_dir),
        verbose: given.verbose.unwrap_or(0),
    };
    let task = TaskArgs {
        memory_max: given.text(Known::MemoryMax)?,
        name: given.text(Known::Name)?,
        user: given.text(Known::User)?,
        allow_unprotected: given.has(Known::AllowUnprotected),
        wait: given.has(Known::Wait),
        kill_leftovers: given.has(Known::KillLeftovers),
        command,
    };
    let task_command = match subcommand {
        Subcommand::Protect => TaskCommand::Protect { task },
        Subcommand::Run => TaskCommand::Run {
            slice: given.text(Known::Slice)?,
            oom_group: given.has(Known::OomGroup),
            no_oom_group: given.has(Known::NoOomGroup),
            oom_score_adj: given
                .text(Known::OomScoreAdj)?
                .map(|text| text.parse::<i32>().map_err(drop))
                .transpose()?,
            task,
        },
    };
    Ok(Cli {
        global,
        command: Command::Task(task_command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse as clap_parse, set_by_caller};
    use clap::CommandFactory;
    use proptest::prelude::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    fn no_variables(_: &str) -> bool {
        false
    }

    /// The parsed line and its privileged options, as text.
    fn shown((cli, privileged): &(Cli, Vec<&'static str>)) -> String {
        format!("{cli:?} {privileged:?}")
    }

    /// What clap makes of `args`, in the same form; `None` for its errors.
    fn by_clap(args: &[OsString]) -> Option<String> {
        for name in GLOBAL_VARIABLES {
            assert!(
                std::env::var_os(name).is_none(),
                "unset {name} to run these tests: clap would read it"
            );
        }
        let (cli, matches) = clap_parse::<Cli>(args).ok()?;
        let privileged = set_by_caller(&matches);
        Some(shown(&(cli, privileged)))
    }

    #[test]
    fn reads_a_task_start_as_clap_does() {
        let lines = [
            "memslice run -- /bin/true",
            "memslice protect -- sh -c run",
            "memslice --config /etc/x.toml run --slice app/tasks --memory-max 1G -- a b",
            "memslice run --cgroup-root /sys/fs/cgroup/x --driver cgroupfs -vv --oom-group -- a",
            "memslice -v protect --name import --wait --user app -- php artisan import",
            "memslice run --oom-score-adj -500 --no-oom-group --kill-leftovers -- protect",
            "memslice protect --unit-dir /run/u --allow-unprotected -- run",
            "memslice --config=run run -- a",
            "memslice --config protect run -- a",
            "memslice run --oom-score-adj=-1000 --slice=app/x --verbose -- a -- --help",
            "memslice protect --memory-max=25% --name==x -vvv -- a",
        ];
        for line in lines {
            let lean = parse(&args(line), no_variables).expect("task_line takes it");
            assert_eq!(Some(shown(&lean)), by_clap(&args(line)), "{line}");
        }
        let mut raw = args("memslice --config x run -- a");
        raw[2] = std::os::unix::ffi::OsStringExt::from_vec(b"/etc/\xff.toml".to_vec());
        let lean = parse(&raw, no_variables).expect("a path need not be UTF-8");
        assert_eq!(Some(shown(&lean)), by_clap(&raw));
    }

    #[test]
    fn gives_up_on_everything_else() {
        let lines = [
            "memslice status",
            "memslice --config run status",
            "memslice tasks kill run",
            "memslice help run",
            "memslice run --help",
            "memslice run --version",
            "memslice -V run -- a",
            "memslice --config run -- a",
            "memslice run --no-such-option -- a",
            "memslice run",
            "memslice run --",
            "memslice run a",
            "memslice protect --slice app -- a",
            "memslice run --slice a --slice b -- a",
            "memslice -v run -v -- a",
            "memslice run --wait --kill-leftovers -- a",
            "memslice run --oom-group --no-oom-group -- a",
            "memslice run --wait=1 -- a",
            "memslice run --name -x -- a",
            "memslice run --name= -- a",
            "memslice run --oom-score-adj 12x -- a",
            "memslice run --oom-score-adj --wait -- a",
            "memslice run -vx -- a",
            "memslice run --memory-max",
        ];
        for line in lines {
            assert!(parse(&args(line), no_variables).is_none(), "{line}");
        }
        let mut raw = args("memslice run --name x -- a");
        raw[3] = std::os::unix::ffi::OsStringExt::from_vec(vec![0xff]);
        assert!(parse(&raw, no_variables).is_none(), "a name is text");
    }

    #[test]
    fn a_variable_clap_reads_leaves_the_line_to_clap() {
        for name in GLOBAL_VARIABLES {
            let set = |variable: &str| variable == name;
            assert!(parse(&args("memslice run -- a"), set).is_none(), "{name}");
        }
        // Every variable clap reads on a task's line is one this leaves to it.
        let cli = Cli::command();
        let task_options = ["run", "protect"]
            .into_iter()
            .filter_map(|name| cli.find_subcommand(name))
            .flat_map(clap::Command::get_arguments);
        let declared: Vec<String> = cli
            .get_arguments()
            .chain(task_options)
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(declared, GLOBAL_VARIABLES, "the variables clap reads");
    }

    /// Every option clap gives `run` and `protect` is one this reads, with
    /// a value where clap takes one: a new option cannot slip by as a flag.
    #[test]
    fn knows_every_option_of_a_tasks_start() {
        let mut cli = Cli::command();
        cli.build();
        let help_or_version = |arg: &clap::Arg| {
            matches!(
                arg.get_action(),
                clap::ArgAction::Help | clap::ArgAction::Version
            )
        };
        for (name, subcommand) in [("run", Subcommand::Run), ("protect", Subcommand::Protect)] {
            let definition = cli.find_subcommand(name).expect("defined");
            let options = cli.get_arguments().chain(definition.get_arguments());
            for arg in options.filter(|arg| !arg.is_positional() && !help_or_version(arg)) {
                let long = arg.get_long().expect("every option has a long name");
                let known = Known::find(long, Some(subcommand))
                    .unwrap_or_else(|| panic!("{name} --{long} is unknown to task_line"));
                let takes_value = arg.get_num_args().is_some_and(|count| count.takes_values());
                assert_eq!(known.takes_value(), takes_value, "{name} --{long}");
            }
        }
    }

    /// What generated lines are made of: every option in its forms, with
    /// values good and bad, and what clap treats apart. Mostly good ones,
    /// so that a fair share of the lines are a task's start this reads.
    const GOOD: [&[&str]; 30] = [
        &["--config", "c"],
        &["--config=c"],
        &["--config", "run"],
        &["--cgroup-root", "/r"],
        &["--cgroup-root=/r"],
        &["--driver", "systemd"],
        &["--driver=x"],
        &["--unit-dir", "/u"],
        &["--unit-dir=/u"],
        &["-v"],
        &["-vv"],
        &["--verbose"],
        &["--slice", "app/tasks"],
        &["--slice=a"],
        &["--memory-max", "1G"],
        &["--memory-max=25%"],
        &["--name", "n"],
        &["--user", "app"],
        &["--user=app"],
        &["--allow-unprotected"],
        &["--wait"],
        &["--kill-leftovers"],
        &["--oom-group"],
        &["--no-oom-group"],
        &["--oom-score-adj", "-500"],
        &["--oom-score-adj=-1000"],
        &["--oom-score-adj", "9999"],
        &["--oom-score-adj=0042"],
        &["--name==x"],
        &["--name", "run"],
    ];
    const BAD: [&[&str]; 20] = [
        &["--oom-score-adj", "12x"],
        &["--oom-score-adj=+5"],
        &["--oom-score-adj", "99999999999"],
        &["--name", ""],
        &["--name", "-x"],
        &["--name=-x"],
        &["--name", "--"],
        &["--name="],
        &["--wait=1"],
        &["-x"],
        &["-"],
        &["--"],
        &["--help"],
        &["-V"],
        &["help"],
        &["a"],
        &["--nope"],
        &["run"],
        &["--memory-max"],
        &["--verbose=2"],
    ];
    const SUBCOMMANDS: [&[&str]; 2] = [&["run"], &["protect"]];
    const OTHER_SUBCOMMANDS: [&[&str]; 3] = [&["status"], &["help"], &[]];
    const ENDINGS: [&[&str]; 2] = [&["--", "a"], &["--", "--help", "b"]];
    const OTHER_ENDINGS: [&[&str]; 2] = [&["--"], &[]];

    fn pick(
        usual: &'static [&'static [&'static str]],
        other: &'static [&'static [&'static str]],
    ) -> impl Strategy<Value = &'static [&'static str]> {
        prop_oneof![
            6 => proptest::sample::select(usual),
            1 => proptest::sample::select(other),
        ]
    }

    fn items(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<&'static [&'static str]>> {
        proptest::collection::vec(pick(&GOOD, &BAD), count)
    }

    /// The option a good item gives, by its long name (`-vv` is verbose).
    fn option_of(item: &[&str]) -> &'static str {
        let first = item[0];
        let name = first.strip_prefix("--").map_or("verbose", |long| {
            long.split_once('=').map_or(long, |(name, _)| name)
        });
        [
            "config",
            "cgroup-root",
            "driver",
            "unit-dir",
            "verbose",
            "slice",
            "memory-max",
            "name",
            "user",
            "allow-unprotected",
            "wait",
            "kill-leftovers",
            "oom-group",
            "no-oom-group",
            "oom-score-adj",
        ]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or_else(|| panic!("{first} is no option"))
    }

    /// Whether a line of these parts is a plain task's start, which this
    /// must read: good items only, globals alone before the subcommand,
    /// run's own options with run only, none twice, none conflicting.
    fn plain(before: &[&[&str]], subcommand: &[&str], after: &[&[&str]], ending: &[&str]) -> bool {
        let good = |items: &[&[&str]]| items.iter().all(|item| GOOD.contains(item));
        if !SUBCOMMANDS.contains(&subcommand)
            || !ENDINGS.contains(&ending)
            || !good(before)
            || !good(after)
        {
            return false;
        }
        let globals = ["config", "cgroup-root", "driver", "unit-dir", "verbose"];
        let run_only = ["slice", "oom-group", "no-oom-group", "oom-score-adj"];
        let options: Vec<&str> = before
            .iter()
            .chain(after)
            .map(|item| option_of(item))
            .collect();
        let distinct = options
            .iter()
            .all(|option| options.iter().filter(|o| *o == option).count() == 1);
        let has = |option: &str| options.contains(&option);
        distinct
            && before.iter().all(|item| globals.contains(&option_of(item)))
            && (subcommand == ["run"] || !options.iter().any(|option| run_only.contains(option)))
            && !(has("wait") && has("kill-leftovers"))
            && !(has("oom-group") && has("no-oom-group"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]
        #[test]
        fn agrees_with_clap_wherever_it_reads_a_line(
            before in items(0..3),
            subcommand in pick(&SUBCOMMANDS, &OTHER_SUBCOMMANDS),
            after in items(0..5),
            ending in pick(&ENDINGS, &OTHER_ENDINGS),
        ) {
            let line: Vec<OsString> = std::iter::once(&["memslice"][..])
                .chain(before.iter().copied())
                .chain([subcommand])
                .chain(after.iter().copied())
                .chain([ending])
                .flatten()
                .map(OsString::from)
                .collect();
            match parse(&line, no_variables) {
                Some(lean) => prop_assert_eq!(Some(shown(&lean)), by_clap(&line), "{:?}", line),
                None => prop_assert!(
                    !plain(&before, subcommand, &after, ending),
                    "a plain task's start left to clap: {:?}",
                    line
                ),
            }
        }
    }
}
