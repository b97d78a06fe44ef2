//! Whole runs of the binary against a fake metadata server on 127.0.0.1:
//! `imprint run --root R --datasource ec2 --metadata-url http://127.0.0.1:PORT`
//! writes what the same user-data gives through `--user-data`; a sealed
//! instance whose id is known offline never touches the network; the
//! manifest's `datasource.timeout` bounds a server that never answers;
//! proxies from the environment are ignored.

mod common;
mod fakes;

use common::{code, copy_tree, imprint, run, stderr, stdout, tree_hash, TempRoot};
use fakes::{ec2, with_faults, Ec2State, Faults, Meta, Reply, Seen, Server};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The demo image (manifest, templates, passwd) in a fresh root.
fn demo_root() -> TempRoot {
    let t = TempRoot::new();
    copy_tree(&fixtures().join("demo/root"), t.path());
    t
}

fn demo_user_data() -> Vec<u8> {
    std::fs::read(fixtures().join("demo/user-data.b64")).unwrap()
}

fn ec2_server(instance_id: &str) -> Server {
    Server::start(ec2(
        Meta::new(instance_id, Some(&demo_user_data())),
        Arc::new(Ec2State::default()),
    ))
}

const STATE: &[&str] = &["var/lib/imprint", "run"];

#[test]
fn run_from_ec2_writes_what_the_user_data_says() {
    let s = ec2_server("i-0abc1234567890def");
    let t = demo_root();
    let o = run(imprint().args(["run", "--root"]).arg(t.path()).args([
        "--datasource",
        "ec2",
        "--metadata-url",
        &s.url(),
    ]));
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    // The files, as the demo documents them.
    let env = t.read("/opt/app/conf.env");
    assert!(env.contains("DB_HOST="), "{env}");
    assert!(t.join("/etc/default/worker").is_file());
    assert!(t
        .join("/etc/systemd/system/app.service.d/10-imprint.conf")
        .is_file());
    // Byte for byte what the same user-data gives through --user-data.
    let u = demo_root();
    let ud = u.join("/ud.b64");
    std::fs::write(&ud, demo_user_data()).unwrap();
    let o = run(imprint()
        .args(["run", "--root"])
        .arg(u.path())
        .arg("--user-data")
        .arg(&ud)
        .args(["--instance-id", "i-0abc1234567890def"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::remove_file(&ud).unwrap();
    assert_eq!(tree_hash(t.path(), STATE), tree_hash(u.path(), STATE));
    // Sealed with the instance-id the metadata service gave.
    let seal: serde_json::Value = serde_json::from_str(&t.read("/var/lib/imprint/sealed")).unwrap();
    assert_eq!(seal["instance_id"], "i-0abc1234567890def");
    assert_eq!(seal["datasource"], "ec2");
    let report: serde_json::Value =
        serde_json::from_str(&t.read("/var/lib/imprint/report.json")).unwrap();
    assert_eq!(report["datasource"], "ec2");
    // The secret never reached the output.
    let all = format!(
        "{}{}",
        t.read("/var/lib/imprint/report.json"),
        t.read("/var/lib/imprint/sealed")
    );
    assert!(!all.contains("s3cr3t"), "{all}");
}

/// Later boots: the seal's instance-id is known offline (Nitro DMI), so
/// imprint exits 77 without a single request. A clone (another id in DMI)
/// is a new instance and is configured.
#[test]
fn sealed_instance_never_touches_the_network() {
    let t = demo_root();
    copy_tree(&fixtures().join("sysfs/aws-nitro"), t.path());
    let id = t
        .read("/sys/class/dmi/id/board_asset_tag")
        .trim()
        .to_string();
    let s = ec2_server(&id);
    let args = |t: &TempRoot, url: &str| {
        let mut c = imprint();
        c.args(["run", "--root"])
            .arg(t.path())
            .env("IMPRINT_METADATA_URL", url);
        c
    };
    // No --datasource: DMI says EC2; the URL comes from the environment.
    // The demo manifest's order is [nocloud]: allow ec2 for this image.
    t.write(
        "/etc/imprint/imprint.yaml",
        t.read("/etc/imprint/imprint.yaml")
            .replace("order: [nocloud]", "order: [nocloud, ec2]"),
    );
    let o = run(&mut args(&t, &s.url()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let first = s.requests().len();
    assert!(first >= 4);
    let before = tree_hash(t.path(), &["var/lib/imprint/report.json", "run"]);
    let o = run(&mut args(&t, &s.url()));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert_eq!(s.requests().len(), first, "no request on a sealed boot");
    assert_eq!(
        before,
        tree_hash(t.path(), &["var/lib/imprint/report.json", "run"])
    );
    // A clone of the image: another instance-id in DMI, configured anew.
    t.write("/sys/class/dmi/id/board_asset_tag", "i-0ffffffffffffffff\n");
    let s2 = ec2_server("i-0ffffffffffffffff");
    let o = run(&mut args(&t, &s2.url()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let seal: serde_json::Value = serde_json::from_str(&t.read("/var/lib/imprint/sealed")).unwrap();
    assert_eq!(seal["instance_id"], "i-0ffffffffffffffff");
}

/// Not knowable offline (no DMI id): the seal is trusted, still without
/// a request.
#[test]
fn sealed_without_offline_id_trusts_the_seal() {
    let s = ec2_server("i-1");
    let t = demo_root();
    let go = || {
        run(imprint().args(["run", "--root"]).arg(t.path()).args([
            "--datasource",
            "ec2",
            "--metadata-url",
            &s.url(),
        ]))
    };
    assert_eq!(code(&go()), 0);
    let n = s.requests().len();
    let o = go();
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert_eq!(s.requests().len(), n);
}

/// The manifest's `datasource.timeout` is the total budget: a server that
/// never answers costs 2 s, then exit 69 and nothing written.
#[test]
fn manifest_timeout_bounds_a_silent_server() {
    let faults = Arc::new(Faults::default());
    faults.hang.store(true, Ordering::SeqCst);
    let s = Server::start(with_faults(
        faults,
        ec2(Meta::new("i", None), Arc::new(Ec2State::default())),
    ));
    let t = demo_root();
    t.write(
        "/etc/imprint/imprint.yaml",
        t.read("/etc/imprint/imprint.yaml")
            .replace("timeout: 60s", "timeout: 2s"),
    );
    // The report goes to /var/lib/imprint: only that may appear.
    std::fs::create_dir_all(t.join("/var/lib")).unwrap();
    let before = tree_hash(t.path(), &["var/lib/imprint", "run"]);
    let start = Instant::now();
    let o = run(imprint().args(["run", "--root"]).arg(t.path()).args([
        "--datasource",
        "ec2",
        "--metadata-url",
        &s.url(),
    ]));
    let took = start.elapsed();
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(
        stderr(&o).contains("datasource ec2 did not answer within 2s"),
        "{}",
        stderr(&o)
    );
    assert_eq!(before, tree_hash(t.path(), &["var/lib/imprint", "run"]));
}

/// Proxies from the environment are never used for metadata.
#[test]
fn proxy_environment_is_ignored() {
    let proxy = Server::start(Arc::new(|_: &Seen| Reply::new(502, "proxy")));
    let s = ec2_server("i-proxy");
    let t = demo_root();
    let mut c = imprint();
    c.args(["fetch", "--root"]).arg(t.path()).args([
        "--datasource",
        "ec2",
        "--metadata-url",
        &s.url(),
    ]);
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
    ] {
        c.env(v, proxy.url());
    }
    let o = run(&mut c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    assert!(!s.requests().is_empty());
}

/// A datasource named by nothing is never contacted: a NoCloud run under
/// strace makes no IP socket; an EC2 fetch does connect (the detector
/// works) - to 127.0.0.1 only.
#[test]
fn sockets_only_when_a_network_source_is_named() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("strace is needed for this test (apt-get install strace)");
    }
    let trace = |args: &[&str], env: &[(&str, &str)]| -> (i32, String) {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut c = std::process::Command::new("strace");
        c.args(["-f", "-qq", "-e", "trace=network", "-o"])
            .arg(log.path())
            .arg(env!("CARGO_BIN_EXE_imprint"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            std::fs::read_to_string(log.path()).unwrap(),
        )
    };
    let s = ec2_server("i-strace");
    let t = demo_root();
    t.write(
        "/var/lib/cloud/seed/nocloud/meta-data",
        "instance-id: iid-local\n",
    );
    t.write("/var/lib/cloud/seed/nocloud/user-data", demo_user_data());
    let root = t.path().to_str().unwrap().to_string();
    // A metadata URL in the environment names no datasource.
    let (c, calls) = trace(
        &["run", "--root", &root],
        &[("IMPRINT_METADATA_URL", &s.url())],
    );
    assert_eq!(c, 0, "{calls}");
    assert!(
        !calls.contains("AF_INET") && !calls.contains("connect("),
        "{calls}"
    );
    assert!(s.requests().is_empty());
    let (c, calls) = trace(
        &[
            "fetch",
            "--root",
            &root,
            "--datasource",
            "ec2",
            "--metadata-url",
            &s.url(),
        ],
        &[],
    );
    assert_eq!(c, 0, "{calls}");
    let connects: Vec<&str> = calls.lines().filter(|l| l.contains("connect(")).collect();
    assert!(!connects.is_empty(), "{calls}");
    for l in connects {
        assert!(l.contains("127.0.0.1"), "{l}");
    }
}

/// GCE has no offline instance-id, so a sealed image is trusted (SPEC §5):
/// a clone of an image captured without `imprint clean` is not configured,
/// makes no request, and the log says the seal was trusted, which instance
/// it names, and what to do. `--force` configures it then; `imprint clean`
/// before the capture makes every clone configure itself.
#[test]
fn gce_clone_of_an_image_captured_without_clean_trusts_the_seal_and_says_so() {
    let t = demo_root();
    copy_tree(&fixtures().join("sysfs/gce"), t.path());
    t.write(
        "/etc/imprint/imprint.yaml",
        t.read("/etc/imprint/imprint.yaml")
            .replace("order: [nocloud]", "order: [nocloud, gce]"),
    );
    let gce = |id: &str| Server::start(fakes::gce(Meta::new(id, Some(&demo_user_data()))));
    let boot = |url: &str, extra: &[&str]| {
        run(imprint()
            .args(["run", "--root"])
            .arg(t.path())
            .args(extra)
            .env("IMPRINT_METADATA_URL", url))
    };
    let sealed_id = || {
        let seal: serde_json::Value =
            serde_json::from_str(&t.read("/var/lib/imprint/sealed")).unwrap();
        seal["instance_id"].as_str().unwrap().to_string()
    };
    // The machine the image is captured from.
    let first = gce("1111111111");
    let o = boot(&first.url(), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sealed_id(), "1111111111");
    // Its clone: another instance behind another metadata server.
    let clone = gce("2222222222");
    let o = boot(&clone.url(), &[]);
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(clone.requests().is_empty(), "trusted: nothing asked");
    let err = stderr(&o);
    for says in [
        "sealed for instance 1111111111 (configured 20",
        "the seal was trusted, not checked: the instance-id of this gce machine cannot be read offline",
        "If this machine is a clone of an image captured from instance 1111111111 without `imprint clean`, it has not been configured",
        "run `imprint run --force` on it now, and `imprint clean` before capturing an image",
    ] {
        assert!(err.contains(says), "{says:?} in {err}");
    }
    assert!(!err.contains("2222222222"), "{err}");
    // --force: the clone is configured now, under its own id.
    let o = boot(&clone.url(), &["--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sealed_id(), "2222222222");
    // An image captured after `imprint clean`: its clones configure
    // themselves.
    let o = run(imprint().args(["clean", "--root"]).arg(t.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let third = gce("3333333333");
    let o = boot(&third.url(), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sealed_id(), "3333333333");
}

/// OpenStack with a config drive: its `uuid` is read locally at every boot
/// and compared with the seal (never the metadata service). The same
/// instance exits 77; a new instance booted from a snapshot of a configured
/// one (a new uuid on its drive) is configured, without `--force`. The
/// drive is cloud-init's seed directory for it here (a `config-2` device
/// is mounted only when the root is the host; the same comparison).
#[test]
fn openstack_config_drive_clone_is_configured_and_the_same_instance_is_sealed() {
    let t = demo_root();
    t.write(
        "/etc/imprint/imprint.yaml",
        t.read("/etc/imprint/imprint.yaml")
            .replace("order: [nocloud]", "order: [nocloud, openstack]"),
    );
    // A metadata service that must not be asked.
    let net = Server::start(fakes::openstack(Meta::new("from-the-network", None)));
    let drive = |uuid: &str, user_data: &[u8]| {
        t.write(
            "/var/lib/cloud/seed/config_drive/openstack/latest/meta_data.json",
            format!(r#"{{"uuid": "{uuid}", "hostname": "web-1.novalocal", "name": "web-1"}}"#),
        );
        std::fs::write(
            t.join("/var/lib/cloud/seed/config_drive/openstack/latest/user_data"),
            user_data,
        )
        .unwrap();
    };
    let boot = || {
        run(imprint()
            .args(["run", "--root"])
            .arg(t.path())
            .env("IMPRINT_METADATA_URL", net.url()))
    };
    let sealed_id = || {
        let seal: serde_json::Value =
            serde_json::from_str(&t.read("/var/lib/imprint/sealed")).unwrap();
        seal["instance_id"].as_str().unwrap().to_string()
    };
    let first = "83679162-1378-4288-a2d4-70e13ec132aa";
    drive(first, &demo_user_data());
    let o = boot();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sealed_id(), first);
    // The same instance: sealed, nothing done.
    let before = tree_hash(t.path(), &["run"]);
    let o = boot();
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("trusted"),
        "compared, not trusted: {}",
        stderr(&o)
    );
    assert_eq!(before, tree_hash(t.path(), &["run"]));
    // A new instance from a snapshot of it: configured under its own uuid.
    std::fs::remove_file(t.join("/opt/app/conf.env")).unwrap();
    let clone = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
    drive(clone, &demo_user_data());
    let o = boot();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sealed_id(), clone);
    assert!(t.join("/opt/app/conf.env").is_file(), "written again");
    assert!(
        net.requests().is_empty(),
        "the metadata service is not asked"
    );
    // identify --explain says where the id comes from.
    let o = run(imprint()
        .args(["identify", "--explain", "--root"])
        .arg(t.path()));
    assert!(
        stdout(&o).contains(&format!("offline instance-id: {clone}")),
        "{}",
        stdout(&o)
    );
}

/// A `config-2` device that cannot be read on a sealed instance (here:
/// under --root, where devices are never mounted) leaves the seal standing,
/// 77, and says why; the metadata service is not asked.
#[test]
fn openstack_unreadable_config_drive_on_a_sealed_instance_keeps_the_seal() {
    let t = demo_root();
    let net = Server::start(fakes::openstack(Meta::new("i-1", Some(&demo_user_data()))));
    let boot = || {
        run(imprint().args(["run", "--root"]).arg(t.path()).args([
            "--datasource",
            "openstack",
            "--metadata-url",
            &net.url(),
        ]))
    };
    // Configured from the metadata service (no drive yet).
    let o = boot();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let n = net.requests().len();
    std::fs::create_dir_all(t.join("/dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.join("/dev/disk/by-label/config-2")).unwrap();
    let o = boot();
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the seal stands: the config drive could not be read"),
        "{}",
        stderr(&o)
    );
    assert_eq!(net.requests().len(), n);
}
