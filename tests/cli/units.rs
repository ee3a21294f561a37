//! The shipped systemd units call subcommands that exist, from the
//! operations slice, and the timer runs on the wall clock.

use assert_cmd::Command;

fn unit(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/dist/systemd/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("unit file")
}

fn setting<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in unit"))
}

#[test]
fn services_run_real_subcommands_from_the_operations_slice() {
    for name in ["memslice-heal.service", "memslice-heal-watch.service"] {
        let text = unit(name);
        let exec = setting(&text, "ExecStart");
        let mut args: Vec<&str> = exec.split_whitespace().skip(1).collect();
        args.push("--help");
        Command::cargo_bin("memslice")
            .expect("binary")
            .args(&args)
            .assert()
            .success();
        assert_eq!(setting(&text, "Slice"), "ops.slice", "{name}");
        let adj: i32 = setting(&text, "OOMScoreAdjust").parse().expect("number");
        assert!(
            adj < 0,
            "{name}: the healer must not be the OOM killer's pick"
        );
    }
}

#[test]
fn the_timer_fires_on_the_wall_clock_and_catches_up() {
    let text = unit("memslice-heal.timer");
    assert_eq!(setting(&text, "OnCalendar"), "*-*-* *:*:00");
    assert_eq!(setting(&text, "AccuracySec"), "1s");
    assert_eq!(setting(&text, "Persistent"), "true");
    assert_eq!(setting(&text, "Unit"), "memslice-heal.service");
}

#[test]
fn services_run_the_packaged_binary_with_a_private_lock_directory() {
    for name in ["memslice-heal.service", "memslice-heal-watch.service"] {
        let text = unit(name);
        assert!(
            setting(&text, "ExecStart").starts_with("/usr/bin/memslice "),
            "{name}: the package installs /usr/bin/memslice"
        );
        assert_eq!(setting(&text, "RuntimeDirectory"), "memslice", "{name}");
        assert_eq!(setting(&text, "RuntimeDirectoryMode"), "0700", "{name}");
        assert_eq!(setting(&text, "StateDirectoryMode"), "0755", "{name}");
    }
}

#[test]
fn the_watcher_is_a_notify_service_whose_watchdog_adds_no_wake_up() {
    let text = unit("memslice-heal-watch.service");
    assert_eq!(setting(&text, "Type"), "notify");
    assert_eq!(setting(&text, "NotifyAccess"), "main");
    let seconds = |value: &str| -> u64 {
        value
            .strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{value:?} is not a number of seconds"))
    };
    let watchdog = seconds(setting(&text, "WatchdogSec"));
    let interval = crate::fixture::SHIPPED
        .lines()
        .find_map(|line| line.strip_prefix("interval = "))
        .map(|value| seconds(value.trim_matches('"')))
        .expect("heal.interval in the shipped slices.toml");
    // Each check pings; the loop wakes for a ping only when no check came
    // within WatchdogSec/2.
    assert!(
        interval <= watchdog / 2,
        "WatchdogSec={watchdog}s wakes the watcher between checks every {interval}s"
    );
}
