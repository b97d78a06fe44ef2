//! `imprint identify` on fake sysfs / cmdline / seed trees under `--root`
//! (fixtures/sysfs/INDEX), the order of the rules, `--explain`, exit 69
//! when nothing matches, and the offline instance-ids the seal relies on.

mod common;

use common::{code, copy_tree, imprint, run, stderr, stdout, TempRoot};
use imprint::identify::{self, Datasource, Identified, Request};
use imprint::root::Root;
use std::path::Path;

fn fixture(name: &str) -> TempRoot {
    let t = TempRoot::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sysfs")
        .join(name);
    assert!(src.is_dir(), "missing fixture {}", src.display());
    copy_tree(&src, t.path());
    t
}

fn identify_out(t: &TempRoot, extra: &[&str]) -> (i32, String, String) {
    let mut c = imprint();
    c.arg("identify").arg("--root").arg(t.path()).args(extra);
    let o = run(&mut c);
    (code(&o), stdout(&o), stderr(&o))
}

#[test]
fn dmi_table() {
    let table = [
        ("aws-nitro", "ec2"),
        ("aws-xen", "ec2"),
        ("gce", "gce"),
        ("digitalocean", "digitalocean"),
        ("azure-gen1", "azure"),
        ("azure-gen2", "azure"),
        ("openstack", "openstack"),
    ];
    for (fx, want) in table {
        let t = fixture(fx);
        let (c, out, err) = identify_out(&t, &[]);
        assert_eq!(c, 0, "{fx}: {err}");
        assert_eq!(out, format!("{want}\n"), "{fx}");
    }
}

#[test]
fn nothing_matches_exits_69_with_explanation() {
    let t = fixture("qemu");
    t.write(
        "/proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n",
    );
    let (c, out, err) = identify_out(&t, &[]);
    assert_eq!(c, 69, "{out}{err}");
    // Every rule, its evidence, and the verdict.
    assert!(
        out.contains("1. flags => no match\n   no --datasource, no --user-data\n"),
        "{out}"
    );
    assert!(
        out.contains("2. kernel command line => no match\n   /proc/cmdline: no imprint.datasource=, no ds=\n"),
        "{out}"
    );
    assert!(
        out.contains("3. manifest datasource.order => no match\n   not set"),
        "{out}"
    );
    assert!(out.contains("/var/lib/cloud/seed/nocloud: absent"), "{out}");
    assert!(
        out.contains("/dev/disk/by-label/{cidata,CIDATA}: absent"),
        "{out}"
    );
    assert!(
        out.contains("/dev/disk/by-label/{config-2,CONFIG-2}: absent"),
        "{out}"
    );
    assert!(
        out.contains(
            "5. dmi => no match\n   sys_vendor=\"QEMU\"\n   product_name=\"Standard PC (i440FX + PIIX, 1996)\"\n"
        ),
        "{out}"
    );
    assert!(out.contains("matches no known platform"), "{out}");
    assert!(out.contains("datasource: none"), "{out}");
    assert!(out.contains("to fix: pass --datasource NAME"), "{out}");
    for line in out.lines() {
        assert!(line.len() <= 80, "wider than 80 columns: {line:?}");
    }
    assert!(err.contains("no datasource identified"), "{err}");
    assert!(err.contains("identify --explain"), "{err}");
}

#[test]
fn empty_root_exits_69() {
    let t = TempRoot::new();
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 69);
    assert!(
        out.contains("2. kernel command line => no match\n   /proc/cmdline: absent\n"),
        "{out}"
    );
    assert!(out.contains("has no readable vendor strings"), "{out}");
}

#[test]
fn explain_names_the_deciding_rule() {
    let t = fixture("aws-nitro");
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0);
    assert!(
        out.contains("5. dmi => ec2\n   sys_vendor is \"Amazon EC2\"\n"),
        "{out}"
    );
    assert!(
        out.contains("   board_asset_tag=\"i-0123456789abcdef0\"\n"),
        "{out}"
    );
    assert!(
        out.contains("datasource: ec2 (a network metadata service, named by rule 5)\n"),
        "{out}"
    );
    assert!(
        out.contains("offline instance-id: i-0123456789abcdef0"),
        "{out}"
    );
}

#[test]
fn flags_beat_everything() {
    let t = fixture("aws-nitro");
    t.write("/proc/cmdline", "imprint.datasource=gce\n");
    t.write("/var/lib/cloud/seed/nocloud/meta-data", "instance-id: x\n");
    let (c, out, _) = identify_out(&t, &["--datasource", "azure"]);
    assert_eq!((c, out.as_str()), (0, "azure\n"));
    let ud = t.join("/ud");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    let (c, out, _) = identify_out(&t, &["--user-data", ud.to_str().unwrap()]);
    assert_eq!((c, out.as_str()), (0, "file\n"));
    // Mistakes in the flags are usage errors (64), not "unavailable".
    let (c, _, err) = identify_out(&t, &["--datasource", "vmware"]);
    assert_eq!(c, 64);
    assert!(
        err.contains("unknown datasource \"vmware\" (from --datasource)"),
        "{err}"
    );
    let (c, _, err) = identify_out(
        &t,
        &["--datasource", "ec2", "--user-data", ud.to_str().unwrap()],
    );
    assert_eq!(c, 64);
    assert!(err.contains("drop one of them"), "{err}");
}

#[test]
fn cmdline_beats_manifest_seed_and_dmi() {
    let t = fixture("aws-nitro");
    t.write(
        "/etc/imprint/imprint.yaml",
        "datasource:\n  order: [digitalocean]\n",
    );
    t.write("/var/lib/cloud/seed/nocloud/meta-data", "instance-id: x\n");
    t.write(
        "/proc/cmdline",
        "ro quiet imprint.datasource=gce console=ttyS0\n",
    );
    assert_eq!(identify_out(&t, &[]).1, "gce\n");
    t.write("/proc/cmdline", "ro ds=nocloud;s=file:///srv/seed/ quiet\n");
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0);
    assert!(
        out.contains("ds=nocloud with seed file:///srv/seed/"),
        "{out}"
    );
    assert!(
        out.contains("datasource: nocloud (local, no network; rule 2)\n"),
        "{out}"
    );
    // imprint.datasource= wins over ds= on the same line.
    t.write("/proc/cmdline", "ds=nocloud imprint.datasource=openstack\n");
    assert_eq!(identify_out(&t, &[]).1, "openstack\n");
    // A bad name there is the machine's boot configuration, not this
    // command line: no datasource identified (69), saying where and what to
    // do; the flag still overrides it.
    t.write("/proc/cmdline", "imprint.datasource=bogus\n");
    let (c, _, err) = identify_out(&t, &[]);
    assert_eq!(c, 69);
    assert!(
        err.contains(
            "\"bogus\" (from the kernel command line's imprint.datasource= (/proc/cmdline))"
        ),
        "{err}"
    );
    assert!(err.contains("override it with --datasource NAME"), "{err}");
    assert_eq!(identify_out(&t, &["--datasource", "gce"]).1, "gce\n");
    t.write("/proc/cmdline", "ds=file\n");
    let (c, _, err) = identify_out(&t, &[]);
    assert_eq!(c, 69);
    assert!(err.contains("needs --user-data"), "{err}");
}

/// cloud-init's `ds=nocloud;s=SEED` in the SMBIOS system serial (QEMU's
/// `-smbios type=1,serial=ds=nocloud;s=file:///srv/seed/`): local evidence
/// of NoCloud (rule 4, above a seed directory's absence and DMI), below the
/// kernel command line and the manifest's order; its seed is then read.
#[test]
fn smbios_serial_names_nocloud_below_the_cmdline() {
    let t = fixture("qemu");
    let serial = "/sys/class/dmi/id/product_serial";
    t.write(serial, "ds=nocloud;s=file:///srv/seed/\n");
    t.write("/srv/seed/meta-data", "instance-id: iid-serial\n");
    t.write("/srv/seed/user-data", "#cloud-config\n{}\n");
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("4. nocloud seed / config drive => nocloud\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "   /sys/class/dmi/id/product_serial: ds=nocloud with seed file:///srv/seed/\n"
        ),
        "{out}"
    );
    assert!(out.contains("offline instance-id: iid-serial\n"), "{out}");
    let root = Root::at(t.path());
    let id = ident(&root);
    assert_eq!(id.seed.as_deref(), Some("file:///srv/seed/"));
    let f = imprint::fetch::fetch(
        &root,
        &id,
        &Request::default(),
        &imprint::fetch::Options::default(),
    )
    .unwrap();
    assert_eq!(f.instance_id, "iid-serial");
    // The kernel command line is above it ...
    t.write("/proc/cmdline", "imprint.datasource=gce\n");
    assert_eq!(identify_out(&t, &[]).1, "gce\n");
    // ... but a NoCloud named there without a seed takes the serial's,
    t.write("/proc/cmdline", "ds=nocloud\n");
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("2. kernel command line => nocloud\n   ds=nocloud\n   seed file:///srv/seed/ from /sys/class/dmi/id/product_serial\n"),
        "{out}"
    );
    assert_eq!(ident(&root).seed.as_deref(), Some("file:///srv/seed/"));
    // and one with a seed its own.
    t.write("/proc/cmdline", "ds=nocloud;s=/other/\n");
    assert_eq!(ident(&root).seed.as_deref(), Some("/other/"));
    // The manifest's order is above it too; with several entries it is
    // NoCloud's local evidence.
    std::fs::remove_file(t.join("/proc/cmdline")).unwrap();
    t.write("/etc/imprint/imprint.yaml", "datasource:\n  order: [ec2]\n");
    assert_eq!(identify_out(&t, &[]).1, "ec2\n");
    t.write(
        "/etc/imprint/imprint.yaml",
        "datasource:\n  order: [ec2, nocloud]\n",
    );
    assert_eq!(identify_out(&t, &[]).1, "nocloud\n");
    let id = identify::identify(
        &root,
        &Request::default(),
        &["ec2".into(), "nocloud".into()],
    )
    .unwrap();
    assert_eq!(id.seed.as_deref(), Some("file:///srv/seed/"));
    std::fs::remove_file(t.join("/etc/imprint/imprint.yaml")).unwrap();
    // Other serials are ignored (and not shown: a serial is an id); so is
    // another datasource named there (cloud-init reads it for NoCloud only).
    for other in [
        "VMware-42 1a 2b\n",
        "ds=ec2\n",
        "ds=nocloudx;s=/srv/seed/\n",
    ] {
        t.write(serial, other);
        let (c, out, _) = identify_out(&t, &["--explain"]);
        assert_eq!(c, 69, "{other}: {out}");
        assert!(
            out.contains("   /sys/class/dmi/id/product_serial: no ds=nocloud\n"),
            "{out}"
        );
        assert!(!out.contains("VMware-42"), "{out}");
    }
}

#[test]
fn manifest_order_one_entry_names_it() {
    let t = fixture("qemu");
    t.write("/etc/imprint/imprint.yaml", "datasource:\n  order: [ec2]\n");
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("3. manifest datasource.order => ec2\n   names only ec2\n"),
        "{out}"
    );
}

#[test]
fn manifest_order_several_are_candidates_on_local_evidence() {
    let t = fixture("aws-nitro");
    t.write(
        "/etc/imprint/imprint.yaml",
        "datasource:\n  order: [nocloud, gce, ec2]\n",
    );
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("ec2: DMI sys_vendor is \"Amazon EC2\""),
        "{out}"
    );
    // A seed now present comes first in this order.
    t.write(
        "/var/lib/cloud/seed/nocloud-net/user-data",
        "#cloud-config\n",
    );
    assert_eq!(identify_out(&t, &[]).1, "nocloud\n");
    // The order restricts: the platform is EC2, but the list does not have it.
    let t = fixture("aws-nitro");
    t.write(
        "/etc/imprint/imprint.yaml",
        "datasource:\n  order: [gce, azure]\n",
    );
    let (c, out, _) = identify_out(&t, &[]);
    assert_eq!(c, 69);
    assert!(
        out.contains("   gce: no local evidence\n   azure: no local evidence\n   DMI says ec2 (sys_vendor is \"Amazon EC2\"), which the order does not list\n"),
        "{out}"
    );
    t.write(
        "/etc/imprint/imprint.yaml",
        "datasource:\n  order: [gce, smartos]\n",
    );
    // An unknown name is an invalid manifest (65), refused when it is
    // loaded (so `imprint validate` finds it at image build).
    let (c, _, err) = identify_out(&t, &[]);
    assert_eq!(c, 65);
    assert!(
        err.contains("datasource.order[1]: line 2, column 3: unknown datasource \"smartos\""),
        "{err}"
    );
}

#[test]
fn seed_dir_beats_dmi() {
    let t = fixture("aws-nitro");
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-seed\n",
    );
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0);
    assert!(
        out.contains(
            "4. nocloud seed / config drive => nocloud\n   /var/lib/cloud/seed/nocloud: present\n"
        ),
        "{out}"
    );
    assert!(out.contains("offline instance-id: iid-seed"), "{out}");
    // An empty directory is not a seed.
    let t = fixture("qemu");
    std::fs::create_dir_all(t.join("/var/lib/cloud/seed/nocloud")).unwrap();
    assert_eq!(identify_out(&t, &[]).0, 69);
}

#[test]
fn labelled_devices() {
    // udev's by-label links, relative as udev makes them.
    let t = fixture("qemu");
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    t.write("/dev/sr0", "");
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/CIDATA")).unwrap();
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains(&format!(
            "/dev/disk/by-label/CIDATA: {}",
            t.join("/dev/sr0").display()
        )),
        "{out}"
    );
    assert!(out.contains("datasource: nocloud"), "{out}");
    let t = fixture("qemu");
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../vdb", t.join("/dev/disk/by-label/config-2")).unwrap();
    assert_eq!(identify_out(&t, &[]).1, "openstack\n");
}

fn ident(root: &Root) -> Identified {
    identify::identify(root, &Request::default(), &[]).expect("identified")
}

#[test]
fn offline_instance_ids() {
    let table = [
        ("aws-nitro", Some("i-0123456789abcdef0")),
        // Xen EC2 has no instance-id in DMI: trust the seal.
        ("aws-xen", None),
        ("gce", None),
        ("digitalocean", Some("123456789")),
        // Gen1: byte-swapped, as IMDS's vmId reads.
        ("azure-gen1", Some("91267c52-9f02-4cfe-b1f4-a4da7ebac2cf")),
        ("azure-gen2", Some("527c2691-029f-fe4c-b1f4-a4da7ebac2cf")),
        ("openstack", None),
    ];
    for (fx, want) in table {
        let t = fixture(fx);
        let root = Root::at(t.path());
        let id = ident(&root);
        assert_eq!(
            identify::offline_instance_id(&root, &id, &Request::default()).as_deref(),
            want,
            "{fx}"
        );
    }
    // A Nitro asset tag that is not an instance-id is not used.
    let t = fixture("aws-nitro");
    t.write("/sys/class/dmi/id/board_asset_tag", "Default string\n");
    let root = Root::at(t.path());
    assert_eq!(
        identify::offline_instance_id(&root, &ident(&root), &Request::default()),
        None
    );
}

/// OpenStack: the metadata service has no offline id (the seal is
/// trusted); a config drive is local: its seed directory's `uuid` is the
/// offline id, and a `config-2` device is read by fetch, before any
/// network, and compared with the seal.
#[test]
fn openstack_config_drive_is_local() {
    let t = fixture("openstack");
    let root = Root::at(t.path());
    let id = ident(&root);
    assert_eq!(id.datasource, Datasource::OpenStack);
    assert!(!identify::fetches_locally(&root, &id), "metadata service");
    t.write(
        "/var/lib/cloud/seed/config_drive/openstack/latest/meta_data.json",
        r#"{"uuid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"}"#,
    );
    let id = ident(&root);
    assert!(identify::fetches_locally(&root, &id));
    assert_eq!(
        identify::offline_instance_id(&root, &id, &Request::default()).as_deref(),
        Some("0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")
    );
    // Found on its own (rule 4), without DMI.
    let t = fixture("qemu");
    t.write(
        "/var/lib/cloud/seed/config_drive/openstack/latest/meta_data.json",
        r#"{"uuid": "u-1"}"#,
    );
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("/var/lib/cloud/seed/config_drive: present"),
        "{out}"
    );
    assert!(
        out.contains("datasource: openstack (local, no network; rule 4)"),
        "{out}"
    );
    assert!(out.contains("offline instance-id: u-1"), "{out}");
    // A device: local, its id read by fetch.
    let t = fixture("openstack");
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/config-2")).unwrap();
    let root = Root::at(t.path());
    let id = ident(&root);
    assert!(id.device.is_some());
    assert!(identify::fetches_locally(&root, &id));
    assert_eq!(
        identify::offline_instance_id(&root, &id, &Request::default()),
        None
    );
}

#[test]
fn offline_instance_id_of_nocloud_seeds() {
    let t = fixture("qemu");
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-abc\nlocal-hostname: h\n",
    );
    let root = Root::at(t.path());
    let id = ident(&root);
    assert_eq!(id.datasource, Datasource::NoCloud);
    assert_eq!(
        identify::offline_instance_id(&root, &id, &Request::default()).as_deref(),
        Some("iid-abc")
    );
    // The seed named on the kernel command line is the one read.
    t.write("/proc/cmdline", "ds=nocloud;s=file:///srv/s/\n");
    t.write("/srv/s/meta-data", "instance-id: iid-cmdline\n");
    let id = ident(&root);
    assert_eq!(id.seed.as_deref(), Some("file:///srv/s/"));
    assert_eq!(
        identify::offline_instance_id(&root, &id, &Request::default()).as_deref(),
        Some("iid-cmdline")
    );
    // --instance-id wins.
    let req = Request {
        instance_id: Some("given".into()),
        ..Request::default()
    };
    assert_eq!(
        identify::offline_instance_id(&root, &id, &req).as_deref(),
        Some("given")
    );
}

/// cloud-init's NoCloud reads `i=` (instance-id) and `h=` (local-hostname),
/// or their long forms, in `ds=nocloud;...` (`parse_cmdline_data`); they
/// override the seed's `meta-data`, the SMBIOS serial's over the kernel
/// command line's. `i=` keys the seal, so the offline instance-id is it.
#[test]
fn nocloud_instance_id_from_the_cmdline_and_serial() {
    use identify::{Cmdline, NoCloudOverrides};
    let c = Cmdline::parse("ro ds=nocloud;s=/srv/s/;i=iid-short;h=host-short quiet");
    assert_eq!(c.ds.as_deref(), Some("nocloud"));
    assert_eq!(c.seed.as_deref(), Some("/srv/s/"));
    assert_eq!(c.instance_id.as_deref(), Some("iid-short"));
    assert_eq!(c.hostname.as_deref(), Some("host-short"));
    let c = Cmdline::parse("ds=nocloud-net\\;instance-id=iid-long\\;local-hostname=host-long");
    assert_eq!(c.ds.as_deref(), Some("nocloud-net"));
    assert_eq!(c.seed, None);
    assert_eq!(c.instance_id.as_deref(), Some("iid-long"));
    assert_eq!(c.hostname.as_deref(), Some("host-long"));
    // The last key wins; an empty value is none; the last ds= word wins whole.
    let c = Cmdline::parse("ds=nocloud;i=a;i=b;h=");
    assert_eq!((c.instance_id.as_deref(), c.hostname), (Some("b"), None));
    let c = Cmdline::parse("ds=nocloud;i=a ds=nocloud;s=/x/");
    assert_eq!((c.instance_id, c.seed.as_deref()), (None, Some("/x/")));
    // The serial's first, then the command line's, key by key.
    let o = NoCloudOverrides::of(
        Some(Cmdline::parse("ds=nocloud;h=serial-host")),
        Some(Cmdline::parse("ds=nocloud;i=cmd-iid;h=cmd-host")),
    );
    assert_eq!(o.instance_id.as_deref(), Some("cmd-iid"));
    assert_eq!(o.hostname.as_deref(), Some("serial-host"));

    let t = fixture("qemu");
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-meta\nlocal-hostname: h\n",
    );
    let root = Root::at(t.path());
    let offline =
        |root: &Root| identify::offline_instance_id(root, &ident(root), &Request::default());
    assert_eq!(offline(&root).as_deref(), Some("iid-meta"));
    t.write("/proc/cmdline", "ro ds=nocloud;i=iid-cmdline quiet\n");
    assert_eq!(ident(&root).datasource, Datasource::NoCloud);
    assert_eq!(offline(&root).as_deref(), Some("iid-cmdline"));
    let (c, out, _) = identify_out(&t, &["--explain"]);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("offline instance-id: iid-cmdline\n"), "{out}");
    // Long form; and named by imprint.datasource= with ds=nocloud beside it.
    t.write(
        "/proc/cmdline",
        "imprint.datasource=nocloud ds=nocloud;instance-id=iid-long\n",
    );
    assert_eq!(offline(&root).as_deref(), Some("iid-long"));
    // A ds= that names another datasource says nothing about NoCloud's.
    t.write(
        "/proc/cmdline",
        "imprint.datasource=nocloud ds=ec2;i=iid-not-nocloud\n",
    );
    assert_eq!(offline(&root).as_deref(), Some("iid-meta"));
    // The SMBIOS serial's i= is above the command line's.
    t.write("/proc/cmdline", "ds=nocloud;i=iid-cmdline\n");
    t.write(
        "/sys/class/dmi/id/product_serial",
        "ds=nocloud;i=iid-serial\n",
    );
    assert_eq!(offline(&root).as_deref(), Some("iid-serial"));
    // It counts without a command line too (NoCloud found by its seed).
    std::fs::remove_file(t.join("/proc/cmdline")).unwrap();
    assert_eq!(offline(&root).as_deref(), Some("iid-serial"));
    // --instance-id still wins.
    let req = Request {
        instance_id: Some("given".into()),
        ..Request::default()
    };
    assert_eq!(
        identify::offline_instance_id(&root, &ident(&root), &req).as_deref(),
        Some("given")
    );
}

/// Run the binary under `strace -f -e trace=network`; return its exit code
/// and every network system call it made.
fn network_calls(args: &[&str]) -> (i32, Vec<String>) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = std::process::Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=network", "-o"])
        .arg(log.path())
        .arg(env!("CARGO_BIN_EXE_imprint"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let o = c
        .output()
        .expect("strace is needed for this test (apt-get install strace)");
    let text = std::fs::read_to_string(log.path()).unwrap();
    let code = o.status.code().unwrap_or(-1);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("strace:"),
        "strace failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (code, text.lines().map(str::to_string).collect())
}

fn inet(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|l| l.contains("AF_INET") || l.contains("connect("))
        .collect()
}

/// identify reads local evidence only: no IP socket, no connect(), on this
/// very host (no --root) and on a platform that matches nothing.
#[test]
fn no_socket_is_opened() {
    let (_, calls) = network_calls(&["identify", "--explain"]);
    assert!(inet(&calls).is_empty(), "{calls:?}");
    let t = fixture("qemu");
    let root = t.path().to_str().unwrap();
    let (code, calls) = network_calls(&["identify", "--root", root]);
    assert_eq!(code, 69);
    assert!(inet(&calls).is_empty(), "{calls:?}");
    let (code, calls) = network_calls(&["fetch", "--root", root]);
    assert_eq!(code, 69);
    assert!(inet(&calls).is_empty(), "{calls:?}");
    // A platform identified by DMI is still not contacted by identify.
    let t = fixture("aws-nitro");
    let (code, calls) = network_calls(&["identify", "--root", t.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(inet(&calls).is_empty(), "{calls:?}");
}

/// The config drive is looked for only when it can decide: not once a
/// NoCloud seed, which rule 4 takes first, is found, nor under an order
/// that names only NoCloud, or NoCloud before OpenStack with its seed here
/// (its label scan reads block devices: time on a first boot's path).
#[test]
fn config_drive_looked_for_only_when_it_can_decide() {
    let with = |order: Option<&str>| {
        let t = fixture("qemu");
        t.write(
            "/var/lib/cloud/seed/nocloud/meta-data",
            "instance-id: i-1\n",
        );
        t.write(
            "/var/lib/cloud/seed/config_drive/openstack/latest/meta_data.json",
            "{\"uuid\": \"u-1\"}",
        );
        if let Some(o) = order {
            t.write(
                "/etc/imprint/imprint.yaml",
                format!("datasource:\n  order: [{o}]\n"),
            );
        }
        let (c, out, _) = identify_out(&t, &["--explain"]);
        assert_eq!(c, 0, "{out}");
        (out.contains("config drive: not looked for"), out)
    };
    let (skipped, out) = with(None);
    assert!(skipped, "{out}");
    assert!(out.contains("datasource: nocloud"), "{out}");
    let (skipped, out) = with(Some("nocloud, openstack"));
    assert!(skipped, "{out}");
    assert!(out.contains("datasource: nocloud"), "{out}");
    let (skipped, out) = with(Some("openstack, nocloud"));
    assert!(!skipped, "{out}");
    assert!(out.contains("datasource: openstack"), "{out}");
    // Without the NoCloud seed, rule 4 finds the drive.
    let t = fixture("qemu");
    t.write(
        "/var/lib/cloud/seed/config_drive/openstack/latest/meta_data.json",
        "{\"uuid\": \"u-1\"}",
    );
    assert_eq!(identify_out(&t, &[]).1, "openstack\n");
}
