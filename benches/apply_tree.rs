//! Apply time for a large tree: a generated 1,000-group slices.toml applied
//! to an emulated root, then applied again (which reads every file and
//! writes none). Run with `cargo bench --bench apply_tree`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use memslice::cgroupfs::{Root, emulated};
use memslice::config::{Config, Controller, NodeFacts};
use memslice::plan;

const TOP: usize = 10;
const MIDDLE: usize = 9;
const LEAVES: usize = 10;

fn generated_config() -> String {
    let mut text = String::from("[node]\nmemory = \"64G\"\n");
    for top in 0..TOP {
        let _ = writeln!(
            text,
            "[slice.s{top}]\nmemory_max = \"5G\"\nmemory_low = \"1G\""
        );
        for middle in 0..MIDDLE {
            let _ = writeln!(
                text,
                "[slice.s{top}.m{middle}]\nmemory_max = \"512M\"\nmemory_low = \"100M\""
            );
            for leaf in 0..LEAVES {
                let _ = writeln!(
                    text,
                    "[slice.s{top}.m{middle}.l{leaf}]\nmemory_high = \"40M\"\nmemory_max = \"50M\"\noom_group = true"
                );
            }
        }
    }
    text
}

fn apply_once(root: &Root, config: &Config) -> (usize, Duration) {
    let started = Instant::now();
    let desired = plan::desired(config);
    let observed = plan::observe(root, &desired).expect("observe");
    let plan = plan::diff(&desired, &observed);
    let report = plan::apply(root, &plan).expect("apply");
    (report.writes, started.elapsed())
}

fn main() {
    // tmpfs when there is one: the emulated root is file I/O, and disk
    // latency would drown what memslice itself costs.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let root_path = dir.path().join("cgroup");
    emulated::create_root(&root_path, &[Controller::Memory, Controller::Pids]).expect("root");
    let text = generated_config();

    let parse_start = Instant::now();
    let node = NodeFacts {
        memory: 64 << 30,
        page_size: 4096,
    };
    let config = Config::parse(Path::new("generated.toml"), &text, node).expect("valid config");
    let parse = parse_start.elapsed();
    let groups = config.slices.len();

    let root = Root::emulated(&root_path);
    let (first_writes, first) = apply_once(&root, &config);
    let (second_writes, second) = apply_once(&root, &config);
    assert_eq!(second_writes, 0, "the re-apply wrote");

    println!("apply_tree: {groups} groups on an emulated root");
    println!(
        "  parse + validate      {:>9.2} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "  first apply           {:>9.2} ms  ({first_writes} writes)",
        first.as_secs_f64() * 1e3
    );
    println!(
        "  re-apply (no change)  {:>9.2} ms  ({second_writes} writes)",
        second.as_secs_f64() * 1e3
    );
    println!(
        "  re-apply / first      {:>9.2}",
        second.as_secs_f64() / first.as_secs_f64()
    );
}
