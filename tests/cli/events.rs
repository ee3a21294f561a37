//! `memslice events` on an emulated root: inotify fires on plain files too,
//! so a counter written by the test is an event like the kernel's.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, stdout};

const CONFIG: &str =
    "[node]\nmemory = \"16G\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.web]\n";
const QUIET: &str = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n";

#[test]
fn events_without_follow_prints_the_counters() {
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    fx.write(
        "app",
        "memory.events",
        "low 0\nhigh 2\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    let out = stdout(&fx.memslice(&["events"]).success());
    assert_eq!(
        out,
        "app: max 7 high 2 oom 1 oom_kill 1 oom_group_kill 0\napp/web: max 0 high 0 oom 0 oom_kill 0 oom_group_kill 0\n"
    );
}

#[test]
fn follow_reports_a_kill_once_at_the_deepest_group_within_a_second() {
    let fx = Fixture::new(CONFIG);
    fx.memslice(&["apply"]).success();
    let mut child = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .arg("--config")
        .arg(fx.config())
        .arg("--cgroup-root")
        .arg(fx.root())
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("events");
    let (sender, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    fx.write("app/web", "memory.current", "1048576\n");
    let started = Instant::now();
    fx.write(
        "app",
        "memory.events",
        &QUIET
            .replace("max 0", "max 3")
            .replace("oom 0", "oom 1")
            .replace("oom_kill 0", "oom_kill 1"),
    );
    fx.write(
        "app/web",
        "memory.events",
        &QUIET.replace("oom_kill 0", "oom_kill 1"),
    );
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|err| panic!("after {seen:?}: {err}"));
        seen.push(serde_json::from_str::<serde_json::Value>(&line).expect("json"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let kinds: Vec<(String, String, u64)> = seen
        .iter()
        .map(|e| {
            (
                e["group"].as_str().unwrap_or("").to_string(),
                e["kind"].as_str().unwrap_or("").to_string(),
                e["delta"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("app".into(), "max".into(), 3)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("app".into(), "oom".into(), 1)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("app/web".into(), "oom_kill".into(), 1)),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&("app".into(), "oom_kill".into(), 1)),
        "the kill was counted twice: {kinds:?}"
    );
    let kill = seen.iter().find(|e| e["kind"] == "oom_kill").expect("kill");
    assert_eq!(kill["current_bytes"], 1_048_576);
    assert_eq!(kill["max"], "max");
    let _ = child.kill();
    let _ = child.wait();
}
