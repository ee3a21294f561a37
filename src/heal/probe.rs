//! Probing the site's services, each with its own timeout. A probe never
//! hangs a heal run: every way of asking has a deadline.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::decide::ProbeResult;
use crate::config::heal::{Probe, Service};

pub fn probe(service: &Service) -> ProbeResult {
    let outcome = match &service.probe {
        Probe::Http { url, expect_status } => http(url, *expect_status, service.timeout),
        Probe::Tcp { address } => tcp(address, service.timeout),
        Probe::Command(argv) => command(argv, service.timeout),
        Probe::Unit(unit) => command(
            &[
                "systemctl".into(),
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

/// Runs `argv` with no input and its output discarded; kills it at the deadline.
pub fn command(argv: &[String], timeout: Duration) -> Result<String, String> {
    run(argv, None, timeout)
}

/// Runs `argv` with `input` on its standard input (when given) and kills it
/// at the deadline, so no command can hang a heal run.
pub fn run(argv: &[String], input: Option<&[u8]>, timeout: Duration) -> Result<String, String> {
    let shown = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("{shown}: {err}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small enough for the pipe buffer; a command that does not read
        // it gets EPIPE, not a stuck healer.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(format!("{shown}: exit 0")),
            Ok(Some(status)) => return Err(format!("{shown}: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown}: no answer within {}s, killed",
                    timeout.as_secs_f32()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => return Err(format!("{shown}: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

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
