//! SSH host keys (SPEC §3 `ssh_host_keys`): every new instance gets its own.
//!
//! Why: an image baked from a running machine carries that machine's host
//! keys, and every clone would then share them (any one of them can
//! impersonate the others). cloud-init's answer is `ssh_deletekeys: true`;
//! this is the same rule, keyed by instance-id: when the keys on disk were
//! not made for this instance, every `/etc/ssh/ssh_host_*key*` is replaced:
//! the listed types are generated anew, keys of other types (and their
//! certificates) are removed. On the same instance existing keys are kept
//! and only missing types are generated, so nothing here ever changes a
//! configured host's identity. A manifest without `ssh_host_keys` leaves
//! /etc/ssh alone.
//!
//! **Not the run's job** (docs/systemd.md, "SSH host keys"): `imprint run`
//! records in the seal which types this instance is to have (`host_keys`),
//! and `imprint host-keys`, run by `imprint-host-keys.service` after
//! imprint.service and before sshd, makes them. The app's services, which
//! start right after imprint.service, then do not wait for ssh-keygen (under
//! emulation at boot, ~0.35 s of two CPUs), and sshd still never starts with
//! the image's keys. What was made, for which instance-id, is recorded in
//! `/var/lib/imprint/host-keys` ([`Marker`]); a crash between the seal and
//! the keys is mended on the next boot, as the marker then names another
//! instance (or none) than the seal. This mirrors cloud-init, whose ssh
//! module has a per-instance marker of its own, apart from write_files'.
//!
//! **A run that failed** in this boot, before sealing the instance it saw,
//! does not leave the image's keys in place either ([`Unsealed`]): the keys
//! are made for the instance-id in that run's report.json, which is trusted
//! only in the boot that wrote it (its `boot_id`), with the manifest's
//! types. cloud-init, too, makes keys whatever the user-data.
//!
//! Keys come from the real `ssh-keygen -q -N "" -t TYPE -f PATH`, every type
//! at once, each written under a temporary name in /etc/ssh and renamed over
//! the old key, so sshd never sees a missing or half-written key. Under
//! `--root` the keys are generated for real inside the root (they are just
//! files; tests and image builds see exactly what a boot would do).

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
    #[error("refusing to remove the image's ssh host keys: {why}, so nothing would give its instances keys of their own and sshd would not start there; list the key types under ssh_host_keys (docs/manifest.md), or keep the keys (drop --host-keys)")]
    NotListed { why: String },
}

impl HostKeyError {
    /// Files are applied but the host keys are not: not sealed, the next
    /// boot tries again (75). `clean --host-keys` on an image whose
    /// manifest makes no keys: 65, nothing removed.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HostKeyError::NotListed { .. } => ExitCode::DataErr,
            _ => ExitCode::TempFail,
        }
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
/// `new_instance`: the keys on disk were not made for this instance-id.
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
        let made = dir.join(format!(".imprint-new-ssh_host_{t}_key"));
        let child = spawn(&keygen, &made, t, &key);
        running.push(Running {
            key_type: t.clone(),
            made,
            child,
        });
    }
    // Every child is waited for (and its temp files handled) before the
    // first error is returned.
    let results: Vec<_> = running
        .into_iter()
        .map(|r| {
            let key = dir.join(format!("ssh_host_{}_key", r.key_type));
            let fp = finish(&keygen, &r.key_type, &key, &r.made, r.child);
            (r.key_type, key, fp)
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
        done.generated.push((t, key.display().to_string(), fp));
    }
    if new_instance {
        let keep: Vec<String> = types
            .iter()
            .flat_map(|t| [format!("ssh_host_{t}_key"), format!("ssh_host_{t}_key.pub")])
            .collect();
        for n in remove_keys(&dir, &keep)? {
            tracing::info!(
                "removed ssh host key {} (left by another instance)",
                dir.join(&n).display()
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

/// Remove every `ssh_host_*key*` in `dir` (keys, public keys,
/// certificates; links themselves, never their targets) but those named in
/// `keep`, in name order; their names. No `dir`: nothing.
fn remove_keys(dir: &Path, keep: &[String]) -> Result<Vec<String>, HostKeyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HostKeyError::Io {
                what: "read",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut stale: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_") && n.contains("key") && !keep.contains(n))
        .collect();
    stale.sort();
    for n in &stale {
        let p = dir.join(n);
        std::fs::remove_file(&p).map_err(|source| HostKeyError::Io {
            what: "remove",
            path: p.clone(),
            source,
        })?;
    }
    Ok(stale)
}

/// `imprint clean --host-keys`, at image build: remove every
/// `/etc/ssh/ssh_host_*key*`, so that no instance can ever start sshd with
/// the build machine's keys, shared by every clone (docs/lockout.md, step
/// 5). Refused, before anything is removed, when the manifest lists no
/// `ssh_host_keys` (or cannot be read): the instances would get no keys
/// at all. Paths removed, as inside the root.
pub fn check_removable(root: &Root) -> Result<(), crate::Error> {
    let path = root.join(crate::root::MANIFEST);
    match crate::manifest::load(root, None)? {
        None => Err(HostKeyError::NotListed {
            why: format!("there is no manifest at {}", path.display()),
        }
        .into()),
        Some(m) if m.ssh_host_keys.is_empty() => Err(HostKeyError::NotListed {
            why: format!("the manifest {} lists no ssh_host_keys", path.display()),
        }
        .into()),
        Some(_) => Ok(()),
    }
}

/// Remove the root's host keys (after [`check_removable`]); the paths
/// removed, as inside the root.
pub fn remove_all(root: &Root) -> Result<Vec<String>, HostKeyError> {
    let dir = root.join(SSH_DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    confined(root, &dir)?;
    let removed = remove_keys(&dir, &[])?;
    if !removed.is_empty() {
        sync_dir(&dir)?;
    }
    Ok(removed
        .into_iter()
        .map(|n| format!("/{SSH_DIR}/{n}"))
        .collect())
}

/// The state file recording whose host keys /etc/ssh holds, in the state
/// directory beside the seal.
pub const MARKER: &str = "host-keys";

/// What `imprint host-keys` last did, for which instance-id
/// (`/var/lib/imprint/host-keys`, JSON; no secret: fingerprints only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    pub instance_id: String,
    /// The types this instance has (the seal's `host_keys`).
    pub types: Vec<String>,
    /// RFC 3339 UTC.
    pub time: String,
    pub version: String,
    /// `(type, fingerprint)` of the keys generated then.
    #[serde(default)]
    pub generated: Vec<(String, String)>,
    /// Keys of other types removed then (paths as inside the root).
    #[serde(default)]
    pub removed: Vec<String>,
}

/// What the seal and the marker call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No seal: this instance is not configured (yet); the keys stay as
    /// they are until a run seals it.
    NotConfigured,
    /// A seal without `host_keys`: written by a version whose run made the
    /// keys itself.
    MadeByRun { instance_id: String },
    /// The marker names the sealed instance and every type exists.
    Done { instance_id: String },
    /// Make `types` (`new_instance`: replace every key; else only the
    /// missing types). `configured`: for the sealed instance; else for the
    /// instance this boot's run saw and failed to configure ([`Unsealed`]).
    Make {
        instance_id: String,
        types: Vec<String>,
        new_instance: bool,
        configured: bool,
    },
}

/// This boot's run, when it did not seal the instance it saw (it failed,
/// or a unit failed after the files): keys are still due, since the image's
/// keys (or those of the machine it was captured from) must not be this
/// instance's, as cloud-init also makes them whatever the user-data. The
/// instance-id the run saw (`""`: it never learned one), and the manifest's
/// types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    pub instance_id: String,
    pub types: Vec<String>,
}

/// Decide from the seal, this boot's unsealed run, the marker and which
/// key files exist (`has`, by type). Pure.
pub fn due(
    seal: Option<&crate::seal::Seal>,
    unsealed: Option<&Unsealed>,
    marker: Option<&Marker>,
    has: impl Fn(&str) -> bool,
) -> Due {
    let (instance_id, types, configured) = match (unsealed, seal) {
        (Some(u), _) => (u.instance_id.clone(), &u.types, false),
        (None, None) => return Due::NotConfigured,
        (None, Some(seal)) => match &seal.host_keys {
            None => {
                return Due::MadeByRun {
                    instance_id: seal.instance_id.clone(),
                }
            }
            Some(types) => (seal.instance_id.clone(), types, true),
        },
    };
    let same = marker.is_some_and(|m| m.instance_id == instance_id);
    if same && types.iter().all(|t| has(t)) {
        return Due::Done { instance_id };
    }
    Due::Make {
        instance_id,
        types: types.clone(),
        new_instance: !same,
        configured,
    }
}

/// [`due`], with the key files as the root's /etc/ssh has them.
fn due_on_disk(
    root: &Root,
    seal: Option<&crate::seal::Seal>,
    unsealed: Option<&Unsealed>,
    marker: Option<&Marker>,
) -> Due {
    let dir = root.join(SSH_DIR);
    due(seal, unsealed, marker, |t| {
        dir.join(format!("ssh_host_{t}_key")).exists()
    })
}

/// [`Unsealed`] from this boot's report (`report::this_boot`): a run that
/// did not seal, for another instance than the seal's (or with no seal), in
/// a manifest that lists `ssh_host_keys`. A run that failed without
/// learning the instance-id, on a sealed root, is taken to be the sealed
/// instance's, as the run itself trusts the seal when the instance-id
/// cannot be known. A report of an earlier boot is never acted on: a
/// failed `imprint run --instance-id OTHER` by hand must not change a
/// configured host's keys at its next boot.
fn unsealed_run(
    root: &Root,
    seal: Option<&crate::seal::Seal>,
) -> Result<Option<Unsealed>, crate::Error> {
    let Some(report) = crate::report::this_boot(root) else {
        // This boot's run died before its report (killed, timed out,
        // crashed: `report::run_died`, the booted host only): on a root no
        // run sealed, keys all the same, for an instance-id it never
        // learned. With a seal, as for a failed run that never learned
        // its instance-id below: nothing says this is another instance.
        if seal.is_none() && crate::report::run_died(root).is_some() {
            return Ok(manifest_types(root)?.map(|types| Unsealed {
                instance_id: String::new(),
                types,
            }));
        }
        return Ok(None);
    };
    if matches!(report.status.as_str(), "done" | "sealed") {
        return Ok(None);
    }
    match (&report.instance_id, seal) {
        (Some(id), Some(s)) if *id == s.instance_id => return Ok(None),
        (None, Some(_)) => return Ok(None),
        _ => {}
    }
    Ok(manifest_types(root)?.map(|types| Unsealed {
        instance_id: report.instance_id.unwrap_or_default(),
        types,
    }))
}

/// The manifest's `ssh_host_keys`; `None` when it lists none (or there is
/// no manifest).
fn manifest_types(root: &Root) -> Result<Option<Vec<String>>, crate::Error> {
    let types = crate::manifest::load(root, None)?
        .map(|m| m.ssh_host_keys)
        .unwrap_or_default();
    Ok((!types.is_empty()).then_some(types))
}

/// What [`for_instance`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub due: Due,
    pub keys: HostKeys,
}

/// `imprint host-keys`: under the run lock, give the sealed instance the
/// host keys its seal lists, unless the marker says they were made for it;
/// then record that in the marker. The caller restarts `keys.restart` if it
/// is running.
pub fn for_instance(root: &Root) -> Result<Outcome, crate::Error> {
    let _lock = crate::state::lock(root)?;
    let seal = crate::seal::read(root)?;
    let marker = read_marker(root)?;
    let unsealed = unsealed_run(root, seal.as_ref())?;
    let due = due_on_disk(root, seal.as_ref(), unsealed.as_ref(), marker.as_ref());
    let Due::Make {
        instance_id,
        types,
        new_instance,
        ..
    } = &due
    else {
        return Ok(Outcome {
            due,
            keys: HostKeys::default(),
        });
    };
    if !types.is_empty() {
        // ssh-keygen is CPU work that nothing but sshd waits for: at boot it
        // must not slow the app's services, which start at the same moment
        // (under emulation two keys take ~0.35 s of two CPUs). At nice 19
        // (inherited by the children) it gets the CPU time they leave and is
        // never starved outright, as SCHED_IDLE could be. Only here: the
        // check every sealed boot makes above runs at the unit's priority,
        // since sshd waits for it (nice 19 for the whole unit made that
        // check take 2.4 s on a busy sealed boot). Best effort.
        let _ = rustix::process::setpriority_process(None, 19);
    }
    let keys = ensure(root, types, *new_instance)?;
    let fingerprints = |k: &HostKeys| -> Vec<(String, String)> {
        k.generated
            .iter()
            .map(|(t, _, fp)| (t.clone(), fp.clone()))
            .collect()
    };
    let marker = Marker {
        instance_id: instance_id.clone(),
        types: types.clone(),
        time: crate::report::now_rfc3339(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        generated: fingerprints(&keys),
        removed: keys.removed.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&marker).expect("a marker serializes");
    bytes.push(b'\n');
    crate::state::write_file(root, MARKER, &bytes)?;
    Ok(Outcome { due, keys })
}

/// One line for `imprint status`: where the sealed instance's host keys
/// stand; without a seal, those made after a failed run, if any (`None`
/// otherwise).
pub fn describe(root: &Root, seal: Option<&crate::seal::Seal>) -> Option<String> {
    let marker = match read_marker(root) {
        Ok(m) => m,
        Err(e) => return Some(format!("unknown: {e}")),
    };
    let Some(seal) = seal else {
        // Keys made after a run that failed ([`Unsealed`]).
        let m = marker?;
        let whom = if m.instance_id.is_empty() {
            "an instance whose run never learned its instance-id".to_string()
        } else {
            m.instance_id.clone()
        };
        return Some(format!(
            "made for {whom} at {} ({}), whose run did not seal it",
            m.time,
            m.types.join(", ")
        ));
    };
    let line = match due_on_disk(root, Some(seal), None, marker.as_ref()) {
        Due::NotConfigured => return None,
        Due::MadeByRun { .. } => "made by the run that sealed this instance".to_string(),
        Due::Done { .. } => match marker {
            Some(m) if m.types.is_empty() => "none (no ssh_host_keys in the manifest)".into(),
            Some(m) => format!(
                "made for this instance at {} ({})",
                m.time,
                m.types.join(", ")
            ),
            None => "made".into(),
        },
        Due::Make { types, .. } if types.is_empty() => {
            "none (no ssh_host_keys in the manifest)".into()
        }
        Due::Make { new_instance, .. } => format!(
            "pending: {} (imprint-host-keys.service makes them before sshd starts)",
            if new_instance {
                "not made for this instance yet"
            } else {
                "some types are missing"
            }
        ),
    };
    Some(line)
}

/// On the host booted with systemd: why this instance has no host keys of
/// its own, when imprint-host-keys.service failed in this boot and they are
/// still not made (made since, by hand or by a restart of the unit that
/// succeeded: not failed). `None` under `--root`, where no unit runs.
/// cloud-init's status is `error` when its ssh module fails; `imprint
/// status` and the `cloud-init status` shim say so too.
pub fn failed(root: &Root, seal: Option<&crate::seal::Seal>) -> Option<String> {
    if !root.is_host() || !crate::systemd::booted() {
        return None;
    }
    let result = crate::systemd::failed_result(crate::systemd::HOST_KEYS_UNIT)?;
    if let Some(seal) = seal {
        let marker = read_marker(root).ok().flatten();
        match due_on_disk(root, Some(seal), None, marker.as_ref()) {
            Due::Make { types, .. } if !types.is_empty() => {}
            _ => return None,
        }
    }
    Some(failed_message(&result))
}

/// What [`failed`] says, from the unit's `Result=`.
pub fn failed_message(result: &str) -> String {
    let unit = crate::systemd::HOST_KEYS_UNIT;
    let result = if result.is_empty() { "failed" } else { result };
    format!(
        "{unit} failed ({result}): this instance's ssh host keys were not made, so sshd has none of its own; `journalctl -b -u {unit}` says why; fix that, then `systemctl restart {unit}`"
    )
}

/// The marker, if any.
pub fn read_marker(root: &Root) -> Result<Option<Marker>, crate::state::StateError> {
    let Some(bytes) = crate::state::read_file(root, MARKER)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| crate::state::StateError::Corrupt {
            path: crate::state::dir(root).join(MARKER),
            message: format!(
                "{e} (remove it to have this instance's host keys made anew, then run `imprint host-keys`)"
            ),
        })
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

/// Wait for a key started by [`spawn`] at `made` (a temporary name beside
/// `key`), then rename it and its .pub over `key`. Returns the SHA256
/// fingerprint.
fn finish(
    keygen: &Path,
    t: &str,
    key: &Path,
    made: &Path,
    child: Result<std::process::Child, HostKeyError>,
) -> Result<String, HostKeyError> {
    let made_pub = pub_of(made);
    let pub_path = pub_of(key);
    let err = |message: String| keygen_error(t, key, message);
    let out = child?
        .wait_with_output()
        .map_err(|e| err(format!("failed to run {}: {e}", keygen.display())))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(made);
        let _ = std::fs::remove_file(&made_pub);
        return Err(err(format!(
            "{} exited with {}: {}",
            keygen.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let public = std::fs::read_to_string(&made_pub).map_err(|source| HostKeyError::Io {
        what: "read",
        path: made_pub.clone(),
        source,
    })?;
    let fp = fingerprint(&public)
        .ok_or_else(|| err("ssh-keygen wrote an unreadable public key".into()))?;
    for (from, to) in [(made, key), (made_pub.as_path(), pub_path.as_path())] {
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
