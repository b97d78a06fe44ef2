//! The unit files this repository ships for the verify timer pass
//! `systemd-analyze verify` (the `systemd` package), apart from the binary
//! not being installed on the test machine.

use std::path::Path;
use std::process::Command;

#[test]
fn verify_units_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("imprint-verify.service"))
        .arg(dir.join("imprint-verify.timer"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("this test needs systemd-analyze (apt-get install systemd)");
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("Command /usr/bin/imprint is not executable"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{text}");
    // The timer activates the service of the same name.
    let timer = std::fs::read_to_string(dir.join("imprint-verify.timer")).unwrap();
    assert!(timer.contains("[Timer]") && timer.contains("WantedBy=timers.target"));
}
