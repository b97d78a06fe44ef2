//! The binary invoked as `cloud-init` (SPEC §5): `status [--wait] [--long]
//! [--format json]` from report.json, with cloud-init's output shapes and
//! exit codes (0 done, 1 error, 2 done with warnings); anything else says
//! this is a shim and exits 1.

mod common;

use common::{code, stderr, stdout, TempRoot};
use imprint::report::{Report, StageReport};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A directory holding a `cloud-init` link to the binary.
struct Shim {
    bin: TempRoot,
    root: TempRoot,
}

impl Shim {
    fn new() -> Shim {
        let bin = TempRoot::new();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_imprint"), bin.join("/cloud-init")).unwrap();
        Shim {
            bin,
            root: TempRoot::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("/cloud-init"));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("--root")
            .arg(self.root.path())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }

    fn report(&self, status: &str, warnings: &[&str], error: Option<&str>) {
        let r = Report {
            version: "0.1.0".into(),
            command: "run".into(),
            status: status.into(),
            exit_code: match status {
                "done" => 0,
                "applied-unit-failed" => 75,
                _ => 65,
            },
            instance_id: Some("iid-0001".into()),
            datasource: Some("nocloud".into()),
            started: "2026-11-22T00:35:29Z".into(),
            stages: vec![StageReport {
                stage: "fetch".into(),
                start_ms: 0.5,
                duration_ms: 1.5,
                outcome: "ok".into(),
            }],
            files_written: vec!["/opt/app/conf.env".into()],
            warnings: warnings.iter().map(|s| s.to_string()).collect(),
            error: error.map(str::to_string),
            ..Report::default()
        };
        self.root.write(
            "/var/lib/imprint/report.json",
            serde_json::to_vec_pretty(&r).unwrap(),
        );
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("/run/imprint/lock")
    }
}

#[test]
fn done() {
    let s = Shim::new();
    s.report("done", &[], None);
    let o = s.run(&["status"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "status: done\n"));
    let o = s.run(&["status", "--long"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        stdout(&o),
        "status: done\n\
         extended_status: done\n\
         boot_status_code: enabled-by-generator\n\
         last_update: Sun, 22 Nov 2026 00:35:29 +0000\n\
         detail: imprint configured instance iid-0001 from nocloud (1 file(s) written)\n\
         errors: []\n\
         recoverable_errors: {}\n"
    );
    let o = s.run(&["status", "--format", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (k, want) in [
        ("status", "done"),
        ("extended_status", "done"),
        ("datasource", "nocloud"),
        ("boot_status_code", "enabled-by-generator"),
        ("_schema_version", "1"),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["recoverable_errors"], serde_json::json!({}));
    assert_eq!(v["schemas"]["1"]["status"], "done");
    // Pretty and sorted, as cloud-init prints it.
    assert!(stdout(&o).starts_with("{\n  \"_schema_version\": \"1\",\n  \"boot_status_code\""));
}

#[test]
fn failed_run_is_an_error() {
    let s = Shim::new();
    s.report(
        "failed",
        &[],
        Some("invalid user-data: db.host: required value missing"),
    );
    let o = s.run(&["status", "--long"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).starts_with("status: error\nextended_status: error - done\n"));
    assert!(
        stdout(&o).contains("errors:\n\t- invalid user-data: db.host: required value missing\n"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["status", "--format=json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(code(&o), 1);
    assert_eq!(v["status"], "error");
    assert_eq!(
        v["errors"],
        serde_json::json!(["invalid user-data: db.host: required value missing"])
    );
    // A unit that failed after the files were applied is an error too.
    s.report(
        "applied-unit-failed",
        &[],
        Some("unit app.service failed to restart: x"),
    );
    assert_eq!(code(&s.run(&["status"])), 1);
}

#[test]
fn warnings_are_degraded_done_exit_2() {
    let s = Shim::new();
    s.report(
        "done",
        &["part 1: unsupported key packages: install at build time"],
        None,
    );
    let o = s.run(&["status"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (2, "status: done\n"));
    let o = s.run(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["extended_status"], "degraded done");
    assert_eq!(
        v["recoverable_errors"]["WARNING"][0],
        "part 1: unsupported key packages: install at build time"
    );
    let o = s.run(&["status", "--format", "yaml"]);
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).contains("extended_status: \"degraded done\"\n"));
}

#[test]
fn never_run() {
    let s = Shim::new();
    let o = s.run(&["status", "--wait"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "\nstatus: not started\n");
}

#[test]
fn wait_holds_while_a_run_holds_the_lock() {
    let s = Shim::new();
    std::fs::create_dir_all(s.lock_path().parent().unwrap()).unwrap();
    let lock = std::fs::File::create(s.lock_path()).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    // Without --wait: running, at once.
    let o = s.run(&["status"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "status: running\n"));
    let mut child = s
        .cmd(&["status", "--wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for two progress dots (on a loaded machine the child may take
    // seconds to print them: read them, don't time them), and the child
    // still running after them.
    let mut pipe = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.len() < 2 {
        assert_eq!(pipe.read(&mut byte).unwrap(), 1, "--wait ended: {out:?}");
        out.push(byte[0]);
    }
    assert_eq!(out, b"..");
    assert!(
        child.try_wait().unwrap().is_none(),
        "--wait returned while the lock was held"
    );
    s.report("done", &[], None);
    drop(lock);
    pipe.read_to_end(&mut out).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("..") && out.ends_with(".\nstatus: done\n"),
        "{out:?}"
    );
    // The shim never took the lock: a run can still take it.
    let again = std::fs::File::open(s.lock_path()).unwrap();
    rustix::fs::flock(&again, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
}

#[test]
fn anything_else_says_it_is_a_shim() {
    let s = Shim::new();
    for args in [&["init"][..], &["--version"], &[], &["status", "--bogus"]] {
        let o = s.run(args);
        assert_eq!(code(&o), 1, "{args:?}");
        assert!(
            stderr(&o)
                .contains("this is imprint's cloud-init status shim; cloud-init is not installed"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), "");
    }
}
