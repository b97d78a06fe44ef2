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
//! This runs right after apply (it changes the system, so never in a pure
//! stage) and before the unit actions, which restart the ssh unit if it is
//! already active; at boot it is not (`imprint.service` is ordered
//! `Before=ssh.service sshd.service`).

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
    let keygen = keygen()?;
    // Every ssh-keygen at once, then each result in order: under emulation
    // (and on any small VM) each run is mostly start-up, so two keys in
    // parallel cost about one.
    let mut running = Vec::new();
    for t in types {
        let key = dir.join(format!("ssh_host_{t}_key"));
        if !new_instance && key.exists() {
            continue;
        }
        running.push((t, key.clone(), spawn(&keygen, &dir, t, &key)));
    }
    // Every child is waited for (and its temp files handled) before the
    // first error is returned.
    let results: Vec<_> = running
        .into_iter()
        .map(|(t, key, child)| {
            let fp = finish(&keygen, &dir, t, &key, child);
            (t, key, fp)
        })
        .collect();
    for (t, key, fp) in results {
        let fp = fp?;
        tracing::info!(
            key_type = %t,
            fingerprint = %fp,
            "generated ssh host key {} ({fp})",
            key.display()
        );
        done.generated
            .push((t.clone(), key.display().to_string(), fp));
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
pub fn for_run(root: &Root, types: &[String], instance_id: &str) -> Result<HostKeys, HostKeyError> {
    if types.is_empty() {
        return Ok(HostKeys::default());
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

/// Start generating one key under a temporary name (see [`finish`]).
fn spawn(
    keygen: &Path,
    dir: &Path,
    t: &str,
    key: &Path,
) -> Result<std::process::Child, HostKeyError> {
    let tmp = dir.join(format!(".imprint-new-ssh_host_{t}_key"));
    let tmp_pub = dir.join(format!(".imprint-new-ssh_host_{t}_key.pub"));
    // Left by a crash: ssh-keygen would ask before overwriting.
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&tmp_pub);
    Command::new(keygen)
        .args(["-q", "-N", "", "-t", t, "-f"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| keygen_error(t, key, format!("failed to run {}: {e}", keygen.display())))
}

/// Wait for a key started by [`spawn`], then rename it (and its .pub) over
/// `key`. Returns the SHA256 fingerprint.
fn finish(
    keygen: &Path,
    dir: &Path,
    t: &str,
    key: &Path,
    child: Result<std::process::Child, HostKeyError>,
) -> Result<String, HostKeyError> {
    let tmp = dir.join(format!(".imprint-new-ssh_host_{t}_key"));
    let tmp_pub = dir.join(format!(".imprint-new-ssh_host_{t}_key.pub"));
    let pub_path = dir.join(format!("ssh_host_{t}_key.pub"));
    let err = |message: String| keygen_error(t, key, message);
    let out = child?
        .wait_with_output()
        .map_err(|e| err(format!("failed to run {}: {e}", keygen.display())))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&tmp_pub);
        return Err(err(format!(
            "{} exited with {}: {}",
            keygen.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
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
