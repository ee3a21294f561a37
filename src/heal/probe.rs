//! Probing the site's services, and running the commands a heal run starts
//! (command probes, restarts, the notify hook), each with its own timeout.
//! Nothing here hangs a heal run: every way of asking has a deadline, and a
//! command's deadline covers writing its input.

use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::decide::ProbeResult;
use crate::config::heal::{Probe, Service};

pub fn probe(service: &Service) -> ProbeResult {
    let outcome = match &service.probe {
        Probe::Http { url, expect_status } => http(url, *expect_status, service.timeout),
        Probe::Tcp { address } => tcp(address, service.timeout),
        Probe::Command(argv) => command(argv, service.timeout),
        Probe::Unit(unit) => command(
            &[
                crate::locations::systemctl().display().to_string(),
                "is-active".into(),
                "--quiet".into(),
                unit.clone(),
            ],
            service.timeout,
        ),
    };
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    ProbeResult {
        service: service.name.clone(),
        ok,
        detail,
    }
}

fn http(url: &str, expect: u16, timeout: Duration) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|err| format!("GET {url}: {err}"))?;
    let status = response.status().as_u16();
    if status == expect {
        Ok(format!("GET {url}: {status}"))
    } else {
        Err(format!("GET {url}: {status}, expected {expect}"))
    }
}

fn tcp(address: &str, timeout: Duration) -> Result<String, String> {
    let targets = address
        .to_socket_addrs()
        .map_err(|err| format!("{address}: {err}"))?;
    let mut last = format!("{address}: no address");
    for target in targets {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(_) => return Ok(format!("connected to {target}")),
            Err(err) => last = format!("{target}: {err}"),
        }
    }
    Err(last)
}

/// The environment a command gets. A heal run's commands get memslice's
/// own: what its unit or crontab set. A task's supervisor has the
/// environment of whoever started the task (through sudo, the app user's
/// PATH where sudoers sets no secure_path), so its stall hook gets
/// [`FIXED_PATH`] and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Inherited,
    FixedPath,
}

/// The PATH of a command run with [`Environment::FixedPath`]: systemd's
/// and sudo's secure_path.
const FIXED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `argv` with no input and its output discarded; kills it at the deadline.
pub fn command(argv: &[String], timeout: Duration) -> Result<String, String> {
    run(argv, None, timeout, Environment::Inherited)
}

/// Runs `argv` with `input` on its standard input (when given) and kills it
/// at the deadline, so no command can hang a heal run. The deadline covers
/// the input too: it is written without blocking between looks at the
/// command, so input of any size, a command that never reads it, or a
/// grandchild that keeps the pipe open, cannot hold the caller past it.
/// Output is discarded (null, not a pipe that someone could keep open).
/// Every command runs in /, whatever directory memslice was started in.
pub fn run(
    argv: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
    environment: Environment,
) -> Result<String, String> {
    let shown = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut command = Command::new(program);
    if environment == Environment::FixedPath {
        command.env_clear().env("PATH", FIXED_PATH);
    }
    let mut child = command
        .args(args)
        .current_dir("/")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("{shown}: {err}"))?;
    let deadline = Instant::now().checked_add(timeout);
    let mut feed = match (input, child.stdin.take()) {
        (Some(input), Some(pipe)) => match Feed::new(pipe, input) {
            Ok(feed) => Some(feed),
            Err(err) => {
                kill(&mut child);
                return Err(format!("{shown}: cannot write its input: {err}"));
            }
        },
        _ => None,
    };
    loop {
        // Dropping the pipe once all is written (or the command closed its
        // end) is the end of input the command waits for.
        if feed.as_mut().is_some_and(|feed| !feed.write_ready()) {
            feed = None;
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(format!("{shown}: exit 0")),
            Ok(Some(status)) => return Err(format!("{shown}: {status}")),
            Ok(None) => {}
            Err(err) => return Err(format!("{shown}: {err}")),
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            kill(&mut child);
            let unread = feed.map_or(String::new(), |feed| {
                format!(" ({} bytes of its input not taken)", feed.rest.len())
            });
            return Err(format!(
                "{shown}: no answer within {}s, killed{unread}",
                timeout.as_secs_f32()
            ));
        }
        let pause = deadline.map_or(TICK, |deadline| {
            deadline.saturating_duration_since(now).min(TICK)
        });
        match &feed {
            // Back as soon as the command takes more input.
            Some(feed) => feed.wait_writable(pause),
            None => std::thread::sleep(pause),
        }
    }
}

/// Kills and reaps; errors mean it has already ended.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// How often a running command is looked at.
const TICK: Duration = Duration::from_millis(10);

/// Input still to be written to a command's standard input.
struct Feed<'a> {
    pipe: ChildStdin,
    rest: &'a [u8],
}

impl<'a> Feed<'a> {
    fn new(pipe: ChildStdin, input: &'a [u8]) -> nix::Result<Feed<'a>> {
        // Only our end of the pipe: the command's stdin stays blocking.
        fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Feed { pipe, rest: input })
    }

    /// Writes what the pipe takes now; `false` when there is nothing more
    /// to write: all of it written, or the command closed its end (EPIPE:
    /// the Rust runtime ignores SIGPIPE, so that is an error here, not a
    /// signal to the healer).
    fn write_ready(&mut self) -> bool {
        while !self.rest.is_empty() {
            match self.pipe.write(self.rest) {
                Ok(0) => return false,
                Ok(written) => self.rest = self.rest.get(written..).unwrap_or_default(),
                Err(err) if err.kind() == ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Sleeps up to `pause`, less if the pipe has room again.
    fn wait_writable(&self, pause: Duration) {
        let millis = u16::try_from(pause.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLOUT)];
        if poll(&mut fds, PollTimeout::from(millis)).is_err() {
            std::thread::sleep(pause);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// Runs `work` on its own thread and fails the test if it has not
    /// finished within `limit`, so that a hang fails instead of stalling.
    pub(in crate::heal) fn within<T: Send + 'static>(
        limit: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(work()));
        outcome
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("still running after {limit:?}"))
    }

    /// `script` run by sh with `input`, its result and how long it took,
    /// failing the test past `limit`.
    fn feed(
        script: &str,
        input: Vec<u8>,
        timeout: Duration,
        limit: Duration,
    ) -> (Result<String, String>, Duration) {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        within(limit, move || {
            let started = Instant::now();
            let result = run(&argv, Some(&input), timeout, Environment::Inherited);
            (result, started.elapsed())
        })
    }

    const MIB: usize = 1 << 20;

    fn payload() -> Vec<u8> {
        (0..MIB).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_command_that_never_reads_its_input_is_killed_at_the_deadline() {
        let timeout = Duration::from_millis(300);
        let (result, took) = feed("sleep 30", payload(), timeout, Duration::from_secs(5));
        let err = result.expect_err("killed");
        assert!(err.contains("killed") && err.contains("not taken"), "{err}");
        assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn a_command_that_reads_all_of_a_large_input_gets_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("input");
        let (result, _) = feed(
            &format!("cat > '{}'", out.display()),
            payload(),
            Duration::from_secs(10),
            Duration::from_secs(15),
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(std::fs::read(out).expect("written") == payload());
    }

    #[test]
    fn a_slow_reader_gets_its_input_until_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("input");
        // 64 KiB every 100 ms: 1.6 s for the whole payload.
        let script = format!(
            "i=0; while [ $i -lt 16 ]; do dd bs=65536 count=1 iflag=fullblock status=none >> '{}'; sleep 0.1; i=$((i+1)); done",
            out.display()
        );
        let (result, _) = feed(
            &script,
            payload(),
            Duration::from_secs(10),
            Duration::from_secs(15),
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(std::fs::read(&out).expect("written") == payload());
        let timeout = Duration::from_millis(200);
        let (result, took) = feed(&script, payload(), timeout, Duration::from_secs(5));
        assert!(result.is_err_and(|err| err.contains("killed")));
        assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn a_command_that_exits_without_reading_its_input_is_no_harm() {
        let limit = Duration::from_secs(5);
        let (ok, took) = feed("exit 0", payload(), limit, limit);
        assert!(ok.is_ok(), "{ok:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        let (failed, _) = feed("exit 3", payload(), limit, limit);
        assert!(failed.is_err_and(|err| err.contains("exit status: 3")));
    }

    #[test]
    fn a_grandchild_keeping_the_input_open_cannot_hold_the_caller() {
        let limit = Duration::from_secs(5);
        // Through fd 3: sh gives a background job /dev/null as its stdin.
        let (result, took) = feed("exec 3<&0; sleep 3 & exit 0", payload(), limit, limit);
        assert!(result.is_ok(), "{result:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    fn service(probe: Probe) -> Service {
        Service {
            name: "web".into(),
            probe,
            timeout: Duration::from_millis(500),
            restart: None,
        }
    }

    /// A one-shot HTTP server on loopback answering `status`.
    fn serve(status: u16) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        format!("http://{address}/health")
    }

    #[test]
    fn http_passes_on_the_expected_status_only() {
        let ok = probe(&service(Probe::Http {
            url: serve(200),
            expect_status: 200,
        }));
        assert!(ok.ok, "{}", ok.detail);
        let bad = probe(&service(Probe::Http {
            url: serve(503),
            expect_status: 200,
        }));
        assert!(!bad.ok);
        assert!(bad.detail.ends_with("503, expected 200"), "{}", bad.detail);
    }

    #[test]
    fn http_to_a_closed_port_fails_quickly() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        drop(listener);
        let started = Instant::now();
        assert!(
            !probe(&service(Probe::Http {
                url,
                expect_status: 200
            }))
            .ok
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn http_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let started = Instant::now();
        let result = probe(&service(Probe::Http {
            url,
            expect_status: 200,
        }));
        assert!(!result.ok);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        drop(listener);
    }

    #[test]
    fn tcp_connects_or_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        assert!(
            probe(&service(Probe::Tcp {
                address: address.clone()
            }))
            .ok
        );
        drop(listener);
        assert!(!probe(&service(Probe::Tcp { address })).ok);
        assert!(
            !probe(&service(Probe::Tcp {
                address: "no-such-host.invalid:80".into()
            }))
            .ok
        );
    }

    #[test]
    fn commands_pass_on_exit_0_and_are_killed_at_the_deadline() {
        assert!(probe(&service(Probe::Command(vec!["true".into()]))).ok);
        let failed = probe(&service(Probe::Command(vec![
            "sh".into(),
            "-c".into(),
            "exit 4".into(),
        ])));
        assert!(
            !failed.ok && failed.detail.contains("exit status: 4"),
            "{}",
            failed.detail
        );
        let started = Instant::now();
        let hung = probe(&service(Probe::Command(vec!["sleep".into(), "30".into()])));
        assert!(
            !hung.ok && hung.detail.contains("killed"),
            "{}",
            hung.detail
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!probe(&service(Probe::Command(vec!["/no/such/probe".into()]))).ok);
    }
}
