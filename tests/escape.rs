//! Quoting (src/escape.rs) against the real parsers: dash for `env` and
//! `shell`, and a port of systemd's `EnvironmentFile=` state machine
//! (`src/basic/env-file.c`, `parse_env_file_internal`) for `env`. The VM test
//! checks the same quoting against a real systemd.
//!
//! Needs: dash (Debian's /bin/sh; package `dash`).

use imprint::escape;
use proptest::prelude::*;
use std::io::Write;
use std::process::Command;

/// systemd's env-file parser, state for state (the states and transitions of
/// `parse_env_file_internal`; key/value whitespace trimming included).
/// Returns the (key, value) pairs in file order.
fn systemd_parse(text: &str) -> Vec<(String, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    const WS: &[char] = &[' ', '\t', '\n', '\r'];
    const NL: &[char] = &['\n', '\r'];
    let mut out = Vec::new();
    let (mut key, mut value) = (String::new(), String::new());
    let (mut key_ws, mut val_ws): (Option<usize>, Option<usize>) = (None, None);
    let mut st = S::PreKey;
    let push = |key: &mut String,
                value: &mut String,
                key_ws: Option<usize>,
                out: &mut Vec<(String, String)>| {
        if let Some(w) = key_ws {
            key.truncate(w);
        }
        out.push((std::mem::take(key), std::mem::take(value)));
    };
    for c in text.chars() {
        match st {
            S::PreKey => {
                if c == '#' || c == ';' {
                    st = S::Comment;
                } else if !WS.contains(&c) {
                    st = S::Key;
                    key_ws = None;
                    key.push(c);
                }
            }
            S::Key => {
                if NL.contains(&c) {
                    st = S::PreKey;
                    key.clear();
                } else if c == '=' {
                    st = S::PreValue;
                    val_ws = None;
                } else {
                    if !WS.contains(&c) {
                        key_ws = None;
                    } else if key_ws.is_none() {
                        key_ws = Some(key.len());
                    }
                    key.push(c);
                }
            }
            S::PreValue => {
                if NL.contains(&c) {
                    st = S::PreKey;
                    push(&mut key, &mut value, key_ws, &mut out);
                } else if c == '\'' {
                    st = S::Single;
                } else if c == '"' {
                    st = S::Double;
                } else if c == '\\' {
                    st = S::ValueEscape;
                } else if !WS.contains(&c) {
                    st = S::Value;
                    value.push(c);
                }
            }
            S::Value => {
                if NL.contains(&c) {
                    st = S::PreKey;
                    if let Some(w) = val_ws {
                        value.truncate(w);
                    }
                    push(&mut key, &mut value, key_ws, &mut out);
                } else if c == '\\' {
                    st = S::ValueEscape;
                    val_ws = None;
                } else {
                    if !WS.contains(&c) {
                        val_ws = None;
                    } else if val_ws.is_none() {
                        val_ws = Some(value.len());
                    }
                    value.push(c);
                }
            }
            S::ValueEscape => {
                st = S::Value;
                if !NL.contains(&c) {
                    value.push(c);
                }
            }
            S::Single => {
                if c == '\'' {
                    st = S::PreValue;
                } else {
                    value.push(c);
                }
            }
            S::Double => {
                if c == '"' {
                    st = S::PreValue;
                } else if c == '\\' {
                    st = S::DoubleEscape;
                } else {
                    value.push(c);
                }
            }
            S::DoubleEscape => {
                st = S::Double;
                if "\"\\`$".contains(c) {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
            }
            S::Comment => {
                if c == '\\' {
                    st = S::CommentEscape;
                } else if NL.contains(&c) {
                    st = S::PreKey;
                }
            }
            S::CommentEscape => {
                st = if NL.contains(&c) {
                    S::PreKey
                } else {
                    S::Comment
                };
            }
        }
    }
    if matches!(
        st,
        S::PreValue | S::Value | S::ValueEscape | S::Single | S::Double | S::DoubleEscape
    ) {
        if st == S::Value {
            if let Some(w) = val_ws {
                value.truncate(w);
            }
        }
        push(&mut key, &mut value, key_ws, &mut out);
    }
    out
}

/// `. file; printf %s "$K"` with dash: the bytes sh reads back.
fn dash_reads(file_text: &str, var: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vars");
    std::fs::File::create(&f)
        .unwrap()
        .write_all(file_text.as_bytes())
        .unwrap();
    let out = Command::new("dash")
        .env_clear()
        .arg("-c")
        .arg(format!(". \"$1\" && printf %s \"${var}\""))
        .arg("sh")
        .arg(&f)
        .output()
        .expect("dash is installed (apt-get install dash)");
    assert!(
        out.status.success(),
        "dash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Strings heavy in what trips quoting: quotes, `$`, `\`, `#`, backticks,
/// blanks, globs, non-ASCII; no control characters but TAB.
fn tricky() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        ' ', '\t', '"', '\'', '\\', '$', '`', '#', '!', '*', '?', '~', '&', ';', '|', '<', '>',
        '(', ')', '{', '}', '[', ']', '=', '%', ':', 'é', '€', 'ß', '😀', '\u{a0}', '\u{85}',
        '\u{2028}',
    ]);
    let printable =
        any::<char>().prop_filter("no control characters", |c| !c.is_control() || *c == '\t');
    prop::collection::vec(prop_oneof![3 => special, 2 => printable, 1 => "[a-z]".prop_map(|s| s.chars().next().unwrap())], 0..40)
        .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn env_round_trips_through_dash_and_systemd(v in tricky()) {
        let q = escape::env(&v).unwrap();
        let file = format!("# comment\nOTHER=x\nK={q}\nAFTER=y\n");
        prop_assert_eq!(dash_reads(&file, "K"), v.as_bytes().to_vec());
        let parsed = systemd_parse(&file);
        prop_assert_eq!(
            parsed,
            vec![("OTHER".to_string(), "x".to_string()), ("K".to_string(), v.clone()), ("AFTER".to_string(), "y".to_string())]
        );
    }

    #[test]
    fn shell_round_trips_through_dash(v in tricky()) {
        let q = escape::shell(&v).unwrap();
        let out = Command::new("dash").env_clear().arg("-c").arg(format!("printf %s {q}")).output().unwrap();
        prop_assert!(out.status.success());
        prop_assert_eq!(out.stdout, v.as_bytes().to_vec());
    }

    #[test]
    fn env_refuses_control_characters(prefix in "[a-z]{0,5}", c in (0u32..0x20).prop_filter("not TAB", |c| *c != 9), suffix in "[a-z]{0,5}") {
        let v = format!("{prefix}{}{suffix}", char::from_u32(c).unwrap());
        let e = escape::env(&v).unwrap_err();
        prop_assert_eq!(e.at, prefix.len());
    }
}

#[test]
fn env_round_trips_the_named_cases() {
    for v in [
        "",
        "two words",
        "it's",
        "say \"hi\"",
        "$HOME and ${HOME}",
        "back\\slash\\",
        "trailing\\",
        "# not a comment",
        "`id`",
        "$(id)",
        "  padded  ",
        "tab\tin",
        "ünïcödé €",
        "a'b\"c$d`e\\f#g",
        "\\$",
        "\\\"",
    ] {
        let q = escape::env(v).unwrap();
        let file = format!("K={q}\n");
        assert_eq!(dash_reads(&file, "K"), v.as_bytes(), "sh: {v:?} as {q}");
        assert_eq!(
            systemd_parse(&file),
            vec![("K".to_string(), v.to_string())],
            "systemd: {v:?} as {q}"
        );
    }
}

#[test]
fn the_reference_parser_matches_systemds_documented_behaviour() {
    // Sanity checks of the port itself, from systemd's own test-env-file.c
    // cases: unquoted values are trimmed, escapes outside quotes are taken
    // literally, comments and blank lines are skipped, a line without '='
    // is dropped.
    let p = systemd_parse("a=a\nb=b\\\nc\n# c=x\n\n d = d d \nnoeq\ne='x y'\nf=\"\\n\\\\\"\n");
    assert_eq!(
        p,
        vec![
            ("a".into(), "a".into()),
            ("b".into(), "bc".into()),
            ("d".into(), "d d".into()),
            ("e".into(), "x y".into()),
            ("f".into(), "\\n\\".into()),
        ]
    );
}

#[test]
fn env_refuses_newline_nul_and_del() {
    for v in ["a\nb", "a\0b", "\r", "\u{7f}"] {
        assert!(escape::env(v).is_err(), "{v:?}");
    }
    assert!(escape::shell("a\0b").is_err());
    assert!(escape::shell("a\nb").is_ok());
}
