//! `heal check` / `heal watch` end to end on an emulated root, with command
//! probes the test controls. The kernel side (a real hog, a real service)
//! is the VM scenario 100-heal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, stderr, stdout};

/// A config whose web probe passes while `up` exists, restarts by
/// creating `up`, and kills app/tasks after `grace`.
fn heal_config(dir: &Path, grace: &str) -> String {
    let up = dir.join("up");
    format!(
        "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.web]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n\
         [heal]\nstate_file = \"{state}\"\nlock_file = \"{lock}\"\nfailures_before_down = 1\ngrace_day = \"{grace}\"\ngrace_night = \"{grace}\"\n\
         timezone = \"UTC\"\ninterval = \"100ms\"\nprotected = [\"app/tasks\"]\n\
         [[heal.service]]\nname = \"web\"\ncommand = [\"test\", \"-e\", \"{up}\"]\nrestart_command = [\"touch\", \"{up}\"]\n",
        state = dir.join("state/heal.state").display(),
        lock = dir.join("heal.lock").display(),
        up = up.display(),
    )
}

fn fixture(grace: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = Fixture::new(&heal_config(dir.path(), grace));
    // The config names paths in `dir`; keep them inside the fixture's own dir.
    let text = heal_config(fx.dir.path(), grace);
    std::fs::write(fx.config(), text).expect("config");
    fx.memslice(&["apply"]).success();
    fx
}

fn state(fx: &Fixture) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fx.dir.path().join("state/heal.state")).expect("state file"),
    )
    .expect("json")
}

#[test]
fn past_the_grace_it_kills_the_protected_tasks_and_restarts() {
    let fx = fixture("0s");
    let mut task = Command::new("sleep").arg("60").spawn().expect("sleep");
    fx.write("app/tasks", "cgroup.procs", &task.id().to_string());
    let out = fx.memslice(&["heal", "check"]).success();
    assert_eq!(
        stdout(&out),
        "acted: web down for 0s, past the 0s day grace: killing protected tasks and restarting\n  killed: app/tasks; restarted: web\n"
    );
    assert!(
        stderr(&out).contains("acted:"),
        "the decision is logged: {}",
        stderr(&out)
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&task.wait().expect("wait")),
        Some(9)
    );
    assert!(
        fx.dir.path().join("up").exists(),
        "restart command did not run"
    );
    let record = state(&fx);
    assert_eq!(record["last_action"]["killed"][0], "app/tasks");
    assert_eq!(record["last_action"]["restarted"][0], "web");
    let out = fx.memslice(&["heal", "check"]).success();
    assert_eq!(stdout(&out), "up: all 1 service(s) pass\n");
    assert!(state(&fx)["down_since"].is_null());
}

#[test]
fn within_the_grace_it_waits_and_the_downtime_survives_restarts() {
    let fx = fixture("1h");
    let first = fx.memslice(&["heal", "check"]).success();
    assert_eq!(
        stdout(&first),
        "down: web down for 0s; day grace 1h not over\n"
    );
    let since = state(&fx)["down_since"].clone();
    assert!(since.is_string(), "{since}");
    std::thread::sleep(Duration::from_millis(1100));
    let out = fx.memslice(&["heal", "check", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        report["verdict"]["down_since"], since,
        "a new process continued the same outage"
    );
    assert!(
        report["verdict"]["down_for_seconds"]
            .as_u64()
            .expect("secs")
            >= 1
    );
    assert_eq!(report["verdict"]["grace_seconds"], 3600);
    assert_eq!(report["verdict"]["act"], false);
    assert_eq!(report["probes"][0]["ok"], false);
    assert!(report["actions"].is_null());
}

#[test]
fn dry_run_decides_without_acting_or_writing() {
    let fx = fixture("0s");
    let mut task = Command::new("sleep").arg("60").spawn().expect("sleep");
    fx.write("app/tasks", "cgroup.procs", &task.id().to_string());
    let out = fx.memslice(&["heal", "check", "--dry-run"]).success();
    assert!(
        stdout(&out).starts_with("would act: web down"),
        "{}",
        stdout(&out)
    );
    assert!(
        task.try_wait().expect("try_wait").is_none(),
        "dry run killed the task"
    );
    assert!(!fx.dir.path().join("up").exists());
    assert!(
        !fx.dir.path().join("state/heal.state").exists(),
        "dry run wrote the state file"
    );
    task.kill().expect("kill");
    task.wait().expect("reap");
}

#[test]
fn a_corrupt_state_file_is_reported_and_treated_as_unknown() {
    let fx = fixture("0s");
    std::fs::create_dir_all(fx.dir.path().join("state")).expect("dir");
    std::fs::write(
        fx.dir.path().join("state/heal.state"),
        "{\"down_since\": 12",
    )
    .expect("garbage");
    std::fs::write(fx.dir.path().join("up"), "").expect("up");
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(
        stderr(&out).contains("state file unusable"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "up: all 1 service(s) pass\n");
    assert!(
        state(&fx)["failures"].is_object(),
        "a good record replaced the corrupt one"
    );
}

#[test]
fn a_second_run_waits_for_the_lock_then_gives_up() {
    let fx = fixture("0s");
    let lock = std::fs::File::create(fx.dir.path().join("heal.lock")).expect("lock file");
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
    let started = Instant::now();
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(
        stderr(&out).contains("another process holds")
            && stderr(&out).contains("past the wait; this check did nothing"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "it should wait briefly first"
    );
    assert!(
        !fx.dir.path().join("up").exists(),
        "it acted without the lock"
    );
    drop(held);
}

/// A running `heal watch`, its log read line by line.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    fn start(fx: &Fixture, extra: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_memslice"))
            .arg("--config")
            .arg(fx.config())
            .arg("--cgroup-root")
            .arg(fx.root())
            .args(["heal", "watch"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("watch");
        let (sender, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Watch { child, lines }
    }

    /// Waits for `count` log lines containing `text`.
    fn expect_lines(&mut self, text: &str, count: usize) -> String {
        let mut seen = 0;
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(text) => {
                    seen += 1;
                    if seen == count {
                        return line;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let _ = self.child.kill();
                    panic!("after {seen} lines with {text:?}: {err}");
                }
            }
        }
    }

    /// SIGTERM, then the exit status and whether the stop was logged.
    fn stop(mut self) -> (std::process::ExitStatus, bool) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
        let status = self.child.wait().expect("wait");
        let logged = std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok())
            .any(|line| line.contains("heal watch stopping"));
        (status, logged)
    }
}

#[test]
fn heal_watch_repeats_and_stops_cleanly_on_sigterm() {
    let fx = fixture("1h");
    let mut watch = Watch::start(&fx, &[]);
    watch.expect_lines("day grace 1h not over", 3);
    let (status, logged) = watch.stop();
    assert!(status.success(), "{status}");
    assert!(logged, "the stop was not logged");
}

#[test]
fn heal_watch_logs_the_kills_that_came_just_before_its_stop() {
    let fx = fixture("1h");
    let mut watch = Watch::start(&fx, &[]);
    watch.expect_lines("day grace 1h not over", 1);
    // Held still, the watcher finds the kills and SIGTERM ready in one look.
    let pid = nix::unistd::Pid::from_raw(watch.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
    oom_kills(&fx, "app/web", 2);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("term");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("cont");
    let status = watch.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let lines: Vec<String> =
        std::iter::from_fn(|| watch.lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
    let event = lines
        .iter()
        .position(|line| line.contains("memory event:") && line.contains("app/web oom_kill +2"));
    let stop = lines
        .iter()
        .position(|line| line.contains("heal watch stopping"));
    assert!(
        matches!((event, stop), (Some(e), Some(s)) if e < s),
        "the kills are logged, then the stop: {lines:#?}"
    );
}

#[test]
fn heal_watch_serving_metrics_stops_cleanly_and_counts_a_busy_lock() {
    let fx = fixture("1h");
    let lock = std::fs::File::create(fx.dir.path().join("heal.lock")).expect("lock file");
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut watch = Watch::start(&fx, &["--metrics-addr", &addr]);
    let line = watch.expect_lines("past the wait; this check was skipped", 1);
    assert!(
        line.contains("ERROR"),
        "a busy lock is logged at error level: {line}"
    );
    let mut scrape = std::net::TcpStream::connect(&addr).expect("connect");
    std::io::Write::write_all(&mut scrape, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut scrape, &mut answer).expect("read");
    let busy: u64 = answer
        .lines()
        .find_map(|l| l.strip_prefix("memslice_heal_decisions_total{decision=\"lock_busy\"} "))
        .unwrap_or_else(|| panic!("no lock_busy count: {answer}"))
        .parse()
        .expect("a count");
    assert!(busy >= 1, "{answer}");
    drop(held);
    watch.expect_lines("day grace 1h not over", 1);
    let (status, logged) = watch.stop();
    assert!(
        status.success(),
        "with the metrics thread running, SIGTERM must stop the watcher cleanly: {status}"
    );
    assert!(logged, "the stop was not logged");
}

#[test]
fn heal_without_a_heal_section_says_so() {
    let fx = Fixture::new("[slice.app]\n");
    let out = fx.memslice(&["heal", "check"]).code(1);
    assert!(
        stderr(&out).contains("the config has no [heal] section"),
        "{}",
        stderr(&out)
    );
}

/// The web probe never passes and its restart does nothing: a service that
/// never comes back.
fn never_back(fx: &Fixture, extra: &str) {
    let text = heal_config(fx.dir.path(), "0s")
        .replace(
            "restart_command = [\"touch\"",
            "restart_command = [\"true\", \"touch\"",
        )
        .replace("[heal]\n", &format!("[heal]\n{extra}"));
    std::fs::write(fx.config(), text).expect("config");
}

#[test]
fn a_service_that_never_comes_back_is_restarted_at_most_max_actions_times() {
    let fx = fixture("0s");
    never_back(&fx, "max_actions = 2\nactions_window = \"1h\"\n");
    let outs: Vec<String> = (0..4)
        .map(|_| stdout(&fx.memslice(&["heal", "check"]).success()))
        .collect();
    assert!(
        outs[0].starts_with("acted:") && outs[1].starts_with("acted:"),
        "{outs:?}"
    );
    for held in &outs[2..] {
        assert!(
            held.contains(
                "but 2 heal action(s) within 1h already: holding back until `memslice heal reset`"
            ),
            "{held}"
        );
    }
    let out = fx.memslice(&["heal", "check", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        (
            report["verdict"]["flapping"].as_bool(),
            report["verdict"]["act"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let out = fx.memslice(&["heal", "reset"]).success();
    assert_eq!(
        stdout(&out),
        "flap limiter reset: 2 recorded action(s) forgotten\n"
    );
    assert!(
        stdout(&fx.memslice(&["heal", "check"]).success()).starts_with("acted:"),
        "acts again after reset"
    );
}

#[test]
fn the_limiter_trip_is_logged_at_error_level_once() {
    let fx = fixture("0s");
    never_back(&fx, "max_actions = 1\n");
    fx.memslice(&["heal", "check"]).success();
    let first = stderr(&fx.memslice(&["heal", "check"]).success());
    let second = stderr(&fx.memslice(&["heal", "check"]).success());
    assert!(
        first.contains("ERROR") && first.contains("flap limiter tripped"),
        "{first}"
    );
    assert!(!second.contains("ERROR"), "{second}");
}

#[test]
fn the_notify_hook_gets_each_action_and_cannot_hold_healing() {
    let fx = fixture("0s");
    let notice = fx.dir.path().join("notice.json");
    never_back(
        &fx,
        &format!(
            "notify = [\"sh\", \"-c\", \"cat > {}\"]\n",
            notice.display()
        ),
    );
    fx.memslice(&["heal", "check"]).success();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&notice).expect("hook ran")).expect("json");
    assert_eq!(json["event"], "heal");
    assert_eq!(json["killed"][0], "app/tasks");
    assert_eq!(json["grace_seconds"], 0);

    never_back(
        &fx,
        "notify = [\"sleep\", \"30\"]\nnotify_timeout = \"300ms\"\n",
    );
    let started = Instant::now();
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a hanging hook held the check {:?}",
        started.elapsed()
    );
    assert!(stdout(&out).starts_with("acted:"));
    assert!(
        stderr(&out).contains("notify hook failed (healing is not affected)"),
        "{}",
        stderr(&out)
    );
}

/// The state file's directory is a plain file: nothing can be recorded
/// there (as on a full disk, every write of the record fails).
fn unrecordable(fx: &Fixture, extra: &str) -> std::path::PathBuf {
    let blocked = fx.dir.path().join("state");
    std::fs::write(&blocked, "not a directory").expect("write");
    let notices = fx.dir.path().join("notices");
    never_back(
        fx,
        &format!(
            "{extra}notify = [\"sh\", \"-c\", \"cat >> {}\"]\n",
            notices.display()
        ),
    );
    notices
}

#[test]
fn heal_check_does_not_act_when_it_cannot_record_the_action() {
    let fx = fixture("0s");
    let notices = unrecordable(&fx, "max_actions = 1\n");
    for _ in 0..3 {
        let out = fx.memslice(&["heal", "check"]).success();
        assert!(
            stdout(&out).contains("not acting: the action cannot be recorded"),
            "{}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("cannot record the heal state"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!fx.dir.path().join("up").exists(), "a restart ran");
    let events = self::notices(&notices);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events.iter().all(|e| e["event"] == "unrecorded"),
        "{events:?}"
    );
    let temporary: Vec<_> = std::fs::read_dir(fx.dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
}

#[test]
fn heal_watch_keeps_the_flap_limit_in_memory_when_the_state_cannot_be_saved() {
    let fx = fixture("0s");
    let notices = unrecordable(&fx, "max_actions = 1\nactions_window = \"1h\"\n");
    let mut watch = Watch::start(&fx, &[]);
    watch.expect_lines("acted:", 1);
    watch.expect_lines("flap limiter tripped", 1);
    watch.expect_lines("holding back until", 2);
    let (status, _) = watch.stop();
    assert!(status.success(), "{status}");
    let events: Vec<serde_json::Value> = self::notices(&notices)
        .into_iter()
        .map(|notice| notice["event"].clone())
        .collect();
    assert_eq!(events, ["heal", "flapping"]);
}

#[test]
fn a_task_the_healer_kills_hears_why_from_its_memslice() {
    let fx = fixture("0s");
    never_back(&fx, "");
    let mut runner = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .arg("--config")
        .arg(fx.config())
        .arg("--cgroup-root")
        .arg(fx.root())
        .args([
            "run",
            "--slice",
            "app/tasks",
            "--name",
            "import",
            "--",
            "sleep",
            "30",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let group = fx.root().join(format!("app/tasks/import-{}", runner.id()));
    let started = Instant::now();
    while !std::fs::read_to_string(group.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(stdout(&out).starts_with("acted:"), "{}", stdout(&out));
    let status = runner.wait().expect("wait");
    let mut said = String::new();
    std::io::Read::read_to_string(&mut runner.stderr.take().expect("stderr"), &mut said)
        .expect("read");
    assert_eq!(status.code(), Some(137), "{said}");
    assert!(
        said.contains("was killed by memslice heal: web down for 0s, past the 0s day grace"),
        "{said}"
    );
}

/// The notices the hook got, one JSON object per line.
fn notices(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect()
}

fn oom_kills(fx: &Fixture, group: &str, kills: u64) {
    fx.write(
        group,
        "memory.events",
        &format!("low 0\nhigh 0\nmax {kills}\noom {kills}\noom_kill {kills}\noom_group_kill 0\n"),
    );
}

#[test]
fn oom_kills_reach_the_hook_once_per_window_per_slice() {
    let fx = fixture("1h");
    std::fs::write(fx.dir.path().join("up"), "").expect("the site is up");
    let sent = fx.dir.path().join("notices");
    let text = heal_config(fx.dir.path(), "1h").replace(
        "[heal]\n",
        &format!(
            "[heal]\nnotify = [\"sh\", \"-c\", \"cat >> {}\"]\n",
            sent.display()
        ),
    );
    std::fs::write(fx.config(), text).expect("config");
    oom_kills(&fx, "app/web", 40);
    oom_kills(&fx, "app", 40);
    fx.memslice(&["heal", "check"]).success();
    assert!(
        notices(&sent).is_empty(),
        "kills before the first look are history"
    );
    oom_kills(&fx, "app/web", 43);
    oom_kills(&fx, "app", 43);
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(
        stderr(&out).contains("the kernel OOM-killed 3 process(es) in app/web"),
        "{}",
        stderr(&out)
    );
    let told = notices(&sent);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (&told[0]["event"], &told[0]["slice"], &told[0]["kills"]),
        (
            &serde_json::json!("oom_kill"),
            &serde_json::json!("app/web"),
            &serde_json::json!(3)
        )
    );
    for storm in [100, 400, 900] {
        oom_kills(&fx, "app/web", storm);
        oom_kills(&fx, "app", storm);
        fx.memslice(&["heal", "check"]).success();
    }
    assert_eq!(
        notices(&sent).len(),
        1,
        "a storm within the window is one message"
    );
}

#[test]
fn the_hook_hears_only_the_kinds_it_asked_for() {
    let fx = fixture("0s");
    let sent = fx.dir.path().join("notices");
    never_back(
        &fx,
        &format!(
            "notify = [\"sh\", \"-c\", \"cat >> {}\"]\nnotify_events = [\"oom_kill\"]\n",
            sent.display()
        ),
    );
    fx.memslice(&["heal", "check"]).success();
    let out = fx.memslice(&["heal", "check"]).success();
    assert!(stdout(&out).starts_with("acted:"), "{}", stdout(&out));
    assert!(notices(&sent).is_empty(), "heal actions were not asked for");
    never_back(
        &fx,
        "notify = [\"true\"]\nnotify_events = [\"heal\", \"oom\"]\n",
    );
    let message = stderr(&fx.memslice(&["heal", "check"]).code(2));
    assert!(
        message.contains("heal.notify_events: \"oom\" is not an event; use heal, storm, flapping, unrecorded, oom_kill, stall"),
        "{message}"
    );
}
