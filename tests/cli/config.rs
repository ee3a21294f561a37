//! Load is the only gate: every mistake that can be found without touching
//! the host stops every subcommand with exit 2, `file:line:column`, the key
//! and what is allowed, before anything is written.

use crate::fixture::{Fixture, stderr};

const HEAL: &str = "[slice.app]\n[slice.app.web]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n\
    [heal]\ntimezone = \"UTC\"\nprotected = [\"app/tasks\"]\n\
    [[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n";

/// Runs `args` on `config` and expects exit 2 naming `at` (`line:column: key`).
fn refused(config: impl AsRef<[u8]>, args: &[&str], at: &str) -> String {
    let fx = Fixture::new("");
    std::fs::write(fx.config(), config).expect("config");
    let before = fx.snapshot();
    let message = stderr(&fx.memslice(args).code(2));
    assert!(message.contains("nothing was changed"), "{message}");
    assert!(message.contains(&format!("slices.toml:{at}")), "{message}");
    assert_eq!(before, fx.snapshot(), "nothing is written");
    message
}

#[test]
fn heal_mistakes_stop_plan_apply_and_heal_alike() {
    let zone = HEAL.replace("\"UTC\"", "\"Mars/Olympus\"");
    let huge = HEAL.replace(
        "[heal]\n",
        "[heal]\ngrace_day = \"18446744073709551615h\"\n",
    );
    let interval = HEAL.replace("[heal]\n", "[heal]\ninterval = \"18446744073709551615h\"\n");
    for args in [
        &["plan"][..],
        &["apply"],
        &["heal", "check"],
        &["heal", "watch"],
    ] {
        refused(&zone, args, "6:12: heal.timezone");
        refused(&huge, args, "6:13: heal.grace_day");
        refused(&interval, args, "6:12: heal.interval");
    }
}

#[test]
fn a_config_that_is_not_utf8_names_the_first_bad_byte() {
    let message = refused(
        b"[slice.app]\nmemory_max = \"1G\xff\"\n",
        &["plan"],
        "2:17:",
    );
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn nesting_too_deep_has_a_position() {
    let deep = format!("[slice.app]\nx = {}\n", "[".repeat(200));
    refused(deep, &["plan"], "2:");
    let dotted = format!("[slice.app]\n[slice.{}]\n", vec!["a"; 100].join("."));
    refused(dotted, &["plan"], "2:2:");
}

#[test]
fn a_tree_too_deep_for_the_kernel_is_refused_before_any_write() {
    let mut config = String::from("[node]\ndriver = \"cgroupfs\"\n");
    let mut path = Vec::new();
    for level in 0..70 {
        path.push(format!("{level:0>58}"));
        config.push_str(&format!("[slice.{}]\n", path.join(".")));
    }
    let message = refused(&config, &["apply"], "");
    assert!(message.contains("PATH_MAX"), "{message}");
}
