//! The NoCloud source: seed directories, the seed named on the kernel
//! command line, and a labelled seed device mounted read-only.
//!
//! The device tests need root, a free loop device and `losetup`
//! (util-linux); the ISO 9660 test also needs `genisoimage` (the seed is
//! read in-process: tests/datasource_iso9660.rs has the reader's own tests). Where the kernel or the sandbox does not allow it, the test
//! says it skipped and why (the VM test covers that path on a real kernel).

mod common;

use common::TempRoot;
use imprint::fetch::{self, mount, FetchError, Options};
use imprint::identify::{self, Datasource, Identified, Request};
use imprint::root::Root;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fetch_in(t: &TempRoot, options: &Options) -> Result<fetch::Fetched, FetchError> {
    let root = Root::at(t.path());
    let id = identify::identify(&root, &Request::default(), &[]).expect("identified");
    assert_eq!(id.datasource, Datasource::NoCloud);
    fetch::fetch(&root, &id, &Request::default(), options)
}

#[test]
fn seed_dir() {
    let t = TempRoot::new();
    t.write("/proc/cmdline", "ro quiet\n");
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-local01\nlocal-hostname: web-1\n",
    );
    t.write(
        "/var/lib/cloud/seed/nocloud/user-data",
        "#cloud-config\nimprint: {a: 1}\n",
    );
    t.write(
        "/var/lib/cloud/seed/nocloud/vendor-data",
        "#cloud-config\n{}\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "iid-local01");
    assert_eq!(f.hostname.as_deref(), Some("web-1"));
    assert_eq!(f.user_data, b"#cloud-config\nimprint: {a: 1}\n");
    assert_eq!(f.vendor_data.as_deref(), Some(&b"#cloud-config\n{}\n"[..]));
    assert_eq!(
        f.meta_data.as_deref(),
        Some(&b"instance-id: iid-local01\nlocal-hostname: web-1\n"[..])
    );
    assert_eq!(f.source, "/var/lib/cloud/seed/nocloud");
}

#[test]
fn seed_dir_without_user_data_or_instance_id() {
    let t = TempRoot::new();
    t.write(
        "/var/lib/cloud/seed/nocloud-net/meta-data",
        "local-hostname: h\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert!(
        f.user_data.is_empty(),
        "no user-data is empty, not an error"
    );
    // No instance-id: one derived from the (empty) user-data, stable.
    assert!(f.instance_id.starts_with("nocloud-"), "{}", f.instance_id);
    assert_eq!(
        f.instance_id,
        fetch_in(&t, &Options::default()).unwrap().instance_id
    );
    assert_eq!(f.source, "/var/lib/cloud/seed/nocloud-net");
}

#[test]
fn seed_on_the_kernel_command_line() {
    let t = TempRoot::new();
    t.write("/proc/cmdline", "ds=nocloud;s=file:///srv/seed/\n");
    t.write("/srv/seed/meta-data", "instance-id: from-cmdline\n");
    t.write("/srv/seed/user-data", "a: 1\n");
    // A seed directory too: the one named on the command line wins.
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: from-dir\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "from-cmdline");
    assert_eq!(f.source, "/srv/seed");
    // Named but missing: a clear error, not a fallback.
    t.write("/proc/cmdline", "ds=nocloud;s=/srv/nowhere/\n");
    let e = fetch_in(&t, &Options::default()).unwrap_err().to_string();
    assert!(
        e.contains("the seed /srv/nowhere/ named on the kernel command line (or in the SMBIOS serial) is not a directory"),
        "{e}"
    );
    t.write("/proc/cmdline", "ds=nocloud;s=http://10.0.0.1/seed/\n");
    let e = fetch_in(&t, &Options::default()).unwrap_err().to_string();
    assert!(e.contains("network seeds are not supported"), "{e}");
}

/// cloud-init's `ds=nocloud;i=ID;h=HOST` (and `instance-id=`,
/// `local-hostname=`) on the kernel command line or in the SMBIOS serial
/// overrides the seed's `meta-data`, whichever seed is read and however
/// NoCloud was chosen; the serial's over the command line's.
#[test]
fn instance_id_and_hostname_from_the_cmdline_override_meta_data() {
    let t = TempRoot::new();
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-meta\nlocal-hostname: host-meta\n",
    );
    t.write("/var/lib/cloud/seed/nocloud/user-data", "a: 1\n");
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "iid-meta");
    assert_eq!(f.hostname.as_deref(), Some("host-meta"));

    t.write(
        "/proc/cmdline",
        "ro ds=nocloud;i=iid-cmdline;h=host-cmdline quiet\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "iid-cmdline");
    assert_eq!(f.hostname.as_deref(), Some("host-cmdline"));
    assert_eq!(f.user_data, b"a: 1\n", "the seed is still read");
    assert_eq!(f.source, "/var/lib/cloud/seed/nocloud");

    // Long forms, with the seed named beside them.
    t.write("/srv/seed/meta-data", "instance-id: iid-srv\n");
    t.write(
        "/proc/cmdline",
        "ds=nocloud;s=/srv/seed/;instance-id=iid-long;local-hostname=host-long\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(
        (f.instance_id.as_str(), f.source.as_str()),
        ("iid-long", "/srv/seed")
    );
    assert_eq!(f.hostname.as_deref(), Some("host-long"));

    // A seed without an instance-id of its own takes i= (not a hash).
    t.write("/srv/seed/meta-data", "");
    t.write(
        "/proc/cmdline",
        "ds=nocloud;s=/srv/seed/;i=iid-only-cmdline\n",
    );
    assert_eq!(
        fetch_in(&t, &Options::default()).unwrap().instance_id,
        "iid-only-cmdline"
    );

    // The SMBIOS serial's i= is above the command line's; its h= absent,
    // the command line's stands.
    t.write("/proc/cmdline", "ds=nocloud;i=iid-cmdline;h=host-cmdline\n");
    t.write(
        "/sys/class/dmi/id/product_serial",
        "ds=nocloud;i=iid-serial\n",
    );
    let f = fetch_in(&t, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "iid-serial");
    assert_eq!(f.hostname.as_deref(), Some("host-cmdline"));

    // NoCloud named by --datasource: the overrides count all the same.
    std::fs::remove_file(t.join("/sys/class/dmi/id/product_serial")).unwrap();
    let root = Root::at(t.path());
    let req = Request {
        datasource: Some("nocloud".into()),
        ..Request::default()
    };
    let id = identify::identify(&root, &req, &[]).unwrap();
    let f = fetch::fetch(&root, &id, &req, &Options::default()).unwrap();
    assert_eq!(f.instance_id, "iid-cmdline");
    assert_eq!(f.source, "/var/lib/cloud/seed/nocloud");
}

#[test]
fn named_but_absent() {
    let t = TempRoot::new();
    let root = Root::at(t.path());
    let req = Request {
        datasource: Some("nocloud".into()),
        ..Request::default()
    };
    let id = identify::identify(&root, &req, &[]).unwrap();
    let e = fetch::fetch(&root, &id, &req, &Options::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("datasource nocloud unavailable: no NoCloud seed found"),
        "{msg}"
    );
    assert!(msg.contains("/var/lib/cloud/seed/nocloud"), "{msg}");
    assert!(msg.contains("/dev/disk/by-label/{cidata,CIDATA}"), "{msg}");
    assert_eq!(imprint::Error::from(e).exit_code().code(), 69);
}

#[test]
fn limits_and_junk() {
    let t = TempRoot::new();
    t.write("/var/lib/cloud/seed/nocloud/meta-data", "instance-id: i\n");
    t.write("/var/lib/cloud/seed/nocloud/user-data", vec![b'x'; 2000]);
    let opts = Options {
        max_user_data: 1000,
        ..Options::default()
    };
    let e = fetch_in(&t, &opts).unwrap_err().to_string();
    assert!(
        e.contains("user-data of /var/lib/cloud/seed/nocloud"),
        "{e}"
    );
    assert!(e.contains("larger than the limit of 1000 bytes"), "{e}");
    // A symlink is never followed out of the seed.
    let t = TempRoot::new();
    t.write("/var/lib/cloud/seed/nocloud/meta-data", "instance-id: i\n");
    t.write("/secret", "root:x:0:0\n");
    std::os::unix::fs::symlink(
        t.join("/secret"),
        t.join("/var/lib/cloud/seed/nocloud/user-data"),
    )
    .unwrap();
    let e = fetch_in(&t, &Options::default()).unwrap_err().to_string();
    assert!(
        e.contains("failed to read user-data of /var/lib/cloud/seed/nocloud"),
        "{e}"
    );
    // Malformed meta-data names the file and the line.
    let t = TempRoot::new();
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: i\n  bad: [\n",
    );
    let e = fetch_in(&t, &Options::default()).unwrap_err().to_string();
    assert!(
        e.contains("failed to parse meta-data of /var/lib/cloud/seed/nocloud: line"),
        "{e}"
    );
}

#[test]
fn device_is_not_mounted_under_root() {
    let t = TempRoot::new();
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/cidata")).unwrap();
    let e = fetch_in(&t, &Options::default()).unwrap_err().to_string();
    assert!(
        e.contains("devices are read only when the root is the host"),
        "{e}"
    );
    assert!(e.contains("var/lib/cloud/seed/nocloud instead"), "{e}");
    assert!(
        !t.join("/run/imprint").exists(),
        "nothing created under the root"
    );
}

// ------------------------------------------------------- real block devices

/// Why device tests cannot run here, if they cannot.
fn cannot_mount() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (no loop devices)".into());
    }
    if Command::new("losetup").arg("--version").output().is_err() {
        return Some("losetup (util-linux) is not installed".into());
    }
    None
}

fn kernel_has(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)))
        .unwrap_or(false)
}

/// A read-only loop device over an image file; detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn new(image: &Path) -> Result<Loop, String> {
        let o = Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(Loop(PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn mounted_at(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(dir.as_str()))
}

/// The mount code on a real loop device: read-only, nosuid, nodev,
/// noexec, in a private 0700 directory, unmounted and removed afterwards,
/// also when reading fails. ext4 stands in for ISO 9660/vfat, which this
/// test's kernel may lack; the file-system types are a parameter.
#[test]
fn mount_read_unmount_on_a_loop_device() {
    if let Some(why) = cannot_mount() {
        eprintln!("SKIPPED mount_read_unmount_on_a_loop_device: {why}");
        return;
    }
    if !kernel_has("ext4") {
        eprintln!("SKIPPED mount_read_unmount_on_a_loop_device: kernel has no ext4");
        return;
    }
    let t = TempRoot::new();
    let content = t.join("/content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("meta-data"), "instance-id: iid-ext4\n").unwrap();
    std::fs::write(content.join("user-data"), "#cloud-config\n").unwrap();
    std::fs::write(content.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let img = t.join("/seed.img");
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "cidata", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("4M")
        .output()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dev = match Loop::new(&img) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED mount_read_unmount_on_a_loop_device: losetup failed: {e}");
            return;
        }
    };
    let run_dir = t.join("/run/imprint");
    let mut seen = None;
    let f = mount::with_mounted(&dev.0, "cidata", &run_dir, &["iso9660", "ext4"], |dir| {
        assert!(mounted_at(dir), "mounted during the read");
        let md = std::fs::metadata(dir.parent().unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        let err = std::fs::write(dir.join("x"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(&*dir.to_string_lossy()))
            .unwrap()
            .to_string();
        for opt in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(
                line.split_whitespace()
                    .nth(5)
                    .unwrap()
                    .split(',')
                    .any(|o| o == opt),
                "{opt} in {line}"
            );
        }
        seen = Some(dir.to_path_buf());
        imprint::fetch::nocloud::read_seed(dir, "the test device", 1 << 20)
    })
    .unwrap();
    let dir = seen.unwrap();
    assert!(!mounted_at(&dir), "unmounted afterwards");
    assert!(!dir.exists(), "mount point removed");
    assert_eq!(f.instance_id, "iid-ext4");
    assert_eq!(f.user_data, b"#cloud-config\n");

    // An error while reading still unmounts.
    let mut seen = None;
    let e = mount::with_mounted(&dev.0, "cidata", &run_dir, &["ext4"], |dir| {
        seen = Some(dir.to_path_buf());
        imprint::fetch::nocloud::read_seed(dir, "the test device", 4).map(|_| ())
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("larger than the limit of 4 bytes"),
        "{e}"
    );
    let dir = seen.unwrap();
    assert!(!mounted_at(&dir) && !dir.exists());

    // A type that does not fit: a clear error naming each type tried.
    let e = mount::with_mounted(&dev.0, "cidata", &run_dir, &["vfat"], |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "failed to mount {} (labelled cidata) read-only",
            dev.0.display()
        )),
        "{e}"
    );
    assert!(e.contains("vfat: "), "{e}");
    assert_eq!(
        std::fs::read_dir(&run_dir).unwrap().count(),
        0,
        "no leftover directories"
    );
}

/// NoCloud end to end from a real ISO 9660 `cidata` image on a loop
/// device, as `cloud-localds` and Vagrant make it, through `fetch` with
/// devices allowed: read in-process, so the kernel needs no iso9660 and
/// nothing is mounted.
#[test]
fn nocloud_from_an_iso9660_cidata_image() {
    if let Some(why) = cannot_mount() {
        eprintln!("SKIPPED nocloud_from_an_iso9660_cidata_image: {why}; the VM test covers it");
        return;
    }
    let t = TempRoot::new();
    let content = t.join("/content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(
        content.join("meta-data"),
        "instance-id: iid-iso\nlocal-hostname: iso-host\n",
    )
    .unwrap();
    std::fs::write(
        content.join("user-data"),
        "#cloud-config\nimprint: {x: 1}\n",
    )
    .unwrap();
    let img = t.join("/seed.iso");
    let o = Command::new("genisoimage")
        .args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"])
        .arg(&img)
        .arg(content.join("user-data"))
        .arg(content.join("meta-data"))
        .output()
        .expect("genisoimage is not installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dev = match Loop::new(&img) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED nocloud_from_an_iso9660_cidata_image: losetup failed: {e}");
            return;
        }
    };
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink(&dev.0, t.join("/dev/disk/by-label/cidata")).unwrap();
    // The absolute link target is taken inside the root: point it there.
    std::fs::create_dir_all(t.join(dev.0.parent().unwrap().to_str().unwrap())).unwrap();
    std::os::unix::fs::symlink(&dev.0, t.join(dev.0.to_str().unwrap())).unwrap();
    let root = Root::at(t.path());
    let id: Identified = identify::identify(&root, &Request::default(), &[]).unwrap();
    assert_eq!(id.datasource, Datasource::NoCloud);
    let opts = Options {
        allow_mount: Some(true),
        ..Options::default()
    };
    let f = fetch::fetch(&root, &id, &Request::default(), &opts).unwrap();
    assert_eq!(f.instance_id, "iid-iso");
    assert_eq!(f.hostname.as_deref(), Some("iso-host"));
    assert_eq!(f.user_data, b"#cloud-config\nimprint: {x: 1}\n");
    assert!(
        !t.join("/run/imprint").exists(),
        "read in-process: no mount point made"
    );
}

/// A sealed instance whose `cidata` device is there but cannot be read
/// (here: a `genisoimage` seed cut short, as a half-written or damaged
/// image is) is the case of a seed that is gone: the seal stands, 77,
/// nothing changes, and the message names the device and the error.
/// Asked for by name (`--datasource nocloud`), or on an instance that is
/// not sealed, it is an error (69), as before.
#[test]
fn unreadable_seed_device_on_a_sealed_instance_leaves_the_seal_standing() {
    use imprint::pipeline::{self, Inputs, Outcome, Until};
    use imprint::systemd::Recorder;
    let t = TempRoot::new();
    t.write("/proc/cmdline", "ro quiet\n");
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-dev-1\n",
    );
    let user_data = "#cloud-config\nwrite_files:\n- path: /etc/motd\n  content: hello\n";
    t.write("/var/lib/cloud/seed/nocloud/user-data", user_data);
    let inputs = |datasource: Option<&str>, force: bool| Inputs {
        root: Root::at(t.path()),
        config: None,
        request: Request {
            datasource: datasource.map(str::to_string),
            ..Request::default()
        },
        no_restart: true,
        force,
        read_devices: Some(true),
    };
    let run = |i: &Inputs| pipeline::run(i, Until::Run, &mut Recorder, &mut Outcome::default());
    run(&inputs(None, false)).expect("first boot configures");
    assert_eq!(t.read("/etc/motd"), "hello");
    // Later boots: the seed directory is gone and a damaged seed image is
    // on the device (the same seed, cut after its volume descriptors).
    std::fs::remove_dir_all(t.join("/var/lib/cloud/seed/nocloud")).unwrap();
    let content = t.join("/content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("meta-data"), "instance-id: iid-dev-1\n").unwrap();
    std::fs::write(content.join("user-data"), user_data).unwrap();
    let img = t.join("/dev/sr0");
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    let o = Command::new("genisoimage")
        .args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"])
        .arg(&img)
        .arg(content.join("user-data"))
        .arg(content.join("meta-data"))
        .output()
        .expect("genisoimage is not installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&content).unwrap();
    let iso = std::fs::read(&img).unwrap();
    std::fs::write(&img, &iso[..19 * 2048]).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/cidata")).unwrap();
    let device = img.display().to_string();
    let before = common::tree_hash(t.path(), &["run/imprint"]);
    let e = run(&inputs(None, false)).unwrap_err();
    assert_eq!(e.exit_code(), imprint::ExitCode::Sealed, "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("sealed for instance iid-dev-1 (configured ")
            && msg.contains(&format!(
                "the seal stands: the NoCloud seed device {device} is there but could not be read (failed to parse the ISO 9660 seed {device}: "
            ))
            && msg.contains("a truncated or damaged image")
            && msg.contains("run `imprint run --force`"),
        "{msg}"
    );
    assert_eq!(
        common::tree_hash(t.path(), &["run/imprint"]),
        before,
        "nothing changed"
    );
    // Asked for by name: the seed must be readable.
    let e = run(&inputs(Some("nocloud"), false)).unwrap_err();
    assert_eq!(e.exit_code(), imprint::ExitCode::Unavailable, "{e}");
    assert!(e.to_string().contains(&device), "{e}");
    // Not sealed (--force): nothing to stand on, 69.
    let e = run(&inputs(None, true)).unwrap_err();
    assert_eq!(e.exit_code(), imprint::ExitCode::Unavailable, "{e}");
    assert_eq!(
        common::tree_hash(t.path(), &["run/imprint"]),
        before,
        "nothing changed"
    );
}
