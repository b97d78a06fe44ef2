//! `render::environment_files` reads the image's unit files under `--root`
//! and nothing else: a symlink in the image resolves inside the image (as
//! it will on the booted machine), never on the host running imprint.

mod common;

use common::openat2_works;
use imprint::render::environment_files;
use imprint::root::Root;
use std::os::unix::fs::symlink;
use std::path::Path;

fn write(base: &Path, rel: &str, text: &str) {
    let p = base.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn set(root: &Path) -> Vec<String> {
    environment_files(&Root::at(root)).into_iter().collect()
}

/// A directory outside the root holding a unit that names /etc/host-secret:
/// what a root's symlink could lead the scan to.
fn outside() -> tempfile::TempDir {
    let o = tempfile::tempdir().unwrap();
    write(
        o.path(),
        "systemd/system/host.service",
        "[Service]\nEnvironmentFile=/etc/host-secret\n",
    );
    write(
        o.path(),
        "lib/systemd/system/host2.service",
        "[Service]\nEnvironmentFile=/etc/host-secret2\n",
    );
    o
}

#[test]
fn an_absolute_lib_symlink_does_not_lead_to_the_host() {
    let host = outside();
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "usr/lib/systemd/system/app.service",
        "[Service]\nEnvironmentFile=/etc/default/app\n",
    );
    // /lib -> <a host directory>: followed on the host, it would read
    // host.service.
    symlink(host.path(), root.path().join("lib")).unwrap();
    assert_eq!(set(root.path()), vec!["/etc/default/app".to_string()]);

    // The same with `..` climbing out of the root.
    let root2 = tempfile::tempdir().unwrap();
    let up = "../".repeat(root2.path().components().count() + 2);
    let target = format!("{up}{}", host.path().join("lib").display());
    std::fs::create_dir_all(root2.path().join("etc/systemd/system")).unwrap();
    symlink(
        format!("{target}/systemd/system/host2.service"),
        root2.path().join("etc/systemd/system/host2.service"),
    )
    .unwrap();
    symlink(&target, root2.path().join("lib")).unwrap();
    assert_eq!(set(root2.path()), Vec::<String>::new());
}

#[test]
fn a_lib_symlink_to_slash_lib_reads_the_image_not_the_host() {
    // The shape of a merged-/usr image whose link was made absolute: /lib ->
    // /lib. On the host it would be the host's /lib/systemd/system.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/systemd/system/app.service",
        "[Service]\nEnvironmentFile=/etc/default/app\n",
    );
    symlink("/lib", root.path().join("lib")).unwrap();
    assert_eq!(set(root.path()), vec!["/etc/default/app".to_string()]);
    // /lib -> /usr/lib: the image's own /usr/lib, when openat2 can say so.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "usr/lib/systemd/system/app.service",
        "[Service]\nEnvironmentFile=/etc/default/app\n",
    );
    write(
        root.path(),
        "usr/lib/systemd/system/app.service.d/x.conf",
        "[Service]\nEnvironmentFile=-/etc/default/app-extra\n",
    );
    symlink("/usr/lib", root.path().join("lib")).unwrap();
    assert_eq!(
        set(root.path()),
        vec![
            "/etc/default/app".to_string(),
            "/etc/default/app-extra".to_string()
        ]
    );
}

#[test]
fn absolute_aliases_resolve_inside_the_root() {
    if !openat2_works() {
        eprintln!("skipped: no openat2 here (the cap-std fallback skips absolute symlinks)");
        return;
    }
    // `systemctl link /opt/app/app.service` in the image: an absolute
    // symlink in /etc/systemd/system that only means something inside it.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "opt/imprint-test-app/app.service",
        "[Service]\nEnvironmentFile=/etc/default/linked\n",
    );
    std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
    symlink(
        "/opt/imprint-test-app/app.service",
        root.path().join("etc/systemd/system/linked.service"),
    )
    .unwrap();
    assert_eq!(set(root.path()), vec!["/etc/default/linked".to_string()]);
}

#[test]
fn a_fifo_named_like_a_unit_does_not_hang_the_scan() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/systemd/system/app.service",
        "[Service]\nEnvironmentFile=/etc/default/app\n",
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.path().join("etc/systemd/system/fifo.service"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert_eq!(set(root.path()), vec!["/etc/default/app".to_string()]);
}
