//! The Packer and Vagrant examples under packaging/ cannot run here (they
//! need a cloud account and a hypervisor), so what can rot in them is
//! checked: the Vagrantfile's cloud_init user-data validates against the demo
//! manifest and configures a sandbox root; the Packer template's files exist,
//! its package name is the one packaging/build.sh produces, and its
//! provisioner ends with `imprint clean --machine-id --host-keys`.

mod common;

use common::{code, copy_tree, imprint, run, stderr, stdout, TempRoot};
use std::path::Path;

const TOP: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(TOP).join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The body of a Ruby squiggly heredoc (`<<~TAG ... TAG`): the lines
/// between, with the smallest indentation of the non-blank lines removed.
fn squiggly_heredoc(text: &str, tag: &str) -> String {
    let open = format!("<<~{tag}");
    let mut lines = text.lines().skip_while(|l| !l.contains(&open));
    assert!(lines.next().is_some(), "no <<~{tag} heredoc");
    let body: Vec<&str> = lines.take_while(|l| l.trim() != tag).collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

#[test]
fn vagrant_user_data_validates_and_configures_the_demo_image() {
    let vf = read("packaging/vagrant/Vagrantfile");
    assert!(
        vf.contains("config.vm.cloud_init"),
        "the Vagrantfile no longer uses config.vm.cloud_init"
    );
    let ud = squiggly_heredoc(&vf, "USERDATA");
    assert!(ud.starts_with("#cloud-config\n"), "user-data: {ud}");

    let sandbox = TempRoot::new();
    copy_tree(&Path::new(TOP).join("fixtures/demo/root"), sandbox.path());
    sandbox.write("/tmp/user-data", &ud);
    let root = sandbox.path().to_str().unwrap().to_string();
    let ud_path = sandbox.join("/tmp/user-data");
    let ud_path = ud_path.to_str().unwrap();

    let v = run(imprint().args(["validate", "--root", &root, "--user-data", ud_path]));
    assert_eq!(
        code(&v),
        0,
        "Vagrantfile user-data is invalid for the demo manifest:\n{}{}",
        stdout(&v),
        stderr(&v)
    );
    let r = run(imprint().args([
        "run",
        "--root",
        &root,
        "--user-data",
        ud_path,
        "--instance-id",
        "vagrant-box",
    ]));
    assert_eq!(code(&r), 0, "run: {}{}", stdout(&r), stderr(&r));
    assert_eq!(
        sandbox.read("/etc/motd"),
        "Configured by imprint in a Vagrant box.\n"
    );
    let env = sandbox.read("/opt/app/conf.env");
    assert!(env.contains(r#"DB_HOST="10.0.2.2""#), "conf.env:\n{env}");
    // `$$` in a Ruby heredoc is literal: the password reaches the file as is.
    assert!(
        env.contains(r#"DB_PASSWORD="vagrant-only-Pa\$\$word""#),
        "conf.env:\n{env}"
    );
}

#[test]
fn packer_template_references_files_that_exist_and_ends_with_clean() {
    let hcl = read("packaging/packer/app.pkr.hcl");
    let version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version in Cargo.toml")
        .to_string();
    let packer_dir = Path::new(TOP).join("packaging/packer");
    let mut checked = 0;
    for line in hcl.lines() {
        let Some((_, v)) = line.split_once("\"../../") else {
            continue;
        };
        let rel = &v[..v.find('"').expect("a closing quote")];
        if rel.ends_with(".deb") {
            // The package for `arch`, either of the two packaging/build.sh
            // builds (`--arch all`).
            assert_eq!(
                Path::new(rel).file_name().unwrap().to_str().unwrap(),
                format!("imprint_{version}-1_${{var.arch}}.deb"),
                "the Packer template names a package packaging/build.sh does not build"
            );
            assert!(
                hcl.contains("contains([\"amd64\", \"arm64\"], var.arch)"),
                "the Packer template's arch must be one packaging/build.sh builds"
            );
            let build = read("packaging/build.sh");
            for arch in ["amd64", "arm64"] {
                assert!(
                    build.contains(&format!("{arch}: imprint_VERSION-1_{arch}.deb")),
                    "packaging/build.sh no longer says it builds the {arch} .deb"
                );
            }
        } else {
            let p = packer_dir.join("../..").join(rel);
            assert!(
                p.exists(),
                "the Packer template names {rel}, which does not exist"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "found only {checked} default paths in app.pkr.hcl"
    );

    let inline: Vec<&str> = hcl
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"') && l.ends_with("\","))
        .collect();
    for step in [
        "sudo apt-get install -y /tmp/imprint.deb",
        "sudo imprint validate --user-data /tmp/sample-user-data",
    ] {
        assert!(
            inline.iter().any(|l| l.contains(step)),
            "the Packer provisioner lost the step {step:?}"
        );
    }
    // Last, and with the build VM's host keys (docs/lockout.md, step 5),
    // which `clean --host-keys` removes only when the manifest makes new
    // ones: the image's manifest must list ssh_host_keys.
    assert_eq!(
        inline.last().copied(),
        Some("\"sudo imprint clean --machine-id --host-keys\","),
        "the Packer provisioner must end with imprint clean --machine-id --host-keys"
    );
    let manifest = read("fixtures/demo/root/etc/imprint/imprint.yaml");
    assert!(
        hcl.contains("default = \"../../fixtures/demo/root/etc/imprint\"")
            && manifest.lines().any(|l| l.starts_with("ssh_host_keys: [")),
        "the Packer template's manifest must list ssh_host_keys, or its clean --host-keys fails the build"
    );
}
