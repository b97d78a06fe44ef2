//! Black-box tests of `imprint status`, `verify` and `clean` on temp roots,
//! with state written through the library (the run pipeline is tested in
//! tests/run_*.rs).

mod common;

use common::*;
use imprint::apply::Written;
use imprint::report::{Report, StageReport};
use imprint::root::Root;
use imprint::seal::Seal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

fn report(status: &str, code: i32) -> Report {
    Report {
        version: "0.1.0".into(),
        command: "run".into(),
        status: status.into(),
        exit_code: code,
        instance_id: Some("i-0123".into()),
        datasource: Some("file".into()),
        started: "2026-11-22T00:35:29Z".into(),
        stages: vec![StageReport {
            stage: "apply".into(),
            start_ms: 0.5,
            duration_ms: 1.5,
            outcome: "ok".into(),
        }],
        files_written: vec!["/etc/app.env".into()],
        files_unchanged: vec![],
        units: vec![],
        warnings: vec!["part 1: bootcmd: not supported".into()],
        error: (code != 0).then(|| "failed to write /etc/x: boom".into()),
        main_monotonic_ms: 0.0,
        report_ms: 0.0,
        boot_id: None,
    }
}

fn seal_of(root: &TempRoot, paths: &[&str]) -> Seal {
    Seal {
        instance_id: "i-0123".into(),
        user_data_sha256: "00".repeat(32),
        time: "2026-11-22T00:35:30Z".into(),
        version: "0.1.0".into(),
        datasource: "file".into(),
        files: paths
            .iter()
            .map(|p| {
                let md = std::fs::metadata(root.join(p)).unwrap();
                Written {
                    path: p.to_string(),
                    sha256: sha(&std::fs::read(root.join(p)).unwrap()),
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                }
            })
            .collect(),
        units: vec![],
        journal: None,
        host_keys: None,
    }
}

fn sha(b: &[u8]) -> String {
    imprint::pipeline::sha256_hex(b)
}

fn status(root: &TempRoot, extra: &[&str]) -> std::process::Output {
    run(imprint()
        .arg("status")
        .arg("--root")
        .arg(root.path())
        .args(extra))
}

#[test]
fn status_not_run_yet_is_0_and_changes_nothing() {
    let root = TempRoot::new();
    let before = tree_hash(root.path(), &[]);
    let o = status(&root, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("status:        not-run"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("has not run"), "{}", stdout(&o));
    let o = status(&root, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "not-run");
    assert_eq!(v["running"], false);
    assert_eq!(tree_hash(root.path(), &[]), before, "status writes nothing");
}

#[test]
fn status_done_and_failed() {
    let root = TempRoot::new();
    let r = Root::at(root.path());
    imprint::report::write(&r, &report("done", 0)).unwrap();
    imprint::seal::write(
        &r,
        &Seal {
            files: vec![],
            ..seal_of(&root, &[])
        },
    )
    .unwrap();
    let o = status(&root, &[]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    for want in [
        "status:        done",
        "instance-id:   i-0123",
        "datasource:    file",
        "last run:      2026-11-22T00:35:29Z (exit 0)",
        "sealed:        yes, at 2026-11-22T00:35:30Z by imprint 0.1.0",
        "files written: 1",
        "  /etc/app.env",
        "warnings:",
        "  part 1: bootcmd: not supported",
        "error:         none",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    imprint::report::write(&r, &report("failed", 73)).unwrap();
    let o = status(&root, &[]);
    assert_eq!(code(&o), 1, "a failed last run is exit 1");
    assert!(stdout(&o).contains("error:         failed to write /etc/x: boom"));
    let o = status(&root, &["--json"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["report"]["exit_code"], 73);
    assert_eq!(v["seal"]["instance_id"], "i-0123");
    assert_eq!(v["report"]["stages"][0]["stage"], "apply");
}

#[test]
fn status_wait_waits_for_the_lock() {
    let root = TempRoot::new();
    let r = Root::at(root.path());
    imprint::report::write(&r, &report("done", 0)).unwrap();
    let lock = imprint::state::lock(&r).unwrap();
    let o = status(&root, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "running");
    assert_eq!(v["running"], true);
    let mut child = imprint()
        .arg("status")
        .arg("--wait")
        .arg("--root")
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "--wait returned while locked"
    );
    drop(lock);
    // It polls every 100 ms: it must return once the lock is gone. The
    // bound only catches a hang; it is generous because a loaded CI machine
    // can starve a child for seconds (a 5 s bound failed there once).
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("--wait still running 60 s after the lock was released");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("status:        done"), "{}", stdout(&o));
}

#[test]
fn verify_clean_drift_and_no_seal() {
    let root = TempRoot::new();
    let r = Root::at(root.path());
    let verify = |extra: &[&str]| {
        run(imprint()
            .arg("verify")
            .arg("--root")
            .arg(root.path())
            .args(extra))
    };
    let o = verify(&[]);
    assert_eq!(code(&o), 1, "no seal fails closed");
    assert!(stdout(&o).contains("no seal at"), "{}", stdout(&o));

    for (p, c) in [
        ("/etc/a.conf", "a"),
        ("/etc/b.conf", "b"),
        ("/etc/c.conf", "c"),
        ("/etc/d.conf", "d"),
    ] {
        root.write(p, c);
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let paths = ["/etc/a.conf", "/etc/b.conf", "/etc/c.conf", "/etc/d.conf"];
    imprint::seal::write(&r, &seal_of(&root, &paths)).unwrap();
    let o = verify(&[]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("4 file(s) match the seal"),
        "{}",
        stdout(&o)
    );

    root.write("/etc/a.conf", "tampered");
    std::fs::set_permissions(
        root.join("/etc/b.conf"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::remove_file(root.join("/etc/c.conf")).unwrap();
    std::os::unix::fs::chown(root.join("/etc/d.conf"), Some(4321), Some(4321)).unwrap();
    let o = verify(&[]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("/etc/a.conf: content"), "{out}");
    assert!(
        lines[1].starts_with("/etc/b.conf: mode (now 0666, sealed 0640)"),
        "{out}"
    );
    assert_eq!(lines[2], "/etc/c.conf: missing");
    assert!(
        lines[3].starts_with("/etc/d.conf: owner (now 4321:4321"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("drift found in 4 file(s)"),
        "{}",
        stderr(&o)
    );
    let o = verify(&["--json"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checked"], 4);
    assert_eq!(v["drift"][2]["what"][0], "missing");
}

#[test]
fn clean_forgets_the_instance() {
    let root = TempRoot::new();
    let r = Root::at(root.path());
    root.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    std::fs::set_permissions(
        root.join("/etc/machine-id"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    imprint::report::write(&r, &report("done", 0)).unwrap();
    imprint::seal::write(&r, &seal_of(&root, &["/etc/machine-id"])).unwrap();

    // A run in progress: exit 75, nothing removed.
    let lock = hold_run_lock(root.path());
    let before = tree_hash(root.path(), &[]);
    let o = run(imprint()
        .arg("clean")
        .arg("--machine-id")
        .arg("--root")
        .arg(root.path()));
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another imprint run holds"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_hash(root.path(), &[]), before);
    drop(lock);

    let o = run(imprint().arg("clean").arg("--root").arg(root.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed /var/lib/imprint/sealed"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("removed /var/lib/imprint/report.json"));
    assert!(!root.join("/var/lib/imprint/sealed").exists());
    assert!(!root.join("/var/lib/imprint/report.json").exists());
    assert_eq!(
        root.read("/etc/machine-id").len(),
        33,
        "kept without --machine-id"
    );

    let o = run(imprint()
        .arg("clean")
        .arg("--machine-id")
        .arg("--root")
        .arg(root.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("emptied /etc/machine-id"),
        "{}",
        stdout(&o)
    );
    let md = std::fs::metadata(root.join("/etc/machine-id")).unwrap();
    assert_eq!(md.len(), 0);
    assert_eq!(md.mode() & 0o7777, 0o444);
    let o = status(&root, &[]);
    assert!(stdout(&o).contains("not-run"), "{}", stdout(&o));
}

#[test]
fn clean_host_keys_removes_the_builds_keys_only_when_instances_make_their_own() {
    let root = TempRoot::new();
    let keys = [
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/ssh/ssh_host_rsa_key-cert.pub",
    ];
    for k in keys {
        root.write(k, "a key of the build machine\n");
    }
    root.write("/etc/ssh/sshd_config", "PermitRootLogin no\n");
    root.write("/etc/ssh/moduli", "moduli\n");
    let clean = || {
        run(imprint()
            .arg("clean")
            .arg("--host-keys")
            .arg("--root")
            .arg(root.path()))
    };

    // No manifest, then one without ssh_host_keys: refused (65), nothing
    // removed, the report kept too (all or nothing; the run lock under
    // /run aside).
    let r = Root::at(root.path());
    imprint::report::write(&r, &report("done", 0)).unwrap();
    let before = tree_hash(root.path(), &["run"]);
    let o = clean();
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("refusing to remove the image's ssh host keys: there is no manifest at"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_hash(root.path(), &["run"]), before);
    root.write("/etc/imprint/imprint.yaml", "values: {}\nfiles: []\n");
    let before = tree_hash(root.path(), &["run"]);
    let o = clean();
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("lists no ssh_host_keys, so nothing would give its instances keys of their own and sshd would not start there; list the key types under ssh_host_keys (docs/manifest.md), or keep the keys (drop --host-keys)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_hash(root.path(), &["run"]), before);

    // With ssh_host_keys: every ssh_host_*key* goes, the rest of /etc/ssh
    // stays.
    root.write(
        "/etc/imprint/imprint.yaml",
        "values: {}\nfiles: []\nssh_host_keys: [ed25519]\n",
    );
    let o = clean();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for k in keys {
        assert!(!root.join(k).exists(), "{k} left");
        assert!(
            stdout(&o).contains(&format!("removed {k} (each instance makes its own)")),
            "{}",
            stdout(&o)
        );
    }
    assert!(stdout(&o).contains("removed /var/lib/imprint/report.json"));
    assert_eq!(root.read("/etc/ssh/sshd_config"), "PermitRootLogin no\n");
    assert_eq!(root.read("/etc/ssh/moduli"), "moduli\n");
    let o = clean();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no ssh host keys in /etc/ssh (instances make their own)"),
        "{}",
        stdout(&o)
    );
}
