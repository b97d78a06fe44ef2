//! The root every path goes through.
//!
//! `Root::host()` is `/` (production); `Root::at(dir)` is `--root DIR` for
//! tests, demos and image builds. Absolute paths in the manifest and in
//! user-data are always *inside* the root; confinement of writes (no `..`, no
//! symlink escaping the root) is enforced by `apply` through cap-std, and
//! `Root::rel` refuses `..` up front so pure stages can reject such paths
//! early with a clear error.

use std::path::{Component, Path, PathBuf};

/// The well-known paths, relative to the root.
pub const MANIFEST: &str = "etc/imprint/imprint.yaml";
pub const TEMPLATES: &str = "etc/imprint/templates";
pub const STATE_DIR: &str = "var/lib/imprint";
pub const RUN_DIR: &str = "run/imprint";
pub const CMDLINE: &str = "proc/cmdline";
pub const DMI_DIR: &str = "sys/class/dmi/id";

#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    host: bool,
}

impl Root {
    /// The machine itself: `/`. Restarts are real.
    pub fn host() -> Root {
        Root {
            dir: PathBuf::from("/"),
            host: true,
        }
    }

    /// A sandbox root (`--root DIR`). Restarts are only recorded.
    pub fn at(dir: impl Into<PathBuf>) -> Root {
        let dir = dir.into();
        let host = dir == Path::new("/");
        Root { dir, host }
    }

    /// Whether this is the real machine (`/`), where units are really restarted.
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `path` (absolute or relative, as the manifest or user-data wrote it)
    /// as a path relative to the root, or `None` if it has `..` or is empty.
    pub fn rel(path: &str) -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in Path::new(path).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => out.push(n),
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        (!out.as_os_str().is_empty()).then_some(out)
    }

    /// The host path of `path` inside the root, for reading. Writes go through
    /// `apply`'s confined directory handle instead.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        let p = p.strip_prefix("/").unwrap_or(p);
        self.dir.join(p)
    }

    /// A handle that opens paths inside the root without leaving it:
    /// `openat2(RESOLVE_IN_ROOT)`, so that a symlink in the image (`/lib ->
    /// /usr/lib`, `/etc/imprint/imprint.yaml -> /usr/share/app/...`)
    /// resolves in the image, the way it will on the booted machine, never
    /// on the host running `imprint --root`. Where `openat2` is missing
    /// (Linux < 5.6, some sandboxes), cap-std's confined opens, which refuse
    /// what would leave the root, absolute symlinks included. `None` when
    /// the root itself cannot be opened.
    pub fn confined(&self) -> Option<Box<dyn Confined>> {
        if let Some(r) = InRoot::open(&self.dir) {
            return Some(Box::new(r));
        }
        cap_std::fs::Dir::open_ambient_dir(&self.dir, cap_std::ambient_authority())
            .ok()
            .map(|d| Box::new(Beneath(d)) as Box<dyn Confined>)
    }

    /// The whole of the regular file `path` inside the root. On the host a
    /// plain read; under `--root DIR` through [`Root::confined`], so the
    /// manifest and templates an image build validates are the image's,
    /// whatever symlinks lead there.
    pub fn read(&self, path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        let p = path.as_ref();
        if self.host {
            return std::fs::read(self.join(p));
        }
        let open = self.confined().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot open the root {}", self.dir.display()),
            )
        })?;
        let (mut f, size) = open.regular(p.strip_prefix("/").unwrap_or(p))?;
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Opens paths relative to a root without leaving it ([`Root::confined`]).
pub trait Confined {
    /// A directory's identity (device, inode) and the names in it.
    fn list(&self, rel: &Path) -> Option<((u64, u64), Vec<String>)>;
    /// A regular file (not a directory, FIFO or device), opened for
    /// reading, and its size.
    fn regular(&self, rel: &Path) -> std::io::Result<(std::fs::File, u64)>;
}

fn not_regular(rel: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{} is not a regular file", rel.display()),
    )
}

/// `openat2(RESOLVE_IN_ROOT)`: symlinks, absolute ones too, resolve inside
/// the root (a chroot's view, without chroot).
struct InRoot(std::os::fd::OwnedFd);

impl InRoot {
    const RESOLVE: rustix::fs::ResolveFlags =
        rustix::fs::ResolveFlags::IN_ROOT.union(rustix::fs::ResolveFlags::NO_MAGICLINKS);

    fn open(dir: &Path) -> Option<InRoot> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        // Probe: openat2 exists and is allowed here.
        rustix::fs::openat2(
            &fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            Self::RESOLVE,
        )
        .ok()?;
        Some(InRoot(fd))
    }

    fn at(&self, rel: &Path, flags: rustix::fs::OFlags) -> std::io::Result<std::os::fd::OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        Ok(rustix::fs::openat2(
            &self.0,
            rel,
            flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            Self::RESOLVE,
        )?)
    }
}

impl Confined for InRoot {
    fn list(&self, rel: &Path) -> Option<((u64, u64), Vec<String>)> {
        use rustix::fs::OFlags;
        let fd = self.at(rel, OFlags::RDONLY | OFlags::DIRECTORY).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        let names = rustix::fs::Dir::new(fd)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect();
        Some(((st.st_dev, st.st_ino), names))
    }

    fn regular(&self, rel: &Path) -> std::io::Result<(std::fs::File, u64)> {
        use rustix::fs::OFlags;
        // NONBLOCK: opening a FIFO must not hang the run.
        let fd = self.at(rel, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd)?;
        if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
            return Err(not_regular(rel));
        }
        // Reads of a regular file never block: back to blocking mode is
        // not needed.
        let size = u64::try_from(st.st_size).unwrap_or(0);
        Ok((std::fs::File::from(fd), size))
    }
}

/// The fallback: cap-std's confined opens (absolute symlinks refused).
pub(crate) struct Beneath(pub(crate) cap_std::fs::Dir);

impl Confined for Beneath {
    fn list(&self, rel: &Path) -> Option<((u64, u64), Vec<String>)> {
        use cap_std::fs::MetadataExt as _;
        let d = self.0.open_dir(rel).ok()?;
        let md = d.dir_metadata().ok()?;
        let names = d
            .entries()
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        Some(((md.dev(), md.ino()), names))
    }

    fn regular(&self, rel: &Path) -> std::io::Result<(std::fs::File, u64)> {
        let md = self.0.metadata(rel)?;
        if !md.is_file() {
            return Err(not_regular(rel));
        }
        Ok((self.0.open(rel)?.into_std(), md.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_refuses_parent() {
        assert_eq!(Root::rel("/etc/x").unwrap(), PathBuf::from("etc/x"));
        assert_eq!(Root::rel("etc/./x").unwrap(), PathBuf::from("etc/x"));
        assert!(Root::rel("/etc/../../x").is_none());
        assert!(Root::rel("/").is_none());
    }

    #[test]
    fn join_stays_under_root() {
        let r = Root::at("/tmp/r");
        assert_eq!(r.join("/etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert!(!r.is_host());
        assert!(Root::host().is_host());
    }
}
