//! `run` and `protect` on an emulated root: the binary forks, moves the
//! child through cgroup.procs, supervises and cleans up. What the kernel
//! decides (OOM kills, clone3 into a real group) is in vagrant/scenarios.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use memslice::spawn::policy::Mode;

use crate::fixture::{Fixture, nobody, stderr, stdout};

const CONFIG: &str = "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.web]\n[slice.app.tasks]\nmemory_max = \"4G\"\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"2G\"\nmax_tasks = 1\nusers = [\"nobody\"]\n";

fn fixture() -> Fixture {
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    fx
}

fn task_groups(fx: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fx.root().join("app/tasks"))
        .expect("tasks dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (SUDO_UID is only believed from root); run the suite as root, as CI does"
    );
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff");
    u64::from_str_radix(caps.trim(), 16).expect("hex") & (1 << 24) != 0
}

#[test]
fn the_command_runs_in_its_own_group_with_its_limits_and_the_group_goes_away() {
    let fx = fixture();
    let script = "d=\"$0/app/tasks/probe-$PPID\"; for f in memory.max memory.oom.group cgroup.procs; do echo \"$(cat $d/$f)\"; done; echo $$";
    let root = fx.root();
    let out = fx
        .memslice(&[
            "run",
            "--slice",
            "app/tasks",
            "--memory-max",
            "1G",
            "--oom-group",
            "--name",
            "probe",
            "--",
            "sh",
            "-c",
            script,
            root.to_str().expect("utf8"),
        ])
        .success();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        ["1073741824", "1"],
        "memory.max and memory.oom.group: {text}"
    );
    assert_eq!(
        lines[2], lines[3],
        "the command's own pid is in cgroup.procs: {text}"
    );
    assert!(
        task_groups(&fx).is_empty(),
        "group left behind: {:?}",
        task_groups(&fx)
    );
}

#[test]
fn exit_status_and_signals_come_back_as_a_shell_reports_them() {
    let fx = fixture();
    fx.memslice(&["run", "--slice", "app/tasks", "--", "sh", "-c", "exit 3"])
        .code(3);
    fx.memslice(&[
        "run",
        "--slice",
        "app/tasks",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ])
    .code(143);
    fx.memslice(&["run", "--slice", "app/tasks", "--", "true"])
        .code(0);
    assert!(task_groups(&fx).is_empty());
}

#[test]
fn a_missing_or_non_executable_command_exits_like_a_shell_and_leaves_no_group() {
    let fx = fixture();
    let out = fx
        .memslice(&["run", "--slice", "app/tasks", "--", "/no/such/program"])
        .code(127);
    assert!(
        stderr(&out).contains("/no/such/program: cannot execute the command: ENOENT"),
        "{}",
        stderr(&out)
    );
    let script = fx.dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    let out = fx
        .memslice(&[
            "run",
            "--slice",
            "app/tasks",
            "--",
            script.to_str().expect("utf8"),
        ])
        .code(126);
    assert!(stderr(&out).contains("EACCES"), "{}", stderr(&out));
    assert!(task_groups(&fx).is_empty(), "{:?}", task_groups(&fx));
}

#[test]
fn bad_requests_exit_125_before_anything_is_created() {
    let fx = fixture();
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", "--slice", "app/nope", "--", "true"],
            "slice \"app/nope\" is not in the config; known slices: app, app/web, app/tasks",
        ),
        (
            &[
                "run",
                "--slice",
                "app/tasks",
                "--memory-max",
                "6G",
                "--",
                "true",
            ],
            "--memory-max 6G is above 4G",
        ),
        (
            &["run", "--slice", "app/web", "--", "true"],
            "does not enable the memory controller",
        ),
        (
            &[
                "run",
                "--slice",
                "app/tasks",
                "--memory-max",
                "lots",
                "--",
                "true",
            ],
            "\"lots\" is not a size",
        ),
    ];
    for (args, message) in cases {
        let out = fx.memslice(args).code(125);
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert!(task_groups(&fx).is_empty());
    let out = fx
        .memslice(&[
            "run",
            "--slice",
            "app/tasks",
            "--name",
            "no/slash",
            "--",
            "true",
        ])
        .code(125);
    assert!(
        stderr(&out).contains("--name \"no/slash\" is not usable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_kill_leftovers_orphans_are_killed_and_reaped_when_the_command_ends() {
    let fx = fixture();
    let pidfile = fx.dir.path().join("orphan.pid");
    let script = format!("sleep 30 & echo $! > {}; exit 0", pidfile.display());
    fx.memslice(&[
        "run",
        "--slice",
        "app/tasks",
        "--kill-leftovers",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .success();
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .to_string();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "orphan {pid} survived (or is a zombie)"
    );
}

#[test]
fn signals_sent_to_memslice_reach_the_command() {
    let fx = fixture();
    let mut child = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .arg("--config")
        .arg(fx.config())
        .arg("--cgroup-root")
        .arg(fx.root())
        .args([
            "run",
            "--slice",
            "app/tasks",
            "--",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn memslice");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("utf8"), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    assert_eq!(lines.next().expect("a line").expect("utf8"), "got TERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(42));
    std::thread::sleep(Duration::from_millis(10));
    assert!(task_groups(&fx).is_empty());
}

/// max_tasks bounds the tasks the OOM killer skips. A `run` task in the
/// slice, a group made by hand, the sessions of a slice's users (the
/// slice may have users), a record another user forged are none of them,
/// and hold no protect back.
#[test]
fn max_tasks_counts_protected_tasks_alone() {
    let fx = fixture();
    fx.running_task("app/tasks/report-1", Mode::Run);
    fx.made_outside("app/tasks/by-hand");
    fx.set_populated("app/tasks/by-hand");
    // A protect record on a group another user owns is that user's
    // forgery (they may set user.* attributes on a group delegated to
    // them): it must not fill the slice.
    fx.running_task("app/tasks/forged-2", Mode::Protect);
    let nobody = nobody();
    std::os::unix::fs::chown(
        fx.root().join("app/tasks/forged-2"),
        Some(nobody.uid.as_raw()),
        Some(nobody.gid.as_raw()),
    )
    .expect("chown");
    fx.memslice(&["protect", "--allow-unprotected", "--", "true"])
        .success();
}

/// A user's own memslice, on a subtree delegated to them, makes its task
/// groups as that user: max_tasks counts those, as root's counts root's.
#[test]
fn max_tasks_holds_for_a_memslice_of_a_users_own() {
    // A user cannot lower oom_score_adj: their protect keeps it at 0.
    let fx = Fixture::new(&CONFIG.replace("max_tasks = 1\n", "max_tasks = 1\noom_score_adj = 0\n"));
    fx.memslice(&["apply"]).success();
    fx.running_task("app/tasks/import-1", Mode::Protect);
    let nobody = nobody();
    let owner = Some(nobody.uid.as_raw());
    for entry in walk(fx.dir.path()) {
        std::os::unix::fs::lchown(&entry, owner, Some(nobody.gid.as_raw())).expect("chown");
    }
    let out = fx
        .command_on(&fx.root())
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .args(["protect", "--", "true"])
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{said}");
    assert!(
        said.contains("1 protected task(s) are running in app/tasks"),
        "{said}"
    );
}

/// `dir` and everything below it.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    if dir.is_dir() && !dir.is_symlink() {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            found.extend(walk(&entry.expect("entry").path()));
        }
    }
    found
}

#[test]
fn protect_refuses_past_max_tasks() {
    let fx = fixture();
    fx.running_task("app/tasks/import-1", Mode::Protect);
    let out = fx.memslice(&["protect", "--", "true"]).code(125);
    assert!(
        stderr(&out).contains(
            "1 protected task(s) are running in app/tasks, the most [protect] max_tasks allows is 1"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        task_groups(&fx),
        ["import-1"],
        "the refused task's group was left behind"
    );
}

#[test]
fn protect_sets_oom_score_adj_or_refuses_to_run_unprotected_as_root() {
    require_root();
    let fx = fixture();
    if has_cap_sys_resource() {
        let out = fx
            .memslice(&["protect", "--", "sh", "-c", "cat /proc/self/oom_score_adj"])
            .success();
        assert_eq!(stdout(&out).trim(), "-1000");
    } else {
        let out = fx.memslice(&["protect", "--", "true"]).code(126);
        assert!(
            stderr(&out).contains("cannot set /proc/self/oom_score_adj"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("--allow-unprotected"),
            "{}",
            stderr(&out)
        );
        let out = fx
            .memslice(&[
                "protect",
                "--allow-unprotected",
                "--",
                "sh",
                "-c",
                "cat /proc/self/oom_score_adj",
            ])
            .success();
        assert!(
            stderr(&out).contains("warning: could not set oom_score_adj"),
            "{}",
            stderr(&out)
        );
    }
    assert!(task_groups(&fx).is_empty());
}

#[test]
fn through_sudo_the_command_runs_as_the_invoking_user_as_root() {
    require_root();
    let fx = fixture();
    let nobody = nobody();
    let out = fx
        .memslice_as_sudo(&nobody, &[], &["run", "--", "id", "-u"])
        .success();
    assert_eq!(stdout(&out).trim(), nobody.uid.to_string());
    // The child became nobody with memslice's memory shared until exec;
    // memslice itself stays root, and removes the group root made.
    assert!(
        task_groups(&fx).is_empty(),
        "the task group outlived the task: {:?}",
        task_groups(&fx)
    );
}

/// A script without a `#!` line goes to /bin/sh, and glibc's execvpe
/// copies argv's pointers onto the stack for it: the stack of the task's
/// process before exec (its own, below a guard page) must hold 800 kB of
/// them here, sixteen times what memslice's own code needs.
#[test]
fn a_script_without_an_interpreter_line_gets_all_its_arguments() {
    let fx = fixture();
    let script = fx.root().join("count-arguments");
    std::fs::write(&script, "echo \"$#\"\n").expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let arguments = 100_000;
    let mut args = vec![
        "run".to_string(),
        "--slice".into(),
        "app/tasks".into(),
        "--".into(),
        script.display().to_string(),
    ];
    args.extend(std::iter::repeat_n("x".to_string(), arguments));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fx.memslice(&args).success();
    assert_eq!(stdout(&out).trim(), arguments.to_string());
}

#[test]
fn through_sudo_a_user_the_policy_does_not_name_is_refused_as_root() {
    require_root();
    let fx = Fixture::new(&CONFIG.replace(
        "users = [\"nobody\"]",
        "users = [\"app\"]\ngroups = [\"importers\"]",
    ));
    fx.memslice(&["apply"]).success();
    let nobody = nobody();
    let out = fx
        .memslice_as_sudo(&nobody, &[], &["protect", "--", "true"])
        .code(125);
    assert!(
        stderr(&out).contains(
            "user nobody may not protect tasks: [protect] users lists app, groups lists importers"
        ),
        "{}",
        stderr(&out)
    );
    let out = fx
        .memslice_as_sudo(&nobody, &[], &["run", "--slice", "app", "--", "true"])
        .code(125);
    assert!(
        stderr(&out).contains("through sudo, tasks may only run in the protect slice app/tasks"),
        "{}",
        stderr(&out)
    );
}

/// What `sh -c SCRIPT` wrote to the file `{out}` names in it, run as a task
/// by a memslice that runs `before_exec` first (in its forked process,
/// before exec): a caller's state the task must not inherit.
///
/// # Safety
/// `before_exec` runs between fork and exec: async-signal-safe calls only.
unsafe fn task_output_after(
    fx: &Fixture,
    script: &str,
    before_exec: fn() -> std::io::Result<()>,
) -> String {
    let out = fx.root().join("task-output");
    let script = script.replace("{out}", &out.display().to_string());
    let mut command = fx.command_on(&fx.root());
    command.args([
        "run",
        "--slice",
        "app/tasks",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    // SAFETY: the caller's promise.
    unsafe {
        command.pre_exec(before_exec);
    }
    let status = command.status().expect("run");
    assert_eq!(status.code(), Some(0));
    std::fs::read_to_string(&out).expect("the task wrote its file")
}

/// Started with descriptors 0, 1 and 2 closed (a careless cron line, a
/// daemon's child), memslice opens them on /dev/null before anything else,
/// as std's start-up would: otherwise its signalfd or the task group's
/// directory would take them, and the task would inherit root's
/// descriptors as its standard input and output.
#[test]
fn a_task_started_with_closed_standard_descriptors_gets_dev_null() {
    fn close_standard() -> std::io::Result<()> {
        for fd in 0..=2 {
            // SAFETY: close(2) is async-signal-safe and touches no memory.
            unsafe { libc::close(fd) };
        }
        Ok(())
    }
    let fx = fixture();
    // SAFETY: close_standard calls close(2) alone.
    let written = unsafe {
        task_output_after(
            &fx,
            "readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2 | cat > {out}",
            close_standard,
        )
    };
    assert_eq!(written, "/dev/null\n/dev/null\n/dev/null\n");
}

/// Signals its caller ignored (nohup's SIGHUP, a shell's SIGINT and
/// SIGQUIT for a background job, real-time ones posix_spawn left ignored)
/// stay ignored across exec: memslice reads which it ignores from
/// /proc/self/status and sets each back for the task.
#[test]
fn a_task_gets_the_signals_its_caller_ignored_back_at_their_default() {
    fn ignore_some() -> std::io::Result<()> {
        // The kernel's struct sigaction: the handler first, SIG_IGN.
        let action: [u64; 4] = [1, 0, 0, 0];
        for signal in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR2,
            33,
            50,
            64,
        ] {
            // SAFETY: rt_sigaction reads `action` and installs no handler.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
            if result != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    let fx = fixture();
    // SAFETY: ignore_some makes rt_sigaction calls alone.
    let written =
        unsafe { task_output_after(&fx, "grep '^SigIgn:' /proc/$$/status > {out}", ignore_some) };
    assert_eq!(written, "SigIgn:\t0000000000000000\n");
}

/// A caller that ignores SIGCHLD (a daemon that does not reap) passes that
/// on across exec: the kernel would then reap memslice's task itself and
/// send no SIGCHLD, and memslice would wait for it forever. memslice sets
/// SIGCHLD back to its default first.
#[test]
fn memslice_started_with_sigchld_ignored_still_sees_its_task_end() {
    fn ignore_sigchld() -> std::io::Result<()> {
        // SAFETY: SIG_IGN installs no handler.
        let previous = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        if previous == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    let fx = fixture();
    let mut command = fx.command_on(&fx.root());
    command.args(["run", "--slice", "app/tasks", "--", "sh", "-c", "exit 7"]);
    // SAFETY: ignore_sigchld calls signal(2) alone.
    unsafe {
        command.pre_exec(ignore_sigchld);
    }
    let mut child = command.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("memslice still waits for its task 20 s after it exited");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(7));
    assert!(task_groups(&fx).is_empty(), "{:?}", task_groups(&fx));
}
