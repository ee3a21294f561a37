//! `apply` and `plan` on a large tree, against the read-back floor (a C
//! program that reads and compares the same files, benches/floors/), timed
//! interleaved in one run at 1,000 and 10,010 groups on an emulated root
//! on tmpfs. Run with `cargo bench --features emulated-root --bench apply_tree`.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{Floors, Scratch, Tree, Variant};
use memslice::config::Controller;

fn main() {
    common::each_tree(&[Controller::Memory, Controller::Pids], bench);
}

fn bench(floors: &Floors, scratch: &Scratch, tree: Tree, rounds: usize) {
    let (root, spec) = (&scratch.root, scratch.spec());
    let memslice = |subcommand: &str| scratch.memslice(&[subcommand]);

    let started = Instant::now();
    common::run_quiet(&mut memslice("apply"));
    let first = started.elapsed();
    let output = memslice("apply").output().expect("re-apply");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("(0 writes)"),
        "the re-apply wrote"
    );
    let readback = |root: &Path| {
        let mut command = floors.command("readback");
        command.arg(root).arg(&spec);
        command
    };
    let mut variants = [
        Variant::command("memslice apply (0 writes)", || memslice("apply")),
        Variant::command("memslice plan", || memslice("plan")),
        Variant::command("floor-readback", || readback(root)),
    ];
    let timings = common::interleave(rounds, &mut variants);
    println!(
        "apply_tree: {} groups, emulated root on tmpfs, {rounds} rounds interleaved, medians",
        tree.groups()
    );
    println!(
        "  first apply (no floor: the emulation's mkdir writes the interface files) {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    timings.print_ratios(&[
        ("memslice apply (0 writes)", "floor-readback"),
        ("memslice plan", "floor-readback"),
    ]);
}
