//! Small shared vocabulary types used by several stages: file modes, owners,
//! the values tree.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The values tree that user-data sets and templates read: JSON-shaped,
/// nested maps (a dotted manifest key `db.host` is `{"db": {"host": ..}}`).
pub type Values = serde_json::Map<String, serde_json::Value>;

/// A file mode (permission bits only, `0o7777` at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mode(pub u32);

impl Mode {
    /// Parse `"0640"`, `"640"`, `"0o640"` (octal text, as cloud-init and
    /// chmod read it). Returns `None` for junk or bits beyond `0o7777`.
    pub fn parse_octal(s: &str) -> Option<Mode> {
        let t = s.trim();
        let t = t
            .strip_prefix("0o")
            .or_else(|| t.strip_prefix("0O"))
            .unwrap_or(t);
        if t.is_empty() || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        let m = u32::from_str_radix(t, 8).ok()?;
        (m <= 0o7777).then_some(Mode(m))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An owner as written in a manifest or `write_files`: `user`, `user:group`,
/// numeric ids allowed. Names are resolved against the root's
/// `/etc/passwd` and `/etc/group` by `plan` (render stays pure).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerSpec {
    pub user: String,
    pub group: Option<String>,
}

impl OwnerSpec {
    /// Parse `user[:group]` (cloud-init also accepts `user.group`? no: only `:`).
    pub fn parse(s: &str) -> Option<OwnerSpec> {
        let s = s.trim();
        let (u, g) = match s.split_once(':') {
            // cloud-init's extract_usergroup strips each side.
            Some((u, g)) => (u.trim(), Some(g.trim())),
            None => (s, None),
        };
        if u.is_empty() || g.is_some_and(str::is_empty) {
            return None;
        }
        Some(OwnerSpec {
            user: u.to_string(),
            group: g.map(str::to_string),
        })
    }
}

impl fmt::Display for OwnerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{}", self.user, g),
            None => f.write_str(&self.user),
        }
    }
}

/// Where a file to write came from, for messages and the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// `files[index]` of the manifest (0-based index).
    Manifest { index: usize },
    /// `write_files[index]` of user-data part `part` (1-based part number).
    WriteFiles { part: usize, index: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Manifest { index } => write!(f, "manifest files[{index}]"),
            Origin::WriteFiles { part, index } => {
                write!(f, "user-data part {part} write_files[{index}]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(Mode::parse_octal("0640"), Some(Mode(0o640)));
        assert_eq!(Mode::parse_octal("755"), Some(Mode(0o755)));
        assert_eq!(Mode::parse_octal("0o600"), Some(Mode(0o600)));
        assert_eq!(Mode::parse_octal("0999"), None);
        assert_eq!(Mode::parse_octal("17777"), None);
        assert_eq!(Mode(0o640).to_string(), "0640");
    }

    #[test]
    fn owners() {
        let o = OwnerSpec::parse("root:app").unwrap();
        assert_eq!(o.user, "root");
        assert_eq!(o.group.as_deref(), Some("app"));
        assert_eq!(OwnerSpec::parse("app").unwrap().group, None);
        assert!(OwnerSpec::parse(":x").is_none());
        assert!(OwnerSpec::parse("x:").is_none());
        let o = OwnerSpec::parse(" nobody : nogroup ").unwrap();
        assert_eq!(
            (o.user.as_str(), o.group.as_deref()),
            ("nobody", Some("nogroup"))
        );
    }
}
