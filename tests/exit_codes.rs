//! Exit codes are a tested contract (SPEC §2): each code, from the binary.

mod apply_support;
mod common;

use common::*;
use imprint::root::Root;

#[test]
fn usage_errors_exit_64_help_and_version_0() {
    for args in [
        vec!["--no-such-flag"],
        vec![],
        vec!["no-such-command"],
        vec!["status", "--bogus"],
        vec!["run", "--root"],
    ] {
        let o = run(imprint().args(&args));
        assert_eq!(code(&o), 64, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?}: says what was wrong");
    }
    let o = run(imprint().arg("--help"));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Usage"), "{}", stdout(&o));
    let o = run(imprint().arg("--version"));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")));
}

/// Mistakes in the datasource flags (and `IMPRINT_METADATA_URL`, which
/// stands for `--metadata-url`) are usage, 64, each naming the flag and
/// what to do, before anything is read or written; 69 stays for a
/// datasource that nothing names or that does not answer.
#[test]
fn datasource_flag_mistakes_are_64_and_change_nothing() {
    let root = image_root();
    let ud = root.join("/ud");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    let ud = ud.to_str().unwrap().to_string();
    let before = tree_hash(root.path(), STATE);
    for (args, env, says) in [
        (
            vec!["--user-data", &ud, "--datasource", "ec2"],
            None,
            "--user-data reads the file datasource, but --datasource names ec2; drop one of them",
        ),
        (
            vec!["--datasource", "bogus"],
            None,
            "unknown datasource \"bogus\" (from --datasource); pass --datasource with one of: file, nocloud,",
        ),
        (
            vec!["--datasource", "file"],
            None,
            "the file datasource needs --user-data FILE|- (it was named by --datasource); pass --user-data",
        ),
        (
            vec!["--metadata-url", "notaurl", "--datasource", "ec2"],
            None,
            "--metadata-url (or IMPRINT_METADATA_URL) \"notaurl\" must be an http:// URL",
        ),
        (
            vec!["--datasource", "gce"],
            Some("https://127.0.0.1:1"),
            "--metadata-url (or IMPRINT_METADATA_URL) \"https://127.0.0.1:1\" must be an http:// URL",
        ),
    ] {
        for cmd in ["plan", "run", "fetch", "identify"] {
            let mut c = imprint();
            c.arg(cmd).arg("--root").arg(root.path()).args(&args);
            if let Some(url) = env {
                c.env("IMPRINT_METADATA_URL", url);
            }
            let o = run(&mut c);
            assert_eq!(code(&o), 64, "{cmd} {args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(says), "{cmd} {args:?}: {}", stderr(&o));
        }
        // `run` left its report (a failed run's), nothing else.
        only_report_left(&root);
        assert_eq!(tree_hash(root.path(), STATE), before, "{args:?}");
    }
    // Still 69: the flags are fine, but the datasource does not answer
    // (nothing listens on port 1).
    let mut c = imprint();
    c.args(["plan", "--root"]).arg(root.path()).args([
        "--datasource",
        "ec2",
        "--metadata-url",
        "http://127.0.0.1:1",
    ]);
    root.write("/etc/imprint/imprint.yaml", "datasource:\n  timeout: 1s\n");
    let o = run(&mut c);
    assert_eq!(code(&o), 69, "{}", stderr(&o));
}

/// imprint's own bookkeeping, the one exception to "nothing changed": a
/// failed run leaves report.json (checked: and nothing else) and the lock.
const STATE: &[&str] = &["var/lib/imprint", "run/imprint"];

/// A root shaped like an image: the directories imprint's state lives in.
fn image_root() -> TempRoot {
    let root = TempRoot::new();
    for d in ["etc", "var/lib", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    root
}

fn only_report_left(root: &TempRoot) {
    let d = root.join("/var/lib/imprint");
    if d.exists() {
        assert_eq!(
            common::names_in(&d),
            vec!["report.json"],
            "no journal, no seal left"
        );
    }
}

#[test]
fn ok_is_0() {
    let root = TempRoot::new();
    let o = run(imprint().arg("status").arg("--root").arg(root.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn invalid_manifest_is_65_and_changes_nothing() {
    let root = image_root();
    root.write("/etc/imprint/imprint.yaml", "version: 1\nvalues: [oops\n");
    let before = tree_hash(root.path(), STATE);
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg("-"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("imprint.yaml"), "{}", stderr(&o));
    assert_eq!(tree_hash(root.path(), STATE), before);
    only_report_left(&root);
}

/// `datasource.timeout: 0` would fail every network fetch at once: an
/// invalid manifest (65) that names the key and the fix, found by
/// `validate` at image build time. One as long as imprint.service's
/// TimeoutStartSec= passes, with a warning on stderr.
#[test]
fn zero_datasource_timeout_is_65_and_a_long_one_warns() {
    let root = image_root();
    let ud = root.join("/ud");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    let validate = || {
        run(imprint()
            .arg("validate")
            .arg("--root")
            .arg(root.path())
            .arg("--user-data")
            .arg(&ud))
    };
    root.write("/etc/imprint/imprint.yaml", "datasource:\n  timeout: 0s\n");
    let o = validate();
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "imprint.yaml: datasource.timeout: line 2, column 3: \"0s\" leaves no time for any request"
        ),
        "{err}"
    );
    assert!(err.contains("give a budget like 60s"), "{err}");
    root.write("/etc/imprint/imprint.yaml", "datasource:\n  timeout: 2m\n");
    let o = validate();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("WARN manifest ")
            && err.contains("imprint.yaml: datasource.timeout: 120s is not shorter than imprint.service's TimeoutStartSec=120s"),
        "{err}"
    );
    // A run lists it in its report too.
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(&ud));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report = root.read("/var/lib/imprint/report.json");
    assert!(
        report.contains("datasource.timeout: 120s is not shorter than"),
        "{report}"
    );
    root.write("/etc/imprint/imprint.yaml", "datasource:\n  timeout: 60s\n");
    let o = validate();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("datasource.timeout"), "{}", stderr(&o));
}

#[test]
fn lock_held_is_75_and_changes_nothing() {
    let root = image_root();
    root.write("/etc/motd", "hello\n");
    let lock = imprint::state::lock(&Root::at(root.path())).unwrap();
    let before = tree_hash(root.path(), &[]);
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg("/dev/null"));
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another imprint run holds"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("run/imprint/lock"), "{}", stderr(&o));
    assert_eq!(tree_hash(root.path(), &[]), before, "not even a report");
    drop(lock);
}

#[test]
fn verify_drift_is_1() {
    let root = TempRoot::new();
    root.write("/etc/a", "a");
    let r = Root::at(root.path());
    imprint::seal::write(
        &r,
        &imprint::seal::Seal {
            instance_id: "i-1".into(),
            user_data_sha256: String::new(),
            time: String::new(),
            version: String::new(),
            datasource: String::new(),
            files: vec![imprint::apply::Written {
                path: "/etc/a".into(),
                sha256: imprint::pipeline::sha256_hex(b"not a"),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }],
            units: vec![],
            journal: None,
            host_keys: None,
        },
    )
    .unwrap();
    let o = run(imprint().arg("verify").arg("--root").arg(root.path()));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("/etc/a: content"), "{}", stdout(&o));
}

#[test]
fn no_datasource_is_69_and_changes_nothing() {
    let root = image_root();
    let before = tree_hash(root.path(), STATE);
    let o = run(imprint().arg("run").arg("--root").arg(root.path()));
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains("no datasource"), "{}", stderr(&o));
    assert_eq!(tree_hash(root.path(), STATE), before);
    only_report_left(&root);
}

fn seal_for(root: &TempRoot, id: &str, user_data: &[u8]) {
    imprint::seal::write(
        &Root::at(root.path()),
        &imprint::seal::Seal {
            instance_id: id.into(),
            user_data_sha256: imprint::pipeline::sha256_hex(user_data),
            time: "2026-11-22T00:35:29Z".into(),
            version: "0.1.0".into(),
            datasource: "file".into(),
            files: vec![],
            units: vec![],
            journal: None,
            host_keys: None,
        },
    )
    .unwrap();
}

#[test]
fn sealed_is_77_and_changes_nothing() {
    let root = image_root();
    root.write("/ud", "#cloud-config\nimprint: {x: 1}\n");
    seal_for(&root, "i-1", b"#cloud-config\nimprint: {x: 1}\n");
    let before = tree_hash(root.path(), &["run/imprint"]);
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(root.join("/ud"))
        .arg("--instance-id")
        .arg("i-1"));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(stderr(&o).contains("already configured"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("WARN"), "{}", stderr(&o));
    assert_eq!(
        tree_hash(root.path(), &["run/imprint"]),
        before,
        "not even a report"
    );
}

#[test]
fn sealed_with_changed_user_data_is_77_and_loud() {
    let root = image_root();
    root.write("/ud", "#cloud-config\nimprint: {x: 2}\n");
    seal_for(&root, "i-1", b"#cloud-config\nimprint: {x: 1}\n");
    let before = tree_hash(root.path(), &["run/imprint"]);
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(root.join("/ud"))
        .arg("--instance-id")
        .arg("i-1"));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("WARN"), "{err}");
    assert!(
        err.contains("user-data changed since instance i-1 was configured; not re-applied"),
        "{err}"
    );
    assert_eq!(tree_hash(root.path(), &["run/imprint"]), before);
    // Unreadable local user-data on a sealed instance: the seal still wins.
    std::fs::remove_file(root.join("/ud")).unwrap();
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(root.join("/ud"))
        .arg("--instance-id")
        .arg("i-1"));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
}

#[test]
fn invalid_user_data_is_65_and_changes_nothing() {
    let root = apply_support::image_root();
    let ud = "#cloud-config\nimprint: {db: [oops\n";
    std::fs::write(root.join("/ud"), ud).unwrap();
    let before = apply_support::hash(&root);
    let o = apply_support::run_ud(&root, ud, "i-1");
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("part 1"), "{}", stderr(&o));
    assert_eq!(apply_support::hash(&root), before);
    apply_support::only_report_left(&root);
}

#[test]
fn unwritable_target_is_73_and_rolls_back() {
    let root = apply_support::image_root();
    std::fs::create_dir_all(root.join("/etc/motd")).unwrap();
    let ud = apply_support::user_data("db1");
    std::fs::write(root.join("/ud"), &ud).unwrap();
    let before = apply_support::hash(&root);
    let o = apply_support::run_ud(&root, &ud, "i-1");
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert!(stderr(&o).contains("/etc/motd"), "{}", stderr(&o));
    assert_eq!(apply_support::hash(&root), before);
    apply_support::only_report_left(&root);
}

#[test]
fn done_is_0() {
    let root = apply_support::image_root();
    let o = apply_support::run_ud(&root, &apply_support::user_data("db1"), "i-1");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn oversized_user_data_is_65_invalid_not_69_unavailable() {
    let root = image_root();
    let ud = root.join("/tmp/user-data");
    std::fs::create_dir_all(ud.parent().unwrap()).unwrap();
    // One byte past the 16 MiB cap of SPEC §1.3.
    std::fs::write(&ud, vec![b'#'; (16 << 20) + 1]).unwrap();
    let before = tree_hash(root.path(), STATE);
    let o = run(imprint()
        .args(["run", "--root"])
        .arg(root.path())
        .arg("--user-data")
        .arg(&ud));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
    assert_eq!(before, tree_hash(root.path(), STATE), "nothing changed");
}
