//! Units after apply (SPEC §1.8): `daemon-reload` only if a unit file or
//! drop-in changed; enable/start what the manifest asks; restart (or reload)
//! each affected unit that is already active; never block on a unit ordered
//! after imprint.
//!
//! Through the [`ServiceManager`] trait: [`Recorder`] under `--root` or
//! `--no-restart` ("would-restart X"), [`Systemctl`] on a real machine.
//!
//! How it talks to PID 1: over its private socket `/run/systemd/private`
//! ([`bus`], the socket `systemctl` itself uses as root; no D-Bus broker is
//! needed this early) for the state query (`Properties.Get`) and the jobs
//! (`RestartUnit`/`ReloadUnit`/`StartUnit`, then the `JobRemoved` signal:
//! what `systemctl restart` waits for). Each `systemctl` is a process that
//! maps libsystemd-shared: 0.3-0.8 s under emulation at boot, more than the
//! restart it asks for. When the socket cannot be used (not root, not
//! there, a failure before any job was sent) imprint runs `systemctl`
//! instead, which also does the rare steps (`daemon-reload`, `enable`,
//! `list-dependencies`).
//!
//! Why the care about blocking: imprint runs as the start job of
//! `imprint.service`, early in boot. A job for a unit ordered after
//! imprint.service — directly, or through a chain of `After=` that systemd's
//! implicit default dependencies make very common (cloud-init #7052) — can
//! only run once imprint's own job is done; `systemctl restart` waiting for
//! it waits forever (cloud-init #5930). So for every unit imprint acts on it
//! asks systemd for the unit's whole `After=` closure
//! (`list-dependencies --after --all`): if the unit imprint runs in appears
//! there, the job is enqueued with `--no-block`; otherwise imprint waits for
//! it, under a deadline, and reads its result. A waited job that misses the
//! deadline is a failure (exit 75, no seal), never a hung boot.
//!
//! A unit that is not active is skipped: it has not started yet and will
//! start after imprint with its final config (the generator orders it so).

#[path = "systemd_bus.rs"]
pub mod bus;

use crate::plan::Plan;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// imprint's own unit.
pub const IMPRINT_UNIT: &str = "imprint.service";

/// What was done (or would be) to one unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitAction {
    pub unit: String,
    /// `daemon-reload`, `enable`, `start`, `restart`, `reload`, or
    /// `would-restart` etc. when only recorded.
    pub action: String,
    /// `done`, `queued`, `skipped (inactive)`, `recorded`, or the failure.
    pub result: String,
}

#[derive(Debug, thiserror::Error)]
#[error("unit {unit} failed to {action}: {message}")]
pub struct UnitError {
    pub unit: String,
    pub action: String,
    pub message: String,
    /// What was done before the failure (for the report).
    pub done: Vec<UnitAction>,
}

/// The operations imprint needs from the service manager. Each decides for
/// itself whether the unit needs anything (a real manager skips inactive
/// units) and whether it may wait for the job.
pub trait ServiceManager {
    /// Learn the state of every unit about to be acted on, in one go (a
    /// real manager asks systemd once instead of once per unit).
    fn prepare(&mut self, units: &[&str]) -> Result<(), UnitError> {
        let _ = units;
        Ok(())
    }
    /// Start asking for the state of units the run may act on, at its
    /// start: [`ServiceManager::prepare`] uses the answers that cannot have
    /// gone stale by then and asks again for the others.
    fn prefetch(&mut self, units: &[&str]) {
        let _ = units;
    }
    fn daemon_reload(&mut self) -> Result<UnitAction, UnitError>;
    fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
    fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
    fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
}

/// Records what would be done; touches nothing (`--root`, `--no-restart`).
#[derive(Debug, Default)]
pub struct Recorder;

impl Recorder {
    fn record(unit: &str, action: &str) -> Result<UnitAction, UnitError> {
        Ok(UnitAction {
            unit: unit.to_string(),
            action: format!("would-{action}"),
            result: "recorded".into(),
        })
    }
}

impl ServiceManager for Recorder {
    fn daemon_reload(&mut self) -> Result<UnitAction, UnitError> {
        Recorder::record("", "daemon-reload")
    }
    fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "enable-start")
    }
    fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "restart")
    }
    fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "reload")
    }
}

/// Apply the unit half of the plan. `extra_restart` are units to restart
/// for changes outside the plan (ssh host keys). A unit both restarted and
/// reloaded is only restarted; a unit named twice is acted on once.
pub fn act(
    mgr: &mut dyn ServiceManager,
    plan: &Plan,
    extra_restart: &[String],
) -> Result<Vec<UnitAction>, UnitError> {
    let mut done = Vec::new();
    let step = |r: Result<UnitAction, UnitError>, done: &mut Vec<UnitAction>| match r {
        Ok(a) => {
            done.push(a);
            Ok(())
        }
        Err(mut e) => {
            e.done = std::mem::take(done);
            Err(e)
        }
    };
    if plan.daemon_reload {
        step(mgr.daemon_reload(), &mut done)?;
    }
    let restart = unique(plan.restart.iter().chain(extra_restart));
    let all = unique(
        plan.enable
            .iter()
            .chain(&plan.restart)
            .chain(extra_restart)
            .chain(&plan.reload),
    );
    if !all.is_empty() {
        if let Err(mut e) = mgr.prepare(&all) {
            e.done = std::mem::take(&mut done);
            return Err(e);
        }
    }
    for u in unique(plan.enable.iter()) {
        step(mgr.enable_start(u), &mut done)?;
    }
    for u in &restart {
        step(mgr.restart(u), &mut done)?;
    }
    for u in unique(plan.reload.iter()) {
        if !restart.contains(&u) {
            step(mgr.reload(u), &mut done)?;
        }
    }
    Ok(done)
}

fn unique<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !out.contains(&n.as_str()) {
            out.push(n);
        }
    }
    out
}

/// Whether the machine was booted with systemd (sd_booted(3)).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The units whose start jobs `imprint status --wait` and `cloud-init
/// status --wait` (the shim) wait for: the run, and the host keys made after
/// it (cloud-init's "done" includes the keys its ssh module makes).
pub const FIRST_BOOT_UNITS: [&str; 2] = [IMPRINT_UNIT, HOST_KEYS_UNIT];

/// The unit that runs `imprint host-keys` (units/imprint-host-keys.service).
pub const HOST_KEYS_UNIT: &str = "imprint-host-keys.service";

/// Whether systemd has a start job (waiting or running) for one of
/// [`FIRST_BOOT_UNITS`], asked only on a host booted with systemd (the
/// callers check [`booted`] and that the root is `/`): each unit's `Job`
/// over PID 1's private socket (root), else `systemctl list-jobs`. The
/// `--wait`s poll it every 100-250 ms while the boot they wait for runs:
/// a systemctl process per poll cost each 0.28-0.60 s of CPU over the
/// ~4 s of a VM first boot's wait under emulation, the socket 0.04-0.11 s
/// (docs/state.md).
pub fn first_boot_jobs_pending() -> bool {
    if let Some(pending) = first_boot_jobs_over_bus() {
        return pending;
    }
    systemctl_stdout(
        &["list-jobs", "--no-legend", "--no-pager"],
        &FIRST_BOOT_UNITS,
    )
    .is_some_and(|out| FIRST_BOOT_UNITS.iter().any(|u| out.contains(u)))
}

fn first_boot_jobs_over_bus() -> Option<bool> {
    let jobs = unit_jobs(
        &mut private_bus()?,
        &FIRST_BOOT_UNITS,
        Instant::now() + BUS_QUERY,
    )?;
    Some(jobs.iter().any(Option::is_some))
}

/// Each unit's job (its path), from the units' `Job` properties.
fn unit_jobs(b: &mut bus::Bus, units: &[&str], deadline: Instant) -> Option<Vec<Option<String>>> {
    let objects: Vec<_> = units
        .iter()
        .map(|u| (bus::unit_path(u), bus::UNIT_IFACE, &["Job"][..]))
        .collect();
    let props = b.get(&objects, deadline).ok()?;
    Some(props.iter().map(|p| job_of(p.get("Job")?)).collect())
}

/// How long a status query over the private socket may take.
const BUS_QUERY: Duration = Duration::from_secs(5);

/// A connection to PID 1's private socket (root only), or `None`.
fn private_bus() -> Option<bus::Bus> {
    bus::Bus::connect(Path::new(bus::PRIVATE_SOCKET), BUS_QUERY).ok()
}

/// `unit`'s `Result=` (`exit-code`, `timeout`, `signal`, ...) when systemd
/// holds it in the failed state, asked only on a host booted with systemd
/// (as [`first_boot_jobs_pending`]): its `ActiveState` and `Result` over
/// PID 1's private socket (root), else `systemctl show -p ActiveState -p
/// Result`. A unit that was never started, or was started again and
/// succeeded, is not failed.
pub fn failed_result(unit: &str) -> Option<String> {
    let (active, result) = match private_bus() {
        Some(mut b) => {
            let path = bus::unit_path(unit);
            let props = b
                .get(
                    &[
                        (path.clone(), bus::UNIT_IFACE, &["ActiveState"][..]),
                        (path, bus::SERVICE_IFACE, &["Result"][..]),
                    ],
                    Instant::now() + BUS_QUERY,
                )
                .ok()?;
            let text = |i: usize, k: &str| {
                props
                    .get(i)
                    .and_then(|p| p.get(k))
                    .and_then(bus::Value::to_text)
                    .unwrap_or_default()
            };
            (text(0, "ActiveState"), text(1, "Result"))
        }
        None => {
            let out = systemctl_stdout(&["show", "-p", "ActiveState", "-p", "Result"], &[unit])?;
            let props = parse_show(&out);
            let get = |k: &str| props.get(k).cloned().unwrap_or_default();
            (get("ActiveState"), get("Result"))
        }
    };
    (active == "failed").then_some(result)
}

/// When the calling process runs in a unit whose start job the start job
/// of imprint.service or imprint-host-keys.service waits for, directly or
/// through other jobs (they are ordered after it): that unit. A `status
/// --wait` there would wait for a job that waits for it, and the boot would
/// hang (cloud-init's `status --wait` has the same trap). Asked over PID
/// 1's private socket (root only); `None` when it cannot be asked, when
/// the caller runs in no service (a login session) or its unit has no job.
pub fn wait_would_deadlock() -> Option<String> {
    let me = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| unit_of_cgroup(&t))?;
    let deadline = Instant::now() + BUS_QUERY;
    let mut b = private_bus()?;
    let mut units = vec![me.as_str()];
    units.extend(FIRST_BOOT_UNITS);
    let jobs = unit_jobs(&mut b, &units, deadline)?;
    let (mine, firsts) = jobs.split_first()?;
    let mine = mine.as_deref()?;
    let starts: Vec<String> = firsts.iter().flatten().cloned().collect();
    // `Job.GetBefore()`: the pending jobs that must finish before this one
    // (`GetAfter()` is the other way round: the jobs waiting for it).
    let mut before = |job: &str| -> Vec<String> {
        b.call(job, JOB_IFACE, "GetBefore", &[], deadline)
            .ok()
            .and_then(|m| m.body.into_iter().next())
            .map(|v| job_paths(&v))
            .unwrap_or_default()
    };
    waits_for(&starts, mine, &mut before).then_some(me)
}

const JOB_IFACE: &str = "org.freedesktop.systemd1.Job";

/// Why a `status --wait` called from `unit` does not wait
/// ([`wait_would_deadlock`]).
pub fn wait_deadlock_message(unit: &str) -> String {
    format!(
        "not waiting: this process runs in {unit}, and the start of {IMPRINT_UNIT} or {HOST_KEYS_UNIT} waits for {unit}'s (they are ordered after it), so waiting here would hang the boot; order {unit} after {HOST_KEYS_UNIT} instead, or do not use --wait there"
    )
}

/// The job path in a unit's `Job` property (`(uo)`: id 0 is no job).
fn job_of(v: &bus::Value) -> Option<String> {
    let bus::Value::Struct(f) = (match v {
        bus::Value::Variant(inner) => inner.as_ref(),
        other => other,
    }) else {
        return None;
    };
    match f.as_slice() {
        [bus::Value::Uint(id), bus::Value::Str(path)] if *id != 0 => Some(path.clone()),
        _ => None,
    }
}

/// The job paths in `Job.GetBefore()`'s answer (`a(usssoo)`: id, unit,
/// type, state, job path, unit path).
fn job_paths(v: &bus::Value) -> Vec<String> {
    let bus::Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| match i {
            bus::Value::Struct(f) => f.get(4).and_then(bus::Value::as_str).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// Whether one of the jobs `starts` waits for `target`, directly or through
/// the jobs they wait for (`before`: the jobs a job waits for). At most
/// 1000 jobs are looked at.
pub fn waits_for(
    starts: &[String],
    target: &str,
    before: &mut dyn FnMut(&str) -> Vec<String>,
) -> bool {
    let mut seen: std::collections::BTreeSet<String> = starts.iter().cloned().collect();
    let mut queue: std::collections::VecDeque<String> = starts.iter().cloned().collect();
    while let Some(job) = queue.pop_front() {
        if seen.len() > 1000 {
            return false;
        }
        for next in before(&job) {
            if next == target {
                return true;
            }
            if seen.insert(next.clone()) {
                queue.push_back(next);
            }
        }
    }
    false
}

/// The standard output of the host's systemctl, or `None` when it cannot
/// be started. Its exit code is not looked at: callers read the output.
fn systemctl_stdout(args: &[&str], units: &[&str]) -> Option<String> {
    let systemctl = ["/usr/bin/systemctl", "/bin/systemctl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/bin/systemctl");
    std::process::Command::new(systemctl)
        .args(args)
        .args(units)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

// ------------------------------------------------------------ pure decisions

/// A unit's state, from `systemctl show -p Id -p LoadState -p ActiveState
/// -p SubState`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    /// The canonical name (aliases resolve to it).
    pub id: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// Its direct `After=` and `Before=`, implicit ones included.
    pub after: Vec<String>,
    pub before: Vec<String>,
}

impl UnitState {
    pub fn from_show(unit: &str, props: &BTreeMap<String, String>) -> UnitState {
        let get = |k: &str| props.get(k).cloned().unwrap_or_default();
        let list = |k: &str| get(k).split_whitespace().map(str::to_string).collect();
        let id = get("Id");
        UnitState {
            id: if id.is_empty() { unit.to_string() } else { id },
            load_state: get("LoadState"),
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            after: list("After"),
            before: list("Before"),
        }
    }
}

/// What the direct ordering tells about `unit` and `me` (the unit whose
/// start job imprint runs in): `Some(true)` the unit is ordered after it
/// (directly, or after a unit `me` is before, as default dependencies put
/// every service after `sysinit.target`); `Some(false)` it is ordered
/// before it (so it cannot be after it); `None`: only the whole `After=`
/// closure can tell.
pub fn direct_order(unit: &UnitState, me: &UnitState) -> Option<bool> {
    if unit
        .after
        .iter()
        .any(|a| *a == me.id || me.before.contains(a))
    {
        Some(true)
    } else if unit.before.contains(&me.id) || me.after.contains(&unit.id) {
        Some(false)
    } else {
        None
    }
}

/// What to do with one unit imprint would restart or reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do; the reason goes into the report.
    Skip(String),
    /// Enqueue without waiting: the job can only run after imprint's own.
    NoBlock,
    /// Run the job and wait for its result (bounded).
    Wait,
}

/// Decide for a restart or reload. `ordered_after_self`: the unit imprint
/// runs in, while its start job is running, is in the unit's `After=`
/// closure.
pub fn decide(state: &UnitState, ordered_after_self: bool) -> Decision {
    if state.load_state != "loaded" {
        let why = if state.load_state.is_empty() {
            "unknown to systemd"
        } else {
            state.load_state.as_str()
        };
        return Decision::Skip(format!("skipped ({why})"));
    }
    match state.active_state.as_str() {
        "active" | "reloading" | "activating" => {}
        "" => return Decision::Skip("skipped (inactive)".into()),
        other => return Decision::Skip(format!("skipped ({other})")),
    }
    if ordered_after_self {
        Decision::NoBlock
    } else {
        Decision::Wait
    }
}

/// Parse `systemctl show` output (`Key=value` lines).
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Parse `systemctl show` output for several units: one block of
/// `Key=value` lines per unit, in the order asked, separated by empty lines.
pub fn parse_show_many(text: &str) -> Vec<BTreeMap<String, String>> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(parse_show)
        .collect()
}

/// The properties of a unit's state.
const STATE_PROPS: [&str; 6] = [
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "After",
    "Before",
];

/// The unit names in `systemctl list-dependencies --plain` output (tree
/// indentation and status bullets removed; the first line is the unit
/// itself).
pub fn parse_dependency_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            // Tree glyphs and bullets are not ASCII; unit names are (`-.mount`
            // included).
            l.split_whitespace()
                .find(|w| w.is_ascii() && w.contains('.'))
                .map(str::to_string)
        })
        .collect()
}

/// The unit a process runs in, from `/proc/self/cgroup` text (v1 or v2):
/// the innermost `*.service` component of its cgroup path.
pub fn unit_of_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter_map(|path| {
            path.rsplit('/')
                .find(|c| c.ends_with(".service"))
                .map(str::to_string)
        })
        .next()
}

// ------------------------------------------------------------- real systemd

/// How long one waited job may take, and all of them together.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);
pub const UNITS_BUDGET: Duration = Duration::from_secs(45);
/// The key under which a prefetched answer carries the name it was asked by.
const EARLY_NAME: &str = " asked as";

/// How long a query (`show`, `list-dependencies`, `--no-block`) may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The real service manager: `systemctl` as a subprocess.
#[derive(Debug)]
pub struct Systemctl {
    path: PathBuf,
    job_timeout: Duration,
    budget: Duration,
    deadline: Option<Instant>,
    /// The unit imprint runs in: `None` until known (read from
    /// `/proc/self/cgroup` on first use), `Some(None)` when not in a service.
    self_unit: Option<Option<String>>,
    /// `None` until asked: the self unit's state when its start job is
    /// running (`ActiveState=activating`), the only case where waiting can
    /// deadlock.
    self_job: Option<Option<UnitState>>,
    /// Canonical ids already acted on, with the name used.
    handled: BTreeMap<String, String>,
    /// States learnt by [`ServiceManager::prepare`], by the name asked.
    states: BTreeMap<String, UnitState>,
    /// Not booted with systemd: every action is skipped.
    offline: bool,
    /// Where the generator's drop-ins are (`/run/systemd/generator` when
    /// imprint runs as a service): see [`Systemctl::not_started_yet`].
    generator_dir: Option<PathBuf>,
    /// The connection to PID 1's private socket, used for the state query
    /// and the jobs when it can be had; `systemctl` otherwise.
    bus: BusState,
    /// The state query sent by [`ServiceManager::prefetch`]: a thread that
    /// connects and sends the `Get`s while the run's stages go on.
    early: Option<Early>,
    /// Its answers, by the name asked, once collected.
    early_states: BTreeMap<String, UnitState>,
    /// A `daemon-reload` was done: answers from before it are stale.
    reloaded: bool,
}

/// The prefetch thread: the connection and every unit's properties.
type Early = std::thread::JoinHandle<Result<(bus::Bus, Vec<Props>), bus::BusError>>;
type Props = BTreeMap<String, String>;

/// Whether imprint talks to PID 1 directly.
#[derive(Debug)]
enum BusState {
    /// Never (a `systemctl` given by path: the protocol tests).
    Off,
    /// Not tried yet: connect on first use.
    Untried(PathBuf),
    Up(bus::Bus),
    /// Tried and failed, or broken since: `systemctl` from now on.
    Down,
}

/// One finished (or killed) `systemctl` run.
#[derive(Debug)]
struct Ran {
    /// `None`: killed at the deadline.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// What went wrong, for an error message.
    fn why(&self, what: &str, timeout: Duration) -> String {
        match self.status {
            None => no_result(timeout),
            Some(s) => {
                let err = self.stderr.trim();
                if err.is_empty() {
                    format!("`systemctl {what}` exited with {s}")
                } else {
                    err.replace('\n', " ")
                }
            }
        }
    }
}

/// A waited job without a result at its deadline.
fn no_result(timeout: Duration) -> String {
    format!(
        "no result after {} (the job stays queued in systemd; imprint did \
         not seal, so the next boot checks again)",
        seconds(timeout)
    )
}

/// `30 s`, `0.3 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl::new()
    }
}

impl Systemctl {
    /// The machine's systemctl (`/usr/bin/systemctl`, else
    /// `/bin/systemctl`). When the machine was not booted with systemd
    /// every action is skipped and says so.
    pub fn new() -> Systemctl {
        let path = ["/usr/bin/systemctl", "/bin/systemctl"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("/usr/bin/systemctl"));
        let mut s = Systemctl::with_path(path);
        s.offline = !booted();
        if !s.offline {
            s.bus = BusState::Untried(PathBuf::from(bus::PRIVATE_SOCKET));
            // systemd sets INVOCATION_ID for the processes of a service.
            if std::env::var_os("INVOCATION_ID").is_some() {
                s.generator_dir = Some(PathBuf::from("/run/systemd/generator"));
            }
        }
        s
    }

    /// Talk to PID 1 over this socket instead of running `systemctl` for
    /// the state query and the jobs (tests point it at a stand-in; a socket
    /// that cannot be reached means `systemctl`).
    pub fn with_bus(mut self, socket: impl Into<PathBuf>) -> Systemctl {
        self.bus = BusState::Untried(socket.into());
        self
    }

    /// A systemctl at `path` (protocol tests point this at a script).
    pub fn with_path(path: impl Into<PathBuf>) -> Systemctl {
        Systemctl {
            path: path.into(),
            job_timeout: JOB_TIMEOUT,
            budget: UNITS_BUDGET,
            deadline: None,
            self_unit: None,
            self_job: None,
            handled: BTreeMap::new(),
            states: BTreeMap::new(),
            offline: false,
            generator_dir: None,
            bus: BusState::Off,
            early: None,
            early_states: BTreeMap::new(),
            reloaded: false,
        }
    }

    /// Say which unit imprint runs in instead of reading
    /// `/proc/self/cgroup` (`None`: not in a service).
    pub fn self_unit(mut self, unit: Option<&str>) -> Systemctl {
        self.self_unit = Some(unit.map(str::to_string));
        self
    }

    /// Read the generator's drop-ins from `dir` (tests; the real one is
    /// `/run/systemd/generator`, used when imprint runs as a service).
    pub fn generator_dir(mut self, dir: impl Into<PathBuf>) -> Systemctl {
        self.generator_dir = Some(dir.into());
        self
    }

    /// Set the wait for one job and for all of them together.
    pub fn timeouts(mut self, job: Duration, budget: Duration) -> Systemctl {
        self.job_timeout = job;
        self.budget = budget;
        self
    }

    /// The connection to PID 1, connecting on first use.
    fn bus(&mut self) -> Option<&mut bus::Bus> {
        self.collect_early();
        if let BusState::Untried(p) = &self.bus {
            let p = p.clone();
            self.bus = match bus::Bus::connect(&p, QUERY_TIMEOUT) {
                Ok(b) => {
                    tracing::debug!("talking to systemd over {}", p.display());
                    BusState::Up(b)
                }
                Err(e) => {
                    tracing::debug!(
                        "not talking to systemd over {}: {e}; running {} instead",
                        p.display(),
                        self.path.display()
                    );
                    BusState::Down
                }
            };
        }
        match &mut self.bus {
            BusState::Up(b) => Some(b),
            _ => None,
        }
    }

    /// Wait for the prefetch thread, if there is one: its connection
    /// becomes the connection, its answers `early_states`. A failure there
    /// is a failure of the bus (`systemctl` from now on), as it would have
    /// been here.
    fn collect_early(&mut self) {
        let Some(h) = self.early.take() else { return };
        let t = Instant::now();
        match h.join() {
            Ok(Ok((b, answers))) => {
                tracing::debug!(
                    "state of {} units asked ahead, waited {} us for it",
                    answers.len(),
                    t.elapsed().as_micros()
                );
                for props in answers {
                    if let Some(name) = props.get(EARLY_NAME) {
                        let st = UnitState::from_show(name, &props);
                        self.early_states.insert(name.clone(), st);
                    }
                }
                if matches!(self.bus, BusState::Untried(_)) {
                    self.bus = BusState::Up(b);
                }
            }
            Ok(Err(e)) => {
                tracing::debug!("not talking to systemd: {e}; running systemctl instead");
                self.bus = BusState::Down;
            }
            Err(_) => self.bus = BusState::Down,
        }
    }

    /// The state of `names` from `bus` (a `Get` of each property, all sent
    /// at once), as `systemctl show` would print the same properties.
    fn ask(b: &mut bus::Bus, names: &[&str]) -> Result<Vec<Props>, bus::BusError> {
        let objects: Vec<(String, &str, &[&str])> = names
            .iter()
            .map(|n| (bus::unit_path(n), bus::UNIT_IFACE, &STATE_PROPS[..]))
            .collect();
        let all = b.get(&objects, Instant::now() + QUERY_TIMEOUT)?;
        Ok(all
            .iter()
            .map(|props| {
                props
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.to_text()?)))
                    .collect()
            })
            .collect())
    }

    /// The state of `names` from PID 1. `None`: the bus is not there or
    /// failed (then `systemctl` asks).
    fn show_over_bus(&mut self, names: &[&str]) -> Option<Vec<Props>> {
        let b = self.bus()?;
        let t = Instant::now();
        let answers = Systemctl::ask(b, names);
        tracing::debug!(
            "state of {} units from systemd in {} us",
            names.len(),
            t.elapsed().as_micros()
        );
        match answers {
            Ok(all) => Some(all),
            Err(e) => {
                tracing::warn!(
                    "failed to read the state of {} from systemd: {e}; asking systemctl",
                    names.join(" ")
                );
                self.bus = BusState::Down;
                None
            }
        }
    }

    /// Run `verb` on `unit` over the bus: `None` when there is no bus (the
    /// caller runs `systemctl`). Once a job may have been sent, a failure
    /// is the unit's error, never a second try.
    fn job_over_bus(
        &mut self,
        unit: &str,
        action: &str,
        verb: &str,
        block: bool,
    ) -> Option<Result<String, UnitError>> {
        let member = match verb {
            "restart" => "RestartUnit",
            "reload" => "ReloadUnit",
            "start" => "StartUnit",
            _ => return None,
        };
        self.bus()?;
        let timeout = if block {
            match self.wait_for(unit, action) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            }
        } else {
            QUERY_TIMEOUT
        };
        let t = Instant::now();
        let deadline = t + timeout;
        let b = self.bus()?;
        let sent = b.call(
            bus::MANAGER_PATH,
            bus::MANAGER,
            member,
            &[unit, "replace"],
            deadline,
        );
        let job = match sent {
            Ok(m) => m
                .body
                .first()
                .and_then(bus::Value::as_str)
                .unwrap_or_default()
                .to_string(),
            Err(e) => return Some(Err(self.bus_failed(unit, action, member, e, timeout))),
        };
        if !block {
            return Some(Ok(
                "queued (ordered after imprint; runs when it is done)".into()
            ));
        }
        let result = match b.wait_job(&job, deadline) {
            Ok(r) => r,
            Err(e) => return Some(Err(self.bus_failed(unit, action, member, e, timeout))),
        };
        tracing::debug!(
            "{member} {unit}: job {job} {result} in {} us",
            t.elapsed().as_micros()
        );
        // What `systemctl` counts as success.
        if result == "done" || result == "skipped" {
            return Some(Ok("done".into()));
        }
        let path = bus::unit_path(unit);
        let objects: [(String, &str, &[&str]); 2] = [
            (
                path.clone(),
                bus::SERVICE_IFACE,
                &["Result", "ExecMainStatus"],
            ),
            (path, bus::UNIT_IFACE, &["ActiveState", "SubState"]),
        ];
        let state = b
            .get(&objects, Instant::now() + QUERY_TIMEOUT)
            .unwrap_or_default()
            .into_iter()
            .fold(BTreeMap::new(), |mut all, p| {
                all.extend(p);
                all
            });
        let state = ["Result", "ActiveState", "SubState", "ExecMainStatus"]
            .iter()
            .filter_map(|k| Some(format!("{k}={}", state.get(*k)?.to_text()?)))
            .collect::<Vec<_>>()
            .join(" ");
        Some(Err(self.fail(
            unit,
            action,
            format!(
                "job for {unit} finished with result '{result}' ({state}); see `systemctl status {unit}` \
                 and `journalctl -u {unit}`"
            ),
        )))
    }

    /// A bus failure during a job: the connection is not used again.
    fn bus_failed(
        &mut self,
        unit: &str,
        action: &str,
        member: &str,
        e: bus::BusError,
        timeout: Duration,
    ) -> UnitError {
        let message = match e {
            bus::BusError::Remote { message, name } => format!("{message} ({name})"),
            bus::BusError::Timeout => {
                self.bus = BusState::Down;
                no_result(timeout)
            }
            e => {
                self.bus = BusState::Down;
                format!("failed to ask systemd ({member}): {e}")
            }
        };
        self.fail(unit, action, message)
    }

    /// Run systemctl with `args`, killing it after `timeout`.
    fn exec(&self, args: &[&str], timeout: Duration) -> std::io::Result<Ran> {
        tracing::debug!("running {} {}", self.path.display(), args.join(" "));
        use std::os::unix::process::CommandExt;
        // Its own process group, so a deadline kills anything it started too
        // (nothing may keep the output pipes open).
        let mut child = Command::new(&self.path)
            .process_group(0)
            .args(args)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut s);
                }
                String::from_utf8_lossy(&s).into_owned()
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        // A thread waits for the exit, so it is seen at once (no polling
        // interval added to every call); the deadline kills the group.
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(timeout) {
            Ok(r) => Some(r?),
            Err(_) => {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                None
            }
        };
        let _ = waiter.join();
        Ok(Ran {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    fn run(
        &self,
        unit: &str,
        action: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Ran, UnitError> {
        self.exec(args, timeout).map_err(|e| UnitError {
            unit: unit.to_string(),
            action: action.to_string(),
            message: format!("failed to run {}: {e}", self.path.display()),
            done: Vec::new(),
        })
    }

    /// `systemctl show -p P... -- UNIT` as a map.
    fn show(
        &self,
        unit: &str,
        action: &str,
        props: &[&str],
    ) -> Result<BTreeMap<String, String>, UnitError> {
        let mut args = vec!["show"];
        for p in props {
            args.push("-p");
            args.push(p);
        }
        args.extend(["--", unit]);
        let r = self.run(unit, action, &args, QUERY_TIMEOUT)?;
        if !r.ok() {
            return Err(self.fail(unit, action, r.why("show", QUERY_TIMEOUT)));
        }
        Ok(parse_show(&r.stdout))
    }

    fn fail(&self, unit: &str, action: &str, message: String) -> UnitError {
        UnitError {
            unit: unit.to_string(),
            action: action.to_string(),
            message,
            done: Vec::new(),
        }
    }

    /// The unit imprint runs in (`/proc/self/cgroup`), if any.
    fn own_unit(&mut self) -> Option<String> {
        if self.self_unit.is_none() {
            self.self_unit = Some(
                std::fs::read_to_string("/proc/self/cgroup")
                    .ok()
                    .and_then(|t| unit_of_cgroup(&t)),
            );
        }
        self.self_unit.clone().flatten()
    }

    /// Whether `unit` cannot have started yet, known without asking PID 1:
    /// imprint runs in its own unit (the cgroup says which), a oneshot
    /// (units/imprint.service, SPEC §5) whose start job runs as long as
    /// imprint does, and the generator's drop-in orders `unit` after that
    /// unit (the generator ran before systemd loaded any unit, so every job
    /// for `unit` waits for imprint's). Such a unit starts later, with the
    /// final config: there is nothing to restart or reload, and a start
    /// needs no wait. Not after a `daemon-reload` of this run (the unit may
    /// have been ordered otherwise, and running, before it). At boot PID 1
    /// answers a state query late (0.1-1.8 s under emulation,
    /// docs/benchmarks.md): this needs one small read.
    fn not_started_yet(&mut self, unit: &str) -> bool {
        if self.reloaded || self.offline {
            return false;
        }
        let Some(dir) = &self.generator_dir else {
            return false;
        };
        let dropin = dir.join(format!("{unit}.d")).join(crate::generator::DROPIN);
        let Ok(text) = std::fs::read_to_string(dropin) else {
            return false;
        };
        let Some(me) = self.own_unit() else {
            return false;
        };
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("After="))
            .any(|v| v.split_whitespace().any(|u| u == me))
    }

    /// The units PID 1 has to be asked about: all but those known
    /// [not started yet](Systemctl::not_started_yet).
    fn units_to_ask<'a>(&mut self, units: &[&'a str]) -> Vec<&'a str> {
        let mut ask = Vec::new();
        for u in units {
            if !self.not_started_yet(u) {
                ask.push(*u);
            }
        }
        ask
    }

    /// Keep the answers asked for ahead that cannot have gone stale, and
    /// return the units to ask about again. An answer holds when the unit
    /// was not active and is ordered after the unit imprint runs in, whose
    /// start job was running: any job for the unit waits for that one, so
    /// the unit cannot have started since. Nothing holds after a
    /// `daemon-reload` (unit files and ordering may have changed).
    fn use_early<'a>(&mut self, me: Option<&str>, units: &[&'a str]) -> Vec<&'a str> {
        // Taken for the loop and put back: a later `prepare` (the ssh unit,
        // after the host keys) uses them too.
        let early = std::mem::take(&mut self.early_states);
        let ask = self.use_answers(&early, me, units);
        self.early_states = early;
        ask
    }

    fn use_answers<'a>(
        &mut self,
        early: &BTreeMap<String, UnitState>,
        me: Option<&str>,
        units: &[&'a str],
    ) -> Vec<&'a str> {
        let me_job = me
            .and_then(|m| early.get(m))
            .filter(|st| st.active_state == "activating" && !self.reloaded);
        let Some(me_job) = me_job else {
            return units.to_vec();
        };
        if self.self_job.is_none() {
            self.self_job = Some(Some(me_job.clone()));
        }
        let mut ask = Vec::new();
        for u in units {
            match early.get(*u) {
                Some(st)
                    if !matches!(
                        st.active_state.as_str(),
                        "active" | "reloading" | "activating"
                    ) && direct_order(st, me_job) == Some(true) =>
                {
                    self.states.insert(u.to_string(), st.clone());
                }
                _ => ask.push(*u),
            }
        }
        ask
    }

    /// The unit whose start job imprint runs in, if that job is running.
    fn self_job(&mut self, action: &str) -> Result<Option<UnitState>, UnitError> {
        if let Some(j) = &self.self_job {
            return Ok(j.clone());
        }
        let job = match self.own_unit() {
            Some(u) => {
                let st = UnitState::from_show(&u, &self.show(&u, action, &STATE_PROPS)?);
                (st.active_state == "activating").then_some(st)
            }
            None => None,
        };
        self.self_job = Some(job.clone());
        Ok(job)
    }

    /// Whether a job for `unit` would wait for imprint's own start job.
    /// The direct ordering answers most cases; otherwise the unit's whole
    /// `After=` closure is asked for, and when even that fails the answer is
    /// "yes": not waiting can only cost the job's result, waiting can cost
    /// the boot.
    fn ordered_after_self(
        &mut self,
        unit: &str,
        action: &str,
        state: Option<&UnitState>,
    ) -> Result<bool, UnitError> {
        let Some(me) = self.self_job(action)? else {
            return Ok(false);
        };
        if let Some(known) = state.and_then(|st| direct_order(st, &me)) {
            return Ok(known);
        }
        let args = [
            "list-dependencies",
            "--after",
            "--all",
            "--plain",
            "--",
            unit,
        ];
        match self.exec(&args, QUERY_TIMEOUT) {
            Ok(r) if r.ok() => Ok(parse_dependency_list(&r.stdout)
                .iter()
                .skip(1)
                .any(|u| *u == me.id)),
            Ok(r) => {
                tracing::warn!(
                    "could not tell whether {unit} is ordered after {}: {}; not waiting for its job",
                    me.id,
                    r.why("list-dependencies", QUERY_TIMEOUT)
                );
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(
                    "could not tell whether {unit} is ordered after {}: failed to run {}: {e}; \
                     not waiting for its job",
                    me.id,
                    self.path.display()
                );
                Ok(true)
            }
        }
    }

    /// The wait left for the next job, or an error when the budget is spent.
    fn wait_for(&mut self, unit: &str, action: &str) -> Result<Duration, UnitError> {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.budget);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.fail(
                unit,
                action,
                format!(
                    "the {} budget for unit jobs is spent; not waiting (not sealed: the next boot checks again)",
                    seconds(self.budget)
                ),
            ));
        }
        Ok(left.min(self.job_timeout))
    }

    /// Run `verb` on `unit` (waited or `--no-block`) and say how it went.
    fn job(
        &mut self,
        unit: &str,
        action: &str,
        verb: &str,
        block: bool,
    ) -> Result<String, UnitError> {
        if let Some(r) = self.job_over_bus(unit, action, verb, block) {
            return r;
        }
        if !block {
            let r = self.run(
                unit,
                action,
                &[verb, "--no-block", "--", unit],
                QUERY_TIMEOUT,
            )?;
            if !r.ok() {
                return Err(self.fail(unit, action, r.why(verb, QUERY_TIMEOUT)));
            }
            return Ok("queued (ordered after imprint; runs when it is done)".into());
        }
        let timeout = self.wait_for(unit, action)?;
        let r = self.run(unit, action, &[verb, "--", unit], timeout)?;
        if r.status.is_none() {
            return Err(self.fail(unit, action, r.why(verb, timeout)));
        }
        // A blocking `systemctl VERB` exits 0 only when its job's result is
        // `done`: that is the result. Only a failure needs the unit's state,
        // for the message.
        if r.ok() {
            return Ok("done".into());
        }
        let props = ["Result", "ActiveState", "SubState", "ExecMainStatus"];
        let state = match self.show(unit, action, &props) {
            Ok(p) => props
                .iter()
                .filter_map(|k| p.get(*k).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => e.message,
        };
        Err(self.fail(unit, action, format!("{} ({state})", r.why(verb, timeout))))
    }

    /// Restart or reload `unit` if it is active.
    fn act_on(&mut self, unit: &str, verb: &str) -> Result<UnitAction, UnitError> {
        let action = |result: String| UnitAction {
            unit: unit.to_string(),
            action: verb.to_string(),
            result,
        };
        if self.offline {
            return Ok(action("skipped (systemd is not running)".into()));
        }
        if self.not_started_yet(unit) {
            return Ok(action(format!(
                "skipped (not started yet: ordered after {}, it starts with the final config)",
                self.own_unit().unwrap_or_default()
            )));
        }
        let state = match self.states.get(unit) {
            Some(st) => st.clone(),
            None => UnitState::from_show(unit, &self.show(unit, verb, &STATE_PROPS)?),
        };
        if let Some(first) = self.handled.get(&state.id) {
            return Ok(action(format!("skipped (same unit as {first})")));
        }
        // Only an active unit needs (and gets) the ordering question.
        if let Decision::Skip(why) = decide(&state, false) {
            return Ok(action(why));
        }
        let after = self.ordered_after_self(unit, verb, Some(&state))?;
        let block = decide(&state, after) == Decision::Wait;
        let result = self.job(unit, verb, verb, block)?;
        self.handled.insert(state.id, unit.to_string());
        Ok(action(result))
    }
}

impl ServiceManager for Systemctl {
    /// One `systemctl show` for every unit (and the unit imprint runs in):
    /// each `systemctl` costs an exec, which is slow early in boot.
    fn prepare(&mut self, units: &[&str]) -> Result<(), UnitError> {
        if self.offline || units.is_empty() {
            return Ok(());
        }
        let open = self.units_to_ask(units);
        if open.is_empty() {
            return Ok(());
        }
        let me = self.own_unit();
        self.collect_early();
        let units = self.use_early(me.as_deref(), &open);
        if units.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = units.to_vec();
        if let Some(m) = me.as_deref() {
            if self.self_job.is_none() && !names.contains(&m) {
                names.push(m);
            }
        }
        let blocks = match self.show_over_bus(&names) {
            Some(b) => b,
            None => {
                let mut args = vec!["show"];
                for p in STATE_PROPS {
                    args.extend(["-p", p]);
                }
                args.push("--");
                args.extend(names.iter().copied());
                let first = units[0];
                let r = self.run(first, "show", &args, QUERY_TIMEOUT)?;
                if !r.ok() {
                    return Err(self.fail(first, "show", r.why("show", QUERY_TIMEOUT)));
                }
                parse_show_many(&r.stdout)
            }
        };
        if blocks.len() != names.len() {
            // Not the shape expected: ask unit by unit instead.
            return Ok(());
        }
        for (n, props) in names.iter().zip(blocks) {
            let st = UnitState::from_show(n, &props);
            if Some(*n) == me.as_deref() && self.self_job.is_none() {
                self.self_job = Some((st.active_state == "activating").then(|| st.clone()));
            }
            self.states.insert(n.to_string(), st);
        }
        Ok(())
    }

    /// Ask for the state of `units` (and of the unit imprint runs in) now,
    /// on a thread, over a connection of its own that `prepare` then keeps.
    fn prefetch(&mut self, units: &[&str]) {
        let BusState::Untried(path) = &self.bus else {
            return;
        };
        if self.offline || units.is_empty() || self.early.is_some() {
            return;
        }
        let path = path.clone();
        let mut names: Vec<String> = self
            .units_to_ask(units)
            .iter()
            .map(|u| u.to_string())
            .collect();
        if names.is_empty() {
            return;
        }
        if let Some(me) = self.own_unit() {
            if !names.contains(&me) {
                names.push(me);
            }
        }
        self.early = Some(std::thread::spawn(move || {
            let mut b = bus::Bus::connect(&path, QUERY_TIMEOUT)?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut all = Systemctl::ask(&mut b, &refs)?;
            for (props, n) in all.iter_mut().zip(&names) {
                props.insert(EARLY_NAME.into(), n.clone());
            }
            Ok((b, all))
        }));
    }

    fn daemon_reload(&mut self) -> Result<UnitAction, UnitError> {
        let action = |result: &str| UnitAction {
            unit: String::new(),
            action: "daemon-reload".into(),
            result: result.into(),
        };
        if self.offline {
            return Ok(action("skipped (systemd is not running)"));
        }
        self.reloaded = true;
        let timeout = self.wait_for("", "daemon-reload")?;
        let r = self.run("", "daemon-reload", &["daemon-reload"], timeout)?;
        if !r.ok() {
            return Err(self.fail("", "daemon-reload", r.why("daemon-reload", timeout)));
        }
        Ok(action("done"))
    }

    fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        let action = |result: String| UnitAction {
            unit: unit.to_string(),
            action: "enable-start".into(),
            result,
        };
        if self.offline {
            return Ok(action("skipped (systemd is not running)".into()));
        }
        // --no-reload: the links are for the next boots; this boot gets the
        // explicit start below. A reload here would rerun every generator
        // and reload every unit in the middle of the boot (seconds).
        let timeout = self.wait_for(unit, "enable")?;
        let r = self.run(
            unit,
            "enable",
            &["enable", "--no-reload", "--", unit],
            timeout,
        )?;
        if !r.ok() {
            return Err(self.fail(unit, "enable", r.why("enable", timeout)));
        }
        let state = self.states.get(unit).cloned();
        let block = !self.not_started_yet(unit)
            && !self.ordered_after_self(unit, "start", state.as_ref())?;
        let result = self.job(unit, "start", "start", block)?;
        Ok(action(result))
    }

    fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        self.act_on(unit, "restart")
    }

    fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        self.act_on(unit, "reload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_deadlocks_only_when_a_first_boot_job_waits_for_the_callers() {
        // imprint (job 1) waits for 2 and 3; 3 waits for 4; 5 waits for
        // nothing; 4 waits for 1 (a cycle must not loop).
        let graph: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            ("/j/1", vec!["/j/2", "/j/3"]),
            ("/j/3", vec!["/j/4"]),
            ("/j/4", vec!["/j/1"]),
        ]);
        let asked = std::cell::RefCell::new(Vec::new());
        let mut after = |j: &str| {
            asked.borrow_mut().push(j.to_string());
            graph
                .get(j)
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        };
        let starts = ["/j/1".to_string()];
        assert!(waits_for(&starts, "/j/4", &mut after));
        assert!(waits_for(&starts, "/j/2", &mut after));
        assert!(!waits_for(&starts, "/j/5", &mut after));
        assert!(!waits_for(&[], "/j/4", &mut after));
        // Each job asked once per search, the cycle included.
        asked.borrow_mut().clear();
        assert!(!waits_for(&starts, "/j/9", &mut after));
        assert_eq!(*asked.borrow(), ["/j/1", "/j/2", "/j/3", "/j/4"]);
    }

    #[test]
    fn jobs_from_systemds_answers() {
        use bus::Value::{Array, Str, Struct, Uint, Variant};
        let job = Variant(Box::new(Struct(vec![
            Uint(17),
            Str("/org/freedesktop/systemd1/job/17".into()),
        ])));
        assert_eq!(
            job_of(&job).as_deref(),
            Some("/org/freedesktop/systemd1/job/17")
        );
        let none = Variant(Box::new(Struct(vec![Uint(0), Str("/".into())])));
        assert_eq!(job_of(&none), None);
        let after = Array(vec![Struct(vec![
            Uint(12),
            Str("early.service".into()),
            Str("start".into()),
            Str("running".into()),
            Str("/org/freedesktop/systemd1/job/12".into()),
            Str("/org/freedesktop/systemd1/unit/early_2eservice".into()),
        ])]);
        assert_eq!(job_paths(&after), ["/org/freedesktop/systemd1/job/12"]);
    }

    fn state(load: &str, active: &str) -> UnitState {
        UnitState {
            id: "x.service".into(),
            load_state: load.into(),
            active_state: active.into(),
            ..UnitState::default()
        }
    }

    fn ordered(id: &str, after: &str, before: &str) -> UnitState {
        UnitState {
            id: id.into(),
            after: after.split_whitespace().map(str::to_string).collect(),
            before: before.split_whitespace().map(str::to_string).collect(),
            ..UnitState::default()
        }
    }

    #[test]
    fn direct_ordering() {
        let me = ordered(
            "imprint.service",
            "local-fs.target systemd-journald.socket",
            "sysinit.target shutdown.target",
        );
        // Default dependencies: after sysinit.target, which imprint is before.
        let app = ordered(
            "app.service",
            "sysinit.target basic.target",
            "shutdown.target",
        );
        assert_eq!(direct_order(&app, &me), Some(true));
        let gen = ordered("x.service", "imprint.service", "");
        assert_eq!(direct_order(&gen, &me), Some(true));
        let early = ordered("early.service", "local-fs.target", "imprint.service");
        assert_eq!(direct_order(&early, &me), Some(false));
        let fs = ordered("local-fs.target", "", "");
        assert_eq!(direct_order(&fs, &me), Some(false));
        let free = ordered("worker.service", "system.slice", "shutdown.target");
        assert_eq!(direct_order(&free, &me), None);
    }

    #[test]
    fn decide_skips_what_is_not_running() {
        assert_eq!(
            decide(&state("loaded", "inactive"), false),
            Decision::Skip("skipped (inactive)".into())
        );
        assert_eq!(
            decide(&state("loaded", "failed"), true),
            Decision::Skip("skipped (failed)".into())
        );
        assert_eq!(
            decide(&state("not-found", "inactive"), false),
            Decision::Skip("skipped (not-found)".into())
        );
        assert_eq!(
            decide(&state("masked", "inactive"), false),
            Decision::Skip("skipped (masked)".into())
        );
    }

    #[test]
    fn decide_never_waits_behind_imprint() {
        for a in ["active", "activating", "reloading"] {
            assert_eq!(decide(&state("loaded", a), true), Decision::NoBlock);
            assert_eq!(decide(&state("loaded", a), false), Decision::Wait);
        }
    }

    #[test]
    fn cgroup_names_the_unit() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/imprint.service\n").as_deref(),
            Some("imprint.service")
        );
        let v1 =
            "12:pids:/system.slice/imprint.service\n1:name=systemd:/system.slice/imprint.service\n";
        assert_eq!(unit_of_cgroup(v1).as_deref(), Some("imprint.service"));
        assert_eq!(
            unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(unit_of_cgroup("0::/\n"), None);
    }
}
