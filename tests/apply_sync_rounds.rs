//! How many durability barriers a run pays, counted with strace on the
//! demo: the number of *sequential* sync calls is most of a run's time on
//! a disk (docs/benchmarks.md), so it is part of the contract, not an
//! accident. On ext4, xfs and btrfs a round of several files is one
//! `syncfs`; elsewhere each file is fsynced (docs/state.md, "Durability").
//!
//! Needs strace (apt package `strace`; .ci/run installs it).

mod common;

use common::{code, copy_tree, imprint, stderr};
use std::path::Path;
use std::process::Command;

/// The file system type of `dir` as `stat -f` names it.
fn fs_type(dir: &Path) -> String {
    let o = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .expect("stat");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The sync system calls of one `imprint run`, in order (`syncfs`,
/// `fsync`, `fdatasync`).
fn syncs_of_run(root: &Path, extra: &[&str]) -> Vec<String> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let trace = root.with_extension("strace");
    let cmd = imprint();
    let bin = cmd.get_program().to_owned();
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
        .arg(&trace)
        .arg(bin)
        .args(["run", "--root"])
        .arg(root)
        .arg("--user-data")
        .arg(demo.join("user-data.b64"))
        .args(["--instance-id", "i-sync"])
        .args(extra)
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .expect("strace (apt-get install strace)");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    text.lines()
        .filter_map(|l| {
            let call = l.split_whitespace().nth(1)?;
            let name = call.split('(').next()?;
            ["syncfs", "fsync", "fdatasync"]
                .contains(&name)
                .then(|| name.to_string())
        })
        .collect()
}

#[test]
fn a_first_run_of_the_demo_has_three_sync_rounds() {
    // On the build's own disk (target/tmp), not /tmp, which may be tmpfs.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = base.path().join("root");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/root"),
        &root,
    );
    let fs = fs_type(&root);
    let syncs = syncs_of_run(&root, &[]);
    match fs.as_str() {
        // Round 1 (journal + every file's content), round 2 (directories,
        // files, the seal's temp file): one syncfs each; round 3: the state
        // directory alone, one fsync.
        "ext2/ext3" | "xfs" | "btrfs" => {
            assert_eq!(syncs, ["syncfs", "syncfs", "fsync"], "on {fs}")
        }
        // tmpfs: fsync does nothing; elsewhere each file is fsynced.
        _ => assert!(
            !syncs.is_empty() && syncs.iter().all(|s| s == "fsync"),
            "on {fs}: {syncs:?}"
        ),
    }

    // --force with the same content: nothing to write, only the seal.
    let again = syncs_of_run(&root, &["--force"]);
    assert!(
        again.len() <= 2 && !again.is_empty(),
        "on {fs}, a --force run with nothing to change: {again:?}"
    );
}
