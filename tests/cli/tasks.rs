//! `memslice tasks` and what a task's memslice says when its task is ended
//! from outside, on an emulated root (a listed pid that runs makes a group
//! populated there). Detached work, stalls and a killed supervisor on the
//! real kernel are vagrant/scenarios/6x.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use memslice::spawn::task::{self, Role, Supervisor, TaskRecord};

use crate::fixture::{Fixture, stderr, stdout};

const CONFIG: &str = "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.tasks]\nmemory_max = \"4G\"\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"2G\"\nmax_tasks = 2\nusers = [\"nobody\"]\n";

fn fixture() -> Fixture {
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    fx
}

/// memslice with `args`, in the background, its stderr kept.
fn start(fx: &Fixture, args: &[&str]) -> Child {
    start_env(fx, &[], args)
}

/// [`start`] with variables of its own.
fn start_env(fx: &Fixture, env: &[(&str, &str)], args: &[&str]) -> Child {
    fx.command_on(&fx.root())
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("memslice")
}

fn tasks_json(fx: &Fixture) -> serde_json::Value {
    let out = fx.memslice(&["tasks", "--json"]).success();
    serde_json::from_str(&stdout(&out)).expect("json")
}

/// Waits until `tasks --json` shows `count` tasks, each with its process
/// in place (the group is made and marked before the command moves in).
fn wait_for_tasks(fx: &Fixture, count: usize) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let json = tasks_json(fx);
        let tasks = json["tasks"].as_array().cloned().unwrap_or_default();
        if tasks.len() == count && tasks.iter().all(|t| t["state"] != "empty") {
            return json;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "expected {count} task(s): {json}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(mut child: Child) -> (Option<i32>, String) {
    let status = child.wait().expect("wait");
    let mut text = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut text)
        .expect("read");
    (status.code(), text)
}

#[test]
fn tasks_lists_a_running_task_and_tasks_kill_ends_it_with_a_reason() {
    let fx = fixture();
    assert_eq!(stdout(&fx.memslice(&["tasks"]).success()), "no tasks\n");
    let runner = start(
        &fx,
        &[
            "run",
            "--slice",
            "app/tasks",
            "--name",
            "probe",
            "--",
            "sleep",
            "30",
        ],
    );
    let json = wait_for_tasks(&fx, 1);
    let entry = &json["tasks"][0];
    let group = format!("app/tasks/probe-{}", runner.id());
    assert_eq!(entry["group"], group.as_str(), "{json}");
    assert_eq!(entry["slice"], "app/tasks");
    assert_eq!(entry["name"], "probe");
    assert_eq!(entry["mode"], "run");
    assert_eq!(entry["user"], "root");
    assert_eq!(entry["uid"], 0);
    assert_eq!(entry["command"], "sleep 30");
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["supervisor_pid"], runner.id());
    assert!(entry["started"].is_string(), "{json}");
    assert_eq!(entry["memory_max"], "max");
    let table = stdout(&fx.memslice(&["tasks"]).success());
    assert!(
        table.starts_with("GROUP")
            && table.contains(&group)
            && table.contains("running")
            && table.contains("sleep 30"),
        "{table}"
    );
    let killed = fx.memslice(&["tasks", "kill", "probe"]).success();
    assert_eq!(stdout(&killed), format!("killed {group}\n"));
    let (code, said) = finish(runner);
    assert_eq!(code, Some(137), "{said}");
    assert!(
        said.contains(&format!(
            "{group} was killed by memslice tasks kill, by root"
        )),
        "{said}"
    );
    assert_eq!(wait_for_tasks(&fx, 0)["tasks"], serde_json::json!([]));
}

#[test]
fn tasks_kill_names_what_it_cannot_tell_apart() {
    let fx = fixture();
    let message = stderr(&fx.memslice(&["tasks", "kill", "nothing"]).code(1));
    assert!(
        message.contains("0 task group(s) match \"nothing\""),
        "{message}"
    );
}

#[test]
fn a_kill_from_outside_with_no_reason_is_said_plainly() {
    let fx = fixture();
    let runner = start(
        &fx,
        &[
            "run",
            "--slice",
            "app/tasks",
            "--name",
            "quiet",
            "--",
            "sleep",
            "30",
        ],
    );
    wait_for_tasks(&fx, 1);
    let group = format!("app/tasks/quiet-{}", runner.id());
    memslice::cgroupfs::Root::emulated(fx.root())
        .kill(&group)
        .expect("cgroup.kill by hand");
    let (code, said) = finish(runner);
    assert_eq!(code, Some(137));
    assert!(
        said.contains(
            "the command was killed with SIGKILL from outside memslice, and nobody recorded why"
        ),
        "{said}"
    );
}

#[test]
fn gc_removes_the_empty_groups_a_killed_memslice_left_behind() {
    let fx = fixture();
    let root = memslice::cgroupfs::Root::emulated(fx.root());
    for (group, alive) in [("app/tasks/left-1", false), ("app/tasks/ending-2", true)] {
        root.create(group).expect("create");
        let record = TaskRecord {
            name: "left".into(),
            mode: memslice::spawn::policy::Mode::Protect,
            uid: 1000,
            command: "php import.php".into(),
            started: jiff::Timestamp::now(),
        };
        task::mark(&root, group, &record, true).expect("mark");
        let mut supervisor = Supervisor::this(Role::Foreground);
        if !alive {
            supervisor.start_time += 1;
        }
        task::set_supervisor(&root, group, supervisor).expect("supervisor");
    }
    let json = tasks_json(&fx);
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(
        json["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| t["state"] == "empty"),
        "{json}"
    );
    let out = fx.memslice(&["tasks", "gc"]).success();
    assert_eq!(stdout(&out), "removed app/tasks/left-1\n");
    assert!(root.exists("app/tasks/ending-2"), "its memslice is alive");
    assert_eq!(
        stdout(&fx.memslice(&["tasks", "gc"]).success()),
        "no task group was left behind\n"
    );
}

/// A memslice run in the background, killed and reaped when the test
/// lets go of it, whether the test passed or not.
struct Background(Option<Child>);

impl Background {
    /// Its exit status and stderr, once it ends within `bound`.
    fn finish_within(mut self, bound: Duration) -> (Option<i32>, String) {
        let began = Instant::now();
        let child = self.0.as_mut().expect("a child");
        while child.try_wait().expect("wait").is_none() {
            assert!(
                began.elapsed() < bound,
                "still running after {bound:?} (waiting for the slice's lock?)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        finish(self.0.take().expect("a child"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A protect whose exec blocks until the returned descriptor is written
/// to (a program on a FUSE mount its user serves), once its task shows in
/// `memslice tasks` with its process in place.
fn start_blocked_protect(fx: &Fixture) -> (Background, std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;

    let (gate, opener) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // memslice inherits the end it waits on; the test keeps the other.
    nix::fcntl::fcntl(
        &gate,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("fcntl");
    let gate_fd = gate.as_raw_fd().to_string();
    let blocked = Background(Some(start_env(
        fx,
        &[("MEMSLICE_TEST_EXEC_GATE_FD", &gate_fd)],
        &[
            "protect",
            "--allow-unprotected",
            "--name",
            "blocked",
            "--",
            "true",
        ],
    )));
    drop(gate);
    wait_for_tasks(fx, 1);
    (blocked, opener)
}

/// A second protect started while another's exec blocks, as it ends (within
/// 5 s: the slice's lock would keep it 10 s); the blocked one then ends too.
fn protect_beside_a_blocked_exec(fx: &Fixture) -> (Option<i32>, String) {
    let (blocked, opener) = start_blocked_protect(fx);
    let other = Background(Some(start(
        fx,
        &["protect", "--allow-unprotected", "--", "true"],
    )));
    let second = other.finish_within(Duration::from_secs(5));
    nix::unistd::write(&opener, b"x").expect("open the gate");
    let (code, said) = blocked.finish_within(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{said}");
    second
}

/// memslice waits inside a task's exec, which may block: the slice's lock
/// must be free by then, or every other protect of the slice waits 10 s
/// and gives up.
#[test]
fn a_blocked_exec_holds_no_other_protect_back() {
    let (code, said) = protect_beside_a_blocked_exec(&fixture());
    assert_eq!(code, Some(0), "{said}");
}

/// ... and the blocked task counts all the same: it has its process.
#[test]
fn a_blocked_exec_counts_toward_max_tasks() {
    let fx = Fixture::new(&CONFIG.replace("max_tasks = 2\n", "max_tasks = 1\n"));
    fx.memslice(&["apply"]).success();
    let (code, said) = protect_beside_a_blocked_exec(&fx);
    assert_eq!(code, Some(125), "{said}");
    assert!(
        said.contains("1 protected task(s) are running in app/tasks"),
        "{said}"
    );
}

#[test]
fn max_tasks_holds_when_protects_start_at_once() {
    let fx = fixture();
    let runs: Vec<Child> = (0..6)
        .map(|_| start(&fx, &["protect", "--allow-unprotected", "--", "sleep", "2"]))
        .collect();
    let mut ran = 0;
    let mut refused = 0;
    for run in runs {
        let (code, said) = finish(run);
        match code {
            Some(0) => ran += 1,
            Some(125) if said.contains("the most [protect] max_tasks allows is 2") => refused += 1,
            other => panic!("{other:?}: {said}"),
        }
    }
    assert_eq!((ran, refused), (2, 4), "max_tasks = 2 let {ran} run");
}
