use memslice::spawn::policy::Mode;

use crate::fixture::{Fixture, shipped_on_16g, status_group, stdout};

#[test]
fn status_json_reports_usage_limits_and_kills() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.write("app/web", "memory.current", "1073741824\n");
    fx.write("app/web", "cgroup.procs", "10\n11\n");
    fx.write(
        "app",
        "memory.events",
        "low 0\nhigh 4\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    let out = fx.memslice(&["status", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let find = |path: &str| status_group(&json, path);
    assert_eq!(find("app/web")["current_bytes"], 1_073_741_824u64);
    assert_eq!(find("app/web")["procs"], 2);
    assert_eq!(find("app/web")["max"], "max");
    assert_eq!(find("app")["max"], 13_743_894_528u64);
    assert_eq!(find("app")["events"]["oom_kill"], 1);
    assert_eq!(find("ops")["min"], 268_435_456u64);
    assert_eq!(find("ops")["managed"], true);
}

#[test]
fn status_table_shows_usage_against_the_limit() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.write("app", "memory.current", "6871947264\n");
    fx.write("app/cron", "memory.current", "6012954214\n");
    fx.write(
        "app",
        "memory.events",
        "low 0\nhigh 9\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n",
    );
    fx.running_task("app/tasks/import-1", Mode::Protect);
    insta::assert_snapshot!("status_table", stdout(&fx.memslice(&["status"]).success()));
}

#[test]
fn status_json_schema() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.write("app/web", "memory.current", "1073741824\n");
    let out = stdout(&fx.memslice(&["status", "--json"]).success());
    let root = fx.root().display().to_string();
    insta::assert_snapshot!("status_json", out.replace(&root, "<root>"));
}

/// A slice's `tasks` are the run and protect tasks with processes in it;
/// under the systemd driver a user's slice holds their session scopes and
/// user@UID.service too, which are none.
#[test]
fn a_slices_tasks_are_memslices_tasks_alone() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.running_task("app/tasks/import-1", Mode::Protect);
    fx.running_task("app/tasks/report-2", Mode::Run);
    fx.made_outside("app/tasks/session-3.scope");
    fx.set_populated("app/tasks/session-3.scope");
    let out = stdout(&fx.memslice(&["status", "--json"]).success());
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status_group(&json, "app/tasks")["tasks"], 2, "{out}");
}

#[test]
fn status_lists_task_groups_and_missing_slices() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.made_outside("app/tasks/import-1");
    std::fs::remove_dir_all(fx.root().join("app/db")).expect("rm");
    let out = stdout(&fx.memslice(&["status"]).success());
    assert!(out.contains("\n    import-1 (task)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("  db") && l.contains("missing")),
        "{out}"
    );
}

/// A user may name a group in a subtree delegated to them (under the
/// systemd driver, user@UID.service below their slice): the table writes
/// an escape sequence in the name out instead of sending it to root's
/// terminal.
#[test]
fn status_writes_out_control_characters_in_a_group_name() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.made_outside("app/web/\x1b]0;owned\x07\x1b[2K");
    let out = stdout(&fx.memslice(&["status"]).success());
    assert!(out.contains("\\x1b]0;owned\\x07\\x1b[2K (task)"), "{out}");
    assert!(!out.contains('\x07'), "{out:?}");
}

/// A group delegated to a user (user@UID.service under the systemd
/// driver, chowned to them) is listed, but not what they make below it:
/// every status and scrape would read as many groups as they like.
#[test]
fn status_does_not_walk_below_a_group_root_does_not_own() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.made_outside("app/web/user@1000.service");
    fx.made_outside("app/web/user@1000.service/made-by-them");
    let delegated = fx.root().join("app/web/user@1000.service");
    let out = stdout(&fx.memslice(&["status"]).success());
    assert!(out.contains("made-by-them"), "root's own is walked: {out}");
    std::os::unix::fs::chown(&delegated, Some(65534), Some(65534)).expect("chown");
    let out = stdout(&fx.memslice(&["status"]).success());
    assert!(out.contains("user@1000.service (task)"), "{out}");
    assert!(!out.contains("made-by-them"), "{out}");
}

/// systemd removes an empty scope the moment its last process exits, so a
/// group can vanish between listing and reading it. A directory without
/// its cgroup.procs is such a group: status and metrics leave it out
/// instead of failing.
#[test]
fn status_and_metrics_skip_a_group_removed_while_read() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    std::fs::create_dir(fx.root().join("app/tasks/ending-1")).expect("mkdir");
    let out = stdout(&fx.memslice(&["status"]).success());
    assert!(!out.contains("ending-1"), "{out}");
    let metrics = stdout(&fx.memslice(&["metrics"]).success());
    assert!(!metrics.contains("ending-1"), "{metrics}");
    assert!(metrics.contains("group=\"app/tasks\""), "{metrics}");
}

/// The table reads what it shows and no more: a group whose cgroup.procs,
/// memory.low and memory.min cannot be read still gets its row, while
/// `status --json`, which shows them, says what it could not read.
#[test]
fn the_table_reads_only_what_it_shows() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    for file in ["cgroup.procs", "memory.low", "memory.min"] {
        let path = fx.root().join("app/web").join(file);
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("unreadable stand-in");
    }
    let table = stdout(&fx.memslice(&["status"]).success());
    assert!(table.lines().any(|l| l.starts_with("  web ")), "{table}");
    fx.memslice(&["status", "--json"]).failure();
}
