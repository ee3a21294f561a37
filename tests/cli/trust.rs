//! The trust boundary, tried as a hostile app user would with the sudoers
//! rule `app ALL=(root) NOPASSWD: /usr/bin/memslice protect *`, and as a
//! root that runs memslice where other users can write. Each refusal is
//! asserted with its message; real sudo, PAM and the kernel's view of the
//! task are proven in the systemd VM (vagrant/systemd/30-sudo-boundary.sh).
//!
//! These tests need root (the suite runs as root, as CI does): sudo is
//! what hands memslice root, and ownership rules only bind root.

use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::fixture::{Fixture, nobody, stderr, stdout};

const CONFIG: &str = "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.tasks]\nmemory_max = \"4G\"\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"2G\"\nmax_tasks = 2\nusers = [\"nobody\"]\n";

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the trust tests need root (sudo hands memslice root; ownership rules bind root only); run the suite as root, as CI does"
    );
}

fn fixture() -> Fixture {
    require_root();
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    fx
}

/// Runs memslice through "sudo" and asserts it refused with `message`,
/// exit `code`, and changed nothing under the root.
fn refused_through_sudo(
    fx: &Fixture,
    env: &[(&str, &str)],
    args: &[&str],
    code: i32,
    message: &str,
) {
    let before = fx.snapshot();
    let out = fx.memslice_as_sudo(&nobody(), env, args).code(code);
    assert!(
        stderr(&out).contains(message),
        "{args:?} with {env:?}: expected {message:?} in: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "a refused command printed: {}",
        stdout(&out)
    );
    assert_eq!(before, fx.snapshot(), "{args:?}: a refusal wrote something");
}

#[test]
fn through_sudo_global_options_are_refused_and_named() {
    let fx = fixture();
    let elsewhere = fx.dir.path().join("mine.toml");
    std::fs::write(&elsewhere, CONFIG.replace("2G", "1T")).expect("write");
    let mine = elsewhere.to_str().expect("utf8");
    let root = fx.root();
    let root = root.to_str().expect("utf8");
    for (args, named) in [
        (
            vec!["--config", mine, "protect", "--", "true"],
            "--config is refused",
        ),
        (
            vec!["protect", "--config", mine, "--", "true"],
            "--config is refused",
        ),
        (
            vec!["--cgroup-root", root, "protect", "--", "true"],
            "--cgroup-root is refused",
        ),
        (
            vec!["--driver", "systemd", "protect", "--", "true"],
            "--driver is refused",
        ),
        (
            vec!["--unit-dir", "/tmp", "protect", "--", "true"],
            "--unit-dir is refused",
        ),
        (vec!["-v", "protect", "--", "true"], "--verbose is refused"),
        (
            vec!["protect", "--user", "root", "--", "true"],
            "--user is refused",
        ),
        (
            vec!["--config", mine, "--cgroup-root", root, "run", "--", "true"],
            "--config, --cgroup-root are refused",
        ),
    ] {
        refused_through_sudo(&fx, &[], &args, 125, named);
    }
}

#[test]
fn through_sudo_memslice_variables_are_refused_and_named() {
    let fx = fixture();
    let mine = fx.dir.path().join("mine.toml");
    let mine = mine.to_str().expect("utf8");
    for (env, named) in [
        (vec![("MEMSLICE_CONFIG", mine)], "--config is refused"),
        (vec![("MEMSLICE_DRIVER", "systemd")], "--driver is refused"),
        (
            vec![("MEMSLICE_LOG", "debug")],
            "the environment variable MEMSLICE_LOG is refused",
        ),
        (
            vec![("MEMSLICE_SYSTEMD_RUN", "/tmp/evil"), ("MEMSLICE_X", "1")],
            "the environment variables MEMSLICE_SYSTEMD_RUN, MEMSLICE_X are refused",
        ),
    ] {
        refused_through_sudo(&fx, &env, &["protect", "--", "true"], 125, named);
    }
}

#[test]
fn through_sudo_only_tasks_may_start() {
    let fx = fixture();
    for (command, shown) in [
        (vec!["apply"], "apply"),
        (vec!["plan"], "plan"),
        (vec!["status"], "status"),
        (vec!["heal", "check", "--dry-run"], "heal check"),
        (vec!["heal", "reset"], "heal reset"),
        (vec!["metrics"], "metrics"),
        (vec!["events"], "events"),
        (vec!["doctor"], "doctor"),
        (vec!["move", "--slice", "app", "1"], "move"),
    ] {
        refused_through_sudo(
            &fx,
            &[],
            &command,
            2,
            &format!(
                "through sudo, only `memslice protect` and `memslice run` are allowed, not `memslice {shown}`"
            ),
        );
    }
}

#[test]
fn through_sudo_the_group_must_be_one_of_the_users_own() {
    let fx = fixture();
    let nobody = nobody();
    let before = fx.snapshot();
    let out = fx
        .memslice_as_sudo(&nobody, &[("SUDO_GID", "0")], &["protect", "--", "true"])
        .code(125);
    assert!(
        stderr(&out).contains("SUDO_GID=0 is not a group of nobody"),
        "{}",
        stderr(&out)
    );
    let out = fx
        .memslice_as_sudo(
            &nobody,
            &[("SUDO_UID", "nobody")],
            &["protect", "--", "true"],
        )
        .code(125);
    assert!(
        stderr(&out).contains("SUDO_UID=\"nobody\" set by sudo is not a number"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, fx.snapshot());
}

#[test]
fn through_sudo_the_task_gets_the_users_identity_environment_and_a_clean_start() {
    let fx = fixture();
    let nobody = nobody();
    let script = "echo \"id $(id -u) $(id -g) $(id -G)\"; \
                  echo \"home $HOME user $USER logname $LOGNAME shell $SHELL\"; \
                  env | grep -E '^(MEMSLICE|SUDO)_' | sed 's/^/leaked /'; \
                  grep -E '^(SigIgn|SigBlk|CapEff):' /proc/self/status; \
                  echo \"fds $(ls /proc/self/fd | sort -n | tr '\\n' ' ')\"; \
                  echo \"pipe $(yes 2>&1 | head -c1)\"";
    let out = fx
        .memslice_as_sudo(
            &nobody,
            &[("MEMSLICE_TEST_UNUSED", "test-only")],
            // `run`: this host may lack CAP_SYS_RESOURCE for protect's
            // -1000; the child's set-up is the same, and the VM proves protect.
            &["run", "--", "sh", "-c", script],
        )
        .success();
    let text = stdout(&out);
    let gid = nobody.gid.as_raw();
    assert!(
        text.contains(&format!("id {} {gid} {gid}\n", nobody.uid)),
        "identity: {text}"
    );
    assert!(
        text.contains(&format!(
            "home {} user nobody logname nobody shell {}\n",
            nobody.dir.display(),
            nobody.shell.display()
        )),
        "environment: {text}"
    );
    assert!(
        !text.contains("leaked "),
        "memslice's or sudo's variables reached the task: {text}"
    );
    assert!(
        text.contains("SigIgn:\t0000000000000000\n"),
        "ignored signals: {text}"
    );
    assert!(
        text.contains("SigBlk:\t0000000000000000\n"),
        "blocked signals: {text}"
    );
    assert!(
        text.contains("CapEff:\t0000000000000000\n"),
        "capabilities: {text}"
    );
    // What the caller passed, as a child of this test sees it (ls holds
    // one descriptor on /proc/self/fd itself).
    let direct = Command::new("sh")
        .args([
            "-c",
            "echo \"fds $(ls /proc/self/fd | sort -n | tr '\\n' ' ')\"",
        ])
        .output()
        .expect("sh");
    let passed = String::from_utf8_lossy(&direct.stdout).into_owned();
    assert!(passed.starts_with("fds 0 1 2 3 "), "{passed}");
    assert!(
        text.contains(&passed),
        "descriptors beyond the caller's {passed}: {text}"
    );
    assert!(
        text.contains("pipe y\n"),
        "SIGPIPE was not at its default: {text}"
    );
    assert!(
        !stderr(&out).contains("Broken pipe"),
        "SIGPIPE was ignored: {}",
        stderr(&out)
    );
}

#[test]
fn root_reads_no_config_another_user_can_change() {
    let fx = fixture();
    let before = fx.snapshot();
    let config = fx.config();
    let check = |what: &str, message: &str| {
        let out = fx.memslice(&["apply"]).code(2);
        assert!(
            stderr(&out).contains(message),
            "{what}: expected {message:?} in: {}",
            stderr(&out)
        );
        assert_eq!(before, fx.snapshot(), "{what}: something was written");
    };
    chown(&config, Some(nobody().uid.as_raw()), None).expect("chown");
    check(
        "a config owned by another user",
        "it is a file owned by uid 65534 (nobody) with mode 0644",
    );
    chown(&config, Some(0), None).expect("chown");
    std::fs::set_permissions(&config, PermissionsExt::from_mode(0o664)).expect("chmod");
    check(
        "a group-writable config",
        "it is a file owned by uid 0 (root) with mode 0664",
    );
    std::fs::set_permissions(&config, PermissionsExt::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(fx.dir.path(), PermissionsExt::from_mode(0o1777)).expect("chmod");
    check(
        "a config in a sticky world-writable directory",
        "it is a directory owned by uid 0 (root) with mode 1777",
    );
    std::fs::set_permissions(fx.dir.path(), PermissionsExt::from_mode(0o700)).expect("chmod");
    fx.memslice(&["plan"]).success();
}

#[test]
fn root_does_not_follow_a_link_into_a_directory_others_can_write() {
    let fx = fixture();
    let open = fx.dir.path().join("shared");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).expect("chmod");
    std::fs::rename(fx.config(), open.join("slices.toml")).expect("move");
    symlink(open.join("slices.toml"), fx.config()).expect("symlink");
    let out = fx.memslice(&["plan"]).code(2);
    assert!(
        stderr(&out).contains("/shared: it is a directory owned by uid 0 (root) with mode 0777"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_config_is_never_taken_from_the_working_directory() {
    require_root();
    let fx = Fixture::new(CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .env_remove("MEMSLICE_CONFIG")
        .env_remove("MEMSLICE_TEST_CONFIG")
        .current_dir(fx.dir.path())
        .args(["--cgroup-root", fx.root().to_str().expect("utf8"), "plan"])
        .output()
        .expect("run");
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains("cannot read /etc/memslice/slices.toml"),
        "the default is not /etc/memslice/slices.toml: {message}"
    );
}

#[test]
fn a_setuid_copy_refuses_to_run() {
    require_root();
    // Not under /tmp, which may be mounted nosuid.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let copy = dir.path().join("memslice");
    std::fs::copy(env!("CARGO_BIN_EXE_memslice"), &copy).expect("copy");
    std::fs::set_permissions(&copy, PermissionsExt::from_mode(0o4755)).expect("chmod u+s");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
    let nobody = nobody();
    let out = Command::new(&copy)
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .env("SUDO_UID", "0")
        .args(["protect", "--", "true"])
        .output()
        .expect("run");
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{message}");
    assert!(
        message.contains("memslice runs setuid or setgid here (real uid 65534, effective uid 0"),
        "{message}"
    );
}

/// Any user who can open a directory can flock it. memslice's locks are
/// root's own files, so a hold on the slice's or the root's directory
/// stops neither a protect nor an apply (they waited 10 s and 30 s for it,
/// then gave up).
#[test]
fn a_hold_on_the_slice_or_the_root_directory_blocks_no_protect_or_apply() {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::MetadataExt;
    let fx = fixture();
    let hold = |dir: std::path::PathBuf| {
        Flock::lock(
            std::fs::File::open(&dir).expect("open"),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap_or_else(|(_, errno)| panic!("flock {}: {errno}", dir.display()))
    };
    let _slice = hold(fx.root().join("app/tasks"));
    let _tree = hold(fx.root());
    let started = std::time::Instant::now();
    fx.memslice(&["protect", "--allow-unprotected", "--", "true"])
        .success();
    fx.memslice(&["apply"]).success();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "held up for {:?}",
        started.elapsed()
    );
    let dir = std::fs::metadata(fx.locks()).expect("the lock directory");
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o700));
    let locks: Vec<std::fs::Metadata> = std::fs::read_dir(fx.locks())
        .expect("read_dir")
        .map(|entry| entry.expect("entry").metadata().expect("stat"))
        .collect();
    assert_eq!(locks.len(), 2, "the tree's lock and the slice's");
    for lock in locks {
        assert_eq!((lock.uid(), lock.mode() & 0o7777), (0, 0o600));
    }
}

/// The stall hook runs as root from the supervisor of a task that the app
/// user started through sudo: it gets a fixed PATH, nothing else of that
/// user's environment, and / as its working directory. Before, a `sh`
/// first in the user's PATH ran as root.
#[test]
fn a_stall_hook_run_for_a_task_started_through_sudo_gets_no_part_of_the_callers_environment() {
    let fx = fixture();
    let dir = fx.dir.path();
    let heard = dir.join("heard");
    std::fs::write(
        fx.config(),
        CONFIG.replace("max_tasks = 2\n", "max_tasks = 2\nstall_timeout = \"10s\"\n")
            + &format!(
                "[heal]\nstate_file = \"{}\"\nlock_file = \"{}\"\nnotify_events = [\"stall\"]\nnotify = [\"sh\", \"-c\", \"(env; pwd) > {}.new && mv {}.new {}\"]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n",
                dir.join("state/heal.state").display(),
                dir.join("heal.lock").display(),
                heard.display(),
                heard.display(),
                heard.display(),
            ),
    )
    .expect("config");
    // The caller's own sh, first in its PATH, and its working directory.
    let theirs = dir.join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    let planted = dir.join("planted-sh-ran");
    std::fs::write(
        theirs.join("sh"),
        format!("#!/bin/sh\ntouch {}\n", planted.display()),
    )
    .expect("their sh");
    std::fs::set_permissions(theirs.join("sh"), PermissionsExt::from_mode(0o755)).expect("chmod");
    let nobody = nobody();
    let mut supervisor = fx
        .command_as_sudo(&nobody)
        .env("PATH", format!("{}:/usr/bin:/bin", theirs.display()))
        .env("THEIR_VARIABLE", "1")
        .current_dir(&theirs)
        .args(["protect", "--allow-unprotected", "--", "sleep", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("said")).expect("said"))
        .spawn()
        .expect("memslice");
    let said = || std::fs::read_to_string(dir.join("said")).unwrap_or_default();
    let tasks = fx.root().join("app/tasks");
    let started = std::time::Instant::now();
    let mut ooms = 0;
    // OOM events and no kill: the task stalls at its cap until the bound ends it.
    let ended = loop {
        if let Some(status) = supervisor.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "the stall bound did not end the task: {}",
            said()
        );
        if let Some(group) = std::fs::read_dir(&tasks)
            .expect("read_dir")
            .map(|entry| entry.expect("entry").path())
            .find(|path| path.is_dir())
        {
            ooms += 1;
            std::fs::write(
                group.join("memory.events"),
                format!("low 0\nhigh 0\nmax {ooms}\noom {ooms}\noom_kill 0\noom_group_kill 0\n"),
            )
            .expect("memory.events");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(!ended.success(), "the stalled task was ended: {ended}");
    let said = std::fs::read_to_string(&heard)
        .unwrap_or_else(|err| panic!("the hook did not run ({err}): {}", said()));
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{said}"
    );
    assert_eq!(lines.last(), Some(&"/"), "its working directory: {said}");
    assert!(
        !said.contains("THEIR_VARIABLE") && !said.contains("SUDO_"),
        "{said}"
    );
    assert!(!planted.exists(), "root ran the caller's sh");
}
