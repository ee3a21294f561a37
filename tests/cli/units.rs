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
