//! SSH host keys through the commands, as a boot runs them: `imprint run`
//! (imprint.service) records in the seal which types the instance is to
//! have and makes none; `imprint host-keys` (imprint-host-keys.service,
//! after it, before sshd) makes them once per instance-id and records that
//! in /var/lib/imprint/host-keys (src/hostkeys.rs, docs/systemd.md).
//!
//! Needs ssh-keygen (apt `openssh-client`) and strace (apt `strace`);
//! .ci/run installs both.

mod common;

use common::{code, copy_tree, imprint, run, stderr, stdout, tree_hash};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo")
}

/// The demo root, its manifest asking for two host key types.
fn demo_root_with_host_keys() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&demo().join("root"), t.path());
    // As the package leaves them in an image.
    std::fs::create_dir_all(t.path().join("var/lib/imprint")).unwrap();
    let text = std::fs::read_to_string(t.path().join("etc/imprint/imprint.yaml")).unwrap();
    assert!(
        text.lines().any(|l| l == "ssh_host_keys: [ed25519, ecdsa]"),
        "the demo manifest no longer asks for ed25519 and ecdsa keys"
    );
    t
}

/// The demo root, its manifest without `ssh_host_keys`.
fn demo_root_without_host_keys() -> tempfile::TempDir {
    let t = demo_root_with_host_keys();
    let m = t.path().join("etc/imprint/imprint.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ssh_host_keys:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&m, text).unwrap();
    t
}

/// `imprint run --root` as instance `id`.
fn run_as(root: &Path, id: &str) -> Output {
    run(imprint()
        .args(["run", "--root"])
        .arg(root)
        .arg("--user-data")
        .arg(demo().join("user-data.b64"))
        .args(["--instance-id", id]))
}

/// `imprint run --root` as instance `id` with other user-data (`--force`
/// past a seal with `force`).
fn run_with(root: &Path, id: &str, user_data: &Path, force: bool) -> Output {
    let mut cmd = imprint();
    cmd.args(["run", "--root"])
        .arg(root)
        .arg("--user-data")
        .arg(user_data)
        .args(["--instance-id", id]);
    if force {
        cmd.arg("--force");
    }
    run(&mut cmd)
}

/// User-data that every run rejects (65), after it has learned the
/// instance-id.
fn bad_user_data(dir: &Path) -> PathBuf {
    let p = dir.join("bad-user-data.yaml");
    std::fs::write(&p, "#cloud-config\nwrite_files: [unclosed\n").unwrap();
    p
}

/// The kernel's boot_id as the root shows it (`/proc` inside the root):
/// `imprint host-keys` acts on a failed run's report only in that run's
/// boot.
fn boot(root: &Path, id: &str) {
    let p = root.join("proc/sys/kernel/random/boot_id");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, format!("{id}\n")).unwrap();
}

/// [`host_keys`], which must succeed.
fn host_keys_ok(root: &Path) -> (Output, usize) {
    let (o, keygens) = host_keys(root);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (o, keygens)
}

/// The fingerprint of the root's ed25519 host key.
fn ed25519_fp(root: &Path) -> String {
    keygen_fingerprint(&root.join("etc/ssh/ssh_host_ed25519_key"))
}

/// `imprint host-keys --root` under `strace -f` (execve and setpriority):
/// the output and how many ssh-keygen runs it started.
fn host_keys(root: &Path) -> (Output, usize) {
    let (o, trace) = traced_host_keys(root);
    let keygens = trace
        .iter()
        .filter(|l| l.contains("execve(") && l.contains("ssh-keygen"))
        .count();
    (o, keygens)
}

/// `imprint host-keys --root` under `strace -f`: the output and the trace.
fn traced_host_keys(root: &Path) -> (Output, Vec<String>) {
    let trace = root.with_extension("strace");
    let cmd = imprint();
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve,setpriority", "-o"])
        .arg(&trace)
        .arg(cmd.get_program())
        .args(["host-keys", "--root"])
        .arg(root)
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .expect("strace (apt-get install strace)");
    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    (o, text.lines().map(String::from).collect())
}

/// Whether the trace lowers the process's priority to nice 19.
fn renices(trace: &[String]) -> Option<usize> {
    trace
        .iter()
        .position(|l| l.contains("setpriority(PRIO_PROCESS, 0, 19)"))
}

/// `ssh-keygen -l` of a key file: its SHA256 fingerprint (and proof that
/// the file is a readable key).
fn keygen_fingerprint(p: &Path) -> String {
    let l = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(p)
        .output()
        .unwrap();
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    String::from_utf8_lossy(&l.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

fn marker(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("var/lib/imprint/host-keys")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn seal(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("var/lib/imprint/sealed")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `imprint status --root`'s output.
fn status(root: &Path) -> String {
    let o = run(imprint().args(["status", "--root"]).arg(root));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    stdout(&o)
}

/// Assert that `imprint status --root` prints `line`.
fn assert_status_has(root: &Path, line: &str) {
    let st = status(root);
    assert!(st.contains(line), "{st}");
}

/// The names in the root's /etc/ssh, sorted.
fn ssh_dir(root: &Path) -> Vec<String> {
    common::names_in(&root.join("etc/ssh"))
}

/// A key pair made by ssh-keygen, as an image build (or another instance)
/// leaves it.
fn baked(root: &Path, t: &str) {
    let p = root.join(format!("etc/ssh/ssh_host_{t}_key"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", t, "-f"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn the_run_records_the_types_and_host_keys_makes_them() {
    let r = demo_root_with_host_keys();
    let o = run_as(r.path(), "i-keys");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The run made no key, and says which types the instance is to have.
    assert!(!r.path().join("etc/ssh").exists());
    assert_eq!(
        seal(r.path())["host_keys"],
        serde_json::json!(["ed25519", "ecdsa"])
    );
    let report = std::fs::read_to_string(r.path().join("var/lib/imprint/report.json")).unwrap();
    assert!(!report.contains("ssh-host-keys"), "{report}");
    // `imprint status` says the keys are still to come.
    assert_status_has(
        r.path(),
        "host keys:     pending: not made for this instance yet",
    );

    let (o, trace) = traced_host_keys(r.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Both types at once (two ssh-keygen runs), at nice 19 (set before the
    // first of them starts: the children inherit it), in place with
    // ssh-keygen's modes, readable, and no temporary name left.
    let keygens: Vec<usize> = trace
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("execve(") && l.contains("ssh-keygen"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keygens.len(), 2, "{trace:#?}");
    let nice = renices(&trace).expect("setpriority(PRIO_PROCESS, 0, 19)");
    assert!(keygens.iter().all(|&i| i > nice), "{trace:#?}");
    assert_eq!(
        ssh_dir(r.path()),
        [
            "ssh_host_ecdsa_key",
            "ssh_host_ecdsa_key.pub",
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub"
        ]
    );
    let m = marker(r.path());
    assert_eq!(m["instance_id"], "i-keys");
    let st = status(r.path());
    assert!(
        st.contains(&format!(
            "host keys:     made for this instance at {} (ed25519, ecdsa)",
            m["time"].as_str().unwrap()
        )),
        "{st}"
    );
    assert_eq!(m["types"], serde_json::json!(["ed25519", "ecdsa"]));
    for (i, t) in ["ed25519", "ecdsa"].iter().enumerate() {
        let key = r.path().join(format!("etc/ssh/ssh_host_{t}_key"));
        let public = r.path().join(format!("etc/ssh/ssh_host_{t}_key.pub"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        assert_eq!(mode(&public), 0o644, "{}", public.display());
        // The marker and the output name the keys' real fingerprints.
        let fp = keygen_fingerprint(&key);
        assert_eq!(m["generated"][i], serde_json::json!([t, fp]), "{m}");
        assert!(stdout(&o).contains(&fp), "{}", stdout(&o));
    }

    // `imprint clean` (an image build's last step) forgets the marker with
    // the seal: the image's next boot is a new instance for the keys too.
    let o = run(imprint().args(["clean", "--root"]).arg(r.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed /var/lib/imprint/host-keys"),
        "{}",
        stdout(&o)
    );
    assert!(!r.path().join("var/lib/imprint/host-keys").exists());
}

#[test]
fn the_same_instance_keeps_its_keys_and_only_gets_missing_ones() {
    let r = demo_root_with_host_keys();
    assert_eq!(code(&run_as(r.path(), "i-same")), 0);
    let (o, _) = host_keys(r.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Every later boot: nothing to do, nothing touched, no ssh-keygen, and
    // at the unit's own priority (sshd waits for this check).
    let before = tree_hash(r.path(), &["run"]);
    let (o, trace) = traced_host_keys(r.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !trace.iter().any(|l| l.contains("ssh-keygen")),
        "{trace:#?}"
    );
    assert_eq!(renices(&trace), None, "{trace:#?}");
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    assert_eq!(tree_hash(r.path(), &["run"]), before);

    // A forced re-run on the same instance does not change its identity
    // either; a type that went missing is made, the other kept.
    assert_eq!(
        code(&run(imprint()
            .args(["run", "--force", "--root"])
            .arg(r.path())
            .arg("--user-data")
            .arg(demo().join("user-data.b64"))
            .args(["--instance-id", "i-same"]))),
        0
    );
    let ed = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ed25519_key"));
    let ecdsa = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ecdsa_key"));
    std::fs::remove_file(r.path().join("etc/ssh/ssh_host_ecdsa_key")).unwrap();
    std::fs::remove_file(r.path().join("etc/ssh/ssh_host_ecdsa_key.pub")).unwrap();
    assert_status_has(r.path(), "host keys:     pending: some types are missing");
    let (_, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 1);
    assert_eq!(
        keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ed25519_key")),
        ed
    );
    let new_ecdsa = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ecdsa_key"));
    assert_ne!(new_ecdsa, ecdsa);
    assert_eq!(
        marker(r.path())["generated"],
        serde_json::json!([["ecdsa", new_ecdsa]])
    );
}

#[test]
fn a_new_instance_replaces_every_key_even_after_a_crash_before_its_keys() {
    // The image carries another machine's keys, one of a type the manifest
    // does not list.
    let r = demo_root_with_host_keys();
    baked(r.path(), "rsa");
    baked(r.path(), "ed25519");
    let image_ed = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ed25519_key"));
    assert_eq!(code(&run_as(r.path(), "i-a")), 0);
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 2);
    assert!(
        stdout(&o).contains("removed /etc/ssh/ssh_host_rsa_key"),
        "{}",
        stdout(&o)
    );
    assert_eq!(ssh_dir(r.path()).len(), 4, "{:?}", ssh_dir(r.path()));
    let a_ed = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ed25519_key"));
    assert_ne!(a_ed, image_ed);

    // A clone of i-a boots as i-b: the run seals i-b; the machine stops
    // before imprint-host-keys runs (a crash, a power cut). On the next
    // boot the run is sealed (77) and host-keys still sees keys that were
    // made for another instance: it replaces them.
    assert_eq!(code(&run_as(r.path(), "i-b")), 0);
    assert_eq!(code(&run_as(r.path(), "i-b")), 77);
    let (_, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 2);
    assert_eq!(marker(r.path())["instance_id"], "i-b");
    let b_ed = keygen_fingerprint(&r.path().join("etc/ssh/ssh_host_ed25519_key"));
    assert_ne!(b_ed, a_ed);
}

#[test]
fn without_a_seal_with_an_old_one_or_without_types_etc_ssh_is_left_alone() {
    // No seal: not configured yet.
    let r = demo_root_with_host_keys();
    baked(r.path(), "rsa");
    let before = tree_hash(r.path(), &["run"]);
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 0);
    assert!(stdout(&o).contains("not configured yet"), "{}", stdout(&o));
    assert_eq!(tree_hash(r.path(), &["run"]), before);

    // A seal written before host keys had a unit of their own (no
    // `host_keys`): that run made them; nothing to do.
    assert_eq!(code(&run_as(r.path(), "i-old")), 0);
    let sealed = r.path().join("var/lib/imprint/sealed");
    let mut s = seal(r.path());
    s.as_object_mut().unwrap().remove("host_keys").unwrap();
    std::fs::write(&sealed, serde_json::to_vec(&s).unwrap()).unwrap();
    let before = tree_hash(r.path(), &["run"]);
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 0);
    assert!(stdout(&o).contains("made by the run"), "{}", stdout(&o));
    assert_status_has(
        r.path(),
        "host keys:     made by the run that sealed this instance",
    );
    assert_eq!(tree_hash(r.path(), &["run"]), before);

    // A manifest without ssh_host_keys: /etc/ssh untouched, the instance
    // recorded as done.
    let r = demo_root_without_host_keys();
    baked(r.path(), "rsa");
    assert_eq!(code(&run_as(r.path(), "i-none")), 0);
    assert_eq!(seal(r.path())["host_keys"], serde_json::json!([]));
    let ssh = tree_hash(&r.path().join("etc/ssh"), &[]);
    let (_, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 0);
    assert_eq!(tree_hash(&r.path().join("etc/ssh"), &[]), ssh);
    assert_eq!(marker(r.path())["instance_id"], "i-none");
    assert_status_has(
        r.path(),
        "host keys:     none (no ssh_host_keys in the manifest)",
    );
}

#[test]
fn new_keys_restart_the_ssh_unit_and_the_run_no_longer_does() {
    let r = demo_root_with_host_keys();
    std::fs::create_dir_all(r.path().join("lib/systemd/system")).unwrap();
    std::fs::write(r.path().join("lib/systemd/system/ssh.service"), "[Unit]\n").unwrap();
    let o = run_as(r.path(), "i-ssh");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("ssh.service"), "{}", stdout(&o));
    let (o, _) = host_keys(r.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Under --root the restart is recorded, as the run's are.
    assert!(
        stdout(&o).contains("would-restart ssh.service: recorded"),
        "{}",
        stdout(&o)
    );
    // Nothing new: no restart.
    let (o, _) = host_keys(r.path());
    assert!(!stdout(&o).contains("ssh.service"), "{}", stdout(&o));
}

#[test]
fn a_corrupt_marker_is_65_names_the_file_and_changes_nothing() {
    let r = demo_root_with_host_keys();
    assert_eq!(code(&run_as(r.path(), "i-c")), 0);
    std::fs::write(r.path().join("var/lib/imprint/host-keys"), "{not json").unwrap();
    let before = tree_hash(r.path(), &["run"]);
    let (o, keygens) = host_keys(r.path());
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert_eq!(keygens, 0);
    assert!(
        stderr(&o).contains("var/lib/imprint/host-keys"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("remove it"), "{}", stderr(&o));
    assert_eq!(tree_hash(r.path(), &["run"]), before);
    // `imprint status` still answers, and says what it could not read.
    let st = status(r.path());
    assert!(st.contains("host keys:     unknown:"), "{st}");
    assert!(st.contains("var/lib/imprint/host-keys"), "{st}");
}

#[test]
fn a_first_run_that_fails_still_gives_the_instance_its_own_keys() {
    // An image with another machine's keys; this boot's run rejects the
    // user-data after learning the instance-id: not sealed.
    let r = demo_root_with_host_keys();
    baked(r.path(), "ed25519");
    baked(r.path(), "rsa");
    let image_ed = ed25519_fp(r.path());
    boot(r.path(), "boot-1");
    let bad = bad_user_data(r.path().parent().unwrap());
    assert_eq!(code(&run_with(r.path(), "i-f", &bad, false)), 65);
    assert!(!r.path().join("var/lib/imprint/sealed").exists());

    // imprint-host-keys runs after it all the same: the instance gets its
    // own keys, never the image's.
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 2);
    assert!(
        stdout(&o).contains("host keys made for i-f, which this boot's run did not configure"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("removed /etc/ssh/ssh_host_rsa_key"));
    assert_eq!(marker(r.path())["instance_id"], "i-f");
    let f_ed = ed25519_fp(r.path());
    assert_ne!(f_ed, image_ed);
    let (_, keygens) = host_keys(r.path());
    assert_eq!(keygens, 0, "made once per instance");
    // `imprint status` (exit 1: the run failed) says so.
    let st = run(imprint().args(["status", "--root"]).arg(r.path()));
    assert_eq!(code(&st), 1, "{}", stderr(&st));
    let st = stdout(&st);
    assert!(st.contains("host keys:     made for i-f at "), "{st}");
    assert!(
        st.contains("(ed25519, ecdsa), whose run did not seal it"),
        "{st}"
    );

    // Fixed user-data, next boot: the run seals i-f, whose keys stay.
    boot(r.path(), "boot-2");
    assert_eq!(code(&run_as(r.path(), "i-f")), 0);
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 0);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    assert_eq!(ed25519_fp(r.path()), f_ed);
}

#[test]
fn only_a_failed_run_of_this_boot_for_another_instance_changes_a_sealed_hosts_keys() {
    let r = demo_root_with_host_keys();
    boot(r.path(), "boot-1");
    assert_eq!(code(&run_as(r.path(), "i-a")), 0);
    let (_, keygens) = host_keys(r.path());
    assert_eq!(keygens, 2);
    let a_ed = ed25519_fp(r.path());
    let keys = || tree_hash(&r.path().join("etc/ssh"), &[]);
    let before = keys();
    let bad = bad_user_data(r.path().parent().unwrap());

    // A failed run by hand on the sealed instance, as another instance-id:
    // its report is of this boot, but at the next boot it is not acted on.
    assert_eq!(code(&run_with(r.path(), "i-z", &bad, true)), 65);
    boot(r.path(), "boot-2");
    let (_, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 0);
    assert_eq!(keys(), before);

    // A failed run of the sealed instance itself, and one that never
    // learned the instance-id (no user-data): the seal says who this is.
    assert_eq!(code(&run_with(r.path(), "i-a", &bad, true)), 65);
    let (_, keygens) = host_keys(r.path());
    assert_eq!(keygens, 0);
    let missing = r.path().join("no-such-user-data");
    assert_ne!(code(&run_with(r.path(), "i-a", &missing, true)), 0);
    let (_, keygens) = host_keys(r.path());
    assert_eq!(keygens, 0);
    assert_eq!(keys(), before);
    assert_eq!(marker(r.path())["instance_id"], "i-a");

    // A clone of i-a boots as i-b and its run fails: i-a's seal and marker
    // are not i-b's, and neither are its keys.
    boot(r.path(), "boot-3");
    assert_eq!(code(&run_with(r.path(), "i-b", &bad, false)), 65);
    let (_, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 2);
    assert_eq!(marker(r.path())["instance_id"], "i-b");
    assert_ne!(ed25519_fp(r.path()), a_ed);
}

#[test]
fn a_failed_run_without_an_instance_id_on_an_unsealed_root_still_replaces_the_images_keys() {
    let r = demo_root_with_host_keys();
    baked(r.path(), "ed25519");
    let image_ed = ed25519_fp(r.path());
    boot(r.path(), "boot-1");
    let missing = r.path().join("no-such-user-data");
    assert_ne!(code(&run_with(r.path(), "i-q", &missing, false)), 0);
    let (o, keygens) = host_keys_ok(r.path());
    assert_eq!(keygens, 2);
    assert!(
        stdout(&o).contains("its run never learned the instance-id"),
        "{}",
        stdout(&o)
    );
    assert_eq!(marker(r.path())["instance_id"], "");
    let q_ed = ed25519_fp(r.path());
    assert_ne!(q_ed, image_ed);

    // Once a run learns and seals the instance-id, the keys are made for it
    // (once more: the unknown instance may have been another).
    boot(r.path(), "boot-2");
    assert_eq!(code(&run_as(r.path(), "i-q")), 0);
    let (_, keygens) = host_keys(r.path());
    assert_eq!(keygens, 2);
    assert_eq!(marker(r.path())["instance_id"], "i-q");
}
