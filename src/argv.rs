//! `imprint run`'s and `imprint host-keys`' arguments without clap, for the
//! boot.
//!
//! imprint runs once, at boot, where every piece of code a process runs for
//! the first time is expensive: under emulation (qemu's TCG) it is
//! translated first, at ~100-1000x its native cost. Building and running
//! clap's parser is ~11,000 of the ~86,000 guest instructions the demo run
//! translates, the largest single item before the first stage
//! (docs/benchmarks.md, "Sixth round"). The units run `imprint run` and
//! `imprint host-keys`, so those two shapes, each with its own long
//! options, are read here; anything else (another subcommand, `--help`,
//! `--opt=value`, a value starting with `-` or empty, an option given twice,
//! bytes that are not UTF-8, `IMPRINT_METADATA_URL` in the environment
//! without `run --metadata-url`) returns `None` and goes to clap, which decides as it always did. What this
//! returns is what clap returns for the same arguments: the tests compare
//! the two on every argument list of up to four words from the options,
//! flags and awkward values.

use crate::cli::{Cli, Command, HostKeysArgs, InputArgs, RootArgs, RunArgs, SourceArgs};
use std::ffi::OsString;
use std::path::PathBuf;

/// The process's own arguments, read as `run` (see the module); `None`:
/// ask clap.
pub fn run() -> Option<Cli> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    parse_run(&args, std::env::var_os("IMPRINT_METADATA_URL").is_some())
}

/// `args` without argv[0]; `metadata_url_env`: `IMPRINT_METADATA_URL` is
/// set (clap's `env` for `--metadata-url`; left to clap).
pub fn parse_run(args: &[OsString], metadata_url_env: bool) -> Option<Cli> {
    let (first, rest) = args.split_first()?;
    if first == "host-keys" {
        return parse_host_keys(rest);
    }
    if first != "run" {
        return None;
    }
    let (mut verbose, mut no_restart, mut force) = (false, false, false);
    let mut root: Option<String> = None;
    let mut config: Option<String> = None;
    let mut datasource: Option<String> = None;
    let mut user_data: Option<String> = None;
    let mut instance_id: Option<String> = None;
    let mut metadata_url: Option<String> = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let flag = match arg.to_str()? {
            "-v" | "--verbose" => &mut verbose,
            "--no-restart" => &mut no_restart,
            "--force" => &mut force,
            option => {
                let slot = match option {
                    "--root" => &mut root,
                    "--config" => &mut config,
                    "--datasource" => &mut datasource,
                    "--user-data" => &mut user_data,
                    "--instance-id" => &mut instance_id,
                    "--metadata-url" => &mut metadata_url,
                    _ => return None,
                };
                let value = it.next()?.to_str()?;
                if slot.is_some() || value.is_empty() || value.starts_with('-') {
                    return None;
                }
                *slot = Some(value.to_string());
                continue;
            }
        };
        if *flag {
            return None;
        }
        *flag = true;
    }
    if metadata_url.is_none() && metadata_url_env {
        return None;
    }
    Some(Cli {
        verbose,
        command: Command::Run(RunArgs {
            input: InputArgs {
                root: RootArgs {
                    root: root.map(PathBuf::from),
                },
                config: config.map(PathBuf::from),
                source: SourceArgs {
                    datasource,
                    user_data,
                    instance_id,
                    metadata_url,
                },
            },
            no_restart,
            force,
        }),
    })
}

/// `host-keys [-v|--verbose] [--root DIR]` (imprint-host-keys.service's
/// command, run on every boot before sshd), on the same terms as `run`.
fn parse_host_keys(rest: &[OsString]) -> Option<Cli> {
    let mut verbose = false;
    let mut root: Option<String> = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.to_str()? {
            "-v" | "--verbose" if !verbose => verbose = true,
            "--root" if root.is_none() => {
                let value = it.next()?.to_str()?;
                if value.is_empty() || value.starts_with('-') {
                    return None;
                }
                root = Some(value.to_string());
            }
            _ => return None,
        }
    }
    Some(Cli {
        verbose,
        command: Command::HostKeys(HostKeysArgs {
            root: RootArgs {
                root: root.map(PathBuf::from),
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const WORDS: &[&str] = &[
        "run",
        "--root",
        "--config",
        "--datasource",
        "--user-data",
        "--instance-id",
        "--metadata-url",
        "--no-restart",
        "--force",
        "-v",
        "--verbose",
        "x",
        "/tmp/r",
        "-",
        "",
        "-x",
        "--root=y",
        "--help",
        "--",
        "plan",
        "host-keys",
    ];

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// What clap makes of `imprint WORDS`, as the shortcut would show it.
    fn clap(words: &[&str]) -> Option<String> {
        let argv = std::iter::once("imprint").chain(words.iter().copied());
        Cli::try_parse_from(argv).ok().map(|c| format!("{c:?}"))
    }

    fn check(words: &[&str]) {
        if let Some(cli) = parse_run(&os(words), false) {
            assert_eq!(
                Some(format!("{cli:?}")),
                clap(words),
                "the shortcut and clap differ on {words:?}"
            );
        }
        // With the variable set, only an explicit --metadata-url passes
        // (host-keys has no such option: the variable means nothing to it).
        if let Some(cli) = parse_run(&os(words), true) {
            assert!(
                words.contains(&"--metadata-url") || words.first() == Some(&"host-keys"),
                "{words:?}: {cli:?}"
            );
        }
    }

    #[test]
    fn same_as_clap_on_every_short_argument_list() {
        // clap reads the variable for --metadata-url; with it set the
        // comparison above would not hold (and the shortcut steps aside).
        if std::env::var_os("IMPRINT_METADATA_URL").is_some() {
            return;
        }
        let mut list = vec![];
        fn all(list: &mut Vec<&'static str>, depth: usize) {
            check(list);
            if depth == 0 {
                return;
            }
            for w in WORDS {
                list.push(w);
                all(list, depth - 1);
                list.pop();
            }
        }
        // "run" (or "host-keys") first, then up to three more words: every
        // order of every option, flag and awkward value.
        for first in ["run", "host-keys"] {
            list.push(first);
            all(&mut list, 3);
            list.pop();
        }
    }

    #[test]
    fn same_as_clap_on_whole_invocations() {
        if std::env::var_os("IMPRINT_METADATA_URL").is_some() {
            return;
        }
        let full: &[&[&str]] = &[
            &["run"],
            &[
                "run",
                "--root",
                "/tmp/r",
                "--user-data",
                "u.b64",
                "--instance-id",
                "i-q",
            ],
            &[
                "run",
                "-v",
                "--root",
                "r",
                "--config",
                "c.yaml",
                "--datasource",
                "file",
                "--user-data",
                "u",
                "--instance-id",
                "i",
                "--metadata-url",
                "http://127.0.0.1:1",
                "--no-restart",
                "--force",
            ],
            &["run", "--force", "--force"],
            &["run", "--root", "a", "--root", "b"],
            &["run", "--user-data", "-"],
            &["run", "--root", "é"],
        ];
        for words in full {
            check(words);
        }
        for words in [
            &["host-keys"][..],
            &["host-keys", "--root", "/tmp/r"],
            &["host-keys", "-v", "--root", "r"],
            &["host-keys", "--root", "r", "--verbose"],
        ] {
            check(words);
            assert!(parse_run(&os(words), false).is_some(), "{words:?}");
        }
        // The boot's and the demo's invocations take the shortcut.
        assert!(parse_run(&os(full[0]), false).is_some());
        assert!(parse_run(&os(full[1]), false).is_some());
        assert!(parse_run(&os(full[2]), true).is_some());
    }

    #[test]
    fn steps_aside_for_what_clap_must_answer() {
        for words in [
            &[][..],
            &["plan"],
            &["-v", "run"],
            &["run", "--help"],
            &["run", "--root=x"],
            &["run", "--root"],
            &["run", "--root", ""],
            &["run", "--user-data", "-"],
            &["run", "-vv"],
            &["run", "-v", "--verbose"],
            &["run", "x"],
            &["host-keys", "--help"],
            &["host-keys", "--root"],
            &["host-keys", "--root", "a", "--root", "b"],
            &["host-keys", "--user-data", "u"],
            &["host-keys", "-v", "-v"],
        ] {
            assert!(parse_run(&os(words), false).is_none(), "{words:?}");
        }
        assert!(parse_run(&os(&["run"]), true).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let args = vec![
                OsString::from("run"),
                OsString::from("--root"),
                OsString::from_vec(vec![0xff]),
            ];
            assert!(parse_run(&args, false).is_none());
        }
    }
}
