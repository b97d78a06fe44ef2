//! packaging/terraform/main.tf, run with the real `terraform` (offline: the
//! example uses built-in functions and the built-in terraform_data resource
//! only, so `init` downloads nothing). Its real outputs must validate and
//! apply on a sandbox root, its apply-time `imprint validate` must stop a bad
//! value, and its hand-written multipart must be byte for byte what the
//! hashicorp/cloudinit provider's `cloudinit_config` renders.
//!
//! Skipped (with a note on stderr) where `terraform` is not installed.
//! Terraform's update check is off (CHECKPOINT_DISABLE): no traffic leaves
//! the machine.

mod common;

use common::{code, copy_tree, imprint, run, stderr, stdout, TempRoot};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEMO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo/root");

fn terraform_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file())
}

/// A copy of the example in its own directory, and a way to run terraform
/// there with a scrubbed environment.
struct Example {
    dir: tempfile::TempDir,
    terraform: PathBuf,
}

impl Example {
    fn new(terraform: PathBuf) -> Example {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/terraform/main.tf");
        std::fs::copy(src, dir.path().join("main.tf")).unwrap();
        let ex = Example { dir, terraform };
        let o = ex.tf(&["init", "-input=false", "-no-color"]);
        assert_eq!(code(&o), 0, "terraform init failed offline:\n{}", both(&o));
        ex
    }

    fn tf(&self, args: &[&str]) -> Output {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Command::new(&self.terraform)
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .output()
            .expect("failed to spawn terraform")
    }

    fn apply(&self, extra: &[&str]) -> Output {
        let imprint_var = format!("imprint={}", env!("CARGO_BIN_EXE_imprint"));
        let root_var = format!("image_root={DEMO_ROOT}");
        let mut args = vec![
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-var",
            &imprint_var,
            "-var",
            &root_var,
        ];
        for e in extra {
            args.push("-var");
            args.push(e);
        }
        self.tf(&args)
    }

    fn output(&self, name: &str) -> Vec<u8> {
        let o = self.tf(&["output", "-raw", "-no-color", name]);
        assert_eq!(code(&o), 0, "terraform output {name}:\n{}", both(&o));
        o.stdout
    }
}

fn both(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o))
}

fn example() -> Option<Example> {
    match terraform_bin() {
        Some(t) => Some(Example::new(t)),
        None => {
            eprintln!("SKIP: terraform is not installed; packaging/terraform is not exercised");
            None
        }
    }
}

/// What the cloudinit provider renders for these parts, written from its
/// algorithm (Go mime/multipart, boundary MIMEBOUNDARY, sorted part headers,
/// an LF after the first top-level header line), independently of main.tf.
fn cloudinit_config(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut out =
        b"Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\nMIME-Version: 1.0\r\n\r\n"
            .to_vec();
    for (i, (ctype, filename, content)) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--MIMEBOUNDARY\r\n");
        out.extend_from_slice(
            format!("Content-Disposition: attachment; filename=\"{filename}\"\r\n").as_bytes(),
        );
        out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n");
        out.extend_from_slice(format!("Content-Type: {ctype}\r\n").as_bytes());
        out.extend_from_slice(b"Mime-Version: 1.0\r\n\r\n");
        out.extend_from_slice(content);
    }
    out.extend_from_slice(b"\r\n--MIMEBOUNDARY--\r\n");
    out
}

#[test]
fn terraform_outputs_validate_and_apply_on_a_root() {
    let Some(ex) = example() else { return };
    let o = ex.apply(&[]);
    assert_eq!(code(&o), 0, "terraform apply failed:\n{}", both(&o));
    assert!(
        stdout(&o).contains("user-data is valid"),
        "apply did not show imprint validate's verdict:\n{}",
        both(&o)
    );

    let b64 = ex.output("user_data_b64");
    let sandbox = TempRoot::new();
    copy_tree(Path::new(DEMO_ROOT), sandbox.path());
    let ud = sandbox.path().join("user-data.b64");
    std::fs::write(&ud, &b64).unwrap();
    let root = sandbox.path().to_str().unwrap();
    let ud = ud.to_str().unwrap();

    let v = run(imprint().args(["validate", "--root", root, "--user-data", ud]));
    assert_eq!(code(&v), 0, "validate of the real output: {}", both(&v));

    let r = run(imprint().args([
        "run",
        "--root",
        root,
        "--user-data",
        ud,
        "--instance-id",
        "i-terraform",
    ]));
    assert_eq!(code(&r), 0, "run of the real output: {}", both(&r));
    let env = sandbox.read("/opt/app/conf.env");
    for line in [
        r#"APP_ENV="staging""#,
        r#"DB_HOST="db.staging.internal""#,
        r#"DB_PORT="6432""#,
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from conf.env:\n{env}"
        );
    }
    assert!(
        env.contains("DB_PASSWORD=") && env.contains("change-me-Pa"),
        "the password did not reach conf.env:\n{env}"
    );
    assert_eq!(
        sandbox.read("/etc/motd"),
        "Configured by imprint for staging.\n"
    );
    assert!(
        !format!("{}{}", stdout(&r), stderr(&r)).contains("change-me-Pa"),
        "a secret value was printed by run"
    );
}

#[test]
fn terraform_apply_stops_on_invalid_values_and_shows_why_without_secrets() {
    let Some(ex) = example() else { return };
    let o = ex.apply(&["environment=qa"]);
    assert_ne!(
        code(&o),
        0,
        "apply with environment=qa succeeded:\n{}",
        both(&o)
    );
    let text = both(&o);
    assert!(
        text.contains("app.env") && text.contains("\"qa\""),
        "the failure does not say which value was wrong:\n{text}"
    );
    assert!(
        !text.contains("change-me-Pa"),
        "terraform's output shows the password:\n{text}"
    );
}

#[test]
fn terraform_multipart_is_what_cloudinit_config_renders() {
    let Some(ex) = example() else { return };
    let o = ex.apply(&[]);
    assert_eq!(code(&o), 0, "terraform apply failed:\n{}", both(&o));
    let cloud_config = ex.output("cloud_config");
    let values = ex.output("values_json");
    let want = cloudinit_config(&[
        ("text/cloud-config", "cloud-config.yaml", &cloud_config),
        ("application/json", "values.json", &values),
    ]);
    let got = ex.output("user_data_multipart");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "main.tf's multipart differs from cloudinit_config's"
    );
    // And the gzip+base64 output decodes to exactly that document.
    let b64 = ex.output("user_data_b64");
    let gz = base64_decode(std::str::from_utf8(&b64).unwrap().trim());
    let mut plain = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, want, "user_data_b64 is not base64(gzip(multipart))");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("user_data_b64 is not base64")
}

#[test]
fn terraform_files_are_formatted() {
    let Some(ex) = example() else { return };
    // The provider example too, under a .tf name so that fmt reads it.
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/terraform/cloudinit.tf.example");
    std::fs::copy(src, ex.dir.path().join("cloudinit.tf")).unwrap();
    let o = ex.tf(&["fmt", "-check", "-diff", "-no-color"]);
    assert_eq!(code(&o), 0, "terraform fmt -check:\n{}", both(&o));
}
