//! Which driver writes the tree: `auto` follows the host, cgroupfs is
//! refused on a tree systemd owns and has not delegated, and a user's
//! slice under the systemd driver is their own user-UID.slice. An
//! emulated root stands for systemd's tree when it holds the marker
//! `SYSTEMD_TREE`; MEMSLICE_TEST_RUN_SYSTEMD stands for /run/systemd/system.

use memslice::cgroupfs::emulated::SYSTEMD_TREE;

use crate::fixture::{Fixture, stderr, stdout};

const CONFIG: &str = "[node]\nmemory = \"16G\"\n[slice.ops]\nmemory_min = \"256M\"\n[slice.app]\nmemory_max = \"8G\"\nusers = [\"nobody\"]\n[slice.app.web]\nmemory_max = \"4G\"\n";

/// A fixture whose root is systemd's tree on a host systemd runs, with
/// systemctl replaced by `true` and units written to a temp directory.
struct SystemdHost {
    fx: Fixture,
}

impl SystemdHost {
    fn new(config: &str) -> SystemdHost {
        let fx = Fixture::new(config);
        std::fs::write(fx.root().join(SYSTEMD_TREE), "").expect("marker");
        SystemdHost { fx }
    }

    fn memslice(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let units = self.fx.dir.path().join("units");
        let booted = self.fx.systemd_booted();
        let mut all = vec!["--unit-dir", units.to_str().expect("utf8")];
        all.extend_from_slice(args);
        self.fx.memslice_env(
            &[
                ("MEMSLICE_TEST_RUN_SYSTEMD", booted.to_str().expect("utf8")),
                ("MEMSLICE_TEST_SYSTEMCTL", "/bin/true"),
            ],
            &all,
        )
    }
}

fn nobody_uid() -> u32 {
    crate::fixture::nobody().uid.as_raw()
}

#[test]
fn auto_writes_units_where_systemd_owns_the_tree() {
    let host = SystemdHost::new(CONFIG);
    let plan = stdout(&host.memslice(&["plan"]).success());
    let uid = nobody_uid();
    assert!(
        plan.contains(&format!("  create  user-{uid}.slice.d/50-memslice.conf\n"))
            && plan.contains(&format!(
                "  create  user-{uid}-web.slice.d/50-memslice.conf\n"
            ))
            && plan.contains("  create  ops.slice\n"),
        "{plan}"
    );
    assert!(!plan.contains("app.slice"), "{plan}");
    host.memslice(&["apply"]).success();
    assert!(
        !host.fx.root().join("app").exists(),
        "the tree is systemd's to write"
    );
}

#[test]
fn auto_writes_the_tree_where_no_systemd_runs() {
    let fx = Fixture::new(CONFIG);
    let out = stdout(&fx.memslice(&["apply"]).success());
    assert!(out.contains("create  app/sessions"), "{out}");
    assert!(fx.root().join("app/sessions/cgroup.procs").is_file());
}

#[test]
fn cgroupfs_on_systemds_tree_is_refused_and_plan_warns() {
    let host = SystemdHost::new(CONFIG);
    let before = host.fx.snapshot();
    let refused = host.memslice(&["--driver", "cgroupfs", "apply"]).code(2);
    let message = stderr(&refused);
    assert!(
        message.contains("is systemd's tree (systemd is PID 1 and has not delegated it to memslice), so the cgroupfs driver (asked for with \"cgroupfs\") may not write there")
            && message.contains("Delegate=yes"),
        "{message}"
    );
    assert_eq!(host.fx.snapshot(), before, "nothing was written");
    let plan = host.memslice(&["--driver", "cgroupfs", "plan"]).success();
    assert!(
        stderr(&plan).contains("warning: ") && stderr(&plan).contains("`apply` would refuse"),
        "{}",
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("create  app\n"), "{}", stdout(&plan));
}

#[test]
fn a_subtree_systemd_delegated_is_memslices_to_write() {
    let host = SystemdHost::new(CONFIG);
    let root = host.fx.root();
    // What systemd sets on a unit's cgroup with Delegate=yes.
    memslice::cgroupfs::Root::emulated(&root)
        .set_attribute("", "user.delegate", b"1")
        .expect("user.delegate");
    let out = stdout(&host.memslice(&["apply"]).success());
    assert!(
        out.contains("create  app/sessions"),
        "auto picks cgroupfs: {out}"
    );
    host.memslice(&["--driver", "cgroupfs", "apply"]).success();
}

#[test]
fn the_systemd_driver_needs_systemd_running() {
    let fx = Fixture::new(CONFIG);
    let units = fx.dir.path().join("units");
    let refused = fx
        .memslice(&[
            "--driver",
            "systemd",
            "--unit-dir",
            units.to_str().expect("utf8"),
            "apply",
        ])
        .code(2);
    assert!(
        stderr(&refused)
            .contains("the systemd driver (asked for with \"systemd\") needs systemd as PID 1"),
        "{}",
        stderr(&refused)
    );
    assert!(!units.exists());
}

#[test]
fn a_user_slice_needs_its_user_under_the_systemd_driver() {
    let host = SystemdHost::new(&CONFIG.replace("nobody", "no-such-user-here"));
    let refused = host.memslice(&["status"]).code(2);
    assert!(
        stderr(&refused)
            .contains("slices.toml: slice.app.users: no user \"no-such-user-here\" on this node"),
        "{}",
        stderr(&refused)
    );
    // The cgroupfs driver needs no uid.
    host.fx.memslice(&["plan"]).success();
}

#[test]
fn an_unknown_driver_is_refused_from_the_flag_and_the_environment() {
    let fx = Fixture::new(CONFIG);
    let flag = fx.memslice(&["--driver", "docker", "plan"]).code(2);
    assert!(
        stderr(&flag)
            .contains("--driver (or MEMSLICE_DRIVER) \"docker\": use auto, cgroupfs or systemd"),
        "{}",
        stderr(&flag)
    );
    let env = fx
        .memslice_env(&[("MEMSLICE_DRIVER", "docker")], &["doctor"])
        .code(2);
    assert!(
        stderr(&env).contains("\"docker\": use auto"),
        "{}",
        stderr(&env)
    );
}

#[test]
fn exec_and_move_say_the_systemd_way_under_the_systemd_driver() {
    let host = SystemdHost::new(CONFIG);
    let uid = nobody_uid();
    let exec = host
        .memslice(&["exec", "--slice", "app/web", "--", "true"])
        .code(125);
    assert!(
        stderr(&exec).contains(&format!(
            "under the systemd driver systemd places processes, not memslice exec: start the command with `systemd-run --scope --slice=user-{uid}-web.slice -- COMMAND`"
        )),
        "{}",
        stderr(&exec)
    );
    let me = std::process::id().to_string();
    let moved = host.memslice(&["move", "--slice", "app", &me]).code(2);
    assert!(
        stderr(&moved).contains("cannot be moved into a slice from outside systemd"),
        "{}",
        stderr(&moved)
    );
    let misfit = host
        .memslice(&["--driver", "cgroupfs", "move", "--slice", "app", &me])
        .code(2);
    assert!(
        stderr(&misfit).contains("is systemd's tree"),
        "{}",
        stderr(&misfit)
    );
}

#[test]
fn run_and_protect_with_the_cgroupfs_driver_on_systemds_tree_are_refused() {
    let host = SystemdHost::new(
        &CONFIG.replace("[slice.app.web]", "[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\n[slice.app.web]"),
    );
    let before = host.fx.snapshot();
    for args in [
        vec![
            "--driver",
            "cgroupfs",
            "run",
            "--slice",
            "app/tasks",
            "--",
            "true",
        ],
        vec!["--driver", "cgroupfs", "protect", "--", "true"],
    ] {
        let message = stderr(&host.memslice(&args).code(125));
        assert!(
            message.contains(
                "so the cgroupfs driver (asked for with \"cgroupfs\") may not write there"
            ),
            "{args:?}: {message}"
        );
    }
    assert_eq!(
        host.fx.snapshot(),
        before,
        "a task group was made in systemd's tree"
    );
}
