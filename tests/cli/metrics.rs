//! `memslice metrics` and the `heal watch --metrics-addr` endpoint, checked
//! by a parser of the Prometheus text format (and by promtool when the
//! machine has it).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, shipped_on_16g, stdout};

/// The exposition-format rules promtool's `check metrics` enforces that a
/// writer can break: HELP and TYPE before a family's samples, valid names
/// and labels, parseable values, counters ending in _total, no series twice.
fn check_exposition(text: &str) {
    let name_ok = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: Option<(String, String)> = None;
    let mut helped = BTreeSet::new();
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(name_ok(name), "bad name in {line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(helped.contains(name), "TYPE before HELP: {line:?}");
            assert!(families.insert(name.to_string()), "family twice: {line:?}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line:?}");
            }
            typed = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (metric, value) = line.rsplit_once(' ').expect("value");
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value in {line:?}"
        );
        let name = metric.split('{').next().expect("name");
        let (family, _) = typed
            .as_ref()
            .unwrap_or_else(|| panic!("sample before TYPE: {line:?}"));
        assert_eq!(name, family, "sample outside its family: {line:?}");
        if let Some(labels) = metric.strip_prefix(name).and_then(|l| l.strip_prefix('{')) {
            let labels = labels.strip_suffix('}').expect("closing brace");
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(
                    name_ok(key) && !key.starts_with("__"),
                    "bad label {key:?} in {line:?}"
                );
                assert!(!value.trim_end_matches('"').contains('\n'));
            }
        }
        assert!(series.insert(metric.to_string()), "series twice: {line:?}");
    }
    if let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        promtool
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = promtool.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_metrics_text_is_valid_and_stable() {
    // Without [heal]: its metrics come from a state file on the host.
    let shipped = shipped_on_16g();
    let fx = Fixture::new(shipped.split("\n[heal]").next().unwrap_or_default());
    fx.memslice(&["apply"]).success();
    fx.write("app", "memory.current", "6871947264\n");
    fx.write(
        "app",
        "memory.events",
        "low 0\nhigh 9\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n",
    );
    fx.write("app", "memory.pressure", "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    let text = stdout(&fx.memslice(&["metrics"]).success());
    check_exposition(&text);
    insta::assert_snapshot!("metrics", text);
}

#[test]
fn the_validator_catches_what_promtool_would() {
    for bad in [
        "memslice_x 1\n",
        "# HELP memslice_x x\n# TYPE memslice_x counter\nmemslice_x 1\n",
        "# HELP memslice_x x\n# TYPE memslice_x gauge\nmemslice_x{group=\"a\"} 1\nmemslice_x{group=\"a\"} 2\n",
        "# HELP memslice_x x\n# TYPE memslice_x gauge\nmemslice_x one\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| check_exposition(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn heal_watch_serves_metrics_with_its_decisions() {
    let fx = Fixture::new(&format!(
        "{}\n[heal]\nstate_file = \"{dir}/heal.state\"\nlock_file = \"{dir}/heal.lock\"\ninterval = \"100ms\"\ntimezone = \"UTC\"\nprotected = [\"app/tasks\"]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n",
        "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]",
        dir = std::env::temp_dir()
            .join(format!("memslice-metrics-{}", std::process::id()))
            .display()
    ));
    fx.memslice(&["apply"]).success();
    // A recorded action, so that every family of the healer is written.
    let state_dir = std::env::temp_dir().join(format!("memslice-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).expect("state dir");
    std::fs::write(
        state_dir.join("heal.state"),
        r#"{"down_since": null, "failures": {}, "last_action": {"at": "2026-01-01T00:00:00Z", "reason": "test", "killed": [], "restarted": []}}"#,
    )
    .expect("state file");
    plant_tasks(&fx);
    let port = free_port();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_memslice"))
        .arg("--config")
        .arg(fx.config())
        .arg("--cgroup-root")
        .arg(fx.root())
        .args([
            "heal",
            "watch",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let started = Instant::now();
    let body = loop {
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match answer {
            Ok(text) if text.contains("memslice_heal_decisions_total{decision=\"up\"} 2") => {
                break text;
            }
            _ if started.elapsed() > Duration::from_secs(10) => {
                let _ = watch.kill();
                panic!("no metrics with two decisions after 10 s: {answer:?}");
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let metrics = body.split_once("\r\n\r\n").expect("body").1;
    check_exposition(metrics);
    crate::dist::assert_queried_metrics_exist(metrics);
    assert!(metrics.contains("memslice_heal_down 0\n"), "{metrics}");
    assert!(
        metrics.contains("memslice_memory_current_bytes{group=\"app\"} 0\n"),
        "{metrics}"
    );
    for (task, stalled) in [("stuck", 1), ("busy", 0), ("orphaned", 0)] {
        let sample = format!(
            "memslice_task_stalled{{group=\"app/tasks/{task}\",slice=\"app/tasks\"}} {stalled}\n"
        );
        assert!(metrics.contains(&sample), "no {sample:?} in {metrics}");
    }
    assert!(
        !metrics.contains("memslice_task_stalled{group=\"app/tasks/forged\""),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(state_dir);
}

/// Task groups in app/tasks, each with a live process: `stuck`, whose
/// memslice (this test) watches it and recorded a stall; `busy`, watched
/// and making progress; `orphaned`, with a recorded stall but whose
/// memslice is gone; `forged`, a stalled task's records on a group another
/// user owns (a delegated subtree), which is no task of memslice's.
fn plant_tasks(fx: &Fixture) {
    use memslice::spawn::task::{self, Role, Supervisor, TaskRecord};
    let root = memslice::cgroupfs::Root::emulated(fx.root());
    let stalled_since = Some(jiff::Timestamp::from_second(1_764_000_000).expect("time"));
    for name in ["stuck", "busy", "orphaned", "forged"] {
        let group = format!("app/tasks/{name}");
        let dir = fx.root().join(&group);
        std::fs::create_dir(&dir).expect("task group");
        std::fs::write(
            dir.join("cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .expect("procs");
        std::fs::write(dir.join("cgroup.events"), "populated 0\nfrozen 0\n").expect("events");
        let record = TaskRecord {
            name: name.to_string(),
            mode: memslice::spawn::policy::Mode::Protect,
            uid: 0,
            command: "import".to_string(),
            started: jiff::Timestamp::now(),
        };
        task::mark(&root, &group, &record, true).expect("mark");
        if name != "busy" {
            task::set_stalled(&root, &group, stalled_since);
        }
        if name == "orphaned" {
            let gone = Supervisor {
                pid: u32::MAX,
                start_time: 1,
                role: Role::Foreground,
            };
            task::set_supervisor(&root, &group, gone).expect("supervisor");
        }
        if name == "forged" {
            std::os::unix::fs::chown(&dir, Some(crate::fixture::nobody().uid.as_raw()), None)
                .expect("chown");
        }
    }
}
