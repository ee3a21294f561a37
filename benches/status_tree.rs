//! `status --json`, `metrics` and the `status` table on a large tree,
//! against the status floors (a C program that reads the same files and
//! lists the same directories, benches/floors/), timed interleaved in one
//! run at 1,000 and 10,010 groups on an emulated root on tmpfs.
//! Run with `cargo bench --features emulated-root --bench status_tree`.

mod common;

use common::{Floors, Scratch, Tree, Variant};
use memslice::config::Controller;

/// What `status --json` and `metrics` show of each group.
const FULL: [&str; 8] = [
    "cgroup.procs",
    "memory.current",
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.events",
    "memory.pressure",
];

/// What the `status` table shows: usage, max, high, OOM counters, PSI.
const SUMMARY: [&str; 5] = [
    "memory.current",
    "memory.max",
    "memory.high",
    "memory.events",
    "memory.pressure",
];

fn main() {
    common::each_tree(&[Controller::Memory], bench);
}

fn bench(floors: &Floors, scratch: &Scratch, tree: Tree, rounds: usize) {
    let (root, spec) = (&scratch.root, scratch.spec());
    let memslice = |args: &[&str]| scratch.memslice(args);
    common::run_quiet(&mut memslice(&["apply"]));
    let floor = |files: &[&str]| {
        let mut command = floors.command("status");
        command.arg(root).arg(&spec).args(files);
        command
    };
    let mut variants = [
        Variant::command("memslice status --json", || memslice(&["status", "--json"])),
        Variant::command("memslice metrics", || memslice(&["metrics"])),
        Variant::command("floor-status (8 files)", || floor(&FULL)),
        Variant::command("memslice status (table)", || memslice(&["status"])),
        Variant::command("floor-status (5 files)", || floor(&SUMMARY)),
    ];
    let timings = common::interleave(rounds, &mut variants);
    println!(
        "status_tree: {} groups, emulated root on tmpfs, {rounds} rounds interleaved, medians",
        tree.groups()
    );
    timings.print_ratios(&[
        ("memslice status --json", "floor-status (8 files)"),
        ("memslice metrics", "floor-status (8 files)"),
        ("memslice status (table)", "floor-status (5 files)"),
    ]);
}
