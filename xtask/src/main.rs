//! Build-time tasks for imprint, run as `cargo xtask TASK` (an alias in
//! .cargo/config.toml).
//!
//! Why an xtask and not build.rs or a hidden subcommand: the man page and
//! shell completions are generated from the same clap definition the binary
//! parses with (`imprint::cli::Cli`), so they cannot drift from it, but
//! generating them is only needed when packaging. A build script would run
//! clap_mangen/clap_complete on every build of the binary; a hidden
//! subcommand would put them into the shipped binary (size) or behind a
//! feature (a second release build). An xtask links the library in the
//! ordinary dev profile, once, and the release binary stays as it is.
//!
//! Tasks:
//!
//! - `assets DIR`: write `DIR/man/*.1` (imprint(1) and one page per visible
//!   subcommand, imprint-run(1), ...) and `DIR/completions/` (`imprint.bash`,
//!   `_imprint` for zsh, `imprint.fish`). packaging/build.sh calls it; the
//!   packages install the results.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["assets", dir] => assets(Path::new(dir)),
        _ => Err("usage: cargo xtask assets DIR".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status table of imprint(1), as SPEC §2 defines it.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "done (verify: no drift)"),
    ("1", "verify: drift found, or not sealed"),
    ("64", "usage error"),
    (
        "65",
        "invalid user-data, manifest or template; nothing was written",
    ),
    (
        "69",
        "datasource unavailable or not identified; nothing was written",
    ),
    ("73", "a file could not be written; everything was rolled back"),
    (
        "75",
        "files applied but a unit failed to restart (not sealed: the next boot tries again), or another run holds the lock",
    ),
    (
        "77",
        "already sealed for this instance-id; nothing was done (--force overrides)",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/imprint/imprint.yaml",
        "the manifest baked into the image",
    ),
    (
        "/etc/imprint/templates/",
        "the templates the manifest names",
    ),
    (
        "/var/lib/imprint/sealed",
        "the seal: instance-id, user-data hash, files written",
    ),
    (
        "/var/lib/imprint/report.json",
        "the last run, read by imprint status",
    ),
    ("/run/imprint/lock", "held by a run in progress"),
    (
        "/usr/lib/systemd/system/imprint.service",
        "the first-boot unit",
    ),
    (
        "/usr/bin/cloud-init",
        "link to imprint, made by the package only where no cloud-init is installed: answers cloud-init status [--wait] [--long] [--format json]",
    ),
    (
        "/usr/lib/systemd/system-generators/imprint-generator",
        "link to imprint: orders the manifest's units after imprint.service",
    ),
];

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("failed to write {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("failed to create {}: {e}", path.display()))
}

fn assets(dir: &Path) -> Result<(), String> {
    // `imprint help SUB` exists but is --help by another name: no page.
    let mut cmd = imprint::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version: &'static str = Box::leak(cmd.get_version().unwrap_or_default().into());
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    mkdir(&man_dir)?;
    mkdir(&comp_dir)?;

    // imprint(1): clap's sections, then exit status, files, see also.
    let man = Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render(&mut page)
        .map_err(|e| format!("failed to render imprint.1: {e}"))?;
    let mut extra = Roff::new();
    table(&mut extra, "EXIT STATUS", EXIT_STATUS);
    table(&mut extra, "FILES", FILES);
    let subs: Vec<String> = visible_subcommands(&cmd)
        .map(|s| format!("imprint-{}(1)", s.get_name()))
        .collect();
    extra.control("SH", ["SEE ALSO"]);
    extra.text([roman(format!(
        "{}, systemd.generator(7), systemd.service(5). Documentation: /usr/share/doc/imprint/",
        subs.join(", ")
    ))]);
    page.extend_from_slice(extra.to_roff().as_bytes());
    write(&man_dir.join("imprint.1"), &page)?;

    // imprint-SUB(1) for each visible subcommand.
    for sub in visible_subcommands(&cmd) {
        // Leaked: clap wants 'static names without its "string" feature;
        // a handful of short strings in a process that exits right after.
        let name: &'static str = Box::leak(format!("imprint-{}", sub.get_name()).into_boxed_str());
        let bin: &'static str = Box::leak(format!("imprint {}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).bin_name(bin).version(version);
        let mut page = Vec::new();
        Man::new(sub)
            .render(&mut page)
            .map_err(|e| format!("failed to render {name}.1: {e}"))?;
        write(&man_dir.join(format!("{name}.1")), &page)?;
    }

    // Completions, in each shell's conventional file name.
    for (shell, file) in [
        (Shell::Bash, "imprint.bash"),
        (Shell::Zsh, "_imprint"),
        (Shell::Fish, "imprint.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "imprint", &mut out);
        write(&comp_dir.join(file), &out)?;
    }
    let written: Vec<PathBuf> = [man_dir, comp_dir].into_iter().collect();
    for d in written {
        println!("wrote {}", d.display());
    }
    Ok(())
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn table(r: &mut Roff, title: &str, rows: &[(&str, &str)]) {
    r.control("SH", [title]);
    for (k, v) in rows {
        r.control("TP", []);
        r.text([roman(*k)]);
        r.text([roman(*v)]);
    }
}
