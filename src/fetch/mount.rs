//! Read-only mounts of seed devices (NoCloud `cidata`, OpenStack
//! `config-2`), for as long as it takes to read a few files.
//!
//! The device is mounted `ro,nosuid,nodev,noexec` into a fresh directory
//! (0700) under `/run/imprint`, so nothing else sees or runs what is on it;
//! it is unmounted and the directory removed afterwards, also on error (a
//! guard does it on drop). The mount is a raw `mount(2)` through rustix, not
//! `/bin/mount`: no dependence on util-linux, on `PATH` or on blkid in early
//! boot; the file-system types are tried in order (ISO 9660, then vfat).
//! Files are opened without following symlinks, and capped in size.

use super::FetchError;
use rustix::mount::{MountFlags, UnmountFlags};
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The file-system types of seed devices, tried in this order.
pub const SEED_FS_TYPES: &[&str] = &["iso9660", "vfat"];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A mounted device; unmounted (and its directory removed) on drop.
struct Mounted {
    dir: PathBuf,
    mounted: bool,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = rustix::mount::unmount(&self.dir, UnmountFlags::empty()) {
                tracing::warn!(
                    "failed to unmount {}: {e}; detaching it lazily",
                    self.dir.display()
                );
                let _ = rustix::mount::unmount(&self.dir, UnmountFlags::DETACH);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Mount `device` read-only under `run_dir` (trying each of `fs_types`),
/// call `f` with the mount point, unmount. `label` names the device in
/// messages.
pub fn with_mounted<T>(
    device: &Path,
    label: &str,
    run_dir: &Path,
    fs_types: &[&str],
    f: impl FnOnce(&Path) -> Result<T, FetchError>,
) -> Result<T, FetchError> {
    let fail = |message: String| FetchError::Mount {
        device: device.display().to_string(),
        label: label.to_string(),
        message,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(run_dir)
        .map_err(|e| fail(format!("failed to create {}: {e}", run_dir.display())))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = run_dir.join(format!("seed-{}-{n}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(format!("failed to create {}: {e}", dir.display())))?;
    let mut guard = Mounted {
        dir: dir.clone(),
        mounted: false,
    };
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mut tried = Vec::new();
    for fs in fs_types {
        match rustix::mount::mount(device, &dir, *fs, flags, None) {
            Ok(()) => {
                guard.mounted = true;
                break;
            }
            Err(e) => tried.push(format!("{fs}: {e}")),
        }
    }
    if !guard.mounted {
        return Err(fail(format!(
            "no file system type worked ({}); is the device really a seed image, \
             and does the kernel have these file systems?",
            tried.join("; ")
        )));
    }
    tracing::debug!(device = %device.display(), at = %dir.display(), "mounted seed device");
    f(&dir)
}

/// Read a regular file at most `limit` bytes long, never through a symlink.
/// `Ok(None)` when it does not exist.
pub fn read_file_opt(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FetchError::Read {
                what: format!("{what} ({})", path.display()),
                source,
            })
        }
    };
    let md = file.metadata().map_err(|source| FetchError::Read {
        what: format!("{what} ({})", path.display()),
        source,
    })?;
    if !md.is_file() {
        return Err(FetchError::Invalid {
            what: format!("{what} ({})", path.display()),
            message: "not a regular file".into(),
        });
    }
    super::read_capped(file, limit, &format!("{what} ({})", path.display())).map(Some)
}
