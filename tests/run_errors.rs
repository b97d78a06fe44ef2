//! Black-box: bad inputs and unwritable targets each exit with their code,
//! name the cause, and leave the root byte-for-byte unchanged (imprint's own
//! state directory and lock excepted: see docs/state.md).

mod apply_support;
mod common;

use apply_support::*;
use common::*;

/// Run, expect `want`, expect every `needles` in stderr, and expect the root
/// unchanged and only report.json left in the state directory.
fn fails_cleanly(root: &TempRoot, ud: &str, want: i32, needles: &[&str]) -> String {
    std::fs::write(root.path().join("ud"), ud).unwrap();
    let before = hash(root);
    let o = run(&mut run_cmd(root, ud, "i-1"));
    let err = stderr(&o);
    assert_eq!(code(&o), want, "{err}");
    for n in needles {
        let lower = err.to_lowercase();
        assert!(
            lower.contains(&n.to_lowercase()),
            "missing {n:?} in:\n{err}"
        );
    }
    assert_eq!(hash(root), before, "root changed:\n{err}");
    only_report_left(root);
    let s = run(imprint().arg("status").arg("--root").arg(root.path()));
    assert_eq!(code(&s), 1, "status says the last run failed");
    assert_no_secret(&o, SECRET);
    err
}

/// `chattr +i`, undone on drop (even when the test fails) so the temp root
/// can be removed.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(p: std::path::PathBuf) -> Immutable {
        let o = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&p)
            .output()
            .expect("chattr (e2fsprogs) is needed");
        assert!(
            o.status.success(),
            "chattr +i {} failed (the test needs root and a file system with attributes): {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        Immutable(p)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn invalid_user_data_is_65() {
    let root = image_root();
    let ud = format!("#cloud-config\nimprint:\n  db: {{host: [unclosed, password: {SECRET}\n");
    let err = fails_cleanly(&root, &ud, 65, &["part 1", "line"]);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_required_value_is_65() {
    let root = image_root();
    let ud = format!("#cloud-config\nimprint:\n  db:\n    password: {SECRET}\n");
    fails_cleanly(&root, &ud, 65, &["db.host", "required"]);
}

#[test]
fn secret_of_the_wrong_type_is_65_and_masked() {
    let root = image_root();
    let ud =
        "#cloud-config\nimprint:\n  db:\n    host: h\n    password: [Zebra-Secret-In-A-List]\n";
    let err = fails_cleanly(&root, ud, 65, &["db.password"]);
    assert!(!err.contains("Zebra-Secret-In-A-List"), "{err}");
    let report = std::fs::read_to_string(root.join("/var/lib/imprint/report.json")).unwrap();
    assert!(!report.contains("Zebra-Secret-In-A-List"), "{report}");
}

#[test]
fn template_error_is_65() {
    let root = image_root();
    root.write(
        "/etc/imprint/templates/dropin.conf.hbs",
        "[Service]\nEnvironment=X={{no.such.key}}\n",
    );
    fails_cleanly(
        &root,
        &user_data("db1"),
        65,
        &["dropin.conf.hbs", "no.such.key"],
    );
}

#[test]
fn parent_dir_in_write_files_path_is_65() {
    let root = image_root();
    let ud = format!(
        "#cloud-config\nimprint: {{db: {{host: h, password: {SECRET}}}}}\nwrite_files:\n  - path: /etc/../../../evil\n    content: x\n"
    );
    fails_cleanly(&root, &ud, 65, &["write_files[0].path", ".."]);
    assert!(!root.path().parent().unwrap().join("evil").exists());
}

#[test]
fn directory_in_the_way_is_73() {
    let root = image_root();
    std::fs::remove_file(root.join("/etc/default/worker")).unwrap();
    std::fs::create_dir_all(root.join("/etc/default/worker/keep")).unwrap();
    fails_cleanly(
        &root,
        &user_data("db1"),
        73,
        &["/etc/default/worker", "directory"],
    );
}

#[test]
fn file_where_a_parent_directory_should_be_is_73() {
    let root = image_root();
    std::fs::remove_dir(root.join("/opt")).unwrap();
    root.write("/opt", "a file, not a directory\n");
    fails_cleanly(
        &root,
        &user_data("db1"),
        73,
        &["/opt/app/conf.env", "not a directory"],
    );
}

#[test]
fn symlink_out_of_the_root_is_73_and_nothing_escapes() {
    for (link, target) in [
        ("/etc/systemd", None),
        ("/opt/app", Some("../../../../../../../..")),
    ] {
        let root = image_root();
        let outside = tempfile::tempdir().unwrap();
        let target = target
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| outside.path().to_path_buf());
        std::os::unix::fs::symlink(&target, root.join(link)).unwrap();
        fails_cleanly(&root, &user_data("db1"), 73, &[link, "outside"]);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

#[test]
fn symlink_at_the_target_is_73() {
    let root = image_root();
    root.write("/etc/motd.real", "real\n");
    std::os::unix::fs::symlink("motd.real", root.join("/etc/motd")).unwrap();
    fails_cleanly(&root, &user_data("db1"), 73, &["/etc/motd", "link"]);
    assert_eq!(root.read("/etc/motd.real"), "real\n");
}

#[test]
fn immutable_target_fails_part_way_and_everything_is_rolled_back() {
    let root = image_root();
    // Two files are written before /etc/default/worker (immutable) fails.
    let _guard = Immutable::set(root.join("/etc/default/worker"));
    let err = fails_cleanly(
        &root,
        &user_data("db1"),
        73,
        &["/etc/default/worker", "every file was rolled back"],
    );
    assert!(err.contains("rolling back"), "{err}");
    assert!(
        !root.join("/opt/app").exists(),
        "created directories removed"
    );
    assert!(
        !root.join("/etc/systemd").exists(),
        "created directories removed"
    );
}

#[test]
fn immutable_directory_fails_and_is_rolled_back() {
    let root = image_root();
    std::fs::create_dir_all(root.join("/etc/app")).unwrap();
    let _guard = Immutable::set(root.join("/etc/app"));
    fails_cleanly(
        &root,
        &user_data("db1"),
        73,
        &["/etc/app/licence.key", "every file was rolled back"],
    );
}

/// A value the `env:` shorthand cannot quote (a newline, a NUL) is 65, and
/// the error gives the manifest line and column of the `env:` key besides
/// the file and the variable; nothing is written.
#[test]
fn env_shorthand_refused_value_names_the_manifest_line_and_column() {
    let manifest = "version: 1\nvalues:\n  db.host: { type: string, required: true }\n  db.port: { type: integer, default: 5432 }\nfiles:\n  - path: /etc/motd\n    env: {MOTD_PORT: db.port}\n  - path: /etc/default/worker\n    env:\n      WORKER_PORT: db.port\n      WORKER_DB:   db.host\n";
    for (value, what) in [("db1\\nevil", "a newline"), ("db1\\u0000", "a NUL byte")] {
        let root = TempRoot::new();
        root.write("/etc/imprint/imprint.yaml", manifest);
        root.write(
            "/ud",
            format!("{{\"db\": {{\"host\": \"{value}\", \"port\": 1}}}}\n"),
        );
        let before = tree_hash(root.path(), &["run", "var", "ud"]);
        for cmd in ["validate", "run"] {
            let o = run(imprint()
                .arg(cmd)
                .arg("--root")
                .arg(root.path())
                .arg("--user-data")
                .arg(root.join("/ud"))
                .args(["--instance-id", "i-1"]));
            let err = stderr(&o);
            assert_eq!(code(&o), 65, "{cmd}: {err}");
            let want = format!(
                "manifest files[1] (/etc/default/worker): env.WORKER_DB (line 11, column 7 of {}): failed to quote value db.host for env: the value has {what} at byte 3",
                root.join("/etc/imprint/imprint.yaml").display()
            );
            assert!(err.contains(&want), "{cmd}: {want:?} in:\n{err}");
            // env: has no helpers: the advice is a template, not one.
            assert!(
                err.contains("write this file from a template instead (template:, with {{base64 db.host}} for this variable)"),
                "{cmd}: {err}"
            );
        }
        assert_eq!(
            tree_hash(root.path(), &["run", "var", "ud"]),
            before,
            "nothing written"
        );
        assert!(!root.join("/etc/default/worker").exists());
    }
}
