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
    kill_at(root, ud, &format!("apply:after-write:{n}"), &[]);
}

/// Start a run (with `extra` arguments) that pauses at fail point `point`,
/// wait until it says so, and `kill -9` it by its PID.
fn kill_at(root: &TempRoot, ud: &str, point: &str, extra: &[&str]) {
    let mut child = run_cmd(root, ud, ID)
        .args(extra)
        .env("IMPRINT_FAILPOINT", format!("{point}:sleep"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(err).lines() {
        let line = line.unwrap();
        let hit = line.contains(&format!("failpoint {point}: sleeping"));
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

fn state_names(root: &TempRoot) -> Vec<String> {
    common::names_in(&root.join("/var/lib/imprint"))
}

/// The end of a run (`apply::finish`) in its three steps: after the one
/// batch of syncs (directories + the seal's temp file), after the seal's
/// rename, after the journal's removal. A `kill -9` at each leaves the
/// root fully old or fully new after the next run, and a seal only where
/// the files are new.
#[test]
fn kill_9_at_each_step_of_the_seal() {
    let ud = user_data("db1.internal");
    let new = fully_new_hash(&ud, ID);
    for (n, sealed) in [(1, false), (2, true), (3, true)] {
        let root = image_root();
        std::fs::write(root.join("/ud"), &ud).unwrap();
        let old = hash(&root);
        kill_at(&root, &ud, &format!("apply:commit:{n}"), &[]);
        assert_eq!(hash(&root), new, "n={n}: every file is in place");
        assert_eq!(journal(&root).exists(), n < 3, "n={n}");
        assert_eq!(
            root.join("/var/lib/imprint/sealed").exists(),
            sealed,
            "n={n}"
        );
        if !sealed {
            // Before the seal: the next run that fails rolls back to fully
            // old, and no seal claims anything.
            let bad = format!("#cloud-config\nimprint:\n  db:\n    password: {SECRET}\n");
            let o = run_ud(&root, &bad, ID);
            assert_eq!(code(&o), 65, "n={n}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("rolled back an interrupted run"),
                "{}",
                stderr(&o)
            );
            std::fs::write(root.join("/ud"), &ud).unwrap();
            assert_eq!(hash(&root), old, "n={n}: fully old");
            assert!(!root.join("/var/lib/imprint/sealed").exists());
            // And the next good run makes it fully new and seals it.
            let o = run_ud(&root, &ud, ID);
            assert_eq!(code(&o), 0, "n={n}: {}", stderr(&o));
        } else {
            // The seal names the journal: the run finished; the next run
            // drops the journal, rolls nothing back, and is sealed (77).
            let o = run_ud(&root, &ud, ID);
            assert_eq!(code(&o), 77, "n={n}: {}", stderr(&o));
            assert!(!stderr(&o).contains("rolled back"), "{}", stderr(&o));
        }
        assert_eq!(hash(&root), new, "n={n}: fully new");
        assert!(!journal(&root).exists(), "n={n}");
        let names = state_names(&root);
        assert!(
            names.iter().all(|n| !n.contains("imprint-tmp")),
            "n={n}: no temp left: {names:?}"
        );
        let v = run(imprint().arg("verify").arg("--root").arg(root.path()));
        assert_eq!(code(&v), 0, "n={n}: {}", stdout(&v));
    }
}

/// `--force` over a sealed instance with new user-data, killed before its
/// seal is in place: the old seal stays and still describes the files,
/// because the next run rolls them back to what that seal sealed.
#[test]
fn kill_9_before_the_seal_of_a_forced_run_keeps_the_old_seal_true() {
    let ud1 = user_data("db1.internal");
    let ud2 = user_data("db2.internal");
    let root = image_root();
    let o = run_ud(&root, &ud1, ID);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let sealed1 = hash(&root);
    let seal1 = std::fs::read(root.join("/var/lib/imprint/sealed")).unwrap();
    kill_at(&root, &ud2, "apply:commit:1", &["--force"]);
    assert!(root.read("/opt/app/conf.env").contains("db2.internal"));
    assert_eq!(
        std::fs::read(root.join("/var/lib/imprint/sealed")).unwrap(),
        seal1
    );
    // The next boot (no --force, the new user-data): rolled back, then the
    // old seal says 77 and is true.
    let o = run_ud(&root, &ud2, ID);
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rolled back an interrupted run"),
        "{}",
        stderr(&o)
    );
    std::fs::write(root.join("/ud"), &ud1).unwrap();
    assert_eq!(hash(&root), sealed1, "fully old: what the seal sealed");
    let v = run(imprint().arg("verify").arg("--root").arg(root.path()));
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

/// On a sealed root a failed run keeps report.json only when it changed
/// nothing (tests/run_lifecycle.rs); one that reached apply, or rolled back
/// an interrupted run's writes, is recorded: `status` says it failed.
#[test]
fn a_failure_after_changes_on_a_sealed_root_is_recorded() {
    let ud = user_data("db1.internal");
    let ud2 = user_data("db2.internal");
    let root = image_root();
    assert_eq!(code(&run_ud(&root, &ud, ID)), 0);
    let status = || {
        let s = run(imprint()
            .arg("status")
            .arg("--json")
            .arg("--root")
            .arg(root.path()));
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        (code(&s), v["report"]["exit_code"].as_i64().unwrap())
    };
    let o = run(run_cmd(&root, &ud2, ID)
        .arg("--force")
        .env("IMPRINT_FAILPOINT", "apply:after-write:1"));
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert_eq!(status(), (1, 73), "written, rolled back: recorded");
    // An interrupted forced run, then one that rolls it back and fails
    // before apply (invalid user-data).
    kill_at(&root, &ud2, "apply:after-write:2", &["--force"]);
    let bad = format!("#cloud-config\nimprint:\n  db:\n    password: {SECRET}\n");
    let o = run(run_cmd(&root, &bad, ID).arg("--force"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rolled back an interrupted run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(status(), (1, 65), "files restored: recorded");
}

/// A torn journal (the crash came before its sync returned, so nothing
/// else was touched) is dropped with a warning, not an error.
#[test]
fn torn_journal_is_dropped_and_the_run_goes_on() {
    let ud = user_data("db1.internal");
    let new = fully_new_hash(&ud, ID);
    let root = image_root();
    std::fs::create_dir_all(root.join("/var/lib/imprint")).unwrap();
    std::fs::write(journal(&root), "imprint-journal 4242 0123").unwrap();
    let o = run_ud(&root, &ud, ID);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stopped before it changed any file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hash(&root), new);
}

/// A real `kill -9` at 40 moments spread over a whole run (no fail point:
/// wherever it lands), then a run with bad user-data, which recovers first
/// and stops before apply. Its exit says what the seal claims, and the root
/// must agree: 77 (sealed) only with every file new, 65 only with every
/// file old. Never mixed, never a seal over rolled-back files.
#[test]
fn kill_9_anywhere_leaves_old_and_unsealed_or_new_and_sealed() {
    let ud = user_data("db1.internal");
    let new = fully_new_hash(&ud, ID);
    let bad = format!("#cloud-config\nimprint:\n  db:\n    password: {SECRET}\n");
    let (mut old_n, mut new_n) = (0, 0);
    for i in 0..40u64 {
        let root = image_root();
        std::fs::write(root.join("/ud"), &ud).unwrap();
        let old = hash(&root);
        let mut child = run_cmd(&root, &ud, ID)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(i * 1000));
        let _ = child.kill();
        let _ = child.wait();
        let o = run_ud(&root, &bad, ID);
        std::fs::write(root.join("/ud"), &ud).unwrap();
        match code(&o) {
            77 => {
                assert_eq!(hash(&root), new, "i={i}: sealed, so fully new");
                new_n += 1;
            }
            65 => {
                assert_eq!(hash(&root), old, "i={i}: not sealed, so fully old");
                old_n += 1;
            }
            c => panic!("i={i}: exit {c}: {}", stderr(&o)),
        }
        assert!(!journal(&root).exists(), "i={i}");
    }
    eprintln!("killed before the seal: {old_n}, after: {new_n}");
}
