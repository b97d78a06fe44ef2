//! Logging (SPEC §6): the journal when it is there, stderr otherwise.
//! Logging never breaks the run: a journal that cannot be reached is a
//! warning, and imprint goes on with stderr.
//!
//! Where each line goes:
//! - stderr *is* the journal (imprint.service: `JOURNAL_STREAM` names
//!   stderr's stream, or stdout's while stderr is a socket too): everything
//!   goes through the journal's native protocol only, as structured entries
//!   (`MESSAGE_ID`, `PRIORITY`, `STAGE`, `DURATION_MS`, `UNIT`, `PATH`...). Writing the same lines to
//!   stderr as well would put each one in the journal twice. With the unit's
//!   `StandardError=journal+console`, the console then gets only what does
//!   not go through this module (a panic, say) and systemd's own status line;
//!   `journalctl -u imprint` and `imprint status` have the rest.
//! - the journal socket exists but stderr is something else (an admin at a
//!   terminal): both, the journal structured and stderr plain.
//! - no journal (containers, tests, image builds): stderr only.
//!
//! Stable `MESSAGE_ID`s (documented in docs/systemd.md) let operators
//! `journalctl MESSAGE_ID=...` for exactly these events.

use crate::report::Report;
use std::io::Write;
use std::path::Path;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Set up logging once; `verbose` lowers the level to debug.
pub fn init(verbose: bool) {
    let level = if verbose {
        tracing::level_filters::LevelFilter::DEBUG
    } else {
        tracing::level_filters::LevelFilter::INFO
    };
    let (journal, problem) = if Path::new(JOURNAL_SOCKET).exists() {
        match tracing_journald::layer() {
            Ok(l) => (
                Some(
                    l.with_field_prefix(None)
                        .with_syslog_identifier("imprint".into()),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let stderr = (journal.is_none() || !stderr_is_journal()).then_some(Stderr);
    let _ = tracing_subscriber::registry()
        .with(level)
        .with(journal)
        .with(stderr)
        .try_init();
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

/// Plain lines on stderr, as tracing-subscriber's fmt prints them
/// (`ERROR message key=value ...`, level padded to 5). Events with a
/// `message_id` are written to be read whole: their fields (for the
/// journal) are left off.
struct Stderr;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    has_id: bool,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else if field.name() == "message_id" {
            self.has_id = true;
        } else {
            self.rest.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if field.name() == "message_id" {
            self.has_id = true;
        } else {
            self.rest.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Stderr {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = *event.metadata().level();
        let rest = if f.has_id { "" } else { f.rest.as_str() };
        let line = format!("{level:>5} {}{rest}\n", f.message);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
