//! The generator against real systemd: `systemd --test --system` computes
//! the boot transaction (running the generators found through
//! `SYSTEMD_GENERATOR_PATH`, here imprint's own binary) and reports every
//! ordering cycle it has to break. No VM needed; the unit files are the
//! fixtures plus this machine's own /lib/systemd/system.
//!
//! Each scenario also runs a naive generator (After=imprint.service on every
//! unit named, After=network-online.target always) to prove that the
//! fixtures do contain the traps and that systemd reports them here.
//!
//! Needs the `systemd` package (and util-linux's `setpriv`, to run test
//! mode as `nobody` when the tests run as root: systemd refuses test mode
//! as root).

mod common;

use common::{copy_tree, TempRoot};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn systemd_binary() -> PathBuf {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("these tests need systemd's binary (apt-get install systemd)")
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            chmod(&e.path(), 0o755);
            chmod_tree(&e.path());
        } else if md.is_file() {
            let x = md.permissions().mode() & 0o111 != 0;
            chmod(&e.path(), if x { 0o755 } else { 0o644 });
        }
    }
}

struct Scenario {
    dir: TempRoot,
}

impl Scenario {
    /// A root with the fixture units enabled the way a package would, and
    /// `manifest`.
    fn new(manifest: &str) -> Scenario {
        let dir = TempRoot::new();
        let units = dir.join("/root/etc/systemd/system");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator/units"),
            &units,
        );
        let repo_unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("units/imprint.service");
        if repo_unit.exists() {
            std::fs::copy(&repo_unit, units.join("imprint.service")).unwrap();
        }
        for (target, unit) in [
            ("sysinit.target", "imprint.service"),
            ("sysinit.target", "early.service"),
            ("sysinit.target", "worker.service"),
            ("local-fs.target", "disk-setup.service"),
            ("multi-user.target", "app.service"),
            ("multi-user.target", "ssh.service"),
            ("multi-user.target", "firewall.service"),
            ("multi-user.target", "netsetup.service"),
            ("network-online.target", "netsetup.service"),
        ] {
            let w = units.join(format!("{target}.wants"));
            std::fs::create_dir_all(&w).unwrap();
            std::os::unix::fs::symlink(format!("../{unit}"), w.join(unit)).unwrap();
        }
        dir.write("/root/etc/imprint/imprint.yaml", manifest);
        // The binary, where `nobody` can run it.
        std::fs::create_dir_all(dir.join("/bin")).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_imprint"), dir.join("/bin/imprint")).unwrap();
        Scenario { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("/root")
    }

    /// Boot transaction for multi-user.target with `generator` (a shell
    /// script body; `$1` is the output directory) as the only generator.
    fn transaction(&self, generator: &str) -> String {
        let gp = self.dir.join("/generators");
        std::fs::create_dir_all(&gp).unwrap();
        std::fs::write(
            gp.join("imprint-generator"),
            format!("#!/bin/sh\n{generator}\n"),
        )
        .unwrap();
        chmod(self.dir.path(), 0o755);
        chmod_tree(self.dir.path());
        chmod(&gp.join("imprint-generator"), 0o755);
        let mut c = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(systemd_binary());
            c
        } else {
            Command::new(systemd_binary())
        };
        let o = c
            .args([
                "--test",
                "--system",
                "--unit=multi-user.target",
                "--no-pager",
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env(
                "SYSTEMD_UNIT_PATH",
                format!("{}:", self.root().join("etc/systemd/system").display()),
            )
            .env("SYSTEMD_GENERATOR_PATH", &gp)
            .env("SYSTEMD_LOG_LEVEL", "info")
            .output()
            .expect("failed to run systemd --test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "systemd --test failed:\n{text}");
        assert!(
            text.contains("-> Unit multi-user.target:"),
            "no transaction dump:\n{text}"
        );
        text
    }

    /// imprint's own generator, with this scenario's root.
    fn imprint_generator(&self) -> String {
        format!(
            "exec {} generator --root {} \"$@\"",
            self.dir.join("/bin/imprint").display(),
            self.root().display()
        )
    }
}

/// A naive generator: After=imprint.service on `units`, and the network
/// ordering for imprint.service when `network`.
fn naive(units: &[&str], network: bool) -> String {
    let mut s = String::new();
    for u in units {
        s.push_str(&format!(
            "mkdir -p \"$1/{u}.d\" && printf '[Unit]\\nAfter=imprint.service\\n' > \"$1/{u}.d/50-naive.conf\"\n"
        ));
    }
    if network {
        s.push_str(
            "mkdir -p \"$1/imprint.service.d\" && printf '[Unit]\\nWants=network-online.target\\nAfter=network-online.target\\n' > \"$1/imprint.service.d/50-naive.conf\"\n",
        );
    }
    s
}

/// The dump lines of one unit ("-> Unit NAME:" up to the next unit).
fn section<'a>(dump: &'a str, unit: &str) -> Vec<&'a str> {
    let head = format!("-> Unit {unit}:");
    dump.lines()
        .skip_while(|l| l.trim() != head)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("-> Unit "))
        .collect()
}

fn has(dump: &str, unit: &str, line: &str) -> bool {
    section(dump, unit)
        .iter()
        .any(|l| l.trim().starts_with(line))
}

fn cycles(dump: &str) -> Vec<&str> {
    dump.lines()
        .filter(|l| l.contains("Found ordering cycle") || l.contains("to break ordering cycle"))
        .collect()
}

const MANIFEST: &str = "\
version: 1
datasource: { order: [nocloud] }
files:
  - path: /opt/app/conf.env
    template: app.env.hbs
    restart: [app.service]
  - path: /etc/early/early.conf
    template: early.conf.hbs
    restart: [early.service, disk-setup.service]
  - path: /etc/worker.conf
    template: worker.hbs
    reload: [worker.service]
ssh_host_keys: [ed25519]
";

#[test]
fn boot_transaction_has_no_cycle_and_orders_the_named_units() {
    let s = Scenario::new(MANIFEST);
    let dump = s.transaction(&s.imprint_generator());
    assert_eq!(cycles(&dump), Vec::<&str>::new(), "\n{dump}");
    for u in ["app.service", "worker.service", "ssh.service"] {
        assert!(
            has(&dump, u, "After: imprint.service"),
            "{u} not ordered after imprint:\n{}\n{}",
            dump.lines()
                .filter(|l| l.contains("enerator"))
                .collect::<Vec<_>>()
                .join("\n"),
            section(&dump, u).join("\n")
        );
        assert!(
            has(&dump, u, "DropIn Path:")
                && section(&dump, u)
                    .iter()
                    .any(|l| l.contains(&format!("{u}.d/50-imprint.conf"))),
            "{u}: generator drop-in not loaded"
        );
    }
    for u in ["early.service", "disk-setup.service"] {
        assert!(
            !has(&dump, u, "After: imprint.service"),
            "{u} must stay before imprint:\n{}",
            section(&dump, u).join("\n")
        );
    }
    // The generator's note reached systemd's log.
    assert!(
        dump.contains("imprint-generator: ordered after imprint.service:"),
        "{dump}"
    );
    // The same fixtures with a naive generator: systemd breaks cycles.
    let naive_dump = s.transaction(&naive(
        &[
            "app.service",
            "early.service",
            "disk-setup.service",
            "worker.service",
        ],
        false,
    ));
    assert!(
        cycles(&naive_dump)
            .iter()
            .any(|l| l.contains("early.service") || l.contains("disk-setup.service")),
        "the naive generator should have made a cycle:\n{}",
        cycles(&naive_dump).join("\n")
    );
}

#[test]
fn network_datasource_without_and_with_a_cycle_trap() {
    let m = MANIFEST.replace("order: [nocloud]", "order: [nocloud, ec2]");
    // The fixtures hold the cloud-init #7052 trap (firewall.service keeps
    // default dependencies and is ordered before network-pre.target).
    let s = Scenario::new(&m);
    let dump = s.transaction(&s.imprint_generator());
    assert_eq!(cycles(&dump), Vec::<&str>::new(), "\n{dump}");
    assert!(has(
        &dump,
        "imprint.service",
        "Wants: network-online.target"
    ));
    assert!(!has(
        &dump,
        "imprint.service",
        "After: network-online.target"
    ));
    assert!(dump.contains("not ordering imprint.service after network-online.target"));
    let naive_dump = s.transaction(&naive(&["app.service"], true));
    assert!(
        !cycles(&naive_dump).is_empty(),
        "the naive network ordering should have made a cycle"
    );
    // Without the trap, imprint waits for the network.
    let s = Scenario::new(&m);
    std::fs::remove_file(s.root().join("etc/systemd/system/firewall.service")).unwrap();
    std::fs::remove_file(
        s.root()
            .join("etc/systemd/system/multi-user.target.wants/firewall.service"),
    )
    .unwrap();
    let dump = s.transaction(&s.imprint_generator());
    assert_eq!(cycles(&dump), Vec::<&str>::new(), "\n{dump}");
    assert!(has(
        &dump,
        "imprint.service",
        "After: network-online.target"
    ));
    assert!(has(
        &dump,
        "imprint.service",
        "Wants: network-online.target"
    ));
    // netsetup brings the network up before imprint: never after it.
    assert!(!has(&dump, "netsetup.service", "After: imprint.service"));
}
