//! Secret values never appear in logs, plans, diffs, reports or errors
//! (SPEC §6).
//!
//! A value is secret when the manifest says `secret: true`, when a template
//! marks it with the `secret` helper, or when its key's last segment ends in
//! `password`, `secret`, `token` or `key`. [`Secrets`] holds the secret
//! *strings* so any text can be masked before it leaves the process.

use std::collections::BTreeSet;

/// What a masked value is replaced with.
pub const MASK: &str = "********";

/// Whether a dotted key names a secret by its name alone.
pub fn is_secret_key(dotted: &str) -> bool {
    let last = dotted
        .rsplit('.')
        .next()
        .unwrap_or(dotted)
        .to_ascii_lowercase();
    ["password", "secret", "token", "key"]
        .iter()
        .any(|s| last.ends_with(s))
}

/// The set of secret strings of a run.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    // Longest first, so a secret that contains another is masked whole.
    values: Vec<String>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Record a secret string (empty strings are ignored: nothing to hide).
    pub fn add(&mut self, value: impl Into<String>) {
        let v = value.into();
        if v.is_empty() || self.values.contains(&v) {
            return;
        }
        let at = self
            .values
            .iter()
            .position(|x| x.len() < v.len())
            .unwrap_or(self.values.len());
        self.values.insert(at, v);
    }

    /// Record every scalar inside a JSON value (a secret map hides all its leaves).
    pub fn add_value(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s.clone()),
            serde_json::Value::Number(n) => self.add(n.to_string()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| self.add_value(v)),
            serde_json::Value::Object(o) => o.values().for_each(|v| self.add_value(v)),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    pub fn merge(&mut self, other: &Secrets) {
        for v in &other.values {
            self.add(v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many distinct secret strings.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether `text` holds any secret.
    pub fn contains_any(&self, text: &[u8]) -> bool {
        self.values
            .iter()
            .any(|s| memfind(text, s.as_bytes()).is_some())
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.values {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// The distinct secret strings (for tests that grep outputs).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Keys collected while walking values: every dotted key that is secret.
pub type SecretKeys = BTreeSet<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert!(is_secret_key("db.password"));
        assert!(is_secret_key("api_token"));
        assert!(is_secret_key("licence.key"));
        assert!(is_secret_key("aws.SECRET"));
        assert!(!is_secret_key("db.host"));
        assert!(!is_secret_key("keyboard.layout"));
    }

    #[test]
    fn masks_longest_first() {
        let mut s = Secrets::new();
        s.add("abc");
        s.add("abcdef");
        assert_eq!(s.mask("x abcdef y abc"), format!("x {MASK} y {MASK}"));
        assert!(s.contains_any(b"..abc.."));
        assert!(!s.contains_any(b"ab"));
    }
}
