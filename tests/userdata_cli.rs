//! `imprint validate` and `imprint fetch` on every user-data shape and on
//! each kind of bad input: exit codes (SPEC §2) and the exact text, which is
//! UI. Expected outputs are plain-text snapshots in tests/userdata_snapshots/
//! (regenerate with IMPRINT_BLESS=1 and review the diff).

mod common;

use common::{code, imprint, run, stderr, stdout, TempRoot};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/user-data")
        .join(name)
}

fn manifest() -> PathBuf {
    fixture("src/manifest.yaml")
}

/// Compare with (or, under IMPRINT_BLESS=1, write) a snapshot.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/userdata_snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("IMPRINT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with IMPRINT_BLESS=1 to create it. Actual:\n{actual}",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (IMPRINT_BLESS=1 to update)",
        path.display()
    );
}

/// Run `imprint ARGS`, return (exit code, "stdout\n--- stderr\nstderr").
fn imprint_out(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let o = run(imprint().args(args));
    (
        code(&o),
        format!("{}--- stderr\n{}", stdout(&o), stderr(&o)),
    )
}

fn validate(user_data: &Path, config: Option<&Path>) -> (i32, String) {
    let empty = TempRoot::new();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "validate".as_ref(),
        "--user-data".as_ref(),
        user_data.as_os_str(),
        "--root".as_ref(),
        empty.path().as_os_str(),
    ];
    if let Some(c) = config {
        args.push("--config".as_ref());
        args.push(c.as_os_str());
    }
    imprint_out(&args)
}

fn temp_user_data(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_terraform_encoding_validates_the_same() {
    let mut first = None;
    for name in [
        "terraform.mime",
        "terraform.mime.gz",
        "terraform.mime.b64",
        "terraform.mime.gz.b64",
        "make-mime.txt",
        "vagrant.mime",
    ] {
        let (c, out) = validate(&fixture(name), Some(&manifest()));
        assert_eq!(c, 0, "{name}: {out}");
        // Vagrant ends with an opening boundary: one more, empty, part.
        let out = out.replace("3 part(s)", "2 part(s)");
        match &first {
            None => {
                snapshot("validate_terraform", &out);
                first = Some(out);
            }
            Some(f) => assert_eq!(&out, f, "{name} differs from terraform.mime"),
        }
    }
}

#[test]
fn ec2_json() {
    let (c, out) = validate(&fixture("ec2.json"), Some(&manifest()));
    assert_eq!(c, 0, "{out}");
    snapshot("validate_ec2", &out);
}

#[test]
fn digitalocean_cloud_config_warns_about_harmless_keys() {
    let (c, out) = validate(&fixture("digitalocean.yaml"), Some(&manifest()));
    assert_eq!(c, 0, "{out}");
    snapshot("validate_digitalocean", &out);
}

#[test]
fn terraform_yamlencode_quoted_keys() {
    let (c, out) = validate(&fixture("terraform-yamlencode.yaml"), Some(&manifest()));
    assert_eq!(c, 0, "{out}");
    snapshot("validate_yamlencode", &out);
}

#[test]
fn gce_cloud_config_is_rejected_with_what_to_do() {
    let (c, out) = validate(&fixture("gce.yaml"), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    snapshot("validate_gce", &out);
}

#[test]
fn unsupported_warn_turns_rejections_into_warnings() {
    let dir = TempRoot::new();
    let m = std::fs::read_to_string(manifest())
        .unwrap()
        .replace("unsupported: error", "unsupported: warn")
        .replace(
            "app.env:        { type: string, enum: [staging, production], required: true }",
            "",
        )
        .replace("required: true", "required: false");
    dir.write("/m.yaml", m);
    let (c, out) = validate(&fixture("gce.yaml"), Some(&dir.join("/m.yaml")));
    assert_eq!(c, 0, "{out}");
    snapshot("validate_gce_warn", &out);
}

#[test]
fn kitchen_sink_names_every_unsupported_part() {
    let (c, out) = validate(&fixture("kitchen-sink.mime"), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    snapshot("validate_kitchen_sink", &out);
}

#[test]
fn empty_user_data() {
    // Against a manifest with required values: each one is named.
    let (c, out) = validate(&fixture("empty"), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    snapshot("validate_empty_required", &out);
    // Without a manifest, nothing is required.
    for name in ["empty", "blank"] {
        let (c, out) = validate(&fixture(name), None);
        assert_eq!(c, 0, "{out}");
        snapshot("validate_empty_no_manifest", &out);
    }
}

#[test]
fn syntax_errors_name_part_line_and_column() {
    let ud = temp_user_data(
        b"Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\r\nMIME-Version: 1.0\r\n\r\n\
--MIMEBOUNDARY\r\nContent-Type: application/json\r\n\r\n{\"db\": {\"host\": \"x\",}}\r\n\
--MIMEBOUNDARY\r\nContent-Type: text/cloud-config\r\n\r\n#cloud-config\nimprint:\n  app: {env: [staging}\n\
\r\n--MIMEBOUNDARY--\r\n",
    );
    let (c, out) = validate(ud.path(), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    snapshot("error_syntax", &out);
}

#[test]
fn write_files_problems_name_part_and_index() {
    let ud = temp_user_data(
        b"#cloud-config\nimprint: {app: {env: staging}, db: {host: h, password: p}}\n\
write_files:\n- content: no path\n- path: relative/file\n- path: /ok\n  permissions: rw-r--r--\n  \
owner: ':'\n  encoding: rot13\n  append: maybe\n",
    );
    let (c, out) = validate(ud.path(), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    snapshot("error_write_files", &out);
}

#[test]
fn value_problems_in_one_report_secrets_masked() {
    let ud = temp_user_data(
        br#"{"app": {"env": "prod", "workers": "8", "debug": "yes", "greeting": 1.10},
            "db": {"password": 123456789, "port": 5432.5},
            "db.hots": "typo", "papertrail.url": "x", "api_token": "tok-SECRET-1"}"#,
    );
    let (c, out) = validate(ud.path(), Some(&manifest()));
    assert_eq!(c, 65, "{out}");
    assert!(!out.contains("123456789"), "secret leaked: {out}");
    assert!(!out.contains("tok-SECRET-1"), "secret leaked: {out}");
    snapshot("error_values", &out);
}

#[test]
fn dotted_key_given_twice() {
    let ud = temp_user_data(br#"{"db": {"host": "a"}, "db.host": "b"}"#);
    let (c, out) = validate(ud.path(), None);
    assert_eq!(c, 65, "{out}");
    snapshot("error_dotted_twice", &out);
}

#[test]
fn decode_errors() {
    let mut trailing = gz(b"#cloud-config\n");
    trailing.extend_from_slice(b"garbage");
    let mut deep = b"{}".to_vec();
    for i in 0..9 {
        let mut next =
            format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n")
                .into_bytes();
        next.extend(&deep);
        next.extend(format!("\n--b{i}--\n").as_bytes());
        deep = next;
    }
    let mut many = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n".to_vec();
    for _ in 0..1001 {
        many.extend(b"--b\n\n{}\n");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("gzip_trailing", trailing),
        ("gzip_truncated", gz(b"#cloud-config\nimprint: {}\n")[..20].to_vec()),
        ("mime_depth", deep),
        ("mime_parts", many),
        (
            "mime_no_boundary",
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\n{}\n".to_vec(),
        ),
        (
            "mime_bad_base64",
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n#cloud-config\n--b--\n".to_vec(),
        ),
        (
            "gzip_type_not_gzip",
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/x-gzip\n\n#cloud-config\n--b--\n".to_vec(),
        ),
    ];
    let mut all = String::new();
    for (name, bytes) in cases {
        let ud = temp_user_data(&bytes);
        let (c, out) = validate(ud.path(), None);
        assert_eq!(c, 65, "{name}: {out}");
        all.push_str(&format!("== {name}\n{out}"));
    }
    snapshot("error_decode", &all);
}

#[test]
fn fetch_prints_parts_with_secrets_masked() {
    let root = TempRoot::new();
    let o = run(imprint()
        .args(["fetch", "--user-data"])
        .arg(fixture("terraform.mime.gz.b64"))
        .arg("--config")
        .arg(manifest())
        .arg("--root")
        .arg(root.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("s3cr3t-Pa$$word"), "secret leaked: {out}");
    assert!(out.contains("\"password\": \"********\""), "{out}");
    snapshot("fetch_terraform", &out);
}

#[test]
fn fetch_json_masks_documents() {
    let root = TempRoot::new();
    let o = run(imprint()
        .args(["fetch", "--json", "--user-data"])
        .arg(fixture("kitchen-sink.mime"))
        .arg("--root")
        .arg(root.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("gz-Secret-7"), "secret leaked: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 7);
    assert_eq!(parts[2]["filename"], "values.yaml.gz");
    assert_eq!(parts[2]["document"]["db"]["password"], "********");
    assert_eq!(parts[2]["document"]["db"]["port"], 6543);
    let kinds: Vec<&str> = parts.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "cloud-config",
            "json",
            "yaml",
            "script",
            "boothook",
            "jinja",
            "include"
        ]
    );
}

/// `fetch` prints the content of a `write_files` entry that others will not
/// be able to read (what `plan` and `render` hide) as `********`, in place:
/// a plain, quoted or block scalar, an anchor the entry aliases, an entry
/// made 0600 by a later part's entry for its path, one made 0600 by the
/// secret it holds, and one merge cannot read (its mode unknown); the rest
/// of the text stays as written. World-readable entries are shown. `--json`
/// masks the documents and bodies the same way.
#[test]
fn fetch_hides_the_content_of_private_write_files_entries() {
    let part1 = "#cloud-config\n\
        imprint:\n  db:\n    password: pw-0123456789\n\
        write_files:\n\
        - path: /etc/app/licence.key\n  permissions: '0600'\n  content: |\n    LICENCE-LINE-1\n    LICENCE-LINE-2\n  owner: root:root\n\
        - path: /etc/motd\n  content: hello-motd\n\
        - path: /etc/app/anchored\n  permissions: '0640'\n  content: &lic \"ANCHORED-SECRET\"\n\
        - path: /etc/app/alias\n  permissions: '0600'\n  content: *lic\n\
        - path: /etc/app/later\n  content: LATER-PRIVATE\n\
        - path: /etc/app/token\n  content: 'x=pw-0123456789 TOKEN-LINE'\n\
        - path: /etc/app/bad\n  permissions: '0600'\n  encoding: rot13\n  content: BAD-ENCODING\n\
        - path: /etc/app/public\n  permissions: '0644'\n  content: PUBLIC-TEXT\n";
    let part2 = "#cloud-config\nwrite_files:\n- path: /etc/app/later\n  append: true\n  permissions: '0600'\n  content: MORE\n";
    let mime = format!(
        "Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/cloud-config\n\n{part1}\n--B\nContent-Type: text/cloud-config\n\n{part2}\n--B--\n"
    );
    let ud = temp_user_data(mime.as_bytes());
    let root = TempRoot::new();
    let fetch = |json: bool| {
        let mut c = imprint();
        c.arg("fetch");
        if json {
            c.arg("--json");
        }
        let o = run(c
            .arg("--user-data")
            .arg(ud.path())
            .arg("--root")
            .arg(root.path()));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        stdout(&o)
    };
    let out = fetch(false);
    for leak in [
        "LICENCE-LINE",
        "ANCHORED-SECRET",
        "LATER-PRIVATE",
        "TOKEN-LINE",
        "pw-0123456789",
        "BAD-ENCODING",
        "MORE",
    ] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
    }
    assert!(
        out.contains(
            "- path: /etc/app/licence.key\n  permissions: '0600'\n  content: |\n    ********\n  owner: root:root\n\
             - path: /etc/motd\n  content: hello-motd\n\
             - path: /etc/app/anchored\n  permissions: '0640'\n  content: &lic ********\n\
             - path: /etc/app/alias\n  permissions: '0600'\n  content: *lic\n\
             - path: /etc/app/later\n  content: ********\n\
             - path: /etc/app/token\n  content: ********\n\
             - path: /etc/app/bad\n  permissions: '0600'\n  encoding: rot13\n  content: ********\n\
             - path: /etc/app/public\n  permissions: '0644'\n  content: PUBLIC-TEXT\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  append: true\n  permissions: '0600'\n  content: ********\n"),
        "{out}"
    );

    let out = fetch(true);
    assert!(
        !out.contains("LICENCE-LINE") && !out.contains("LATER-PRIVATE"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let wf = &v["parts"][0]["document"]["write_files"];
    let contents: Vec<&str> = (0..7).map(|i| wf[i]["content"].as_str().unwrap()).collect();
    assert_eq!(
        contents,
        [
            "********",
            "hello-motd",
            "********",
            "********",
            "********",
            "********",
            "********"
        ]
    );
    assert_eq!(wf[7]["content"], "PUBLIC-TEXT");
    assert_eq!(
        v["parts"][1]["document"]["write_files"][0]["content"],
        "********"
    );
    assert!(v["parts"][0]["body"]
        .as_str()
        .unwrap()
        .contains("content: &lic ********\n"));
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    // 1 GiB of zeros as 1024 gzip members of 1 MiB each (about 1 MiB).
    let member = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        e.finish().unwrap()
    };
    let bomb: Vec<u8> = member
        .iter()
        .copied()
        .cycle()
        .take(member.len() * 1024)
        .collect();
    let ud = temp_user_data(&bomb);
    let t = std::time::Instant::now();
    let (c, out) = validate(ud.path(), None);
    assert_eq!(c, 65, "{out}");
    assert!(
        out.contains("user-data decompresses past the 67108864-byte limit (a gzip bomb?); stopped at the cap"),
        "{out}"
    );
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
}
