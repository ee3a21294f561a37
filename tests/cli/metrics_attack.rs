//! The `/metrics` endpoint of a real `memslice heal watch` under a bounded
//! mix of hostile clients on loopback: endless request lines, slowloris,
//! clients that never read, a connection flood. Meanwhile a normal scrape
//! every 100 ms must be answered within a second, and the watcher's resident
//! memory (its peak, VmHWM) must stay below 16 MiB. The measured figures are
//! written to stderr whether or not the test harness captures output.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memslice::cgroupfs::emulated;
use memslice::config::Controller;

const ATTACK: Duration = Duration::from_secs(6);
const SCRAPE_EVERY: Duration = Duration::from_millis(100);
const SCRAPE_LIMIT: Duration = Duration::from_secs(1);
const RSS_LIMIT_KIB: u64 = 16 * 1024;

/// Kills the watcher however the test ends.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_watcher(dir: &Path) -> (Watcher, SocketAddr) {
    let root = dir.join("cgroup");
    std::fs::create_dir(&root).expect("root dir");
    emulated::create_root(&root, &[Controller::Memory, Controller::Pids]).expect("emulated root");
    let config = dir.join("slices.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nmemory = \"16G\"\n[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n\
             [heal]\nstate_file = \"{dir}/heal.state\"\nlock_file = \"{dir}/heal.lock\"\n\
             interval = \"1s\"\ntimezone = \"UTC\"\nprotected = [\"app/tasks\"]\n\
             [[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\n",
            dir = dir.display()
        ),
    )
    .expect("config");
    let memslice = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_memslice"));
        command
            .env_remove("MEMSLICE_LOG")
            .arg("--config")
            .arg(&config)
            .arg("--cgroup-root")
            .arg(&root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let applied = memslice(&["apply"]).status().expect("apply");
    assert!(applied.success(), "apply: {applied}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let watcher = Watcher(
        memslice(&["heal", "watch", "--metrics-addr", &addr.to_string()])
            .spawn()
            .expect("heal watch"),
    );
    let started = Instant::now();
    while scrape(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no metrics endpoint after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (watcher, addr)
}

/// A normal scrape: its latency, or what went wrong.
fn scrape(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_LIMIT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(2 * SCRAPE_LIMIT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nAccept: text/plain\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("\nmemslice_") {
        Ok(started.elapsed())
    } else {
        Err(format!("unexpected answer: {answer:.200}"))
    }
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `client` in a loop on its own thread until `stop`.
fn hostile(
    stop: &Arc<AtomicBool>,
    client: impl Fn(&AtomicBool) + Send + 'static,
) -> JoinHandle<()> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            client(&stop);
        }
    })
}

/// Keeps writing a request line that never ends.
fn endless_line(addr: SocketAddr, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(b"GET /");
    while !stop.load(Ordering::Relaxed) && stream.write_all(&[b'a'; 1024]).is_ok() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends a request one byte every 300 ms.
fn slowloris(addr: SocketAddr, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    for byte in b"GET /metrics HTTP/1.1\r\nHost: node\r\nX-Slow: "
        .iter()
        .cycle()
    {
        if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Asks for the metrics and never reads them.
fn never_reads(addr: SocketAddr, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let held = Instant::now();
    while !stop.load(Ordering::Relaxed) && held.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens connections that say nothing, 500 a second, holding the last 200.
fn flood(addr: SocketAddr, stop: &AtomicBool) {
    let mut held = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(stream) = TcpStream::connect(addr) {
            held.push_back(stream);
        }
        if held.len() > 200 {
            held.pop_front();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn report(line: &str) {
    // Straight to the descriptor: libtest captures only the print macros.
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn hostile_clients_never_delay_a_scrape_nor_grow_the_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (watcher, addr) = start_watcher(dir.path());
    let pid = watcher.0.id();
    let (rss_before, _) = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(hostile(&stop, move |stop| endless_line(addr, stop)));
        clients.push(hostile(&stop, move |stop| never_reads(addr, stop)));
    }
    for _ in 0..2 {
        clients.push(hostile(&stop, move |stop| slowloris(addr, stop)));
    }
    clients.push(hostile(&stop, move |stop| flood(addr, stop)));

    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut rss_max = rss_before;
    let attack = Instant::now();
    while attack.elapsed() < ATTACK {
        match scrape(addr) {
            Ok(latency) => latencies.push(latency),
            Err(err) => failures.push(err),
        }
        rss_max = rss_max.max(rss_kib(pid).0);
        std::thread::sleep(SCRAPE_EVERY);
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("hostile client");
    }
    let (rss_after, rss_peak) = rss_kib(pid);
    drop(watcher);

    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let slowest = latencies.last().copied().unwrap_or_default();
    report(&format!(
        "metrics attack mix ({}s): {} scrapes, median {median:?}, max {slowest:?}, {} failed; \
         watcher RSS {rss_before} KiB before, max sampled {rss_max} KiB, peak (VmHWM) {rss_peak} KiB, \
         {rss_after} KiB after",
        ATTACK.as_secs(),
        latencies.len(),
        failures.len()
    ));
    assert!(failures.is_empty(), "failed scrapes: {failures:?}");
    assert!(
        slowest < SCRAPE_LIMIT,
        "a scrape took {slowest:?} under attack"
    );
    assert!(
        rss_peak < RSS_LIMIT_KIB,
        "the watcher reached {rss_peak} KiB under attack"
    );
}
