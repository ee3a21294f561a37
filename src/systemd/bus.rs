//! A small blocking D-Bus client for the one call the systemd driver needs:
//! `org.freedesktop.systemd1.Manager.StartTransientUnit` for a scope whose
//! `PIDs` is a child memslice forked, and the `JobRemoved` signal that says
//! the scope is up. It replaces exec'ing `systemd-run --scope` (and then
//! memslice again inside the scope): one Unix socket, one write, one reply.
//!
//! Why hand-written: zbus runs an async executor even behind its blocking
//! API (66 crates with `blocking-api`), the `dbus` crate links libdbus-1 (C,
//! against a static binary), and rustbus brings a second nix and syn 1. One
//! method call needs little of the protocol: the SASL `EXTERNAL` handshake,
//! little-endian marshalling of a handful of types, and a reader that
//! skips what it does not need. Every read and write has a deadline, and
//! every length a peer sends is checked and bounded (`MAX_MESSAGE`).
//!
//! Like `systemctl` and `systemd-run` as root, it talks to systemd's
//! private socket (peer to peer: no bus daemon, no `Hello`; systemd sends
//! every signal to every private connection, so `JobRemoved` needs no
//! subscription) and falls back to the system bus (`Hello`, then a match
//! rule for `JobRemoved`). The socket paths are fixed, never taken from
//! the environment: memslice runs as root for callers through sudo.
//!
//! References: the D-Bus specification (message format, marshalling,
//! authentication), and systemd's src/core/dbus-manager.c
//! (StartTransientUnit), dbus-unit.c (Description, Slice, CollectMode),
//! dbus-scope.c (PIDs `au`) and dbus-cgroup.c (MemoryMax `t`,
//! ManagedOOMPreference `s`, accepted on scopes since systemd 248).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, sockopt};

/// systemd's own socket, root only, what systemctl uses as root.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// The system bus, the fallback when the private socket is not there.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";
/// A hung systemd must not hang memslice.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message read or written. systemd's replies and signals are
/// a few KiB at most; a peer announcing more is refused before anything
/// is allocated for it.
pub const MAX_MESSAGE: usize = 1 << 20;
/// A SASL line from the server ("OK <32 hex digits>") is far shorter.
const MAX_AUTH_LINE: usize = 512;
/// The specification's limit on container nesting (32 arrays + 32 structs).
const MAX_DEPTH: u32 = 64;
/// JobRemoved signals kept while waiting for a method reply.
const MAX_STASHED_JOBS: usize = 64;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SENDER: u8 = 7;
const FIELD_SIGNATURE: u8 = 8;

/// What the task's scope should be.
#[derive(Debug, Clone, Copy)]
pub struct ScopeRequest<'a> {
    /// The scope unit, like `memslice-backup-1234.scope`.
    pub unit: &'a str,
    /// The slice unit it goes in, like `app-tasks.slice`.
    pub slice: &'a str,
    pub description: &'a str,
    /// Processes moved into the scope; at least one. 0 means the caller.
    pub pids: &'a [u32],
    /// MemoryMax= in bytes; `u64::MAX` is infinity.
    pub memory_max: Option<u64>,
    /// ManagedOOMPreference=omit: systemd-oomd skips the scope.
    pub omit_from_userspace_oom: bool,
}

/// What failed, at which step, on which socket.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid scope request: {0}")]
    Request(String),
    #[error("cannot reach systemd: {private}; {bus}")]
    Unreachable {
        private: Box<BusError>,
        bus: Box<BusError>,
    },
    #[error("{socket}: cannot connect: {source}")]
    Connect {
        socket: String,
        #[source]
        source: io::Error,
    },
    #[error("{socket}: {detail}")]
    Peer { socket: String, detail: String },
    #[error("{socket}: authentication refused: {detail}")]
    Auth { socket: String, detail: String },
    #[error("{socket}: timed out after {timeout:?} {step}")]
    Timeout {
        socket: String,
        step: &'static str,
        timeout: Duration,
    },
    #[error("{socket}: {step}: {source}")]
    Io {
        socket: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{socket}: the connection closed {step}")]
    Closed { socket: String, step: &'static str },
    #[error("{socket}: malformed message {step}: {source}")]
    Protocol {
        socket: String,
        step: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("systemd refused {method}: {name}: {message}")]
    Refused {
        method: &'static str,
        name: String,
        message: String,
    },
    #[error("the start job of {unit} ended with result '{result}'")]
    JobFailed { unit: String, result: String },
}

/// Why bytes from the peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated (needs byte {0})")]
    Truncated(usize),
    #[error("length {0} is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(u64),
    #[error("unknown byte order {0:#04x}")]
    ByteOrder(u8),
    #[error("protocol version {0}, expected 1")]
    Version(u8),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("signature '{found}' where '{expected}' was expected")]
    Signature {
        found: String,
        expected: &'static str,
    },
}

/// A started scope: its job path, and the connection its `JobRemoved`
/// signal will arrive on.
pub struct ScopeJob {
    unit: String,
    path: String,
    connection: Connection,
}

impl ScopeJob {
    /// The job's object path, like `/org/freedesktop/systemd1/job/1234`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Which socket the call went through.
    pub fn socket(&self) -> &str {
        &self.connection.socket
    }

    /// Waits until systemd reports the job finished: Ok when the scope
    /// runs (result "done"), `JobFailed` with systemd's result otherwise.
    /// After Ok, every PID of the request that was alive is in the scope's
    /// cgroup. Keep the child from exiting until then (blocked before its
    /// exec): the kernel moves no exiting task, and systemd 252 then keeps
    /// a "running" scope with an empty cgroup (seen in the VM).
    pub fn wait(mut self, timeout: Duration) -> Result<(), BusError> {
        let result = self.connection.wait_job_removed(&self.path, timeout)?;
        if result == "done" {
            Ok(())
        } else {
            Err(BusError::JobFailed {
                unit: self.unit,
                result,
            })
        }
    }
}

/// Asks systemd for the scope: connects (private socket, else the system
/// bus), calls StartTransientUnit in mode "fail" and returns the queued
/// job. `timeout` bounds the whole exchange; `ScopeJob::wait` then says
/// when the PIDs are in the scope (a caller may instead read
/// /proc/PID/cgroup).
pub fn start_scope(request: &ScopeRequest<'_>, timeout: Duration) -> Result<ScopeJob, BusError> {
    let body = scope_body(request)?;
    let deadline = Deadline::after(timeout);
    let mut connection = Connection::open_systemd(deadline)?;
    let path = connection.start_transient_unit(&body, deadline)?;
    Ok(ScopeJob {
        unit: request.unit.to_string(),
        path,
        connection,
    })
}

// ---------------------------------------------------------------------
// The request

fn check_text(what: &str, text: &str) -> Result<(), BusError> {
    // D-Bus strings may not hold NUL.
    if text.contains('\0') {
        return Err(BusError::Request(format!("{what} {text:?} contains NUL")));
    }
    Ok(())
}

/// The StartTransientUnit body (signature "ssa(sv)a(sa(sv))"). Pure.
fn scope_body(request: &ScopeRequest<'_>) -> Result<Vec<u8>, BusError> {
    check_text("unit name", request.unit)?;
    check_text("slice", request.slice)?;
    check_text("description", request.description)?;
    if !request.unit.ends_with(".scope") || request.unit.len() <= ".scope".len() {
        return Err(BusError::Request(format!(
            "unit name {:?} does not end in .scope",
            request.unit
        )));
    }
    if !request.slice.ends_with(".slice") || request.slice.len() <= ".slice".len() {
        return Err(BusError::Request(format!(
            "slice {:?} does not end in .slice",
            request.slice
        )));
    }
    if request.pids.is_empty() {
        return Err(BusError::Request("no PIDs for the scope".into()));
    }
    let mut body = Encoder::default();
    body.string(request.unit);
    body.string("fail");
    body.array(8, |props| {
        property(props, "Description", "s", |v| v.string(request.description));
        property(props, "Slice", "s", |v| v.string(request.slice));
        property(props, "PIDs", "au", |v| {
            v.array(4, |a| request.pids.iter().for_each(|&pid| a.u32(pid)));
        });
        // Unloaded at once when it ends, failed or not, as --collect does.
        property(props, "CollectMode", "s", |v| {
            v.string("inactive-or-failed");
        });
        if let Some(max) = request.memory_max {
            property(props, "MemoryMax", "t", |v| v.u64(max));
        }
        if request.omit_from_userspace_oom {
            property(props, "ManagedOOMPreference", "s", |v| v.string("omit"));
        }
    });
    // No auxiliary units.
    body.array(8, |_| {});
    Ok(body.buf)
}

fn property(props: &mut Encoder, name: &str, signature: &str, value: impl FnOnce(&mut Encoder)) {
    props.structure(|entry| {
        entry.string(name);
        entry.signature(signature);
        value(entry);
    });
}

// ---------------------------------------------------------------------
// Marshalling (little-endian; positions count from the message start, and
// a body starts 8-aligned, so a body encoded from 0 aligns the same)

#[derive(Default)]
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn pad(&mut self, alignment: usize) {
        while self.buf.len() % alignment != 0 {
            self.buf.push(0);
        }
    }

    fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// STRING and OBJECT_PATH: u32 length, bytes, NUL. A length past u32
    /// cannot pass `encode_message`'s size check, so saturating is safe.
    fn string(&mut self, value: &str) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// SIGNATURE: u8 length, bytes, NUL. Only constant signatures here.
    fn signature(&mut self, value: &str) {
        self.u8(u8::try_from(value.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// ARRAY: u32 byte length, padding to the element alignment (present
    /// even when empty, not counted in the length), the elements.
    fn array(&mut self, element_alignment: usize, elements: impl FnOnce(&mut Self)) {
        self.u32(0);
        let length_at = self.buf.len() - 4;
        self.pad(element_alignment);
        let start = self.buf.len();
        elements(self);
        let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// STRUCT and DICT_ENTRY: 8-aligned.
    fn structure(&mut self, fields: impl FnOnce(&mut Self)) {
        self.pad(8);
        fields(self);
    }
}

/// A header field as the encoder writes it (ERROR_NAME and REPLY_SERIAL
/// for the fake systemd in the tests).
#[cfg_attr(not(test), allow(dead_code))]
enum Field<'a> {
    Path(&'a str),
    Interface(&'a str),
    Member(&'a str),
    ErrorName(&'a str),
    ReplySerial(u32),
    Destination(&'a str),
    Signature(&'a str),
}

impl Field<'_> {
    /// The header field's code and the signature of its variant value.
    fn code_and_signature(&self) -> (u8, &'static str) {
        match self {
            Field::Path(_) => (FIELD_PATH, "o"),
            Field::Interface(_) => (FIELD_INTERFACE, "s"),
            Field::Member(_) => (FIELD_MEMBER, "s"),
            Field::ErrorName(_) => (FIELD_ERROR_NAME, "s"),
            Field::ReplySerial(_) => (FIELD_REPLY_SERIAL, "u"),
            Field::Destination(_) => (FIELD_DESTINATION, "s"),
            Field::Signature(_) => (FIELD_SIGNATURE, "g"),
        }
    }
}

/// One whole message: the fixed header, the fields `a(yv)`, padding to 8,
/// the body. Fails only when the message would pass `MAX_MESSAGE`.
fn encode_message(
    kind: u8,
    serial: u32,
    fields: &[Field<'_>],
    body: &[u8],
) -> Result<Vec<u8>, BusError> {
    let body_length = u32::try_from(body.len())
        .ok()
        .filter(|&length| (length as usize) <= MAX_MESSAGE)
        .ok_or_else(|| BusError::Request("message body over the limit".into()))?;
    let mut out = Encoder::default();
    out.buf.extend_from_slice(&[b'l', kind, 0, 1]);
    out.u32(body_length);
    out.u32(serial);
    out.array(8, |array| {
        for field in fields {
            array.structure(|entry| {
                let (code, signature) = field.code_and_signature();
                entry.u8(code);
                entry.signature(signature);
                match *field {
                    Field::ReplySerial(serial) => entry.u32(serial),
                    Field::Signature(signature) => entry.signature(signature),
                    Field::Path(text)
                    | Field::Interface(text)
                    | Field::Member(text)
                    | Field::ErrorName(text)
                    | Field::Destination(text) => entry.string(text),
                }
            });
        }
    });
    out.pad(8);
    out.buf.extend_from_slice(body);
    if out.buf.len() > MAX_MESSAGE {
        return Err(BusError::Request("message over the limit".into()));
    }
    Ok(out.buf)
}

fn method_call(
    serial: u32,
    destination: &str,
    path: &str,
    interface: &str,
    member: &str,
    signature: &str,
    body: &[u8],
) -> Result<Vec<u8>, BusError> {
    // sd-bus's order, so a capture of busctl's call compares byte for byte.
    let mut fields = vec![
        Field::Path(path),
        Field::Member(member),
        Field::Interface(interface),
        Field::Destination(destination),
    ];
    if !signature.is_empty() {
        fields.push(Field::Signature(signature));
    }
    encode_message(METHOD_CALL, serial, &fields, body)
}

// ---------------------------------------------------------------------
// Unmarshalling: every read bounds-checked, either byte order

/// The parts of a received message memslice looks at.
#[derive(Debug, Default, PartialEq, Eq)]
struct Message {
    kind: u8,
    serial: u32,
    big_endian: bool,
    reply_serial: Option<u32>,
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Invalid("length overflows"))?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated(end))?;
        self.pos = end;
        Ok(bytes)
    }

    fn align(&mut self, alignment: usize) -> Result<(), DecodeError> {
        let padding = (alignment - self.pos % alignment) % alignment;
        self.take(padding).map(drop)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.align(4)?;
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| DecodeError::Invalid("short u32"))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    fn text(&mut self, length: usize) -> Result<String, DecodeError> {
        let bytes = self.take(length)?;
        if self.u8()? != 0 {
            return Err(DecodeError::Invalid("string without its NUL"));
        }
        if bytes.contains(&0) {
            return Err(DecodeError::Invalid("string holds NUL"));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("string is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let length = self.u32()?;
        if length as usize > MAX_MESSAGE {
            return Err(DecodeError::TooLarge(length.into()));
        }
        self.text(length as usize)
    }

    fn signature(&mut self) -> Result<String, DecodeError> {
        let length = self.u8()?;
        self.text(length.into())
    }
}

/// The alignment of the type whose code starts `signature[i..]`.
fn alignment(signature: &[u8], i: usize) -> Result<usize, DecodeError> {
    match signature.get(i) {
        Some(b'y' | b'g' | b'v') => Ok(1),
        Some(b'n' | b'q') => Ok(2),
        Some(b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a') => Ok(4),
        Some(b'x' | b't' | b'd' | b'(' | b'{') => Ok(8),
        _ => Err(DecodeError::Invalid("bad type in signature")),
    }
}

/// Where the single complete type at `signature[i..]` ends. Pure.
fn type_end(signature: &[u8], i: usize, depth: u32) -> Result<usize, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Invalid("types nested too deep"));
    }
    match signature.get(i) {
        Some(b'a') => type_end(signature, i + 1, depth + 1),
        Some(b'(') => {
            let mut j = i + 1;
            if signature.get(j) == Some(&b')') {
                return Err(DecodeError::Invalid("empty struct"));
            }
            while signature.get(j) != Some(&b')') {
                j = type_end(signature, j, depth + 1)?;
            }
            Ok(j + 1)
        }
        Some(b'{') => {
            let key = i + 1;
            alignment(signature, key)?;
            if matches!(signature.get(key), Some(b'a' | b'(' | b'{' | b'v')) {
                return Err(DecodeError::Invalid("dict key is not a basic type"));
            }
            let value_end = type_end(signature, type_end(signature, key, depth + 1)?, depth + 1)?;
            if signature.get(value_end) != Some(&b'}') {
                return Err(DecodeError::Invalid("dict entry without its '}'"));
            }
            Ok(value_end + 1)
        }
        Some(_) => alignment(signature, i).map(|_| i + 1),
        None => Err(DecodeError::Invalid("signature ends early")),
    }
}

/// Steps over one value of the type at `signature[i..]`; returns where
/// that type ends in the signature.
fn skip_value(
    cursor: &mut Cursor<'_>,
    signature: &[u8],
    i: usize,
    depth: u32,
) -> Result<usize, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Invalid("values nested too deep"));
    }
    let width = |cursor: &mut Cursor<'_>, n: usize| {
        cursor.align(n)?;
        cursor.take(n).map(|_| i + 1)
    };
    match signature.get(i) {
        Some(b'y') => width(cursor, 1),
        Some(b'n' | b'q') => width(cursor, 2),
        Some(b'b' | b'i' | b'u' | b'h') => width(cursor, 4),
        Some(b'x' | b't' | b'd') => width(cursor, 8),
        Some(b's' | b'o') => cursor.string().map(|_| i + 1),
        Some(b'g') => cursor.signature().map(|_| i + 1),
        Some(b'v') => {
            let inner = cursor.signature()?;
            let inner = inner.as_bytes();
            if skip_value(cursor, inner, 0, depth + 1)? != inner.len() {
                return Err(DecodeError::Invalid("variant holds more than one type"));
            }
            Ok(i + 1)
        }
        Some(b'a') => {
            let length = cursor.u32()? as usize;
            let element = i + 1;
            let element_end = type_end(signature, element, depth + 1)?;
            cursor.align(alignment(signature, element)?)?;
            let end = cursor
                .pos
                .checked_add(length)
                .ok_or(DecodeError::Invalid("array length overflows"))?;
            if end > cursor.data.len() {
                return Err(DecodeError::Truncated(end));
            }
            // Every element takes at least one byte, so this ends.
            while cursor.pos < end {
                skip_value(cursor, signature, element, depth + 1)?;
            }
            if cursor.pos != end {
                return Err(DecodeError::Invalid("array elements overrun its length"));
            }
            Ok(element_end)
        }
        Some(b'(') => {
            cursor.align(8)?;
            let end = type_end(signature, i, depth)?;
            let mut j = i + 1;
            while j < end - 1 {
                j = skip_value(cursor, signature, j, depth + 1)?;
            }
            Ok(end)
        }
        Some(b'{') => {
            cursor.align(8)?;
            let end = type_end(signature, i, depth)?;
            let value = skip_value(cursor, signature, i + 1, depth + 1)?;
            skip_value(cursor, signature, value, depth + 1)?;
            Ok(end)
        }
        _ => Err(DecodeError::Invalid("bad type in signature")),
    }
}

/// The whole length of the message whose first 16 bytes are `fixed`.
fn frame_length(fixed: &[u8]) -> Result<usize, DecodeError> {
    let mut cursor = Cursor {
        data: fixed,
        pos: 0,
        big_endian: false,
    };
    cursor.big_endian = match cursor.u8()? {
        b'l' => false,
        b'B' => true,
        other => return Err(DecodeError::ByteOrder(other)),
    };
    cursor.take(2)?;
    let version = cursor.u8()?;
    if version != 1 {
        return Err(DecodeError::Version(version));
    }
    let body = u64::from(cursor.u32()?);
    cursor.u32()?;
    let fields = u64::from(cursor.u32()?);
    // 16 fixed bytes, the fields, up to 7 bytes of padding, the body.
    let total = (16 + fields).div_ceil(8) * 8 + body;
    if total > MAX_MESSAGE as u64 {
        return Err(DecodeError::TooLarge(total));
    }
    Ok(total as usize)
}

/// Decodes one whole message. Never panics, whatever the bytes.
fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    let total = frame_length(frame)?;
    if frame.len() != total {
        return Err(DecodeError::Invalid(
            "frame length disagrees with its header",
        ));
    }
    let mut cursor = Cursor {
        data: frame,
        pos: 0,
        big_endian: frame.first() == Some(&b'B'),
    };
    cursor.take(1)?;
    let mut message = Message {
        kind: cursor.u8()?,
        big_endian: cursor.big_endian,
        ..Message::default()
    };
    cursor.take(2)?;
    let body_length = cursor.u32()? as usize;
    message.serial = cursor.u32()?;
    if message.serial == 0 {
        return Err(DecodeError::Invalid("serial 0"));
    }
    let fields_length = cursor.u32()? as usize;
    let fields_end = cursor
        .pos
        .checked_add(fields_length)
        .ok_or(DecodeError::Invalid("header length overflows"))?;
    while cursor.pos < fields_end {
        cursor.align(8)?;
        let code = cursor.u8()?;
        let signature = cursor.signature()?;
        let expect = |expected: &'static str| {
            if signature == expected {
                Ok(())
            } else {
                Err(DecodeError::Signature {
                    found: signature.clone(),
                    expected,
                })
            }
        };
        match code {
            FIELD_PATH => {
                expect("o")?;
                message.path = Some(cursor.string()?);
            }
            FIELD_INTERFACE => {
                expect("s")?;
                message.interface = Some(cursor.string()?);
            }
            FIELD_MEMBER => {
                expect("s")?;
                message.member = Some(cursor.string()?);
            }
            FIELD_ERROR_NAME => {
                expect("s")?;
                message.error_name = Some(cursor.string()?);
            }
            FIELD_REPLY_SERIAL => {
                expect("u")?;
                message.reply_serial = Some(cursor.u32()?);
            }
            FIELD_SIGNATURE => {
                expect("g")?;
                message.signature = cursor.signature()?;
            }
            FIELD_DESTINATION | FIELD_SENDER => {
                expect("s")?;
                cursor.string()?;
            }
            // Fields this client has no use for (UNIX_FDS, newer ones).
            _ => {
                let signature = signature.as_bytes();
                if skip_value(&mut cursor, signature, 0, 1)? != signature.len() {
                    return Err(DecodeError::Invalid(
                        "header field holds more than one type",
                    ));
                }
            }
        }
    }
    if cursor.pos != fields_end {
        return Err(DecodeError::Invalid("header fields overrun their length"));
    }
    cursor.align(8)?;
    message.body = cursor.take(body_length)?.to_vec();
    if cursor.pos != frame.len() {
        return Err(DecodeError::Invalid("bytes after the body"));
    }
    let required = match message.kind {
        METHOD_CALL => message.path.is_some() && message.member.is_some(),
        METHOD_RETURN => message.reply_serial.is_some(),
        ERROR => message.reply_serial.is_some() && message.error_name.is_some(),
        SIGNAL => message.path.is_some() && message.interface.is_some() && message.member.is_some(),
        // Unknown types are to be ignored, not refused.
        _ => true,
    };
    if !required {
        return Err(DecodeError::Invalid("a required header field is missing"));
    }
    Ok(message)
}

impl Message {
    fn body_cursor(&self) -> Cursor<'_> {
        Cursor {
            data: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        }
    }

    /// The body of a reply whose signature must be `expected`, made of
    /// strings and object paths only ("o", "s").
    fn strings(&self, expected: &'static str) -> Result<Vec<String>, DecodeError> {
        if self.signature != expected {
            return Err(DecodeError::Signature {
                found: self.signature.clone(),
                expected,
            });
        }
        let mut cursor = self.body_cursor();
        let values = expected
            .chars()
            .map(|_| cursor.string())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(values)
    }

    /// An ERROR's text: its first argument when that is a string.
    fn error_text(&self) -> String {
        if self.signature.starts_with('s') {
            self.body_cursor().string().unwrap_or_default()
        } else {
            String::new()
        }
    }

    fn is_signal(&self, interface: &str, member: &str) -> bool {
        self.kind == SIGNAL
            && self.interface.as_deref() == Some(interface)
            && self.member.as_deref() == Some(member)
    }

    /// JobRemoved(u id, o job, s unit, s result) → (job, unit, result).
    fn job_removed(&self) -> Result<(String, String, String), DecodeError> {
        if self.signature != "uoss" {
            return Err(DecodeError::Signature {
                found: self.signature.clone(),
                expected: "uoss",
            });
        }
        let mut cursor = self.body_cursor();
        cursor.u32()?;
        Ok((cursor.string()?, cursor.string()?, cursor.string()?))
    }
}

// ---------------------------------------------------------------------
// The connection

#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// Time left, or None once it has passed.
    fn left(&self) -> Option<Duration> {
        self.at
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// systemd's private socket: peer to peer.
    Private,
    /// A bus daemon: `Hello` first, match rules for signals.
    Bus,
}

struct Connection {
    stream: UnixStream,
    socket: String,
    kind: Kind,
    serial: u32,
    /// Bytes to send with the next message (BEGIN, Hello): one write.
    outbox: Vec<u8>,
    /// Bytes read and not yet taken as messages.
    inbox: Vec<u8>,
    /// Calls sent without waiting for their reply, by serial.
    unanswered: Vec<(u32, &'static str)>,
    /// JobRemoved signals seen while waiting for something else.
    removed: VecDeque<(String, String)>,
    match_added: bool,
}

impl Connection {
    /// The private socket, else the system bus.
    fn open_systemd(deadline: Deadline) -> Result<Connection, BusError> {
        Self::open_first(
            &crate::locations::systemd_private_socket(),
            &crate::locations::system_bus_socket(),
            deadline,
        )
    }

    fn open_first(private: &Path, bus: &Path, deadline: Deadline) -> Result<Connection, BusError> {
        let first = match Self::open(private, Kind::Private, deadline) {
            Ok(connection) => return Ok(connection),
            // A hung systemd would hang the bus too, and the time is gone.
            Err(err @ BusError::Timeout { .. }) => return Err(err),
            Err(err) => err,
        };
        Self::open(bus, Kind::Bus, deadline).map_err(|second| BusError::Unreachable {
            private: Box::new(first),
            bus: Box::new(second),
        })
    }

    fn open(path: &Path, kind: Kind, deadline: Deadline) -> Result<Connection, BusError> {
        let socket = path.display().to_string();
        let stream = connect(path, &socket, deadline)?;
        if kind == Kind::Private {
            // As sd-bus does: only root or ourselves may pose as systemd.
            let peer =
                socket::getsockopt(&stream.as_fd(), sockopt::PeerCredentials).map_err(|errno| {
                    BusError::Io {
                        socket: socket.clone(),
                        step: "reading the peer's credentials",
                        source: errno.into(),
                    }
                })?;
            let us = nix::unistd::geteuid().as_raw();
            if peer.uid() != 0 && peer.uid() != us {
                return Err(BusError::Peer {
                    socket,
                    detail: format!("the peer runs as uid {}, not root", peer.uid()),
                });
            }
        }
        Self::over(stream, socket, kind, deadline)
    }

    /// Authenticates on a connected stream; the bus `Hello` is queued
    /// to go with the first call.
    fn over(
        stream: UnixStream,
        socket: String,
        kind: Kind,
        deadline: Deadline,
    ) -> Result<Connection, BusError> {
        let mut connection = Connection {
            stream,
            socket,
            kind,
            serial: 0,
            outbox: Vec::new(),
            inbox: Vec::new(),
            unanswered: Vec::new(),
            removed: VecDeque::new(),
            match_added: false,
        };
        connection.authenticate(deadline)?;
        if kind == Kind::Bus {
            let serial = connection.next_serial();
            let hello = method_call(
                serial,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                "",
                &[],
            )?;
            connection.outbox.extend_from_slice(&hello);
            connection.unanswered.push((serial, "Hello"));
        }
        Ok(connection)
    }

    /// SASL EXTERNAL with our uid; BEGIN waits in the outbox.
    fn authenticate(&mut self, deadline: Deadline) -> Result<(), BusError> {
        let mut hello = b"\0AUTH EXTERNAL ".to_vec();
        // The uid as decimal text, each character as two hex digits.
        for byte in nix::unistd::geteuid().as_raw().to_string().bytes() {
            hello.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        hello.extend_from_slice(b"\r\n");
        self.send(&hello, deadline, "sending AUTH")?;
        let line = self.read_line(deadline)?;
        // Quoted short: the line may be anything a peer sent.
        let shown: String = line.chars().take(80).collect();
        let Some(guid) = line.strip_prefix("OK ") else {
            return Err(BusError::Auth {
                socket: self.socket.clone(),
                detail: format!("the server answered {shown:?}"),
            });
        };
        if guid.len() != 32 || !guid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BusError::Auth {
                socket: self.socket.clone(),
                detail: format!("malformed server GUID in {shown:?}"),
            });
        }
        self.outbox.extend_from_slice(b"BEGIN\r\n");
        Ok(())
    }

    fn read_line(&mut self, deadline: Deadline) -> Result<String, BusError> {
        loop {
            if let Some(end) = self.inbox.windows(2).position(|pair| pair == b"\r\n") {
                let line: Vec<u8> = self.inbox.drain(..end + 2).take(end).collect();
                return String::from_utf8(line).map_err(|_| BusError::Auth {
                    socket: self.socket.clone(),
                    detail: "the server's answer is not text".into(),
                });
            }
            if self.inbox.len() > MAX_AUTH_LINE {
                return Err(BusError::Auth {
                    socket: self.socket.clone(),
                    detail: format!("no end of line in the first {MAX_AUTH_LINE} bytes"),
                });
            }
            self.fill(deadline, "waiting for the authentication answer")?;
        }
    }

    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.checked_add(1).unwrap_or(1);
        self.serial
    }

    fn start_transient_unit(
        &mut self,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<String, BusError> {
        if self.kind == Kind::Bus && !self.match_added {
            // Before the call, or JobRemoved could pass before the rule.
            let serial = self.next_serial();
            let mut rule = Encoder::default();
            rule.string(&format!(
                "type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',\
                 interface='{MANAGER}',member='JobRemoved'"
            ));
            let add_match = method_call(
                serial,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                "s",
                &rule.buf,
            )?;
            self.outbox.extend_from_slice(&add_match);
            self.unanswered.push((serial, "AddMatch"));
            self.match_added = true;
        }
        let serial = self.next_serial();
        let call = method_call(
            serial,
            SYSTEMD,
            SYSTEMD_PATH,
            MANAGER,
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            body,
        )?;
        let mut out = std::mem::take(&mut self.outbox);
        out.extend_from_slice(&call);
        self.send(&out, deadline, "sending StartTransientUnit")?;
        let reply = self.reply(
            serial,
            "StartTransientUnit",
            "waiting for the reply to StartTransientUnit",
            deadline,
        )?;
        let mut values = reply.strings("o").map_err(|source| BusError::Protocol {
            socket: self.socket.clone(),
            step: "in the reply to StartTransientUnit",
            source,
        })?;
        Ok(values.pop().unwrap_or_default())
    }

    /// Reads until the reply to `serial`: its METHOD_RETURN, or its ERROR
    /// as `Refused`. Signals and other replies are skipped.
    fn reply(
        &mut self,
        serial: u32,
        method: &'static str,
        step: &'static str,
        deadline: Deadline,
    ) -> Result<Message, BusError> {
        loop {
            let message = self.next_message(deadline, step)?;
            let answered = message.reply_serial;
            if matches!(message.kind, METHOD_RETURN | ERROR) {
                let method = if answered == Some(serial) {
                    Some(method)
                } else if let Some(at) = self
                    .unanswered
                    .iter()
                    .position(|&(s, _)| Some(s) == answered)
                {
                    Some(self.unanswered.remove(at).1)
                } else {
                    None
                };
                if let (Some(method), ERROR) = (method, message.kind) {
                    return Err(BusError::Refused {
                        method,
                        name: message.error_name.clone().unwrap_or_default(),
                        message: message.error_text(),
                    });
                }
                if answered == Some(serial) {
                    return Ok(message);
                }
            } else {
                self.stash_job_removed(&message);
            }
        }
    }

    fn stash_job_removed(&mut self, message: &Message) {
        if message.is_signal(MANAGER, "JobRemoved") {
            if let Ok((job, _, result)) = message.job_removed() {
                if self.removed.len() == MAX_STASHED_JOBS {
                    self.removed.pop_front();
                }
                self.removed.push_back((job, result));
            }
        }
    }

    /// Reads until systemd's JobRemoved for `job`; returns its result.
    fn wait_job_removed(&mut self, job: &str, timeout: Duration) -> Result<String, BusError> {
        if let Some(at) = self.removed.iter().position(|(path, _)| path == job) {
            return Ok(self
                .removed
                .remove(at)
                .map(|(_, result)| result)
                .unwrap_or_default());
        }
        let deadline = Deadline::after(timeout);
        loop {
            let message = self.next_message(deadline, "waiting for JobRemoved")?;
            if !message.is_signal(MANAGER, "JobRemoved") {
                continue;
            }
            let (path, _, result) = message.job_removed().map_err(|source| BusError::Protocol {
                socket: self.socket.clone(),
                step: "in JobRemoved",
                source,
            })?;
            if path == job {
                return Ok(result);
            }
        }
    }

    fn next_message(
        &mut self,
        deadline: Deadline,
        step: &'static str,
    ) -> Result<Message, BusError> {
        let protocol = |socket: &str, source| BusError::Protocol {
            socket: socket.to_string(),
            step,
            source,
        };
        while self.inbox.len() < 16 {
            self.fill(deadline, step)?;
        }
        let total = frame_length(&self.inbox[..16]).map_err(|err| protocol(&self.socket, err))?;
        while self.inbox.len() < total {
            self.fill(deadline, step)?;
        }
        let message = decode(&self.inbox[..total]).map_err(|err| protocol(&self.socket, err));
        self.inbox.drain(..total);
        message
    }

    /// One read, within the deadline.
    fn fill(&mut self, deadline: Deadline, step: &'static str) -> Result<(), BusError> {
        let left = deadline
            .left()
            .ok_or_else(|| self.timeout(step, deadline))?;
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|source| self.io(step, source))?;
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(BusError::Closed {
                        socket: self.socket.clone(),
                        step,
                    });
                }
                Ok(n) => {
                    self.inbox.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timeout(step, deadline));
                }
                Err(err) => return Err(self.io(step, err)),
            }
        }
    }

    /// Writes all of `bytes` within the deadline, without SIGPIPE.
    fn send(
        &mut self,
        bytes: &[u8],
        deadline: Deadline,
        step: &'static str,
    ) -> Result<(), BusError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = deadline
                .left()
                .ok_or_else(|| self.timeout(step, deadline))?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|source| self.io(step, source))?;
            match socket::send(self.stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Err(self.timeout(step, deadline)),
                Err(Errno::EPIPE | Errno::ECONNRESET) => {
                    return Err(BusError::Closed {
                        socket: self.socket.clone(),
                        step,
                    });
                }
                Err(errno) => return Err(self.io(step, errno.into())),
            }
        }
        Ok(())
    }

    fn timeout(&self, step: &'static str, deadline: Deadline) -> BusError {
        BusError::Timeout {
            socket: self.socket.clone(),
            step,
            timeout: deadline.timeout,
        }
    }

    fn io(&self, step: &'static str, source: io::Error) -> BusError {
        BusError::Io {
            socket: self.socket.clone(),
            step,
            source,
        }
    }
}

/// Connects without blocking past the deadline: a Unix connect blocks
/// while the listener's backlog is full, as a hung systemd's would be.
fn connect(path: &Path, name: &str, deadline: Deadline) -> Result<UnixStream, BusError> {
    let fail = |source: io::Error| BusError::Connect {
        socket: name.to_string(),
        source,
    };
    let address = UnixAddr::new(path).map_err(|errno| fail(errno.into()))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|errno| fail(errno.into()))?;
    loop {
        match socket::connect(fd.as_raw_fd(), &address) {
            Ok(()) => break,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if deadline.left().is_some() => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(Errno::EAGAIN) => {
                return Err(BusError::Timeout {
                    socket: name.to_string(),
                    step: "connecting (the listener's backlog is full)",
                    timeout: deadline.timeout,
                });
            }
            Err(errno) => return Err(fail(errno.into())),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(fail)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::thread;

    use proptest::prelude::*;

    use super::*;

    /// What busctl (sd-bus, systemd 252) sends for the same call, captured
    /// on a fake server listening on a Unix socket:
    ///   busctl --address=unix:path=SOCKET call org.freedesktop.systemd1
    ///     /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager
    ///     StartTransientUnit 'ssa(sv)a(sa(sv))' memslice-probe-1.scope fail
    ///     6 Description s "memslice probe" Slice s app-tasks.slice PIDs au 1
    ///     4242 CollectMode s inactive-or-failed MemoryMax t 67108864
    ///     ManagedOOMPreference s omit 0
    /// Its serial is 2 (after Hello), its flags byte 0x04
    /// (ALLOW_INTERACTIVE_AUTHORIZATION, which root has no use for).
    const BUSCTL_CALL: &str = concat!(
        "6c0104011801000002000000b600000001016f00190000002f6f72672f667265",
        "656465736b746f702f73797374656d6431000000000000000301730012000000",
        "53746172745472616e7369656e74556e69740000000000000201730020000000",
        "6f72672e667265656465736b746f702e73797374656d64312e4d616e61676572",
        "000000000000000006017300180000006f72672e667265656465736b746f702e",
        "73797374656d6431000000000000000008016700107373612873762961287361",
        "2873762929000000160000006d656d736c6963652d70726f62652d312e73636f",
        "70650000040000006661696c00000000dd000000000000000b00000044657363",
        "72697074696f6e00017300000e0000006d656d736c6963652070726f62650000",
        "05000000536c696365000173000000000f0000006170702d7461736b732e736c",
        "6963650000000000040000005049447300026175000000000400000092100000",
        "0b000000436f6c6c6563744d6f6465000173000012000000696e616374697665",
        "2d6f722d6661696c6564000000000000090000004d656d6f72794d6178000174",
        "00000000000000000000000400000000140000004d616e616765644f4f4d5072",
        "65666572656e636500017300040000006f6d6974000000000000000000000000",
    );

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn probe_request() -> ScopeRequest<'static> {
        ScopeRequest {
            unit: "memslice-probe-1.scope",
            slice: "app-tasks.slice",
            description: "memslice probe",
            pids: &[4242],
            memory_max: Some(64 << 20),
            omit_from_userspace_oom: true,
        }
    }

    fn start_call(serial: u32, request: &ScopeRequest<'_>) -> Vec<u8> {
        let body = scope_body(request).expect("valid request");
        method_call(
            serial,
            SYSTEMD,
            SYSTEMD_PATH,
            MANAGER,
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            &body,
        )
        .expect("encodes")
    }

    #[test]
    fn the_call_is_byte_for_byte_what_sd_bus_sends() {
        let mut expected = hex(BUSCTL_CALL);
        expected[2] = 0;
        assert_eq!(start_call(2, &probe_request()), expected);
    }

    #[test]
    fn a_minimal_body_matches_the_specification_by_hand() {
        let request = ScopeRequest {
            unit: "a.scope",
            slice: "b.slice",
            description: "",
            pids: &[1, 2],
            memory_max: None,
            omit_from_userspace_oom: false,
        };
        let mut expected: Vec<u8> = Vec::new();
        let mut put = |bytes: &[u8]| expected.extend_from_slice(bytes);
        put(b"\x07\0\0\0a.scope\0"); // 0: s name
        put(b"\x04\0\0\0fail\0"); // 12: s mode
        put(b"\0\0\0"); // 21: pad to 4
        put(&139u32.to_le_bytes()); // 24: a(sv) length, 171 - 32
        put(b"\0\0\0\0"); // 28: pad to the first struct, not counted
        put(b"\x0b\0\0\0Description\0"); // 32: (s
        put(b"\x01s\0"); // 48: v's signature
        put(b"\0\0\0\0\0\0"); // 51: pad, then s "" (length 0, NUL)
        put(b"\0\0\0\0\0\0\0"); // 57: pad to the next struct
        put(b"\x05\0\0\0Slice\0\x01s\0\0\0\0"); // 64
        put(b"\x07\0\0\0b.slice\0"); // 80
        put(b"\0\0\0\0"); // 92: pad to 96
        put(b"\x04\0\0\0PIDs\0\x02au\0\0\0\0"); // 96
        put(&8u32.to_le_bytes()); // 112: au length
        put(&[1, 0, 0, 0, 2, 0, 0, 0]); // 116
        put(b"\0\0\0\0"); // 124: pad to 128
        put(b"\x0b\0\0\0CollectMode\0\x01s\0\0"); // 128
        put(b"\x12\0\0\0inactive-or-failed\0"); // 148
        put(b"\0"); // 171: pad to 4
        put(&0u32.to_le_bytes()); // 172: empty a(sa(sv)); 176 is 8-aligned
        assert_eq!(scope_body(&request).expect("valid"), expected);
    }

    #[test]
    fn the_header_is_laid_out_as_the_specification_says() {
        let call = start_call(1, &probe_request());
        assert_eq!(&call[..4], b"l\x01\x00\x01");
        assert_eq!(&call[4..8], &280u32.to_le_bytes());
        assert_eq!(&call[8..12], &1u32.to_le_bytes());
        // PATH at 16 ends at 50, MEMBER at 56 ends at 83, INTERFACE at 88
        // ends at 129, DESTINATION at 136 ends at 169, SIGNATURE at 176
        // ends at 198: 182 bytes of fields, the body at 200.
        assert_eq!(&call[12..16], &182u32.to_le_bytes());
        assert_eq!(&call[16..20], b"\x01\x01o\0");
        assert_eq!(&call[56..60], b"\x03\x01s\0");
        assert_eq!(&call[88..92], b"\x02\x01s\0");
        assert_eq!(&call[136..140], b"\x06\x01s\0");
        assert_eq!(&call[176..180], b"\x08\x01g\0");
        assert_eq!(call.len(), 200 + 280);
        let message = decode(&call).expect("decodes");
        assert_eq!(message.kind, METHOD_CALL);
        assert_eq!(message.member.as_deref(), Some("StartTransientUnit"));
        assert_eq!(message.signature, "ssa(sv)a(sa(sv))");
        assert_eq!(message.body, scope_body(&probe_request()).expect("valid"));
    }

    #[test]
    fn requests_are_checked_before_anything_is_sent() {
        let base = probe_request();
        for (request, says) in [
            (
                ScopeRequest {
                    unit: "x.service",
                    ..base
                },
                ".scope",
            ),
            (
                ScopeRequest {
                    unit: ".scope",
                    ..base
                },
                ".scope",
            ),
            (
                ScopeRequest {
                    slice: "app",
                    ..base
                },
                ".slice",
            ),
            (ScopeRequest { pids: &[], ..base }, "no PIDs"),
            (
                ScopeRequest {
                    description: "a\0b",
                    ..base
                },
                "NUL",
            ),
        ] {
            let err = scope_body(&request).expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = scope_body(&ScopeRequest {
            description: &"x".repeat(MAX_MESSAGE),
            ..base
        })
        .and_then(|body| method_call(1, "d", "/p", "i", "m", "s", &body))
        .expect_err("too large");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    fn method_return(serial: u32, reply_to: u32, signature: &str, body: &[u8]) -> Vec<u8> {
        let mut fields = vec![Field::ReplySerial(reply_to)];
        if !signature.is_empty() {
            fields.push(Field::Signature(signature));
        }
        encode_message(METHOD_RETURN, serial, &fields, body).expect("encodes")
    }

    fn error_reply(serial: u32, reply_to: u32, name: &str, text: &str) -> Vec<u8> {
        let mut body = Encoder::default();
        body.string(text);
        let fields = [
            Field::ErrorName(name),
            Field::ReplySerial(reply_to),
            Field::Signature("s"),
        ];
        encode_message(ERROR, serial, &fields, &body.buf).expect("encodes")
    }

    fn string_body(text: &str) -> Vec<u8> {
        let mut body = Encoder::default();
        body.string(text);
        body.buf
    }

    fn job_removed(serial: u32, id: u32, job: &str, unit: &str, result: &str) -> Vec<u8> {
        let mut body = Encoder::default();
        body.u32(id);
        body.string(job);
        body.string(unit);
        body.string(result);
        let fields = [
            Field::Path(SYSTEMD_PATH),
            Field::Interface(MANAGER),
            Field::Member("JobRemoved"),
            Field::Signature("uoss"),
        ];
        encode_message(SIGNAL, serial, &fields, &body.buf).expect("encodes")
    }

    fn unit_new(serial: u32) -> Vec<u8> {
        let mut body = Encoder::default();
        body.string("other.service");
        body.string("/org/freedesktop/systemd1/unit/other_2eservice");
        let fields = [
            Field::Path(SYSTEMD_PATH),
            Field::Interface(MANAGER),
            Field::Member("UnitNew"),
            Field::Signature("so"),
        ];
        encode_message(SIGNAL, serial, &fields, &body.buf).expect("encodes")
    }

    #[test]
    fn replies_errors_and_signals_decode() {
        let reply = decode(&method_return(
            9,
            1,
            "o",
            &string_body("/org/freedesktop/systemd1/job/7"),
        ))
        .expect("decodes");
        assert_eq!(
            (reply.kind, reply.serial, reply.reply_serial),
            (METHOD_RETURN, 9, Some(1))
        );
        assert_eq!(
            reply.strings("o").expect("o"),
            ["/org/freedesktop/systemd1/job/7"]
        );
        assert!(reply.strings("s").is_err());

        let error = decode(&error_reply(
            10,
            1,
            "org.freedesktop.systemd1.UnitExists",
            "Unit x.scope already exists.",
        ))
        .expect("decodes");
        assert_eq!(error.kind, ERROR);
        assert_eq!(
            error.error_name.as_deref(),
            Some("org.freedesktop.systemd1.UnitExists")
        );
        assert_eq!(error.error_text(), "Unit x.scope already exists.");

        let signal = decode(&job_removed(
            11,
            7,
            "/org/freedesktop/systemd1/job/7",
            "x.scope",
            "done",
        ))
        .expect("decodes");
        assert!(signal.is_signal(MANAGER, "JobRemoved"));
        assert_eq!(
            signal.job_removed().expect("uoss"),
            (
                "/org/freedesktop/systemd1/job/7".into(),
                "x.scope".into(),
                "done".into()
            )
        );
    }

    #[test]
    fn big_endian_messages_and_unknown_fields_decode() {
        // A big-endian METHOD_RETURN, by hand: REPLY_SERIAL 1, SIGNATURE
        // "s", a field 9 (UNIX_FDS, u) and an unknown field 42 of type
        // a{sv} that must be stepped over; body s "hi".
        let mut m: Vec<u8> = vec![b'B', 2, 0, 1];
        m.extend_from_slice(&7u32.to_be_bytes()); // body length
        m.extend_from_slice(&5u32.to_be_bytes()); // serial
        m.extend_from_slice(&0u32.to_be_bytes()); // fields length, below
        m.extend_from_slice(&[5, 1, b'u', 0]); // 16
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&[8, 1, b'g', 0, 1, b's', 0, 0]); // 24
        m.extend_from_slice(&[9, 1, b'u', 0]); // 32
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&[42, 5, b'a', b'{', b's', b'v', b'}', 0]); // 40
        m.extend_from_slice(&10u32.to_be_bytes()); // 48: a{sv} length, 66 - 56
        m.extend_from_slice(&[0, 0, 0, 0]); // 52: pad to the dict entry
        m.extend_from_slice(&1u32.to_be_bytes()); // 56: s "k"
        m.extend_from_slice(&[b'k', 0, 1, b'y', 0, 0x2a]); // 60: g "y", 42
        let fields_length = u32::try_from(m.len() - 16).expect("small");
        m[12..16].copy_from_slice(&fields_length.to_be_bytes());
        while m.len() % 8 != 0 {
            m.push(0);
        }
        m.extend_from_slice(&2u32.to_be_bytes());
        m.extend_from_slice(b"hi\0");
        let message = decode(&m).expect("decodes");
        assert!(message.big_endian);
        assert_eq!(message.reply_serial, Some(1));
        assert_eq!(message.strings("s").expect("s"), ["hi"]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = method_return(9, 1, "o", &string_body("/j"));
        assert_eq!(decode(&good[..10]), Err(DecodeError::Truncated(12)));
        let mut order = good.clone();
        order[0] = b'x';
        assert_eq!(decode(&order), Err(DecodeError::ByteOrder(b'x')));
        let mut version = good.clone();
        version[3] = 2;
        assert_eq!(decode(&version), Err(DecodeError::Version(2)));
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(frame_length(&huge), Err(DecodeError::TooLarge(_))));
        let mut long_string = good.clone();
        let at = long_string.len() - 7;
        long_string[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let message = decode(&long_string).expect("the header is fine");
        assert!(message.strings("o").is_err());
        // A METHOD_RETURN without REPLY_SERIAL.
        let orphan = encode_message(METHOD_RETURN, 3, &[], &[]).expect("encodes");
        assert!(decode(&orphan).is_err());
        // Nesting past the limit is refused, not a stack overflow.
        let deep = "a".repeat(200) + "y";
        assert!(type_end(deep.as_bytes(), 0, 0).is_err());
        let mut cursor = Cursor {
            data: &[0; 1024],
            pos: 0,
            big_endian: false,
        };
        assert!(skip_value(&mut cursor, deep.as_bytes(), 0, 0).is_err());
    }

    /// The other end of a client connection, played by a test thread.
    struct Peer {
        stream: UnixStream,
        inbox: Vec<u8>,
    }

    impl Peer {
        fn more(&mut self) {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("peer read");
            assert!(n > 0, "the client closed the connection");
            self.inbox.extend_from_slice(&chunk[..n]);
        }

        fn take_line(&mut self) -> String {
            loop {
                if let Some(end) = self.inbox.windows(2).position(|p| p == b"\r\n") {
                    let line: Vec<u8> = self.inbox.drain(..end + 2).take(end).collect();
                    return String::from_utf8(line).expect("text");
                }
                self.more();
            }
        }

        /// Reads the AUTH line; returns it without the leading NUL.
        fn auth_line(&mut self) -> String {
            while self.inbox.is_empty() {
                self.more();
            }
            assert_eq!(self.inbox.remove(0), 0, "the client starts with a NUL byte");
            self.take_line()
        }

        fn accept_auth(&mut self) {
            let line = self.auth_line();
            let uid = nix::unistd::geteuid().as_raw().to_string();
            let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(line, format!("AUTH EXTERNAL {hex}"));
            self.send(b"OK 0123456789abcdef0123456789abcdef\r\n");
            assert_eq!(self.take_line(), "BEGIN");
        }

        fn message(&mut self) -> Message {
            while self.inbox.len() < 16 {
                self.more();
            }
            let total = frame_length(&self.inbox[..16]).expect("frame");
            while self.inbox.len() < total {
                self.more();
            }
            let frame: Vec<u8> = self.inbox.drain(..total).collect();
            decode(&frame).expect("the client's message decodes")
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).expect("peer write");
        }

        /// Keeps the connection open, silent, until the test is done.
        fn hold(self, done: &mpsc::Receiver<()>) {
            let _ = done.recv_timeout(Duration::from_secs(30));
            drop(self);
        }
    }

    /// What most exchanges ask: the test scope's StartTransientUnit, 5 s.
    fn start_the_unit(connection: Result<Connection, BusError>) -> Result<String, BusError> {
        let deadline = Deadline::after(Duration::from_secs(5));
        connection
            .expect("authenticated")
            .start_transient_unit(&body(), deadline)
    }

    fn with_peer<T>(
        kind: Kind,
        peer: impl FnOnce(Peer) + Send + 'static,
        client: impl FnOnce(Result<Connection, BusError>) -> T,
    ) -> T {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let handle = thread::spawn(move || {
            peer(Peer {
                stream: theirs,
                inbox: Vec::new(),
            })
        });
        let outcome = client(Connection::over(
            ours,
            "fake".into(),
            kind,
            Deadline::after(Duration::from_secs(5)),
        ));
        handle.join().expect("the peer thread panicked");
        outcome
    }

    fn body() -> Vec<u8> {
        scope_body(&probe_request()).expect("valid")
    }

    const JOB: &str = "/org/freedesktop/systemd1/job/7";

    #[test]
    fn the_private_socket_exchange_skips_what_is_not_the_reply() {
        let result = with_peer(
            Kind::Private,
            |mut peer| {
                peer.accept_auth();
                let call = peer.message();
                assert_eq!(call.member.as_deref(), Some("StartTransientUnit"));
                assert_eq!(call.interface.as_deref(), Some(MANAGER));
                assert_eq!(call.path.as_deref(), Some(SYSTEMD_PATH));
                assert_eq!(call.body, body());
                peer.send(&unit_new(100));
                peer.send(&method_return(101, call.serial + 50, "", &[]));
                peer.send(&method_return(102, call.serial, "o", &string_body(JOB)));
                peer.send(&job_removed(
                    103,
                    6,
                    "/org/freedesktop/systemd1/job/6",
                    "a.scope",
                    "failed",
                ));
                peer.send(&job_removed(104, 7, JOB, "memslice-probe-1.scope", "done"));
            },
            |connection| {
                let mut connection = connection.expect("authenticated");
                let deadline = Deadline::after(Duration::from_secs(5));
                let job = connection
                    .start_transient_unit(&body(), deadline)
                    .expect("job");
                assert_eq!(job, JOB);
                connection.wait_job_removed(&job, Duration::from_secs(5))
            },
        );
        assert_eq!(result.expect("removed"), "done");
    }

    #[test]
    fn on_the_bus_hello_and_the_match_go_first_in_one_write() {
        let result = with_peer(
            Kind::Bus,
            |mut peer| {
                peer.accept_auth();
                let hello = peer.message();
                assert_eq!(hello.member.as_deref(), Some("Hello"));
                let add_match = peer.message();
                assert_eq!(add_match.member.as_deref(), Some("AddMatch"));
                let rule = add_match.strings("s").expect("a rule");
                assert!(rule[0].contains("member='JobRemoved'"), "{rule:?}");
                let call = peer.message();
                assert_eq!(call.member.as_deref(), Some("StartTransientUnit"));
                peer.send(&method_return(1, hello.serial, "s", &string_body(":1.42")));
                peer.send(&method_return(2, add_match.serial, "", &[]));
                // The signal before the reply: the client keeps it.
                peer.send(&job_removed(3, 7, JOB, "memslice-probe-1.scope", "done"));
                peer.send(&method_return(4, call.serial, "o", &string_body(JOB)));
            },
            |connection| {
                let mut connection = connection.expect("authenticated");
                let deadline = Deadline::after(Duration::from_secs(5));
                let job = connection
                    .start_transient_unit(&body(), deadline)
                    .expect("job");
                connection.wait_job_removed(&job, Duration::from_secs(5))
            },
        );
        assert_eq!(result.expect("removed"), "done");
    }

    #[test]
    fn systemds_error_is_reported_by_name() {
        let err = with_peer(
            Kind::Private,
            |mut peer| {
                peer.accept_auth();
                let call = peer.message();
                peer.send(&error_reply(
                    1,
                    call.serial,
                    "org.freedesktop.systemd1.UnitExists",
                    "Unit memslice-probe-1.scope was already loaded or has a fragment file.",
                ));
            },
            start_the_unit,
        )
        .expect_err("refused");
        assert!(
            matches!(&err, BusError::Refused { method: "StartTransientUnit", name, .. }
                if name == "org.freedesktop.systemd1.UnitExists"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "systemd refused StartTransientUnit: org.freedesktop.systemd1.UnitExists: \
             Unit memslice-probe-1.scope was already loaded or has a fragment file."
        );
    }

    #[test]
    fn a_refused_hello_is_named() {
        let err = with_peer(
            Kind::Bus,
            |mut peer| {
                peer.accept_auth();
                let hello = peer.message();
                peer.send(&error_reply(
                    1,
                    hello.serial,
                    "org.freedesktop.DBus.Error.AccessDenied",
                    "no",
                ));
            },
            start_the_unit,
        )
        .expect_err("refused");
        assert!(
            matches!(
                err,
                BusError::Refused {
                    method: "Hello",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_silent_systemd_is_a_timeout_naming_the_step() {
        let (done, wait) = mpsc::channel();
        let started = Instant::now();
        let err = with_peer(
            Kind::Private,
            move |mut peer| {
                peer.accept_auth();
                peer.message();
                peer.hold(&wait);
            },
            |connection| {
                let deadline = Deadline::after(Duration::from_millis(300));
                let outcome = connection
                    .expect("authenticated")
                    .start_transient_unit(&body(), deadline);
                let _ = done.send(());
                outcome
            },
        )
        .expect_err("timed out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "fake: timed out after 300ms waiting for the reply to StartTransientUnit"
        );
    }

    #[test]
    fn a_silent_authentication_is_a_timeout() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let err = Connection::over(
            ours,
            "fake".into(),
            Kind::Private,
            Deadline::after(Duration::from_millis(200)),
        )
        .err()
        .expect("timed out");
        drop(theirs);
        assert!(
            matches!(
                err,
                BusError::Timeout {
                    step: "waiting for the authentication answer",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_job_that_never_ends_is_a_timeout() {
        let (done, wait) = mpsc::channel();
        let err = with_peer(
            Kind::Private,
            move |mut peer| {
                peer.accept_auth();
                let call = peer.message();
                peer.send(&method_return(1, call.serial, "o", &string_body(JOB)));
                peer.hold(&wait);
            },
            |connection| {
                let mut connection = connection.expect("authenticated");
                let deadline = Deadline::after(Duration::from_secs(5));
                let job = connection
                    .start_transient_unit(&body(), deadline)
                    .expect("job");
                let outcome = connection.wait_job_removed(&job, Duration::from_millis(200));
                let _ = done.send(());
                outcome
            },
        )
        .expect_err("timed out");
        assert!(
            matches!(
                err,
                BusError::Timeout {
                    step: "waiting for JobRemoved",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        for garbage in [
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            // Claims a 4 GiB body: refused before anything is allocated.
            [
                b"l\x02\x00\x01".as_slice(),
                &u32::MAX.to_le_bytes(),
                &[1, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat(),
        ] {
            let err = with_peer(
                Kind::Private,
                move |mut peer| {
                    peer.accept_auth();
                    peer.message();
                    peer.send(&garbage);
                },
                |connection| {
                    let deadline = Deadline::after(Duration::from_secs(5));
                    connection
                        .expect("authenticated")
                        .start_transient_unit(&body(), deadline)
                },
            )
            .expect_err("garbage");
            assert!(matches!(err, BusError::Protocol { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_wrong_reply_signature_is_a_protocol_error() {
        let err = with_peer(
            Kind::Private,
            |mut peer| {
                peer.accept_auth();
                let call = peer.message();
                peer.send(&method_return(1, call.serial, "s", &string_body("job")));
            },
            start_the_unit,
        )
        .expect_err("wrong signature");
        assert!(
            err.to_string()
                .contains("signature 's' where 'o' was expected"),
            "{err}"
        );
    }

    #[test]
    fn refused_or_garbled_authentication_is_an_auth_error() {
        for answer in [
            b"REJECTED EXTERNAL\r\n".as_slice(),
            b"OK not-a-guid\r\n",
            &[b'x'; 2 * MAX_AUTH_LINE],
        ] {
            let answer = answer.to_vec();
            let err = with_peer(
                Kind::Private,
                move |mut peer| {
                    peer.auth_line();
                    peer.send(&answer);
                },
                |connection| connection.err().expect("refused"),
            );
            assert!(matches!(err, BusError::Auth { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_closed_connection_is_named() {
        let err = with_peer(
            Kind::Private,
            |mut peer| {
                peer.accept_auth();
                peer.message();
            },
            start_the_unit,
        )
        .expect_err("closed");
        assert!(matches!(err, BusError::Closed { .. }), "{err:?}");
    }

    #[test]
    fn a_failed_job_fails_the_wait() {
        let err = with_peer(
            Kind::Private,
            |mut peer| {
                peer.accept_auth();
                let call = peer.message();
                peer.send(&method_return(1, call.serial, "o", &string_body(JOB)));
                peer.send(&job_removed(2, 7, JOB, "memslice-probe-1.scope", "failed"));
            },
            |connection| {
                let mut connection = connection.expect("authenticated");
                let deadline = Deadline::after(Duration::from_secs(5));
                let path = connection
                    .start_transient_unit(&body(), deadline)
                    .expect("job");
                ScopeJob {
                    unit: "memslice-probe-1.scope".into(),
                    path,
                    connection,
                }
                .wait(Duration::from_secs(5))
            },
        )
        .expect_err("failed");
        assert_eq!(
            err.to_string(),
            "the start job of memslice-probe-1.scope ended with result 'failed'"
        );
    }

    /// A listener that authenticates one client and then hangs up.
    fn listen(path: &Path) -> thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).expect("bind");
        thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            Peer {
                stream,
                inbox: Vec::new(),
            }
            .accept_auth_only();
        })
    }

    impl Peer {
        fn accept_auth_only(mut self) {
            self.auth_line();
            self.send(b"OK 0123456789abcdef0123456789abcdef\r\n");
        }
    }

    #[test]
    fn the_private_socket_first_then_the_bus() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("private");
        let bus = dir.path().join("bus");
        let deadline = || Deadline::after(Duration::from_secs(5));

        let err = Connection::open_first(&private, &bus, deadline())
            .err()
            .expect("neither");
        let text = err.to_string();
        assert!(text.starts_with("cannot reach systemd: "), "{text}");
        assert!(
            text.contains(&format!("{}: cannot connect", private.display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}: cannot connect", bus.display())),
            "{text}"
        );

        let peer = listen(&bus);
        let connection = Connection::open_first(&private, &bus, deadline()).expect("the bus");
        assert_eq!(connection.kind, Kind::Bus);
        peer.join().expect("peer");

        // We are root or ourselves, so the credential check passes.
        let peer = listen(&private);
        let connection = Connection::open_first(&private, &bus, deadline()).expect("private");
        assert_eq!(connection.kind, Kind::Private);
        assert_eq!(connection.socket, private.display().to_string());
        peer.join().expect("peer");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = frame_length(&bytes);
            if let Ok(message) = decode(&bytes) {
                let _ = message.strings("o");
                let _ = message.job_removed();
                let _ = message.error_text();
            }
        }

        #[test]
        fn decoding_damaged_messages_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            which in 0usize..4,
        ) {
            let mut bytes = match which {
                0 => start_call(1, &probe_request()),
                1 => error_reply(2, 1, "org.freedesktop.systemd1.UnitExists", "exists"),
                2 => job_removed(3, 7, JOB, "x.scope", "done"),
                _ => method_return(4, 1, "o", &string_body(JOB)),
            };
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            if let Ok(message) = decode(&bytes) {
                let _ = message.strings("o");
                let _ = message.job_removed();
                let _ = message.error_text();
            }
        }

        #[test]
        fn what_is_encoded_decodes(
            unit in "[a-z0-9@_.-]{1,40}",
            description in "\\PC{0,60}",
            pids in proptest::collection::vec(any::<u32>(), 1..20),
            max in proptest::option::of(any::<u64>()),
            omit in any::<bool>(),
        ) {
            let unit = format!("{unit}.scope");
            let request = ScopeRequest {
                unit: &unit,
                slice: "app-tasks.slice",
                description: &description,
                pids: &pids,
                memory_max: max,
                omit_from_userspace_oom: omit,
            };
            let call = start_call(5, &request);
            let message = decode(&call).expect("decodes");
            prop_assert_eq!(message.signature.as_str(), "ssa(sv)a(sa(sv))");
            let mut cursor = message.body_cursor();
            let end = skip_value(&mut cursor, b"ssa(sv)a(sa(sv))", 0, 0)
                .and_then(|i| skip_value(&mut cursor, b"ssa(sv)a(sa(sv))", i, 0))
                .and_then(|i| skip_value(&mut cursor, b"ssa(sv)a(sa(sv))", i, 0))
                .and_then(|i| skip_value(&mut cursor, b"ssa(sv)a(sa(sv))", i, 0));
            prop_assert_eq!(end, Ok(16));
            prop_assert_eq!(cursor.pos, message.body.len());
            let mut head = message.body_cursor();
            prop_assert_eq!(head.string(), Ok(unit.clone()));
        }
    }
}
