//! Stage 10, report: one structured summary to the log and
//! `/var/lib/imprint/report.json` for `imprint status` (SPEC §1.10).
//! Never holds a secret: the pipeline builds it from paths, unit names and
//! error text masked with every secret it knows; [`write`] checks once more
//! and refuses to store text that still holds a known secret.
//!
//! `imprint status` reads the report and the seal (and probes the run lock):
//! exit 0 when the last run is done (or nothing ran yet, or a run is in
//! progress), 1 when the last run failed; `--wait` polls the lock until no
//! run holds it. "Not run yet" is 0, as `cloud-init status` does: status
//! answers "did something fail?", and a fresh image has not failed.

use crate::error::ExitCode;
use crate::root::Root;
use crate::secret::Secrets;
use crate::state::{self, StateError};

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageReport {
    pub stage: String,
    /// When the stage began, in ms after `main`'s entry
    /// ([`Report::main_monotonic_ms`]).
    #[serde(default)]
    pub start_ms: f64,
    pub duration_ms: f64,
    /// `ok`, or the (masked) error.
    pub outcome: String,
}

/// The last run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub version: String,
    pub command: String,
    /// `done`, `sealed`, `failed`, `applied-unit-failed`.
    pub status: String,
    pub exit_code: i32,
    pub instance_id: Option<String>,
    pub datasource: Option<String>,
    pub started: String,
    pub stages: Vec<StageReport>,
    pub files_written: Vec<String>,
    pub files_unchanged: Vec<String>,
    pub units: Vec<crate::systemd::UnitAction>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// CLOCK_MONOTONIC at `main`'s entry, in ms: the clock of systemd's
    /// `*TimestampMonotonic` unit properties (in µs), so that a unit's time
    /// (`InactiveExit` to `ActiveEnter`) can be split into PID 1's fork and
    /// the exec until `main`, `main` until the first stage (each stage has
    /// its `start_ms`), the stages and the gaps between them, the last stage
    /// until this report (`report_ms`), and the rest (writing and logging
    /// the report, exit, PID 1 noticing it). tests/vm/run.sh --perf prints
    /// that split. 0 in reports of older versions. (Two plain fields, not a
    /// struct: each struct costs the binary its own deserializer.)
    #[serde(default)]
    pub main_monotonic_ms: f64,
    /// When this report was built, in ms after `main`'s entry.
    #[serde(default)]
    pub report_ms: f64,
    /// The kernel's boot_id when the run ran (`None` where the root has no
    /// `/proc`, as under most `--root`s): `imprint host-keys` trusts only a
    /// report of the boot it runs in (src/hostkeys.rs, [`this_boot`]).
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// The root's kernel boot_id (`/proc/sys/kernel/random/boot_id`), if any.
pub fn boot_id(root: &Root) -> Option<String> {
    let text = std::fs::read_to_string(root.join("proc/sys/kernel/random/boot_id")).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The last report, if it is of an `imprint run` in this boot (the same
/// boot_id): what `imprint host-keys` may act on. A report of another boot,
/// one without a boot_id, or one that cannot be read is not.
pub fn this_boot(root: &Root) -> Option<Report> {
    let now = boot_id(root)?;
    let report = read(root).ok().flatten()?;
    (report.command == "run" && report.boot_id.as_deref() == Some(now.as_str())).then_some(report)
}

/// On the host booted with systemd: why this boot's run left no report,
/// when imprint.service failed in this boot and report.json is not of this
/// boot: the run was killed (a signal, its `TimeoutStartSec=`), crashed,
/// could not write the report, or failed on a sealed root before apply
/// (which keeps the report: src/app.rs). `None` under `--root`, where no
/// unit runs, and when the failed run did write its report (which then
/// says why).
pub fn run_died(root: &Root) -> Option<String> {
    if !root.is_host() || !crate::systemd::booted() {
        return None;
    }
    let result = crate::systemd::failed_result(crate::systemd::IMPRINT_UNIT)?;
    this_boot(root).is_none().then(|| run_died_message(&result))
}

/// What [`run_died`] says, from imprint.service's `Result=`.
pub fn run_died_message(result: &str) -> String {
    let unit = crate::systemd::IMPRINT_UNIT;
    let result = if result.is_empty() { "failed" } else { result };
    format!(
        "{unit} failed ({result}) before its run wrote a report: it was killed (a signal, or its TimeoutStartSec=), crashed, could not write {}, or failed before changing a sealed instance (whose report is kept); `journalctl -b -u {unit}` says which",
        crate::state::dir(&Root::host()).join(FILE).display()
    )
}

/// CLOCK_MONOTONIC at `main`'s entry, in ns; 0 until [`start_clock`].
static MAIN_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Start the process clock: the first thing `main` does. Later calls change
/// nothing; without one, the first [`now_ms`] starts it.
pub fn start_clock() {
    use std::sync::atomic::Ordering::Relaxed;
    let _ = MAIN_NS.compare_exchange(0, monotonic_ns(), Relaxed, Relaxed);
}

/// Milliseconds since [`start_clock`].
pub fn now_ms() -> f64 {
    start_clock();
    let main = MAIN_NS.load(std::sync::atomic::Ordering::Relaxed);
    monotonic_ns().saturating_sub(main) as f64 / 1e6
}

/// CLOCK_MONOTONIC at [`start_clock`], in ms.
pub fn main_monotonic_ms() -> f64 {
    start_clock();
    MAIN_NS.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
}

/// The report's file name inside the state directory.
pub const FILE: &str = "report.json";

/// Write `report.json` atomically (renamed into place), without a sync of
/// its own: it is diagnostic and rewritten by every run, and the seal, not
/// the report, decides whether an instance is configured. A crash within
/// the kernel's writeback delay (seconds) can leave the previous report, no
/// report, or (on a first run, on some file systems) a torn one, which
/// [`status`] reads as "no report".
pub fn write(root: &Root, report: &Report) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec_pretty(report).map_err(|e| StateError::Corrupt {
        path: state::dir(root).join(FILE),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    state::write_file_unsynced(root, FILE, &bytes)
}

/// Write the report after masking, once more, every string in it with every
/// known secret: the pipeline masks already, this is the second look (a
/// change here is logged as the bug it is).
pub fn write_checked(root: &Root, report: &Report, secrets: &Secrets) -> Result<(), StateError> {
    let (masked, changed) = mask_report(report, secrets);
    if changed {
        tracing::error!("the report held a secret value; it was masked (this is a bug in imprint)");
    }
    write(root, &masked)
}

/// Every string of the report masked; whether anything changed.
pub fn mask_report(report: &Report, secrets: &Secrets) -> (Report, bool) {
    fn walk(v: &mut serde_json::Value, s: &Secrets, changed: &mut bool) {
        match v {
            serde_json::Value::String(t) => {
                let m = s.mask(t);
                if m != *t {
                    *changed = true;
                    *t = m;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, s, changed)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk(x, s, changed)),
            _ => {}
        }
    }
    if secrets.is_empty() {
        return (report.clone(), false);
    }
    // Fast path, the usual case: no secret in any string of the report.
    // serde_json escapes character by character, so a secret inside a string
    // value shows, escaped the same way, in the serialized report; when no
    // escaped secret is there, masking would change nothing. (The walk below
    // costs a `Value` round trip: ~2% of a whole run's instructions, twice.)
    if let Ok(json) = serde_json::to_string(report) {
        let shows = |s: &str| {
            serde_json::to_string(s)
                .map(|q| json.contains(&q[1..q.len() - 1]))
                .unwrap_or(true)
        };
        if !secrets.iter().any(shows) {
            return (report.clone(), false);
        }
    }
    let Ok(mut v) = serde_json::to_value(report) else {
        return (report.clone(), false);
    };
    let mut changed = false;
    walk(&mut v, secrets, &mut changed);
    match serde_json::from_value(v) {
        Ok(r) if changed => (r, true),
        _ => (report.clone(), false),
    }
}

/// Read `report.json`, if any.
pub fn read(root: &Root) -> Result<Option<Report>, StateError> {
    let Some(bytes) = state::read_file(root, FILE)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: state::dir(root).join(FILE),
            message: e.to_string(),
        })
}

/// Remove the report; returns whether there was one.
pub fn remove(root: &Root) -> Result<bool, StateError> {
    state::remove_file(root, FILE)
}

/// The one structured summary line at the end of a run.
pub fn log_summary(report: &Report) {
    let duration_ms: f64 = report.stages.iter().map(|s| s.duration_ms).sum();
    let duration_ms = (duration_ms * 10.0).round() / 10.0;
    let instance_id = report.instance_id.as_deref().unwrap_or("-");
    let datasource = report.datasource.as_deref().unwrap_or("-");
    let files_written = report.files_written.len();
    let files_unchanged = report.files_unchanged.len();
    let units = report.units.len();
    let warnings = report.warnings.len();
    let text = format!("imprint run {}", report.status);
    if report.exit_code == 0 {
        tracing::info!(
            status = %report.status,
            exit_code = report.exit_code,
            instance_id,
            datasource,
            files_written,
            files_unchanged,
            units,
            warnings,
            duration_ms,
            "{text}"
        );
    } else {
        tracing::error!(
            status = %report.status,
            exit_code = report.exit_code,
            instance_id,
            datasource,
            files_written,
            files_unchanged,
            units,
            warnings,
            duration_ms,
            "{text}"
        );
    }
}

/// What `imprint status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// `done`, `failed`, `applied-unit-failed`, `host-keys-failed`,
    /// `running`, `not-run`.
    pub status: String,
    pub running: bool,
    pub sealed: bool,
    pub report: Option<Report>,
    pub seal: Option<crate::seal::Seal>,
    /// Where the sealed instance's ssh host keys stand
    /// (`hostkeys::describe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_keys: Option<String>,
    /// This boot's run failed without writing a report ([`run_died`]): why.
    /// `report` is then an older run's, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Status {
    /// 0 done, not run or running; 1 when the last run failed, or the
    /// host keys made after it ([`crate::hostkeys::failed`]).
    pub fn exit_code(&self) -> ExitCode {
        match self.status.as_str() {
            "failed" | "applied-unit-failed" | "host-keys-failed" => ExitCode::Drift,
            _ => ExitCode::Ok,
        }
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut o = String::new();
        // A run that died without a report: the last report is another's.
        let r = self.report.as_ref().filter(|_| self.error.is_none());
        let s = self.seal.as_ref();
        kv(&mut o, "status:", &self.status);
        let id = r
            .and_then(|r| r.instance_id.clone())
            .or_else(|| s.map(|s| s.instance_id.clone()));
        kv(&mut o, "instance-id:", id.as_deref().unwrap_or("-"));
        let ds = r
            .and_then(|r| r.datasource.clone())
            .or_else(|| s.map(|s| s.datasource.clone()));
        kv(&mut o, "datasource:", ds.as_deref().unwrap_or("-"));
        if let Some(r) = r {
            kv(
                &mut o,
                "last run:",
                &format!("{} (exit {})", r.started, r.exit_code),
            );
        }
        let sealed = match s {
            Some(s) => format!("yes, at {} by imprint {}", s.time, s.version),
            None => "no".into(),
        };
        kv(&mut o, "sealed:", &sealed);
        if let Some(k) = &self.host_keys {
            kv(&mut o, "host keys:", k);
        }
        if let Some(e) = &self.error {
            kv(&mut o, "error:", e);
            return o;
        }
        let Some(r) = r else {
            if !self.running && s.is_none() {
                o.push_str("imprint has not run on this root yet\n");
            }
            return o;
        };
        kv(&mut o, "files written:", &r.files_written.len().to_string());
        for f in &r.files_written {
            o.push_str(&format!("  {f}\n"));
        }
        kv(&mut o, "unchanged:", &r.files_unchanged.len().to_string());
        kv(
            &mut o,
            "units:",
            if r.units.is_empty() { "none" } else { "" },
        );
        for u in &r.units {
            let unit = if u.unit.is_empty() {
                "(manager)"
            } else {
                &u.unit
            };
            o.push_str(&format!("  {} {unit}: {}\n", u.action, u.result));
        }
        kv(
            &mut o,
            "warnings:",
            if r.warnings.is_empty() { "none" } else { "" },
        );
        for w in &r.warnings {
            o.push_str(&format!("  {w}\n"));
        }
        kv(&mut o, "error:", r.error.as_deref().unwrap_or("none"));
        o
    }
}

fn kv(o: &mut String, k: &str, v: &str) {
    o.push_str(format!("{k:<15}{v}").trim_end());
    o.push('\n');
}

/// Whether a first-boot run is in progress on `root`: a run holds the lock,
/// or (on the host booted with systemd) systemd has a start job for
/// imprint.service or imprint-host-keys.service, so also early in a boot,
/// before the run has started, and while the host keys are made after it.
/// What `imprint status --wait` and the `cloud-init status` shim wait for.
pub fn in_progress(root: &Root) -> bool {
    state::is_locked(root)
        || (root.is_host() && crate::systemd::booted() && crate::systemd::first_boot_jobs_pending())
}

/// Gather the status of a root; with `wait`, first wait (polling every
/// 100 ms) until no run is [in progress](in_progress).
pub fn status(root: &Root, wait: bool) -> Result<Status, StateError> {
    let mut running = in_progress(root);
    if wait && running && root.is_host() && crate::systemd::booted() {
        if let Some(unit) = crate::systemd::wait_would_deadlock() {
            return Err(StateError::WaitDeadlock { unit });
        }
    }
    while wait && running {
        std::thread::sleep(std::time::Duration::from_millis(100));
        running = in_progress(root);
    }
    let report = match read(root) {
        // Not synced (see `write`): a crash right after a run can tear it.
        Err(StateError::Corrupt { path, message }) => {
            tracing::warn!(
                "ignoring {}: {message} (a crash right after a run can leave it half-written)",
                path.display()
            );
            None
        }
        r => r?,
    };
    let seal = crate::seal::read(root)?;
    let mut status = if running {
        "running".to_string()
    } else if let Some(r) = &report {
        r.status.clone()
    } else if seal.is_some() {
        "done".to_string()
    } else {
        "not-run".to_string()
    };
    let mut host_keys = crate::hostkeys::describe(root, seal.as_ref());
    let error = if running { None } else { run_died(root) };
    if error.is_some() {
        status = "failed".into();
    }
    if !running {
        if let Some(why) = crate::hostkeys::failed(root, seal.as_ref()) {
            if status == "done" {
                status = "host-keys-failed".into();
            }
            host_keys = Some(format!("failed: {why}"));
        }
    }
    Ok(Status {
        status,
        running,
        sealed: seal.is_some(),
        host_keys,
        report,
        seal,
        error,
    })
}

/// Now as RFC 3339 UTC (`2026-11-22T00:35:29Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn mask_report_finds_secrets_that_json_escapes() {
        let mut secrets = crate::secret::Secrets::new();
        for s in ["p\"w\\d", "tab\there", "plain", "ünï"] {
            secrets.add(s);
        }
        let clean = super::Report {
            error: Some("nothing to hide: pla in".into()),
            ..Default::default()
        };
        assert_eq!(super::mask_report(&clean, &secrets), (clean.clone(), false));
        for s in secrets.iter() {
            let leaky = super::Report {
                warnings: vec![format!("x{s}y")],
                ..Default::default()
            };
            let (masked, changed) = super::mask_report(&leaky, &secrets);
            assert!(changed, "{s:?}");
            assert_eq!(masked.warnings, vec![format!("x{}y", crate::secret::MASK)]);
        }
    }

    #[test]
    fn status_ignores_a_torn_report() {
        // report.json is not synced: a crash right after a run can tear it.
        let t = tempfile::tempdir().unwrap();
        let root = crate::root::Root::at(t.path());
        std::fs::create_dir_all(t.path().join("var/lib/imprint")).unwrap();
        std::fs::write(t.path().join("var/lib/imprint/report.json"), "{\"vers").unwrap();
        assert!(super::read(&root).is_err(), "read itself stays strict");
        let st = super::status(&root, false).unwrap();
        assert!(st.report.is_none());
        assert_eq!(st.status, "not-run");
    }

    #[test]
    fn failed_host_keys_make_status_exit_1() {
        let st = super::Status {
            status: "host-keys-failed".into(),
            running: false,
            sealed: true,
            report: None,
            seal: None,
            host_keys: Some("failed: why".into()),
            error: None,
        };
        assert_eq!(st.exit_code(), crate::error::ExitCode::Drift);
        let text = st.human();
        assert!(text.contains("status:        host-keys-failed\n"), "{text}");
        assert!(text.contains("host keys:     failed: why\n"), "{text}");
        let done = super::Status {
            status: "done".into(),
            ..st
        };
        assert_eq!(done.exit_code(), crate::error::ExitCode::Ok);
        // This boot's run died without a report: an older report is not
        // shown as the last run.
        let died = super::Status {
            status: "failed".into(),
            report: Some(super::Report {
                instance_id: Some("i-old".into()),
                started: "2026-11-22T00:35:29Z".into(),
                ..Default::default()
            }),
            error: Some(super::run_died_message("timeout")),
            host_keys: None,
            ..done
        };
        assert_eq!(died.exit_code(), crate::error::ExitCode::Drift);
        let text = died.human();
        assert!(
            !text.contains("i-old") && !text.contains("last run:"),
            "{text}"
        );
        assert!(
            text.contains(
                "error:         imprint.service failed (timeout) before its run wrote a report"
            ),
            "{text}"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_307_729), "2026-11-22T00:35:29Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
