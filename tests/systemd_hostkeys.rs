//! SSH host keys (SPEC §3 `ssh_host_keys`) with the real ssh-keygen, in a
//! temporary root: a new instance gets fresh keys and loses the image's
//! (cloud-init's ssh_deletekeys), the same instance keeps its identity.
//! Needs `openssh-client` (ssh-keygen).

mod common;

use common::{tree_hash, TempRoot};
use imprint::hostkeys::{ensure, fingerprint, HostKeyError};
use imprint::root::Root;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn types(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

/// A real key pair made by ssh-keygen at `path` (as an image build leaves).
fn baked(r: &TempRoot, name: &str, t: &str) {
    let p = r.join(&format!("/etc/ssh/{name}"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", t, "-f"])
        .arg(&p)
        .status()
        .expect("these tests need ssh-keygen (apt-get install openssh-client)");
    assert!(ok.success());
}

fn keygen_fingerprint(pub_path: &std::path::Path) -> String {
    let o = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(pub_path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn new_instance_gets_fresh_keys_and_loses_the_images() {
    let r = TempRoot::new();
    baked(&r, "ssh_host_ed25519_key", "ed25519");
    baked(&r, "ssh_host_rsa_key", "rsa");
    r.write(
        "/etc/ssh/ssh_host_ed25519_key-cert.pub",
        "ssh-ed25519-cert-v01@openssh.com AAAA old\n",
    );
    r.write("/etc/ssh/sshd_config", "# not a key\n");
    r.write("/lib/systemd/system/ssh.service", "[Unit]\n");
    let old_ed = r.read("/etc/ssh/ssh_host_ed25519_key.pub");
    let done = ensure(&Root::at(r.path()), &types(&["ed25519", "ecdsa"]), true).unwrap();
    // Both listed types are new.
    assert_ne!(r.read("/etc/ssh/ssh_host_ed25519_key.pub"), old_ed);
    for t in ["ed25519", "ecdsa"] {
        let key = r.join(&format!("/etc/ssh/ssh_host_{t}_key"));
        let public = r.join(&format!("/etc/ssh/ssh_host_{t}_key.pub"));
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&public).unwrap().mode() & 0o777, 0o644);
        let g = done.generated.iter().find(|g| g.0 == t).expect("listed");
        assert_eq!(g.1, key.display().to_string());
        // Our fingerprint is the one OpenSSH prints.
        assert_eq!(g.2, keygen_fingerprint(&public));
        assert_eq!(
            fingerprint(&std::fs::read_to_string(&public).unwrap()).unwrap(),
            g.2
        );
    }
    // Everything else that was a host key (or its certificate) is gone.
    assert_eq!(
        done.removed,
        [
            "/etc/ssh/ssh_host_ed25519_key-cert.pub",
            "/etc/ssh/ssh_host_rsa_key",
            "/etc/ssh/ssh_host_rsa_key.pub"
        ]
    );
    let mut left: Vec<String> = std::fs::read_dir(r.join("/etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "ssh_host_ecdsa_key",
            "ssh_host_ecdsa_key.pub",
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
            "sshd_config"
        ]
    );
    // The ssh unit of this root, to restart if it is running.
    assert_eq!(done.restart, ["ssh.service"]);
}

#[test]
fn same_instance_keeps_its_keys_and_fills_in_missing_types() {
    let r = TempRoot::new();
    baked(&r, "ssh_host_ed25519_key", "ed25519");
    baked(&r, "ssh_host_rsa_key", "rsa");
    let before = r.read("/etc/ssh/ssh_host_ed25519_key");
    let done = ensure(&Root::at(r.path()), &types(&["ed25519", "ecdsa"]), false).unwrap();
    assert_eq!(r.read("/etc/ssh/ssh_host_ed25519_key"), before);
    assert_eq!(done.generated.len(), 1);
    assert_eq!(done.generated[0].0, "ecdsa");
    assert!(
        done.removed.is_empty(),
        "an unlisted key is kept on the same instance"
    );
    assert!(r.join("/etc/ssh/ssh_host_rsa_key").exists());
    assert!(done.restart.is_empty(), "no ssh unit in this root");
    // Nothing missing: nothing done at all.
    let h = tree_hash(r.path(), &[]);
    let done = ensure(&Root::at(r.path()), &types(&["ed25519", "ecdsa"]), false).unwrap();
    assert_eq!(done, Default::default());
    assert_eq!(tree_hash(r.path(), &[]), h);
}

#[test]
fn no_listed_types_touches_nothing() {
    let r = TempRoot::new();
    baked(&r, "ssh_host_rsa_key", "rsa");
    let h = tree_hash(r.path(), &[]);
    let done = ensure(&Root::at(r.path()), &[], true).unwrap();
    assert_eq!(done, Default::default());
    assert_eq!(tree_hash(r.path(), &[]), h);
    // Also fine without /etc/ssh at all.
    let empty = TempRoot::new();
    ensure(&Root::at(empty.path()), &[], true).unwrap();
    assert!(!empty.join("/etc/ssh").exists());
}

#[test]
fn a_crash_leftover_does_not_make_ssh_keygen_ask() {
    let r = TempRoot::new();
    r.write("/etc/ssh/.imprint-new-ssh_host_ed25519_key", "half a key");
    r.write("/etc/ssh/.imprint-new-ssh_host_ed25519_key.pub", "half");
    let done = ensure(&Root::at(r.path()), &types(&["ed25519"]), true).unwrap();
    assert_eq!(done.generated.len(), 1);
    assert!(!r
        .join("/etc/ssh/.imprint-new-ssh_host_ed25519_key")
        .exists());
    assert!(r
        .read("/etc/ssh/ssh_host_ed25519_key.pub")
        .starts_with("ssh-ed25519 "));
}

#[test]
fn etc_ssh_leading_outside_the_root_is_refused() {
    let r = TempRoot::new();
    let outside = TempRoot::new();
    std::fs::create_dir_all(r.join("/etc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("/etc/ssh")).unwrap();
    let e = ensure(&Root::at(r.path()), &types(&["ed25519"]), true).unwrap_err();
    assert!(matches!(e, HostKeyError::Escapes { .. }), "{e}");
    assert!(e.to_string().starts_with("failed to use "), "{e}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        imprint::Error::from(e).exit_code(),
        imprint::ExitCode::TempFail
    );
}
