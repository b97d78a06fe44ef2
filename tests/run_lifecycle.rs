//! Black-box: a whole `imprint run` on temp roots, and its lifecycle: files,
//! modes and owners as planned; unchanged files left alone; sealed on the
//! second run; `clean` then `run` works again; a new instance-id runs again.

mod apply_support;
mod common;

use apply_support::*;
use common::*;
use std::os::unix::fs::MetadataExt;

fn meta(root: &TempRoot, p: &str) -> (u32, u32, u32) {
    let md = std::fs::metadata(root.join(p)).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid())
}

#[test]
fn first_run_writes_every_file_with_mode_and_owner() {
    let root = image_root();
    let o = run_ud(&root, &user_data("db1.internal"), "i-1");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        root.read("/opt/app/conf.env"),
        format!("DB_HOST=\"db1.internal\"\nDB_PORT=\"5432\"\nDB_PASSWORD=\"{SECRET}\"\nGREETING=\"hi there\"\n")
    );
    assert_eq!(meta(&root, "/opt/app/conf.env"), (0o640, 0, 990));
    assert_eq!(
        root.read("/etc/systemd/system/app.service.d/10-imprint.conf"),
        "[Service]\nEnvironment=GREETING=hi there\n"
    );
    assert_eq!(
        meta(&root, "/etc/systemd/system/app.service.d/10-imprint.conf"),
        (0o644, 0, 0)
    );
    for d in [
        "/etc/systemd",
        "/etc/systemd/system",
        "/etc/systemd/system/app.service.d",
        "/opt/app",
        "/etc/app",
    ] {
        assert_eq!(meta(&root, d).0, 0o755, "{d} created 0755");
    }
    assert!(root
        .read("/etc/default/worker")
        .contains("WORKER_DB=\"db1.internal\""));
    assert_eq!(root.read("/etc/motd"), "configured by imprint\n");
    assert_eq!(root.read("/etc/app/licence.key"), "LICENSE-1234\n");
    assert_eq!(meta(&root, "/etc/app/licence.key"), (0o600, 0, 0));
    // Units are recorded under --root, never restarted.
    assert!(
        stdout(&o).contains("would-restart app.service"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("would-restart worker.service"),
        "{}",
        stdout(&o)
    );
    // The summary line ends the run.
    let last = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("imprint run done"), "{last}");
    assert!(last.contains("files_written=5"), "{last}");
    // State: sealed (0600 in 0700), no journal, no temp file anywhere.
    assert_eq!(meta(&root, "/var/lib/imprint").0, 0o700);
    assert_eq!(meta(&root, "/var/lib/imprint/sealed").0, 0o600);
    assert!(!root.join("/var/lib/imprint/journal.json").exists());
    let find = std::process::Command::new("find")
        .arg(root.path())
        .arg("-name")
        .arg("*imprint-tmp*")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&find.stdout), "");
    // verify agrees with the disk.
    let v = run(imprint().arg("verify").arg("--root").arg(root.path()));
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    assert!(stdout(&v).contains("5 file(s) match"), "{}", stdout(&v));
}

#[test]
fn second_run_is_sealed_and_changes_nothing() {
    let root = image_root();
    let ud = user_data("db1.internal");
    assert_eq!(code(&run_ud(&root, &ud, "i-1")), 0);
    let before = tree_hash(root.path(), &["run/imprint"]);
    let o = run_ud(&root, &ud, "i-1");
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(stderr(&o).contains("already configured"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "no unit actions on a sealed run");
    assert_eq!(
        tree_hash(root.path(), &["run/imprint"]),
        before,
        "sealed: not even the report changes"
    );
}

#[test]
fn forced_rerun_leaves_unchanged_files_alone() {
    let root = image_root();
    let ud = user_data("db1.internal");
    assert_eq!(code(&run_ud(&root, &ud, "i-1")), 0);
    let files = [
        "/opt/app/conf.env",
        "/etc/systemd/system/app.service.d/10-imprint.conf",
        "/etc/default/worker",
        "/etc/motd",
        "/etc/app/licence.key",
    ];
    let stamp = |p: &str| {
        let md = std::fs::metadata(root.join(p)).unwrap();
        (md.ino(), md.mtime(), md.mtime_nsec())
    };
    let before: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    let o = run(run_cmd(&root, &ud, "i-1").arg("--force"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    assert_eq!(before, after, "inode and mtime kept: nothing rewritten");
    assert_eq!(stdout(&o), "", "no file changed, so no unit to restart");
    let s = run(imprint()
        .arg("status")
        .arg("--json")
        .arg("--root")
        .arg(root.path()));
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["report"]["files_written"].as_array().unwrap().len(), 0);
    assert_eq!(v["report"]["files_unchanged"].as_array().unwrap().len(), 5);
    // The seal still covers every file.
    assert_eq!(v["seal"]["files"].as_array().unwrap().len(), 5);
}

#[test]
fn clean_then_run_configures_again() {
    let root = image_root();
    let ud = user_data("db1.internal");
    assert_eq!(code(&run_ud(&root, &ud, "i-1")), 0);
    let c = run(imprint().arg("clean").arg("--root").arg(root.path()));
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    let ud2 = user_data("db2.internal");
    let o = run_ud(&root, &ud2, "i-1");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(root.read("/opt/app/conf.env").contains("db2.internal"));
    assert_eq!(code(&run_ud(&root, &ud2, "i-1")), 77);
}

#[test]
fn new_instance_id_runs_again() {
    let root = image_root();
    assert_eq!(code(&run_ud(&root, &user_data("db1.internal"), "i-1")), 0);
    // A clone of the image: same disk, new instance, new user-data.
    let o = run_ud(&root, &user_data("db9.internal"), "i-2");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(root.read("/opt/app/conf.env").contains("db9.internal"));
    let s = run(imprint().arg("status").arg("--root").arg(root.path()));
    assert!(stdout(&s).contains("instance-id:   i-2"), "{}", stdout(&s));
    // And the old instance-id is not sealed any more: the seal is keyed by id.
    let o = run_ud(&root, &user_data("db9.internal"), "i-2");
    assert_eq!(code(&o), 77);
}

#[test]
fn changed_user_data_on_a_sealed_instance_is_loud_and_ignored() {
    let root = image_root();
    assert_eq!(code(&run_ud(&root, &user_data("db1.internal"), "i-1")), 0);
    let before = tree_hash(root.path(), &["run/imprint"]);
    let o = run_ud(&root, &user_data("db2.internal"), "i-1");
    assert_eq!(code(&o), 77);
    assert!(
        stderr(&o)
            .contains("WARN user-data changed since instance i-1 was configured; not re-applied"),
        "{}",
        stderr(&o)
    );
    std::fs::write(root.join("/ud"), user_data("db1.internal")).unwrap();
    // (/ud is our input file, outside the managed paths: restore it to compare)
    assert_eq!(tree_hash(root.path(), &["run/imprint"]), before);
    assert!(root.read("/opt/app/conf.env").contains("db1.internal"));
}

/// A NoCloud seed detached after the first boot (the ISO of `cloud-localds`
/// or Vagrant): the sealed instance stays as it is, 77, and says why; it
/// used to fail with 69 at every boot from then on. Asked for by name
/// (`--datasource nocloud`), a missing seed is still an error.
#[test]
fn a_seed_gone_after_the_first_boot_leaves_the_seal_standing() {
    let root = image_root();
    root.write("/proc/cmdline", "ro quiet\n");
    root.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-seed-1\n",
    );
    root.write(
        "/var/lib/cloud/seed/nocloud/user-data",
        user_data("db1.internal"),
    );
    let nocloud_run = |extra: &[&str]| {
        run(imprint()
            .arg("run")
            .arg("--root")
            .arg(root.path())
            .args(extra))
    };
    let o = nocloud_run(&[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::remove_dir_all(root.join("/var/lib/cloud/seed/nocloud")).unwrap();
    let before = tree_hash(root.path(), &["run/imprint"]);
    let o = nocloud_run(&[]);
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "sealed for instance iid-seed-1 (configured "
        ) && stderr(&o).contains(
            "the seal stands: no NoCloud seed found: looked in /var/lib/cloud/seed/nocloud, /var/lib/cloud/seed/nocloud-net, and for /dev/disk/by-label/{cidata,CIDATA} and a seed-sized device so labelled in /sys/class/block, so this boot has no user-data to compare or apply"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        tree_hash(root.path(), &["run/imprint"]),
        before,
        "not even the report changes"
    );
    let o = nocloud_run(&["--datasource", "nocloud"]);
    assert_eq!(code(&o), 69, "{}", stderr(&o));
}

/// A run on a sealed root that fails before apply (a flag mistake, 64;
/// invalid user-data with --force, 65) is logged with its exit code but
/// leaves report.json to the run that configured the instance: `status`
/// stays `done`. A clone's failed first boot (a new instance-id on a sealed
/// image) is recorded; so is a run that reached apply (tests/apply_faults.rs).
#[test]
fn a_failure_before_apply_keeps_a_sealed_instances_report() {
    let root = image_root();
    let ud = user_data("db1.internal");
    assert_eq!(code(&run_ud(&root, &ud, "i-1")), 0);
    let report = || root.read("/var/lib/imprint/report.json");
    let configured = report();
    let status = || {
        let s = run(imprint().arg("status").arg("--root").arg(root.path()));
        (code(&s), stdout(&s))
    };
    let o = run(imprint()
        .arg("run")
        .arg("--root")
        .arg(root.path())
        .args(["--datasource", "bogus"]));
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ERROR unknown datasource \"bogus\"")
            && err.contains("report.json not replaced: instance i-1 is sealed")
            && err.contains("imprint run failed status=failed exit_code=64"),
        "{err}"
    );
    assert_eq!(report(), configured);
    let o = run(run_cmd(&root, "#cloud-config\nimprint: [\n", "i-1").arg("--force"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid user-data"), "{}", stderr(&o));
    assert_eq!(report(), configured);
    let (c, text) = status();
    assert_eq!(c, 0, "{text}");
    assert!(text.contains("status:        done\n"), "{text}");
    // A directory where a managed file goes, found by the plan: 73, but
    // nothing was written or attempted.
    std::fs::remove_file(root.join("/etc/motd")).unwrap();
    std::fs::create_dir_all(root.join("/etc/motd/keep")).unwrap();
    let o = run(run_cmd(&root, &ud, "i-1").arg("--force"));
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert_eq!(report(), configured);
    std::fs::remove_dir_all(root.join("/etc/motd")).unwrap();
    let (c, text) = status();
    assert_eq!(c, 0, "{text}");
    assert!(text.contains("status:        done\n"), "{text}");
    // A clone's first boot that fails is the new instance's: recorded.
    let o = run_ud(&root, "#cloud-config\nimprint: [\n", "i-2");
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let (c, text) = status();
    assert_eq!(c, 1, "{text}");
    assert!(
        text.contains("status:        failed\n") && text.contains("instance-id:   i-2\n"),
        "{text}"
    );
}

/// CLOCK_MONOTONIC now, in ms (the clock of report.json's
/// `main_monotonic_ms`).
fn monotonic_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
}

#[test]
fn report_places_the_run_and_each_stage_on_the_monotonic_clock() {
    let root = image_root();
    let before = monotonic_ms();
    let o = run_ud(&root, &user_data("db1.internal"), "i-1");
    let after = monotonic_ms();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&root.read("/var/lib/imprint/report.json")).unwrap();
    let main_ms = v["main_monotonic_ms"].as_f64().unwrap();
    assert!(
        before < main_ms && main_ms < after,
        "main entered while the process ran: {before} < {main_ms} < {after}"
    );
    let report_ms = v["report_ms"].as_f64().unwrap();
    assert!(
        report_ms > 0.0 && report_ms < after - main_ms,
        "report built before the process ended: {report_ms} ms"
    );
    // Stages follow one another: each starts after the one before ended,
    // and the last ends before the report was built.
    let stages = v["stages"].as_array().unwrap();
    assert!(stages.len() >= 8, "{stages:?}");
    let mut end = 0.0f64;
    for s in stages {
        let start = s["start_ms"].as_f64().unwrap();
        let duration = s["duration_ms"].as_f64().unwrap();
        assert!(
            start >= end - 0.01,
            "{} starts at {start} ms, before {end} ms",
            s["stage"]
        );
        end = start + duration;
    }
    assert!(
        end <= report_ms + 0.01,
        "last stage ends {end} ms, report {report_ms} ms"
    );
}

/// SPEC §5: the state directory is 0700. One that was already there, made
/// 0755 by a package or an image build (and, when imprint runs as root,
/// owned by someone else), is brought to 0700, root's, by the run that
/// seals; a state directory that is a symlink out of the root is refused
/// and what it points to is left alone.
#[test]
fn an_existing_state_directory_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let as_root = rustix::process::geteuid().is_root();
    let root = image_root();
    let state = root.join("/var/lib/imprint");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    if as_root {
        std::os::unix::fs::chown(&state, Some(1234), Some(1234)).unwrap();
    }
    let o = run_ud(&root, &user_data("db1.internal"), "i-1");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(root.join("/var/lib/imprint/sealed").is_file());
    let (mode, uid, gid) = meta(&root, "/var/lib/imprint");
    assert_eq!(mode, 0o700);
    if as_root {
        assert_eq!((uid, gid), (0, 0));
    }

    // A symlink out of the root: nothing is written there, its mode stays.
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for target in [
        outside.path().to_path_buf(),
        std::path::Path::new("../../../../../../../../..")
            .join(outside.path().strip_prefix("/").unwrap()),
    ] {
        let root = image_root();
        std::fs::create_dir_all(root.join("/var/lib")).unwrap();
        std::os::unix::fs::symlink(&target, root.join("/var/lib/imprint")).unwrap();
        let o = run_ud(&root, &user_data("db1.internal"), "i-1");
        assert_ne!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("a path led outside of the filesystem"),
            "{}",
            stderr(&o)
        );
        let md = std::fs::metadata(outside.path()).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o755, "{target:?}");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{target:?}"
        );
    }
}
