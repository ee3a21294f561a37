//! The cgroupfs driver's ways into a slice: `exec`, `move` and the PAM
//! session hook, on an emulated root (where a move is a pid written to a
//! group's list). What the kernel makes of them is in the VM scenario
//! vagrant/scenarios/35-footprint.sh.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::fixture::{Fixture, nobody, stderr, stdout};

const CONFIG: &str = "[node]\nmemory = \"16G\"\n[slice.ops]\nmemory_min = \"256M\"\n[slice.app]\nmemory_max = \"8G\"\nusers = [\"nobody\"]\n[slice.app.web]\n[slice.app.cron]\n[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"2G\"\nmax_tasks = 1\n";

fn applied() -> Fixture {
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    fx
}

fn pids(fx: &Fixture, group: &str) -> Vec<u32> {
    fx.read(group, "cgroup.procs")
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

#[test]
fn exec_moves_itself_into_the_leaf_then_becomes_the_command() {
    let fx = applied();
    for (slice, group) in [("app", "app/sessions"), ("app/cron", "app/cron")] {
        let out = fx.memslice(&["exec", "--slice", slice, "--", "sh", "-c", "echo $$"]);
        let pid: u32 = stdout(&out.success()).trim().parse().expect("a pid");
        assert_eq!(
            pids(&fx, group),
            [pid],
            "{slice}: the command is memslice itself"
        );
    }
    let missing = fx.memslice(&["exec", "--slice", "app/cron", "--", "no-such-program-here"]);
    assert!(stderr(&missing.code(127)).contains("cannot run no-such-program-here"));
    let text = fx.dir.path().join("not-a-program");
    std::fs::write(&text, "data\n").expect("write");
    let denied = fx.memslice(&[
        "exec",
        "--slice",
        "app/cron",
        "--",
        text.to_str().expect("utf8"),
    ]);
    denied.code(126);
}

#[test]
fn exec_and_move_refuse_what_is_no_leaf() {
    let fx = applied();
    let before = fx.snapshot();
    for (slice, message) in [
        (
            "app/web/php",
            "slice \"app/web/php\" is not in the config; known slices: ops, app, app/web, app/cron, app/tasks",
        ),
        (
            "app/tasks",
            "slice app/tasks holds the groups of protected tasks, one per task: start a command there with `memslice run` or `memslice protect`",
        ),
    ] {
        let out = fx
            .memslice(&["exec", "--slice", slice, "--", "true"])
            .code(125);
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        let me = std::process::id().to_string();
        let out = fx.memslice(&["move", "--slice", slice, &me]).code(2);
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
    let parent = "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.web]\n";
    let fx2 = Fixture::new(parent);
    let out = fx2
        .memslice(&["exec", "--slice", "app", "--", "true"])
        .code(125);
    assert!(
        stderr(&out).contains("slice app has child slices, and cgroup v2 keeps processes in leaf groups only: name one of them (app/web)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, fx.snapshot(), "nothing moved");
}

#[test]
fn move_places_running_processes_and_refuses_one_that_is_not() {
    let fx = applied();
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = sleeper.id().to_string();
    let before = fx.snapshot();
    let out = fx
        .memslice(&["move", "--slice", "app/web", &pid, "4294967295"])
        .code(2);
    assert!(
        stderr(&out).contains("no process 4294967295: it is not running; nothing was moved"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, fx.snapshot(), "all or nothing");
    let out = stdout(&fx.memslice(&["move", "--slice", "app/web", &pid]).success());
    assert_eq!(out, format!("moved {pid} (sleep) to app/web\n"));
    assert_eq!(pids(&fx, "app/web"), [sleeper.id()]);
    let out = stdout(&fx.memslice(&["move", "--slice", "app", &pid]).success());
    assert_eq!(out, format!("moved {pid} (sleep) to app/sessions\n"));
    assert!(pids(&fx, "app/web").is_empty(), "it left its old group");
    fx.memslice(&["move", "--slice", "app", "0"]).code(2);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// A process picks its own name (its program's file name): `move` writes
/// an escape sequence in it out instead of sending it to root's terminal.
#[test]
fn move_writes_out_control_characters_in_a_process_name() {
    let fx = applied();
    let named = fx.dir.path().join("\x1b[2Kevil");
    std::os::unix::fs::symlink("/bin/sleep", &named).expect("symlink");
    let mut sleeper = Command::new(&named).arg("30").spawn().expect("sleep");
    let pid = sleeper.id().to_string();
    // spawn returns once the exec is under way, maybe before the rename.
    let comm = format!("/proc/{pid}/comm");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&comm).unwrap_or_default() != "\x1b[2Kevil\n" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "never renamed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = stdout(&fx.memslice(&["move", "--slice", "app/web", &pid]).success());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out, format!("moved {pid} (\\x1b[2Kevil) to app/web\n"));
}

#[test]
fn exec_and_move_are_roots_alone() {
    let fx = applied();
    let nobody = nobody();
    for (args, code) in [
        (vec!["exec", "--slice", "app/cron", "--", "true"], 125),
        (vec!["move", "--slice", "app/cron", "1"], 2),
    ] {
        let name = args[0];
        let shown = format!(
            "through sudo, only `memslice protect` and `memslice run` are allowed, not `memslice {name}`"
        );
        let out = fx.memslice_as_sudo(&nobody, &[], &args).code(code);
        assert!(stderr(&out).contains(&shown), "{}", stderr(&out));
    }
    // Run by nobody itself, with a config nobody may read.
    std::fs::set_permissions(fx.dir.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
    for (args, code, message) in [
        (
            vec!["exec", "--slice", "app/cron", "--", "true"],
            125,
            "memslice exec needs root",
        ),
        (
            vec!["move", "--slice", "app/cron", "1"],
            2,
            "memslice move needs root",
        ),
    ] {
        let out = fx
            .command_on(&fx.root())
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .args(&args)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{text}");
        assert!(text.contains(message), "{text}");
    }
}

/// `memslice pam-session` as pam_exec runs it: a child of the process
/// that opens the session (here a shell, which then prints its pid), with
/// PAM_USER and PAM_TYPE set, the fixed paths moved by the test build's
/// variables, and `hostile` added to its environment.
fn pam_session(fx: &Fixture, user: &str, hostile: &[(&str, &str)]) -> (std::process::Output, u32) {
    let out = Command::new("sh")
        .args(["-c", "\"$0\" pam-session; echo \"status $? pid $$\""])
        .arg(env!("CARGO_BIN_EXE_memslice"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PAM_TYPE", "open_session")
        .env("PAM_USER", user)
        .env("MEMSLICE_TEST_CONFIG", fx.config())
        .env("MEMSLICE_TEST_CGROUP_ROOT", fx.root())
        .env(
            "MEMSLICE_TEST_RUN_SYSTEMD",
            fx.dir.path().join("no-systemd"),
        )
        .env("MEMSLICE_TEST_DEV_LOG", fx.dir.path().join("log"))
        .envs(hostile.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid = text
        .trim()
        .strip_prefix("status 0 pid ")
        .unwrap_or_else(|| panic!("the hook did not exit 0: {text}"))
        .parse()
        .expect("pid");
    (out, pid)
}

#[test]
fn the_pam_hook_places_the_sessions_process_and_nothing_else() {
    let fx = applied();
    // What a user may put in the PAM environment counts for nothing.
    let hostile = [
        ("MEMSLICE_CONFIG", "/nonexistent.toml"),
        ("MEMSLICE_CGROUP_ROOT", "/nonexistent"),
        ("MEMSLICE_DRIVER", "docker"),
        ("SUDO_UID", "65534"),
    ];
    let (_, shell) = pam_session(&fx, "nobody", &hostile);
    assert_eq!(pids(&fx, "app/sessions"), [shell]);
    // Empty ones too: clap refused them, before memslice ran (exit 2).
    let empty = [("MEMSLICE_CONFIG", ""), ("MEMSLICE_CGROUP_ROOT", "")];
    let (_, other) = pam_session(&fx, "nobody", &empty);
    assert_eq!(pids(&fx, "app/sessions"), [shell, other]);
    let before = fx.snapshot();
    let (out, _) = pam_session(&fx, "root", &[]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        before,
        fx.snapshot(),
        "root's sessions belong to no slice here"
    );
}

#[test]
fn a_session_the_hook_cannot_place_goes_on_and_is_logged() {
    let fx = Fixture::new(CONFIG);
    let log = UnixDatagram::bind(fx.dir.path().join("log")).expect("log socket");
    log.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    // A TZ the user set to a FIFO held the hook until its deadline, and
    // the line was never logged.
    let fifo = fx.dir.path().join("zone");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let (out, shell) = pam_session(&fx, "nobody", &[("TZ", fifo.to_str().expect("utf8"))]);
    let mut line = [0u8; 2048];
    let size = log.recv(&mut line).expect("a log line");
    let line = String::from_utf8_lossy(&line[..size]);
    assert!(line.starts_with("<84>"), "authpriv.warning: {line}");
    assert!(line.contains(" memslice["), "{line}");
    assert!(
        line.contains(&format!(
            "pam-session: the session of nobody (pid {shell}) stays outside its slice: "
        )) && line.contains("app/sessions"),
        "{line}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stays outside its slice"),
        "and on stderr, for pam_exec's log="
    );
}

#[test]
fn the_shipped_pam_line_runs_the_hook_without_failing_a_login() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/pam.d/memslice"))
            .expect("dist/pam.d/memslice");
    let lines: Vec<&str> = shipped
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .collect();
    let [line] = lines.as_slice() else {
        panic!("one PAM line: {lines:?}");
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[..3],
        ["session", "optional", "pam_exec.so"],
        "{line}"
    );
    for option in ["seteuid", "type=open_session"] {
        assert!(fields.contains(&option), "{line}");
    }
    assert_eq!(
        &fields[fields.len() - 2..],
        ["/usr/bin/memslice", "pam-session"]
    );
    let help = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .args(["pam-session", "--help"])
        .output()
        .expect("run");
    assert!(help.status.success(), "pam-session exists");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains(line.trim()),
        "--help shows the shipped line"
    );
}

#[test]
fn the_hook_leaves_systemds_tree_to_logind_and_never_writes_into_it() {
    let fx = applied();
    std::fs::write(
        fx.root().join(memslice::cgroupfs::emulated::SYSTEMD_TREE),
        "",
    )
    .expect("marker");
    let booted = fx.systemd_booted();
    let booted = booted.to_str().expect("utf8");
    let before = fx.snapshot();
    // auto: systemd's driver, where logind places sessions.
    let (out, _) = pam_session(&fx, "nobody", &[("MEMSLICE_TEST_RUN_SYSTEMD", booted)]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cgroupfs asked for on systemd's tree: not placed, and said why.
    std::fs::write(
        fx.config(),
        CONFIG.replace("[node]", "[node]\ndriver = \"cgroupfs\""),
    )
    .expect("config");
    let (out, _) = pam_session(&fx, "nobody", &[("MEMSLICE_TEST_RUN_SYSTEMD", booted)]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stays outside its slice: ")
            && String::from_utf8_lossy(&out.stderr).contains("is systemd's tree"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, fx.snapshot(), "nothing written into systemd's tree");
}
