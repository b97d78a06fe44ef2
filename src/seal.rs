//! Stage 9, seal: record what was done, keyed by instance-id; from then on
//! imprint exits 77 at once on this instance (SPEC §5). Never holds a secret:
//! only the instance-id, hashes, modes, owners and unit names.
//!
//! `/var/lib/imprint/sealed` is JSON, written atomically (0600 in the 0700
//! state directory), so a crash leaves the old seal or the new one, never
//! half of one. A seal that cannot be parsed is an error (exit 65) that
//! names the file and says to run `imprint clean`: imprint never guesses
//! whether a damaged seal meant "configured".
//!
//! A run's seal is written by [`commit`], inside `apply::finish`: its temp
//! file is synced in the same batch as the files the run wrote and their
//! directories (after that batch every file is durable), then it is renamed in
//! while the journal is unlinked, and one fsync of the state directory makes
//! both durable. POSIX does not order that rename and that unlink, so the
//! seal records the id of the journal it replaces (`journal`): recovery,
//! which runs before the seal is checked, drops a journal that the seal
//! names (the run finished) and rolls back any other, so a seal never claims
//! an instance configured whose files were rolled back (apply.rs's module
//! docs go through every crash point).

use crate::apply::Written;
use crate::root::Root;
use crate::state::{self, StateError};
use crate::systemd::UnitAction;

/// `/var/lib/imprint/sealed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seal {
    pub instance_id: String,
    /// sha256 of the raw user-data.
    pub user_data_sha256: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub version: String,
    pub datasource: String,
    pub files: Vec<Written>,
    pub units: Vec<UnitAction>,
    /// The id of the apply journal this seal replaces (runs that wrote
    /// files): a journal found beside a seal that names it belongs to a run
    /// that finished, and recovery drops it instead of rolling back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// The ssh host key types this instance is to have (the manifest's
    /// `ssh_host_keys`; empty: /etc/ssh is left alone). The run does not
    /// make them: `imprint host-keys` (imprint-host-keys.service, after
    /// imprint.service and before sshd) does, once per instance-id. Absent
    /// in seals written before that split, whose runs made the keys
    /// themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_keys: Option<Vec<String>>,
}

/// The seal's file name inside the state directory.
pub const FILE: &str = "sealed";

/// Read the seal, if any.
pub fn read(root: &Root) -> Result<Option<Seal>, StateError> {
    let Some(bytes) = state::read_file(root, FILE)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: state::dir(root).join(FILE),
            message: format!("{e} (run `imprint clean` to forget it, then run again)"),
        })
}

fn to_bytes(root: &Root, seal: &Seal) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(seal).map_err(|e| StateError::Corrupt {
        path: state::dir(root).join(FILE),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Write the seal atomically, on its own (tests, tools).
pub fn write(root: &Root, seal: &Seal) -> Result<(), StateError> {
    state::write_file(root, FILE, &to_bytes(root, seal)?)
}

/// The end of a run: seal it in the same two rounds of syncs that make its
/// files durable and remove its journal ([`crate::apply::finish`]).
pub fn commit(
    root: &Root,
    pending: &crate::apply::Pending,
    seal: &Seal,
) -> Result<(), crate::Error> {
    crate::apply::finish(root, pending, Some((FILE, &to_bytes(root, seal)?)))
}

/// The files to seal: those written by this run, then those the plan found
/// already as rendered (described from disk, through the confined root
/// handle; one that cannot be read is left out, and `verify` says nothing
/// about it).
pub fn files_of(root: &Root, written: &[Written], unchanged: &[String]) -> Vec<Written> {
    use cap_std::fs::MetadataExt as _;
    let mut out = written.to_vec();
    let Ok(rdir) = crate::apply::open_root(root) else {
        return out;
    };
    for path in unchanged {
        if out.iter().any(|w| &w.path == path) {
            continue;
        }
        let Some(rel) = Root::rel(path) else { continue };
        let Ok(md) = rdir.symlink_metadata(&rel) else {
            continue;
        };
        if !md.is_file() {
            continue;
        }
        let Ok(content) = rdir.read(&rel) else {
            continue;
        };
        out.push(Written {
            path: path.clone(),
            sha256: crate::pipeline::sha256_hex(&content),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        });
    }
    out
}

/// Remove the seal; returns whether there was one.
pub fn remove(root: &Root) -> Result<bool, StateError> {
    state::remove_file(root, FILE)
}

/// One drifted file: what differs from the seal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub path: String,
    /// Any of `missing`, `type`, `content`, `mode`, `owner`.
    pub what: Vec<String>,
    /// One human line: what differs, now vs sealed (no content, no hash).
    pub detail: String,
}

/// The result of `imprint verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub sealed: bool,
    pub instance_id: Option<String>,
    pub sealed_at: Option<String>,
    pub checked: usize,
    pub drift: Vec<Drift>,
}

impl Verification {
    /// The human report: one line per drifted file.
    pub fn human(&self, root: &Root) -> String {
        if !self.sealed {
            return format!(
                "no seal at {}: this instance was never configured (or was cleaned), \
                 so there is nothing to compare; run `imprint run` first\n",
                state::dir(root).join(FILE).display()
            );
        }
        let mut o = String::new();
        for d in &self.drift {
            o.push_str(&format!("{}: {}\n", d.path, d.detail));
        }
        if self.drift.is_empty() {
            o.push_str(&format!(
                "{} file(s) match the seal of instance {}\n",
                self.checked,
                self.instance_id.as_deref().unwrap_or("-")
            ));
        }
        o
    }
}

/// Compare every sealed file's sha256, mode and owner with the disk.
/// Reads go through the root's confined handle; a symlink where a sealed
/// file was is drift (`type`), never followed.
pub fn verify(root: &Root) -> Result<Verification, StateError> {
    use cap_std::fs::MetadataExt as _;
    let Some(seal) = read(root)? else {
        return Ok(Verification {
            sealed: false,
            instance_id: None,
            sealed_at: None,
            checked: 0,
            drift: Vec::new(),
        });
    };
    let rdir = crate::apply::open_root(root).map_err(|source| StateError::Io {
        what: "open the root",
        path: root.dir().into(),
        source,
    })?;
    let mut drift = Vec::new();
    for f in &seal.files {
        let mut what = Vec::new();
        let mut detail = Vec::new();
        let rel = Root::rel(&f.path).unwrap_or_default();
        match rdir.symlink_metadata(&rel) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                what.push("missing".to_string());
                detail.push("missing".to_string());
            }
            Err(e) => {
                what.push("missing".to_string());
                detail.push(format!("cannot be inspected ({e})"));
            }
            Ok(md) if !md.is_file() => {
                what.push("type".to_string());
                let kind = if md.file_type().is_symlink() {
                    "a symlink"
                } else if md.is_dir() {
                    "a directory"
                } else {
                    "not a regular file"
                };
                detail.push(format!("type (now {kind}, sealed a regular file)"));
            }
            Ok(md) => {
                match rdir.read(&rel) {
                    Ok(c) if crate::pipeline::sha256_hex(&c) == f.sha256 => {}
                    Ok(_) => {
                        what.push("content".to_string());
                        detail.push("content (sha256 differs from the seal)".to_string());
                    }
                    Err(e) => {
                        what.push("content".to_string());
                        detail.push(format!("content (unreadable: {e})"));
                    }
                }
                let mode = md.mode() & 0o7777;
                if mode != f.mode {
                    what.push("mode".to_string());
                    detail.push(format!("mode (now {mode:04o}, sealed {:04o})", f.mode));
                }
                if (md.uid(), md.gid()) != (f.uid, f.gid) {
                    what.push("owner".to_string());
                    detail.push(format!(
                        "owner (now {}:{}, sealed {}:{})",
                        md.uid(),
                        md.gid(),
                        f.uid,
                        f.gid
                    ));
                }
            }
        }
        if !what.is_empty() {
            drift.push(Drift {
                path: f.path.clone(),
                what,
                detail: detail.join(", "),
            });
        }
    }
    Ok(Verification {
        sealed: true,
        instance_id: Some(seal.instance_id.clone()),
        sealed_at: Some(seal.time.clone()),
        checked: seal.files.len(),
        drift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Seal {
        Seal {
            instance_id: "i-0abc".into(),
            user_data_sha256: "00".repeat(32),
            time: "2026-11-22T00:35:29Z".into(),
            version: "0.1.0".into(),
            datasource: "file".into(),
            files: vec![Written {
                path: "/etc/x".into(),
                sha256: "11".repeat(32),
                mode: 0o640,
                uid: 0,
                gid: 0,
            }],
            units: vec![UnitAction {
                unit: "app.service".into(),
                action: "would-restart".into(),
                result: "recorded".into(),
            }],
            journal: None,
            host_keys: None,
        }
    }

    #[test]
    fn round_trip() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        assert_eq!(read(&root).unwrap(), None);
        write(&root, &sample()).unwrap();
        assert_eq!(read(&root).unwrap(), Some(sample()));
        assert!(remove(&root).unwrap());
        assert_eq!(read(&root).unwrap(), None);
    }

    #[test]
    fn corrupt_seal_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        std::fs::create_dir_all(t.path().join("var/lib/imprint")).unwrap();
        std::fs::write(t.path().join("var/lib/imprint/sealed"), b"{not json").unwrap();
        let e = read(&root).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("var/lib/imprint/sealed"), "{msg}");
        assert!(msg.contains("imprint clean"), "{msg}");
    }

    #[test]
    fn files_of_adds_unchanged_files_from_disk() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/u"), "same").unwrap();
        std::fs::set_permissions(
            t.path().join("etc/u"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let written = sample().files;
        let files = files_of(
            &root,
            &written,
            &["/etc/u".into(), "/etc/x".into(), "/etc/gone".into()],
        );
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0], written[0]);
        assert_eq!(files[1].path, "/etc/u");
        assert_eq!(files[1].sha256, crate::pipeline::sha256_hex(b"same"));
        assert_eq!(files[1].mode, 0o640);
    }

    #[test]
    fn verify_names_what_drifted() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = Root::at(t.path());
        let v = verify(&root).unwrap();
        assert!(!v.sealed);
        assert!(v.human(&root).contains("no seal"), "{}", v.human(&root));
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let mut files = Vec::new();
        for (name, content) in [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")] {
            let p = t.path().join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            files.push(Written {
                path: format!("/{name}"),
                sha256: crate::pipeline::sha256_hex(content.as_bytes()),
                mode: 0o640,
                uid,
                gid,
            });
        }
        files[4].uid = uid + 1;
        write(&root, &Seal { files, ..sample() }).unwrap();
        assert!(verify(&root).unwrap().drift.len() == 1);
        std::fs::write(t.path().join("a"), "changed").unwrap();
        std::fs::set_permissions(t.path().join("b"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::remove_file(t.path().join("c")).unwrap();
        std::fs::remove_file(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("d")).unwrap();
        let v = verify(&root).unwrap();
        let got: Vec<_> = v
            .drift
            .iter()
            .map(|d| (d.path.as_str(), d.what.join(",")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a", "content".to_string()),
                ("/b", "mode".to_string()),
                ("/c", "missing".to_string()),
                ("/d", "type".to_string()),
                ("/e", "owner".to_string()),
            ]
        );
        let h = v.human(&root);
        assert!(h.contains("/b: mode (now 0644, sealed 0640)"), "{h}");
        assert!(h.contains("/d: type (now a symlink"), "{h}");
    }
}
