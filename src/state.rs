//! imprint's own state: `/var/lib/imprint/` (0700) and the run lock
//! `/run/imprint/lock` (SPEC §5).
//!
//! The lock is an `flock(LOCK_EX|LOCK_NB)` on `/run/imprint/lock` (the
//! directory is created 0755): the kernel drops it when the process dies, so
//! a killed run never leaves a stale lock, and `/run` is a tmpfs that starts
//! empty at every boot. A held lock is [`StateError::Locked`] (exit 75): a
//! second run fails cleanly instead of interleaving writes.
//!
//! State files are written through the root's confined directory handle
//! (see `apply`), 0600 inside the 0700 state directory: `sealed` and
//! `report.json` atomically (a temp file renamed in), the apply journal in
//! place with a checksummed header. Only the seal and the journal are synced:
//! `report.json` is diagnostic (docs/state.md, "Durability"). They hold hashes and masked text,
//! never a secret value; the 0600/0700 modes are there anyway because a
//! sha256 of a file that holds a weak password is a guessing oracle.

use crate::apply;
use crate::error::ExitCode;
use crate::root::{self, Root};
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "another imprint run holds {path}; not interleaving writes (try again when it is done)"
    )]
    Locked { path: PathBuf },
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// `status --wait` from a unit the first boot's units wait for
    /// (`systemd::wait_would_deadlock`).
    #[error("{}", crate::systemd::wait_deadlock_message(unit))]
    WaitDeadlock { unit: String },
}

impl StateError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StateError::Locked { .. } => ExitCode::TempFail,
            StateError::Io { .. } => ExitCode::CantCreate,
            StateError::Corrupt { .. } => ExitCode::DataErr,
            StateError::WaitDeadlock { .. } => ExitCode::Usage,
        }
    }
}

/// The state directory of a root.
pub fn dir(root: &Root) -> PathBuf {
    root.join(root::STATE_DIR)
}

/// The lock file of a root.
pub fn lock_path(root: &Root) -> PathBuf {
    root.join(root::RUN_DIR).join("lock")
}

/// The exclusive run lock; released on drop.
pub struct Lock {
    _file: std::fs::File,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lock")
    }
}

fn io_err(what: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> StateError {
    move |source| StateError::Io { what, path, source }
}

/// Take the run lock without waiting; a held lock is `StateError::Locked`.
pub fn lock(root: &Root) -> Result<Lock, StateError> {
    let path = lock_path(root);
    let rdir = apply::open_root(root).map_err(io_err("open the root", root.dir().into()))?;
    let run = apply::ensure_dirs(&rdir, Path::new(root::RUN_DIR), 0o755)
        .map_err(io_err("create", path.parent().unwrap_or(&path).into()))?;
    let fd = rustix::fs::openat(
        &run,
        "lock",
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_err("open", path.clone())(e.into()))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Lock {
            _file: std::fs::File::from(fd),
        }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StateError::Locked { path }),
        Err(e) => Err(io_err("lock", path)(e.into())),
    }
}

/// Whether a run holds the lock now, without creating or taking anything:
/// read from `/proc/locks`, so that polling (`status --wait`, the
/// `cloud-init status` shim) can never make a starting run fail with 75.
pub fn is_locked(root: &Root) -> bool {
    lock_held_at(&root.join(root::RUN_DIR).join("lock"))
}

/// Whether a lock (flock, POSIX or OFD) is held on `path`, from
/// `/proc/locks`, without taking it.
fn lock_held_at(path: &Path) -> bool {
    let Ok(st) = rustix::fs::stat(path) else {
        return false;
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    lock_held(
        &locks,
        rustix::fs::major(st.st_dev),
        rustix::fs::minor(st.st_dev),
        st.st_ino,
    )
}

/// Whether `/proc/locks` text lists a lock on the file with this device and
/// inode (`MAJ:MIN:INODE`, the device numbers in hex).
pub fn lock_held(proc_locks: &str, major: u32, minor: u32, ino: u64) -> bool {
    proc_locks.lines().any(|l| {
        l.split_whitespace().any(|w| {
            let mut p = w.split(':');
            match (p.next(), p.next(), p.next(), p.next()) {
                (Some(ma), Some(mi), Some(i), None) => {
                    u32::from_str_radix(ma, 16).ok() == Some(major)
                        && u32::from_str_radix(mi, 16).ok() == Some(minor)
                        && i.parse::<u64>().ok() == Some(ino)
                }
                _ => false,
            }
        })
    })
}

/// Read a state file (`name` inside the state directory); absent is `None`.
pub fn read_file(root: &Root, name: &str) -> Result<Option<Vec<u8>>, StateError> {
    let rel = Path::new(root::STATE_DIR).join(name);
    let path = root.join(&rel);
    let rdir = match apply::open_root(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open the root", root.dir().into())(e)),
    };
    match rdir.symlink_metadata(&rel) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
        Ok(md) if !md.is_file() => {
            return Err(StateError::Corrupt {
                path,
                message: "not a regular file".into(),
            })
        }
        Ok(_) => {}
    }
    match rdir.read(&rel) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Write a state file atomically (0600; the state directory is created 0700).
pub fn write_file(root: &Root, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let path = dir(root).join(name);
    let sd = apply::state_dir(root).map_err(io_err("create", dir(root)))?;
    apply::write_atomic(&sd, OsStr::new(name), bytes, 0o600, None).map_err(io_err("write", path))
}

/// Replace a state file without syncing it (0600): `report.json` only
/// (docs/state.md, "Durability").
pub fn write_file_unsynced(root: &Root, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let path = dir(root).join(name);
    let sd = apply::state_dir(root).map_err(io_err("create", dir(root)))?;
    apply::replace_unsynced(&sd, OsStr::new(name), bytes, 0o600).map_err(io_err("write", path))
}

/// Remove a state file; returns whether it was there.
pub fn remove_file(root: &Root, name: &str) -> Result<bool, StateError> {
    let path = dir(root).join(name);
    let rdir = apply::open_root(root).map_err(io_err("open the root", root.dir().into()))?;
    let sd = match rdir.open_dir(root::STATE_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("open", dir(root))(e)),
    };
    match sd.remove_file(name) {
        Ok(()) => {
            apply::fsync_dir(&sd).map_err(io_err("sync", dir(root)))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// `imprint clean`: forget this instance (the last step of an image
/// build). Takes the run lock (a run in progress is exit 75); rolls back an
/// interrupted run's journal first (never bake half a config into an image);
/// removes the seal and the report; with `machine_id`, truncates
/// `/etc/machine-id` to 0 bytes, keeping the file, which is what systemd
/// reads as "first boot, generate an id". Returns one line per thing done.
pub fn clean(root: &Root, machine_id: bool, host_keys: bool) -> Result<Vec<String>, crate::Error> {
    let _lock = lock(root)?;
    if host_keys {
        // Before anything is removed: all or nothing.
        crate::hostkeys::check_removable(root)?;
    }
    let mut done = Vec::new();
    let restored = apply::recover(root)?;
    if !restored.is_empty() {
        done.push(format!(
            "rolled back an interrupted run: restored {}",
            restored.join(", ")
        ));
    }
    for name in [
        crate::seal::FILE,
        crate::report::FILE,
        crate::hostkeys::MARKER,
    ] {
        if remove_file(root, name)? {
            done.push(format!("removed /{}/{name}", root::STATE_DIR));
        }
    }
    if machine_id {
        done.push(empty_machine_id(root)?);
    }
    if host_keys {
        let removed = crate::hostkeys::remove_all(root)?;
        if removed.is_empty() {
            done.push(format!(
                "no ssh host keys in /{} (instances make their own)",
                crate::hostkeys::SSH_DIR
            ));
        }
        for p in removed {
            done.push(format!("removed {p} (each instance makes its own)"));
        }
    }
    if done.is_empty() {
        done.push("nothing to clean: no seal, no report".into());
    }
    Ok(done)
}

fn empty_machine_id(root: &Root) -> Result<String, StateError> {
    const REL: &str = "etc/machine-id";
    let path = root.join(REL);
    let rdir = apply::open_root(root).map_err(io_err("open the root", root.dir().into()))?;
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.write(true);
    match rdir.open_with(REL, &opts) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok("no /etc/machine-id to empty (systemd creates one at first boot)".into())
        }
        Err(e) => Err(io_err("open", path)(e)),
        Ok(f) => {
            f.set_len(0).map_err(io_err("truncate", path.clone()))?;
            f.sync_all().map_err(io_err("sync", path))?;
            Ok("emptied /etc/machine-id (systemd generates a new id at first boot)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        assert!(!is_locked(&root));
        let l = lock(&root).unwrap();
        assert!(is_locked(&root));
        match lock(&root) {
            Err(e @ StateError::Locked { .. }) => {
                assert_eq!(e.exit_code(), ExitCode::TempFail);
                assert!(e.to_string().contains("run/imprint/lock"), "{e}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(l);
        assert!(!is_locked(&root));
        let _again = lock(&root).unwrap();
        let md = std::fs::metadata(t.path().join("run/imprint")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn state_files_are_private_and_atomic() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        assert_eq!(read_file(&root, "x").unwrap(), None);
        write_file(&root, "x", b"one").unwrap();
        write_file(&root, "x", b"two").unwrap();
        assert_eq!(read_file(&root, "x").unwrap().as_deref(), Some(&b"two"[..]));
        let d = std::fs::metadata(t.path().join("var/lib/imprint")).unwrap();
        assert_eq!(d.permissions().mode() & 0o7777, 0o700);
        let f = std::fs::metadata(t.path().join("var/lib/imprint/x")).unwrap();
        assert_eq!(f.permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = std::fs::read_dir(t.path().join("var/lib/imprint"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")], "no temp left");
        assert!(remove_file(&root, "x").unwrap());
        assert!(!remove_file(&root, "x").unwrap());
    }

    #[test]
    fn state_file_through_escaping_symlink_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("var/lib/imprint")).unwrap();
        let root = Root::at(t.path());
        assert!(write_file(&root, "sealed", b"{}").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn clean_removes_state_and_empties_machine_id() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        let mid = t.path().join("etc/machine-id");
        std::fs::write(&mid, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o444)).unwrap();
        write_file(&root, crate::seal::FILE, b"{}").unwrap();
        write_file(&root, crate::report::FILE, b"{}").unwrap();
        {
            let _held = lock(&root).unwrap();
            let e = clean(&root, true, false).unwrap_err();
            assert_eq!(e.exit_code(), ExitCode::TempFail);
            assert!(read_file(&root, crate::seal::FILE).unwrap().is_some());
        }
        let done = clean(&root, true, false).unwrap();
        assert_eq!(done.len(), 3, "{done:?}");
        assert!(read_file(&root, crate::seal::FILE).unwrap().is_none());
        assert!(read_file(&root, crate::report::FILE).unwrap().is_none());
        let md = std::fs::metadata(&mid).unwrap();
        assert_eq!(md.len(), 0);
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o444,
            "file kept as it was"
        );
        let done = clean(&root, false, false).unwrap();
        assert_eq!(
            done,
            vec!["nothing to clean: no seal, no report".to_string()]
        );
    }

    #[test]
    fn proc_locks_lines() {
        // /proc/locks lines as Linux prints them (fs/locks.c lock_get_status).
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 fd:01:777 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 4243 00:2f:555 0 EOF\n";
        assert!(lock_held(text, 0, 0x2f, 1234));
        assert!(lock_held(text, 0xfd, 1, 777));
        assert!(lock_held(text, 0, 0x2f, 555));
        assert!(!lock_held(text, 0, 0x2f, 777));
        assert!(!lock_held("", 0, 0x2f, 1234));
    }
}
