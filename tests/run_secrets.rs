//! Black-box: a secret value never appears in stdout, stderr (even with
//! -v), report.json, the seal, `status`, `status --json`, `verify`, or
//! `plan`, on success and on failure; only in the file that needs it.

mod apply_support;
mod common;

use apply_support::*;
use common::*;

fn every_output(root: &TempRoot) -> Vec<(String, std::process::Output)> {
    let mut v = Vec::new();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["verify"],
        vec!["verify", "--json"],
    ] {
        let o = run(imprint().args(&args).arg("--root").arg(root.path()));
        v.push((args.join(" "), o));
    }
    v
}

#[test]
fn secret_never_leaves_the_file_that_needs_it() {
    let root = image_root();
    let ud = user_data("db1.internal");
    let plan = run(imprint()
        .arg("plan")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg({
            std::fs::write(root.join("/ud"), &ud).unwrap();
            root.join("/ud")
        })
        .arg("--instance-id")
        .arg("i-1"));
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains("/opt/app/conf.env"),
        "{}",
        stdout(&plan)
    );
    assert_no_secret(&plan, SECRET);

    let o = run(run_cmd(&root, &ud, "i-1").arg("--verbose"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_secret(&o, SECRET);
    // It is where it belongs (so the greps above can fail)...
    assert!(root.read("/opt/app/conf.env").contains(SECRET));
    // ...and nowhere in imprint's state.
    for f in ["/var/lib/imprint/report.json", "/var/lib/imprint/sealed"] {
        assert!(root.join(f).exists(), "{f}");
        assert_file_has_no(&root.join(f), SECRET);
    }
    for (what, o) in every_output(&root) {
        assert_no_secret(&o, SECRET);
        assert!(!stdout(&o).is_empty(), "{what} printed something");
    }
    // Sealed re-run with changed user-data (the secret is in the new text).
    let o = run_ud(&root, &user_data("db2.internal"), "i-1");
    assert_eq!(code(&o), 77);
    assert_no_secret(&o, SECRET);
}

#[test]
fn secret_stays_out_of_a_failed_run() {
    let root = image_root();
    // Fails at apply (directory in the way) after rendering the secret.
    std::fs::create_dir_all(root.join("/etc/motd")).unwrap();
    let o = run(run_cmd(&root, &user_data("db1.internal"), "i-1").arg("-v"));
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert_no_secret(&o, SECRET);
    assert_file_has_no(&root.join("/var/lib/imprint/report.json"), SECRET);
    for (_, o) in every_output(&root) {
        assert_no_secret(&o, SECRET);
    }
}
