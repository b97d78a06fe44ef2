//! A minimal D-Bus client for systemd's private socket
//! (`/run/systemd/private`): what `systemctl` itself talks to when run as
//! root, without the exec.
//!
//! Why: imprint's unit actions run early in boot, where every `systemctl`
//! is a new process that maps and links libsystemd-shared; under emulation
//! (qemu TCG) each costs 0.3-0.8 s, more than the restart it asks for. The
//! same conversation from inside imprint costs a few messages. No crate:
//! the wire format needed here (SASL EXTERNAL, little- or big-endian
//! messages, the basic types, arrays, structs, variants) is small, and a
//! D-Bus crate would bring an async runtime or libdbus into a static binary.
//!
//! Only what imprint needs: method calls with string arguments, their
//! replies and errors, and the `JobRemoved` signal that says a job is
//! finished. systemd sends its signals to every private connection
//! unconditionally (no `AddMatch`, there is no broker); `Subscribe` is not
//! needed there. Any message it does not need (property changes, other
//! signals) is read and dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// systemd's private socket (root only).
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
pub const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
pub const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
pub const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// Largest message accepted (the spec's limit is 128 MiB; systemd's
/// answers here are a few KiB).
const MAX_MESSAGE: usize = 16 << 20;
/// Deepest nesting of containers accepted (the spec's limit is 64).
const MAX_DEPTH: usize = 64;

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

#[derive(Debug)]
pub enum BusError {
    Io(std::io::Error),
    /// No answer before the deadline.
    Timeout,
    /// The peer said something this client does not understand.
    Protocol(String),
    /// An error reply: its name and message.
    Remote {
        name: String,
        message: String,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Io(e) => write!(f, "{e}"),
            BusError::Timeout => f.write_str("no answer before the deadline"),
            BusError::Protocol(m) => write!(f, "unexpected D-Bus message: {m}"),
            BusError::Remote { name, message } => write!(f, "{message} ({name})"),
        }
    }
}

impl std::error::Error for BusError {}

impl From<std::io::Error> for BusError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => BusError::Timeout,
            _ => BusError::Io(e),
        }
    }
}

fn protocol(m: impl Into<String>) -> BusError {
    BusError::Protocol(m.into())
}

/// A demarshalled value. `s`, `o` and `g` are all `Str`; a dict entry is a
/// two-element `Struct`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    Array(Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    /// The string in a string (or a variant holding one).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Variant(v) => v.as_str(),
            _ => None,
        }
    }

    /// The strings of an array of strings (or a variant holding one).
    pub fn as_strs(&self) -> Option<Vec<&str>> {
        match self {
            Value::Array(a) => a.iter().map(Value::as_str).collect(),
            Value::Variant(v) => v.as_strs(),
            _ => None,
        }
    }

    /// A number, as text (`ExecMainStatus=1`).
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Uint(u) => Some(u.to_string()),
            Value::Bool(b) => Some(if *b { "yes" } else { "no" }.into()),
            Value::Byte(b) => Some(b.to_string()),
            Value::Variant(v) => v.to_text(),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::to_text)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- writing

/// A message being marshalled (little-endian).
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }
    pub fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }
    pub fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `s` or `o`.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// `g`.
    pub fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// Start an array whose elements align to `align`; returns what
    /// [`Writer::end_array`] needs.
    pub fn begin_array(&mut self, align: usize) -> (usize, usize) {
        self.u32(0);
        let len_at = self.buf.len() - 4;
        self.pad(align);
        (len_at, self.buf.len())
    }
    pub fn end_array(&mut self, (len_at, start): (usize, usize)) {
        let n = (self.buf.len() - start) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
    }
}

/// What one message says in its header.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    pub kind: u8,
    pub flags: u8,
    pub serial: u32,
    pub path: Option<&'a str>,
    pub interface: Option<&'a str>,
    pub member: Option<&'a str>,
    pub error_name: Option<&'a str>,
    pub reply_serial: Option<u32>,
    pub destination: Option<&'a str>,
    pub signature: &'a str,
}

/// Marshal a whole message: `body` is already marshalled (little-endian,
/// starting at an 8-aligned offset) and matches `h.signature`.
pub fn encode(h: &Header, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.byte(b'l');
    w.byte(h.kind);
    w.byte(h.flags);
    w.byte(1);
    w.u32(body.len() as u32);
    w.u32(h.serial);
    let arr = w.begin_array(8);
    fn field(w: &mut Writer, code: u8, sig: &str, f: &dyn Fn(&mut Writer)) {
        w.pad(8);
        w.byte(code);
        w.sig(sig);
        f(w);
    }
    if let Some(p) = h.path {
        field(&mut w, 1, "o", &|w| w.str(p));
    }
    if let Some(i) = h.interface {
        field(&mut w, 2, "s", &|w| w.str(i));
    }
    if let Some(m) = h.member {
        field(&mut w, 3, "s", &|w| w.str(m));
    }
    if let Some(e) = h.error_name {
        field(&mut w, 4, "s", &|w| w.str(e));
    }
    if let Some(r) = h.reply_serial {
        field(&mut w, 5, "u", &|w| w.u32(r));
    }
    if let Some(d) = h.destination {
        field(&mut w, 6, "s", &|w| w.str(d));
    }
    if !h.signature.is_empty() {
        field(&mut w, 8, "g", &|w| w.sig(h.signature));
    }
    w.end_array(arr);
    w.pad(8);
    w.buf.extend_from_slice(body);
    w.buf
}

/// The body of a call whose arguments are all strings.
fn string_args(args: &[&str]) -> (String, Vec<u8>) {
    let mut w = Writer::default();
    for a in args {
        w.str(a);
    }
    ("s".repeat(args.len()), w.buf)
}

// ---------------------------------------------------------------- reading

/// The length of the first complete type in `sig`.
fn complete_type(sig: &[u8], depth: usize) -> Result<usize, BusError> {
    if depth > MAX_DEPTH {
        return Err(protocol("signature nested too deeply"));
    }
    match sig.first() {
        None => Err(protocol("truncated signature")),
        Some(b'a') => Ok(1 + complete_type(&sig[1..], depth + 1)?),
        Some(&open @ (b'(' | b'{')) => {
            let close = if open == b'(' { b')' } else { b'}' };
            let mut i = 1;
            while sig.get(i) != Some(&close) {
                if i >= sig.len() {
                    return Err(protocol("unclosed struct in signature"));
                }
                i += complete_type(&sig[i..], depth + 1)?;
            }
            Ok(i + 1)
        }
        Some(
            b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o'
            | b'g' | b'v',
        ) => Ok(1),
        Some(c) => Err(protocol(format!(
            "unknown type '{}' in signature",
            *c as char
        ))),
    }
}

fn alignment(t: u8) -> usize {
    match t {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// Reads values out of one message; offsets (and so alignment) count from
/// the message's first byte.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Reader<'a> {
    fn align(&mut self, a: usize) -> Result<(), BusError> {
        let p = self.pos.div_ceil(a) * a;
        if p > self.buf.len() {
            return Err(protocol("truncated message"));
        }
        self.pos = p;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], BusError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| protocol("truncated message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], BusError> {
        self.align(N)?;
        let mut b: [u8; N] = self.take(N)?.try_into().expect("N bytes");
        if self.big {
            b.reverse();
        }
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, BusError> {
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }
    fn string(&mut self, len: usize) -> Result<String, BusError> {
        let b = self.take(len)?;
        if self.take(1)? != [0] {
            return Err(protocol("string without its nul"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| protocol("string not UTF-8"))
    }

    /// One value of the complete type `t`.
    pub fn value(&mut self, t: &[u8], depth: usize) -> Result<Value, BusError> {
        if depth > MAX_DEPTH {
            return Err(protocol("value nested too deeply"));
        }
        Ok(match t[0] {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'n' => Value::Int(i16::from_le_bytes(self.fixed::<2>()?) as i64),
            b'q' => Value::Uint(u16::from_le_bytes(self.fixed::<2>()?) as u64),
            b'i' => Value::Int(i32::from_le_bytes(self.fixed::<4>()?) as i64),
            b'u' | b'h' => Value::Uint(self.u32()? as u64),
            b'x' => Value::Int(i64::from_le_bytes(self.fixed::<8>()?)),
            b't' => Value::Uint(u64::from_le_bytes(self.fixed::<8>()?)),
            b'd' => Value::Double(f64::from_le_bytes(self.fixed::<8>()?)),
            b's' | b'o' => {
                let n = self.u32()? as usize;
                Value::Str(self.string(n)?)
            }
            b'g' => {
                let n = self.take(1)?[0] as usize;
                Value::Str(self.string(n)?)
            }
            b'v' => {
                let n = self.take(1)?[0] as usize;
                let sig = self.string(n)?;
                let s = sig.as_bytes();
                if s.is_empty() || complete_type(s, depth)? != s.len() {
                    return Err(protocol(format!("variant signature '{sig}'")));
                }
                Value::Variant(Box::new(self.value(s, depth + 1)?))
            }
            b'a' => {
                let n = self.u32()? as usize;
                let elem = &t[1..1 + complete_type(&t[1..], depth)?];
                self.align(alignment(elem[0]))?;
                let end = self
                    .pos
                    .checked_add(n)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or_else(|| protocol("array longer than its message"))?;
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(elem, depth + 1)?);
                }
                if self.pos != end {
                    return Err(protocol("array elements overrun its length"));
                }
                Value::Array(items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let inner = &t[1..complete_type(t, depth)? - 1];
                let mut fields = Vec::new();
                let mut i = 0;
                while i < inner.len() {
                    let n = complete_type(&inner[i..], depth + 1)?;
                    fields.push(self.value(&inner[i..i + n], depth + 1)?);
                    i += n;
                }
                Value::Struct(fields)
            }
            c => return Err(protocol(format!("unknown type '{}'", c as char))),
        })
    }
}

/// A message read from the peer.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub kind: u8,
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub path: String,
    pub interface: String,
    pub member: String,
    pub error_name: String,
    pub signature: String,
    pub body: Vec<Value>,
}

/// Demarshal one whole message (header and body).
pub fn decode(buf: &[u8]) -> Result<Message, BusError> {
    if buf.len() < 16 {
        return Err(protocol("message shorter than its header"));
    }
    let big = match buf[0] {
        b'l' => false,
        b'B' => true,
        e => return Err(protocol(format!("endianness flag {e}"))),
    };
    let mut r = Reader { buf, pos: 4, big };
    let body_len = r.u32()? as usize;
    let mut m = Message {
        kind: buf[1],
        serial: r.u32()?,
        ..Message::default()
    };
    let Value::Array(fields) = r.value(b"a(yv)", 0)? else {
        unreachable!("an array signature reads an array")
    };
    for f in fields {
        let Value::Struct(f) = f else { continue };
        let (Some(Value::Byte(code)), Some(Value::Variant(v))) = (f.first(), f.get(1)) else {
            continue;
        };
        let text = v.as_str().unwrap_or_default().to_string();
        match code {
            1 => m.path = text,
            2 => m.interface = text,
            3 => m.member = text,
            4 => m.error_name = text,
            5 => {
                if let Value::Uint(u) = **v {
                    m.reply_serial = u32::try_from(u).ok();
                }
            }
            8 => m.signature = text,
            _ => {}
        }
    }
    r.align(8)?;
    if buf.len() - r.pos != body_len {
        return Err(protocol("body length does not match"));
    }
    let sig = m.signature.clone();
    let mut s = sig.as_bytes();
    while !s.is_empty() {
        let n = complete_type(s, 0)?;
        m.body.push(r.value(&s[..n], 0)?);
        s = &s[n..];
    }
    Ok(m)
}

/// Read one whole message's bytes from `r`.
pub fn read_message(r: &mut impl Read) -> Result<Vec<u8>, BusError> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head)?;
    let total = message_len(&head)?;
    let mut buf = head.to_vec();
    buf.resize(total, 0);
    r.read_exact(&mut buf[16..])?;
    Ok(buf)
}

/// The total length of the message whose first 16 bytes are `head`.
fn message_len(head: &[u8; 16]) -> Result<usize, BusError> {
    let word = |i: usize| {
        let b: [u8; 4] = head[i..i + 4].try_into().expect("4 bytes");
        match head[0] {
            b'B' => Ok(u32::from_be_bytes(b) as usize),
            b'l' => Ok(u32::from_le_bytes(b) as usize),
            e => Err(protocol(format!("endianness flag {e}"))),
        }
    };
    let body = word(4)?;
    let fields = word(12)?;
    let header = (16 + fields).div_ceil(8) * 8;
    let total = header
        .checked_add(body)
        .filter(|t| *t <= MAX_MESSAGE)
        .ok_or_else(|| protocol("message too large"))?;
    Ok(total)
}

// ------------------------------------------------------------- connection

/// One connection: to systemd's private socket, or (tests) to a bus.
#[derive(Debug)]
pub struct Bus {
    stream: UnixStream,
    serial: u32,
    /// `JobRemoved` seen so far: job path -> result.
    removed: BTreeMap<String, String>,
    /// Replies read while waiting for something else, by reply serial.
    replies: BTreeMap<u32, Message>,
    /// The destination to put on calls (a bus needs one; PID 1 does not).
    destination: Option<String>,
}

impl Bus {
    /// Connect and authenticate (SASL EXTERNAL, as this process's uid).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Bus, BusError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut bus = Bus {
            stream,
            serial: 0,
            removed: BTreeMap::new(),
            replies: BTreeMap::new(),
            destination: None,
        };
        let uid = rustix::process::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        bus.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = bus.line()?;
        if !line.starts_with("OK ") {
            return Err(protocol(format!("authentication refused: {}", line.trim())));
        }
        bus.stream.write_all(b"BEGIN\r\n")?;
        Ok(bus)
    }

    /// Put `destination` on every call (a message bus routes by it).
    pub fn with_destination(mut self, d: &str) -> Bus {
        self.destination = Some(d.to_string());
        self
    }

    /// One line of the authentication exchange.
    fn line(&mut self) -> Result<String, BusError> {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            if out.len() > 4096 {
                return Err(protocol("authentication line too long"));
            }
            if self.stream.read(&mut b)? == 0 {
                return Err(protocol("connection closed during authentication"));
            }
            out.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Send a call with string arguments; returns its serial.
    pub fn send(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        args: &[&str],
    ) -> Result<u32, BusError> {
        self.serial += 1;
        let (sig, body) = string_args(args);
        let msg = encode(
            &Header {
                kind: METHOD_CALL,
                serial: self.serial,
                path: Some(path),
                interface: Some(interface),
                member: Some(member),
                destination: self.destination.as_deref(),
                signature: &sig,
                ..Header::default()
            },
            &body,
        );
        self.stream.write_all(&msg)?;
        Ok(self.serial)
    }

    /// Read one message (waiting at most until `deadline`); remembers
    /// replies and `JobRemoved` signals.
    fn read_one(&mut self, deadline: Instant) -> Result<(), BusError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BusError::Timeout);
        }
        self.stream.set_read_timeout(Some(left))?;
        let m = decode(&read_message(&mut self.stream)?)?;
        match m.kind {
            METHOD_RETURN | ERROR => {
                if let Some(r) = m.reply_serial {
                    self.replies.insert(r, m);
                }
            }
            SIGNAL if m.member == "JobRemoved" && m.interface == MANAGER => {
                // JobRemoved(u id, o job, s unit, s result)
                if let (Some(job), Some(result)) = (
                    m.body.get(1).and_then(Value::as_str),
                    m.body.get(3).and_then(Value::as_str),
                ) {
                    self.removed.insert(job.to_string(), result.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The reply to the call with `serial` (an error reply is an error).
    pub fn reply(&mut self, serial: u32, deadline: Instant) -> Result<Message, BusError> {
        loop {
            if let Some(m) = self.replies.remove(&serial) {
                if m.kind == ERROR {
                    return Err(BusError::Remote {
                        name: m.error_name,
                        message: m
                            .body
                            .first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                return Ok(m);
            }
            self.read_one(deadline)?;
        }
    }

    /// Call and wait for the reply.
    pub fn call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        args: &[&str],
        deadline: Instant,
    ) -> Result<Message, BusError> {
        let serial = self.send(path, interface, member, args)?;
        self.reply(serial, deadline)
    }

    /// Wait for `JobRemoved` of the job at `job`; returns its result
    /// (`done`, `failed`, `canceled`, `timeout`, `dependency`, `skipped`...).
    pub fn wait_job(&mut self, job: &str, deadline: Instant) -> Result<String, BusError> {
        loop {
            if let Some(r) = self.removed.remove(job) {
                return Ok(r);
            }
            self.read_one(deadline)?;
        }
    }

    /// Some properties of several objects (`Properties.Get`, every call
    /// sent before the first answer is read): for each object, the
    /// properties it answered. Cheaper for PID 1 than `GetAll`, which
    /// computes some hundred properties per unit. A property an object does
    /// not have is left out; a connection failure fails every object.
    pub fn get(
        &mut self,
        objects: &[(String, &str, &[&str])],
        deadline: Instant,
    ) -> Result<Vec<BTreeMap<String, Value>>, BusError> {
        let mut serials = Vec::new();
        for (path, iface, props) in objects {
            for p in *props {
                serials.push((self.send(path, PROPERTIES, "Get", &[iface, p])?, *p));
            }
        }
        let mut out = Vec::new();
        let mut it = serials.into_iter();
        for (_, _, props) in objects {
            let mut got = BTreeMap::new();
            for (serial, name) in it.by_ref().take(props.len()) {
                match self.reply(serial, deadline) {
                    Ok(m) => {
                        if let Some(v) = m.body.into_iter().next() {
                            got.insert(name.to_string(), v);
                        }
                    }
                    Err(BusError::Remote { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            out.push(got);
        }
        Ok(out)
    }
}

/// The object path of a unit, as systemd names it
/// (`early.service` -> `/org/freedesktop/systemd1/unit/early_2eservice`):
/// every byte but `[A-Za-z0-9]` (a leading digit too) as `_xx`.
pub fn unit_path(name: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    if name.is_empty() {
        p.push('_');
    }
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_escape_as_systemd() {
        // `busctl tree org.freedesktop.systemd1` on Debian 12.
        assert_eq!(
            unit_path("early.service"),
            "/org/freedesktop/systemd1/unit/early_2eservice"
        );
        assert_eq!(
            unit_path("systemd-journald.socket"),
            "/org/freedesktop/systemd1/unit/systemd_2djournald_2esocket"
        );
        assert_eq!(
            unit_path("getty@tty1.service"),
            "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
        );
        assert_eq!(
            unit_path("-.mount"),
            "/org/freedesktop/systemd1/unit/_2d_2emount"
        );
        assert_eq!(
            unit_path("9p.mount"),
            "/org/freedesktop/systemd1/unit/_39p_2emount"
        );
    }

    #[test]
    fn round_trip_of_a_call() {
        let (sig, body) = string_args(&["early.service", "replace"]);
        let msg = encode(
            &Header {
                kind: METHOD_CALL,
                serial: 7,
                path: Some(MANAGER_PATH),
                interface: Some(MANAGER),
                member: Some("RestartUnit"),
                signature: &sig,
                ..Header::default()
            },
            &body,
        );
        assert_eq!(msg.len() % 8, body.len() % 8);
        let m = decode(&msg).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.serial, 7);
        assert_eq!(m.path, MANAGER_PATH);
        assert_eq!(m.member, "RestartUnit");
        assert_eq!(m.signature, "ss");
        assert_eq!(
            m.body,
            [
                Value::Str("early.service".into()),
                Value::Str("replace".into())
            ]
        );
    }

    #[test]
    fn nested_containers_and_bad_input() {
        // a{sv} holding an `as`, a `(tt)` and an `i`.
        let mut w = Writer::default();
        let arr = w.begin_array(8);
        for (k, sig) in [("After", "as"), ("Stamp", "(tt)"), ("Status", "i")] {
            w.pad(8);
            w.str(k);
            w.sig(sig);
            match sig {
                "as" => {
                    let a = w.begin_array(4);
                    w.str("a.target");
                    w.str("b.service");
                    w.end_array(a);
                }
                "(tt)" => {
                    w.pad(8);
                    w.buf.extend_from_slice(&5u64.to_le_bytes());
                    w.buf.extend_from_slice(&6u64.to_le_bytes());
                }
                _ => w.u32((-3i32) as u32),
            }
        }
        w.end_array(arr);
        let mut r = Reader {
            buf: &w.buf,
            pos: 0,
            big: false,
        };
        let v = r.value(b"a{sv}", 0).unwrap();
        let Value::Array(e) = v else { panic!() };
        assert_eq!(e.len(), 3);
        let Value::Struct(kv) = &e[0] else { panic!() };
        assert_eq!(kv[1].as_strs().unwrap(), ["a.target", "b.service"]);
        let Value::Struct(kv) = &e[2] else { panic!() };
        assert_eq!(kv[1].to_text().as_deref(), Some("-3"));
        // Truncated anywhere: an error, never a panic.
        for n in 0..w.buf.len() {
            let mut r = Reader {
                buf: &w.buf[..n],
                pos: 0,
                big: false,
            };
            assert!(r.value(b"a{sv}", 0).is_err(), "{n}");
        }
        assert!(complete_type(b"a(ss", 0).is_err());
        assert!(complete_type(b"z", 0).is_err());
        assert!(decode(b"lxx").is_err());
    }
}
