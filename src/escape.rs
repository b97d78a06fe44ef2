//! Quoting functions, one per target syntax (SPEC §4).
//!
//! Shell quoting (`'it'\''s'`) is not systemd quoting, and neither is JSON:
//! each target gets its own function, tested against its real parser (`dash`
//! for [`env`] and [`shell`], systemd's `EnvironmentFile=` parser in the VM
//! test and a line-by-line port of it in `tests/escape.rs`).
//!
//! Every function returns a *complete literal* of its syntax, quotes
//! included: `KEY={{x}}` in an env file, `cmd {{x}}` in a shell script,
//! `{"k": {{x}}}` in JSON. A value the syntax cannot carry byte for byte is
//! an [`Unquotable`] error, never a silent mangle.

use crate::manifest::Escape;
use std::fmt;

/// Why a value cannot be quoted for a syntax. Never holds the value itself
/// (it may be secret), only what is wrong with it and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unquotable {
    /// The syntax: `env` or `shell`.
    pub syntax: &'static str,
    /// 0-based byte offset of the offending character.
    pub at: usize,
    /// What the character is, e.g. "a newline".
    pub what: String,
}

impl Unquotable {
    /// What is wrong, without advice: "the value has a newline at byte 3,
    /// which an env file value cannot carry through both systemd's
    /// EnvironmentFile= and sh". Callers that know a better way out (the
    /// manifest's `env:`, which has no helpers) add their own.
    pub fn reason(&self) -> String {
        let why = match self.syntax {
            "env" => {
                "an env file value cannot carry through both systemd's EnvironmentFile= and sh"
            }
            _ => "a shell word cannot carry",
        };
        format!(
            "the value has {} at byte {}, which {why}",
            self.what, self.at
        )
    }
}

impl fmt::Display for Unquotable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.syntax {
            "env" => {
                "an env file value cannot carry it through both systemd's EnvironmentFile= \
                 and sh (use a file of its own, or base64 it with {{base64 ...}})"
            }
            _ => "a shell word cannot carry it (use base64 with {{base64 ...}})",
        };
        write!(
            f,
            "the value has {} at byte {}: {}",
            self.what, self.at, why
        )
    }
}

impl std::error::Error for Unquotable {}

fn describe(c: char) -> String {
    match c {
        '\0' => "a NUL byte".into(),
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

/// Quote for an env file read by both systemd's `EnvironmentFile=` and
/// POSIX sh's `.` (dash, bash): `"..."` with `\`, `"`, `$` and `` ` ``
/// backslash-escaped. Inside double quotes both parsers turn exactly these
/// four escapes back into the character and keep every other byte as is
/// (systemd `src/basic/env-file.c`, `DOUBLE_QUOTE_VALUE_ESCAPE` with
/// `SHELL_NEED_ESCAPE`; POSIX XCU 2.2.3).
///
/// Refused: NUL (no environment can hold it), newline and carriage return
/// (one line per variable: line-based readers, `systemctl show-environment`
/// and the SPEC all expect it), and every other control character but TAB,
/// because systemd before v246 drops such an assignment silently
/// (`env_value_is_valid` then refused `string_has_cc`).
pub fn env(value: &str) -> Result<String, Unquotable> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for (at, c) in value.char_indices() {
        match c {
            '\\' | '"' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                return Err(Unquotable {
                    syntax: "env",
                    at,
                    what: describe(c),
                })
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Quote one word for POSIX sh: `'...'`, a `'` written as `'\''`. Every
/// byte but NUL survives single quotes unchanged.
pub fn shell(value: &str) -> Result<String, Unquotable> {
    if let Some(at) = value.find('\0') {
        return Err(Unquotable {
            syntax: "shell",
            at,
            what: describe('\0'),
        });
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// A JSON string literal (serde_json's escaping, quotes included). Any
/// string can be one.
pub fn json(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

/// Quote `value` for `escape`; `None` passes it through unchanged.
pub fn quote(escape: Escape, value: &str) -> Result<String, Unquotable> {
    match escape {
        Escape::Env => env(value),
        Escape::Shell => shell(value),
        Escape::Json => Ok(json(value)),
        Escape::None => Ok(value.to_string()),
    }
}

/// The name of an escape, as the manifest spells it.
pub fn name(escape: Escape) -> &'static str {
    match escape {
        Escape::Env => "env",
        Escape::Json => "json",
        Escape::Shell => "shell",
        Escape::None => "none",
    }
}

/// The default escape for a path (SPEC §4): `env` for `*.env` and for the
/// paths named by an `EnvironmentFile=` (`env_files`), `json` for `*.json`,
/// else `none`.
pub fn default_for(path: &str, env_files: &std::collections::BTreeSet<String>) -> Escape {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".env") || env_files.contains(path) {
        Escape::Env
    } else if name.ends_with(".json") {
        Escape::Json
    } else {
        Escape::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_quotes_the_four_specials() {
        assert_eq!(env("plain").unwrap(), "\"plain\"");
        assert_eq!(env("").unwrap(), "\"\"");
        assert_eq!(env(r#"a"b\c$d`e"#).unwrap(), r#""a\"b\\c\$d\`e""#);
        assert_eq!(
            env("it's # not a comment").unwrap(),
            "\"it's # not a comment\""
        );
        assert_eq!(env("tab\there").unwrap(), "\"tab\there\"");
        assert_eq!(env("ünï €").unwrap(), "\"ünï €\"");
    }

    #[test]
    fn env_refuses_what_cannot_round_trip() {
        let e = env("line1\nline2").unwrap_err();
        assert_eq!(e.at, 5);
        assert_eq!(e.what, "a newline");
        assert_eq!(env("a\0").unwrap_err().what, "a NUL byte");
        assert_eq!(env("\r").unwrap_err().what, "a carriage return");
        assert!(env("\u{1b}[0m").unwrap_err().what.contains("U+001B"));
        assert!(env("\u{7f}").is_err());
        // The message never carries the value.
        let msg = env("s3cr3t\n").unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn shell_single_quotes() {
        assert_eq!(shell("it's").unwrap(), r"'it'\''s'");
        assert_eq!(shell("").unwrap(), "''");
        assert_eq!(shell("a\nb $x").unwrap(), "'a\nb $x'");
        assert!(shell("a\0b").is_err());
    }

    #[test]
    fn json_strings() {
        assert_eq!(json("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(json("\u{0}"), r#""\u0000""#);
    }

    #[test]
    fn defaults_by_path() {
        let mut envs = std::collections::BTreeSet::new();
        envs.insert("/etc/default/app".to_string());
        assert_eq!(default_for("/opt/app/conf.env", &envs), Escape::Env);
        assert_eq!(default_for("/etc/default/app", &envs), Escape::Env);
        assert_eq!(default_for("/etc/default/other", &envs), Escape::None);
        assert_eq!(default_for("/etc/app/config.json", &envs), Escape::Json);
        assert_eq!(default_for("/etc/app.conf", &envs), Escape::None);
        assert_eq!(default_for("/etc/.env/x", &envs), Escape::None);
    }
}
