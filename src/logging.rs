//! Logging (SPEC §6): the journal when it is there, stderr otherwise.
//! Logging never breaks the run: a journal that cannot be reached is a
//! warning, and imprint goes on with stderr.
//!
//! Where each line goes:
//! - stderr *is* the journal (imprint.service: `JOURNAL_STREAM` names
//!   stderr's stream, or stdout's while stderr is a socket too): everything
//!   goes through the journal's native protocol only, as structured entries
//!   (`MESSAGE_ID`, `PRIORITY`, `STAGE`, `DURATION_MS`, `UNIT`, `PATH`...).
//!   Writing the same lines to stderr as well would put each one in the journal twice. With the unit's
//!   `StandardError=journal+console`, the console then gets only what does
//!   not go through this module (a panic, say) and systemd's own status line;
//!   `journalctl -u imprint` and `imprint status` have the rest.
//! - the journal socket exists but stderr is something else (an admin at a
//!   terminal): both, the journal structured and stderr plain.
//! - no journal (containers, tests, image builds): stderr only.
//!
//! Stable `MESSAGE_ID`s (documented in docs/systemd.md) let operators
//! `journalctl MESSAGE_ID=...` for exactly these events.
//!
//! One small subscriber of imprint's own ([`Logger`]) does both outputs, and
//! [`Journal`] speaks the journal's native protocol: what
//! `tracing-subscriber`'s registry and `tracing-journald` did, for 28 KiB
//! less of the static binary (imprint logs events, never spans).

use crate::report::Report;
use std::io::Write;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata};

/// The run finished and the instance is sealed.
pub const MSG_SEALED: &str = "834447728e8b476e9ddf65f867bf65dc";
/// One file was written.
pub const MSG_FILE_WRITTEN: &str = "0eb3600778c5403ea6fcce47a373c510";
/// One unit was restarted, reloaded, started, queued or skipped.
pub const MSG_UNIT: &str = "3db8f9d11c1141768284590119b40920";
/// A run (or any command) failed.
pub const MSG_FAILED: &str = "e5035d22720e4d3aae5bc718fb59f172";
/// One pipeline stage finished (with its duration).
pub const MSG_STAGE: &str = "95fd263f411e46c297be31b5ae8d928b";
/// The instance was already configured: nothing done (exit 77).
pub const MSG_ALREADY_SEALED: &str = "9a087bd7acdb4c9583efcf894f8fa315";
/// A warning about the user-data: an unsupported cloud-config key or part
/// type, an undeclared value, a key imprint ignores (`unsupported: warn`).
pub const MSG_USER_DATA_WARNING: &str = "010ca0c3c48b41809f93dafb74752c6c";

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Set up logging once; `verbose` lowers the level to debug.
pub fn init(verbose: bool) {
    let path = Path::new(JOURNAL_SOCKET);
    let (journal, problem) = if path.exists() {
        match Journal::connect(path) {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let stderr = journal.is_none() || !stderr_is_journal();
    let _ = tracing::subscriber::set_global_default(Logger::new(verbose, journal, stderr));
    if let Some(e) = problem {
        tracing::warn!(
            "failed to reach the journal at {JOURNAL_SOCKET} ({e}); logging to stderr only"
        );
    }
}

/// Whether stderr is a journal stream systemd connected. `JOURNAL_STREAM`
/// is `DEVICE:INODE` of one stream, and with `StandardOutput=journal` and
/// `StandardError=journal+console` (imprint.service) stdout and stderr are
/// two different streams, only one of them named; a child that redirected
/// its output keeps the variable but not the stream. So: stderr is the
/// named stream, or the other one is stdout and stderr is a socket too.
pub fn stderr_is_journal() -> bool {
    is_journal(std::io::stderr(), std::io::stdout())
}

/// Whether stdout is a journal stream (the same rule, the other way round).
pub fn stdout_is_journal() -> bool {
    is_journal(std::io::stdout(), std::io::stderr())
}

fn is_journal(fd: impl std::os::fd::AsFd, other: impl std::os::fd::AsFd) -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy();
    let Ok(st) = rustix::fs::fstat(fd) else {
        return false;
    };
    if stream_matches(&v, st.st_dev, st.st_ino) {
        return true;
    }
    let is_socket = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket;
    is_socket && rustix::fs::fstat(other).is_ok_and(|o| stream_matches(&v, o.st_dev, o.st_ino))
}

/// `JOURNAL_STREAM` text against a file's device and inode.
pub fn stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// imprint's one `tracing` subscriber: events at the level or above go to
/// the journal and/or to stderr, in that order.
///
/// It stands in for `tracing_subscriber::registry()` with a level filter, the
/// `tracing-journald` layer and a stderr layer (about 80 KiB of the static
/// binary, docs/systemd.md): imprint logs events only, never spans, so it
/// needs neither the registry's span store nor per-span fields. A span, if
/// one ever appears, gets a dummy id and adds nothing to its events.
pub struct Logger {
    max: LevelFilter,
    journal: Option<Journal>,
    stderr: bool,
}

impl Logger {
    /// Info and above (debug and above when `verbose`), to `journal` when
    /// given and to stderr when `stderr`.
    pub fn new(verbose: bool, journal: Option<Journal>, stderr: bool) -> Logger {
        let max = if verbose {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        };
        Logger {
            max,
            journal,
            stderr,
        }
    }
}

impl tracing::Subscriber for Logger {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.max
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut f = Fields {
            entry: self.journal.as_ref().map(|_| entry_head(meta)),
            ..Fields::default()
        };
        event.record(&mut f);
        if let (Some(j), Some(entry)) = (&self.journal, &f.entry) {
            // Nothing to do about a journal that went away mid-run.
            let _ = j.send(entry);
        }
        if self.stderr {
            let level = *meta.level();
            let rest = if f.has_id { "" } else { f.rest.as_str() };
            let line = format!("{level:>5} {}{rest}\n", f.message);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// One event's fields, gathered once for both outputs.
///
/// stderr: plain lines, as tracing-subscriber's fmt prints them
/// (`ERROR message key=value ...`, level padded to 5). Events with a
/// `message_id` are written to be read whole: their fields (for the
/// journal) are left off.
///
/// journal: every field, its name upper-cased (`message` is `MESSAGE`,
/// `duration_ms` is `DURATION_MS`), after the entry's head.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    has_id: bool,
    entry: Option<Vec<u8>>,
}

impl Fields {
    fn field(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if let Some(entry) = &mut self.entry {
            put(entry, name, value.as_bytes());
        }
        if name == "message" {
            self.message = value.to_string();
        } else if name == "message_id" {
            self.has_id = true;
        } else {
            self.rest.push(' ');
            self.rest.push_str(name);
            self.rest.push('=');
            self.rest.push_str(value);
        }
    }
}

impl Visit for Fields {
    // Numbers, bools and errors come here too (Visit's defaults), shown
    // with `{:?}` as tracing-subscriber and tracing-journald show them.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }
}

/// The start of a journal entry, before the event's own fields, as
/// tracing-journald 0.3 wrote it (imprint's entries did not change when it
/// left): `PRIORITY` (error 3, warn 4, info 5, debug 6, trace 7), `TARGET`
/// (the module), `CODE_FILE`, `CODE_LINE`, `SYSLOG_IDENTIFIER=imprint`.
fn entry_head(meta: &Metadata<'_>) -> Vec<u8> {
    let mut entry = Vec::with_capacity(256);
    let priority = match *meta.level() {
        tracing::Level::ERROR => b"3",
        tracing::Level::WARN => b"4",
        tracing::Level::INFO => b"5",
        tracing::Level::DEBUG => b"6",
        tracing::Level::TRACE => b"7",
    };
    put(&mut entry, "PRIORITY", priority);
    put(&mut entry, "TARGET", meta.target().as_bytes());
    if let Some(file) = meta.file() {
        put(&mut entry, "CODE_FILE", file.as_bytes());
    }
    if let Some(line) = meta.line() {
        let _ = writeln!(entry, "CODE_LINE={line}");
    }
    put(&mut entry, "SYSLOG_IDENTIFIER", b"imprint");
    entry
}

/// One field in the native protocol's binary form, whatever the value holds
/// (newlines included): the name, a newline, the value's length in bytes as
/// a little-endian 64-bit integer, the value, a newline. The name is made
/// one the journal keeps: `.` becomes `_`, leading `_` dropped (those are
/// the journal's trusted fields), anything but ASCII letters, digits and `_`
/// dropped, upper-cased.
fn put(entry: &mut Vec<u8>, name: &str, value: &[u8]) {
    entry.extend(
        name.bytes()
            .map(|c| if c == b'.' { b'_' } else { c })
            .skip_while(|&c| c == b'_')
            .filter(|c| *c == b'_' || c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase()),
    );
    entry.push(b'\n');
    entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    entry.extend_from_slice(value);
    entry.push(b'\n');
}

/// A client of the journal's native protocol
/// (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): one datagram per entry
/// to an `AF_UNIX`/`SOCK_DGRAM` socket; an entry too big for one datagram
/// goes as a sealed memfd attached to an empty datagram.
pub struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    /// A client of the journal listening at `path` ([`JOURNAL_SOCKET`] but
    /// in tests). Sends an empty datagram, which the journal drops, to
    /// check that something listens there.
    pub fn connect(path: &Path) -> std::io::Result<Journal> {
        let journal = Journal {
            socket: UnixDatagram::unbound()?,
            path: path.to_path_buf(),
        };
        journal.send(&[])?;
        Ok(journal)
    }

    /// Send one serialized entry.
    pub fn send(&self, entry: &[u8]) -> std::io::Result<()> {
        match self.socket.send_to(entry, &self.path) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error()) => {
                self.send_memfd(entry)
            }
            r => r.map(drop),
        }
    }

    /// The protocol's way for an entry over the datagram size limit (the
    /// socket's send buffer, ~208 KiB by default): the entry in a memfd,
    /// sealed so that the journal can map it safely, its descriptor alone
    /// in an empty datagram.
    fn send_memfd(&self, entry: &[u8]) -> std::io::Result<()> {
        use rustix::fs::{MemfdFlags, SealFlags};
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let fd = rustix::fs::memfd_create(
            "imprint-journal",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(entry)?;
        let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        rustix::fs::fcntl_add_seals(&file, seals)?;
        let addr = rustix::net::SocketAddrUnix::new(self.path.as_path())?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [file.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg_addr(&self.socket, &addr, &[], &mut control, SendFlags::NOSIGNAL)?;
        Ok(())
    }
}

/// Log each warning about the user-data (what was ignored, and what to do
/// instead) as its own warning, in the words of the report and of
/// `validate`: `part N: WHAT: HINT`, every secret known so far masked.
pub fn user_data_warnings(notices: &[crate::merge::Notice], secrets: &crate::secret::Secrets) {
    for n in notices {
        let what = secrets.mask(&n.what);
        let text = secrets.mask(&format!("part {}: {}: {}", n.part, n.what, n.hint));
        tracing::warn!(
            message_id = MSG_USER_DATA_WARNING,
            part = n.part,
            what = %what,
            "{text}"
        );
    }
}

/// Log a run's report: one entry per stage with its duration, one per file
/// written, one per unit action, and "sealed" when done
/// (`report::log_summary` then writes the line that ends the run). Secrets
/// are already masked in the report.
pub fn run_report(report: &Report) {
    for s in &report.stages {
        tracing::info!(
            message_id = MSG_STAGE,
            stage = %s.stage,
            duration_ms = s.duration_ms,
            outcome = %s.outcome,
            "stage {}: {} ({:.1} ms)",
            s.stage,
            s.outcome,
            s.duration_ms
        );
    }
    for p in &report.files_written {
        tracing::info!(message_id = MSG_FILE_WRITTEN, path = %p, "wrote {p}");
    }
    for u in &report.units {
        let name = if u.unit.is_empty() {
            "systemd"
        } else {
            &u.unit
        };
        tracing::info!(
            message_id = MSG_UNIT,
            unit = %u.unit,
            action = %u.action,
            result = %u.result,
            "{} {name}: {}",
            u.action,
            u.result
        );
    }
    if report.status == "done" {
        let id = report.instance_id.as_deref().unwrap_or("-");
        tracing::info!(
            message_id = MSG_SEALED,
            instance_id = %id,
            "configured instance {id} and sealed it: {} file(s) written, {} unchanged, {} unit action(s)",
            report.files_written.len(),
            report.files_unchanged.len(),
            report.units.len(),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn journal_stream_matches_dev_and_inode() {
        assert!(super::stream_matches("8:12345", 8, 12345));
        assert!(!super::stream_matches("8:12345", 8, 12346));
        assert!(!super::stream_matches("8:12345", 9, 12345));
        assert!(!super::stream_matches("garbage", 8, 12345));
        assert!(!super::stream_matches("", 0, 0));
    }
}
