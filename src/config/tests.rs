//! Every validation rule, with the message an operator gets.

use std::path::Path;

use super::*;
use heal::NotifyEvent;
use jiff::tz::TimeZone;

const NODE: NodeFacts = NodeFacts {
    memory: 16 << 30,
    page_size: 4096,
};

fn problems(text: &str) -> Vec<Located> {
    match Config::parse(Path::new("slices.toml"), text, NODE) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("unexpected {other}"),
    }
}

/// Asserts exactly one problem, at `line`, on `key`, saying `fragment`.
fn only_problem(text: &str, line: usize, key: &str, fragment: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let problem = &found[0];
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (line, key),
        "{problem:#?}"
    );
    assert!(
        problem.message.contains(fragment),
        "{:?} lacks {fragment:?}",
        problem.message
    );
}

fn valid(text: &str) -> Config {
    Config::parse(Path::new("slices.toml"), text, NODE).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn the_shipped_example_is_valid() {
    let config = valid(include_str!("../../slices.toml"));
    let paths: Vec<&str> = config.slices.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["ops", "app", "app/web", "app/db", "app/cron", "app/tasks"]
    );
    let app = config.slice("app").expect("app");
    assert_eq!(app.memory.max, Some(Limit::Bytes(13_743_894_528)));
    assert_eq!(app.controllers, [Controller::Memory, Controller::Pids]);
    assert_eq!(
        config.root_controllers,
        [Controller::Memory, Controller::Pids]
    );
    let protect = config.protect.expect("protect policy");
    assert_eq!(
        (
            protect.slice.as_str(),
            protect.max_tasks,
            protect.oom_score_adj
        ),
        ("app/tasks", 2, -1000)
    );
}

#[test]
fn node_memory_overrides_the_host() {
    let config = valid("[node]\nmemory = \"1G\"\n[slice.app]\nmemory_max = \"50%\"\n");
    assert_eq!(config.node_memory, 1 << 30);
    assert_eq!(config.slices[0].memory.max, Some(Limit::Bytes(512 << 20)));
}

#[test]
fn a_slice_with_children_enables_memory_by_default() {
    let config = valid("[slice.app.web]\nmemory_max = \"1G\"\n");
    assert_eq!(config.slices[0].controllers, [Controller::Memory]);
    assert!(config.slices[1].controllers.is_empty());
}

#[test]
fn syntax_errors_name_the_line() {
    let found = problems("[slice.ops]\nmemory_min = \"1G\n");
    assert_eq!(found[0].line, 2);
    assert!(
        found[0].message.starts_with("not valid TOML"),
        "{}",
        found[0].message
    );
}

#[test]
fn duplicate_slices_are_refused() {
    let found = problems("[slice.web]\n[slice.db]\n[slice.web]\n");
    assert_eq!(found[0].line, 3, "{found:#?}");
    assert!(
        found[0].message.contains("duplicate") || found[0].message.contains("defined"),
        "{}",
        found[0].message
    );
}

#[test]
fn unknown_keys_list_what_is_allowed() {
    only_problem(
        "[slices.ops]\n",
        1,
        "slices",
        "allowed here: node, slice, protect",
    );
    only_problem(
        "[node]\nram = \"1G\"\n[slice.a]\n",
        2,
        "node.ram",
        "allowed here: memory",
    );
    only_problem(
        "[slice.app]\nmemory_mx = \"1G\"\n",
        2,
        "slice.app.memory_mx",
        "allowed here: description, memory_min, memory_low, memory_high, memory_max, memory_swap_max, oom_group, controllers, services, oom_policy, oom_score_adj, users; a child slice is a table, written [slice.app.memory_mx]",
    );
    only_problem(
        "[slice.t]\n[protect]\nslice = \"t\"\nmemory_max = \"1G\"\nmax_tasks = 1\nusers = [\"app\"]\nuser = \"x\"\n",
        7,
        "protect.user",
        "allowed here: slice, memory_max",
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    only_problem(
        "[slice.app]\noom_group = \"yes\"\n",
        2,
        "slice.app.oom_group",
        "expected true or false, found string",
    );
    only_problem(
        "[slice.app]\nmemory_max = true\n",
        2,
        "slice.app.memory_max",
        "expected a size such as",
    );
    only_problem(
        "[slice.app]\ncontrollers = \"memory\"\n",
        2,
        "slice.app.controllers",
        "expected a list of strings",
    );
    only_problem("slice = 3\n", 1, "slice", "expected a table, found integer");
    only_problem(
        "[slice.app]\nmemory_max = {}\n",
        2,
        "slice.app.memory_max",
        "expected a value, not a table",
    );
}

#[test]
fn bad_sizes_say_which_forms_work() {
    only_problem(
        "[slice.app]\nmemory_max = \"2GB\"\n",
        2,
        "slice.app.memory_max",
        "\"2GB\" is not a size",
    );
    only_problem(
        "[slice.app]\nmemory_high = \"120%\"\n",
        2,
        "slice.app.memory_high",
        "percentage above 100",
    );
    only_problem(
        "[slice.app]\nmemory_low = -5\n",
        2,
        "slice.app.memory_low",
        "-5 is not a byte count",
    );
    only_problem(
        "[node]\nmemory = \"50%\"\n[slice.a]\n",
        2,
        "node.memory",
        "\"auto\" (read MemTotal) or an absolute size",
    );
}

#[test]
fn names_must_be_usable_cgroup_directories() {
    only_problem(
        "[slice.\"memory.max\"]\n",
        1,
        "slice.memory.max",
        "not a usable cgroup directory name",
    );
    only_problem(
        "[slice.app.\"-web\"]\n",
        1,
        "slice.app.-web",
        "not starting with '-'",
    );
    only_problem("[slice.\"a b\"]\n", 1, "slice.a b", "1 to 64 characters");
    let long = "x".repeat(65);
    only_problem(
        &format!("[slice.{long}]\n"),
        1,
        &format!("slice.{long}"),
        "1 to 64",
    );
}

#[test]
fn a_slice_needs_limits_that_agree() {
    only_problem(
        "[slice.app]\nmemory_max = \"1G\"\nmemory_high = \"2G\"\n",
        3,
        "slice.app.memory_high",
        "2G is above this slice's memory_max (1G)",
    );
    only_problem(
        "[slice.app]\nmemory_min = \"3G\"\nmemory_max = \"2G\"\n",
        2,
        "slice.app.memory_min",
        "at most memory_max",
    );
}

#[test]
fn a_child_cannot_be_protected_beyond_its_parent() {
    only_problem(
        "[slice.app]\nmemory_min = \"1G\"\n[slice.app.db]\nmemory_min = \"2G\"\n",
        4,
        "slice.app.db.memory_min",
        "2G exceeds the parent slice app's memory_min (1G)",
    );
    only_problem(
        "[slice.app.db]\nmemory_low = \"1G\"\n",
        2,
        "slice.app.db.memory_low",
        "(unset, so 0); the kernel caps a child's protection at its parent's",
    );
}

#[test]
fn children_cannot_reserve_more_than_the_parent_or_the_node() {
    only_problem(
        "[slice.app]\nmemory_low = \"2G\"\n[slice.app.web]\nmemory_low = \"1536M\"\n[slice.app.db]\nmemory_low = \"1G\"\n",
        5,
        "slice.app.db.memory_low",
        "reserve 2.5G in memory_low together, more than app's memory_low (2G)",
    );
    only_problem(
        "[slice.ops]\nmemory_min = \"10G\"\n[slice.db]\nmemory_min = \"8G\"\n",
        3,
        "slice.db.memory_min",
        "more than the node's RAM (16G)",
    );
}

#[test]
fn controllers_follow_the_kernel_rules() {
    only_problem(
        "[slice.app]\ncontrollers = [\"memory\", \"gpu\"]\n",
        2,
        "slice.app.controllers",
        "unknown controller \"gpu\"; known: cpu, cpuset",
    );
    only_problem(
        "[slice.app]\ncontrollers = [\"pids\", \"pids\"]\n",
        2,
        "slice.app.controllers",
        "\"pids\" is listed twice",
    );
    only_problem(
        "[slice.app]\ncontrollers = [\"pids\"]\n[slice.app.web]\n",
        2,
        "slice.app.controllers",
        "must enable \"memory\"",
    );
    only_problem(
        "[slice.app]\n[slice.app.web]\ncontrollers = [\"memory\", \"io\"]\n[slice.app.web.php]\n",
        3,
        "slice.app.web.controllers",
        "io is not enabled by the parent slice app",
    );
}

#[test]
fn a_protect_policy_must_bound_what_it_protects() {
    let found = problems("[slice.tasks]\n[protect]\nslice = \"tasks\"\n");
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["protect.memory_max", "protect.max_tasks"],
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .all(|p| p.line == 2 && p.message.starts_with("required:"))
    );
    only_problem(
        "[slice.t]\n[protect]\nmemory_max = \"1G\"\nmax_tasks = 1\n",
        2,
        "protect.slice",
        "required",
    );
}

#[test]
fn a_protect_policy_must_fit_its_slice() {
    let base = "[slice.app]\nmemory_max = \"4G\"\n[slice.app.tasks]\n[protect]\n";
    only_problem(
        &format!("{base}slice = \"app/jobs\"\nmemory_max = \"1G\"\nmax_tasks = 1\n"),
        5,
        "protect.slice",
        "not a slice of this file; known: app, app/tasks",
    );
    only_problem(
        &format!("{base}slice = \"app/tasks\"\nmemory_max = \"8G\"\nmax_tasks = 1\n"),
        6,
        "protect.memory_max",
        "8G is above the memory_max of slice app/tasks and its parents (4G)",
    );
    only_problem(
        &format!("{base}slice = \"app/tasks\"\nmemory_max = \"max\"\nmax_tasks = 1\n"),
        6,
        "protect.memory_max",
        "not \"max\"",
    );
    only_problem(
        &format!("{base}slice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 0\n"),
        7,
        "protect.max_tasks",
        "from 1 up",
    );
    only_problem(
        &format!(
            "{base}slice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\noom_score_adj = -1001\n"
        ),
        8,
        "protect.oom_score_adj",
        "outside the kernel's range -1000 to 1000",
    );
    only_problem(
        &format!(
            "{base}slice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\nusers = [\"\"]\n"
        ),
        8,
        "protect.users",
        "matches nobody",
    );
}

#[test]
fn an_empty_file_defines_nothing() {
    only_problem("", 1, "slice", "no slices are defined");
}

#[test]
fn every_problem_is_reported_in_file_order_with_the_path() {
    let text = "[slice.app]\nmemory_max = \"lots\"\n[slice.\"bad.name\"]\nmemory_low = \"1Q\"\n";
    let err =
        Config::parse(Path::new("/etc/memslice/slices.toml"), text, NODE).expect_err("invalid");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "/etc/memslice/slices.toml is not valid (3 problems); nothing was changed"
        ),
        "{message}"
    );
    let lines: Vec<&str> = message.lines().skip(1).collect();
    assert!(
        lines[0].starts_with("  /etc/memslice/slices.toml:2:14: slice.app.memory_max:"),
        "{message}"
    );
    assert!(
        lines[1].starts_with("  /etc/memslice/slices.toml:3:8: slice.bad.name:"),
        "{message}"
    );
    assert!(
        lines[2].starts_with("  /etc/memslice/slices.toml:4:14: slice.bad.name.memory_low:"),
        "{message}"
    );
}

const HEAL_BASE: &str = "[slice.app]\n[slice.app.web]\n[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\n";

#[test]
fn a_heal_section_is_read_with_its_defaults() {
    let text = format!(
        "{HEAL_BASE}[heal]\nnight = \"22:00-07:00\"\ntimezone = \"Europe/Amsterdam\"\n[[heal.service]]\nname = \"web\"\nhttp = \"http://127.0.0.1/health\"\nrestart_unit = \"nginx.service\"\n[[heal.service]]\nname = \"db\"\ntcp = \"127.0.0.1:3306\"\ntimeout = \"2s\"\n"
    );
    let heal = valid(&text).heal.expect("heal");
    assert_eq!(
        heal.protected,
        ["app/tasks"],
        "defaults to the protect slice"
    );
    assert_eq!(
        (
            heal.grace_day.as_secs(),
            heal.grace_night.as_secs(),
            heal.failures_before_down
        ),
        (180, 900, 2)
    );
    assert_eq!(heal.timezone.iana_name(), Some("Europe/Amsterdam"));
    assert_eq!(
        heal.state_file,
        std::path::PathBuf::from("/var/lib/memslice/heal.state")
    );
    assert_eq!(heal.services.len(), 2);
    assert_eq!(
        heal.services[0].restart,
        Some(heal::Restart::Unit("nginx.service".into()))
    );
    assert_eq!(
        heal.services[1].probe,
        heal::Probe::Tcp {
            address: "127.0.0.1:3306".into()
        }
    );
    assert_eq!(heal.services[1].timeout.as_secs(), 2);
}

#[test]
fn heal_mistakes_are_named() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    let cases: [(String, usize, &str, &str); 13] = [
        (format!("[heal]\ngrace = \"3m\"\n{service}"), 9, "heal.grace", "allowed here: state_file, lock_file"),
        (format!("[heal]\ngrace_day = \"3 minutes\"\n{service}"), 9, "heal.grace_day", "expected a duration such as \"90s\""),
        (format!("[heal]\nnight = \"22-7\"\n{service}"), 9, "heal.night", "expected local times like \"22:00-07:00\""),
        (format!("[heal]\nfailures_before_down = 0\n{service}"), 9, "heal.failures_before_down", "from 1 up"),
        (
            format!("[slice.app.jobs]\n[slice.app.jobs.nightly]\n[heal]\nprotected = [\"app/jobs\"]\n{service}"),
            11,
            "heal.protected",
            "app/jobs holds the slices app/jobs/nightly, which a kill would take down too",
        ),
        (format!("[heal]\nprotected = [\"ops\"]\n{service}"), 9, "heal.protected", "\"ops\" is not a slice of this file"),
        (format!("[slice.ops]\n[heal]\nprotected = [\"ops\"]\n{service}"), 10, "heal.protected", "ops is a top-level slice"),
        (format!("[heal]\nprotected = [\"app\"]\n{service}"), 9, "heal.protected", "app is a top-level slice"),
        ("[heal]\n[[heal.service]]\nname = \"web\"\nhttp = \"https://shop.example/\"\n".into(), 11, "heal.service.http", "only http:// URLs are probed"),
        ("[heal]\n[[heal.service]]\nname = \"web\"\ntcp = \"127.0.0.1\"\n".into(), 11, "heal.service.tcp", "needs a port"),
        ("[heal]\n[[heal.service]]\nname = \"web\"\ntcp = \"a:1\"\nport = 80\n".into(), 12, "heal.service.port", "allowed here: name, http"),
        ("[heal]\n[[heal.service]]\nname = \"web\"\ntcp = \"a:1\"\nunit = \"x\"\n".into(), 10, "heal.service", "needs exactly one probe of: http, tcp, command, unit (it has 2)"),
        (
            "[heal]\n[[heal.service]]\nname = \"web\"\ntcp = \"a:1\"\nrestart_unit = \"a\"\nrestart_command = [\"b\"]\n".into(),
            13,
            "heal.service.restart_command",
            "not both",
        ),
    ];
    for (heal, line, key, fragment) in cases {
        only_problem(&format!("{HEAL_BASE}{heal}"), line, key, fragment);
    }
}

#[test]
fn heal_needs_services_with_names() {
    only_problem(
        &format!("{HEAL_BASE}[heal]\n"),
        8,
        "heal.service",
        "no services to probe",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\n[[heal.service]]\ntcp = \"a:1\"\n"),
        9,
        "heal.service.name",
        "required",
    );
    let twice = "[[heal.service]]\nname = \"web\"\ntcp = \"a:1\"\n";
    only_problem(
        &format!("{HEAL_BASE}[heal]\n{twice}{twice}"),
        12,
        "heal.service.name",
        "\"web\" is named twice",
    );
}

#[test]
fn pressure_and_storm_settings_are_checked() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    only_problem(
        &format!("{HEAL_BASE}[heal]\npressure_slice = \"app\"\n{service}"),
        9,
        "heal.pressure_trigger",
        "go together",
    );
    only_problem(
        &format!(
            "{HEAL_BASE}[heal]\npressure_slice = \"app\"\npressure_trigger = \"some 2s 1s\"\n{service}"
        ),
        10,
        "heal.pressure_trigger",
        "at most the window",
    );
    only_problem(
        &format!(
            "{HEAL_BASE}[heal]\npressure_slice = \"db\"\npressure_trigger = \"some 100ms 1s\"\n{service}"
        ),
        9,
        "heal.pressure_slice",
        "\"db\" is not a slice of this file",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\nstorm_kills = 5\n{service}"),
        9,
        "heal.storm_kills",
        "has no effect without heal.storm_slice",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\nstorm_slice = \"app\"\nstorm_kills = 0\n{service}"),
        10,
        "heal.storm_kills",
        "from 1 up",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\nnotify = []\n{service}"),
        9,
        "heal.notify",
        "an empty command runs nothing",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\nnotify = [\"bin/page\", \"-v\"]\n{service}"),
        9,
        "heal.notify",
        "the program \"bin/page\" is a relative path, which would be found from whatever directory memslice runs in; give an absolute path, or a bare name looked up in PATH",
    );
    only_problem(
        &format!("{HEAL_BASE}[heal]\nmax_actions = -1\n{service}"),
        9,
        "heal.max_actions",
        "from 1 up",
    );
}

#[test]
fn systemd_placement_is_checked() {
    only_problem(
        "[node]\ndriver = \"docker\"\n[slice.a]\n",
        2,
        "node.driver",
        "use \"auto\" (systemd where systemd owns the tree, cgroupfs elsewhere), \"cgroupfs\" or \"systemd\"",
    );
    only_problem(
        "[slice.web]\nservices = [\"nginx\"]\n",
        2,
        "slice.web.services",
        "not a service unit name like \"nginx.service\"",
    );
    only_problem(
        "[slice.web]\noom_policy = \"ignore\"\n",
        2,
        "slice.web.oom_policy",
        "use continue, stop or kill",
    );
    only_problem(
        "[slice.web]\noom_score_adj = 2000\n",
        2,
        "slice.web.oom_score_adj",
        "outside the kernel's range",
    );
    only_problem(
        "[slice.web]\nservices = [\"nginx.service\"]\n[slice.db]\nservices = [\"nginx.service\"]\n",
        4,
        "slice.db.services",
        "nginx.service is already placed in slice web",
    );
    let placed = valid("[slice.web]\nservices = [\"nginx.service\"]\noom_score_adj = 300\n");
    assert_eq!(
        placed.slices[0].services.oom_policy,
        OomPolicy::Continue,
        "one OOM-killed worker must not stop the service"
    );
    assert_eq!(placed.slices[0].services.oom_score_adj, Some(300));
    assert_eq!(
        placed.setting,
        DriverSetting::Auto,
        "left out, the host decides"
    );
    assert_eq!(placed.layout, Layout::cgroupfs());
}

#[test]
fn a_slice_names_its_users_once() {
    let config = valid(
        "[node]\ndriver = \"cgroupfs\"\n[slice.ops]\nusers = [\"root\"]\n[slice.app]\nusers = [\"app\", \"deploy\"]\n[slice.app.web]\n[slice.app.cron]\nusers = [\"cron\"]\n",
    );
    assert_eq!(config.slice("app").expect("app").users, ["app", "deploy"]);
    assert_eq!(
        config.slice_of_user("cron").map(|s| s.path.as_str()),
        Some("app/cron")
    );
    assert_eq!(config.slice_of_user("nobody"), None);
    // Their sessions go to a leaf group: the slice is a parent.
    assert_eq!(
        config.slice("ops").expect("ops").controllers,
        [Controller::Memory]
    );
    assert_eq!(
        config.slice("app/cron").expect("cron").controllers,
        [Controller::Memory]
    );
    only_problem(
        "[node]\ndriver = \"cgroupfs\"\n[slice.ops]\nusers = [\"app\"]\n[slice.app]\nusers = [\"app\"]\n",
        6,
        "slice.app.users",
        "\"app\" is already a user of slice ops; a user's processes belong to one slice",
    );
    only_problem(
        "[slice.app]\nusers = [\"\"]\n",
        2,
        "slice.app.users",
        "an empty name matches nobody",
    );
    only_problem(
        "[node]\ndriver = \"cgroupfs\"\n[slice.app]\nusers = [\"app\"]\ncontrollers = [\"pids\"]\n",
        5,
        "slice.app.controllers",
        "must enable \"memory\"",
    );
    only_problem(
        "[slice.app]\nusers = [\"app\"]\n[slice.app.sessions]\n",
        3,
        "slice.app.sessions",
        "keeps in its leaf group \"sessions\"",
    );
}

#[test]
fn where_systemd_may_drive_a_user_slice_is_that_users_own() {
    for (node, why) in [
        ("", "driver \"auto\" may pick systemd, where"),
        ("[node]\ndriver = \"systemd\"\n", "under the systemd driver"),
    ] {
        let lines = node.lines().count();
        only_problem(
            &format!("{node}[slice.app.web]\nusers = [\"app\"]\n"),
            lines + 2,
            "slice.app.web.users",
            &format!(
                "{why} a slice with users is that user's own user-UID.slice, which logind always puts below user.slice: only a top-level slice can have users; move the key to [slice.app]"
            ),
        );
        only_problem(
            &format!("{node}[slice.app]\nusers = [\"app\", \"deploy\"]\n"),
            lines + 2,
            "slice.app.users",
            "logind gives each user their own",
        );
        only_problem(
            &format!("{node}[slice.ops]\nusers = [\"root\"]\n"),
            lines + 2,
            "slice.ops.users",
            "root's logins stay in user.slice/user-0.slice",
        );
        valid(&format!(
            "{node}[slice.app]\nusers = [\"app\"]\n[slice.app.web]\n"
        ));
    }
}

#[test]
fn placing_a_user_slice_needs_the_user() {
    let text = "[node]\ndriver = \"systemd\"\n[slice.ops]\n[slice.app]\nusers = [\"app\"]\n[slice.app.web]\n[heal]\nprotected = [\"app/web\"]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\nrestart_command = [\"true\"]\n";
    let place = |lookup: fn(&str) -> Result<Option<u32>, String>| {
        let mut config = valid(text);
        config
            .place(
                Driver::Systemd,
                Path::new("/etc/memslice/slices.toml"),
                lookup,
            )
            .map(|()| config)
    };
    let config = place(|user| Ok((user == "app").then_some(1000))).expect("placed");
    assert_eq!(
        config.layout.cgroup_of("app/web"),
        "user.slice/user-1000.slice/user-1000-web.slice"
    );
    assert_eq!(
        config
            .heal
            .as_ref()
            .map(|heal| heal.layout.cgroup_of("app/web")),
        Some("user.slice/user-1000.slice/user-1000-web.slice".to_string()),
        "the healer maps slices as the config does"
    );
    let missing = place(|_| Ok(None)).expect_err("no such user").to_string();
    assert!(
        missing.starts_with("/etc/memslice/slices.toml: slice.app.users: no user \"app\" on this node; under the systemd driver [slice.app] is that user's own slice"),
        "{missing}"
    );
    let root = place(|_| Ok(Some(0))).expect_err("root").to_string();
    assert!(root.contains("\"app\" is root (uid 0)"), "{root}");
    let broken = place(|_| Err("the user database: EIO".into())).expect_err("lookup");
    assert!(
        broken
            .to_string()
            .contains("cannot look up user \"app\": the user database: EIO")
    );
    let mut cgroupfs = valid(text);
    cgroupfs
        .place(Driver::Cgroupfs, Path::new("slices.toml"), |_| Ok(None))
        .expect("the cgroupfs driver needs no uid");
    assert_eq!(cgroupfs.layout.cgroup_of("app/web"), "app/web");
    let aliases = "[node]\ndriver = \"systemd\"\n[slice.app]\nusers = [\"app\"]\n[slice.shop]\nusers = [\"shop\"]\n";
    let mut config = valid(aliases);
    let err = config
        .place(Driver::Systemd, Path::new("slices.toml"), |_| {
            Ok(Some(1000))
        })
        .expect_err("one uid, two slices");
    assert!(
        err.to_string().contains("the user of slice app too"),
        "{err}"
    );
}

// Load is the only gate: what plan and apply used to accept and the healer
// or the kernel refused later.

#[test]
fn the_default_heal_target_follows_the_explicit_rule() {
    let heal = "[heal]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    let policy = "memory_max = \"1G\"\nmax_tasks = 1\n";
    for side in ["app", "ops"] {
        let text = format!(
            "[slice.ops]\n[slice.app]\n[slice.app.web]\n[protect]\nslice = \"{side}\"\n{policy}{heal}"
        );
        only_problem(&text, 5, "protect.slice", "is a top-level slice");
        let found = problems(&text);
        assert!(
            found[0].message.contains("heal.protected is not set"),
            "{:?} does not say where the value came from",
            found[0].message
        );
    }
    only_problem(
        &format!(
            "[slice.app]\n[slice.app.jobs]\n[slice.app.jobs.nightly]\n[protect]\nslice = \"app/jobs\"\n{policy}{heal}"
        ),
        5,
        "protect.slice",
        "app/jobs holds the slices app/jobs/nightly",
    );
}

#[test]
fn an_unknown_time_zone_is_refused_at_load() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    only_problem(
        &format!("{HEAL_BASE}[heal]\ntimezone = \"Mars/Olympus\"\n{service}"),
        9,
        "heal.timezone",
        "\"Mars/Olympus\" is not a time zone",
    );
}

/// A task's start does not look the zone up, but keeps [heal] for its
/// stall notices; every other rule of [heal] still holds for it.
#[test]
fn a_task_checks_heal_but_does_not_look_up_its_zone() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    let task = |text: &str| Config::parse_for(Path::new("slices.toml"), text, NODE, Scope::Task);
    let hook = "notify = [\"/bin/true\"]\n";
    let mars = format!("{HEAL_BASE}[heal]\ntimezone = \"Mars/Olympus\"\n{hook}{service}");
    let config = task(&mars).unwrap_or_else(|err| panic!("{err}"));
    let heal = config.heal.as_ref().expect("[heal] kept for a task");
    assert!(heal.hook_for(NotifyEvent::Stall).is_some(), "{heal:#?}");
    assert_eq!(heal.timezone, TimeZone::UTC);
    assert!(config.protect.is_some());
    let typo = format!("{HEAL_BASE}[heal]\ntimezone = \"UTC\"\nintervall = \"1s\"\n{service}");
    match task(&typo) {
        Err(ConfigError::Invalid { problems, .. }) => {
            assert_eq!(problems.len(), 1, "{problems:#?}");
            assert_eq!(problems[0].key, "heal.intervall");
        }
        other => panic!("expected the typo refused, got {other:?}"),
    }
}

/// One `[[heal.service]]` with `probe` (line 11) after `[heal]`.
fn service_problem(probe: &str, line: usize, key: &str, fragment: &str) {
    only_problem(
        &format!("{HEAL_BASE}[heal]\n[[heal.service]]\nname = \"web\"\n{probe}\n"),
        line,
        key,
        fragment,
    );
}

#[test]
fn probes_that_cannot_work_are_refused_at_load() {
    let cases = [
        ("http = \"http://\"", "heal.service.http", "has no host"),
        (
            "http = \"http://exa mple/\"",
            "heal.service.http",
            "not a URL",
        ),
        (
            "http = \"http://shop.example:99999/\"",
            "heal.service.http",
            "port must be a number from 1 to 65535",
        ),
        (
            "http = \"http://shop.example:0/\"",
            "heal.service.http",
            "port must be a number from 1 to 65535",
        ),
        (
            "http = \"https://shop.example/\"",
            "heal.service.http",
            "built without TLS; probe https with a command such as [\"curl\"",
        ),
        (
            "tcp = \"localhost:http-ish\"",
            "heal.service.tcp",
            "port must be a number from 1 to 65535",
        ),
        (
            "tcp = \"localhost:70000\"",
            "heal.service.tcp",
            "port must be a number from 1 to 65535",
        ),
        ("tcp = \":3306\"", "heal.service.tcp", "no host"),
        ("tcp = \"::1:3306\"", "heal.service.tcp", "[::1]:3306"),
        (
            "tcp = \"[nonsense]:3306\"",
            "heal.service.tcp",
            "not an IPv6 address",
        ),
        (
            "command = [\"true\"]\ntimeout = \"0s\"",
            "heal.service.timeout",
            "from 1ms to 10m",
        ),
        ("command = [\"\"]", "heal.service.command", "no program"),
        ("command = [\"true\\u0000\"]", "heal.service.command", "NUL"),
    ];
    for (probe, key, fragment) in cases {
        let line = 11 + probe.matches('\n').count();
        service_problem(probe, line, key, fragment);
    }
    only_problem(
        &format!("{HEAL_BASE}[heal]\n[[heal.service]]\nname = \"\"\ncommand = [\"true\"]\n"),
        10,
        "heal.service.name",
        "empty",
    );
    only_problem(
        "[slice.web]\ndescription = \"web\\n[Service]\\nExecStartPre=/bin/sh\"\n",
        2,
        "slice.web.description",
        "keep it on one line",
    );
    only_problem(
        "[slice.web]\ndescription = 'web \\'\n",
        2,
        "slice.web.description",
        "ends with a backslash, which systemd reads as the line going on onto the next",
    );
    valid("[slice.web]\ndescription = \"\"\n");
    for good in [
        "http = \"http://[::1]:8080/health\"",
        "tcp = \"[::1]:3306\"",
        "tcp = \"db.internal:3306\"",
    ] {
        valid(&format!(
            "{HEAL_BASE}[heal]\n[[heal.service]]\nname = \"web\"\n{good}\n"
        ));
    }
}

#[test]
fn state_and_lock_paths_must_name_files() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let existing = dir.path().display().to_string();
    let cases = [
        (
            "state_file = \"\"".to_string(),
            "heal.state_file",
            "an absolute path",
        ),
        (
            "state_file = \"heal.state\"".to_string(),
            "heal.state_file",
            "an absolute path",
        ),
        (
            "state_file = \"/var/lib/memslice/\"".to_string(),
            "heal.state_file",
            "ends in '/'",
        ),
        (
            format!("state_file = \"{existing}\""),
            "heal.state_file",
            "is a directory",
        ),
        (
            "lock_file = \"/tmp\"".to_string(),
            "heal.lock_file",
            "is a directory",
        ),
        (
            "lock_file = \"/run/memslice/..\"".to_string(),
            "heal.lock_file",
            "file name",
        ),
    ];
    for (setting, key, fragment) in cases {
        only_problem(
            &format!("{HEAL_BASE}[heal]\n{setting}\n{service}"),
            9,
            key,
            fragment,
        );
    }
}

#[test]
fn limits_that_kill_everything_are_refused() {
    only_problem(
        "[slice.app]\nmemory_max = \"0\"\n",
        2,
        "slice.app.memory_max",
        "0 bytes",
    );
    only_problem(
        "[slice.app]\nmemory_high = 0\n",
        2,
        "slice.app.memory_high",
        "0 bytes",
    );
    only_problem(
        "[slice.app]\nmemory_max = \"1000\"\n",
        2,
        "slice.app.memory_max",
        "rounds down to 0 bytes",
    );
    let zero_ok =
        valid("[slice.app]\nmemory_min = \"0\"\nmemory_low = \"0\"\nmemory_swap_max = \"0\"\n");
    assert_eq!(zero_ok.slices[0].memory.min, Some(Limit::Bytes(0)));
    only_problem(
        "[slice.app]\n[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"0%\"\nmax_tasks = 1\n",
        5,
        "protect.memory_max",
        "0 bytes",
    );
}

#[test]
fn a_node_is_at_least_64m() {
    only_problem(
        "[node]\nmemory = 1\n[slice.a]\n",
        2,
        "node.memory",
        "at least 64M",
    );
}

#[test]
fn reservations_of_max_count_as_the_whole_parent() {
    only_problem(
        "[slice.ops]\nmemory_min = \"max\"\n[slice.app]\nmemory_min = \"max\"\n",
        3,
        "slice.app.memory_min",
        "more than the node's RAM (16G)",
    );
    only_problem(
        "[slice.app]\nmemory_low = \"2G\"\n[slice.app.web]\nmemory_low = \"max\"\n[slice.app.db]\nmemory_low = \"1G\"\n",
        5,
        "slice.app.db.memory_low",
        "more than app's memory_low (2G)",
    );
}

#[test]
fn huge_sizes_are_refused_not_wrapped() {
    only_problem(
        "[slice.ops]\nmemory_min = 18446744073709551615\n[slice.app]\nmemory_min = 18446744073709551615\n",
        3,
        "slice.app.memory_min",
        "more than the node's RAM",
    );
    only_problem(
        "[slice.ops]\nmemory_low = \"16000000T\"\n[slice.app]\nmemory_low = \"16000000T\"\n",
        3,
        "slice.app.memory_low",
        "more than the node's RAM",
    );
}

#[test]
fn durations_stay_within_their_documented_bounds() {
    let service = "[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";
    let cases = [
        (
            "grace_day = \"18446744073709551615h\"",
            "heal.grace_day",
            "too large",
        ),
        (
            "grace_night = \"25h\"",
            "heal.grace_night",
            "from 0s to 24h",
        ),
        (
            "interval = \"18446744073709551615h\"",
            "heal.interval",
            "too large",
        ),
        ("interval = \"2h\"", "heal.interval", "from 100ms to 1h"),
        ("interval = \"10ms\"", "heal.interval", "from 100ms to 1h"),
        (
            "actions_window = \"8d\"",
            "heal.actions_window",
            "from 1s to 7d",
        ),
        (
            "stable_after = \"0s\"",
            "heal.stable_after",
            "from 1s to 7d",
        ),
        (
            "notify_timeout = \"0s\"",
            "heal.notify_timeout",
            "from 1ms to 10m",
        ),
        (
            "notify_timeout = \"18446744073709551615ms\"",
            "heal.notify_timeout",
            "from 1ms to 10m",
        ),
    ];
    for (setting, key, fragment) in cases {
        only_problem(
            &format!("{HEAL_BASE}[heal]\n{setting}\n{service}"),
            9,
            key,
            fragment,
        );
    }
    only_problem(
        &format!(
            "{HEAL_BASE}[heal]\nstorm_slice = \"app\"\nstorm_window = \"18446744073709551615s\"\n{service}"
        ),
        10,
        "heal.storm_window",
        "from 1s to 7d",
    );
}

#[test]
fn deep_dotted_keys_get_a_position() {
    let key = vec!["a"; 100].join(".");
    let found = problems(&format!("[slice.ops]\n\n{key} = 1\n"));
    assert_eq!((found[0].line, found[0].column), (3, 1), "{found:#?}");
    let found = problems(&format!("[slice.ops]\n[slice.{key}]\n"));
    assert_eq!((found[0].line, found[0].column), (2, 2), "{found:#?}");
}

#[test]
fn cgroup_paths_must_fit_the_kernel_limits() {
    // 70 levels of 60-character names: 4,270 bytes, over PATH_MAX.
    let mut text = String::from("[node]\ndriver = \"cgroupfs\"\n");
    let mut path = Vec::new();
    for level in 0..70 {
        path.push(format!("{level:0>60}"));
        text.push_str(&format!("[slice.{}]\n", path.join(".")));
    }
    let found = problems(&text);
    assert!(
        found.iter().any(|p| p.message.contains("PATH_MAX")),
        "{found:#?}"
    );
    // Under the systemd driver the unit name repeats the whole path.
    let long = "w".repeat(60);
    let systemd = "[node]\ndriver = \"systemd\"\n";
    let found = problems(&format!(
        "{systemd}[slice.{long}.{long}.{long}.{long}.{long}]\n"
    ));
    assert!(
        found
            .iter()
            .any(|p| p.line == 3 && p.message.contains("systemd allows 255")),
        "{found:#?}"
    );
    // auto may pick systemd: its limits hold there too.
    let found = problems(&format!("[slice.{long}.{long}.{long}.{long}.{long}]\n"));
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("systemd allows 255")),
        "{found:#?}"
    );
    valid(&format!(
        "[node]\ndriver = \"cgroupfs\"\n[slice.{long}.{long}.{long}.{long}.{long}]\n"
    ));
    // A user's slice is named after the uid, known on the host only: the
    // longest (4294967295) must fit.
    let (n60, n57) = ("w".repeat(60), "w".repeat(57));
    let children = format!("{n60}.{n60}.{n60}.{n57}");
    valid(&format!("[slice.app]\n[slice.app.{children}]\n"));
    let found = problems(&format!(
        "[slice.app]\nusers = [\"app\"]\n[slice.app.{children}]\n"
    ));
    assert!(
        found
            .iter()
            .any(|p| p.key == format!("slice.app.{children}")
                && p.message
                    .contains("here 262 characters, and systemd allows 255")),
        "{found:#?}"
    );
}
