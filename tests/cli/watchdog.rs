//! `heal watch` as a systemd notify service, against a socket standing in
//! for systemd's NOTIFY_SOCKET: READY=1 after the first check, STATUS=,
//! watchdog pings at least every WatchdogSec/2 (and none without a
//! watchdog), STOPPING=1 on SIGTERM. The real systemd is in the VM
//! (vagrant/systemd/40-package.sh).

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, stderr};

fn fixture() -> Fixture {
    let fx = Fixture::new(
        "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n",
    );
    let dir = fx.dir.path().display().to_string();
    let heal = format!(
        "[heal]\nstate_file = \"{dir}/heal.state\"\nlock_file = \"{dir}/heal.lock\"\ninterval = \"1h\"\ntimezone = \"UTC\"\nprotected = [\"app/tasks\"]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n"
    );
    let config = std::fs::read_to_string(fx.config()).expect("config");
    std::fs::write(fx.config(), format!("{config}{heal}")).expect("config");
    fx.memslice(&["apply"]).success();
    fx
}

/// Starts `heal watch` with NOTIFY_SOCKET at a socket of the test's own.
fn watch(fx: &Fixture, watchdog: Option<&str>) -> (Child, UnixDatagram) {
    let path = fx.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut command = Command::new(env!("CARGO_BIN_EXE_memslice"));
    command
        .env_remove("MEMSLICE_LOG")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", &path)
        .arg("--config")
        .arg(fx.config())
        .arg("--cgroup-root")
        .arg(fx.root())
        .args(["heal", "watch"])
        .stderr(Stdio::null());
    if let Some(usec) = watchdog {
        command.env("WATCHDOG_USEC", usec);
    }
    (command.spawn().expect("watch"), socket)
}

/// Every message that arrives within `span`, with its arrival time.
fn messages(socket: &UnixDatagram, span: Duration) -> Vec<(Instant, String)> {
    let started = Instant::now();
    let mut found = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < span {
        if let Ok(n) = socket.recv(&mut buf) {
            found.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    found
}

fn stop(mut child: Child, socket: &UnixDatagram) -> Vec<String> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "heal watch ended with {status}");
    messages(socket, Duration::from_millis(300))
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

#[test]
fn heal_watch_is_ready_after_its_first_check_and_pings_its_watchdog() {
    let fx = fixture();
    // WatchdogSec=0.6s: a ping at least every 0.3 s, though the interval is 1h.
    let (child, socket) = watch(&fx, Some("600000"));
    let got = messages(&socket, Duration::from_secs(3));
    let ready: Vec<&String> = got
        .iter()
        .map(|(_, text)| text)
        .filter(|text| text.lines().any(|l| l == "READY=1"))
        .collect();
    assert_eq!(ready.len(), 1, "READY=1 once: {got:?}");
    assert!(
        ready[0].contains("STATUS=up; grace 3m (day)\n"),
        "the first status comes with READY=1: {got:?}"
    );
    let first = &got.first().expect("a message").1;
    assert!(
        first.contains("EXTEND_TIMEOUT_USEC=") && !first.contains("READY=1"),
        "the first check extends the start timeout before READY=1: {got:?}"
    );
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, text)| text.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    assert!(pings.len() >= 8, "{} pings in 3 s: {got:?}", pings.len());
    let longest = pings
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .expect("gaps");
    // 0.3 s apart by design; the rest is this shared machine's scheduling.
    assert!(
        longest < Duration::from_millis(550),
        "pings {longest:?} apart with WatchdogSec=0.6s"
    );
    let after = stop(child, &socket);
    assert!(
        after.iter().any(|text| text.contains("STOPPING=1")),
        "{after:?}"
    );
}

#[test]
fn without_a_watchdog_heal_watch_sends_no_pings() {
    let fx = fixture();
    let (child, socket) = watch(&fx, None);
    let got = messages(&socket, Duration::from_millis(1500));
    assert!(
        got.iter().any(|(_, text)| text.contains("READY=1")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|(_, text)| text.contains("WATCHDOG")),
        "pings without a watchdog: {got:?}"
    );
    assert_eq!(
        got.len(),
        2,
        "one message before and one after the check: {got:?}"
    );
    stop(child, &socket);
}

#[test]
fn a_journal_stream_that_is_not_stderr_leaves_logging_on_stderr() {
    let fx = fixture();
    // A service's child inherits JOURNAL_STREAM with stderr sent elsewhere.
    let out = fx
        .memslice_env(&[("JOURNAL_STREAM", "1:1")], &["heal", "check"])
        .success();
    assert!(
        stderr(&out).contains("up: all 1 service(s) pass"),
        "{}",
        stderr(&out)
    );
}
