//! The journal's native protocol as src/logging.rs speaks it, checked on a
//! real AF_UNIX datagram socket bound in a temporary directory, against
//! systemd's "Native Journal Protocol" (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/):
//!
//! - one datagram per entry; an entry too big for a datagram goes as an
//!   empty datagram carrying one sealed memfd that holds the entry;
//! - an entry is a sequence of fields, each either `NAME=value\n` (a value
//!   without newlines) or `NAME\n`, the value's length as a little-endian
//!   64-bit integer, the value's bytes, `\n`;
//! - field names: upper-case ASCII letters, digits and `_`, at most 64
//!   characters, not starting with a digit, nor with `_` (the journal's own
//!   trusted fields).
//!
//! The entries are those tracing-journald 0.3 sent for imprint (field
//! prefix off, `SYSLOG_IDENTIFIER=imprint`), which src/logging.rs replaced:
//! `PRIORITY`, `TARGET`, `CODE_FILE`, `CODE_LINE`, `SYSLOG_IDENTIFIER`, then
//! the event's fields in order, `MESSAGE` first.
//!
//! The last tests run the binary itself (as root: in a private mount
//! namespace where the test's socket is /run/systemd/journal/socket) for the
//! routing rules of src/logging.rs: journal and stderr, or the journal only.

mod common;

use imprint::logging::{
    Journal, Logger, MSG_FILE_WRITTEN, MSG_SEALED, MSG_STAGE, MSG_USER_DATA_WARNING,
};
use std::mem::MaybeUninit;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

/// A listening "journal" in a temporary directory.
fn journal_socket(dir: &Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(dir.join("socket")).expect("bind the test journal socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock
}

/// A logger that sends to the socket at `dir/socket` only (no stderr), and
/// the empty probe datagram `Journal::connect` sent, already read.
fn logger(dir: &Path, sock: &UnixDatagram, verbose: bool) -> Logger {
    let journal = Journal::connect(&dir.join("socket")).expect("connect to the test journal");
    let (probe, memfd) = receive(sock);
    assert!(
        probe.is_empty() && !memfd,
        "the probe is one empty datagram"
    );
    Logger::new(verbose, Some(journal), false)
}

/// One datagram: its payload, or the content of the memfd it carries
/// (checking the protocol's rules for that form); and whether it was a memfd.
fn receive(sock: &UnixDatagram) -> (Vec<u8>, bool) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; 512 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .expect("a datagram on the test journal socket (none within 10 s?)");
    assert!(
        !got.flags.contains(rustix::net::ReturnFlags::TRUNC),
        "datagram truncated"
    );
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    if fds.is_empty() {
        buf.truncate(got.bytes);
        return (buf, false);
    }
    assert_eq!(got.bytes, 0, "a datagram with a memfd has an empty payload");
    assert_eq!(fds.len(), 1, "exactly one descriptor");
    let fd = fds.pop().unwrap();
    let link = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    }))
    .unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "a memfd, not {link:?}"
    );
    use rustix::fs::SealFlags;
    let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
    let needed = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    assert!(
        seals.contains(needed),
        "journald maps only a memfd sealed against shrink, grow and write: {seals:?}"
    );
    let file = std::fs::File::from(fd);
    let len = file.metadata().unwrap().len() as usize;
    let mut entry = vec![0u8; len];
    file.read_exact_at(&mut entry, 0).unwrap();
    (entry, true)
}

/// A decoded entry: its fields, names and values, in order.
type Entry = Vec<(String, Vec<u8>)>;

/// A field name the journal keeps (journald's rule for fields a client sends).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name[0].is_ascii_digit()
        && name[0] != b'_'
        && name
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Decode an entry by the protocol's grammar alone; panics on anything the
/// journal would reject or misread.
fn decode(mut d: &[u8]) -> Entry {
    let mut fields = Vec::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("every field ends with a newline");
        let line = &d[..nl];
        let (name, value, rest) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], &line[eq + 1..], &d[nl + 1..]),
            None => {
                let after = &d[nl + 1..];
                assert!(after.len() >= 8, "binary field without its length");
                let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
                assert!(
                    after.len() > 8 + len,
                    "binary field shorter than its length"
                );
                assert_eq!(after[8 + len], b'\n', "binary field not ended by a newline");
                (line, &after[8..8 + len], &after[8 + len + 1..])
            }
        };
        assert!(
            valid_name(name),
            "invalid field name {:?}",
            String::from_utf8_lossy(name)
        );
        fields.push((String::from_utf8(name.to_vec()).unwrap(), value.to_vec()));
        d = rest;
    }
    fields
}

/// The binary form of one field, written from the protocol's description.
fn binary(name: &str, value: &[u8]) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(b'\n');
    v.extend_from_slice(&(value.len() as u64).to_le_bytes());
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

/// The fields every entry starts with, for an event at `line` of this file.
fn head(priority: &str, line: u32) -> Entry {
    vec![
        ("PRIORITY".into(), priority.into()),
        ("TARGET".into(), b"logging_journal".to_vec()),
        ("CODE_FILE".into(), b"tests/logging_journal.rs".to_vec()),
        ("CODE_LINE".into(), line.to_string().into_bytes()),
        ("SYSLOG_IDENTIFIER".into(), b"imprint".to_vec()),
    ]
}

fn fields(head: Entry, rest: &[(&str, &[u8])]) -> Entry {
    let mut all = head;
    all.extend(rest.iter().map(|(n, v)| (n.to_string(), v.to_vec())));
    all
}

#[test]
fn a_stage_event_is_one_datagram_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sock = journal_socket(dir.path());
    let logger = logger(dir.path(), &sock, false);
    let line = tracing::subscriber::with_default(logger, || {
        let line = line!() + 1;
        tracing::info!(message_id = MSG_STAGE, stage = %"decode", duration_ms = 1.5f64, "stage decode: ok (1.5 ms)");
        line
    });
    let (entry, memfd) = receive(&sock);
    assert!(!memfd);
    // Spelled out: PRIORITY in binary form, length 1, "5" (info = notice).
    assert!(entry.starts_with(b"PRIORITY\n\x01\0\0\0\0\0\0\x005\n"));
    let mut want = binary("PRIORITY", b"5");
    want.extend(binary("TARGET", b"logging_journal"));
    want.extend(binary("CODE_FILE", b"tests/logging_journal.rs"));
    want.extend(format!("CODE_LINE={line}\n").into_bytes());
    want.extend(binary("SYSLOG_IDENTIFIER", b"imprint"));
    want.extend(binary("MESSAGE", b"stage decode: ok (1.5 ms)"));
    want.extend(binary("MESSAGE_ID", MSG_STAGE.as_bytes()));
    want.extend(binary("STAGE", b"decode"));
    want.extend(binary("DURATION_MS", b"1.5"));
    assert_eq!(entry, want);
    assert_eq!(
        decode(&entry),
        fields(
            head("5", line),
            &[
                ("MESSAGE", b"stage decode: ok (1.5 ms)"),
                ("MESSAGE_ID", MSG_STAGE.as_bytes()),
                ("STAGE", b"decode"),
                ("DURATION_MS", b"1.5"),
            ]
        )
    );
}

#[test]
fn multi_line_non_ascii_and_long_values_keep_their_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sock = journal_socket(dir.path());
    let logger = logger(dir.path(), &sock, false);
    let path = "/etc/café/naïve-Ω.conf";
    let long = "x".repeat(100 * 1024);
    tracing::subscriber::with_default(logger, || {
        // A multi-line message, at error level.
        let line = line!() + 1;
        tracing::error!("failed to render /etc/a.conf:\n  line 3, column 7: unknown key");
        let (entry, memfd) = receive(&sock);
        assert!(!memfd);
        let msg: &[u8] = b"failed to render /etc/a.conf:\n  line 3, column 7: unknown key";
        assert_eq!(decode(&entry), fields(head("3", line), &[("MESSAGE", msg)]));
        let mut tail = binary("SYSLOG_IDENTIFIER", b"imprint");
        tail.extend(binary("MESSAGE", msg));
        assert!(
            entry.ends_with(&tail),
            "the newline inside stays in the value"
        );

        // A non-ASCII value: its length counts bytes, not characters.
        let line = line!() + 1;
        tracing::warn!(message_id = MSG_FILE_WRITTEN, path = %path, "wrote {path}");
        let (entry, _) = receive(&sock);
        let wrote = format!("wrote {path}");
        assert_eq!(
            decode(&entry),
            fields(
                head("4", line),
                &[
                    ("MESSAGE", wrote.as_bytes()),
                    ("MESSAGE_ID", MSG_FILE_WRITTEN.as_bytes()),
                    ("PATH", path.as_bytes()),
                ]
            )
        );
        let mut want = b"PATH\n".to_vec();
        want.extend_from_slice(&(path.len() as u64).to_le_bytes());
        assert_eq!(path.len(), 25, "bytes, not the 22 characters");
        assert!(entry.windows(want.len()).any(|w| w == want.as_slice()));

        // A long value that still fits one datagram.
        let line = line!() + 1;
        tracing::info!(unit = %long, "long");
        let (entry, memfd) = receive(&sock);
        assert!(!memfd, "100 KiB fits a datagram");
        assert_eq!(
            decode(&entry),
            fields(
                head("5", line),
                &[("MESSAGE", b"long"), ("UNIT", long.as_bytes())]
            )
        );
    });
}

#[test]
fn an_entry_over_the_datagram_limit_goes_in_a_sealed_memfd() {
    let dir = tempfile::tempdir().unwrap();
    let sock = journal_socket(dir.path());
    let logger = logger(dir.path(), &sock, false);
    // Over any default datagram limit (net.core.wmem_default, ~208 KiB).
    let huge = "é".repeat(1024 * 1024);
    let line = tracing::subscriber::with_default(logger, || {
        let line = line!() + 1;
        tracing::info!(result = %huge, "huge");
        line
    });
    let (entry, memfd) = receive(&sock);
    assert!(memfd, "2 MiB cannot go as a datagram");
    assert_eq!(
        decode(&entry),
        fields(
            head("5", line),
            &[("MESSAGE", b"huge"), ("RESULT", huge.as_bytes())]
        )
    );
}

/// Each user-data warning is one warning entry (PRIORITY 4) with its own
/// MESSAGE_ID, the part and what was ignored, secrets masked.
#[test]
fn user_data_warnings_are_warning_entries_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let sock = journal_socket(dir.path());
    let logger = logger(dir.path(), &sock, false);
    let mut secrets = imprint::secret::Secrets::new();
    secrets.add("hunter2");
    let notices = [
        imprint::merge::Notice {
            part: 2,
            what: "cloud-config key `runcmd`".into(),
            hint: "bake the command into the image".into(),
        },
        imprint::merge::Notice {
            part: 3,
            what: "cloud-config key `hunter2`".into(),
            hint: "do this in the image".into(),
        },
    ];
    tracing::subscriber::with_default(logger, || {
        imprint::logging::user_data_warnings(&notices, &secrets);
    });
    let want = [
        (
            "2",
            "cloud-config key `runcmd`",
            "part 2: cloud-config key `runcmd`: bake the command into the image",
        ),
        (
            "3",
            "cloud-config key `********`",
            "part 3: cloud-config key `********`: do this in the image",
        ),
    ];
    for (part, what, message) in want {
        let (entry, _) = receive(&sock);
        assert!(
            !String::from_utf8_lossy(&entry).contains("hunter2"),
            "secret in the journal"
        );
        let got = decode(&entry);
        assert_eq!(got[0], ("PRIORITY".into(), b"4".to_vec()));
        assert_eq!(
            got[5..].to_vec(),
            fields(
                vec![],
                &[
                    ("MESSAGE", message.as_bytes()),
                    ("MESSAGE_ID", MSG_USER_DATA_WARNING.as_bytes()),
                    ("PART", part.as_bytes()),
                    ("WHAT", what.as_bytes()),
                ]
            )
        );
    }
}

#[test]
fn levels_filter_and_map_to_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let sock = journal_socket(dir.path());
    let quiet = logger(dir.path(), &sock, false);
    tracing::subscriber::with_default(quiet, || {
        tracing::debug!("not without --verbose");
        tracing::info!("after");
    });
    let (entry, _) = receive(&sock);
    let got = decode(&entry);
    assert_eq!(got[0], ("PRIORITY".into(), b"5".to_vec()));
    assert_eq!(got.last().unwrap(), &("MESSAGE".into(), b"after".to_vec()));

    let verbose = logger(dir.path(), &sock, true);
    tracing::subscriber::with_default(verbose, || {
        tracing::trace!("never");
        tracing::debug!(count = 3u64, ok = true, "with --verbose");
    });
    let (entry, _) = receive(&sock);
    let got = decode(&entry);
    assert_eq!(got[0], ("PRIORITY".into(), b"6".to_vec()));
    assert_eq!(
        got[5..].to_vec(),
        vec![
            ("MESSAGE".into(), b"with --verbose".to_vec()),
            ("COUNT".into(), b"3".to_vec()),
            ("OK".into(), b"true".to_vec()),
        ]
    );
    sock.set_nonblocking(true).unwrap();
    assert_eq!(
        sock.recv(&mut [0u8; 16]).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing else was sent (no trace entry)"
    );
}

#[test]
fn connecting_where_nothing_listens_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Journal::connect(&dir.path().join("socket"));
    assert!(
        missing.is_err(),
        "no socket file: an error, not a silent drop"
    );
    // A socket file whose listener is gone.
    drop(journal_socket(dir.path()));
    let gone = Journal::connect(&dir.path().join("socket"));
    assert_eq!(
        gone.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

/// `imprint run` on a copy of the demo root, in a private mount namespace
/// whose /run/systemd/journal/socket is a socket of this test; `stream`:
/// stderr goes to a file that `JOURNAL_STREAM` names (as under systemd).
/// Returns the journal's entries, decoded, and stderr. None when not root
/// (a mount namespace needs it; .ci/run is root).
fn run_with_journal(stream: bool) -> Option<(Vec<Entry>, String)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: a mount namespace for the journal socket needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let sockdir = dir.path().join("journal");
    std::fs::create_dir(&sockdir).unwrap();
    let sock = journal_socket(&sockdir);
    let root = common::TempRoot::new();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(demo.join("root/."))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(copied.success());

    // Read while imprint writes: the socket queues only a few datagrams.
    let reader = sock.try_clone().unwrap();
    let entries = std::thread::spawn(move || {
        let mut entries = Vec::new();
        loop {
            let (entry, _) = receive(&reader);
            if entry == b"STOP" {
                return entries;
            }
            entries.push(entry);
        }
    });

    let mut cmd = std::process::Command::new("unshare");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(
            "mount -t tmpfs none /run; mkdir -p /run/systemd/journal; \
             mount --bind \"$0\" /run/systemd/journal; exec \"$@\"",
        )
        .arg(&sockdir)
        .arg(env!("CARGO_BIN_EXE_imprint"))
        .args(["run", "--root"])
        .arg(root.path())
        .arg("--user-data")
        .arg(demo.join("user-data.b64"))
        .args(["--instance-id", "i-demo"]);
    let errfile = dir.path().join("stderr");
    if stream {
        let f = std::fs::File::create(&errfile).unwrap();
        let st = rustix::fs::fstat(&f).unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
            .stderr(f);
    }
    let out = cmd.output().expect("failed to spawn unshare");
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"STOP", sockdir.join("socket"))
        .unwrap();
    let entries = entries.join().unwrap();
    let stderr = if stream {
        std::fs::read_to_string(&errfile).unwrap()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(out.status.code(), Some(0), "imprint run failed: {stderr}");
    assert!(
        entries.first().is_some_and(|e| e.is_empty()),
        "init probes the journal with an empty datagram first"
    );
    Some((entries[1..].iter().map(|e| decode(e)).collect(), stderr))
}

fn value<'a>(entry: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    entry
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

#[test]
fn the_binary_logs_to_the_journal_and_to_a_terminal_stderr() {
    let Some((entries, stderr)) = run_with_journal(false) else {
        return;
    };
    // Every line on stderr is one journal entry, in the same order.
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() > 10, "a run logs its stages: {stderr}");
    assert_eq!(entries.len(), lines.len(), "{stderr}");
    for (entry, line) in entries.iter().zip(&lines) {
        let message = value(entry, "MESSAGE").unwrap();
        let level = match value(entry, "PRIORITY").unwrap() {
            "3" => "ERROR",
            "4" => " WARN",
            "5" => " INFO",
            p => panic!("unexpected PRIORITY {p} for {line}"),
        };
        assert!(line.starts_with(&format!("{level} {message}")), "{line}");
        assert_eq!(value(entry, "SYSLOG_IDENTIFIER"), Some("imprint"));
    }
    let stage = &entries[0];
    assert_eq!(value(stage, "MESSAGE_ID"), Some(MSG_STAGE));
    assert_eq!(value(stage, "STAGE"), Some("lock"));
    assert_eq!(value(stage, "TARGET"), Some("imprint::logging"));
    assert_eq!(value(stage, "CODE_FILE"), Some("src/logging.rs"));
    assert_eq!(value(stage, "OUTCOME"), Some("ok"));
    assert!(value(stage, "DURATION_MS").unwrap().parse::<f64>().is_ok());
    assert!(entries
        .iter()
        .any(|e| value(e, "MESSAGE_ID") == Some(MSG_SEALED)
            && value(e, "INSTANCE_ID") == Some("i-demo")));
    assert!(entries
        .iter()
        .any(|e| value(e, "MESSAGE_ID") == Some(MSG_FILE_WRITTEN)
            && value(e, "PATH") == Some("/opt/app/conf.env")));
}

#[test]
fn the_binary_logs_to_the_journal_only_when_stderr_is_the_journal() {
    let Some((entries, stderr)) = run_with_journal(true) else {
        return;
    };
    assert_eq!(stderr, "", "stderr is the journal: nothing twice");
    assert!(entries.len() > 10);
    assert!(entries
        .iter()
        .any(|e| value(e, "MESSAGE_ID") == Some(MSG_SEALED)));
}
