//! PROTOCOL tests of `Systemctl`: the exact `systemctl` command lines imprint
//! runs, and how it reads their answers, against a small script standing in
//! for systemctl that records its argv and answers from files. This is not
//! a test of systemd's behaviour: that proof is the VM suite (tests/vm and
//! tests/systemd_vm.rs, where real PID 1 restarts real units during a real
//! boot). The answers below have the shape real systemd 252 prints
//! (`Key=value` lines for `show`, the indented closure for
//! `list-dependencies --plain`).

mod common;

use common::TempRoot;
use imprint::plan::Plan;
use imprint::systemd::{act, ServiceManager, Systemctl, UnitAction};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// The stand-in: logs `$*` per call; `show` prints `show/UNIT` for each
/// unit (or a not-found answer), `list-dependencies` prints `deps/UNIT` (or
/// fails when `depsfail/UNIT` exists); a job on UNIT fails with `fail/UNIT`
/// on stderr, or hangs when `hang/UNIT` exists.
struct Fake {
    dir: TempRoot,
}

impl Fake {
    fn new() -> Fake {
        let dir = TempRoot::new();
        let d = dir.path().display().to_string();
        let script = format!(
            r#"#!/bin/sh
D='{d}'
echo "$*" >> "$D/log"
for last; do :; done
case "$1" in
  show)
    # one block per unit after --, separated by an empty line (as systemd)
    units=; seen=
    for a; do [ -n "$seen" ] && units="$units $a"; [ "$a" = "--" ] && seen=1; done
    sep=
    for u in $units; do
      printf '%s' "$sep"; sep='
'
      if [ -f "$D/show/$u" ]; then cat "$D/show/$u"
      else printf 'Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n' "$u"; fi
    done ;;
  list-dependencies)
    [ -f "$D/depsfail/$last" ] && {{ echo "Failed to get properties: Connection timed out" >&2; exit 1; }}
    cat "$D/deps/$last" 2>/dev/null || echo "$last" ;;
  *)
    # hang: a child that keeps the output pipes open, as a stuck helper would
    [ -f "$D/hang/$last" ] && {{ sleep 30 & wait; }}
    if [ -f "$D/fail/$last" ]; then cat "$D/fail/$last" >&2; exit 1; fi ;;
esac
exit 0
"#
        );
        dir.write("/systemctl", script);
        std::fs::set_permissions(
            dir.join("/systemctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Fake { dir }
    }

    fn set(&self, what: &str, unit: &str, text: &str) -> &Fake {
        self.dir.write(&format!("/{what}/{unit}"), text);
        self
    }

    /// A unit in this state, unordered (as `systemctl show` prints the
    /// properties imprint asks for).
    fn unit(&self, unit: &str, active: &str) -> &Fake {
        self.ordered(unit, active, "", "")
    }

    /// A unit in this state with these direct `After=` and `Before=`.
    fn ordered(&self, unit: &str, active: &str, after: &str, before: &str) -> &Fake {
        let sub = match active {
            "active" => "running",
            "activating" => "start",
            "failed" => "failed",
            _ => "dead",
        };
        let result = if active == "failed" {
            "exit-code"
        } else {
            "success"
        };
        let status = if active == "failed" { 1 } else { 0 };
        self.set(
            "show",
            unit,
            &format!(
                "Id={unit}\nLoadState=loaded\nActiveState={active}\nSubState={sub}\n\
                 After={after}\nBefore={before}\nResult={result}\nExecMainStatus={status}\n"
            ),
        )
    }

    fn systemctl(&self) -> Systemctl {
        Systemctl::with_path(self.dir.join("/systemctl"))
    }

    /// The recorded command lines.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("/log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// What real systemd printed (tests/fixtures/systemd, see its INDEX).
fn sample(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/systemd")
            .join(name),
    )
    .unwrap()
}

const SHOW: &str = "show -p Id -p LoadState -p ActiveState -p SubState -p After -p Before -- ";
const RESULT: &str = "show -p Result -p ActiveState -p SubState -p ExecMainStatus -- ";

/// Inside imprint.service's running start job, ordered as
/// units/imprint.service orders it.
fn in_imprint(fake: &Fake) -> Systemctl {
    fake.ordered(
        "imprint.service",
        "activating",
        "local-fs.target systemd-remount-fs.service systemd-journald.socket",
        "sysinit.target shutdown.target",
    );
    fake.systemctl().self_unit(Some("imprint.service"))
}

/// early.service active, ordered before imprint (as the VM suite's is).
fn early_before_imprint(f: &Fake) -> &Fake {
    f.ordered(
        "early.service",
        "active",
        "local-fs.target system.slice",
        "imprint.service shutdown.target",
    )
}

/// A service with default dependencies, as systemd shows it.
const DEFAULT_AFTER: &str = "sysinit.target basic.target system.slice systemd-journald.socket";

#[test]
fn active_unit_before_imprint_is_restarted_and_waited_for() {
    let f = Fake::new();
    early_before_imprint(&f);
    let a = in_imprint(&f).restart("early.service").unwrap();
    assert_eq!(
        a,
        UnitAction {
            unit: "early.service".into(),
            action: "restart".into(),
            result: "done".into()
        }
    );
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}early.service"),
            format!("{SHOW}imprint.service"),
            "restart -- early.service".into(),
        ],
        "Before=imprint.service says it all: no closure asked for; systemctl's exit 0 is the \
         job's result: no state query after it"
    );
}

#[test]
fn active_unit_after_imprint_is_queued_without_blocking() {
    // Default dependencies: After=sysinit.target, which imprint is before.
    let f = Fake::new();
    f.ordered("app.service", "active", DEFAULT_AFTER, "shutdown.target");
    let a = in_imprint(&f).restart("app.service").unwrap();
    assert!(a.result.starts_with("queued"), "{a:?}");
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}app.service"),
            format!("{SHOW}imprint.service"),
            "restart --no-block -- app.service".into(),
        ]
    );
}

#[test]
fn no_direct_ordering_asks_for_the_whole_closure() {
    // DefaultDependencies=no and unordered to imprint: only the After=
    // closure (real samples) tells.
    let f = Fake::new();
    f.ordered(
        "early.service",
        "active",
        "local-fs.target system.slice",
        "",
    )
    .set(
        "deps",
        "early.service",
        &sample("list-dependencies-early.txt"),
    )
    .ordered("chain.service", "active", "other.service", "")
    .set(
        "deps",
        "chain.service",
        &sample("list-dependencies-app.txt"),
    );
    let mut s = in_imprint(&f);
    assert_eq!(s.restart("early.service").unwrap().result, "done");
    assert!(s
        .restart("chain.service")
        .unwrap()
        .result
        .starts_with("queued"));
    let log = f.log();
    assert!(log.contains(&"list-dependencies --after --all --plain -- early.service".to_string()));
    assert!(log.contains(&"restart -- early.service".to_string()));
    assert!(log.contains(&"list-dependencies --after --all --plain -- chain.service".to_string()));
    assert!(log.contains(&"restart --no-block -- chain.service".to_string()));
}

#[test]
fn when_the_closure_cannot_be_read_it_does_not_wait() {
    let f = Fake::new();
    f.ordered("odd.service", "active", "other.service", "")
        .set("depsfail", "odd.service", "");
    let a = in_imprint(&f).restart("odd.service").unwrap();
    assert!(a.result.starts_with("queued"), "{a:?}");
    assert!(f
        .log()
        .contains(&"restart --no-block -- odd.service".to_string()));
}

#[test]
fn inactive_failed_and_unknown_units_are_left_alone() {
    let f = Fake::new();
    f.unit("late.service", "inactive")
        .unit("broken.service", "failed");
    let mut s = in_imprint(&f);
    assert_eq!(
        s.restart("late.service").unwrap().result,
        "skipped (inactive)"
    );
    assert_eq!(
        s.reload("broken.service").unwrap().result,
        "skipped (failed)"
    );
    assert_eq!(
        s.restart("nosuch.service").unwrap().result,
        "skipped (not-found)"
    );
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}late.service"),
            format!("{SHOW}broken.service"),
            format!("{SHOW}nosuch.service"),
        ],
        "nothing but the state query for units that are not running"
    );
}

#[test]
fn outside_imprints_start_job_everything_is_waited_for() {
    // A manual `imprint run --force` on a booted machine: imprint.service is
    // active (not activating), so no job can be waiting for it.
    let f = Fake::new();
    f.unit("imprint.service", "active")
        .ordered("app.service", "active", DEFAULT_AFTER, "")
        .set("deps", "app.service", &sample("list-dependencies-app.txt"));
    let mut s = f.systemctl().self_unit(Some("imprint.service"));
    assert_eq!(s.restart("app.service").unwrap().result, "done");
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}app.service"),
            format!("{SHOW}imprint.service"),
            "restart -- app.service".into(),
        ]
    );
    // From a shell (not in a service): the same, without asking.
    let f = Fake::new();
    f.unit("app.service", "active");
    let mut s = f.systemctl().self_unit(None);
    assert_eq!(s.restart("app.service").unwrap().result, "done");
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}app.service"),
            "restart -- app.service".into(),
        ]
    );
}

#[test]
fn a_failed_job_is_a_unit_error_with_systemds_words() {
    let f = Fake::new();
    f.unit("early.service", "active")
        .set(
            "fail",
            "early.service",
            "Job for early.service failed because the control process exited with error code.\n\
             See \"systemctl status early.service\" and \"journalctl -xeu early.service\" for details.\n",
        )
        .set("deps", "early.service", &sample("list-dependencies-early.txt"));
    // After the failed restart systemd reports the unit failed.
    let mut s = in_imprint(&f);
    f.unit("early.service", "active");
    let plan = Plan {
        restart: vec!["early.service".into()],
        ..Plan::default()
    };
    // Make the post-restart state "failed" once the job has run.
    let script = f.dir.join("/systemctl");
    let text = std::fs::read_to_string(&script).unwrap().replace(
        "if [ -f \"$D/fail/$last\" ]; then cat \"$D/fail/$last\" >&2;",
        "if [ -f \"$D/fail/$last\" ]; then cat \"$D/fail/$last\" >&2; \
         sed -i 's/=active/=failed/; s/Result=success/Result=exit-code/; s/ExecMainStatus=0/ExecMainStatus=1/' \"$D/show/$last\";",
    );
    std::fs::write(&script, text).unwrap();
    let e = act(&mut s, &plan, &[]).unwrap_err();
    assert_eq!(e.unit, "early.service");
    assert_eq!(e.action, "restart");
    assert!(
        e.message.starts_with(
            "Job for early.service failed because the control process exited with error code."
        ),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("(Result=exit-code ActiveState=failed SubState=running ExecMainStatus=1)"),
        "{}",
        e.message
    );
    assert_eq!(
        f.log().last().unwrap(),
        &format!("{RESULT}early.service"),
        "the unit's state is asked for only after a failed job, for the message"
    );
    let err = imprint::Error::from(e);
    assert_eq!(err.exit_code(), imprint::ExitCode::TempFail);
}

#[test]
fn a_job_that_does_not_finish_is_killed_at_the_deadline() {
    let f = Fake::new();
    f.unit("slow.service", "active")
        .set("hang", "slow.service", "");
    let mut s = f
        .systemctl()
        .self_unit(None)
        .timeouts(Duration::from_millis(300), Duration::from_secs(5));
    let t = Instant::now();
    let e = s.restart("slow.service").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        e.message.starts_with("no result after 0.3 s"),
        "{}",
        e.message
    );
    // The budget for all jobs is spent after that: the next one is refused
    // without running anything.
    let f2 = Fake::new();
    f2.unit("a.service", "active");
    let mut s = f2
        .systemctl()
        .self_unit(None)
        .timeouts(Duration::from_secs(5), Duration::ZERO);
    let e = s.restart("a.service").unwrap_err();
    assert!(e.message.contains("budget"), "{}", e.message);
    assert!(!f2.log().contains(&"restart -- a.service".to_string()));
}

#[test]
fn a_unit_named_twice_or_by_alias_is_acted_on_once() {
    let f = Fake::new();
    f.unit("ssh.service", "active")
        .set("show", "sshd.service", &sample("show-sshd-alias.txt"))
        .unit("app.service", "active");
    let plan = Plan {
        restart: vec![
            "ssh.service".into(),
            "app.service".into(),
            "ssh.service".into(),
        ],
        reload: vec!["app.service".into(), "sshd.service".into()],
        ..Plan::default()
    };
    let done = act(
        &mut f.systemctl().self_unit(None),
        &plan,
        &["sshd.service".into()],
    )
    .unwrap();
    let lines: Vec<String> = done
        .iter()
        .map(|a| format!("{} {} {}", a.action, a.unit, a.result))
        .collect();
    assert_eq!(
        lines,
        [
            "restart ssh.service done",
            "restart app.service done",
            "restart sshd.service skipped (same unit as ssh.service)",
        ],
        "a unit restarted is not also reloaded"
    );
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}ssh.service app.service sshd.service"),
            "restart -- ssh.service".into(),
            "restart -- app.service".into(),
        ],
        "one state query for all units, then the jobs"
    );
}

#[test]
fn daemon_reload_then_enable_and_start() {
    let f = Fake::new();
    f.ordered("new.service", "inactive", DEFAULT_AFTER, "");
    let plan = Plan {
        daemon_reload: true,
        enable: vec!["new.service".into()],
        reload: vec!["syslog.service".into()],
        ..Plan::default()
    };
    let done = act(&mut in_imprint(&f), &plan, &[]).unwrap();
    let lines: Vec<String> = done
        .iter()
        .map(|a| format!("{} {} {}", a.action, a.unit, a.result))
        .collect();
    assert_eq!(lines[0], "daemon-reload  done");
    assert!(
        lines[1].starts_with("enable-start new.service queued"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "reload syslog.service skipped (not-found)");
    assert_eq!(
        f.log(),
        [
            "daemon-reload".to_string(),
            format!("{SHOW}new.service syslog.service imprint.service"),
            "enable --no-reload -- new.service".into(),
            "start --no-block -- new.service".into(),
        ]
    );
    // No daemon-reload unless the plan says so.
    let f = Fake::new();
    act(&mut f.systemctl().self_unit(None), &Plan::default(), &[]).unwrap();
    assert_eq!(f.log(), Vec::<String>::new());
}

#[test]
fn a_missing_systemctl_is_a_clear_error() {
    let mut s = Systemctl::with_path("/nonexistent/systemctl").self_unit(None);
    let e = s.restart("app.service").unwrap_err();
    assert!(
        e.to_string().starts_with(
            "unit app.service failed to restart: failed to run /nonexistent/systemctl:"
        ),
        "{e}"
    );
}

#[test]
fn real_systemd_answers_parse() {
    use imprint::systemd::{
        decide, parse_dependency_list, parse_show, unit_of_cgroup, Decision, UnitState,
    };
    let early = UnitState::from_show("early.service", &parse_show(&sample("show-early.txt")));
    assert_eq!(
        early,
        UnitState {
            id: "early.service".into(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            after: vec![],
            before: vec![],
        }
    );
    let alias = UnitState::from_show("sshd.service", &parse_show(&sample("show-sshd-alias.txt")));
    assert_eq!(alias.id, "ssh.service");
    let missing = UnitState::from_show("nosuch.service", &parse_show(&sample("show-notfound.txt")));
    assert_eq!(
        decide(&missing, false),
        Decision::Skip("skipped (not-found)".into())
    );
    let result = parse_show(&sample("show-result-early.txt"));
    assert_eq!(result["Result"], "success");
    assert_eq!(result["ExecMainStatus"], "0");
    let early_after = parse_dependency_list(&sample("list-dependencies-early.txt"));
    assert_eq!(early_after[0], "early.service");
    assert!(early_after.contains(&"-.mount".to_string()));
    assert!(early_after.contains(&"blockdev@dev-disk-by\\x2dlabel-root.target".to_string()));
    assert!(!early_after.contains(&"imprint.service".to_string()));
    let app_after = parse_dependency_list(&sample("list-dependencies-app.txt"));
    assert!(app_after.contains(&"imprint.service".to_string()));
    assert_eq!(
        unit_of_cgroup(&sample("cgroup.txt")).as_deref(),
        Some("imprint.service")
    );
    // The direct ordering decides on real answers: app (default
    // dependencies and the generator's After=imprint.service) is after
    // imprint, early (Before=imprint.service) is not.
    let blocks = imprint::systemd::parse_show_many(&sample("show-order.txt"));
    let st: Vec<UnitState> = ["app.service", "early.service", "imprint.service"]
        .iter()
        .zip(&blocks)
        .map(|(n, b)| UnitState::from_show(n, b))
        .collect();
    assert_eq!(imprint::systemd::direct_order(&st[0], &st[2]), Some(true));
    assert_eq!(imprint::systemd::direct_order(&st[1], &st[2]), Some(false));
    assert!(st[2].before.contains(&"sysinit.target".to_string()));
    let many = imprint::systemd::parse_show_many(&sample("show-many.txt"));
    let ids: Vec<&str> = many.iter().map(|b| b["Id"].as_str()).collect();
    assert_eq!(ids, ["early.service", "ssh.service", "nosuch.service"]);
}

#[test]
fn a_first_boot_asks_systemd_once_and_restarts_only_what_runs() {
    // The shape of the VM's first boot (tests/fixtures/systemd): early runs
    // before imprint, app and ssh wait for it.
    let f = Fake::new();
    f.ordered(
        "early.service",
        "active",
        "local-fs.target",
        "imprint.service",
    )
    .ordered("app.service", "inactive", DEFAULT_AFTER, "")
    .ordered("ssh.service", "inactive", DEFAULT_AFTER, "");
    let plan = Plan {
        restart: vec!["early.service".into(), "app.service".into()],
        ..Plan::default()
    };
    let mut s = in_imprint(&f);
    let done = act(&mut s, &plan, &["ssh.service".into()]).unwrap();
    let lines: Vec<String> = done
        .iter()
        .map(|a| format!("{} {} {}", a.action, a.unit, a.result))
        .collect();
    assert_eq!(
        lines,
        [
            "restart early.service done",
            "restart app.service skipped (inactive)",
            "restart ssh.service skipped (inactive)"
        ]
    );
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}early.service app.service ssh.service imprint.service"),
            "restart -- early.service".into(),
        ]
    );
}

/// The generator's drop-in for `unit` under `dir` (what src/generator.rs
/// writes into /run/systemd/generator at boot).
fn dropin(dir: &TempRoot, unit: &str, after: &str) {
    dir.write(
        &format!("/{unit}.d/50-imprint.conf"),
        format!("# written by imprint-generator\n[Unit]\nAfter={after}\n"),
    );
}

#[test]
fn units_the_generator_ordered_after_imprint_are_not_asked_about() {
    // Inside imprint.service's start job, app.service and ssh.service carry
    // the generator's After=imprint.service: their jobs wait for imprint's,
    // so they cannot have started. No state query (PID 1 answers late at
    // boot); early.service has no drop-in and is asked about as before.
    let f = Fake::new();
    early_before_imprint(&f);
    let gen = TempRoot::new();
    dropin(&gen, "app.service", "imprint.service");
    dropin(&gen, "ssh.service", "imprint.service");
    let plan = Plan {
        restart: vec!["early.service".into(), "app.service".into()],
        enable: vec!["worker.service".into()],
        ..Plan::default()
    };
    dropin(&gen, "worker.service", "imprint.service");
    let mut s = in_imprint(&f).generator_dir(gen.path());
    let done = act(&mut s, &plan, &["ssh.service".into()]).unwrap();
    let lines: Vec<String> = done
        .iter()
        .map(|a| format!("{} {} {}", a.action, a.unit, a.result))
        .collect();
    let later =
        "skipped (not started yet: ordered after imprint.service, it starts with the final config)";
    assert_eq!(
        lines,
        [
            "enable-start worker.service queued (ordered after imprint; runs when it is done)"
                .to_string(),
            "restart early.service done".into(),
            format!("restart app.service {later}"),
            format!("restart ssh.service {later}"),
        ]
    );
    assert_eq!(
        f.log(),
        [
            format!("{SHOW}early.service imprint.service"),
            "enable --no-reload -- worker.service".into(),
            "start --no-block -- worker.service".into(),
            "restart -- early.service".into(),
        ]
    );
}

#[test]
fn without_proof_the_unit_is_asked_about() {
    // The same unit and drop-in, but: the drop-in orders it after another
    // unit; imprint is not in a service; the run reloaded systemd (the
    // unit may have been ordered otherwise, and running, before). Each
    // time PID 1 is asked, and the answer (active) decides.
    let cases: [(&str, Option<&str>, bool); 3] = [
        ("other.service", Some("imprint.service"), false),
        ("imprint.service", None, false),
        ("imprint.service", Some("imprint.service"), true),
    ];
    for (after, me, reload) in cases {
        let f = Fake::new();
        f.ordered("app.service", "active", DEFAULT_AFTER, "shutdown.target");
        let gen = TempRoot::new();
        dropin(&gen, "app.service", after);
        let mut s = match me {
            Some(_) => in_imprint(&f),
            None => f.systemctl().self_unit(None),
        }
        .generator_dir(gen.path());
        let plan = Plan {
            restart: vec!["app.service".into()],
            daemon_reload: reload,
            ..Plan::default()
        };
        let done = act(&mut s, &plan, &[]).unwrap();
        let last = done.last().unwrap();
        assert!(
            last.result == "done" || last.result.starts_with("queued"),
            "{after} {me:?} {reload}: {done:?}"
        );
        assert!(
            f.log().iter().any(|l| l.starts_with(SHOW)),
            "{after} {me:?} {reload}: {:?}",
            f.log()
        );
    }
}
