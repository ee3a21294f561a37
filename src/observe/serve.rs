//! The `/metrics` endpoint of `heal watch --metrics-addr`: a small HTTP/1.1
//! server for Prometheus that no client can use to hurt the healer it runs in.
//!
//! One background thread serves every client with nonblocking sockets and
//! poll(2), so a slow or hostile client holds only its own slot and never
//! delays another scrape. What a client can cost is bounded:
//! - the request head is read into a fixed buffer of [`MAX_HEAD`] bytes and
//!   must arrive whole within [`READ_TIMEOUT`] of the connection (else 431 or
//!   408);
//! - the answer must be taken within [`WRITE_TIMEOUT`];
//! - at most [`MAX_CONNECTIONS`] are open; when all are taken the oldest
//!   that has not sent its request makes room (the oldest being answered
//!   only when none is left), so idle connections can neither lock a scrape
//!   out nor cut one off while its answer is sent.
//!
//! Every connection gets one answer and is closed (`Connection: close`).
//! Request heads are parsed by httparse, the parser ureq already links in.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Request line and headers together; Prometheus sends a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Header lines in one request (more is answered 431).
const MAX_HEADERS: usize = 64;
/// For the whole request head, from the connection's acceptance.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// For the whole answer; Prometheus' own scrape timeout defaults to 10 s.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at once; a scraper needs one or two.
const MAX_CONNECTIONS: usize = 32;
/// How long one rendering answers further scrapes: a flood of requests
/// reads the cgroup tree at most once a second.
const RENDER_REUSE: Duration = Duration::from_secs(1);
/// After the answer, what a client may still send before the connection is
/// closed (see [`State::Draining`]), and for how long.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// When accept(2) fails for want of descriptors or memory, the pause before
/// trying again, rather than spinning on a listener that stays ready.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

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
    let failed = |err| ServeError {
        addr: addr.to_string(),
        err,
    };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            // Built here: the shared replies are thread-local.
            Server {
                listener,
                connections: Vec::new(),
                metrics: Metrics {
                    render,
                    latest: None,
                },
                accept_paused_until: None,
            }
            .run();
        })
        .map_err(failed)?;
    Ok(bound)
}

struct Server<F> {
    listener: TcpListener,
    /// Oldest first.
    connections: Vec<Connection>,
    metrics: Metrics<F>,
    /// Set while accept(2) is left alone after failing (see [`ACCEPT_BACKOFF`]).
    accept_paused_until: Option<Instant>,
}

impl<F: Fn() -> String> Server<F> {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
            }
            let metrics = &mut self.metrics;
            self.connections
                .retain_mut(|connection| connection.expire(now, metrics) == Progress::Open);
            let (listener_ready, ready) = match self.wait(now) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    tracing::warn!("metrics endpoint: poll failed: {errno}");
                    std::thread::sleep(ACCEPT_BACKOFF);
                    continue;
                }
            };
            let mut ready = ready.into_iter();
            let metrics = &mut self.metrics;
            self.connections.retain_mut(|connection| {
                !ready.next().unwrap_or(false) || connection.advance(metrics) == Progress::Open
            });
            if listener_ready {
                self.accept();
            }
        }
    }

    /// Waits for the listener, a connection or the next deadline; says
    /// whether the listener is ready, and which connections are.
    fn wait(&self, now: Instant) -> Result<(bool, Vec<bool>), Errno> {
        let accepting = self.accept_paused_until.is_none();
        let mut fds: Vec<PollFd<'_>> = self
            .connections
            .iter()
            .map(|connection| PollFd::new(connection.stream.as_fd(), connection.state.interest()))
            .collect();
        if accepting {
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        }
        let next_deadline = self
            .connections
            .iter()
            .map(|connection| connection.deadline)
            .chain(self.accept_paused_until)
            .min();
        let timeout = next_deadline.map_or(PollTimeout::NONE, |deadline| {
            // Rounded up, so that the deadline has passed when poll returns.
            let millis = deadline
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000);
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        });
        poll(&mut fds, timeout)?;
        // Flags nix does not know still mean something happened.
        let mut ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(true)).collect();
        let listener_ready = accepting && ready.pop().unwrap_or(false);
        Ok((listener_ready, ready))
    }

    fn accept(&mut self) {
        // Bounded, so that a flood cannot keep the loop from the clients it has.
        for _ in 0..MAX_CONNECTIONS {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(err) => {
                    // Debug only: clients could otherwise fill the journal.
                    tracing::debug!("metrics endpoint: accept failed: {err}");
                    self.accept_paused_until = Instant::now().checked_add(ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream) {
        if let Err(err) = stream.set_nonblocking(true) {
            tracing::debug!("metrics endpoint: cannot make a connection nonblocking: {err}");
            return;
        }
        if self.connections.len() >= MAX_CONNECTIONS {
            // The oldest that has not asked yet has had the longest chance:
            // a flood of idle connections must not cut off an answer being
            // sent. Only when every one is being answered, the oldest of
            // those (a client that asks and never reads cannot lock a
            // scrape out either).
            let oldest = self
                .connections
                .iter()
                .position(|c| matches!(c.state, State::Reading { .. }))
                .unwrap_or(0);
            self.connections.remove(oldest);
        }
        let mut connection = Connection {
            stream,
            deadline: deadline_after(READ_TIMEOUT),
            state: State::Reading {
                head: vec![0; MAX_HEAD].into_boxed_slice(),
                len: 0,
            },
        };
        // The request is often there already.
        if connection.advance(&mut self.metrics) == Progress::Open {
            self.connections.push(connection);
        }
    }
}

/// The scrape answer, rendered at most once per [`RENDER_REUSE`].
struct Metrics<F> {
    render: F,
    latest: Option<(Instant, Reply)>,
}

impl<F: Fn() -> String> Metrics<F> {
    fn reply(&mut self) -> Reply {
        let now = Instant::now();
        match &self.latest {
            Some((at, reply)) if now.saturating_duration_since(*at) < RENDER_REUSE => reply.clone(),
            _ => {
                let reply = Reply::new("200 OK", METRICS_TYPE, "", &(self.render)());
                self.latest = Some((now, reply.clone()));
                reply
            }
        }
    }
}

/// A whole HTTP response, shared by the connections that are sent it.
#[derive(Clone)]
struct Reply {
    bytes: Rc<[u8]>,
    /// Where the body starts: a HEAD request is sent only this much.
    head_len: usize,
}

impl Reply {
    fn new(status: &str, content_type: &str, extra_headers: &str, body: &str) -> Reply {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
            body.len()
        );
        let mut bytes = Vec::with_capacity(head.len().saturating_add(body.len()));
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(body.as_bytes());
        Reply {
            bytes: bytes.into(),
            head_len: head.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
}

impl Refusal {
    fn reply(self) -> Reply {
        let (status, extra_headers, body) = match self {
            Refusal::BadRequest => ("400 Bad Request", "", "not an HTTP/1.x request\n"),
            Refusal::NotFound => ("404 Not Found", "", "only /metrics is served here\n"),
            Refusal::MethodNotAllowed => (
                "405 Method Not Allowed",
                "Allow: GET, HEAD\r\n",
                "only GET and HEAD are answered on /metrics\n",
            ),
            Refusal::Timeout => (
                "408 Request Timeout",
                "",
                "the request did not arrive in time\n",
            ),
            Refusal::TooLarge => (
                "431 Request Header Fields Too Large",
                "",
                "the request line and headers are limited to 8 KiB\n",
            ),
        };
        Reply::new(status, TEXT_TYPE, extra_headers, body)
    }
}

/// A complete request head: what it asks for, and whether the answer is
/// headers only (HEAD).
#[derive(Debug, PartialEq, Eq)]
struct Request {
    wants: Result<(), Refusal>,
    head_only: bool,
}

/// Parses what has arrived of a request head: `Ok(None)` while it is
/// incomplete and can still grow, `Err` when no answer but a refusal fits.
fn parse(head: &[u8]) -> Result<Option<Request>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(head) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::TooLarge);
        }
        Err(_) => return Err(Refusal::BadRequest),
    };
    // httparse lets bytes over 0x7f through in header values.
    if head
        .get(..head_len)
        .is_none_or(|head| std::str::from_utf8(head).is_err())
    {
        return Err(Refusal::BadRequest);
    }
    let method = request.method.unwrap_or_default();
    let target = request.path.unwrap_or_default();
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let wants = match (path, method) {
        ("/metrics", "GET" | "HEAD") => Ok(()),
        ("/metrics", _) => Err(Refusal::MethodNotAllowed),
        _ => Err(Refusal::NotFound),
    };
    Ok(Some(Request {
        wants,
        head_only: method == "HEAD",
    }))
}

struct Connection {
    stream: TcpStream,
    /// Of the state it is in.
    deadline: Instant,
    state: State,
}

enum State {
    Reading {
        head: Box<[u8]>,
        len: usize,
    },
    Writing {
        reply: Reply,
        end: usize,
        written: usize,
    },
    /// The answer is sent and our side shut down; what the client still
    /// sends is read and dropped before closing, because closing with
    /// unread input resets the connection, and a reset can destroy the
    /// answer before the client has read it.
    Draining {
        left: usize,
    },
}

impl State {
    fn interest(&self) -> PollFlags {
        match self {
            State::Reading { .. } | State::Draining { .. } => PollFlags::POLLIN,
            State::Writing { .. } => PollFlags::POLLOUT,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Open,
    Done,
}

impl Connection {
    /// Reads, answers and writes as far as the socket allows without waiting.
    fn advance<F: Fn() -> String>(&mut self, metrics: &mut Metrics<F>) -> Progress {
        loop {
            match &mut self.state {
                State::Reading { head, len } => {
                    let Some(free) = head.get_mut(*len..) else {
                        return Progress::Done;
                    };
                    let read = match self.stream.read(free) {
                        Ok(0) => return Progress::Done,
                        Ok(read) => read,
                        Err(err) => match err.kind() {
                            ErrorKind::WouldBlock => return Progress::Open,
                            ErrorKind::Interrupted => continue,
                            _ => return Progress::Done,
                        },
                    };
                    *len = len.saturating_add(read).min(head.len());
                    match parse(head.get(..*len).unwrap_or_default()) {
                        Ok(None) => {}
                        Ok(Some(Request { wants, head_only })) => {
                            let reply = match wants {
                                Ok(()) => metrics.reply(),
                                Err(refusal) => refusal.reply(),
                            };
                            self.answer(reply, head_only);
                        }
                        Err(refusal) => self.answer(refusal.reply(), false),
                    }
                }
                State::Writing {
                    reply,
                    end,
                    written,
                } => {
                    let rest = reply.bytes.get(*written..*end).unwrap_or_default();
                    if rest.is_empty() {
                        // Nothing more to say: the client reads to the end.
                        if self.stream.shutdown(Shutdown::Write).is_err() {
                            return Progress::Done;
                        }
                        self.deadline = deadline_after(LINGER_TIMEOUT);
                        self.state = State::Draining { left: LINGER_BYTES };
                        continue;
                    }
                    match self.stream.write(rest) {
                        Ok(0) => return Progress::Done,
                        Ok(sent) => *written = written.saturating_add(sent),
                        Err(err) => match err.kind() {
                            ErrorKind::WouldBlock => return Progress::Open,
                            ErrorKind::Interrupted => {}
                            _ => return Progress::Done,
                        },
                    }
                }
                State::Draining { left } => {
                    let mut sink = [0; 4096];
                    match self.stream.read(&mut sink) {
                        Ok(0) => return Progress::Done,
                        Ok(read) => match left.checked_sub(read) {
                            Some(still) if still > 0 => *left = still,
                            _ => return Progress::Done,
                        },
                        Err(err) => match err.kind() {
                            ErrorKind::WouldBlock => return Progress::Open,
                            ErrorKind::Interrupted => {}
                            _ => return Progress::Done,
                        },
                    }
                }
            }
        }
    }

    /// Past its deadline, a connection still reading is told so; any other
    /// is closed.
    fn expire<F: Fn() -> String>(&mut self, now: Instant, metrics: &mut Metrics<F>) -> Progress {
        if now < self.deadline {
            return Progress::Open;
        }
        match self.state {
            State::Reading { .. } => {
                self.answer(Refusal::Timeout.reply(), false);
                self.advance(metrics)
            }
            State::Writing { .. } | State::Draining { .. } => Progress::Done,
        }
    }

    fn answer(&mut self, reply: Reply, head_only: bool) {
        let end = if head_only {
            reply.head_len
        } else {
            reply.bytes.len()
        };
        self.deadline = deadline_after(WRITE_TIMEOUT);
        self.state = State::Writing {
            reply,
            end,
            written: 0,
        };
    }
}

/// `timeout` from now; the constants here cannot overflow an `Instant`, and
/// if one did the deadline would simply be now.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    }

    /// Sends `request` and reads the answer to the end (at most 5 s).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(request).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A normal scrape, which must be answered 200 within a second.
    fn scrape_within_a_second(addr: SocketAddr) {
        let started = Instant::now();
        let answer = get(addr, "/metrics");
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:.200}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    }

    fn up() -> SocketAddr {
        serve("127.0.0.1:0", || "memslice_up 1\n".to_string()).expect("bind")
    }

    #[test]
    fn serves_metrics_and_nothing_else() {
        let addr = up();
        let answer = get(addr, "/metrics");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("text/plain; version=0.0.4"));
        assert!(answer.ends_with("\r\n\r\nmemslice_up 1\n"), "{answer}");
        assert!(get(addr, "/metrics?x=1").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get(addr, "/").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/metricsx").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn head_gets_the_headers_of_a_scrape_only() {
        let addr = up();
        let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Length: 14\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    }

    #[test]
    fn other_methods_are_not_allowed_on_metrics() {
        let addr = up();
        let answer = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
        let answer = exchange(addr, b"DELETE /metrics HTTP/1.0\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    }

    #[test]
    fn garbage_and_invalid_utf8_are_bad_requests() {
        let addr = up();
        for request in [
            &b"GET /metr\xffics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nHost: \xc3\x28\r\n\r\n",
            b"hello\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            let answer = exchange(addr, request);
            assert!(answer.starts_with("HTTP/1.1 400 "), "{request:?}: {answer}");
        }
    }

    #[test]
    fn parse_waits_for_a_whole_head_and_caps_it() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost:"), Ok(None));
        assert_eq!(
            parse(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Request {
                wants: Ok(()),
                head_only: true
            }))
        );
        // Garbage is refused at once, a method that never ends at the cap.
        assert_eq!(parse(b"\x16\x03\x01"), Err(Refusal::BadRequest));
        assert_eq!(parse(&[b'A'; MAX_HEAD - 1]), Ok(None));
        assert_eq!(parse(&[b'A'; MAX_HEAD]), Err(Refusal::TooLarge));
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Err(Refusal::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse(format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(Refusal::TooLarge)
        );
    }

    #[test]
    fn an_oversized_request_head_is_answered_431_after_8_kib() {
        let addr = up();
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        let answer = exchange(addr, &long);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[test]
    fn an_endless_request_line_is_cut_off_and_never_delays_a_scrape() {
        let addr = up();
        let endless = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let started = Instant::now();
            let chunk = [b'A'; 1024];
            // Until the server closes: its answer or a reset ends the writes.
            while stream.write_all(&chunk).is_ok() {
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "the server still takes an endless request line after 3 s"
                );
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        scrape_within_a_second(addr);
        endless.join().expect("endless client");
    }

    #[test]
    fn a_slowloris_never_delays_a_scrape() {
        let addr = up();
        let mut slow = TcpStream::connect(addr).expect("connect");
        for byte in b"GET /metrics HTTP/1.1\r\n".iter().take(4) {
            slow.write_all(&[*byte]).expect("trickle");
            scrape_within_a_second(addr);
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    #[test]
    fn a_client_that_never_reads_never_delays_a_scrape() {
        let body = "x".repeat(8 << 20);
        let addr = serve("127.0.0.1:0", move || body.clone()).expect("bind");
        let mut stuck = TcpStream::connect(addr).expect("connect");
        stuck
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("send");
        std::thread::sleep(Duration::from_millis(200));
        scrape_within_a_second(addr);
        drop(stuck);
    }

    #[test]
    fn a_flood_of_connections_is_capped_and_never_locks_a_scrape_out() {
        let addr = up();
        let flood: Vec<TcpStream> = (0..4 * MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        scrape_within_a_second(addr);
        // All but the newest MAX_CONNECTIONS were closed to make room.
        let closed = flood
            .iter()
            .filter(|stream| {
                stream
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("timeout");
                match (&**stream).read(&mut [0; 1]) {
                    Ok(read) => read == 0,
                    Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                }
            })
            .count();
        assert!(
            closed >= flood.len() - MAX_CONNECTIONS,
            "only {closed} of {} closed",
            flood.len()
        );
    }

    #[test]
    fn a_flood_of_idle_connections_does_not_cut_off_an_answer_being_sent() {
        let body = "x".repeat(16 << 20);
        let length = body.len();
        let addr = serve("127.0.0.1:0", move || body.clone()).expect("bind");
        let mut scrape = TcpStream::connect(addr).expect("connect");
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("send");
        // The answer is under way, bigger than the socket buffers take.
        let mut first = [0; 4096];
        scrape.read_exact(&mut first).expect("the answer starts");
        let flood: Vec<TcpStream> = (0..4 * MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // The flood is admitted before the scrape reads on.
        std::thread::sleep(Duration::from_millis(300));
        let mut rest = Vec::new();
        scrape.read_to_end(&mut rest).expect("read");
        let got = first.len() + rest.len();
        let head = String::from_utf8_lossy(&first);
        let body_starts = head.find("\r\n\r\n").expect("a head") + 4;
        assert_eq!(got - body_starts, length, "the answer was cut off");
        drop(flood);
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
