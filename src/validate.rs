//! Stage 5, validate: the merged values against the manifest's `values`
//! declarations (SPEC §1.5): types, required keys, defaults, enums. Every
//! problem in one report; secret values never appear in a message.

use crate::manifest::Manifest;
use crate::merge::{Merged, Notice, WriteFile};
use crate::model::Values;
use crate::secret::Secrets;

/// Values checked and completed with defaults.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub values: Values,
    pub write_files: Vec<WriteFile>,
    pub warnings: Vec<Notice>,
    /// Every secret string (by declaration or key name).
    pub secrets: Secrets,
}

/// One problem with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `db.port`.
    pub key: String,
    pub expected: String,
    /// What was found (masked when the value is secret).
    pub found: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid values:{}", .problems.iter().map(|p| format!("\n  {}: expected {}, found {}", p.key, p.expected, p.found)).collect::<String>())]
pub struct ValidateError {
    pub problems: Vec<Problem>,
}

/// Validate and complete the values.
pub fn validate(merged: Merged, manifest: &Manifest) -> Result<Validated, ValidateError> {
    let _ = (merged, manifest);
    todo!("validate")
}
