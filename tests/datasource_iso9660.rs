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
use imprint::fetch::{self, nocloud, FetchError, Options};
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
        let mut img = good_image_cached().clone();
        for (at, b) in edits {
            if at < img.len() {
                img[at] = b;
            }
        }
        if let Some(c) = cut {
            img.truncate(c);
        }
        let _ = read_all(img);
    }
}

fn good_image_cached() -> &'static Vec<u8> {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(good_image)
}
