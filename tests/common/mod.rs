//! Shared helpers for black-box tests of the binary: a temp root, a scrubbed
//! environment, a full-tree hash to prove "nothing changed".
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, with a scrubbed environment (no proxies, no
/// metadata URL, no journal): only PATH and LANG survive.
pub fn imprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imprint"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8");
    c
}

/// Run and return the output; panics with both streams on a spawn error.
pub fn run(c: &mut Command) -> Output {
    c.output().expect("failed to spawn imprint")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary root directory, removed on drop.
pub struct TempRoot {
    pub dir: tempfile::TempDir,
}

impl TempRoot {
    pub fn new() -> TempRoot {
        TempRoot {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of an absolute path inside the root.
    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p.trim_start_matches('/'))
    }

    /// Write a file inside the root, creating parents.
    pub fn write(&self, p: &str, content: impl AsRef<[u8]>) {
        let path = self.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
    }
}

/// Copy a directory tree (fixtures into a temp root).
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dst = to.join(rel);
        let md = std::fs::symlink_metadata(&entry).unwrap();
        if md.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else if md.file_type().is_symlink() {
            let t = std::fs::read_link(&entry).unwrap();
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(t, &dst).unwrap();
        } else {
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &dst).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            let mut kids: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
    }
    out
}

/// The names of the entries in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A hash of every path, type, mode, owner, symlink target and file content
/// under `dir`, skipping paths (relative, e.g. `run/imprint`) in `skip`.
/// Equal hashes: the tree is byte-for-byte unchanged.
pub fn tree_hash(dir: &Path, skip: &[&str]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for p in walk(dir) {
        let rel = p.strip_prefix(dir).unwrap();
        if skip.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        h.update(rel.to_string_lossy().as_bytes());
        h.update(format!(" {:o} {} {}\n", md.mode(), md.uid(), md.gid()).as_bytes());
        if md.file_type().is_symlink() {
            h.update(std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
        } else if md.is_file() {
            h.update(std::fs::read(&p).unwrap());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The run lock of `root` (`/run/imprint/lock`) held by another process,
/// flock(1), as by a concurrent run; released when dropped. Not an
/// in-process lock: every child another test thread spawns shares this
/// process's open files from its fork to its exec (close-on-exec acts only
/// then), so a lock dropped here can stay held for that instant, and a run
/// started right after the drop could find it still taken.
pub struct HeldLock(std::process::Child);

pub fn hold_run_lock(root: &Path) -> HeldLock {
    use std::io::BufRead as _;
    let path = root.join("run/imprint/lock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // -o: the lock's descriptor is flock's own, not the shell's; the shell
    // waits on stdin, which Drop closes.
    let mut child = Command::new("flock")
        .arg("-o")
        .arg(&path)
        .arg("-c")
        .arg("echo held; read _")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1) (util-linux)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n", "flock did not take {}", path.display());
    HeldLock(child)
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Whether this kernel lets us open paths with RESOLVE_IN_ROOT (Linux
/// 5.6+), the only way an absolute symlink can be followed inside a root
/// (cap-std's fallback refuses it).
pub fn openat2_works() -> bool {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    rustix::fs::openat2(
        rustix::fs::CWD,
        ".",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .is_ok()
}
