//! `cloud-init status`, answered by imprint (SPEC §5).
//!
//! Why: Vagrant's `cloud_init` support runs exactly `cloud-init status
//! --wait` after boot (and first checks `command -v cloud-init`), and many
//! provisioning scripts do the same. On an image with imprint instead of
//! cloud-init, a link named `cloud-init` to the imprint binary answers that
//! one question from `/var/lib/imprint/report.json`, in cloud-init's own
//! formats and exit codes: 0 done, 1 error, 2 done with warnings ("degraded
//! done", cloud-init ≥ 23.4). Anything else exits 1 and says that this is
//! imprint's shim and cloud-init is not installed. The package installs the
//! link only where no `cloud-init` exists, so it never shadows a real one.
//!
//! `--wait` waits, printing a dot every 0.25 s as cloud-init does, while a
//! run is in progress: the run lock `/run/imprint/lock` is held (seen in
//! `/proc/locks`, without touching the lock, so a starting run can never
//! find it taken), or systemd has a job for `imprint.service` or
//! `imprint-host-keys.service`. The host keys count as part of the run
//! here because cloud-init makes them in its own run (its ssh module): a
//! script that waits for "done" and then reads the host keys'
//! fingerprints must find the instance's final keys.

use crate::report::Report;
use crate::root::Root;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

const NOT_CLOUD_INIT: &str =
    "this is imprint's cloud-init status shim; cloud-init is not installed";

/// Output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tabular,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Args {
    wait: bool,
    long: bool,
    format: Format,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("status") => {}
        Some(other) => return Err(format!("unsupported command {other:?}")),
        None => return Err("no command given".into()),
    }
    let mut a = Args {
        wait: false,
        long: false,
        format: Format::Tabular,
    };
    while let Some(arg) = it.next() {
        let format = |v: &str| match v {
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            "tabular" => Ok(Format::Tabular),
            _ => Err(format!("unsupported format {v:?} (json, yaml, tabular)")),
        };
        match arg.as_str() {
            "--wait" | "-w" => a.wait = true,
            "--long" | "-l" => a.long = true,
            "--format" => {
                a.format = format(it.next().map(String::as_str).unwrap_or_default())?;
            }
            s if s.starts_with("--format=") => a.format = format(&s["--format=".len()..])?,
            s => return Err(format!("unsupported option {s:?}")),
        }
    }
    Ok(a)
}

/// The shim's entry point: `args` without argv[0]. Returns the exit code.
pub fn main(root: &Root, args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cloud-init: {NOT_CLOUD_INIT} ({e}; only `cloud-init status [--wait] [--long] [--format json|yaml|tabular]` is answered)");
            return 1;
        }
    };
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    let mut st = status(root);
    if a.wait && st.running && root.is_host() && crate::systemd::booted() {
        if let Some(unit) = crate::systemd::wait_would_deadlock() {
            eprintln!(
                "cloud-init status --wait (imprint's shim): {}",
                crate::systemd::wait_deadlock_message(&unit)
            );
            return 1;
        }
    }
    if a.wait {
        while st.running {
            if a.format == Format::Tabular {
                let _ = so.write_all(b".");
                let _ = so.flush();
            }
            std::thread::sleep(Duration::from_millis(250));
            st = status(root);
        }
    }
    let d = details(&st);
    let text = match a.format {
        Format::Tabular => tabular(&d, a.long, a.wait),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&d).unwrap_or_default()),
        Format::Yaml => yaml(&d),
    };
    let _ = so.write_all(text.as_bytes());
    let _ = so.flush();
    match d["extended_status"].as_str().unwrap_or_default() {
        s if s.starts_with("error") => 1,
        s if s.starts_with("degraded") => 2,
        _ => 0,
    }
}

/// What is known about imprint's run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// A run holds the lock, or systemd has a job for imprint.service or
    /// imprint-host-keys.service (`report::in_progress`).
    pub running: bool,
    pub report: Option<Report>,
    /// No report, but a seal: configured (by an older imprint, say).
    pub sealed: bool,
    /// imprint-host-keys.service failed and the keys are not made
    /// (`hostkeys::failed`): why. cloud-init's status is `error` when its
    /// ssh module fails.
    pub host_keys_failed: Option<String>,
    /// This boot's run failed without writing a report
    /// (`report::run_died`): why. `report` is then an older run's, if any.
    pub run_died: Option<String>,
}

fn status(root: &Root) -> Observed {
    let report = crate::report::read(root).ok().flatten();
    let seal = crate::seal::read(root).ok().flatten();
    let running = crate::report::in_progress(root);
    let (host_keys_failed, run_died) = if running {
        (None, None)
    } else {
        (
            crate::hostkeys::failed(root, seal.as_ref()),
            crate::report::run_died(root),
        )
    };
    // A run that died: the last report is another run's, not shown.
    let report = report.filter(|_| run_died.is_none());
    Observed {
        running,
        sealed: report.is_none() && seal.is_some(),
        report,
        host_keys_failed,
        run_died,
    }
}

/// cloud-init's status dictionary, from what imprint observed.
pub fn details(st: &Observed) -> Value {
    let r = st.report.as_ref();
    let died = st.run_died.as_deref().filter(|_| !st.running);
    let running = if st.running {
        "running"
    } else if r.is_some() || st.sealed || died.is_some() {
        "done"
    } else {
        "not started"
    };
    let run_failed =
        died.is_some() || r.is_some_and(|r| r.status != "done" && r.status != "sealed");
    let keys_failed = st.host_keys_failed.as_deref().filter(|_| !st.running);
    let failed = run_failed || keys_failed.is_some();
    let warnings: Vec<String> = r.map(|r| r.warnings.clone()).unwrap_or_default();
    let (status, extended) = if failed && !st.running {
        ("error".to_string(), format!("error - {running}"))
    } else if !warnings.is_empty() && running != "not started" {
        (running.to_string(), format!("degraded {running}"))
    } else {
        (running.to_string(), running.to_string())
    };
    let mut errors: Vec<String> = r
        .filter(|_| run_failed && died.is_none())
        .map(|r| {
            vec![r
                .error
                .clone()
                .unwrap_or_else(|| format!("imprint run ended with {}", r.status))]
        })
        .unwrap_or_default();
    errors.extend(died.map(str::to_string));
    errors.extend(keys_failed.map(str::to_string));
    let keys = if keys_failed.is_some() && !run_failed {
        ", but its ssh host keys were not made"
    } else {
        ""
    };
    let detail = match r {
        _ if st.running => "imprint is running".to_string(),
        _ if died.is_some() => {
            "imprint failed (imprint.service ended without a report)".to_string()
        }
        None if st.sealed => format!("imprint configured this instance (sealed){keys}"),
        None => "imprint has not run on this instance yet".to_string(),
        Some(r) if run_failed => format!(
            "imprint failed (exit {}){}",
            r.exit_code,
            r.instance_id
                .as_deref()
                .map(|i| format!(" on instance {i}"))
                .unwrap_or_default()
        ),
        Some(r) => format!(
            "imprint configured instance {} from {} ({} file(s) written){keys}",
            r.instance_id.as_deref().unwrap_or("?"),
            r.datasource.as_deref().unwrap_or("?"),
            r.files_written.len()
        ),
    };
    let recoverable = if warnings.is_empty() {
        json!({})
    } else {
        json!({ "WARNING": warnings })
    };
    let mut v = json!({
        "boot_status_code": if r.is_some() || st.running || st.sealed || died.is_some() { "enabled-by-generator" } else { "unknown" },
        "datasource": r.and_then(|r| r.datasource.clone()).unwrap_or_default(),
        "detail": detail,
        "errors": errors,
        "extended_status": extended,
        "last_update": r.map(|r| http_date(&r.started)).unwrap_or_default(),
        "recoverable_errors": recoverable,
        "status": status,
    });
    let copy = v.clone();
    v["_schema_version"] = json!("1");
    v["schemas"] = json!({ "1": copy });
    v
}

/// cloud-init's tabular output.
fn tabular(d: &Value, long: bool, wait: bool) -> String {
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    let mut out = format!("{}status: {}\n", if wait { "\n" } else { "" }, s("status"));
    if long {
        out.push_str(&format!("extended_status: {}\n", s("extended_status")));
        out.push_str(&format!("boot_status_code: {}\n", s("boot_status_code")));
        if !s("last_update").is_empty() {
            out.push_str(&format!("last_update: {}\n", s("last_update")));
        }
        out.push_str(&format!("detail: {}\n", s("detail")));
        let errors: Vec<&str> = d["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if errors.is_empty() {
            out.push_str("errors: []\n");
        } else {
            out.push_str("errors:\n");
            for e in errors {
                out.push_str(&format!("\t- {}\n", e.replace('\n', " ")));
            }
        }
        match d["recoverable_errors"].as_object() {
            Some(m) if !m.is_empty() => {
                out.push_str("recoverable_errors:\n");
                for (k, v) in m {
                    out.push_str(&format!("{k}:\n"));
                    for w in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        out.push_str(&format!("\t- {}\n", w.replace('\n', " ")));
                    }
                }
            }
            _ => out.push_str("recoverable_errors: {}\n"),
        }
    }
    out
}

/// The dictionary as YAML (flat keys, JSON-quoted scalars: valid YAML).
fn yaml(d: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = d.as_object() {
        for (k, v) in m {
            out.push_str(&format!(
                "{k}: {}\n",
                serde_json::to_string(v).unwrap_or_default()
            ));
        }
    }
    out
}

/// RFC 3339 UTC (`2026-11-22T00:35:29Z`) as cloud-init's `last_update`
/// (`Sun, 22 Nov 2026 00:35:29 +0000`); other text is passed through.
pub fn http_date(rfc3339: &str) -> String {
    let parse = || -> Option<String> {
        let (date, time) = rfc3339.strip_suffix('Z')?.split_once('T')?;
        let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
        let (y, m, day) = (d.next()??, d.next()??, d.next()??);
        if !(1..=12).contains(&m) {
            return None;
        }
        // Days from civil (Howard Hinnant), for the weekday.
        let yy = if m <= 2 { y - 1 } else { y };
        let era = yy.div_euclid(400);
        let yoe = yy - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MON: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        Some(format!(
            "{}, {day:02} {} {y:04} {time} +0000",
            WD[days.rem_euclid(7) as usize],
            MON[(m - 1) as usize]
        ))
    };
    parse().unwrap_or_else(|| rfc3339.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_like_cloud_init() {
        assert_eq!(
            http_date("1970-01-01T00:00:00Z"),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            http_date("2026-11-22T00:35:29Z"),
            "Sun, 22 Nov 2026 00:35:29 +0000"
        );
        assert_eq!(
            http_date("2000-02-29T12:00:00Z"),
            "Tue, 29 Feb 2000 12:00:00 +0000"
        );
        assert_eq!(http_date("garbage"), "garbage");
    }

    #[test]
    fn args_like_cloud_init() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["status", "--wait", "--long", "--format", "json"]).unwrap(),
            Args {
                wait: true,
                long: true,
                format: Format::Json
            }
        );
        assert_eq!(
            a(&["status", "-w", "--format=yaml"]).unwrap().format,
            Format::Yaml
        );
        assert!(a(&["init"]).is_err());
        assert!(a(&[]).is_err());
        assert!(a(&["status", "--format", "xml"]).is_err());
        assert!(a(&["status", "--bogus"]).is_err());
    }

    #[test]
    fn failed_host_keys_are_an_error_like_cloud_inits_ssh_module() {
        let why = crate::hostkeys::failed_message("exit-code");
        let done = Report {
            status: "done".into(),
            instance_id: Some("i-1".into()),
            datasource: Some("nocloud".into()),
            files_written: vec!["/opt/app/conf.env".into()],
            ..Default::default()
        };
        let st = |report: Option<Report>, sealed, running, keys: Option<&str>| Observed {
            running,
            report,
            sealed,
            host_keys_failed: keys.map(str::to_string),
            run_died: None,
        };
        let d = details(&st(Some(done.clone()), false, false, Some(&why)));
        assert_eq!(d["status"], "error");
        assert_eq!(d["extended_status"], "error - done");
        assert_eq!(d["errors"], json!([why]));
        assert_eq!(
            d["detail"],
            "imprint configured instance i-1 from nocloud (1 file(s) written), but its ssh host keys were not made"
        );
        let d = details(&st(None, true, false, Some(&why)));
        assert_eq!(d["status"], "error");
        assert_eq!(
            d["detail"],
            "imprint configured this instance (sealed), but its ssh host keys were not made"
        );
        // Both failed: the run's error first, then the keys'.
        let failed = Report {
            status: "failed".into(),
            error: Some("missing required value".into()),
            ..done.clone()
        };
        let d = details(&st(Some(failed), false, false, Some(&why)));
        assert_eq!(d["errors"], json!(["missing required value", why]));
        assert!(d["detail"].as_str().unwrap().starts_with("imprint failed"));
        // Still running, or the keys were made: not an error.
        let d = details(&st(Some(done.clone()), false, true, Some(&why)));
        assert_eq!(d["status"], "running");
        let d = details(&st(Some(done), false, false, None));
        assert_eq!(
            (d["status"].as_str(), d["errors"].clone()),
            (Some("done"), json!([]))
        );
    }

    #[test]
    fn a_run_that_died_without_a_report_is_an_error() {
        let why = crate::report::run_died_message("signal");
        assert!(why.starts_with("imprint.service failed (signal) before its run wrote a report"));
        let st = Observed {
            run_died: Some(why.clone()),
            ..Default::default()
        };
        let d = details(&st);
        assert_eq!(d["status"], "error");
        assert_eq!(d["extended_status"], "error - done");
        assert_eq!(d["errors"], json!([why]));
        assert_eq!(d["boot_status_code"], "enabled-by-generator");
        assert_eq!(
            d["detail"],
            "imprint failed (imprint.service ended without a report)"
        );
        // An older run's report beside it is not this run's: its error is
        // not repeated.
        let old = Report {
            status: "failed".into(),
            error: Some("an old failure".into()),
            ..Default::default()
        };
        let d = details(&Observed {
            report: Some(old),
            ..st.clone()
        });
        assert_eq!(d["errors"], json!([why]));
        // Still running: not an error yet.
        let d = details(&Observed {
            running: true,
            ..st
        });
        assert_eq!(d["status"], "running");
    }
}
