//! Stage 8, apply: write each changed file atomically, confined to the root,
//! with an in-progress journal so that a failure part-way restores every file
//! and a crash part-way is rolled back by the next run (SPEC §1.8).
//!
//! Why it is built this way:
//!
//! - **Confinement.** Every path is resolved through a cap-std [`Dir`] opened
//!   on the root, so `..`, absolute symlinks and relative symlinks that climb
//!   out of the root are refused by the kernel (`openat2` `RESOLVE_BENEATH`)
//!   or by cap-std's own resolver where `openat2` is missing. A symlink
//!   *inside* the root that stays inside it is followed for parent
//!   directories; a symlink at the final path is refused (imprint replaces
//!   regular files only, it never writes through a link). Absolute symlinks
//!   count as escaping even on `/` (`/var/run -> /run`): fail closed.
//! - **Preflight.** Every target is checked (resolvable, parents are
//!   directories, the target is absent or a regular file) before anything is
//!   written, so the common mistakes (a directory where a file should go, a
//!   link out of the root) change nothing at all, not even the journal.
//! - **Atomic writes.** A temp file in the target's own directory is created
//!   `O_CREAT|O_EXCL` with the final permission bits (never briefly readable
//!   by others), chowned, chmodded to the exact mode (after chown, which
//!   clears set-id bits), written, fsynced, renamed over the target, and the
//!   directory fsynced. We do not use cap-tempfile: it creates the file with
//!   `0666 & ~umask` and offers no creation mode, and its `O_TMPFILE` path
//!   needs `/proc`. The temp name is derived from the target's name
//!   (`.NAME.imprint-tmp`) so that recovery can find and remove it.
//! - **Batched syncs.** fsync is most of a run's time (about 1 ms each on a
//!   virtual disk, two per file one after the other: 1000 files took over
//!   a second). So files go in batches of 64: the temp files are written,
//!   fsynced concurrently by a few threads (the file system folds them into
//!   one journal commit), renamed in order; each directory is fsynced once,
//!   after the last rename, before the journal is removed. Every file is
//!   still synced before it replaces the old one, and a crash anywhere still
//!   leaves the journal to roll back (docs/benchmarks.md has the figures).
//! - **Journal.** Before the first write, `/var/lib/imprint/journal.json`
//!   (0600 in a 0700 directory, itself written atomically) records the
//!   previous version of every file to be touched (content, mode, owner, or
//!   "absent") and the parent directories apply will create. A failure
//!   part-way restores every file from it, removes created directories that
//!   are still empty, then removes the journal. A crash part-way leaves the
//!   journal, and [`recover`] rolls it back at the start of the next run.
//!   The journal holds previous file contents (which may hold old secrets
//!   that were on disk anyway); it never outlives a run that ends normally.
//! - **Owners.** As root, every file gets the planned uid/gid. As non-root,
//!   giving a file away is impossible: under `--root DIR` (tests, image
//!   builds by an unprivileged user) the chown is skipped with a warning and
//!   the real owner is recorded; on the host it is an error.
//! - **Fault injection.** With the cargo feature `failpoints`,
//!   `IMPRINT_FAILPOINT=apply:after-write:N[:error|abort|sleep]` fails,
//!   aborts, or pauses (so a test can `kill -9` it) after the Nth file
//!   (`N = 0`: right after the journal). Without the feature the check
//!   compiles to nothing.

use crate::plan::Plan;
use crate::root::{self, Root};
use base64::Engine as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write as _};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

/// The journal, relative to the root.
pub const JOURNAL: &str = "var/lib/imprint/journal.json";

/// A file as written (for the seal and report).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub path: String,
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub written: Vec<Written>,
    /// Parent directories created (absolute paths inside the root).
    pub created_dirs: Vec<String>,
    /// Things the operator should know (an owner that could not be set).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing to write {path}: {message}; nothing was written")]
    Refused { path: String, message: String },
    #[error("failed to write {path}: {message}; every file was rolled back")]
    Write { path: String, message: String },
    #[error("failed to write {path}: {message}; ROLLBACK FAILED for {failed:?}: restore them from {journal}")]
    RollbackFailed {
        path: String,
        message: String,
        failed: Vec<String>,
        journal: String,
    },
    #[error("failed to roll back an interrupted run from {journal}: {message}")]
    Recover { journal: String, message: String },
}

// ---------------------------------------------------------------------------
// The journal.

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Journal {
    version: u32,
    started: String,
    /// Every file to be touched, in write order.
    entries: Vec<Entry>,
    /// Parent directories apply creates, shallowest first.
    created_dirs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    path: String,
    /// `None`: the file did not exist.
    previous: Option<Previous>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Previous {
    /// base64 (standard) of the bytes.
    content: String,
    mode: u32,
    uid: u32,
    gid: u32,
}

// ---------------------------------------------------------------------------
// Confined file system primitives, shared with `seal`, `report`, `state`.

/// Open the root as a capability directory.
pub(crate) fn open_root(root: &Root) -> io::Result<Dir> {
    Dir::open_ambient_dir(root.dir(), ambient_authority())
}

/// Split a root-relative path into its parent (possibly empty) and name.
fn split(rel: &Path) -> (PathBuf, OsString) {
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_default();
    (parent, name)
}

/// Open a root-relative directory (the root itself when `rel` is empty).
pub(crate) fn open_dir_in(dir: &Dir, rel: &Path) -> io::Result<Dir> {
    if rel.as_os_str().is_empty() {
        dir.try_clone()
    } else {
        dir.open_dir(rel)
    }
}

/// fsync a directory (cap-std opens directories `O_PATH`, which cannot be
/// synced: reopen `.` readable).
pub(crate) fn fsync_dir(dir: &Dir) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// An I/O error with the step that failed, and a hint for the usual causes.
fn step(what: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(1) | Some(13) => " (immutable file or directory, or a read-only mount?)",
        Some(30) => " (read-only file system)",
        Some(21) => " (a directory is in the way)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("failed to {what}: {e}{hint}"))
}

fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(".imprint-tmp");
    t
}

/// Remove a single-component name in `dir`; absent is fine.
fn unlink_quiet(dir: &Dir, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Write `name` in `dir` atomically: a temp file created with the final
/// permission bits, chowned (when `owner` is given), chmodded to `mode`,
/// written, fsynced, renamed over `name`; the directory fsynced. The temp
/// file is removed on error.
pub(crate) fn write_atomic(
    dir: &Dir,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let f = stage(dir, name, content, mode, owner)?;
    let r = f
        .sync_all()
        .map_err(|e| step("sync", e))
        .and_then(|()| commit(dir, name));
    drop(f);
    if let Err(e) = r {
        let _ = unlink_quiet(dir, &temp_name(name));
        return Err(e);
    }
    fsync_dir(dir).map_err(|e| step("sync its directory", e))
}

/// The first half of [`write_atomic`]: the temp file beside `name`, created
/// with the final permission bits, chowned, chmodded, written, not yet
/// synced (the caller syncs it, then [`commit`]s it). Removed on error.
fn stage(
    dir: &Dir,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<std::fs::File> {
    let tmp = temp_name(name);
    // A stale temp file of ours (a crash between journal and write): the run
    // lock is held, so nobody else is using this name.
    unlink_quiet(dir, &tmp).map_err(|e| step("remove a stale temp file", e))?;
    let fd = rustix::fs::openat(
        dir,
        tmp.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o777),
    )
    .map_err(|e| step("create the temp file beside it", e.into()))?;
    let r = (|| -> io::Result<std::fs::File> {
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| step("set the owner", e.into()))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| step("set the mode", e.into()))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(content).map_err(|e| step("write", e))?;
        Ok(f)
    })();
    if r.is_err() {
        let _ = unlink_quiet(dir, &tmp);
    }
    r
}

/// The second half of [`write_atomic`]: rename the synced temp file over
/// `name` (the caller syncs the directory).
fn commit(dir: &Dir, name: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, temp_name(name).as_os_str(), dir, name)
        .map_err(|e| step("rename the temp file over it", e.into()))
}

/// fsync every file, several at a time: the kernel folds concurrent fsyncs
/// into one journal commit (ext4, xfs), where one after the other each waits
/// for its own. Results in the order of `files`.
fn sync_all<T: AsFd + Sync>(files: &[T]) -> Vec<io::Result<()>> {
    const WORKERS: usize = 8;
    let sync = |f: &T| rustix::fs::fsync(f).map_err(io::Error::from);
    if files.len() < 2 {
        return files.iter().map(sync).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<io::Result<()>>>> =
        files.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(f) = files.get(i) else { break };
        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(sync(f));
    };
    std::thread::scope(|s| {
        for _ in 1..WORKERS.min(files.len()) {
            // A thread that cannot be started leaves its share to the others.
            let _ = std::thread::Builder::new().spawn_scoped(s, work);
        }
        work();
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(io::Error::other("not synced")))
        })
        .collect()
}

/// Create `var/lib/imprint` (0700; missing parents 0755) and open it.
pub(crate) fn state_dir(root: &Root) -> io::Result<Dir> {
    let rdir = open_root(root)?;
    ensure_dirs(&rdir, Path::new(root::STATE_DIR), 0o700)
}

/// Create every missing directory of `rel` (the last one with `last_mode`,
/// the others 0755) and open it.
pub(crate) fn ensure_dirs(rdir: &Dir, rel: &Path, last_mode: u32) -> io::Result<Dir> {
    let comps: Vec<_> = rel.components().collect();
    let mut cur = rdir.try_clone()?;
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ));
        };
        let mode = if i + 1 == comps.len() {
            last_mode
        } else {
            0o755
        };
        match rustix::fs::mkdirat(&cur, *name, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                // umask may have cleared bits.
                rustix::fs::chmodat(&cur, *name, Mode::from_raw_mode(mode), AtFlags::empty())?;
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur = cur.open_dir(name)?;
    }
    Ok(cur)
}

// ---------------------------------------------------------------------------
// Fail points.

#[cfg(feature = "failpoints")]
fn failpoint(point: &str, n: usize) -> Result<(), String> {
    let Ok(spec) = std::env::var("IMPRINT_FAILPOINT") else {
        return Ok(());
    };
    let mut it = spec.rsplitn(2, ':');
    let (last, head) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    let (target, action) = if matches!(last, "error" | "abort" | "sleep") {
        (head.to_string(), last)
    } else {
        (spec.clone(), "error")
    };
    if target != format!("{point}:{n}") {
        return Ok(());
    }
    match action {
        "abort" => {
            eprintln!("imprint: failpoint {target}: aborting");
            std::process::abort()
        }
        "sleep" => {
            eprintln!("imprint: failpoint {target}: sleeping");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        _ => Err(format!("failpoint {target} hit")),
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn failpoint(_point: &str, _n: usize) -> Result<(), String> {
    Ok(())
}

// ---------------------------------------------------------------------------
// Ownership.

/// The owner to give a file: `Some` to chown, `None` to leave it to the
/// running user (non-root under `--root` only); `Err` when impossible.
fn owner_to_set(
    euid: u32,
    egid: u32,
    host: bool,
    want: (u32, u32),
) -> Result<Option<(u32, u32)>, String> {
    if euid == 0 || want == (euid, egid) {
        Ok(Some(want))
    } else if host {
        Err(format!(
            "cannot give it to {}:{} when not running as root",
            want.0, want.1
        ))
    } else {
        Ok(None)
    }
}

fn ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

// ---------------------------------------------------------------------------
// Preflight.

struct Target {
    /// As the plan wrote it (absolute inside the root).
    path: String,
    parent: PathBuf,
    name: OsString,
    previous: Option<Previous>,
}

fn display(rel: &Path) -> String {
    format!("/{}", rel.display())
}

fn refused(path: &str, message: impl Into<String>) -> ApplyError {
    ApplyError::Refused {
        path: path.to_string(),
        message: message.into(),
    }
}

fn resolve_hint(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "{e} (a symlink or `..` leads outside the root, or an absolute \
             symlink: imprint never writes through it)"
        )
    } else {
        e.to_string()
    }
}

/// Check one target; collect the directories to create.
fn preflight(rdir: &Dir, path: &str, create: &mut Vec<PathBuf>) -> Result<Target, ApplyError> {
    let rel = Root::rel(path)
        .ok_or_else(|| refused(path, "the path has `..` or names no file inside the root"))?;
    let (parent, name) = split(&rel);
    let mut missing = false;
    let mut prefix = PathBuf::new();
    for c in parent.components() {
        prefix.push(c);
        if missing {
            if !create.contains(&prefix) {
                create.push(prefix.clone());
            }
            continue;
        }
        match rdir.metadata(&prefix) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    path,
                    format!(
                        "{} is not a directory (remove it or choose another path)",
                        display(&prefix)
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if rdir
                    .symlink_metadata(&prefix)
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(refused(
                        path,
                        format!("{} is a dangling symlink", display(&prefix)),
                    ));
                }
                missing = true;
                if !create.contains(&prefix) {
                    create.push(prefix.clone());
                }
            }
            Err(e) => {
                return Err(refused(
                    path,
                    format!(
                        "cannot resolve {} inside the root: {}",
                        display(&prefix),
                        resolve_hint(&e)
                    ),
                ))
            }
        }
    }
    let previous = if missing {
        None
    } else {
        match rdir.symlink_metadata(&rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(refused(
                    path,
                    format!("cannot inspect it: {}", resolve_hint(&e)),
                ))
            }
            Ok(md) if md.file_type().is_symlink() => {
                return Err(refused(
                    path,
                    "it is a symlink; imprint replaces regular files only and never \
                     writes through a link (remove the link, or name its target)",
                ))
            }
            Ok(md) if md.is_dir() => {
                return Err(refused(
                    path,
                    "a directory is in the way (remove it or choose another path)",
                ))
            }
            Ok(md) if !md.is_file() => {
                return Err(refused(path, "it exists and is not a regular file"))
            }
            Ok(md) => {
                let content = rdir.read(&rel).map_err(|e| {
                    refused(path, format!("failed to read the current version: {e}"))
                })?;
                Some(Previous {
                    content: base64::engine::general_purpose::STANDARD.encode(content),
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                })
            }
        }
    };
    Ok(Target {
        path: path.to_string(),
        parent,
        name,
        previous,
    })
}

// ---------------------------------------------------------------------------
// Apply, rollback, recover.

fn write_journal(root: &Root, j: &Journal) -> io::Result<()> {
    let sd = state_dir(root)?;
    let bytes = serde_json::to_vec(j).map_err(io::Error::other)?;
    write_atomic(&sd, OsStr::new("journal.json"), &bytes, 0o600, None)
}

fn remove_journal(root: &Root) -> io::Result<()> {
    let sd = state_dir(root)?;
    unlink_quiet(&sd, OsStr::new("journal.json"))?;
    fsync_dir(&sd)
}

/// Restore every entry (last first), remove created directories that are
/// empty. Returns the paths that could not be restored, with why.
fn rollback(rdir: &Dir, j: &Journal) -> Vec<String> {
    let mut failed = Vec::new();
    for e in j.entries.iter().rev() {
        if let Err(err) = restore_one(rdir, e) {
            failed.push(format!("{}: {err}", e.path));
        }
    }
    for d in j.created_dirs.iter().rev() {
        if let Some(rel) = Root::rel(d) {
            // Not empty (someone else wrote there) or gone: leave it.
            let _ = rdir.remove_dir(rel);
        }
    }
    failed
}

fn restore_one(rdir: &Dir, e: &Entry) -> io::Result<()> {
    let rel = Root::rel(&e.path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad path in the journal"))?;
    let (parent, name) = split(&rel);
    let dir = match open_dir_in(rdir, &parent) {
        Ok(d) => d,
        // The parent was created by this run and never got the file.
        Err(err) if err.kind() == io::ErrorKind::NotFound && e.previous.is_none() => return Ok(()),
        Err(err) => return Err(err),
    };
    unlink_quiet(&dir, &temp_name(&name))?;
    match &e.previous {
        None => {
            // Never remove a directory (or anything but what we wrote).
            match dir.symlink_metadata(&name) {
                Ok(md) if md.is_file() => {
                    unlink_quiet(&dir, &name)?;
                    fsync_dir(&dir)
                }
                _ => Ok(()),
            }
        }
        Some(p) => {
            let content = base64::engine::general_purpose::STANDARD
                .decode(&p.content)
                .map_err(io::Error::other)?;
            // Already the previous version (never written, or written back):
            // leave it alone, so untouched files keep their inode and mtime.
            if let Ok(md) = dir.symlink_metadata(&name) {
                if md.is_file()
                    && md.mode() & 0o7777 == p.mode
                    && (md.uid(), md.gid()) == (p.uid, p.gid)
                    && dir.read(&name).is_ok_and(|c| c == content)
                {
                    return Ok(());
                }
            }
            let (euid, egid) = ids();
            let owner = (euid == 0 || (p.uid, p.gid) == (euid, egid)).then_some((p.uid, p.gid));
            write_atomic(&dir, &name, &content, p.mode, owner)
        }
    }
}

/// Roll back a run that crashed part-way (journal left behind). Returns the
/// paths restored.
pub fn recover(root: &Root) -> Result<Vec<String>, ApplyError> {
    let journal = display(Path::new(JOURNAL));
    let fail = |message: String| ApplyError::Recover {
        journal: journal.clone(),
        message,
    };
    let rdir = open_root(root).map_err(|e| fail(format!("failed to open the root: {e}")))?;
    let bytes = match rdir.read(JOURNAL) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(format!("failed to read it: {e}"))),
    };
    let j: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        fail(format!(
            "it is not a valid journal ({e}); restore the files it lists by hand, then remove it"
        ))
    })?;
    let failed = rollback(&rdir, &j);
    if !failed.is_empty() {
        return Err(fail(format!("could not restore {}", failed.join("; "))));
    }
    remove_journal(root).map_err(|e| fail(format!("failed to remove it: {e}")))?;
    let restored: Vec<String> = j.entries.iter().map(|e| e.path.clone()).collect();
    tracing::warn!(
        files = restored.len(),
        "rolled back an interrupted run: restored {}",
        restored.join(", ")
    );
    Ok(restored)
}

/// Write every change of the plan, or none.
pub fn apply(root: &Root, plan: &Plan) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    if plan.changes.is_empty() {
        return Ok(applied);
    }
    let rdir = open_root(root).map_err(|e| ApplyError::Refused {
        path: root.dir().display().to_string(),
        message: format!("failed to open the root: {e}"),
    })?;
    let (euid, egid) = ids();

    // Preflight: nothing is written unless every target is writable in shape.
    let mut create = Vec::new();
    let mut targets = Vec::new();
    let mut owners = Vec::new();
    for ch in &plan.changes {
        let t = preflight(&rdir, &ch.file.path, &mut create)?;
        let owner = owner_to_set(euid, egid, root.is_host(), (ch.uid, ch.gid))
            .map_err(|m| refused(&ch.file.path, m))?;
        if owner.is_none() {
            applied.warnings.push(format!(
                "{}: not running as root, left owned by {euid}:{egid} instead of {}:{}",
                ch.file.path, ch.uid, ch.gid
            ));
        }
        owners.push(owner.unwrap_or((euid, egid)));
        targets.push(t);
    }
    let mut journal = Journal {
        version: 1,
        started: crate::report::now_rfc3339(),
        entries: Vec::new(),
        created_dirs: create.iter().map(|d| display(d)).collect(),
    };
    let mut journaled = std::collections::HashSet::new();
    for t in &targets {
        if journaled.insert(t.path.as_str()) {
            journal.entries.push(Entry {
                path: t.path.clone(),
                previous: t.previous.clone(),
            });
        }
    }
    write_journal(root, &journal).map_err(|e| ApplyError::Refused {
        path: display(Path::new(JOURNAL)),
        message: format!("failed to write the journal: {e}"),
    })?;

    let result = (|| -> Result<(), (String, String)> {
        for d in &create {
            let (parent, name) = split(d);
            let pdir = open_dir_in(&rdir, &parent).map_err(|e| (display(d), e.to_string()))?;
            rustix::fs::mkdirat(&pdir, name.as_os_str(), Mode::from_raw_mode(0o755))
                .and_then(|()| {
                    rustix::fs::chmodat(
                        &pdir,
                        name.as_os_str(),
                        Mode::from_raw_mode(0o755),
                        AtFlags::empty(),
                    )
                })
                .and_then(|()| {
                    if euid == 0 {
                        rustix::fs::chownat(
                            &pdir,
                            name.as_os_str(),
                            Some(rustix::fs::Uid::ROOT),
                            Some(rustix::fs::Gid::ROOT),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| (display(d), format!("failed to create the directory: {e}")))?;
            applied.created_dirs.push(display(d));
        }
        failpoint("apply:after-write", 0).map_err(|m| (String::from("(journal)"), m))?;
        // In batches: each batch's temp files are written, synced together
        // (see `sync_all`), then renamed in order; every directory written
        // into is synced once, at the end, before the journal goes. Each file
        // is still synced before it replaces the old one, and nothing counts
        // as done before its directory is synced: a crash anywhere leaves the
        // journal, and recovery removes the temp files and restores every
        // entry. A batch bounds the open files (RLIMIT_NOFILE is often 1024).
        const BATCH: usize = 64;
        let items: Vec<_> = plan.changes.iter().zip(&targets).zip(&owners).collect();
        let mut synced_dirs: std::collections::BTreeSet<PathBuf> = Default::default();
        let mut done = 0;
        for batch in items.chunks(BATCH) {
            let mut dirs: std::collections::HashMap<&Path, Dir> = Default::default();
            let mut staged = Vec::with_capacity(batch.len());
            for ((ch, t), owner) in batch {
                if !dirs.contains_key(t.parent.as_path()) {
                    let d = open_dir_in(&rdir, &t.parent).map_err(|e| {
                        (
                            t.path.clone(),
                            format!("cannot open its directory: {}", resolve_hint(&e)),
                        )
                    })?;
                    dirs.insert(&t.parent, d);
                }
                let pdir = &dirs[t.parent.as_path()];
                let f = stage(pdir, &t.name, &ch.content, ch.file.mode.0, Some(**owner))
                    .map_err(|e| (t.path.clone(), e.to_string()))?;
                staged.push(f);
            }
            for (r, ((_, t), _)) in sync_all(&staged).into_iter().zip(batch) {
                r.map_err(|e| (t.path.clone(), step("sync", e).to_string()))?;
            }
            drop(staged);
            for ((ch, t), owner) in batch {
                commit(&dirs[t.parent.as_path()], &t.name)
                    .map_err(|e| (t.path.clone(), e.to_string()))?;
                synced_dirs.insert(t.parent.clone());
                applied.written.push(Written {
                    path: t.path.clone(),
                    sha256: crate::pipeline::sha256_hex(&ch.content),
                    mode: ch.file.mode.0,
                    uid: owner.0,
                    gid: owner.1,
                });
                done += 1;
                failpoint("apply:after-write", done).map_err(|m| (t.path.clone(), m))?;
            }
        }
        // The directories created hold new entries too.
        for d in &create {
            synced_dirs.insert(split(d).0);
        }
        let synced_dirs: Vec<PathBuf> = synced_dirs.into_iter().collect();
        for batch in synced_dirs.chunks(BATCH) {
            let mut fds = Vec::with_capacity(batch.len());
            for d in batch {
                let fd = open_dir_in(&rdir, d)
                    .and_then(|dir| {
                        rustix::fs::openat(
                            &dir,
                            ".",
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(io::Error::from)
                    })
                    .map_err(|e| (display(d), format!("failed to open it to sync it: {e}")))?;
                fds.push(fd);
            }
            for (r, d) in sync_all(&fds).into_iter().zip(batch) {
                r.map_err(|e| (display(d), format!("failed to sync the directory: {e}")))?;
            }
        }
        Ok(())
    })();

    match result {
        Ok(()) => {
            remove_journal(root).map_err(|e| ApplyError::Write {
                path: display(Path::new(JOURNAL)),
                message: format!(
                    "every file was written but the journal could not be removed ({e}); \
                     the next run will roll them back and write them again"
                ),
            })?;
            for w in &applied.warnings {
                tracing::warn!("{w}");
            }
            Ok(applied)
        }
        Err((path, message)) => {
            tracing::error!("failed to write {path}: {message}; rolling back");
            let failed = rollback(&rdir, &journal);
            if failed.is_empty() {
                if let Err(e) = remove_journal(root) {
                    tracing::warn!("rolled back, but failed to remove the journal: {e}");
                }
                Err(ApplyError::Write { path, message })
            } else {
                Err(ApplyError::RollbackFailed {
                    path,
                    message,
                    failed,
                    journal: display(Path::new(JOURNAL)),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
