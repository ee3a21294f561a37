//! A minimal HTTP endpoint for Prometheus to scrape (`GET /metrics`), for
//! `heal watch --metrics-addr`. One thread, one request at a time: a scrape
//! every few seconds needs no more.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {err}")]
pub struct ServeError {
    pub addr: String,
    pub err: std::io::Error,
}

/// Binds now (so a taken port is an error at start-up) and answers in a
/// background thread with whatever `render` returns at each scrape.
pub fn serve(
    addr: &str,
    render: impl Fn() -> String + Send + 'static,
) -> Result<SocketAddr, ServeError> {
    let listener = TcpListener::bind(addr).map_err(|err| ServeError {
        addr: addr.to_string(),
        err,
    })?;
    let bound = listener.local_addr().map_err(|err| ServeError {
        addr: addr.to_string(),
        err,
    })?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(err) = answer(stream, &render) {
                tracing::debug!("metrics request failed: {err}");
            }
        }
    });
    Ok(bound)
}

fn answer(stream: TcpStream, render: &impl Fn() -> String) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers; their content does not matter.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) =
        if request.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", render())
        } else {
            (
                "404 Not Found",
                "only GET /metrics is served here\n".to_string(),
            )
        };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }

    #[test]
    fn serves_metrics_and_nothing_else() {
        let addr = serve("127.0.0.1:0", || "memslice_up 1\n".to_string()).expect("bind");
        let answer = get(addr, "/metrics");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("text/plain; version=0.0.4"));
        assert!(answer.ends_with("\r\n\r\nmemslice_up 1\n"), "{answer}");
        assert!(get(addr, "/").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn a_taken_port_is_an_error_at_start() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = serve(&addr, String::new).expect_err("taken");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot serve metrics on {addr}"))
        );
    }
}
