//! `status --json` over a generated 10,010-group tree on an emulated root
//! (tmpfs): reading every group's files and rendering the JSON, plus
//! parsing and validating the config of that size.
//! Run with `cargo bench --bench status_tree`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use memslice::cgroupfs::{Root, emulated};
use memslice::config::{Config, Controller, NodeFacts};
use memslice::{observe, plan};

/// `cargo bench` passes --bench; under `cargo test` this is a smoke run
/// on a tree a tenth the size.
fn middles() -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        100
    } else {
        10
    }
}

fn generated_config() -> String {
    let mut text = String::from("[node]\nmemory = \"1T\"\n");
    for top in 0..10 {
        let _ = writeln!(text, "[slice.s{top}]\nmemory_max = \"50G\"");
        for middle in 0..middles() {
            let _ = writeln!(text, "[slice.s{top}.m{middle}]\nmemory_max = \"400M\"");
            for leaf in 0..9 {
                let _ = writeln!(
                    text,
                    "[slice.s{top}.m{middle}.l{leaf}]\nmemory_max = \"40M\""
                );
            }
        }
    }
    text
}

fn main() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let root_path = dir.path().join("cgroup");
    emulated::create_root(&root_path, &[Controller::Memory]).expect("root");
    let text = generated_config();
    let started = Instant::now();
    let node = NodeFacts {
        memory: 1 << 40,
        page_size: 4096,
    };
    let config = Config::parse(Path::new("generated.toml"), &text, node).expect("valid");
    let parse = started.elapsed();
    let root = Root::emulated(&root_path);
    let desired = plan::desired(&config);
    let observed = plan::observe(&root, &desired).expect("observe");
    plan::apply(&root, &plan::diff(&desired, &observed)).expect("apply");

    let started = Instant::now();
    let status = observe::status(&root, &config).expect("status");
    let read = started.elapsed();
    let started = Instant::now();
    let json = serde_json::to_string_pretty(&status).expect("json");
    let render = started.elapsed();
    println!(
        "status_tree: {} groups, {} KiB of JSON",
        status.groups.len(),
        json.len() / 1024
    );
    println!(
        "  parse + validate config   {:>9.1} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "  read the tree             {:>9.1} ms",
        read.as_secs_f64() * 1e3
    );
    println!(
        "  render JSON               {:>9.1} ms",
        render.as_secs_f64() * 1e3
    );
    println!(
        "  status --json in all      {:>9.1} ms",
        (read + render).as_secs_f64() * 1e3
    );
}
