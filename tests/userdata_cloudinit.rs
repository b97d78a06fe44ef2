//! Differential test against cloud-init itself: for every user-data fixture,
//! the parts Debian's cloud-init (`cloudinit.user_data.UserDataProcessor`)
//! extracts, and the cloud-config documents its own YAML loader reads from
//! them, equal what `imprint fetch --json` gives, `permissions` included.
//!
//! Needs Debian's `cloud-init` package (`.ci/run` installs it). Without it
//! the test says so loudly and passes: set IMPRINT_REQUIRE_ORACLE=1 to make
//! a missing oracle a failure.
//!
//! Known, documented differences (docs/user-data.md), checked here as such:
//! - imprint never fetches `#include` URLs; cloud-init replaces an include
//!   part by what it fetches (nothing, for an empty list). Include parts
//!   are left out of the comparison.
//! - cloud-init 22.4 mangles non-ASCII text in 7bit parts (Terraform's
//!   output) and then drops that cloud-config; imprint reads the UTF-8.

mod common;

use common::{code, imprint, run, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const MASK: &str = "********";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/user-data")
}

/// A python3 that can import cloud-init (Debian's lives in /usr/bin).
fn oracle_python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import cloudinit.user_data"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn skip_or_fail() -> bool {
    let msg = "\n\n*** SKIPPED: cloud-init is not importable by python3; the differential \
               test against cloud-init did not run. Install Debian's cloud-init package \
               (apt-get install cloud-init; .ci/run does). ***\n\n";
    if std::env::var_os("IMPRINT_REQUIRE_ORACLE").is_some() {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    true
}

fn cloud_init(py: &str, file: &Path) -> Value {
    let mut c = Command::new(py);
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudinit/oracle.py"));
    if file.extension().is_some_and(|e| e == "b64") {
        c.arg("--base64");
    }
    let o = c.arg(file).output().expect("run oracle.py");
    assert!(
        o.status.success(),
        "oracle.py failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("oracle output is JSON")
}

fn ours(file: &Path) -> Value {
    let o = run(imprint()
        .args(["fetch", "--json", "--user-data"])
        .arg(file)
        .args(["--root", "/nonexistent-imprint-root"]));
    assert_eq!(code(&o), 0, "imprint fetch --json failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("imprint fetch --json is JSON")
}

/// Equal, where imprint's masked scalars match any scalar.
fn same(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::String(m), t) if m == MASK => !t.is_object() && !t.is_array(),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| same(v, w))
        }
        (a, b) => a == b,
    }
}

fn norm_type(t: &str) -> &str {
    if t == "text/x-not-multipart" {
        "text/plain"
    } else {
        t
    }
}

fn compare(py: &str, file: &Path) -> Result<usize, String> {
    let theirs = cloud_init(py, file);
    let ours = ours(file);
    let theirs = theirs["parts"].as_array().unwrap();
    let ours: Vec<&Value> = ours["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "include")
        .collect();
    if theirs.len() != ours.len() {
        return Err(format!(
            "{} parts from cloud-init, {} from imprint\ncloud-init: {theirs:#?}\nimprint: {ours:#?}",
            theirs.len(),
            ours.len()
        ));
    }
    let mut docs = 0;
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        let tt = norm_type(t["content_type"].as_str().unwrap());
        let ot = norm_type(o["content_type"].as_str().unwrap());
        if tt != ot {
            return Err(format!(
                "part {}: cloud-init says {tt}, imprint {ot}",
                i + 1
            ));
        }
        if let Some(f) = t["filename"].as_str().filter(|f| !f.starts_with("part-")) {
            if o["filename"].as_str() != Some(f) {
                return Err(format!(
                    "part {}: filename {f:?} vs {}",
                    i + 1,
                    o["filename"]
                ));
            }
        }
        if tt == "text/cloud-config" {
            if !same(&o["document"], &t["document"]) {
                return Err(format!(
                    "part {}: cloud-config documents differ\ncloud-init: {:#}\nimprint: {:#}",
                    i + 1,
                    t["document"],
                    o["document"]
                ));
            }
            docs += 1;
        }
    }
    Ok(docs)
}

#[test]
fn every_fixture_decodes_as_cloud_init_decodes_it() {
    let Some(py) = oracle_python() else {
        skip_or_fail();
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["INDEX", "make.sh", "src", "unicode-7bit.mime"].contains(&n.as_str()))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    let mut docs = 0;
    for n in &names {
        match compare(py, &fixtures().join(n)) {
            Ok(d) => docs += d,
            Err(e) => failures.push(format!("{n}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The comparison must have had documents to compare.
    assert!(docs >= 10, "only {docs} cloud-config documents compared");
}

#[test]
fn permissions_read_as_cloud_init_reads_them() {
    let Some(py) = oracle_python() else {
        skip_or_fail();
        return;
    };
    let theirs = cloud_init(py, &fixtures().join("terraform.mime"));
    let files = &theirs["parts"][0]["document"]["write_files"];
    let perms: Vec<&Value> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["permissions"])
        .collect();
    // '0644' stays a string, 0600 is octal (384), "0o640" a string, 644 the
    // decimal number: the same document imprint parses (checked above).
    assert_eq!(
        perms,
        [
            &Value::from("0644"),
            &Value::from(384),
            &Value::from("0o640"),
            &Value::from(644)
        ]
    );
    compare(py, &fixtures().join("terraform.mime")).unwrap();
}

#[test]
fn cloud_init_drops_non_ascii_7bit_cloud_config_imprint_does_not() {
    let Some(py) = oracle_python() else {
        skip_or_fail();
        return;
    };
    let file = fixtures().join("unicode-7bit.mime");
    let theirs = cloud_init(py, &file);
    let ours = ours(&file);
    assert_eq!(theirs["parts"][0]["content_type"], "text/cloud-config");
    assert_eq!(theirs["parts"][0]["document"], Value::Null);
    assert_eq!(
        ours["parts"][0]["document"]["imprint"]["app"]["greeting"],
        "grüße, ünïcødé"
    );
}
