//! Shared by the apply/run black-box tests: an image-shaped temp root with a
//! manifest and templates, user-data builders, and "nothing changed" checks.
#![allow(dead_code)]

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};

/// imprint's own bookkeeping, the one exception to "nothing changed": a
/// failed run leaves report.json (checked: and nothing else) and the lock.
pub const STATE: &[&str] = &["var/lib/imprint", "run/imprint"];

/// The secret of every test: must never appear in any output.
pub const SECRET: &str = "Zebra-Sup3r-S3cret-pw";

pub const MANIFEST: &str = r#"version: 1
datasource:
  order: [nocloud]
values:
  db.host:      { type: string, required: true }
  db.port:      { type: integer, default: 5432 }
  db.password:  { type: string, required: true, secret: true }
  app.greeting: { type: string, default: hello }
files:
  - path: /opt/app/conf.env
    template: app.env.hbs
    mode: "0640"
    owner: root:app
    restart: [app.service]
  - path: /etc/systemd/system/app.service.d/10-imprint.conf
    template: dropin.conf.hbs
    restart: [app.service]
  - path: /etc/default/worker
    env:
      WORKER_DB: db.host
      WORKER_PORT: db.port
    restart: [worker.service]
cloud_config:
  write_files: true
unsupported: error
"#;

pub const APP_ENV: &str = "DB_HOST={{db.host}}\nDB_PORT={{db.port}}\nDB_PASSWORD={{db.password}}\nGREETING={{app.greeting}}\n";
pub const DROPIN: &str = "[Service]\nEnvironment=GREETING={{app.greeting}}\n";

/// An image-shaped root: passwd/group with an `app` user, the manifest and
/// templates, the directories imprint's state lives in, and an old
/// /etc/default/worker that a run replaces.
pub fn image_root() -> TempRoot {
    let root = TempRoot::new();
    for d in ["var/lib", "run", "opt"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    root.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:990:990::/opt/app:/usr/sbin/nologin\n",
    );
    root.write("/etc/group", "root:x:0:\napp:x:990:\n");
    root.write("/etc/imprint/imprint.yaml", MANIFEST);
    root.write("/etc/imprint/templates/app.env.hbs", APP_ENV);
    root.write("/etc/imprint/templates/dropin.conf.hbs", DROPIN);
    root.write("/etc/default/worker", "WORKER_DB=\"old\"\n");
    root
}

/// A `#cloud-config` user-data with the imprint values and two write_files.
pub fn user_data(host: &str) -> String {
    format!(
        "#cloud-config\nimprint:\n  db:\n    host: {host}\n    password: {SECRET}\n  app:\n    greeting: hi there\nwrite_files:\n  - path: /etc/motd\n    content: |\n      configured by imprint\n    permissions: '0644'\n  - path: /etc/app/licence.key\n    encoding: b64\n    content: TElDRU5TRS0xMjM0Cg==\n    permissions: '0600'\n"
    )
}

/// `imprint run --root R --user-data R/ud --instance-id ID [extra]`, with
/// the user-data written to `/ud` outside the managed paths.
pub fn run_cmd(root: &TempRoot, ud: &str, id: &str) -> Command {
    std::fs::write(root.path().join("ud"), ud).unwrap();
    let mut c = imprint();
    c.arg("run")
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(root.path().join("ud"))
        .arg("--instance-id")
        .arg(id);
    c
}

pub fn run_ud(root: &TempRoot, ud: &str, id: &str) -> Output {
    run(&mut run_cmd(root, ud, id))
}

/// The hash of the root minus imprint's own state.
pub fn hash(root: &TempRoot) -> String {
    tree_hash(root.path(), STATE)
}

/// After a failed run the state directory holds report.json and nothing
/// else (no journal, no seal, no temp file).
pub fn only_report_left(root: &TempRoot) {
    let d = root.join("/var/lib/imprint");
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["report.json"], "no journal, no seal left");
}

/// The root as a fully successful run leaves it (hash), on a fresh root.
pub fn fully_new_hash(ud: &str, id: &str) -> String {
    let r = image_root();
    let o = run_ud(&r, ud, id);
    assert_eq!(code(&o), 0, "reference run: {}", stderr(&o));
    hash(&r)
}

/// Every place a secret could leak: both streams.
pub fn assert_no_secret(o: &Output, secret: &str) {
    assert!(
        !stdout(o).contains(secret),
        "secret on stdout:\n{}",
        stdout(o)
    );
    assert!(
        !stderr(o).contains(secret),
        "secret on stderr:\n{}",
        stderr(o)
    );
}

pub fn assert_file_has_no(path: &Path, secret: &str) {
    if let Ok(b) = std::fs::read(path) {
        assert!(
            !String::from_utf8_lossy(&b).contains(secret),
            "secret in {}",
            path.display()
        );
    }
}
