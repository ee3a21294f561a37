use crate::fixture::{Fixture, shipped_on_16g, stdout};

#[test]
fn apply_builds_the_shipped_tree() {
    let fx = Fixture::new(&shipped_on_16g());
    let out = fx.memslice(&["apply"]).success();
    assert!(
        stdout(&out).contains("applied 22 change(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fx.read("", "cgroup.subtree_control"), "memory pids");
    assert_eq!(fx.read("app", "cgroup.subtree_control"), "memory pids");
    assert_eq!(fx.read("ops", "memory.min"), (256u64 << 20).to_string());
    assert_eq!(fx.read("ops", "memory.low"), (512u64 << 20).to_string());
    assert_eq!(fx.read("app", "memory.max"), "13743894528");
    assert_eq!(fx.read("app", "memory.high"), "12884901888");
    assert_eq!(fx.read("app/web", "memory.oom.group"), "0");
    assert_eq!(
        fx.read("app/tasks", "cgroup.subtree_control"),
        "memory",
        "protected tasks get their own memory.max"
    );
    assert_eq!(fx.read("app/tasks", "memory.max"), (8u64 << 30).to_string());
    assert_eq!(
        fx.read("app/db", "memory.max"),
        "max",
        "a key left out keeps the kernel's value"
    );
}

#[test]
fn a_second_apply_writes_nothing() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    let before = fx.snapshot();
    let out = fx.memslice(&["apply"]).success();
    assert!(
        stdout(&out).contains("matches") && stdout(&out).contains("(0 writes)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(before, fx.snapshot(), "the second apply changed files");
}

#[test]
fn plan_shows_exactly_the_drift() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.write("app/cron", "memory.max", "max\n");
    let before = fx.snapshot();
    let out = fx.memslice(&["plan"]).success();
    assert_eq!(
        stdout(&out),
        "  set     app/cron  memory.max: max -> 6.4G\n1 change(s)\n"
    );
    assert_eq!(before, fx.snapshot(), "plan wrote to the tree");
    fx.memslice(&["apply"]).success();
    assert_eq!(fx.read("app/cron", "memory.max"), "6871945216");
}

#[test]
fn plan_detailed_exitcode_tells_drift_from_match() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["plan", "--detailed-exitcode"]).code(2);
    fx.memslice(&["apply"]).success();
    let out = fx.memslice(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(stdout(&out), "no changes: the tree matches the config\n");
}

#[test]
fn plan_on_an_empty_directory_prints_the_whole_plan() {
    let fx = Fixture::bare(&shipped_on_16g());
    let out = fx.memslice(&["plan"]).success();
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "  enable  (root)  cgroup.subtree_control: +memory +pids\n  create  ops\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("22 change(s)\n"), "{text}");
    let warning = crate::fixture::stderr(&out);
    assert!(
        warning.contains("is not a cgroup v2 hierarchy")
            && warning.contains("`apply` would refuse"),
        "{warning}"
    );
    assert_eq!(std::fs::read_dir(fx.root()).expect("dir").count(), 0);
}

#[test]
fn unmanaged_groups_are_noted_and_left_alone() {
    let fx = Fixture::new(&shipped_on_16g());
    fx.memslice(&["apply"]).success();
    fx.made_outside("app/tasks/import-1");
    fx.write("app/tasks/import-1", "cgroup.procs", "4242\n");
    let out = fx.memslice(&["plan"]).success();
    assert!(
        stdout(&out).contains(
            "note    app/tasks/import-1 is not in the config (1 process(es)); left alone"
        ),
        "{}",
        stdout(&out)
    );
    fx.memslice(&["apply"]).success();
    assert!(fx.root().join("app/tasks/import-1").is_dir());
}

#[test]
fn lowering_a_parent_limit_goes_after_its_children() {
    let fx = Fixture::new(
        "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.web]\nmemory_max = \"6G\"\n",
    );
    fx.memslice(&["apply"]).success();
    std::fs::write(fx.config(), "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"4G\"\n[slice.app.web]\nmemory_max = \"2G\"\n").expect("config");
    let out = fx.memslice(&["plan"]).success();
    assert_eq!(
        stdout(&out),
        "  set     app/web  memory.max: 6G -> 2G\n  set     app  memory.max: 8G -> 4G\n2 change(s)\n"
    );
}

/// A tree one apply builds, then a config that changes values and adds
/// groups, so a failure part-way has made all three kinds of change.
fn half_built() -> Fixture {
    let fx = Fixture::new(
        "[node]\nmemory = \"16G\"\n[slice.ops]\nmemory_min = \"256M\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.web]\n",
    );
    fx.memslice(&["apply"]).success();
    std::fs::write(
        fx.config(),
        "[node]\nmemory = \"16G\"\n[slice.ops]\nmemory_min = \"512M\"\n[slice.app]\nmemory_max = \"4G\"\nmemory_high = \"3G\"\n[slice.app.web]\nmemory_max = \"2G\"\n[slice.app.db]\nmemory_max = \"1G\"\n[slice.app.db.replica]\n",
    )
    .expect("config");
    fx
}

#[test]
fn a_write_refused_part_way_leaves_the_tree_as_it_was() {
    let fx = half_built();
    let before = fx.listing();
    fx.inject_fault("write", "app/memory.max", "EBUSY");
    let message = crate::fixture::stderr(&fx.memslice(&["apply"]).code(1));
    assert!(
        message.contains("apply failed at change")
            && message.contains("`set     app  memory.max: 8G -> 4G`")
            && message.contains("change(s) made before it were undone: the tree is as it was"),
        "{message}"
    );
    assert_eq!(before, fx.listing(), "the failed apply left changes behind");
    std::fs::remove_file(fx.root().join(memslice::cgroupfs::emulated::FAULTS)).expect("rm");
    fx.memslice(&["apply"]).success();
    assert_eq!(fx.read("app/db", "memory.max"), "1073741824");
}

#[test]
fn a_group_the_kernel_will_not_create_leaves_the_tree_as_it_was() {
    let fx = half_built();
    let before = fx.listing();
    fx.inject_fault("mkdir", "app/db/replica", "ENOSPC");
    let message = crate::fixture::stderr(&fx.memslice(&["apply"]).code(1));
    assert!(
        message.contains("`create  app/db/replica`") && message.contains("the tree is as it was"),
        "{message}"
    );
    assert_eq!(before, fx.listing());
    assert!(
        !fx.root().join("app/db").exists(),
        "a group made by the failed run stayed"
    );
}

#[test]
fn an_undo_that_fails_is_named() {
    let fx = half_built();
    fx.inject_fault("write", "app/memory.max", "EBUSY");
    fx.inject_fault("rmdir", "app/db", "EBUSY");
    let message = crate::fixture::stderr(&fx.memslice(&["apply"]).code(1));
    assert!(
        message.contains(
            "undoing the changes made before it failed too, the tree is left half-changed"
        ) && message.contains("failed to remove cgroup")
            && message.contains("app/db"),
        "{message}"
    );
}

#[test]
fn concurrent_applies_take_turns() {
    let fx = Fixture::new(&shipped_on_16g());
    let runs: Vec<std::process::Child> = (0..10)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_memslice"))
                .arg("--config")
                .arg(fx.config())
                .arg("--cgroup-root")
                .arg(fx.root())
                .arg("apply")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("apply")
        })
        .collect();
    let mut built = 0;
    for run in runs {
        let out = run.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("applied 22 change(s)") {
            built += 1;
        } else {
            assert!(text.contains("(0 writes)"), "{text}");
        }
    }
    assert_eq!(
        built, 1,
        "exactly one apply builds the tree, the others find it built"
    );
    fx.memslice(&["plan", "--detailed-exitcode"]).code(0);
}
