//! `memslice run -- /bin/true` against a bare `/bin/true`, interleaved in
//! one run, on an emulated cgroup root on tmpfs (no clone3 into a group
//! there: the task moves itself in through cgroup.procs; the VM scenario
//! 90-run-overhead measures clone3 against the C spawn floor).
//! Beside them an empty Rust program (benches/floors/rust_start.rs): the
//! part of a run no change to memslice's own code can remove.
//! Run with `cargo bench --features emulated-root --bench run_overhead`.

mod common;

use std::process::Command;

use common::{Scratch, Variant};
use memslice::config::Controller;

fn main() {
    let scratch = Scratch::new(
        "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n",
        &[Controller::Memory],
    );
    let memslice = |args: &[&str]| scratch.memslice(args);
    common::run_quiet(&mut memslice(&["apply"]));
    let rounds = if common::full_run() { 301 } else { 5 };
    let rust_start = common::rust_start();
    let mut variants = [
        Variant::command("/bin/true", || Command::new("/bin/true")),
        Variant::command("empty Rust program", || Command::new(&rust_start)),
        Variant::command("memslice run -- /bin/true", || {
            memslice(&["run", "--slice", "app/tasks", "--", "/bin/true"])
        }),
        Variant::command("memslice run --memory-max 1G -- /bin/true", || {
            memslice(&[
                "run",
                "--slice",
                "app/tasks",
                "--memory-max",
                "1G",
                "--",
                "/bin/true",
            ])
        }),
    ];
    let timings = common::interleave(rounds, &mut variants);
    println!("run_overhead: emulated root on tmpfs, {rounds} rounds interleaved, medians");
    timings.print_ratios(&[
        ("memslice run -- /bin/true", "/bin/true"),
        ("memslice run --memory-max 1G -- /bin/true", "/bin/true"),
        ("empty Rust program", "/bin/true"),
    ]);
    let start = timings.ratio("empty Rust program", "/bin/true");
    println!(
        "  floor of a run by any Rust program linked as memslice is (its start, then the task's): {:.2}x",
        1.0 + start
    );
}
