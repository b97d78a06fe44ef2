//! The help text is part of the interface: it must fit an 80-column
//! terminal (`max_term_width = 80` plus clap's `wrap_help`), whatever the
//! terminal claims, for `imprint` and every subcommand, hidden ones too. The
//! list of subcommands comes from the CLI definition itself, so a new
//! subcommand is covered without touching this file.

mod common;

use clap::CommandFactory;
use common::{code, imprint, run, stdout};

const MAX: usize = 80;

/// Every subcommand name in the CLI definition, hidden ones included.
fn subcommands() -> Vec<(String, bool)> {
    imprint::cli::Cli::command()
        .get_subcommands()
        .map(|s| (s.get_name().to_string(), s.is_hide_set()))
        .collect()
}

/// Run `imprint ARGS` with a terminal claiming `columns`; return stdout.
fn help(args: &[&str], columns: &str) -> String {
    let o = run(imprint().args(args).env("COLUMNS", columns));
    assert_eq!(code(&o), 0, "imprint {args:?} failed: {o:?}");
    let out = stdout(&o);
    assert!(!out.trim().is_empty(), "imprint {args:?} printed nothing");
    out
}

fn too_wide(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.chars().count() > MAX)
        .map(|l| format!("{:3} | {l}", l.chars().count()))
        .collect()
}

#[test]
fn every_help_fits_80_columns_even_on_a_wide_terminal() {
    let mut checked = Vec::new();
    let mut wide = Vec::new();
    let mut cases: Vec<Vec<String>> = vec![vec!["--help".into()], vec!["-h".into()]];
    for (name, _) in subcommands() {
        if name == "help" {
            // `imprint help SUB` is --help by another name; check it once.
            cases.push(vec!["help".into(), "run".into()]);
            continue;
        }
        cases.push(vec![name.clone(), "--help".into()]);
        cases.push(vec![name, "-h".into()]);
    }
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for columns in ["200", "80"] {
            let out = help(&args, columns);
            for l in too_wide(&out) {
                wide.push(format!(
                    "imprint {} (COLUMNS={columns}):\n{l}",
                    args.join(" ")
                ));
            }
        }
        checked.push(args.join(" "));
    }
    assert!(
        wide.is_empty(),
        "help lines wider than {MAX} columns:\n{}",
        wide.join("\n")
    );
    // Sanity: the loop really covered the subcommands (at least SPEC §2's).
    for sub in [
        "run", "plan", "render", "validate", "status", "verify", "clean", "fetch", "identify",
    ] {
        assert!(
            checked.iter().any(|c| c == &format!("{sub} --help")),
            "{sub} --help not checked; checked: {checked:?}"
        );
    }
}

#[test]
fn top_level_help_lists_every_visible_subcommand_with_its_summary() {
    let out = help(&["--help"], "80");
    for (name, hidden) in subcommands() {
        let listed = out
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{name} ")));
        assert_eq!(
            listed, !hidden,
            "subcommand {name} (hidden: {hidden}) listing wrong in:\n{out}"
        );
    }
}

#[test]
fn subcommand_help_shows_its_usage_line() {
    for (name, _) in subcommands() {
        if name == "help" {
            continue;
        }
        let out = help(&[&name, "--help"], "80");
        assert!(
            out.contains(&format!("Usage: imprint {name}")),
            "imprint {name} --help has no usage line:\n{out}"
        );
    }
}

#[test]
fn long_descriptions_are_wrapped_not_cut() {
    // The top-level long_about is one long sentence: wrapped, every word kept.
    let out = help(&["--help"], "200");
    let words: Vec<&str> = out.split_whitespace().collect();
    for w in ["seals", "instance", "later", "boots", "nothing."] {
        assert!(words.contains(&w), "word {w:?} lost from:\n{out}");
    }
}
