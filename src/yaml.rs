//! YAML with cloud-init's meaning (PyYAML, YAML 1.1): `0644` is octal,
//! `yes/no/on/off` are booleans. Shared by `decode`/`merge` (user-data) and
//! `manifest`. Errors carry a 1-based line and column.

use serde::de::DeserializeOwned;
use std::fmt;

/// A YAML syntax or shape error, located in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based; 0 when the parser could not say.
    pub line: u64,
    /// 1-based; 0 when the parser could not say.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

/// The parser options that give YAML 1.1 (PyYAML) semantics.
pub fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.legacy_octal_numbers = true;
    o.strict_booleans = false;
    o.with_snippet = false;
    o
}

/// Parse `text` into `T` with YAML 1.1 semantics.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        YamlError {
            line,
            column,
            message: e.to_string(),
        }
    })
}
