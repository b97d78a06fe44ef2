//! imprint's D-Bus client (src/systemd_bus.rs) and `Systemctl` over it.
//!
//! The wire format is proven against a real peer: the reference
//! `dbus-daemon` (package `dbus`), started privately on a socket in a temp
//! directory, answers calls, error replies and pipelined `Get`s, and routes a
//! `JobRemoved`-shaped signal sent by the real `dbus-send`. How `Systemctl`
//! uses the connection (one round of `Get`s, which job waits for
//! `JobRemoved`, deadlines, failures, falling back to `systemctl`) runs
//! against a stand-in for PID 1 written here with the client's own encoder:
//! a protocol test, not a test of systemd. Real PID 1 answering over
//! /run/systemd/private during a real boot is the VM suite (tests/vm).

mod common;

use common::TempRoot;
use imprint::plan::Plan;
use imprint::systemd::bus::{
    self, decode, encode, read_message, Bus, BusError, Header, Value, Writer,
};
use imprint::systemd::{act, ServiceManager, Systemctl};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------- a real dbus-daemon

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: TempRoot,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dbus_daemon() -> Daemon {
    let dir = TempRoot::new();
    let socket = dir.join("/bus");
    let config = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    );
    dir.write("/bus.conf", config);
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", dir.join("/bus.conf").display()))
        .args(["--nofork", "--nopidfile"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("these tests need dbus-daemon (apt-get install dbus)");
    let t = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "dbus-daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        child,
        socket,
        _dir: dir,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

const DBUS: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";

#[test]
fn the_wire_format_is_what_dbus_daemon_speaks() {
    let d = dbus_daemon();
    let mut b = Bus::connect(&d.socket, Duration::from_secs(10))
        .unwrap()
        .with_destination(DBUS);
    // A bus wants Hello first; it answers with our unique name.
    let hello = b.call(DBUS_PATH, DBUS, "Hello", &[], soon()).unwrap();
    let me = hello.body[0].as_str().unwrap().to_string();
    assert!(me.starts_with(':'), "{me}");
    // A call with a string argument, a string answer.
    let owner = b
        .call(DBUS_PATH, DBUS, "GetNameOwner", &[DBUS], soon())
        .unwrap();
    assert_eq!(owner.body[0].as_str(), Some(DBUS));
    // An error reply carries its name and message.
    match b.call(
        DBUS_PATH,
        DBUS,
        "GetNameOwner",
        &["org.example.Nobody"],
        soon(),
    ) {
        Err(BusError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.NameHasNoOwner");
            assert!(message.contains("org.example.Nobody"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Get, pipelined: a property the object lacks is left out.
    let got = b
        .get(
            &[
                (
                    DBUS_PATH.to_string(),
                    DBUS,
                    &["Interfaces", "NoSuchProperty"],
                ),
                (DBUS_PATH.to_string(), DBUS, &["Features"]),
            ],
            soon(),
        )
        .unwrap();
    let ifaces = got[0]["Interfaces"].as_strs().unwrap();
    assert!(
        ifaces.contains(&"org.freedesktop.DBus.Monitoring"),
        "{ifaces:?}"
    );
    assert!(!got[0].contains_key("NoSuchProperty"));
    assert_eq!(got[1].keys().collect::<Vec<_>>(), ["Features"]);
    // A JobRemoved signal sent by the real dbus-send reaches wait_job (a
    // bus needs the match rule; systemd's private socket does not).
    b.call(
        DBUS_PATH,
        DBUS,
        "AddMatch",
        &["type='signal',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'"],
        soon(),
    )
    .unwrap();
    let sent = Command::new("dbus-send")
        .arg(format!("--bus=unix:path={}", d.socket.display()))
        .args([
            "--type=signal",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager.JobRemoved",
            "uint32:7",
            "objpath:/org/freedesktop/systemd1/job/7",
            "string:early.service",
            "string:done",
        ])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(
        b.wait_job("/org/freedesktop/systemd1/job/7", soon())
            .unwrap(),
        "done"
    );
    // Nothing else comes: the deadline ends the wait.
    let t = Instant::now();
    let e = b
        .wait_job(
            "/org/freedesktop/systemd1/job/8",
            Instant::now() + Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(matches!(e, BusError::Timeout), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_peer_that_refuses_authentication_is_an_error() {
    let dir = TempRoot::new();
    let socket = dir.join("/private");
    let l = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (&s).write_all(b"REJECTED EXTERNAL\r\n").unwrap();
        line
    });
    let e = Bus::connect(&socket, Duration::from_secs(5)).unwrap_err();
    assert!(e.to_string().contains("authentication refused"), "{e}");
    let line = server.join().unwrap();
    let uid = rustix_uid();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(line, format!("\0AUTH EXTERNAL {hex}\r\n"));
}

fn rustix_uid() -> String {
    // The uid this test runs as, without another crate.
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

// -------------------------------------------------- a stand-in for PID 1

/// How the stand-in answers for one unit.
#[derive(Clone)]
struct FakeUnit {
    active: &'static str,
    after: &'static str,
    before: &'static str,
    /// The JobRemoved result of a job on it; `None`: it never finishes.
    job_result: Option<&'static str>,
}

struct Pid1 {
    socket: PathBuf,
    /// `MEMBER ARGS...` of every call.
    calls: Arc<Mutex<Vec<String>>>,
    /// The units it answers for (a test may change one between calls).
    units: Arc<Mutex<BTreeMap<String, FakeUnit>>>,
    _dir: TempRoot,
}

fn reply(serial: &mut u32, to: u32, sig: &str, body: &[u8]) -> Vec<u8> {
    *serial += 1;
    encode(
        &Header {
            kind: bus::METHOD_RETURN,
            serial: *serial,
            reply_serial: Some(to),
            signature: sig,
            ..Header::default()
        },
        body,
    )
}

fn signal(serial: &mut u32, iface: &str, member: &str, sig: &str, body: &[u8]) -> Vec<u8> {
    *serial += 1;
    encode(
        &Header {
            kind: bus::SIGNAL,
            serial: *serial,
            path: Some("/org/freedesktop/systemd1"),
            interface: Some(iface),
            member: Some(member),
            signature: sig,
            ..Header::default()
        },
        body,
    )
}

fn unit_of_path(units: &BTreeMap<String, FakeUnit>, path: &str) -> Option<String> {
    units.keys().find(|u| bus::unit_path(u) == path).cloned()
}

impl Pid1 {
    fn start(units: &[(&str, FakeUnit)]) -> Pid1 {
        let dir = TempRoot::new();
        let socket = dir.join("/private");
        let l = UnixListener::bind(&socket).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        let shared: Arc<Mutex<BTreeMap<String, FakeUnit>>> = Arc::new(Mutex::new(
            units
                .iter()
                .map(|(n, u)| (n.to_string(), u.clone()))
                .collect(),
        ));
        let table = shared.clone();
        std::thread::spawn(move || {
            let Ok((s, _)) = l.accept() else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("\0AUTH EXTERNAL "), "{line:?}");
            w.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n")
                .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "BEGIN\r\n");
            let mut serial = 0;
            let mut jobs = 0;
            while let Ok(buf) = read_message(&mut r) {
                let m = decode(&buf).unwrap();
                let units = table.lock().unwrap().clone();
                let args: Vec<&str> = m.body.iter().filter_map(Value::as_str).collect();
                log.lock()
                    .unwrap()
                    .push(format!("{} {}", m.member, args.join(" ")));
                match m.member.as_str() {
                    "Get" => {
                        let (iface, prop) = (args[0], args[1]);
                        let unit = unit_of_path(&units, &m.path);
                        let u = unit.as_ref().map(|n| &units[n]);
                        let id = unit.clone().unwrap_or_else(|| {
                            // An escaped name: good enough for a not-found answer.
                            m.path.rsplit('/').next().unwrap().replace("_2e", ".")
                        });
                        let sub = match u.map(|u| u.active) {
                            Some("active") => "running",
                            Some("activating") => "start",
                            _ => "dead",
                        };
                        let on_unit = iface == "org.freedesktop.systemd1.Unit";
                        let on_service = iface == "org.freedesktop.systemd1.Service";
                        let list = |f: fn(&FakeUnit) -> &'static str| -> Vec<&str> {
                            u.map(|u| f(u).split_whitespace().collect())
                                .unwrap_or_default()
                        };
                        let value: Option<(&str, Vec<&str>)> = match prop {
                            "Id" if on_unit => Some(("s", vec![id.as_str()])),
                            "LoadState" if on_unit => {
                                Some(("s", vec![if u.is_some() { "loaded" } else { "not-found" }]))
                            }
                            "ActiveState" if on_unit => {
                                Some(("s", vec![u.map(|u| u.active).unwrap_or("inactive")]))
                            }
                            "SubState" if on_unit => Some(("s", vec![sub])),
                            "After" if on_unit => Some(("as", list(|u| u.after))),
                            "Before" if on_unit => Some(("as", list(|u| u.before))),
                            "Result" if on_service => Some((
                                "s",
                                vec![match u.and_then(|u| u.job_result) {
                                    Some("failed") => "exit-code",
                                    _ => "success",
                                }],
                            )),
                            "ExecMainStatus" if on_service => Some(("i", vec![])),
                            _ => None,
                        };
                        let Some((sig, vals)) = value else {
                            let mut b = Writer::default();
                            b.str("The property does not exist");
                            serial += 1;
                            let msg = encode(
                                &Header {
                                    kind: bus::ERROR,
                                    serial,
                                    reply_serial: Some(m.serial),
                                    error_name: Some("org.freedesktop.DBus.Error.UnknownProperty"),
                                    signature: "s",
                                    ..Header::default()
                                },
                                &b.buf,
                            );
                            w.write_all(&msg).unwrap();
                            continue;
                        };
                        let mut v = Writer::default();
                        v.sig(sig);
                        match sig {
                            "s" => v.str(vals[0]),
                            "as" => {
                                let a = v.begin_array(4);
                                for x in vals {
                                    v.str(x);
                                }
                                v.end_array(a);
                            }
                            _ => v.u32(1),
                        }
                        w.write_all(&reply(&mut serial, m.serial, "v", &v.buf))
                            .unwrap();
                    }
                    "RestartUnit" | "StartUnit" | "ReloadUnit" => {
                        jobs += 1;
                        let job = format!("/org/freedesktop/systemd1/job/{jobs}");
                        let mut b = Writer::default();
                        b.str(&job);
                        w.write_all(&reply(&mut serial, m.serial, "o", &b.buf))
                            .unwrap();
                        // Noise first, as PID 1 sends while a job runs.
                        let mut n = Writer::default();
                        n.u32(jobs);
                        n.str(&job);
                        n.str(args[0]);
                        w.write_all(&signal(
                            &mut serial,
                            "org.freedesktop.systemd1.Manager",
                            "JobNew",
                            "uos",
                            &n.buf,
                        ))
                        .unwrap();
                        let u = units.get(args[0]);
                        if let Some(result) = u.and_then(|u| u.job_result) {
                            let mut b = Writer::default();
                            b.u32(jobs);
                            b.str(&job);
                            b.str(args[0]);
                            b.str(result);
                            w.write_all(&signal(
                                &mut serial,
                                "org.freedesktop.systemd1.Manager",
                                "JobRemoved",
                                "uoss",
                                &b.buf,
                            ))
                            .unwrap();
                        }
                    }
                    other => panic!("unexpected call {other}"),
                }
            }
        });
        Pid1 {
            socket,
            calls,
            units: shared,
            _dir: dir,
        }
    }

    /// Change a unit's active state from now on.
    fn set_active(&self, unit: &str, active: &'static str) {
        self.units.lock().unwrap().get_mut(unit).unwrap().active = active;
    }

    /// Wait (at most 10 s) until `n` calls have come in.
    fn wait_calls(&self, n: usize) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.calls().len() < n {
            assert!(Instant::now() < end, "{:#?}", self.calls());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Systemctl over this socket; its `systemctl` does not exist, so any
    /// exec is an error the test sees.
    fn systemctl(&self) -> Systemctl {
        Systemctl::with_path("/nonexistent/systemctl")
            .with_bus(&self.socket)
            .self_unit(Some("imprint.service"))
    }
}

const IMPRINT: FakeUnit = FakeUnit {
    active: "activating",
    after: "local-fs.target systemd-remount-fs.service systemd-journald.socket",
    before: "sysinit.target shutdown.target",
    job_result: None,
};
const DEFAULT_AFTER: &str = "sysinit.target basic.target system.slice systemd-journald.socket";
/// A service with default dependencies that has not started yet (at boot:
/// ordered after imprint through sysinit.target).
const SERVICE_NOT_STARTED: FakeUnit = FakeUnit {
    active: "inactive",
    after: DEFAULT_AFTER,
    before: "",
    job_result: Some("done"),
};

fn lines(done: &[imprint::systemd::UnitAction]) -> Vec<String> {
    done.iter()
        .map(|a| format!("{} {} {}", a.action, a.unit, a.result))
        .collect()
}

#[test]
fn a_first_boot_talks_to_pid1_without_one_exec() {
    let pid1 = Pid1::start(&[
        ("imprint.service", IMPRINT),
        (
            "early.service",
            FakeUnit {
                active: "active",
                after: "local-fs.target",
                before: "imprint.service",
                job_result: Some("done"),
            },
        ),
        ("app.service", SERVICE_NOT_STARTED),
        ("ssh.service", SERVICE_NOT_STARTED),
    ]);
    let plan = Plan {
        restart: vec!["early.service".into(), "app.service".into()],
        ..Plan::default()
    };
    let done = act(&mut pid1.systemctl(), &plan, &["ssh.service".into()]).unwrap();
    assert_eq!(
        lines(&done),
        [
            "restart early.service done",
            "restart app.service skipped (inactive)",
            "restart ssh.service skipped (inactive)"
        ]
    );
    // Six properties of four units (imprint's own included), all sent
    // before the first answer is read; then the one job.
    let calls = pid1.calls();
    assert_eq!(calls.len(), 6 * 4 + 1, "{calls:#?}");
    assert!(calls[..24]
        .iter()
        .all(|c| c.starts_with("Get org.freedesktop.systemd1.Unit ")));
    assert_eq!(calls[24], "RestartUnit early.service replace");
}

#[test]
fn states_asked_ahead_are_used_only_where_they_cannot_have_gone_stale() {
    let pid1 = Pid1::start(&[
        ("imprint.service", IMPRINT),
        (
            // Ordered after imprint (default dependencies): while imprint's
            // start job runs, a job for it waits, so "inactive" holds.
            "app.service",
            SERVICE_NOT_STARTED,
        ),
        (
            // Ordered before imprint: it may start at any time.
            "early.service",
            FakeUnit {
                active: "inactive",
                after: "local-fs.target",
                before: "imprint.service",
                job_result: Some("done"),
            },
        ),
        ("ssh.service", SERVICE_NOT_STARTED),
    ]);
    let mut s = pid1.systemctl();
    s.prefetch(&["app.service", "early.service", "ssh.service"]);
    // Six properties of four units (imprint's own included), sent ahead.
    pid1.wait_calls(24);
    // Meanwhile early.service started (and, in this stand-in only, so did
    // app.service: the early answer for it must be the one used).
    pid1.set_active("early.service", "active");
    pid1.set_active("app.service", "active");
    let plan = Plan {
        restart: vec!["app.service".into(), "early.service".into()],
        ..Plan::default()
    };
    let done = act(&mut s, &plan, &[]).unwrap();
    assert_eq!(
        lines(&done),
        [
            "restart app.service skipped (inactive)",
            "restart early.service done"
        ]
    );
    // Asked again: one unit's six properties (early.service's, as the
    // results above say), on the same connection (the stand-in accepts
    // one); then its job.
    let calls = pid1.calls();
    assert_eq!(calls.len(), 24 + 6 + 1, "{calls:#?}");
    assert!(calls[24..30].iter().all(|c| c.starts_with("Get ")));
    assert_eq!(calls[30], "RestartUnit early.service replace");
    // The ssh unit after the host keys (a second `act`): its answer from
    // ahead still holds, and nothing is asked.
    pid1.set_active("ssh.service", "active");
    let done = act(&mut s, &Plan::default(), &["ssh.service".into()]).unwrap();
    assert_eq!(lines(&done), ["restart ssh.service skipped (inactive)"]);
    assert_eq!(pid1.calls().len(), 31, "{:#?}", pid1.calls());
}

#[test]
fn a_unit_after_imprint_is_queued_and_not_waited_for() {
    let pid1 = Pid1::start(&[
        ("imprint.service", IMPRINT),
        (
            "app.service",
            FakeUnit {
                active: "active",
                after: DEFAULT_AFTER,
                before: "",
                // Its job would wait for imprint's: it never ends here.
                job_result: None,
            },
        ),
    ]);
    let mut s = pid1.systemctl();
    s.prepare(&["app.service"]).unwrap();
    let t = Instant::now();
    let a = s.restart("app.service").unwrap();
    assert!(a.result.starts_with("queued"), "{a:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        pid1.calls().last().unwrap(),
        "RestartUnit app.service replace"
    );
}

#[test]
fn a_failed_job_says_its_result_and_the_units_state() {
    let pid1 = Pid1::start(&[
        ("imprint.service", IMPRINT),
        (
            "early.service",
            FakeUnit {
                active: "active",
                after: "",
                before: "imprint.service",
                job_result: Some("failed"),
            },
        ),
    ]);
    let plan = Plan {
        restart: vec!["early.service".into()],
        ..Plan::default()
    };
    let e = act(&mut pid1.systemctl(), &plan, &[]).unwrap_err();
    assert_eq!(e.unit, "early.service");
    assert!(
        e.message
            .starts_with("job for early.service finished with result 'failed' (Result=exit-code ActiveState=active SubState=running ExecMainStatus=1)"),
        "{}",
        e.message
    );
    let err = imprint::Error::from(e);
    assert_eq!(err.exit_code(), imprint::ExitCode::TempFail);
}

#[test]
fn a_job_without_result_ends_at_its_deadline() {
    let pid1 = Pid1::start(&[
        ("imprint.service", IMPRINT),
        (
            "slow.service",
            FakeUnit {
                active: "active",
                after: "",
                before: "imprint.service",
                job_result: None,
            },
        ),
    ]);
    let mut s = pid1
        .systemctl()
        .timeouts(Duration::from_millis(300), Duration::from_secs(5));
    s.prepare(&["slow.service"]).unwrap();
    let t = Instant::now();
    let e = s.restart("slow.service").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        e.message.starts_with("no result after 0.3 s"),
        "{}",
        e.message
    );
}

#[test]
fn without_the_socket_it_runs_systemctl() {
    // No PID 1 socket: the same answers come from systemctl (here a script
    // that logs its argv and fails the test if asked for a job).
    let dir = TempRoot::new();
    let log = dir.join("/log");
    dir.write(
        "/systemctl",
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nprintf 'Id=late.service\\nLoadState=loaded\\nActiveState=inactive\\nSubState=dead\\n'\n",
            log.display()
        ),
    );
    std::fs::set_permissions(
        dir.join("/systemctl"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut s = Systemctl::with_path(dir.join("/systemctl"))
        .with_bus(Path::new("/nonexistent/private"))
        .self_unit(None);
    s.prepare(&["late.service"]).unwrap();
    assert_eq!(
        s.restart("late.service").unwrap().result,
        "skipped (inactive)"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "show -p Id -p LoadState -p ActiveState -p SubState -p After -p Before -- late.service\n"
    );
}
