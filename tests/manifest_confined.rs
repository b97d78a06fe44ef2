//! Under `--root DIR` the manifest and its templates are the image's: a
//! symlink in the image resolves inside DIR, as on the booted machine, never
//! on the host running `imprint --root` (an image build or CI validating it).

mod common;

use common::openat2_works;
use imprint::manifest::{self, Source};
use imprint::root::Root;
use std::os::unix::fs::symlink;
use std::path::Path;

fn write(base: &Path, rel: &str, text: &str) {
    let p = base.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const MANIFEST: &str = "files:\n  - path: /etc/{which}.conf\n    template: t.hbs\n";

#[test]
fn absolute_symlinks_to_the_manifest_and_a_template_resolve_in_the_image() {
    if !openat2_works() {
        eprintln!("skip: no openat2 here");
        return;
    }
    // The same absolute path holds one manifest on the host, another in the
    // image (as /usr/share/app/imprint.yaml would).
    let host = tempfile::tempdir().unwrap();
    let shared = host.path().join("share");
    let root = tempfile::tempdir().unwrap();
    let in_image = root.path().join(shared.strip_prefix("/").unwrap());
    for (at, which) in [(&shared, "host"), (&in_image, "image")] {
        write(at, "imprint.yaml", &MANIFEST.replace("{which}", which));
        write(at, "t.hbs", &format!("{which} template\n"));
    }
    std::fs::create_dir_all(root.path().join("etc/imprint/templates")).unwrap();
    symlink(
        shared.join("imprint.yaml"),
        root.path().join("etc/imprint/imprint.yaml"),
    )
    .unwrap();
    symlink(
        shared.join("t.hbs"),
        root.path().join("etc/imprint/templates/t.hbs"),
    )
    .unwrap();
    let m = manifest::load(&Root::at(root.path()), None)
        .unwrap()
        .expect("the image's manifest");
    assert_eq!(m.files[0].path, "/etc/image.conf");
    match &m.files[0].source {
        Source::Template { text, .. } => assert_eq!(text, "image template\n"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_manifest_symlink_to_nothing_in_the_image_is_an_error_not_no_manifest() {
    let host = tempfile::tempdir().unwrap();
    write(host.path(), "imprint.yaml", "version: 1\n");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/imprint")).unwrap();
    symlink(
        host.path().join("imprint.yaml"),
        root.path().join("etc/imprint/imprint.yaml"),
    )
    .unwrap();
    let err = manifest::load(&Root::at(root.path()), None).unwrap_err();
    assert!(
        err.to_string().contains("etc/imprint/imprint.yaml"),
        "{err}"
    );
    // Nothing there at all is no manifest (write_files only).
    let empty = tempfile::tempdir().unwrap();
    assert!(manifest::load(&Root::at(empty.path()), None)
        .unwrap()
        .is_none());
}
