//! SSH host keys through `imprint run` on a first boot (no seal): ssh-keygen
//! is started before fetch, into a private scratch directory, and runs
//! beside the pure stages; its keys land in /etc/ssh after apply; a run
//! that fails before apply leaves the root as it was and no scratch behind
//! (src/hostkeys.rs, docs/state.md).
//!
//! Needs ssh-keygen (apt `openssh-client`) and strace (apt `strace`);
//! .ci/run installs both.

mod common;

use common::{code, copy_tree, imprint, stderr, tree_hash};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// imprint's own state (the failed run's report, the lock): not the root's
/// configuration.
const STATE: &[&str] = &["var/lib/imprint", "run"];

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo")
}

/// The demo root, its manifest asking for two host key types.
fn demo_root_with_host_keys() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&demo().join("root"), t.path());
    // As the package leaves them in an image.
    std::fs::create_dir_all(t.path().join("var/lib/imprint")).unwrap();
    let m = t.path().join("etc/imprint/imprint.yaml");
    let mut text = std::fs::read_to_string(&m).unwrap();
    text.push_str("ssh_host_keys: [ed25519, ecdsa]\n");
    std::fs::write(&m, text).unwrap();
    t
}

/// `imprint run` under `strace -f` (process and file-placing calls); the
/// exit code and the trace, one call per line.
fn traced_run(root: &Path, user_data: &Path) -> (i32, String, Vec<String>) {
    let trace = root.with_extension("strace");
    let cmd = imprint();
    let o = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-s",
            "512",
            "-e",
            "trace=execve,linkat,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(cmd.get_program())
        .args(["run", "--root"])
        .arg(root)
        .arg("--user-data")
        .arg(user_data)
        .args(["--instance-id", "i-keys"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .expect("strace (apt-get install strace)");
    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    (
        code(&o),
        stderr(&o),
        text.lines().map(String::from).collect(),
    )
}

#[test]
fn a_first_boot_starts_ssh_keygen_before_apply_and_installs_the_keys() {
    let r = demo_root_with_host_keys();
    let (rc, err, trace) = traced_run(r.path(), &demo().join("user-data.b64"));
    assert_eq!(rc, 0, "{err}");
    // Both ssh-keygen runs began before apply placed its first file (the
    // journal, then each file, are linked or renamed into place).
    let first_place = trace
        .iter()
        .position(|l| l.contains("linkat(") || l.contains("rename"))
        .expect("apply placed files");
    let keygens: Vec<usize> = trace
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("execve(") && l.contains("ssh-keygen"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keygens.len(), 2, "{trace:#?}");
    assert!(
        keygens.iter().all(|&i| i < first_place),
        "ssh-keygen started after apply began:\n{}",
        trace.join("\n")
    );
    // They wrote into the scratch directory, never into the root's /etc/ssh.
    for &i in &keygens {
        assert!(trace[i].contains("/run/imprint/hostkeys/"), "{}", trace[i]);
    }
    // The keys are in place, with ssh-keygen's modes, and readable.
    for t in ["ed25519", "ecdsa"] {
        let key = r.path().join(format!("etc/ssh/ssh_host_{t}_key"));
        let public = r.path().join(format!("etc/ssh/ssh_host_{t}_key.pub"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        assert_eq!(mode(&public), 0o644, "{}", public.display());
        let l = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&key)
            .output()
            .unwrap();
        assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
        assert!(String::from_utf8_lossy(&l.stdout).contains("SHA256:"));
    }
    // No temporary name is left in /etc/ssh, and the scratch directory is gone.
    let names: Vec<String> = std::fs::read_dir(r.path().join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("ssh_host_")),
        "{names:?}"
    );
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!r.path().join("run/imprint/hostkeys").exists());
    // The report has the stage.
    let report = std::fs::read_to_string(r.path().join("var/lib/imprint/report.json")).unwrap();
    assert!(report.contains("\"ssh-host-keys\""), "{report}");
}

#[test]
fn a_run_that_fails_before_apply_kills_ssh_keygen_and_changes_nothing() {
    let r = demo_root_with_host_keys();
    let bad = r.path().with_extension("user-data");
    // Valid YAML, but a required value (app.db_host) is missing: refused
    // by validate, after ssh-keygen started.
    std::fs::write(&bad, "#cloud-config\nwrite_files: []\n").unwrap();
    let before = tree_hash(r.path(), STATE);
    let (rc, err, trace) = traced_run(r.path(), &bad);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(rc, 65, "{err}");
    assert_eq!(tree_hash(r.path(), STATE), before, "{err}");
    assert!(!r.path().join("etc/ssh").exists());
    assert!(!r.path().join("run/imprint/hostkeys").exists());
    // ssh-keygen did start (so the kill path ran), and nothing was placed
    // but the failed run's report.
    assert!(
        trace
            .iter()
            .any(|l| l.contains("execve(") && l.contains("ssh-keygen")),
        "{}",
        trace.join("\n")
    );
    let placed: Vec<&String> = trace
        .iter()
        .filter(|l| (l.contains("linkat(") || l.contains("rename")) && !l.contains("report.json"))
        .collect();
    assert!(placed.is_empty(), "{placed:#?}");
}

/// The unit actions of the run in `root`'s report, as `ACTION UNIT` lines.
fn unit_actions(root: &Path) -> Vec<String> {
    let report = std::fs::read_to_string(root.join("var/lib/imprint/report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["action"].as_str().unwrap(),
                u["unit"].as_str().unwrap()
            )
        })
        .collect()
}

/// [`demo_root_with_host_keys`], the root also having an `ssh.service`.
fn demo_root_with_host_keys_and_ssh_unit() -> tempfile::TempDir {
    let r = demo_root_with_host_keys();
    std::fs::create_dir_all(r.path().join("lib/systemd/system")).unwrap();
    std::fs::write(r.path().join("lib/systemd/system/ssh.service"), "[Unit]\n").unwrap();
    r
}

/// How many of the unit actions are on ssh.service.
fn ssh_actions(units: &[String]) -> usize {
    units.iter().filter(|u| u.ends_with(" ssh.service")).count()
}

#[test]
fn new_keys_restart_the_ssh_unit_once_after_the_plans_units() {
    // The plan's unit jobs, then the keys (ssh-keygen ran on meanwhile),
    // then the ssh unit.
    let r = demo_root_with_host_keys_and_ssh_unit();
    let (rc, err, _) = traced_run(r.path(), &demo().join("user-data.b64"));
    assert_eq!(rc, 0, "{err}");
    let units = unit_actions(r.path());
    assert_eq!(ssh_actions(&units), 1, "{units:?}");
    assert_eq!(
        units.last().map(String::as_str),
        Some("would-restart ssh.service"),
        "{units:?}"
    );
    assert!(
        units.contains(&"would-restart app.service".to_string()),
        "{units:?}"
    );

    // A manifest whose own file restarts the ssh unit: the keys go in
    // first (the unit must start with them), and it is still acted on once.
    let r = demo_root_with_host_keys_and_ssh_unit();
    let m = r.path().join("etc/imprint/imprint.yaml");
    let text = std::fs::read_to_string(&m).unwrap().replacen(
        "restart: [app.service]",
        "restart: [app.service, ssh.service]",
        1,
    );
    assert!(
        text.contains("ssh.service"),
        "the demo manifest restarts app.service"
    );
    std::fs::write(&m, text).unwrap();
    let (rc, err, _) = traced_run(r.path(), &demo().join("user-data.b64"));
    assert_eq!(rc, 0, "{err}");
    let units = unit_actions(r.path());
    assert_eq!(ssh_actions(&units), 1, "{units:?}");
}
