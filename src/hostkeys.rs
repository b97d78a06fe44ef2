//! SSH host keys (SPEC §3 `ssh_host_keys`): every new instance gets its own.
//!
//! Why: an image baked from a running machine carries that machine's host
//! keys, and every clone would then share them (any one of them can
//! impersonate the others). cloud-init's answer is `ssh_deletekeys: true`;
//! this is the same rule, keyed by the seal: when this instance was never
//! configured (no seal) or the seal belongs to another instance-id, every
//! `/etc/ssh/ssh_host_*key*` is replaced: the listed types are generated
//! anew, keys of other types (and their certificates) are removed. On the
//! same instance (`run --force`) existing keys are kept and only missing
//! types are generated, so a forced re-run never changes the host's
//! identity. A manifest without `ssh_host_keys` leaves /etc/ssh alone.
//!
//! Keys come from the real `ssh-keygen -q -N "" -t TYPE -f PATH`, written
//! under a temporary name in /etc/ssh and renamed over the old key, so sshd
//! never sees a missing or half-written key. Under `--root` the keys are
//! generated for real inside the root (they are just files; tests and image
//! builds see exactly what a boot would do).
//!
//! The keys land in /etc/ssh right after apply (that changes the system, so
//! never in a pure stage) and before the unit actions, which restart the ssh
//! unit if it is already active; at boot it is not (`imprint.service` is
//! ordered `Before=ssh.service sshd.service`).
//!
//! On a first boot (no seal at all, so every listed type is generated anew
//! whatever the instance-id turns out to be) ssh-keygen is started early,
//! by [`start_ahead`] right after the seal check, into a private scratch
//! directory `/run/imprint/hostkeys` (0700; the run lock is held, so no
//! other run shares it). It then runs beside fetch, decode, render and
//! apply instead of after them: under emulation at boot it is the longest
//! step of a run. The root's /etc/ssh is untouched until the keys are
//! installed after apply; a run that stops before that kills the
//! ssh-keygen children and removes the scratch directory ([`Ahead`]'s
//! drop).

use crate::error::ExitCode;
use crate::root::Root;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where host keys live, relative to the root.
pub const SSH_DIR: &str = "etc/ssh";

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("failed to generate ssh host keys: ssh-keygen not found (looked for {looked}); install openssh-client or drop ssh_host_keys from the manifest")]
    NoKeygen { looked: String },
    #[error("failed to generate the {key_type} ssh host key {path}: {message}")]
    Keygen {
        key_type: String,
        path: PathBuf,
        message: String,
    },
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to use {path}: it leads outside the root {root}")]
    Escapes { path: PathBuf, root: PathBuf },
}

impl HostKeyError {
    /// Files are applied but the host keys are not: not sealed, the next
    /// boot tries again (75).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::TempFail
    }
}

/// What was done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    /// `(type, host path of the private key, SHA256 fingerprint)`.
    pub generated: Vec<(String, String, String)>,
    /// Paths (as inside the root) of removed keys of other types.
    pub removed: Vec<String>,
    /// The ssh unit to restart if it is active (`ssh.service` on Debian,
    /// `sshd.service` on Red Hat), when keys changed and the root has one.
    pub restart: Vec<String>,
}

/// Make sure the listed host key types exist and belong to this instance.
/// `new_instance`: no seal, or a seal for another instance-id.
pub fn ensure(root: &Root, types: &[String], new_instance: bool) -> Result<HostKeys, HostKeyError> {
    ensure_with(root, types, new_instance, None)
}

/// [`ensure`], taking the keys from `ahead` when [`start_ahead`] started
/// them (a new instance: every listed type).
fn ensure_with(
    root: &Root,
    types: &[String],
    new_instance: bool,
    ahead: Option<Ahead>,
) -> Result<HostKeys, HostKeyError> {
    let mut done = HostKeys::default();
    if types.is_empty() {
        return Ok(done);
    }
    let dir = root.join(SSH_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| HostKeyError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    confined(root, &dir)?;
    // `ahead` (its scratch directory) lives until every key is copied out.
    let mut ahead = ahead;
    let (keygen, mut running) = match &mut ahead {
        Some(a) => (a.keygen.clone(), std::mem::take(&mut a.running)),
        None => (keygen()?, Vec::new()),
    };
    if running.is_empty() {
        // Every ssh-keygen at once, then each result in order: under
        // emulation (and on any small VM) each run is mostly start-up, so
        // two keys in parallel cost about one.
        for t in types {
            let key = dir.join(format!("ssh_host_{t}_key"));
            if !new_instance && key.exists() {
                continue;
            }
            let made = dir.join(format!(".imprint-new-ssh_host_{t}_key"));
            let child = spawn(&keygen, &made, t, &key);
            running.push(Running {
                key_type: t.clone(),
                made,
                child,
            });
        }
    }
    // Every child is waited for (and its temp files handled) before the
    // first error is returned.
    let results: Vec<_> = running
        .into_iter()
        .map(|r| {
            let key = dir.join(format!("ssh_host_{}_key", r.key_type));
            let fp = finish(&keygen, &dir, &r.key_type, &key, &r.made, r.child);
            (r.key_type, key, fp)
        })
        .collect();
    drop(ahead);
    for (t, key, fp) in results {
        let fp = fp?;
        tracing::info!(
            key_type = %t,
            fingerprint = %fp,
            "generated ssh host key {} ({fp})",
            key.display()
        );
        done.generated.push((t, key.display().to_string(), fp));
    }
    if new_instance {
        let keep: Vec<String> = types
            .iter()
            .flat_map(|t| [format!("ssh_host_{t}_key"), format!("ssh_host_{t}_key.pub")])
            .collect();
        let entries = std::fs::read_dir(&dir).map_err(|source| HostKeyError::Io {
            what: "read",
            path: dir.clone(),
            source,
        })?;
        let mut stale: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ssh_host_") && n.contains("key") && !keep.contains(n))
            .collect();
        stale.sort();
        for n in stale {
            let p = dir.join(&n);
            std::fs::remove_file(&p).map_err(|source| HostKeyError::Io {
                what: "remove",
                path: p.clone(),
                source,
            })?;
            tracing::info!(
                "removed ssh host key {} (left by another instance)",
                p.display()
            );
            done.removed.push(format!("/{SSH_DIR}/{n}"));
        }
    }
    if !done.generated.is_empty() || !done.removed.is_empty() {
        sync_dir(&dir)?;
        done.restart = ssh_unit(root).into_iter().collect();
    }
    Ok(done)
}

/// The pipeline's step: [`ensure`] with "new instance" decided from the
/// seal (none, or another instance-id). Reads the seal itself because
/// `run --force` skips the pipeline's seal check.
pub fn for_run(
    root: &Root,
    types: &[String],
    instance_id: &str,
    ahead: Option<Ahead>,
) -> Result<HostKeys, HostKeyError> {
    if types.is_empty() {
        return Ok(HostKeys::default());
    }
    if ahead.is_some() {
        // Started with no seal on disk, under the run lock: still none.
        return ensure_with(root, types, true, ahead);
    }
    let new_instance = match crate::seal::read(root) {
        Ok(Some(s)) => s.instance_id != instance_id,
        Ok(None) => true,
        Err(e) => {
            tracing::warn!("{e}; treating this as a new instance for ssh host keys");
            true
        }
    };
    ensure(root, types, new_instance)
}

/// `/usr/bin/ssh-keygen`, else `/bin/ssh-keygen`.
fn keygen() -> Result<PathBuf, HostKeyError> {
    const PATHS: [&str; 2] = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"];
    PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| HostKeyError::NoKeygen {
            looked: PATHS.join(", "),
        })
}

fn keygen_error(t: &str, key: &Path, message: String) -> HostKeyError {
    HostKeyError::Keygen {
        key_type: t.to_string(),
        path: key.to_path_buf(),
        message,
    }
}

/// One ssh-keygen run: the key type, where it writes the private key (the
/// public one beside it, `.pub`), the child.
#[derive(Debug)]
struct Running {
    key_type: String,
    made: PathBuf,
    child: Result<std::process::Child, HostKeyError>,
}

/// `path` + `.pub`.
fn pub_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Host keys being generated ahead, into a private scratch directory
/// (module doc). Dropping it unused kills and reaps the children and
/// removes the directory.
#[derive(Debug)]
pub struct Ahead {
    scratch: PathBuf,
    keygen: PathBuf,
    running: Vec<Running>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        for r in &mut self.running {
            if let Ok(c) = &mut r.child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Where [`start_ahead`] has ssh-keygen write, relative to the root: beside
/// the run lock, on /run (a tmpfs at boot).
pub const SCRATCH_DIR: &str = "run/imprint/hostkeys";

/// Start generating every listed key type now, when the root has no seal
/// (a first boot: every type is new whatever the instance-id). `None` when
/// there is nothing to start, or anything is in the way (a seal, no
/// ssh-keygen, no scratch directory): [`for_run`] then does it all after
/// apply, and reports what failed. Call with the run lock held.
pub fn start_ahead(root: &Root, types: &[String]) -> Option<Ahead> {
    if types.is_empty() || !matches!(crate::seal::read(root), Ok(None)) {
        return None;
    }
    let keygen = keygen().ok()?;
    let scratch = root.join(SCRATCH_DIR);
    // Left by a killed run: the lock is ours now.
    let _ = std::fs::remove_dir_all(&scratch);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .ok()?;
    }
    let mut ahead = Ahead {
        scratch,
        keygen,
        running: Vec::new(),
    };
    if confined(root, &ahead.scratch).is_err() {
        return None;
    }
    for t in types {
        let made = ahead.scratch.join(format!("ssh_host_{t}_key"));
        let child = spawn(&ahead.keygen, &made, t, &made);
        ahead.running.push(Running {
            key_type: t.clone(),
            made,
            child,
        });
    }
    Some(ahead)
}

/// Start generating one key at `made` (see [`finish`]).
fn spawn(
    keygen: &Path,
    made: &Path,
    t: &str,
    key: &Path,
) -> Result<std::process::Child, HostKeyError> {
    // Left by a crash: ssh-keygen would ask before overwriting.
    let _ = std::fs::remove_file(made);
    let _ = std::fs::remove_file(pub_of(made));
    Command::new(keygen)
        .args(["-q", "-N", "", "-t", t, "-f"])
        .arg(made)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| keygen_error(t, key, format!("failed to run {}: {e}", keygen.display())))
}

/// Wait for a key started by [`spawn`] at `made`; when that is outside
/// `dir` (generated ahead), copy it (and its .pub, modes kept) in under a
/// temporary name; then rename both over `key`. Returns the SHA256
/// fingerprint.
fn finish(
    keygen: &Path,
    dir: &Path,
    t: &str,
    key: &Path,
    made: &Path,
    child: Result<std::process::Child, HostKeyError>,
) -> Result<String, HostKeyError> {
    let tmp = dir.join(format!(".imprint-new-ssh_host_{t}_key"));
    let tmp_pub = pub_of(&tmp);
    let pub_path = pub_of(key);
    let err = |message: String| keygen_error(t, key, message);
    let out = child?
        .wait_with_output()
        .map_err(|e| err(format!("failed to run {}: {e}", keygen.display())))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(made);
        let _ = std::fs::remove_file(pub_of(made));
        return Err(err(format!(
            "{} exited with {}: {}",
            keygen.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if made != tmp {
        for (from, to) in [(made.to_path_buf(), &tmp), (pub_of(made), &tmp_pub)] {
            let _ = std::fs::remove_file(to);
            std::fs::copy(&from, to).map_err(|source| HostKeyError::Io {
                what: "copy into place",
                path: to.to_path_buf(),
                source,
            })?;
        }
    }
    let public = std::fs::read_to_string(&tmp_pub).map_err(|source| HostKeyError::Io {
        what: "read",
        path: tmp_pub.clone(),
        source,
    })?;
    let fp = fingerprint(&public)
        .ok_or_else(|| err("ssh-keygen wrote an unreadable public key".into()))?;
    for (from, to) in [(&tmp, key), (&tmp_pub, pub_path.as_path())] {
        std::fs::rename(from, to).map_err(|source| HostKeyError::Io {
            what: "rename into place",
            path: to.to_path_buf(),
            source,
        })?;
    }
    Ok(fp)
}

/// The OpenSSH SHA256 fingerprint of a public key line
/// (`TYPE BASE64 [COMMENT]`): `SHA256:` and the unpadded base64 of the
/// sha256 of the key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(public_line: &str) -> Option<String> {
    let blob = public_line.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Sha256::digest(&bytes);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// The ssh unit the root has, by the unit files on disk.
fn ssh_unit(root: &Root) -> Option<String> {
    const DIRS: [&str; 4] = [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ];
    ["ssh.service", "sshd.service"]
        .into_iter()
        .find(|u| DIRS.iter().any(|d| root.join(d).join(u).exists()))
        .map(str::to_string)
}

/// Refuse a /etc/ssh that leads outside the root (a symlink in an image
/// being configured under `--root`).
fn confined(root: &Root, dir: &Path) -> Result<(), HostKeyError> {
    let canon = |p: &Path| {
        p.canonicalize().map_err(|source| HostKeyError::Io {
            what: "resolve",
            path: p.to_path_buf(),
            source,
        })
    };
    let r = canon(root.dir())?;
    if !canon(dir)?.starts_with(&r) {
        return Err(HostKeyError::Escapes {
            path: dir.to_path_buf(),
            root: r,
        });
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), HostKeyError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| HostKeyError::Io {
            what: "sync",
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_matches_openssh() {
        // `ssh-keygen -l -f` (OpenSSH 9.2p1, Debian 12) printed
        // `256 SHA256:PoHr1SPomlUHbs42kxNTpQPmbhw1xgDVKALajBIh+pk root@x (ED25519)`
        // for this public key.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICRtFn/sXlgD+dPGEDX1MBW/4HWzb1cM9tuHUU1b/osH root@x";
        assert_eq!(
            super::fingerprint(line).as_deref(),
            Some("SHA256:PoHr1SPomlUHbs42kxNTpQPmbhw1xgDVKALajBIh+pk")
        );
        assert!(super::fingerprint("ssh-ed25519").is_none());
        assert!(super::fingerprint("ssh-ed25519 !!!").is_none());
    }
}
