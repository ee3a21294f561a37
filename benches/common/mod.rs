//! What the benchmarks share: the floors (benches/floors/*.c, built here
//! with the system's C compiler, and rust_start.rs), generated trees with their floor spec,
//! and timing several commands interleaved in one run, so that each figure
//! is a ratio measured under the same load (the machines are shared).
//!
//! Each bench uses part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memslice::cgroupfs::emulated;
use memslice::config::{Config, Controller, NodeFacts};
use memslice::plan;

/// `cargo bench` passes --bench; under `cargo test` each bench is a smoke
/// run on small inputs.
pub fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// An emulated root with a config beside it, in a scratch directory on
/// tmpfs when there is one: the emulated root is file I/O, and disk
/// latency would drown what memslice itself costs.
pub struct Scratch {
    dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

impl Scratch {
    pub fn new(config_text: &str, controllers: &[Controller]) -> Scratch {
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("tempdir");
        let root = dir.path().join("cgroup");
        emulated::create_root(&root, controllers).expect("root");
        let config = dir.path().join("slices.toml");
        std::fs::write(&config, config_text).expect("config");
        Scratch { dir, root, config }
    }

    /// `tree`'s config, and its floor spec (see [`Scratch::spec`]).
    pub fn for_tree(tree: Tree, controllers: &[Controller]) -> Scratch {
        let scratch = Scratch::new(&tree.config_text(), controllers);
        std::fs::write(scratch.spec(), floor_spec(&tree.config())).expect("spec");
        scratch
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.path().join("tree.spec")
    }

    /// memslice on this root and config.
    pub fn memslice(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_memslice"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--cgroup-root")
            .arg(&self.root)
            .args(args);
        command
    }
}

/// Runs `bench` on each tree, each in a fresh scratch root with its
/// floor spec, the floors built once: 1,000 and 10,010 groups nine rounds
/// each under `cargo bench`, one small tree once under `cargo test`.
pub fn each_tree(controllers: &[Controller], bench: impl Fn(&Floors, &Scratch, Tree, usize)) {
    let floors = Floors::build();
    let (trees, rounds) = if full_run() {
        (vec![Tree::THOUSAND, Tree::TEN_THOUSAND], 9)
    } else {
        (vec![Tree::SMOKE], 1)
    };
    for tree in trees {
        bench(&floors, &Scratch::for_tree(tree, controllers), tree, rounds);
    }
}

/// The floors, built once per bench run with `$CC` (default `cc`).
pub struct Floors {
    dir: PathBuf,
}

impl Floors {
    pub fn build() -> Floors {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/floors");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("floors");
        std::fs::create_dir_all(&dir).expect("floors dir");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        for name in ["apply", "readback", "status", "spawn"] {
            let status = Command::new(&cc)
                .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(dir.join(format!("floor-{name}")))
                .arg(source.join(format!("{name}.c")))
                .status()
                .expect("run the C compiler");
            assert!(status.success(), "building floor-{name} failed");
        }
        Floors { dir }
    }

    pub fn command(&self, name: &str) -> Command {
        Command::new(self.dir.join(format!("floor-{name}")))
    }
}

/// The start-up floor of a Rust program (benches/floors/rust_start.rs),
/// built as memslice is.
pub fn rust_start() -> PathBuf {
    let floors = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/floors");
    let program = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-start");
    let status = Command::new(floors.join("build-rust-start"))
        .arg(&program)
        .status()
        .expect("run benches/floors/build-rust-start");
    assert!(status.success(), "building rust-start failed");
    program
}

/// A generated tree: TOPS slices, MIDDLES below each, LEAVES below each of
/// those, with the knobs a hosting node sets at each level.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    pub tops: usize,
    pub middles: usize,
    pub leaves: usize,
}

impl Tree {
    /// 10 + 90 + 900 groups.
    pub const THOUSAND: Tree = Tree {
        tops: 10,
        middles: 9,
        leaves: 10,
    };
    /// 10 + 1,000 + 9,000 groups.
    pub const TEN_THOUSAND: Tree = Tree {
        tops: 10,
        middles: 100,
        leaves: 9,
    };
    /// 2 + 4 + 8 groups, for smoke runs.
    pub const SMOKE: Tree = Tree {
        tops: 2,
        middles: 2,
        leaves: 2,
    };

    pub fn groups(self) -> usize {
        self.tops * (1 + self.middles * (1 + self.leaves))
    }

    pub fn config_text(self) -> String {
        let mut text = String::from("[node]\nmemory = \"1T\"\n");
        for top in 0..self.tops {
            let _ = writeln!(
                text,
                "[slice.s{top}]\nmemory_max = \"50G\"\nmemory_low = \"1G\""
            );
            for middle in 0..self.middles {
                let _ = writeln!(
                    text,
                    "[slice.s{top}.m{middle}]\nmemory_max = \"400M\"\nmemory_low = \"8M\""
                );
                for leaf in 0..self.leaves {
                    let _ = writeln!(
                        text,
                        "[slice.s{top}.m{middle}.l{leaf}]\nmemory_high = \"32M\"\nmemory_max = \"40M\"\noom_group = true"
                    );
                }
            }
        }
        text
    }

    /// The config, validated as memslice would on a 1 TiB node.
    pub fn config(self) -> Config {
        let node = NodeFacts {
            memory: 1 << 40,
            page_size: 4096,
        };
        Config::parse(Path::new("generated.toml"), &self.config_text(), node).expect("valid")
    }
}

/// The floors' spec of a config (see benches/floors/floor.h): each group
/// with the files memslice writes there, from memslice's own desired tree.
pub fn floor_spec(config: &Config) -> String {
    let mut spec = String::new();
    for group in plan::desired(config) {
        spec.push_str(&group.path);
        if !group.subtree_control.is_empty() {
            let names: Vec<String> = group
                .subtree_control
                .iter()
                .map(|c| format!("+{c}"))
                .collect();
            let _ = write!(spec, "\tcgroup.subtree_control={}", names.join(" "));
        }
        for (knob, value) in &group.knobs {
            let _ = write!(spec, "\t{}={}", knob.file(), value.kernel_text());
        }
        spec.push('\n');
    }
    spec
}

/// Runs `command` with its output discarded; panics unless it exits 0.
pub fn run_quiet(command: &mut Command) {
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

pub struct Variant<'a> {
    pub name: &'a str,
    pub run: Box<dyn FnMut() + 'a>,
}

impl<'a> Variant<'a> {
    pub fn new(name: &'a str, run: impl FnMut() + 'a) -> Variant<'a> {
        Variant {
            name,
            run: Box::new(run),
        }
    }

    /// A command rebuilt for each run, output discarded, exit 0 required.
    pub fn command(name: &'a str, mut make: impl FnMut() -> Command + 'a) -> Variant<'a> {
        Variant::new(name, move || run_quiet(&mut make()))
    }
}

/// Each variant's times, run round after round, the order rotated every
/// round so that none always runs first after a warm-up or a pause.
pub struct Timings<'a> {
    names: Vec<&'a str>,
    times: Vec<Vec<Duration>>,
}

pub fn interleave<'a>(rounds: usize, variants: &mut [Variant<'a>]) -> Timings<'a> {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let started = Instant::now();
            (variants[index].run)();
            times[index].push(started.elapsed());
        }
    }
    Timings {
        names: variants.iter().map(|v| v.name).collect(),
        times,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Timings<'_> {
    fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no variant {name}"))
    }

    /// Median time of one variant.
    pub fn median(&self, name: &str) -> Duration {
        let times = &self.times[self.index(name)];
        Duration::from_secs_f64(median(times.iter().map(Duration::as_secs_f64).collect()))
    }

    /// The median over rounds of subject/reference, each pair from the
    /// same round.
    pub fn ratio(&self, subject: &str, reference: &str) -> f64 {
        let (s, r) = (self.index(subject), self.index(reference));
        median(
            self.times[s]
                .iter()
                .zip(&self.times[r])
                .map(|(s, r)| s.as_secs_f64() / r.as_secs_f64())
                .collect(),
        )
    }

    /// One line per pair: both medians and the ratio.
    pub fn print_ratios(&self, pairs: &[(&str, &str)]) {
        let width = pairs
            .iter()
            .flat_map(|(s, r)| [s.len(), r.len()])
            .max()
            .unwrap_or(0);
        for (subject, reference) in pairs {
            println!(
                "  {subject:<width$} {:>10}   {reference:<width$} {:>10}   {:>6.2}x",
                show(self.median(subject)),
                show(self.median(reference)),
                self.ratio(subject, reference)
            );
        }
    }
}

fn show(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.0} us", ms * 1e3)
    }
}
