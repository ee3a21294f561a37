//! Spawn overhead of `memslice run -- /bin/true` against a bare `/bin/true`,
//! on an emulated cgroup root (fork path; the VM measures clone3). Each side
//! runs the same number of times, interleaved, in one process.
//! Run with `cargo bench --bench run_overhead`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use memslice::cgroupfs::emulated;
use memslice::config::Controller;

fn time(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command.status().expect("spawn");
    assert!(status.success(), "{command:?} failed: {status}");
    started.elapsed()
}

fn main() {
    // tmpfs when there is one: the emulated root is file I/O, and disk
    // latency would drown what memslice itself costs.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let root = dir.path().join("cgroup");
    emulated::create_root(&root, &[Controller::Memory]).expect("root");
    let config = dir.path().join("slices.toml");
    std::fs::write(
        &config,
        "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n",
    )
    .expect("config");
    let memslice = env!("CARGO_BIN_EXE_memslice");
    let run = |extra: &[&str]| {
        let mut command = Command::new(memslice);
        command
            .arg("--config")
            .arg(&config)
            .arg("--cgroup-root")
            .arg(&root)
            .args(extra);
        command
    };
    assert!(run(&["apply"]).output().expect("apply").status.success());
    let bare = Path::new("/bin/true");

    // `cargo bench` passes --bench; under `cargo test` this is a smoke run.
    let rounds: usize = if std::env::args().any(|arg| arg == "--bench") {
        200
    } else {
        10
    };
    let (mut bare_total, mut run_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        bare_total += time(&mut Command::new(bare));
        run_total += time(&mut run(&[
            "run",
            "--slice",
            "app/tasks",
            "--memory-max",
            "1G",
            "--",
            "/bin/true",
        ]));
    }
    let per = |total: Duration| total.as_secs_f64() * 1e6 / rounds as f64;
    println!("run_overhead: {rounds} rounds each, interleaved");
    println!(
        "  /bin/true                         {:>9.0} us",
        per(bare_total)
    );
    println!(
        "  memslice run -- /bin/true         {:>9.0} us",
        per(run_total)
    );
    println!(
        "  ratio run / bare                  {:>9.1}",
        run_total.as_secs_f64() / bare_total.as_secs_f64()
    );
    println!(
        "  overhead per task                 {:>9.0} us",
        per(run_total) - per(bare_total)
    );
}
