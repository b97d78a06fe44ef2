//! Black-box: what user-data asks for that imprint ignores (`unsupported:
//! warn`) is said by name, with what to do instead (SPEC §1.4): during
//! `run` each warning is its own warning-level log line (stderr here, the
//! journal under systemd), once, secrets masked; `plan` and `render` say
//! them on stderr too, `validate` with its verdict on stdout.

mod apply_support;
mod common;

use apply_support::*;
use common::*;

const RUNCMD: &str = "part 1: cloud-config key `runcmd`: bake the command into the image, or run it from a unit ordered After=imprint.service";

/// The test image with `unsupported: warn`, and user-data with `runcmd`
/// and a key that is the secret itself (masked wherever it is named).
fn warn_image() -> (TempRoot, String) {
    let root = image_root();
    root.write(
        "/etc/imprint/imprint.yaml",
        MANIFEST.replace("unsupported: error", "unsupported: warn"),
    );
    let ud = format!("{}runcmd: [ls]\n{SECRET}: 1\n", user_data("db1.internal"));
    (root, ud)
}

/// The lines of `text` that start with `prefix`.
fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn run_logs_each_warning_once_as_a_warning() {
    let (root, ud) = warn_image();
    let o = run_ud(&root, &ud, "i-1");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_secret(&o, SECRET);
    let err = stderr(&o);
    let warns = lines_with(&err, " WARN part ");
    assert_eq!(
        warns,
        [
            " WARN part 1: cloud-config key `********`: imprint does not run cloud-config modules; do this in the image, or in a unit ordered After=imprint.service".to_string(),
            format!(" WARN {RUNCMD}"),
        ],
        "{err}"
    );
    assert_eq!(err.matches("`runcmd`").count(), 1, "{err}");
    assert!(err.contains("warnings=2"), "{err}");
    // The report lists the same warnings, in the same words.
    let report = root.read("/var/lib/imprint/report.json");
    assert!(report.contains(RUNCMD), "{report}");
    assert!(!report.contains(SECRET), "{report}");
}

#[test]
fn a_run_that_fails_later_still_logs_its_warnings() {
    let (root, ud) = warn_image();
    std::fs::create_dir_all(root.join("/etc/motd")).unwrap();
    let o = run_ud(&root, &ud, "i-1");
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert_no_secret(&o, SECRET);
    assert_eq!(
        lines_with(&stderr(&o), &format!(" WARN {RUNCMD}")).len(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn plan_and_render_warn_on_stderr_and_validate_on_stdout() {
    let (root, ud) = warn_image();
    std::fs::write(root.join("/ud"), &ud).unwrap();
    let cmd = |what: &str| {
        run(imprint()
            .arg(what)
            .arg("--root")
            .arg(root.path())
            .arg("--user-data")
            .arg(root.join("/ud")))
    };
    for what in ["plan", "render"] {
        let o = cmd(what);
        assert_eq!(code(&o), 0, "{what}: {}", stderr(&o));
        assert_no_secret(&o, SECRET);
        assert_eq!(
            lines_with(&stderr(&o), " WARN part 1: cloud-config key `").len(),
            2,
            "{what}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(RUNCMD), "{what}: {}", stderr(&o));
        assert!(!stdout(&o).contains("runcmd"), "{what}: {}", stdout(&o));
    }
    let o = cmd("validate");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_secret(&o, SECRET);
    assert!(
        stdout(&o).contains(&format!("warning: {RUNCMD}\n")),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("runcmd"), "said once: {}", stderr(&o));
}
