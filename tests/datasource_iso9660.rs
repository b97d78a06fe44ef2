//! The in-process ISO 9660 seed reader (`src/fetch/iso9660.rs`) on real
//! images made by `genisoimage` and `xorriso`, in every naming variant
//! (Rock Ridge, Joliet, both, neither; volume id `cidata` and `CIDATA`),
//! against the bytes put in; on damaged and hostile images (a table, and
//! random mutations with proptest): an error naming the device, never a
//! panic; and the fallback to mounting for what it does not read.
//!
//! Where the kernel has iso9660 and the test may use loop devices, the
//! files read in-process are also compared with what the kernel's mount
//! shows (here the kernel has no iso9660: the VM suite covers that).
//!
//! Also: seed devices that udev has not linked in `/dev/disk/by-label`,
//! found by reading the labels of the devices in a fake `/sys/class/block`
//! (ISO 9660 and vfat).
//!
//! Host tools: `genisoimage`, `xorriso`, `mkfs.vfat` (dosfstools) (a test
//! that lacks one fails, naming it).

mod common;

use common::TempRoot;
use imprint::fetch::iso9660::{self, Names, Opened, Seed};
use imprint::fetch::{self, nocloud, openstack, FetchError, Options};
use imprint::identify::{self, Datasource, Request};
use imprint::root::Root;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The seed's files: user-data spans two blocks and holds every byte value.
fn content() -> Vec<(&'static str, Vec<u8>)> {
    let mut user = b"#cloud-config\nimprint: {greeting: \"h\xc3\xa9llo\"}\n# ".to_vec();
    user.extend((0..5000u32).map(|i| (i % 256) as u8));
    vec![
        ("user-data", user),
        (
            "meta-data",
            b"instance-id: iid-iso-01\nlocal-hostname: iso-host\n".to_vec(),
        ),
        ("vendor-data", b"#cloud-config\n{}\n".to_vec()),
        ("network-config", b"version: 2\n".to_vec()),
    ]
}

fn write_content(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Make an image of `dir` with `tool` ("genisoimage" or "xorriso") and
/// mkisofs-style `flags`.
fn make_iso(tool: &str, flags: &[&str], volid: &str, dir: &Path, out: &Path) {
    let mut c = match tool {
        "genisoimage" => Command::new("genisoimage"),
        _ => {
            let mut c = Command::new("xorriso");
            c.args(["-as", "mkisofs"]);
            c
        }
    };
    c.args(["-quiet", "-V", volid])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(dir);
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not installed (apt-get install {tool}): {e}"));
    assert!(
        o.status.success(),
        "{tool} {flags:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The names in `dir` of `seed`, sorted.
fn listed(seed: &Seed<std::fs::File>, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = seed
        .list(dir)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

fn open_file(path: &Path) -> Seed<std::fs::File> {
    match iso9660::open(path).unwrap() {
        Opened::Seed(s) => s,
        Opened::Declined(why) => panic!("declined {}: {why}", path.display()),
    }
}

fn parse_bytes(img: Vec<u8>) -> Result<Opened<Vec<u8>>, FetchError> {
    let len = img.len() as u64;
    Seed::parse(img, len, "/dev/test0")
}

// Where the kernel can mount it, what the kernel shows must be what the
// reader gives.
fn compare_with_the_kernel(img: &Path, seed: &Seed<std::fs::File>) -> Option<()> {
    if !rustix::process::geteuid().is_root()
        || !std::fs::read_to_string("/proc/filesystems")
            .ok()?
            .lines()
            .any(|l| l.ends_with("iso9660"))
    {
        return None;
    }
    let o = Command::new("losetup")
        .args(["-f", "--show", "-r"])
        .arg(img)
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string());
    let run = tempfile::tempdir().unwrap();
    let r = imprint::fetch::mount::with_mounted(&dev, "cidata", run.path(), &["iso9660"], |d| {
        let names = common::names_in(d);
        let mut ours: Vec<String> = seed.entries.iter().map(|e| e.name.clone()).collect();
        ours.sort();
        assert_eq!(names, ours, "names as the kernel shows them");
        for n in &names {
            assert_eq!(
                std::fs::read(d.join(n)).unwrap(),
                seed.read(n, 1 << 20, n).unwrap().unwrap(),
                "{n}"
            );
        }
        Ok(())
    });
    let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    r.unwrap();
    Some(())
}

#[test]
fn every_naming_variant_reads_what_was_put_in() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    let files = content();
    write_content(&dir, &files);
    let variants: &[(&str, &[&str], Names)] = &[
        ("genisoimage", &["-r"], Names::RockRidge),
        ("genisoimage", &["-R"], Names::RockRidge),
        ("genisoimage", &["-J"], Names::Joliet),
        ("genisoimage", &["-r", "-J"], Names::RockRidge),
        (
            "genisoimage",
            &["-J", "-r", "-iso-level", "1"],
            Names::RockRidge,
        ),
        ("genisoimage", &[], Names::Plain),
        ("xorriso", &["-r"], Names::RockRidge),
        ("xorriso", &["-r", "-J"], Names::RockRidge),
        ("xorriso", &["--norock", "-J"], Names::Joliet),
        ("xorriso", &["--norock"], Names::Plain),
    ];
    let mut kernel_compared = 0;
    for (tool, flags, names) in variants {
        for volid in ["cidata", "CIDATA"] {
            let img = t.join(&format!("/seed-{tool}-{}-{volid}.iso", flags.join("")));
            make_iso(tool, flags, volid, &dir, &img);
            let seed = open_file(&img);
            let ctx = format!("{tool} {flags:?} -V {volid}");
            assert_eq!(seed.names, *names, "{ctx}");
            assert_eq!(seed.volume_id, volid, "{ctx}");
            if *names == Names::Plain {
                // Level-1 names, as the kernel maps them: cloud-init finds
                // no user-data on such a seed, and neither does imprint.
                let mut seen: Vec<&str> = seed.entries.iter().map(|e| e.name.as_str()).collect();
                seen.sort();
                assert_eq!(
                    seen,
                    ["meta_dat", "network_", "user_dat", "vendor_d"],
                    "{ctx}"
                );
                assert!(seed.read("user-data", 1 << 20, "u").unwrap().is_none());
                let f = nocloud::read_device(&img, &t.join("/run"), 1 << 20).unwrap();
                assert!(f.user_data.is_empty() && f.meta_data.is_none(), "{ctx}");
            } else {
                for (name, bytes) in &files {
                    let got = seed.read(name, 1 << 20, name).unwrap();
                    assert_eq!(got.as_deref(), Some(&bytes[..]), "{ctx}: {name}");
                }
                assert!(seed.read("user_dat", 1 << 20, "u").unwrap().is_none());
                let f = nocloud::read_device(&img, &t.join("/run"), 1 << 20).unwrap();
                assert_eq!(f.user_data, files[0].1, "{ctx}");
                assert_eq!(f.instance_id, "iid-iso-01", "{ctx}");
                assert_eq!(f.hostname.as_deref(), Some("iso-host"), "{ctx}");
                assert_eq!(f.vendor_data.as_deref(), Some(&files[2].1[..]), "{ctx}");
                assert_eq!(f.source, img.display().to_string());
            }
            if compare_with_the_kernel(&img, &seed).is_some() {
                kernel_compared += 1;
            }
        }
    }
    assert!(
        !t.join("/run").exists(),
        "nothing mounted, no directory made"
    );
    if kernel_compared == 0 {
        eprintln!(
            "NOTE every_naming_variant_reads_what_was_put_in: not compared with the \
             kernel's isofs (not root, no loop devices, or no iso9660 in this kernel)"
        );
    }
}

/// Joliet names are matched as the kernel's default `check=relaxed` does:
/// case-insensitively; Rock Ridge names exactly.
#[test]
fn joliet_lookup_ignores_case_rock_ridge_does_not() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    write_content(
        &dir,
        &[
            ("USER-DATA", b"upper\n".to_vec()),
            ("meta-data", b"instance-id: x\n".to_vec()),
        ],
    );
    let img = t.join("/j.iso");
    make_iso("genisoimage", &["-J"], "cidata", &dir, &img);
    let seed = open_file(&img);
    assert_eq!(seed.names, Names::Joliet);
    assert_eq!(
        seed.read("user-data", 100, "u").unwrap().as_deref(),
        Some(&b"upper\n"[..])
    );
    let img = t.join("/r.iso");
    make_iso("genisoimage", &["-r", "-J"], "cidata", &dir, &img);
    let seed = open_file(&img);
    assert_eq!(seed.names, Names::RockRidge);
    assert!(seed.read("user-data", 100, "u").unwrap().is_none());
    assert!(seed.read("USER-DATA", 100, "u").unwrap().is_some());
}

/// Long Rock Ridge names and many entries push names into continuation
/// areas (`CE`); the reader follows them.
#[test]
fn long_names_and_many_files() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    let mut files = content();
    for i in 0..60 {
        files.push((
            Box::leak(format!("{}-{i}", "n".repeat(200)).into_boxed_str()),
            format!("file {i}\n").into_bytes(),
        ));
    }
    write_content(&dir, &files);
    for flags in [&["-r"][..], &["-r", "-J", "-joliet-long"][..]] {
        let img = t.join("/long.iso");
        make_iso("xorriso", flags, "cidata", &dir, &img);
        let seed = open_file(&img);
        assert_eq!(seed.entries.len(), files.len());
        for (name, bytes) in &files {
            assert_eq!(
                seed.read(name, 1 << 20, name).unwrap().as_deref(),
                Some(&bytes[..]),
                "{flags:?} {name}"
            );
        }
    }
}

#[test]
fn limits_directories_and_links_are_refused_by_name() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    write_content(
        &dir,
        &[
            ("user-data", vec![b'x'; 3000]),
            ("meta-data", b"instance-id: x\n".to_vec()),
        ],
    );
    std::fs::create_dir(dir.join("vendor-data")).unwrap();
    std::os::unix::fs::symlink("user-data", dir.join("network-config")).unwrap();
    let img = t.join("/seed.iso");
    make_iso("genisoimage", &["-r", "-J"], "cidata", &dir, &img);
    let dev = img.display().to_string();
    let seed = open_file(&img);
    let e = seed.read("user-data", 1000, "user-data of X").unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::TooLarge {
                size: 3000,
                limit: 1000,
                ..
            }
        ),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains(&format!(
            "user-data of X (user-data on the ISO 9660 seed {dev})"
        )),
        "{e}"
    );
    assert!(e.contains("larger than the limit of 1000 bytes"), "{e}");
    let e = seed.read("vendor-data", 1000, "v").unwrap_err().to_string();
    assert!(e.contains("a directory, not a regular file"), "{e}");
    let e = seed
        .read("network-config", 1000, "n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("a symbolic link"), "{e}");
    // Through the NoCloud reader: the cap names the seed's user-data.
    let e = nocloud::read_device(&img, &t.join("/run"), 1000)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("user-data of {dev}")), "{e}");
    // The default cap of fetch: vendor-data is a directory there.
    let e = nocloud::read_device(&img, &t.join("/run"), 16 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("vendor-data of {dev}")), "{e}");
}

/// End to end: `cidata` found by label (the image file stands in for the
/// device node), read in-process, nothing mounted or created.
#[test]
fn nocloud_fetch_reads_the_device_without_mounting() {
    let t = TempRoot::new();
    let files = content();
    write_content(&t.join("/content"), &files);
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    make_iso(
        "genisoimage",
        &["-r", "-J"],
        "CIDATA",
        &t.join("/content"),
        &t.join("/dev/sr0"),
    );
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/CIDATA")).unwrap();
    let root = Root::at(t.path());
    let id = identify::identify(&root, &Request::default(), &[]).unwrap();
    assert_eq!(id.datasource, Datasource::NoCloud);
    let opts = Options {
        allow_mount: Some(true),
        ..Options::default()
    };
    let f = fetch::fetch(&root, &id, &Request::default(), &opts).unwrap();
    assert_eq!(f.user_data, files[0].1);
    assert_eq!(f.instance_id, "iid-iso-01");
    assert_eq!(f.meta_data.as_deref(), Some(&files[1].1[..]));
    assert_eq!(f.source, t.join("/dev/sr0").display().to_string());
    assert!(!t.join("/run/imprint").exists(), "no mount point made");
}

// ------------------------------------------- seed devices without udev

/// A block device as sysfs lists it under the root: `sys/class/block/NAME`
/// with `dev` (major:minor) and `size` (512-byte sectors: `sectors`, or the
/// image at `dev/NAME` rounded up).
fn fake_block(t: &TempRoot, name: &str, devno: &str, sectors: Option<u64>) {
    let sys = t.join(&format!("/sys/class/block/{name}"));
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("dev"), format!("{devno}\n")).unwrap();
    let sectors = sectors.unwrap_or_else(|| {
        let len = std::fs::metadata(t.join(&format!("/dev/{name}")))
            .map(|m| m.len())
            .unwrap_or(0);
        len.div_ceil(512)
    });
    std::fs::write(sys.join("size"), format!("{sectors}\n")).unwrap();
}

/// A vfat image of `size` bytes labelled `label` by `mkfs.vfat -n` (which
/// writes the boot sector's label and the root directory's label entry).
fn make_vfat(out: &Path, size: u64, fat32: bool, label: &str) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::File::create(out).unwrap().set_len(size).unwrap();
    let mut c = Command::new("mkfs.vfat");
    if fat32 {
        c.args(["-F", "32"]);
    }
    let o =
        c.args(["-n", label]).arg(out).output().unwrap_or_else(|e| {
            panic!("mkfs.vfat is not installed (apt-get install dosfstools): {e}")
        });
    assert!(
        o.status.success(),
        "mkfs.vfat: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn evidence(id: &identify::Identified) -> String {
    id.rules
        .iter()
        .map(|r| r.evidence.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// No `/dev/disk/by-label` link (udev has not run yet): the `cidata` ISO
/// in the CD-ROM drive is found by reading the labels of the block devices
/// in `/sys/class/block`, and read. Devices with other labels, too large,
/// or of other kinds are passed over.
#[test]
fn seed_iso_found_without_udev_links() {
    let t = TempRoot::new();
    let files = content();
    write_content(&t.join("/content"), &files);
    std::fs::create_dir_all(t.join("/dev")).unwrap();
    make_iso(
        "genisoimage",
        &["-r", "-J"],
        "cidata",
        &t.join("/content"),
        &t.join("/dev/sr0"),
    );
    fake_block(&t, "sr0", "11:0", None);
    // Read and passed over: another label (vfat, ISO 9660), no file system.
    make_vfat(&t.join("/dev/vda"), 1 << 20, false, "DATA");
    fake_block(&t, "vda", "252:0", None);
    make_iso(
        "xorriso",
        &["-r"],
        "notcidata",
        &t.join("/content"),
        &t.join("/dev/sr1"),
    );
    fake_block(&t, "sr1", "11:1", None);
    t.write("/dev/vdb1", vec![0u8; 64 << 10]);
    fake_block(&t, "vdb1", "252:17", None);
    // Not read: larger than a seed (sysfs says 40 GiB), a loop device, an
    // empty drive.
    make_iso(
        "genisoimage",
        &["-r"],
        "CIDATA",
        &t.join("/content"),
        &t.join("/dev/sda"),
    );
    fake_block(&t, "sda", "8:0", Some(40 << 21));
    make_iso(
        "genisoimage",
        &["-r"],
        "CIDATA",
        &t.join("/content"),
        &t.join("/dev/loop0"),
    );
    fake_block(&t, "loop0", "7:0", None);
    fake_block(&t, "sr2", "11:2", Some(0));

    let root = Root::at(t.path());
    let id = identify::identify(&root, &Request::default(), &[]).unwrap();
    assert_eq!(id.datasource, Datasource::NoCloud, "{}", evidence(&id));
    assert_eq!(id.device.as_deref(), Some(t.join("/dev/sr0").as_path()));
    let ev = evidence(&id);
    assert!(
        ev.contains("/dev/disk/by-label/{cidata,CIDATA}: absent"),
        "{ev}"
    );
    assert!(
        ev.contains(&format!(
            "/sys/class/block/sr0: iso9660 labelled cidata: {}",
            t.join("/dev/sr0").display()
        )),
        "{ev}"
    );
    let opts = Options {
        allow_mount: Some(true),
        ..Options::default()
    };
    let f = fetch::fetch(&root, &id, &Request::default(), &opts).unwrap();
    assert_eq!(f.user_data, files[0].1);
    assert_eq!(f.instance_id, "iid-iso-01");
    // Without the device: nothing else passes for a seed, and what was
    // looked at is said.
    std::fs::remove_file(t.join("/dev/sr0")).unwrap();
    let e = identify::identify(&root, &Request::default(), &[]).unwrap_err();
    let ev = e
        .rules()
        .iter()
        .map(|r| r.evidence.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        ev.contains("/sys/class/block: none labelled {cidata,CIDATA}:; "),
        "{ev}"
    );
    for seen in [
        "  sr1: iso9660 labelled \"notcidata\"",
        "  vda: vfat labelled \"DATA\"",
        "  vdb1: no iso9660 or vfat label",
        "  sda: 40960 MiB, larger than a seed (over 128 MiB): not read",
        "  sr2: empty (no medium)",
    ] {
        assert!(ev.contains(seen), "{seen}: {ev}");
    }
    assert!(!ev.contains("loop0"), "{ev}");
    // The same scan finds a config drive.
    make_iso(
        "genisoimage",
        &["-r", "-J"],
        "config-2",
        &t.join("/content"),
        &t.join("/dev/sr0"),
    );
    let id = identify::identify(&root, &Request::default(), &[]).unwrap();
    assert_eq!(id.datasource, Datasource::OpenStack, "{}", evidence(&id));
    assert_eq!(id.device.as_deref(), Some(t.join("/dev/sr0").as_path()));
}

/// A vfat seed (`mkfs.vfat -n CIDATA`, FAT12; `-n cidata`, FAT32) with no
/// by-label link is found too; it is then mounted, which an image file is
/// not (the mount error names it).
#[test]
fn seed_vfat_found_without_udev_links() {
    for (fat32, size, label) in [(false, 1u64 << 20, "CIDATA"), (true, 40 << 20, "cidata")] {
        let t = TempRoot::new();
        make_vfat(&t.join("/dev/vdb"), size, fat32, label);
        fake_block(&t, "vdb", "252:16", None);
        let root = Root::at(t.path());
        let id = identify::identify(&root, &Request::default(), &[]).unwrap();
        assert_eq!(id.datasource, Datasource::NoCloud, "{}", evidence(&id));
        assert_eq!(id.device.as_deref(), Some(t.join("/dev/vdb").as_path()));
        assert!(
            evidence(&id).contains(&format!("/sys/class/block/vdb: vfat labelled {label}")),
            "{}",
            evidence(&id)
        );
        let opts = Options {
            allow_mount: Some(true),
            ..Options::default()
        };
        let e = fetch::fetch(&root, &id, &Request::default(), &opts).unwrap_err();
        assert!(matches!(e, FetchError::Mount { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&t.join("/dev/vdb").display().to_string()),
            "{e}"
        );
    }
}

/// What is not ISO 9660 goes to the mount path (which, for a plain file or
/// a non-seed file system, fails saying so).
#[test]
fn not_iso9660_falls_back_to_mounting() {
    let t = TempRoot::new();
    let img = t.join("/dev/vdb");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    // A FAT boot sector, as `mkfs.vfat` starts one; no CD001 at 32 KiB.
    let mut bytes = vec![0u8; 1 << 20];
    bytes[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
    bytes[3..11].copy_from_slice(b"mkfs.fat");
    bytes[510] = 0x55;
    bytes[511] = 0xaa;
    std::fs::write(&img, &bytes).unwrap();
    match iso9660::open(&img).unwrap() {
        Opened::Declined(why) => assert!(why.contains("CD001"), "{why}"),
        Opened::Seed(_) => panic!("a FAT image read as ISO 9660"),
    }
    let e = nocloud::read_device(&img, &t.join("/run/imprint"), 1 << 20).unwrap_err();
    assert!(matches!(e, FetchError::Mount { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.starts_with(&format!(
            "failed to mount {} (labelled cidata) read-only",
            img.display()
        )),
        "{e}"
    );
    assert!(e.contains("iso9660: ") && e.contains("vfat: "), "{e}");
    assert_eq!(
        std::fs::read_dir(t.join("/run/imprint")).unwrap().count(),
        0,
        "the mount point is removed"
    );
    // Not a device or a file: refused, not opened for reading (a FIFO
    // would block).
    let fifo = t.join("/dev/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let e = iso9660::open(&fifo)
        .err()
        .expect("a fifo is refused")
        .to_string();
    assert!(e.contains("not a block device or an image file"), "{e}");
}

// ------------------------------------------------------- damaged images

/// A small good image (genisoimage -r -J) to damage.
fn good_image() -> Vec<u8> {
    let t = TempRoot::new();
    write_content(&t.join("/c"), &content());
    let img = t.join("/g.iso");
    make_iso("genisoimage", &["-r", "-J"], "cidata", &t.join("/c"), &img);
    std::fs::read(img).unwrap()
}

fn root_dir_offset(img: &[u8]) -> usize {
    let pvd = 16 * 2048;
    let rec = &img[pvd + 156..];
    u32::from_le_bytes(rec[2..6].try_into().unwrap()) as usize * 2048
}

fn put32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    img[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Read everything a seed reader would; the result as text.
fn read_all(img: Vec<u8>) -> Result<String, String> {
    match parse_bytes(img).map_err(|e| e.to_string())? {
        Opened::Declined(why) => Ok(format!("declined: {why}")),
        Opened::Seed(seed) => {
            for n in ["user-data", "meta-data", "vendor-data", "network-config"] {
                seed.read(n, 1 << 20, n).map_err(|e| e.to_string())?;
            }
            Ok("read".into())
        }
    }
}

#[test]
fn damaged_images_are_errors_that_say_what_is_wrong() {
    let good = good_image();
    assert_eq!(read_all(good.clone()).unwrap(), "read");
    let pvd = 16 * 2048;
    let root = root_dir_offset(&good);
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let table: Vec<(&str, Damage, &str)> = vec![
        (
            "cut after the volume descriptors",
            Box::new(|i: &mut Vec<u8>| i.truncate(20 * 2048)),
            "the primary root directory (block",
        ),
        (
            "root directory past the end",
            Box::new(move |i: &mut Vec<u8>| put32(i, pvd + 156 + 2, 0x7fff_ffff)),
            "lies past the end of the device",
        ),
        (
            "root directory of 3 GB",
            Box::new(move |i: &mut Vec<u8>| put32(i, pvd + 156 + 10, 3_000_000_000)),
            "more than imprint reads",
        ),
        (
            "root record not a directory",
            Box::new(move |i: &mut Vec<u8>| i[pvd + 156 + 25] = 0),
            "root is not a directory",
        ),
        (
            "root record length 0",
            Box::new(move |i: &mut Vec<u8>| i[pvd + 156] = 0),
            "root directory record is malformed",
        ),
        (
            "block size 4096",
            Box::new(move |i: &mut Vec<u8>| i[pvd + 128..pvd + 130].copy_from_slice(&[0, 16])),
            "logical block size 4096",
        ),
        (
            "a record longer than the directory",
            Box::new(move |i: &mut Vec<u8>| {
                // The third record (the first file) claims 255 bytes at the
                // very end of the directory's block.
                let first = i[root] as usize;
                let second = i[root + first] as usize;
                let at = root + first + second;
                i[at + 32] = 250;
            }),
            "record at byte",
        ),
        (
            "a file's data past the end",
            Box::new(move |i: &mut Vec<u8>| {
                let first = i[root] as usize;
                let second = i[root + first] as usize;
                let mut at = root + first + second;
                while i[at] != 0 {
                    put32(i, at + 2, 0x00ff_ffff);
                    at += i[at] as usize;
                }
            }),
            "lies past the end of the device",
        ),
        (
            "Rock Ridge continuation pointing past the end",
            Box::new(move |i: &mut Vec<u8>| {
                // The root's "." record carries SP, then a CE.
                let su = root + 34;
                let dot_len = i[root] as usize;
                let mut p = su;
                while p + 4 <= root + dot_len {
                    if &i[p..p + 2] == b"CE" {
                        put32(i, p + 4, 0x00ff_ffff);
                    }
                    p += i[p + 2].max(4) as usize;
                }
            }),
            "Rock Ridge continuation area",
        ),
    ];
    for (what, damage, expect) in table {
        let mut img = good.clone();
        damage(&mut img);
        let e = read_all(img).expect_err(what);
        assert!(
            e.contains("/dev/test0"),
            "{what}: the message names the device: {e}"
        );
        assert!(e.contains(expect), "{what}: {e}");
    }
    // A continuation area that points at itself: a loop, stopped.
    let mut img = good.clone();
    let dot_len = img[root] as usize;
    let mut p = root + 34;
    let mut looped = false;
    while p + 4 <= root + dot_len {
        if &img[p..p + 2] == b"CE" {
            // Make the continuation area a copy of the "." record's system
            // use area, CE included, at the same block: CE -> itself.
            let ce_block = u32::from_le_bytes(img[p + 4..p + 8].try_into().unwrap()) as usize;
            let area = img[root + 34..root + dot_len].to_vec();
            img[ce_block * 2048..ce_block * 2048 + area.len()].copy_from_slice(&area);
            put32(&mut img, p + 12, 0);
            put32(&mut img, p + 20, area.len() as u32);
            let ce_in_copy = ce_block * 2048 + (p - root - 34);
            put32(&mut img, ce_in_copy + 12, 0);
            put32(&mut img, ce_in_copy + 20, area.len() as u32);
            looped = true;
        }
        p += img[p + 2].max(4) as usize;
    }
    assert!(looped, "the test image has a CE in its root's \".\" record");
    let e = read_all(img).unwrap_err();
    assert!(e.contains("continuation areas in a row"), "{e}");
    // Not ISO at all, or too small: declined, for the mount path.
    assert!(read_all(vec![0; 100]).unwrap().starts_with("declined"));
    let mut img = good.clone();
    img[pvd + 1] = b'X';
    assert!(read_all(img).unwrap().contains("CD001"));
}

/// A multi-extent file is refused by name, not read in part.
#[test]
fn multi_extent_is_refused() {
    let mut img = good_image();
    let root = root_dir_offset(&img);
    // In the Rock Ridge tree (the primary's), mark every file multi-extent.
    let mut at = root + img[root] as usize;
    at += img[at] as usize;
    while img[at] != 0 {
        img[at + 25] |= 0x80;
        at += img[at] as usize;
    }
    let Opened::Seed(seed) = parse_bytes(img).unwrap() else {
        panic!("declined")
    };
    let e = seed
        .read("user-data", 1 << 20, "user-data of /dev/test0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("a multi-extent file"), "{e}");
    assert!(e.contains("/dev/test0"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    /// Random damage to the volume descriptors, the directories and the
    /// Rock Ridge areas: an answer (or an error) every time, no panic, and
    /// nothing read beyond the user-data cap.
    #[test]
    fn random_damage_never_panics(
        edits in prop::collection::vec((16 * 2048usize..40 * 2048, any::<u8>()), 1..24),
        cut in prop::option::of(0usize..60 * 2048),
    ) {
        let _ = read_all(damaged(good_image_cached(), edits, cut));
    }
}

/// `img` with bytes overwritten at `edits` (those inside it) and cut at
/// `cut`: the random damage of the proptests.
fn damaged(img: &[u8], edits: Vec<(usize, u8)>, cut: Option<usize>) -> Vec<u8> {
    let mut img = img.to_vec();
    for (at, b) in edits {
        if at < img.len() {
            img[at] = b;
        }
    }
    if let Some(c) = cut {
        img.truncate(c);
    }
    img
}

fn good_image_cached() -> &'static Vec<u8> {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(good_image)
}

// ------------------------------------------------ subdirectories, config-2

/// An OpenStack config drive's tree as Nova writes it (`openstack/VERSION/`
/// and `openstack/latest/`, `ec2/`), plus a directory 7 levels down (a file
/// at the deepest path ISO 9660 nests without relocating: 8 names).
fn config_drive_tree(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut user = b"#cloud-config\nimprint: {greeting: \"h\xc3\xa9llo\"}\n# ".to_vec();
    user.extend((0..5000u32).map(|i| (i % 251) as u8));
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "openstack/latest/meta_data.json",
            br#"{"uuid": "5a1f2b7e-0c9d-4e8f-a1b2-c3d4e5f60718", "hostname": "cd.novalocal", "name": "cd"}"#.to_vec(),
        ),
        ("openstack/latest/user_data", user),
        ("openstack/latest/vendor_data.json", b"{}".to_vec()),
        ("openstack/latest/network_data.json", b"{\"links\": []}".to_vec()),
        (
            "openstack/2012-08-10/meta_data.json",
            br#"{"uuid": "old-version"}"#.to_vec(),
        ),
        ("ec2/latest/meta-data.json", b"{}".to_vec()),
        ("a/b/c/d/e/f/g/deep", b"eight names down\n".to_vec()),
    ];
    for (p, bytes) in &files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    files
}

/// Files in subdirectories are found by each name as the kernel shows it,
/// in every naming variant: Rock Ridge and Joliet give Nova's names (Joliet
/// case-insensitively), plain ISO 9660 the level-1 names (`openstac/latest/
/// meta_dat.jso`), as the kernel's `map=normal` shows them.
#[test]
fn subdirectories_in_every_naming_variant() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    let files = config_drive_tree(&dir);
    let variants: &[(&str, &[&str], Names)] = &[
        ("genisoimage", &["-r"], Names::RockRidge),
        ("genisoimage", &["-J"], Names::Joliet),
        ("genisoimage", &["-r", "-J"], Names::RockRidge),
        ("genisoimage", &[], Names::Plain),
        ("xorriso", &["-r", "-J"], Names::RockRidge),
        ("xorriso", &["--norock", "-J"], Names::Joliet),
        ("xorriso", &["--norock"], Names::Plain),
    ];
    for (tool, flags, names) in variants {
        let img = t.join(&format!("/cd-{tool}-{}.iso", flags.join("")));
        make_iso(tool, flags, "config-2", &dir, &img);
        let seed = open_file(&img);
        let ctx = format!("{tool} {flags:?}");
        assert_eq!(seed.names, *names, "{ctx}");
        if *names == Names::Plain {
            for (path, plain) in [
                (
                    "openstack/latest/meta_data.json",
                    "openstac/latest/meta_dat.jso",
                ),
                ("openstack/latest/user_data", "openstac/latest/user_dat"),
            ] {
                let want = &files.iter().find(|f| f.0 == path).unwrap().1;
                assert!(seed.read(path, 1 << 20, path).unwrap().is_none(), "{ctx}");
                assert_eq!(
                    seed.read(plain, 1 << 20, plain).unwrap().as_ref(),
                    Some(want),
                    "{ctx}: {plain}"
                );
            }
            assert_eq!(listed(&seed, "openstac"), ["2012_08_", "latest"], "{ctx}");
            continue;
        }
        for (path, bytes) in &files {
            if path.starts_with("a/") && *names != Names::RockRidge {
                // Without Rock Ridge, genisoimage leaves out what is
                // nested over 6 levels (it says so).
                continue;
            }
            assert_eq!(
                seed.read(path, 1 << 20, path).unwrap().as_ref(),
                Some(bytes),
                "{ctx}: {path}"
            );
        }
        assert_eq!(
            listed(&seed, "openstack/latest"),
            [
                "meta_data.json",
                "network_data.json",
                "user_data",
                "vendor_data.json"
            ],
            "{ctx}"
        );
        // Joliet: every name case-insensitively; Rock Ridge: exactly.
        let upper = seed
            .read("OPENSTACK/Latest/META_DATA.JSON", 1 << 20, "m")
            .unwrap();
        assert_eq!(upper.is_some(), *names == Names::Joliet, "{ctx}");
        // Absent on the way: absent, not an error.
        for absent in [
            "openstack/latest/missing",
            "openstack/2013-04-04/meta_data.json",
            "nope/latest/meta_data.json",
        ] {
            assert!(
                seed.read(absent, 1 << 20, "x").unwrap().is_none(),
                "{ctx}: {absent}"
            );
        }
        assert!(seed.list("openstack/nope").unwrap().is_none(), "{ctx}");
        // A directory where a file is asked for, a file on the way.
        let e = seed
            .read("openstack/latest", 1 << 20, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a directory, not a regular file"), "{ctx}: {e}");
        let e = seed
            .read("openstack/latest/user_data/x", 1 << 20, "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("openstack/latest/user_data is not a directory"),
            "{ctx}: {e}"
        );
        assert!(e.contains(&img.display().to_string()), "{ctx}: {e}");
        // Caps apply in subdirectories too, before reading.
        let e = seed
            .read("openstack/latest/user_data", 100, "user_data of X")
            .unwrap_err();
        assert!(
            matches!(e, FetchError::TooLarge { limit: 100, .. }),
            "{ctx}: {e}"
        );
        // The root's entries are still there for the NoCloud reader.
        assert!(seed.lookup("openstack").is_some(), "{ctx}");
    }
}

/// Paths deeper than ISO 9660 nests (Rock Ridge relocates such directories
/// into `rr_moved`, `CL`/`RE`) are refused by the depth cap, before any
/// directory is read; the relocated directory is hidden in `rr_moved`, as
/// the kernel hides it; odd paths are refused.
#[test]
fn depth_is_capped_and_relocated_directories_hidden() {
    let t = TempRoot::new();
    let dir = t.join("/content");
    config_drive_tree(&dir);
    let deep = dir.join("a/b/c/d/e/f/g/h/i/j");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("file"), b"ten down\n").unwrap();
    let img = t.join("/deep.iso");
    make_iso("genisoimage", &["-r", "-J"], "config-2", &dir, &img);
    let seed = open_file(&img);
    assert_eq!(
        seed.read("a/b/c/d/e/f/g/deep", 100, "d")
            .unwrap()
            .as_deref(),
        Some(&b"eight names down\n"[..])
    );
    let e = seed
        .read("a/b/c/d/e/f/g/h/i/j/file", 100, "d")
        .unwrap_err()
        .to_string();
    assert!(e.contains("a path 11 names deep"), "{e}");
    assert!(
        e.contains(&format!("at most {}", iso9660::MAX_DEPTH)),
        "{e}"
    );
    // genisoimage relocated h: in rr_moved it is hidden (RE), and the
    // placeholder in g is a directory (CL), not a file.
    let moved: Vec<String> = seed
        .list("rr_moved")
        .unwrap()
        .expect("genisoimage -r relocates deep directories into rr_moved")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(moved.is_empty(), "{moved:?}");
    assert!(seed
        .read("rr_moved/h/i/j/file", 100, "d")
        .unwrap()
        .is_none());
    let e = seed
        .read("a/b/c/d/e/f/g/h", 100, "d")
        .unwrap_err()
        .to_string();
    assert!(e.contains("a directory, not a regular file"), "{e}");
    let e = seed
        .list("a/b/c/d/e/f/g/h")
        .expect_err("a relocated directory is not followed")
        .to_string();
    assert!(e.contains("relocated by Rock Ridge (CL)"), "{e}");
    for bad in [
        "/openstack/latest/user_data",
        "openstack//latest",
        "openstack/../x",
        "./x",
        "",
    ] {
        let e = seed.read(bad, 100, "b").unwrap_err().to_string();
        assert!(e.contains("not a relative path of names"), "{bad:?}: {e}");
    }
}

/// A small good config drive (genisoimage -r -J) to damage.
fn good_drive() -> Vec<u8> {
    let t = TempRoot::new();
    config_drive_tree(&t.join("/c"));
    let img = t.join("/cd.iso");
    make_iso(
        "genisoimage",
        &["-r", "-J"],
        "config-2",
        &t.join("/c"),
        &img,
    );
    std::fs::read(img).unwrap()
}

/// The offset of the record named `name` (Rock Ridge `NM` or plain name)
/// in the directory at byte `dir` of `img` (one block).
fn record_of(img: &[u8], dir: usize, name: &[u8]) -> usize {
    let mut at = dir;
    while img[at] != 0 && at < dir + 2048 {
        let len = img[at] as usize;
        if img[at..at + len].windows(name.len()).any(|w| w == name) {
            return at;
        }
        at += len;
    }
    panic!("no record {:?}", String::from_utf8_lossy(name));
}

/// Read a config drive's files; the result as text.
fn read_drive(img: Vec<u8>) -> Result<String, String> {
    match parse_bytes(img).map_err(|e| e.to_string())? {
        Opened::Declined(why) => Ok(format!("declined: {why}")),
        Opened::Seed(seed) => {
            let mut found = 0;
            for n in [
                "openstack/latest/meta_data.json",
                "openstack/latest/user_data",
                "openstack/latest/vendor_data.json",
                "a/b/c/d/e/f/g/deep",
            ] {
                found += seed
                    .read(n, 1 << 20, n)
                    .map_err(|e| e.to_string())?
                    .is_some() as usize;
            }
            Ok(format!("read {found}"))
        }
    }
}

#[test]
fn damaged_subdirectories_are_errors_that_say_what_is_wrong() {
    let good = good_drive();
    assert_eq!(read_drive(good.clone()).unwrap(), "read 4");
    let root = root_dir_offset(&good);
    let openstack = record_of(&good, root, b"openstack");
    let os_block = u32::from_le_bytes(good[openstack + 2..openstack + 6].try_into().unwrap());
    let latest = record_of(&good, os_block as usize * 2048, b"latest");
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let table: Vec<(&str, Damage, &str)> = vec![
        (
            "a subdirectory past the end",
            Box::new(move |i: &mut Vec<u8>| put32(i, openstack + 2, 0x00ff_ffff)),
            "the directory openstack (block 16777215, 2048 bytes) lies past the end",
        ),
        (
            "a subdirectory of 3 GB",
            Box::new(move |i: &mut Vec<u8>| put32(i, latest + 10, 3_000_000_000)),
            "the directory openstack/latest is 3000000000 bytes, more than imprint reads",
        ),
        (
            "a subdirectory of 10 bytes",
            Box::new(move |i: &mut Vec<u8>| put32(i, latest + 10, 10)),
            "the directory openstack/latest is 10 bytes, too small",
        ),
        (
            "a subdirectory that is not one",
            Box::new(move |i: &mut Vec<u8>| i[openstack + 25] &= !2),
            "openstack is not a directory",
        ),
        (
            "a malformed record in a subdirectory",
            Box::new(move |i: &mut Vec<u8>| {
                let dir = os_block as usize * 2048;
                let dot = i[dir] as usize;
                i[dir + dot + 32] = 250;
            }),
            "the directory openstack's record at byte",
        ),
        (
            "a file in a subdirectory past the end",
            Box::new(move |i: &mut Vec<u8>| {
                let l = u32::from_le_bytes(i[latest + 2..latest + 6].try_into().unwrap());
                let m = record_of(i, l as usize * 2048, b"meta_data.json");
                put32(i, m + 2, 0x00ff_ffff);
            }),
            "openstack/latest/meta_data.json on the seed (block 16777215",
        ),
    ];
    for (what, damage, expect) in table {
        let mut img = good.clone();
        damage(&mut img);
        let e = read_drive(img).expect_err(what);
        assert!(e.contains("/dev/test0"), "{what}: names the device: {e}");
        assert!(e.contains(expect), "{what}: {e}");
    }
    // A directory that points back at the root (a cycle): the walk is
    // bounded by the path, and finds nothing there.
    let mut img = good.clone();
    let root_block = (root / 2048) as u32;
    put32(&mut img, openstack + 2, root_block);
    let root_size = u32::from_le_bytes(
        good[16 * 2048 + 156 + 10..16 * 2048 + 156 + 14]
            .try_into()
            .unwrap(),
    );
    put32(&mut img, openstack + 10, root_size);
    assert_eq!(read_drive(img.clone()).unwrap(), "read 1");
    let Opened::Seed(seed) = parse_bytes(img).unwrap() else {
        panic!("declined")
    };
    assert!(seed
        .read(
            "openstack/openstack/openstack/openstack/openstack/openstack/openstack/x",
            10,
            "x"
        )
        .unwrap()
        .is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Random damage to a config drive's volume descriptors and
    /// directories (the root, `openstack`, `openstack/latest`, the deep
    /// chain): an answer or an error every time, no panic.
    #[test]
    fn random_damage_to_subdirectories_never_panics(
        edits in prop::collection::vec((16 * 2048usize..48 * 2048, any::<u8>()), 1..24),
        cut in prop::option::of(0usize..60 * 2048),
    ) {
        let _ = read_drive(damaged(good_drive_cached(), edits, cut));
    }
}

fn good_drive_cached() -> &'static Vec<u8> {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(good_drive)
}

/// End to end: a `config-2` ISO as Nova writes it, found by its label
/// (by-label link, or the scan of `/sys/class/block`), read in-process:
/// nothing mounted, no mount point made. Before, it was mounted (and an
/// image file cannot be: the fetch failed).
#[test]
fn openstack_config_drive_read_without_mounting() {
    for linked in [true, false] {
        let t = TempRoot::new();
        let files = config_drive_tree(&t.join("/content"));
        std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
        make_iso(
            "genisoimage",
            &["-r", "-J"],
            "config-2",
            &t.join("/content"),
            &t.join("/dev/sr0"),
        );
        if linked {
            std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/config-2")).unwrap();
        } else {
            fake_block(&t, "sr0", "11:0", None);
        }
        let root = Root::at(t.path());
        let req = Request {
            datasource: Some("openstack".into()),
            // Not asked: the drive is read first.
            metadata_url: Some("http://127.0.0.1:9/".into()),
            ..Request::default()
        };
        let id = identify::identify(&root, &req, &[]).unwrap();
        assert_eq!(id.device.as_deref(), Some(t.join("/dev/sr0").as_path()));
        assert!(identify::fetches_locally(&root, &id));
        let opts = Options {
            allow_mount: Some(true),
            ..Options::default()
        };
        let f = fetch::fetch(&root, &id, &req, &opts).unwrap();
        assert_eq!(f.instance_id, "5a1f2b7e-0c9d-4e8f-a1b2-c3d4e5f60718");
        assert_eq!(f.hostname.as_deref(), Some("cd.novalocal"));
        assert_eq!(f.user_data, files[1].1);
        assert_eq!(f.meta_data.as_deref(), Some(&files[0].1[..]));
        assert_eq!(f.source, t.join("/dev/sr0").display().to_string());
        assert!(!t.join("/run/imprint").exists(), "no mount point made");
        // Under --root (devices not read): refused, saying where the files
        // belong instead.
        let e = fetch::fetch(&root, &id, &req, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("found the config drive"), "{e}");
        assert!(e.contains("var/lib/cloud/seed/config_drive"), "{e}");
    }
}

/// The config drive's reader on its own: no `user_data` is none; no
/// `meta_data.json` (the drive of a different layout) says so; a drive
/// whose volume descriptors or root cannot be read is "unavailable" (as a
/// drive that fails to mount: a sealed instance keeps its seal); what is
/// not ISO 9660 (vfat, Nova's other format) is mounted, which an image
/// file cannot be (the mount error names it).
#[test]
fn openstack_config_drive_variants() {
    let t = TempRoot::new();
    let run = t.join("/run/imprint");
    let dir = t.join("/content");
    config_drive_tree(&dir);
    std::fs::remove_file(dir.join("openstack/latest/user_data")).unwrap();
    let img = t.join("/dev/sr0");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    make_iso("xorriso", &["-r", "-J"], "config-2", &dir, &img);
    let f = openstack::read_device(&img, &run, 1 << 20).unwrap();
    assert!(f.user_data.is_empty());
    assert_eq!(f.instance_id, "5a1f2b7e-0c9d-4e8f-a1b2-c3d4e5f60718");
    // The files at the root (a NoCloud-like layout): no meta_data.json.
    let flat = t.join("/flat");
    write_content(&flat, &[("meta_data.json", b"{\"uuid\": \"u\"}".to_vec())]);
    make_iso("genisoimage", &["-r"], "config-2", &flat, &img);
    let e = openstack::read_device(&img, &run, 1 << 20).unwrap_err();
    assert!(
        matches!(&e, FetchError::Unavailable { message, .. }
            if message.contains("has no openstack/latest/meta_data.json")),
        "{e}"
    );
    // The root directory past the end: unavailable, saying why.
    let mut bytes = good_drive();
    put32(&mut bytes, 16 * 2048 + 156 + 2, 0x00ff_ffff);
    std::fs::write(&img, &bytes).unwrap();
    let e = openstack::read_device(&img, &run, 1 << 20).unwrap_err();
    assert!(matches!(e, FetchError::Unavailable { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("could not be read"), "{e}");
    assert!(e.contains("lies past the end of the device"), "{e}");
    // vfat: declined by the reader, so mounted (which fails on a file).
    make_vfat(&img, 1 << 20, false, "config-2");
    let e = openstack::read_device(&img, &run, 1 << 20).unwrap_err();
    assert!(matches!(e, FetchError::Mount { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "failed to mount {} (labelled config-2)",
            img.display()
        )),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(&run).unwrap().count(),
        0,
        "mount point removed"
    );
}

// ------------------------------------------------ FAT32 root cluster chain

/// blkid's labels of an image file (`blkid -p`: the superblock itself,
/// no cache): `LABEL` (the root directory's entry), then `LABEL_FATBOOT`
/// (the boot sector's) when it is reported.
fn blkid_labels(img: &Path) -> Vec<String> {
    let o = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("blkid is not installed (apt-get install util-linux): {e}"));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let mut out: Vec<String> = get("LABEL").into_iter().collect();
    if let Some(b) = get("LABEL_FATBOOT") {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// A 40 MiB FAT32 image (`mkfs.vfat -F 32`: 512-byte clusters, 16 entries
/// each) with 40 files at its root (`mcopy`, each a long-name entry and a
/// short one), then labelled `label` by `mlabel`, which writes the label
/// entry in the root directory's first free slot: the 8th cluster of its
/// chain.
fn fat32_with_full_root(img: &Path, label: Option<&str>) {
    make_vfat_unlabelled_fat32(img);
    let src = img.with_extension("files");
    std::fs::create_dir_all(&src).unwrap();
    let mut names = Vec::new();
    for i in 0..40 {
        let p = src.join(format!("file-number-{i}.txt"));
        std::fs::write(&p, format!("{i}\n")).unwrap();
        names.push(p);
    }
    let tool = |c: &mut Command, name: &str| {
        let o = c
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap_or_else(|e| panic!("{name} is not installed (apt-get install mtools): {e}"));
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    tool(
        Command::new("mcopy")
            .arg("-i")
            .arg(img)
            .args(&names)
            .arg("::"),
        "mcopy",
    );
    if let Some(l) = label {
        tool(
            Command::new("mlabel")
                .arg("-i")
                .arg(img)
                .arg(format!("::{l}")),
            "mlabel",
        );
    }
}

fn make_vfat_unlabelled_fat32(img: &Path) {
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::File::create(img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let o = Command::new("mkfs.vfat")
        .args(["-F", "32"])
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("mkfs.vfat is not installed (apt-get install dosfstools): {e}"));
    assert!(
        o.status.success(),
        "mkfs.vfat: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The FAT32 root directory's clusters, in chain order (at most 64), and
/// the byte offsets of the first FAT and of cluster 2.
fn fat32_root_chain(img: &[u8]) -> (Vec<u32>, usize, usize, usize) {
    let le16 = |at: usize| u16::from_le_bytes([img[at], img[at + 1]]) as usize;
    let le32 = |at: usize| u32::from_le_bytes(img[at..at + 4].try_into().unwrap());
    let sector = le16(0x0b);
    let cluster = img[0x0d] as usize * sector;
    let fat = le16(0x0e) * sector;
    let data = fat + img[0x10] as usize * le32(0x24) as usize * sector;
    let mut chain = vec![le32(0x2c)];
    loop {
        let next = le32(fat + *chain.last().unwrap() as usize * 4) & 0x0fff_ffff;
        if next >= 0x0fff_fff8 || chain.len() >= 64 {
            break;
        }
        chain.push(next);
    }
    (chain, fat, data, cluster)
}

/// The label entry of a FAT32 root directory beyond its first cluster is
/// found, as blkid finds it (blkid -p is the oracle); before, only the first
/// cluster was read and the drive below was not found at all.
#[test]
fn fat32_label_beyond_the_first_cluster() {
    let t = TempRoot::new();
    let img = t.join("/dev/vdb");
    fat32_with_full_root(&img, Some("config-2"));
    let bytes = std::fs::read(&img).unwrap();
    let (chain, _, data, cluster) = fat32_root_chain(&bytes);
    // The layout this test is about: the label entry is not in the first
    // cluster.
    assert!(chain.len() > 2, "{chain:?}");
    let first = &bytes[data + (chain[0] as usize - 2) * cluster..][..cluster];
    assert!(
        !first.chunks(32).any(|e| e[11] & 0x3f == 0x08),
        "the label entry is in the first cluster"
    );
    let oracle = blkid_labels(&img);
    assert_eq!(oracle, ["CONFIG-2", "config-2"], "blkid -p");
    assert_eq!(
        imprint::blockdev::vfat_labels(&bytes, bytes.len() as u64),
        Some(oracle)
    );
    // The boot sector's label blanked ("NO NAME", as mkfs.vfat writes it
    // without -n): only the root directory's entry names the drive, for
    // blkid as for imprint, which finds it with no by-label link.
    let mut bytes = bytes;
    bytes[0x47..0x52].copy_from_slice(b"NO NAME    ");
    std::fs::write(&img, &bytes).unwrap();
    assert_eq!(blkid_labels(&img), ["CONFIG-2"], "blkid -p");
    fake_block(&t, "vdb", "252:16", None);
    let root = Root::at(t.path());
    let req = Request {
        datasource: Some("openstack".into()),
        ..Request::default()
    };
    let id = identify::identify(&root, &req, &[]).unwrap();
    assert_eq!(
        id.device.as_deref(),
        Some(img.as_path()),
        "{}",
        evidence(&id)
    );
    let id = identify::identify(&root, &Request::default(), &[]).unwrap();
    assert_eq!(id.datasource, Datasource::OpenStack, "{}", evidence(&id));
    assert!(
        evidence(&id).contains("/sys/class/block/vdb: vfat labelled CONFIG-2"),
        "{}",
        evidence(&id)
    );
}

/// A FAT32 root directory's cluster chain that loops, or runs off the
/// FAT or the device: the scan ends (blkid's answer where it has one), no
/// hang, no panic.
#[test]
fn fat32_root_chain_loops_and_damage_end_the_scan() {
    let t = TempRoot::new();
    let img = t.join("/f.img");
    // No label anywhere: the whole chain is walked.
    fat32_with_full_root(&img, None);
    let good = std::fs::read(&img).unwrap();
    assert_eq!(blkid_labels(&img), Vec::<String>::new());
    let (chain, fat, _, _) = fat32_root_chain(&good);
    let last = *chain.last().unwrap() as usize;
    let len = good.len() as u64;
    // The last cluster points back at the first: a loop.
    let mut looped = good.clone();
    looped[fat + last * 4..fat + last * 4 + 4].copy_from_slice(&chain[0].to_le_bytes());
    assert_eq!(imprint::blockdev::vfat_labels(&looped, len), Some(vec![]));
    // ... at itself.
    let mut selfloop = good.clone();
    selfloop[fat + last * 4..fat + last * 4 + 4].copy_from_slice(&(last as u32).to_le_bytes());
    assert_eq!(imprint::blockdev::vfat_labels(&selfloop, len), Some(vec![]));
    // With a label, in a looping chain: found (blkid agrees).
    fat32_with_full_root(&img, Some("cidata"));
    let mut labelled = std::fs::read(&img).unwrap();
    let (chain, fat, _, _) = fat32_root_chain(&labelled);
    let last = *chain.last().unwrap() as usize;
    labelled[fat + last * 4..fat + last * 4 + 4].copy_from_slice(&chain[0].to_le_bytes());
    std::fs::write(&img, &labelled).unwrap();
    let oracle = blkid_labels(&img);
    assert_eq!(oracle, ["CIDATA", "cidata"]);
    assert_eq!(
        imprint::blockdev::vfat_labels(&labelled, labelled.len() as u64),
        Some(oracle)
    );
    // A next cluster past the FAT, past the device, or the image cut: the
    // boot sector's label still stands, nothing panics.
    for next in [0x0fff_fff0u32, 0x00ff_ffff, 1, 0] {
        let mut b = labelled.clone();
        let first = chain[0] as usize;
        b[fat + first * 4..fat + first * 4 + 4].copy_from_slice(&next.to_le_bytes());
        let got = imprint::blockdev::vfat_labels(&b, b.len() as u64).unwrap();
        assert_eq!(got, ["cidata"], "next {next:#x}");
    }
    for cut in [600usize, 40 << 10, 400 << 10] {
        let b = &labelled[..cut.min(labelled.len())];
        let _ = imprint::blockdev::vfat_labels(b, b.len() as u64);
    }
}

/// A sealed OpenStack instance whose config drive device is there but
/// damaged below its root directory (a `meta_data.json` that is not JSON,
/// a file cut off by the end of the image) leaves the seal standing, as a
/// NoCloud seed device does (docs/lockout.md): 77, nothing changed, the
/// device named. Before, the first was 69 at every later boot. Unsealed
/// (`--force`), it is still an error.
#[test]
fn damaged_config_drive_on_a_sealed_instance_leaves_the_seal_standing() {
    use imprint::pipeline::{self, Inputs, Outcome, Until};
    use imprint::systemd::Recorder;
    let t = TempRoot::new();
    t.write("/proc/cmdline", "ro imprint.datasource=openstack\n");
    let uuid = "5a1f2b7e-0c9d-4e8f-a1b2-c3d4e5f60718";
    let user_data = "#cloud-config\nwrite_files:\n- path: /etc/motd\n  content: hello\n";
    let seed = "/var/lib/cloud/seed/config_drive/openstack/latest";
    t.write(
        &format!("{seed}/meta_data.json"),
        format!("{{\"uuid\": \"{uuid}\"}}"),
    );
    t.write(&format!("{seed}/user_data"), user_data);
    let inputs = |force: bool| Inputs {
        root: Root::at(t.path()),
        config: None,
        request: Request::default(),
        no_restart: true,
        force,
        read_devices: Some(true),
    };
    let run = |i: &Inputs| pipeline::run(i, Until::Run, &mut Recorder, &mut Outcome::default());
    run(&inputs(false)).expect("first boot configures");
    assert_eq!(t.read("/etc/motd"), "hello");
    std::fs::remove_dir_all(t.join("/var/lib/cloud/seed")).unwrap();
    let img = t.join("/dev/sr0");
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/config-2")).unwrap();
    let device = img.display().to_string();
    let content = t.join("/content");
    let not_json = vec![
        ("openstack/latest/meta_data.json", b"{\"uuid\": ".to_vec()),
        ("openstack/latest/user_data", user_data.as_bytes().to_vec()),
    ];
    for (name, bytes) in &not_json {
        std::fs::create_dir_all(content.join(name).parent().unwrap()).unwrap();
        std::fs::write(content.join(name), bytes).unwrap();
    }
    make_iso("genisoimage", &["-r", "-J"], "config-2", &content, &img);
    std::fs::remove_dir_all(&content).unwrap();
    // The same drive whole, then cut off inside user_data's data.
    let cut = {
        let marker = b"#cut-here#";
        let mut user = user_data.as_bytes().to_vec();
        user.extend(marker);
        user.extend(vec![b'#'; 64 << 10]);
        for (name, bytes) in [
            (
                "openstack/latest/meta_data.json",
                format!("{{\"uuid\": \"{uuid}\"}}").into_bytes(),
            ),
            ("openstack/latest/user_data", user),
        ] {
            std::fs::create_dir_all(content.join(name).parent().unwrap()).unwrap();
            std::fs::write(content.join(name), bytes).unwrap();
        }
        let whole = t.join("/whole.iso");
        make_iso("genisoimage", &["-r", "-J"], "config-2", &content, &whole);
        std::fs::remove_dir_all(&content).unwrap();
        let mut c = std::fs::read(&whole).unwrap();
        std::fs::remove_file(&whole).unwrap();
        let at = c.windows(marker.len()).position(|w| w == marker).unwrap();
        c.truncate(at + 4096);
        c
    };
    for (case, bytes) in [("not json", None), ("cut off", Some(cut))] {
        if let Some(b) = &bytes {
            std::fs::write(&img, b).unwrap();
        }
        let before = common::tree_hash(t.path(), &["run/imprint"]);
        let e = run(&inputs(false)).unwrap_err();
        assert_eq!(e.exit_code(), imprint::ExitCode::Sealed, "{case}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("the seal stands: the config drive could not be read (")
                && msg.contains(&device)
                && msg.contains("run `imprint run --force`"),
            "{case}: {msg}"
        );
        assert_eq!(
            common::tree_hash(t.path(), &["run/imprint"]),
            before,
            "{case}: nothing changed"
        );
        let e = run(&inputs(true)).unwrap_err();
        assert_ne!(e.exit_code(), imprint::ExitCode::Sealed, "{case}: {e}");
        assert_eq!(
            common::tree_hash(t.path(), &["run/imprint"]),
            before,
            "{case}: nothing changed"
        );
    }
}
