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
//!   directory fsynced (in batches, and first as an anonymous file: see "Few
//!   barriers"). We do not use cap-tempfile: it creates the file with
//!   `0666 & ~umask` and offers no creation mode, and it has no fallback for
//!   us. The temp name is derived from the target's name
//!   (`.NAME.imprint-tmp`) so that recovery can find and remove it.
//! - **Few barriers.** fsync is most of a run's time on a disk (0.3-1 ms a
//!   round here), and what costs is the number of *sequential* rounds. A
//!   round of two or more files is one `syncfs` per file system
//!   ([`sync_all`]: ~0.4 ms here, where the same files fsynced one by one
//!   take ~2 ms and concurrent fsyncs barely fold). A run that writes up to 64 files has three
//!   rounds (nine before; one more per further 64 files):
//!   1. the journal, written in place, with its directory (and, on a first
//!      run, the new parents of the state directory), and every file's
//!      content in an anonymous temp file (`O_TMPFILE`, in the target's
//!      directory or the nearest existing one) — [`begin_journal`]; then the
//!      directories are created, each temp file is linked in as
//!      `.NAME.imprint-tmp` and renamed over its target — [`apply_pending`];
//!   2. after the unit actions: every directory a file was renamed into or
//!      created in, the files again (linking changed their link count after
//!      their sync), and the seal's temp file — [`finish`];
//!   3. the seal renamed in, the journal unlinked, one fsync of the state
//!      directory — [`finish`].
//!
//!   Where `O_TMPFILE` or linking it fails (a file system without it, no
//!   `/proc` and no `CAP_DAC_READ_SEARCH` on a kernel before 6.10), the
//!   files are named temp files created after round 1 and synced in a round
//!   of their own (four rounds). `report.json` has no barrier of its own
//!   (docs/state.md, "Durability"). A run with nothing to write has rounds
//!   2-3 with the seal alone; a sealed run (77) syncs nothing.
//! - **Why each crash point is safe.** Nothing but the journal (and the
//!   state directory) gets a name before round 1 returns: the anonymous
//!   temp files vanish with a crash. So a journal torn by a crash there
//!   proves the run changed nothing else, and recovery drops it (its
//!   header's length and sha256 tell a torn journal from a damaged one,
//!   which stays an error for the operator). From round 1 on, the journal is
//!   durable and names every target: a crash between the links and renames,
//!   or before round 2 returns, is rolled back by the next run (temp files,
//!   named after their targets, included). Each file's content is synced
//!   before it replaces the old one. The journal's unlink and the seal's
//!   rename share round 3 and POSIX does not order them; the seal's data was
//!   synced in round 2 and round 2 made every file durable, so whichever of
//!   the two reaches the disk first is fine: a seal without the journal is
//!   a finished run; a journal without the new seal is rolled back (the old
//!   seal, if any, still describes the old files); both: the seal records
//!   the journal's random id, and [`recover`] drops a journal that the seal
//!   names instead of rolling back, so a seal never claims files that were
//!   rolled back.
//! - **Why not fewer.** Rounds 2 and 3 stay apart because the journal's
//!   unlink must not reach the disk before the files' directories do, and
//!   the seal's name must not reach it before its data. Round 1 cannot take
//!   the directories' sync: the renames must wait for the journal.
//! - **Unit actions before the directories' sync.** Round 2 waits for the
//!   unit actions so that it can carry the seal's temp file (the seal holds
//!   their results). A unit restarted in between reads the new files from
//!   the page cache, which is what it would read anyway; if the machine
//!   crashes before round 2, the next boot rolls the files back and writes
//!   them again before any unit ordered after imprint starts. Every way out
//!   of the pipeline after apply goes through [`finish`] (without a seal on
//!   an error path: exit 75 keeps the files, durably).
//! - **Owners.** As root, every file gets the planned uid/gid. As non-root,
//!   giving a file away is impossible: under `--root DIR` (tests, image
//!   builds by an unprivileged user) the chown is skipped with a warning and
//!   the real owner is recorded; on the host it is an error.
//! - **Fault injection.** With the cargo feature `failpoints`,
//!   `IMPRINT_FAILPOINT=apply:after-write:N[:error|abort|sleep]` fails,
//!   aborts, or pauses (so a test can `kill -9` it) after the Nth file
//!   (`N = 0`: right after the journal); `apply:commit:N` does the same in
//!   [`finish`]: 1 after round 2, 2 after the seal's rename, 3 after the
//!   journal's unlink (`error` there stops the run at that point, leaving
//!   the disk as a crash would). Without the feature the check compiles to
//!   nothing.

use crate::plan::Plan;
use crate::root::{self, Root};
use base64::Engine as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
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
    /// What [`apply_pending`] leaves to [`finish`]: empty after [`apply`].
    pub pending: Pending,
}

/// What a run that renamed files into place still owes the disk: the
/// directories it renamed into are not synced yet, and its journal is still
/// in place. [`finish`] pays it (with the seal, or without on an error
/// path); until then a crash rolls every file back.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    journal: Option<Journal>,
    /// Root-relative directories holding new entries.
    dirs: Vec<PathBuf>,
    /// Root-relative files that were anonymous temp files: their link count
    /// changed after their sync, so they are synced again with `dirs`.
    files: Vec<PathBuf>,
}

impl Pending {
    /// The id of the journal still in place, which the seal records so that
    /// recovery can tell a finished run from an interrupted one.
    pub fn journal_id(&self) -> Option<&str> {
        self.journal.as_ref().map(|j| j.id.as_str())
    }
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
    /// Random, unique per run: a seal that names it proves the run finished
    /// (absent in version 1 journals).
    #[serde(default)]
    id: String,
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

/// A directory opened so that it can be synced (cap-std opens directories
/// `O_PATH`, which cannot be: reopen `.` readable).
fn open_for_sync(dir: &Dir) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// fsync a directory.
pub(crate) fn fsync_dir(dir: &Dir) -> io::Result<()> {
    rustix::fs::fsync(open_for_sync(dir)?)?;
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

/// Replace `name` in `dir` with a temp file renamed over it, with no fsync
/// at all: for `report.json`, which is diagnostic and rewritten by every run
/// (docs/state.md, "Durability").
pub(crate) fn replace_unsynced(
    dir: &Dir,
    name: &OsStr,
    content: &[u8],
    mode: u32,
) -> io::Result<()> {
    drop(stage(dir, name, content, mode, None)?);
    commit(dir, name).inspect_err(|_| {
        let _ = unlink_quiet(dir, &temp_name(name));
    })
}

/// Make every file durable. Results in the order of `files`.
///
/// Two or more files are made durable with one `syncfs` per file system
/// they live on, not one fsync each. On this project's measuring machine
/// (ext4 on a virtual disk) eleven fsyncs one after the other take ~2.1 ms
/// and concurrent ones barely fold; one `syncfs` over the same files takes
/// ~0.4 ms (docs/benchmarks.md). `syncfs` writes back every dirty page and
/// inode of the file system and commits its journal with a cache flush,
/// which covers what fsync of each file and directory would, anonymous
/// (`O_TMPFILE`) files included, on the file systems [`syncfs_is_whole`]
/// names; since Linux 5.8 it also reports a writeback error of the file
/// system. Its price is that it also writes
/// back other programs' dirty data on that file system: at first boot
/// there is little, and it is never wrong, only slower. When `syncfs`
/// fails, each file is fsynced (concurrently: the kernel folds some of
/// them), so that an error names the file it belongs to.
fn sync_all<T: AsFd + Sync>(files: &[T]) -> Vec<io::Result<()>> {
    let sync = |f: &T| rustix::fs::fsync(f).map_err(io::Error::from);
    if files.len() < 2 || files.first().is_some_and(on_ram_fs) {
        return files.iter().map(sync).collect();
    }
    let mut results: Vec<Option<io::Result<()>>> = files.iter().map(|_| None).collect();
    // Group by file system (st_dev); one syncfs per group.
    let mut devices: Vec<(u64, Vec<usize>)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match rustix::fs::fstat(f) {
            Ok(st) => {
                #[allow(clippy::unnecessary_cast)] // `st_dev`'s type differs between targets
                let dev = st.st_dev as u64;
                match devices.iter_mut().find(|(d, _)| *d == dev) {
                    Some((_, v)) => v.push(i),
                    None => devices.push((dev, vec![i])),
                }
            }
            Err(_) => results[i] = Some(sync(f)),
        }
    }
    let mut fallback = Vec::new();
    for (_, members) in &devices {
        let first = &files[members[0]];
        if syncfs_is_whole(first) && rustix::fs::syncfs(first).is_ok() {
            for &i in members {
                results[i] = Some(Ok(()));
            }
        } else {
            fallback.extend(members.iter().copied());
        }
    }
    if !fallback.is_empty() {
        let picked: Vec<&T> = fallback.iter().map(|&i| &files[i]).collect();
        for (i, r) in fallback.iter().zip(fsync_concurrently(&picked)) {
            results[*i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("not synced"))))
        .collect()
}

/// Whether `syncfs` on `f`'s file system is known to make its files durable
/// as fsync would: ext2/3/4, xfs and btrfs commit their journal (or
/// transaction) and flush the device in `sync_fs`. Elsewhere (FUSE, network
/// and pseudo file systems) `syncfs` may do less than fsync, so each file is
/// fsynced.
#[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets
fn syncfs_is_whole<T: AsFd>(f: &T) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xef53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
    rustix::fs::fstatfs(f).is_ok_and(|s| {
        matches!(
            s.f_type as i64,
            EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC | BTRFS_SUPER_MAGIC
        )
    })
}

/// fsync every file, several at a time: the kernel folds some concurrent
/// fsyncs into one journal commit (ext4, xfs), where one after the other
/// each waits for its own. Results in the order of `files`.
fn fsync_concurrently<T: AsFd + Sync>(files: &[&T]) -> Vec<io::Result<()>> {
    const WORKERS: usize = 8;
    let sync = |f: &&T| rustix::fs::fsync(*f).map_err(io::Error::from);
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

/// Whether `f` lives on tmpfs or ramfs, where fsync does nothing: a batch
/// there is synced by the calling thread alone (threads would only add their
/// start-up and scheduling cost). The first file speaks for its batch; a
/// wrong guess only costs time, never durability.
#[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets
fn on_ram_fs<T: AsFd>(f: &T) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    rustix::fs::fstatfs(f).is_ok_and(|s| matches!(s.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC))
}

/// Create `var/lib/imprint` (0700; missing parents 0755) and open it.
pub(crate) fn state_dir(root: &Root) -> io::Result<Dir> {
    let rdir = open_root(root)?;
    state_dir_created(&rdir, &mut Vec::new())
}

/// [`state_dir`] from an open root, pushing what it created to `created`.
/// A state directory that was already there (made by a package or an
/// image build, say) is brought to 0700, owned by root when imprint runs
/// as root (SPEC §5): [`secure_dir`].
fn state_dir_created(rdir: &Dir, created: &mut Vec<PathBuf>) -> io::Result<Dir> {
    let sd = ensure_dirs_created(rdir, Path::new(root::STATE_DIR), 0o700, created)?;
    secure_dir(&sd, 0o700).map_err(|e| step("make it private (0700, root's)", e))?;
    Ok(sd)
}

/// Give an open directory exactly `mode`, and root's ownership when running
/// as root, through its descriptor: the directory was opened inside the
/// root (cap-std: a symlink out of it is refused), and nothing is looked
/// up again by name. A no-op when it already is so.
fn secure_dir(dir: &Dir, mode: u32) -> io::Result<()> {
    let fd = open_for_sync(dir)?;
    let st = rustix::fs::fstat(&fd)?;
    let chown = rustix::process::geteuid().is_root() && (st.st_uid != 0 || st.st_gid != 0);
    if chown {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::ROOT),
            Some(rustix::fs::Gid::ROOT),
        )?;
    }
    // After a chown, which may clear set-id bits.
    if chown || st.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    Ok(())
}

/// Create every missing directory of `rel` (the last one with `last_mode`,
/// the others 0755) and open it.
pub(crate) fn ensure_dirs(rdir: &Dir, rel: &Path, last_mode: u32) -> io::Result<Dir> {
    ensure_dirs_created(rdir, rel, last_mode, &mut Vec::new())
}

/// [`ensure_dirs`], pushing each directory it created (root-relative) to
/// `created`: their parents must be synced before anything inside them
/// counts as durable.
fn ensure_dirs_created(
    rdir: &Dir,
    rel: &Path,
    last_mode: u32,
    created: &mut Vec<PathBuf>,
) -> io::Result<Dir> {
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
                created.push(comps[..=i].iter().collect());
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

/// The journal's first line: `imprint-journal LEN SHA256` of the JSON body
/// that follows. The journal is written in place (not renamed in), so a
/// crash before its sync can leave it torn; the header tells a torn journal
/// (nothing after it happened: see the module docs) from a damaged one.
const JOURNAL_MAGIC: &str = "imprint-journal";

fn encode_journal(j: &Journal) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(j).map_err(io::Error::other)?;
    let mut out = format!(
        "{JOURNAL_MAGIC} {} {}\n",
        body.len(),
        crate::pipeline::sha256_hex(&body)
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// A journal as found on disk.
#[derive(Debug)]
enum Found {
    /// Complete: roll it back (or drop it, if the seal names it).
    Valid(Journal),
    /// Torn by a crash before its sync returned: the run changed nothing
    /// else yet. Why, for the log.
    Incomplete(&'static str),
}

/// Read a journal's bytes. `Err` is damage a crash cannot explain (the
/// operator restores by hand); torn writes (a prefix, or a tail of NUL
/// bytes where the data never reached the disk) are [`Found::Incomplete`].
fn decode_journal(bytes: &[u8]) -> Result<Found, String> {
    let nul_tail = |b: &[u8]| b.iter().all(|&c| c == 0);
    if nul_tail(bytes) {
        return Ok(Found::Incomplete("it is empty"));
    }
    if bytes.first() == Some(&b'{') {
        // Version 1 (before 0.2): renamed into place, never torn.
        return serde_json::from_slice(bytes)
            .map(Found::Valid)
            .map_err(|e| e.to_string());
    }
    let magic = JOURNAL_MAGIC.as_bytes();
    let Some(nl) = bytes.iter().position(|&c| c == b'\n') else {
        let head = &bytes[..bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len())];
        let torn = head.starts_with(magic) || magic.starts_with(head);
        return if torn && nul_tail(&bytes[head.len()..]) {
            Ok(Found::Incomplete("its header is cut short"))
        } else {
            Err("it does not start with an imprint journal header".into())
        };
    };
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "its header is not text")?;
    let mut words = header.split(' ');
    let (Some(m), Some(len), Some(sha), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("bad header {header:?}"));
    };
    let len: usize = len
        .parse()
        .map_err(|_| format!("bad length in its header {header:?}"))?;
    if m != JOURNAL_MAGIC {
        return Err(format!("bad header {header:?}"));
    }
    let body = &bytes[nl + 1..];
    if body.len() < len {
        return Ok(Found::Incomplete("it is shorter than its header says"));
    }
    let (body, rest) = body.split_at(len);
    if !nul_tail(rest) {
        return Err("it is longer than its header says".into());
    }
    if crate::pipeline::sha256_hex(body) != sha {
        // serde_json never writes a NUL byte: NULs are blocks whose data
        // never reached the disk.
        return if body.contains(&0) {
            Ok(Found::Incomplete("part of it never reached the disk"))
        } else {
            Err("its checksum does not match".into())
        };
    }
    serde_json::from_slice(body)
        .map(Found::Valid)
        .map_err(|e| e.to_string())
}

/// A random id for this run's journal (std's per-process random SipHash
/// keys over the time and pid: unique, not a secret).
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

/// Sync `fds` together; the first failure, with what it was.
fn sync_batch(fds: &[OwnedFd], what: &[String]) -> Result<(), (String, io::Error)> {
    for (r, w) in sync_all(fds).into_iter().zip(what) {
        r.map_err(|e| (w.clone(), e))?;
    }
    Ok(())
}

/// Open every root-relative directory in `dirs` for syncing.
fn open_dirs(rdir: &Dir, dirs: &[PathBuf]) -> Result<Vec<OwnedFd>, (String, io::Error)> {
    dirs.iter()
        .map(|d| {
            open_dir_in(rdir, d)
                .and_then(|d| open_for_sync(&d))
                .map_err(|e| (display(d), e))
        })
        .collect()
}

/// The parents of directories just created (each one's entry lives there),
/// plus `also`; deduplicated.
fn parents_of(created: &[PathBuf], also: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = also.iter().map(|p| p.to_path_buf()).collect();
    for c in created {
        let p = split(c).0;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// One file to write: the change, its checked target, the owner to give it.
type Item<'a> = ((&'a crate::plan::FileChange, &'a Target), &'a (u32, u32));

/// The first batch's files as anonymous temp files (`O_TMPFILE`), created
/// with the final permission bits, chowned, chmodded, written, not synced:
/// round 1 syncs them with the journal, and they get a name
/// ([`link_anonymous`]) only after it. Each is opened in its directory, or
/// in the nearest one that exists when apply creates its directory (same
/// file system). `None` when any step fails (a file system or kernel without
/// `O_TMPFILE`, ...): the caller takes the named path, where a real error
/// shows again with its usual message.
fn stage_anonymous(
    rdir: &Dir,
    items: &[Item<'_>],
    create: &[PathBuf],
) -> Option<Vec<std::fs::File>> {
    let mut out = Vec::with_capacity(items.len());
    for ((ch, t), owner) in items {
        let dir = t
            .parent
            .ancestors()
            .filter(|a| !create.iter().any(|c| c == a))
            .find_map(|a| open_dir_in(rdir, a).ok())?;
        let mode = ch.file.mode.0;
        let fd = rustix::fs::openat(
            &dir,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )
        .ok()?;
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
        )
        .ok()?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).ok()?;
        let mut f = std::fs::File::from(fd);
        f.write_all(&ch.content).ok()?;
        out.push(f);
    }
    Some(out)
}

/// Give an anonymous temp file the temp name beside its target (then
/// [`commit`] renames it over the target): `linkat(AT_EMPTY_PATH)`, else
/// through `/proc/self/fd` (without `CAP_DAC_READ_SEARCH` on kernels before
/// 6.10).
fn link_anonymous(f: &std::fs::File, dir: &Dir, name: &OsStr) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let tmp = temp_name(name);
    unlink_quiet(dir, &tmp)?;
    match rustix::fs::linkat(f, "", dir, tmp.as_os_str(), AtFlags::EMPTY_PATH) {
        Ok(()) => Ok(()),
        Err(_) => {
            let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
            rustix::fs::linkat(
                rustix::fs::CWD,
                proc.as_str(),
                dir,
                tmp.as_os_str(),
                AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        }
    }
}

/// The first barrier of a run: the journal, written in place, synced in one
/// batch with its directory (and the new parents of that directory, on a
/// first run). Nothing else in the root changes before this returns, which
/// is what makes a torn journal safe to drop.
fn begin_journal(root: &Root, j: &Journal, extra: &[(String, &std::fs::File)]) -> io::Result<()> {
    let rdir = open_root(root)?;
    let mut created = Vec::new();
    let state = Path::new(root::STATE_DIR);
    let sd = state_dir_created(&rdir, &mut created)?;
    let bytes = encode_journal(j)?;
    let name = OsStr::new("journal.json");
    let fd = rustix::fs::openat(
        &sd,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| match e {
        rustix::io::Errno::EXIST => io::Error::other(
            "a journal of an interrupted run is in the way (the next `imprint run` rolls it back)",
        ),
        e => step("create it", e.into()),
    })?;
    let r = (|| -> Result<(), (String, io::Error)> {
        let mut f = std::fs::File::from(fd);
        f.write_all(&bytes)
            .map_err(|e| (display(Path::new(JOURNAL)), e))?;
        let dirs = parents_of(&created, &[state]);
        let mut fds = vec![OwnedFd::from(f)];
        fds.extend(open_dirs(&rdir, &dirs)?);
        let mut what = vec![display(Path::new(JOURNAL))];
        what.extend(dirs.iter().map(|d| display(d)));
        for (w, f) in extra {
            fds.push(f.as_fd().try_clone_to_owned().map_err(|e| (w.clone(), e))?);
            what.push(w.clone());
        }
        sync_batch(&fds, &what)
    })();
    r.map_err(|(what, e)| {
        // Not synced: nothing relies on it yet.
        let _ = unlink_quiet(&sd, name);
        io::Error::new(e.kind(), format!("failed to sync {what}: {e}"))
    })
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

/// Finish off a run that crashed part-way (journal left behind): roll its
/// files back, unless the seal names its journal (the run finished; only
/// the journal's removal was lost), or the journal is torn (the run was
/// interrupted before it changed anything). Returns the paths restored.
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
    let j = match decode_journal(&bytes) {
        Ok(Found::Valid(j)) => j,
        Ok(Found::Incomplete(why)) => {
            remove_journal(root).map_err(|e| fail(format!("failed to remove it: {e}")))?;
            tracing::warn!(
                "removed the journal of an interrupted run ({why}): that run stopped \
                 before it changed any file"
            );
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(fail(format!(
            "it is not a valid journal ({e}); restore the files it lists by hand, then remove it"
        )))
        }
    };
    let sealed = !j.id.is_empty()
        && matches!(crate::seal::read(root), Ok(Some(s)) if s.journal.as_deref() == Some(j.id.as_str()));
    if sealed {
        remove_journal(root).map_err(|e| fail(format!("failed to remove it: {e}")))?;
        tracing::info!("removed the journal of a run that finished and sealed");
        return Ok(Vec::new());
    }
    let failed = rollback(&rdir, &j);
    if !failed.is_empty() {
        return Err(fail(format!("could not restore {}", failed.join("; "))));
    }
    // A seal's temp file, if the run got that far (synced, never renamed).
    if let Ok(sd) = rdir.open_dir(root::STATE_DIR) {
        let _ = unlink_quiet(&sd, &temp_name(OsStr::new(crate::seal::FILE)));
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

/// Write every change of the plan, or none, durably: [`apply_pending`] then
/// [`finish`] without a seal.
pub fn apply(root: &Root, plan: &Plan) -> Result<Applied, crate::Error> {
    let mut applied = apply_pending(root, plan)?;
    finish(root, &std::mem::take(&mut applied.pending), None)?;
    Ok(applied)
}

/// Write every change of the plan, or none: the journal (synced), then each
/// file's temp file (synced), renamed into place. The directories are not
/// synced and the journal stays: [`finish`] does both, once the unit
/// actions are done, in the same batch as the seal's temp file.
pub fn apply_pending(root: &Root, plan: &Plan) -> Result<Applied, ApplyError> {
    apply_with(root, plan, true)
}

/// [`apply_pending`]; `anonymous: false` never tries `O_TMPFILE` (tests of
/// the named path, which is taken anyway where `O_TMPFILE` fails).
fn apply_with(root: &Root, plan: &Plan, anonymous: bool) -> Result<Applied, ApplyError> {
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
        version: 2,
        id: run_id(),
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
    // A batch bounds the open files (RLIMIT_NOFILE is often 1024).
    const BATCH: usize = 64;
    let items: Vec<_> = plan.changes.iter().zip(&targets).zip(&owners).collect();
    // The first batch as anonymous temp files, synced in round 1 with the
    // journal: one round fewer (module docs, "Few barriers").
    let first = items.len().min(BATCH);
    let mut anon = if anonymous {
        stage_anonymous(&rdir, &items[..first], &create)
    } else {
        None
    };
    let extra: Vec<(String, &std::fs::File)> = anon
        .iter()
        .flatten()
        .zip(&targets)
        .map(|(f, t)| (t.path.clone(), f))
        .collect();
    begin_journal(root, &journal, &extra).map_err(|e| ApplyError::Refused {
        path: display(Path::new(JOURNAL)),
        message: format!("failed to write the journal: {e}"),
    })?;
    drop(extra);
    let mut relinked = Vec::new();

    let result = (|| -> Result<Vec<PathBuf>, (String, String)> {
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
        // into is synced once, by `finish`, before the journal goes. Each
        // file is still synced before it replaces the old one, and nothing
        // counts as done before its directory is synced: a crash anywhere
        // leaves the journal, and recovery removes the temp files and
        // restores every entry. A batch bounds the open files
        // (RLIMIT_NOFILE is often 1024).
        let mut synced_dirs: std::collections::BTreeSet<PathBuf> = Default::default();
        let mut done = 0;
        for (b, batch) in items.chunks(BATCH).enumerate() {
            let mut dirs: std::collections::HashMap<&Path, Dir> = Default::default();
            for ((_, t), _) in batch {
                if !dirs.contains_key(t.parent.as_path()) {
                    let d = open_dir_in(&rdir, &t.parent).map_err(|e| {
                        (
                            t.path.clone(),
                            format!("cannot open its directory: {}", resolve_hint(&e)),
                        )
                    })?;
                    dirs.insert(&t.parent, d);
                }
            }
            // The first batch, synced in round 1: named now. If the first
            // link fails (no way to link an anonymous file here), nothing
            // is named yet and the batch takes the named path.
            let mut linked = b == 0 && anon.is_some();
            if let (true, Some(files)) = (linked, anon.as_ref()) {
                for (i, (f, ((_, t), _))) in files.iter().zip(batch).enumerate() {
                    match link_anonymous(f, &dirs[t.parent.as_path()], &t.name) {
                        Ok(()) => relinked.push(Root::rel(&t.path).unwrap_or_default()),
                        Err(e) if i == 0 => {
                            tracing::debug!("O_TMPFILE link failed ({e}); named temp files");
                            linked = false;
                            break;
                        }
                        Err(e) => {
                            return Err((t.path.clone(), step("name the temp file", e).to_string()))
                        }
                    }
                }
            }
            anon = None;
            if !linked {
                let mut staged = Vec::with_capacity(batch.len());
                for ((ch, t), owner) in batch {
                    let pdir = &dirs[t.parent.as_path()];
                    let f = stage(pdir, &t.name, &ch.content, ch.file.mode.0, Some(**owner))
                        .map_err(|e| (t.path.clone(), e.to_string()))?;
                    staged.push(f);
                }
                for (r, ((_, t), _)) in sync_all(&staged).into_iter().zip(batch) {
                    r.map_err(|e| (t.path.clone(), step("sync", e).to_string()))?;
                }
            }
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
        Ok(synced_dirs.into_iter().collect())
    })();

    match result {
        Ok(dirs) => {
            for w in &applied.warnings {
                tracing::warn!("{w}");
            }
            applied.pending = Pending {
                journal: Some(journal),
                dirs,
                files: relinked,
            };
            Ok(applied)
        }
        Err((path, message)) => Err(roll_back(root, &rdir, &journal, path, message)),
    }
}

/// A write failed part-way (or its durability is unknown): restore every
/// journal entry, remove the journal; the error to return.
fn roll_back(
    root: &Root,
    rdir: &Dir,
    journal: &Journal,
    path: String,
    message: String,
) -> ApplyError {
    tracing::error!("failed to write {path}: {message}; rolling back");
    let failed = rollback(rdir, journal);
    if failed.is_empty() {
        if let Err(e) = remove_journal(root) {
            tracing::warn!("rolled back, but failed to remove the journal: {e}");
        }
        ApplyError::Write { path, message }
    } else {
        ApplyError::RollbackFailed {
            path,
            message,
            failed,
            journal: display(Path::new(JOURNAL)),
        }
    }
}

/// The end of a run: make what [`apply_pending`] renamed durable, put the
/// seal (`(file name, bytes)`) in place, remove the journal. Two rounds of
/// syncs, whatever the number of files:
///
/// 1. one batch: every directory a file was renamed into (or created in),
///    the files linked from anonymous temp files (their link count changed
///    after their first sync), the seal's temp file, and the parents of a
///    state directory created just now;
/// 2. the seal renamed over the old one, the journal unlinked, then one
///    fsync of the state directory.
///
/// The seal names the journal it replaces ([`Pending::journal_id`]): if the
/// crash comes after the seal's rename reached the disk but before the
/// journal's removal did, [`recover`] sees that the run finished and drops
/// the journal instead of rolling back. The other orders need nothing: a
/// journal without that seal is rolled back (the files are fully old again,
/// the next run writes them again); no journal and no new seal means every
/// file is durable and the next run seals it.
///
/// A directory that cannot be synced rolls every file back (exit 73, as a
/// failed write). A seal that cannot be written is a state error (exit 73)
/// that keeps the files, as before.
pub fn finish(
    root: &Root,
    pending: &Pending,
    seal: Option<(&str, &[u8])>,
) -> Result<(), crate::Error> {
    use crate::state::StateError;
    if pending.journal.is_none()
        && pending.dirs.is_empty()
        && pending.files.is_empty()
        && seal.is_none()
    {
        return Ok(());
    }
    let state_path = crate::state::dir(root);
    let state_err = |what: &'static str, path: PathBuf| {
        move |source: io::Error| StateError::Io { what, path, source }
    };
    let rdir = open_root(root).map_err(state_err("open the root", root.dir().into()))?;
    let files_failed = |(path, e): (String, io::Error)| -> crate::Error {
        let message = format!("failed to sync it: {e}");
        match &pending.journal {
            Some(j) => roll_back(root, &rdir, j, path, message).into(),
            None => ApplyError::Write { path, message }.into(),
        }
    };
    let mut created = Vec::new();
    let sd =
        state_dir_created(&rdir, &mut created).map_err(state_err("create", state_path.clone()))?;

    // The run's round 2 (module docs, "Few barriers").
    let mut fds = open_dirs(&rdir, &pending.dirs).map_err(files_failed)?;
    let mut what: Vec<String> = pending.dirs.iter().map(|d| display(d)).collect();
    for f in &pending.files {
        let fd = rdir.open(f).map_err(|e| files_failed((display(f), e)))?;
        fds.push(fd.into_std().into());
        what.push(display(f));
    }
    let files = fds.len();
    let parents = parents_of(&created, &[]);
    fds.extend(open_dirs(&rdir, &parents).map_err(|(p, e)| state_err("open", p.into())(e))?);
    what.extend(parents.iter().map(|d| display(d)));
    let seal_path = seal.map(|(name, _)| state_path.join(name));
    let mut seal_err = None;
    if let Some((name, bytes)) = seal {
        match stage(&sd, OsStr::new(name), bytes, 0o600, None) {
            Ok(f) => {
                fds.push(f.into());
                what.push(String::new());
            }
            Err(e) => seal_err = Some(e),
        }
    }
    let results = sync_all(&fds);
    drop(fds);
    let mut results = results.into_iter().zip(what);
    for (r, w) in results.by_ref().take(files) {
        if let Err(e) = r {
            if let Some((name, _)) = seal {
                let _ = unlink_quiet(&sd, &temp_name(OsStr::new(name)));
            }
            return Err(files_failed((w, e)));
        }
    }
    let mut parents_err = None;
    for (r, w) in results.by_ref().take(parents.len()) {
        if let Err(e) = r {
            parents_err.get_or_insert(StateError::Io {
                what: "sync",
                path: w.into(),
                source: e,
            });
        }
    }
    let fp = |n| {
        failpoint("apply:commit", n).map_err(|m| StateError::Io {
            what: "commit",
            path: state_path.clone(),
            source: io::Error::other(m),
        })
    };
    fp(1)?;

    // The run's round 3.
    if let Some((name, _)) = seal {
        let name = OsStr::new(name);
        let r = match (seal_err.take(), results.next()) {
            (Some(e), _) => Err(e),
            (None, Some((Err(e), _))) => Err(step("sync", e)),
            (None, _) => commit(&sd, name),
        };
        if let Err(e) = r {
            let _ = unlink_quiet(&sd, &temp_name(name));
            seal_err = Some(e);
        }
    }
    fp(2)?;
    if pending.journal.is_some() {
        unlink_quiet(&sd, OsStr::new("journal.json")).map_err(|e| ApplyError::Write {
            path: display(Path::new(JOURNAL)),
            message: format!(
                "every file was written but the journal could not be removed ({e}); \
                 the next run will roll them back and write them again"
            ),
        })?;
    }
    fp(3)?;
    fsync_dir(&sd).map_err(state_err("sync", state_path.clone()))?;
    if let Some(e) = parents_err {
        return Err(e.into());
    }
    match (seal_err, seal_path) {
        (Some(e), Some(path)) => Err(StateError::Io {
            what: "write",
            path,
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
