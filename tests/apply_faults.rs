//! Fault injection (needs `cargo test --features failpoints`): a failure
//! between two writes is rolled back at once; a real `kill -9` in the middle
//! of apply leaves a journal that the next run rolls back. Either way the
//! root ends fully old or fully new, never mixed.
#![cfg(feature = "failpoints")]

mod apply_support;
mod common;

use apply_support::*;
use common::*;
use std::io::BufRead;
use std::process::Stdio;

const ID: &str = "i-1";

fn journal(root: &TempRoot) -> std::path::PathBuf {
    root.join("/var/lib/imprint/journal.json")
}

#[test]
fn failure_between_writes_rolls_back_to_fully_old() {
    let ud = user_data("db1.internal");
    let new = fully_new_hash(&ud, ID);
    for n in [0, 1, 2, 4, 5] {
        let root = image_root();
        std::fs::write(root.join("/ud"), &ud).unwrap();
        let old = hash(&root);
        let o =
            run(run_cmd(&root, &ud, ID).env("IMPRINT_FAILPOINT", format!("apply:after-write:{n}")));
        assert_eq!(code(&o), 73, "n={n}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("every file was rolled back"),
            "{}",
            stderr(&o)
        );
        assert_eq!(hash(&root), old, "n={n}: fully old");
        only_report_left(&root);
        assert_no_secret(&o, SECRET);
        // And the next run (no fault) makes it fully new.
        let o = run_ud(&root, &ud, ID);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(hash(&root), new, "n={n}: fully new");
    }
}

/// Start a run that pauses after `n` files (failpoint `sleep`), wait until
/// it says so, and `kill -9` it by its PID.
fn kill_mid_apply(root: &TempRoot, ud: &str, n: usize) {
    let mut child = run_cmd(root, ud, ID)
        .env("IMPRINT_FAILPOINT", format!("apply:after-write:{n}:sleep"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(err).lines() {
        let line = line.unwrap();
        let hit = line.contains(&format!("failpoint apply:after-write:{n}: sleeping"));
        seen.push(line);
        if hit {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("sleeping")),
        "the run never reached the fail point:\n{}",
        seen.join("\n")
    );
    // SIGKILL, by PID: no destructor, no rollback, nothing runs.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn kill_9_mid_apply_then_next_run_rolls_back_and_finishes() {
    let ud = user_data("db1.internal");
    let new = fully_new_hash(&ud, ID);
    let root = image_root();
    std::fs::write(root.join("/ud"), &ud).unwrap();
    let old = hash(&root);
    kill_mid_apply(&root, &ud, 2);
    // Mixed: two files new, the rest old; the journal says what to undo.
    let mid = hash(&root);
    assert_ne!(mid, old, "the kill left some files written");
    assert_ne!(mid, new, "the kill left some files unwritten");
    assert!(journal(&root).exists(), "the journal survives the kill");
    // It holds the previous versions only: the new secret is not in it.
    assert_file_has_no(&journal(&root), SECRET);
    assert!(root.read("/opt/app/conf.env").contains("db1.internal"));
    assert_eq!(root.read("/etc/default/worker"), "WORKER_DB=\"old\"\n");
    // The kernel dropped the lock with the process: the next run starts,
    // rolls back, and writes everything.
    let o = run_ud(&root, &ud, ID);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rolled back an interrupted run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hash(&root), new, "fully new");
    assert!(!journal(&root).exists());
    let v = run(imprint().arg("verify").arg("--root").arg(root.path()));
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn kill_9_mid_apply_then_a_failing_run_leaves_fully_old() {
    let ud = user_data("db1.internal");
    let root = image_root();
    std::fs::write(root.join("/ud"), &ud).unwrap();
    let old = hash(&root);
    kill_mid_apply(&root, &ud, 3);
    assert_ne!(hash(&root), old);
    // The next run has bad user-data: it recovers first, then fails at
    // validation, so the root is fully old.
    let bad = format!("#cloud-config\nimprint:\n  db:\n    password: {SECRET}\n");
    let o = run_ud(&root, &bad, ID);
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    std::fs::write(root.join("/ud"), &ud).unwrap();
    assert_eq!(hash(&root), old, "fully old");
    only_report_left(&root);
}

#[test]
fn abort_mid_apply_is_recovered_by_clean() {
    let ud = user_data("db1.internal");
    let root = image_root();
    std::fs::write(root.join("/ud"), &ud).unwrap();
    let old = hash(&root);
    let o = run(run_cmd(&root, &ud, ID).env("IMPRINT_FAILPOINT", "apply:after-write:4:abort"));
    assert_eq!(o.status.code(), None, "killed by SIGABRT: {}", stderr(&o));
    assert!(journal(&root).exists());
    // An image build's last step must not bake half a config into the image.
    let c = run(imprint().arg("clean").arg("--root").arg(root.path()));
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    assert!(
        stdout(&c).contains("rolled back an interrupted run"),
        "{}",
        stdout(&c)
    );
    assert_eq!(hash(&root), old, "fully old");
    assert!(!journal(&root).exists());
}
