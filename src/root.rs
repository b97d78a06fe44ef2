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
