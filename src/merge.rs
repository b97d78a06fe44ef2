//! Stage 4, merge: parts -> one document (SPEC §1.4).
//!
//! Values: the top-level keys of every JSON or plain-YAML part and the
//! `imprint:` key of every `#cloud-config` part, deep-merged in part order
//! (later parts win, maps merge, lists are replaced). `write_files` entries of
//! all parts are concatenated in order (cloud-init would replace the list).
//! Unsupported directives and part types are reported by name with what to do
//! instead; the manifest decides whether they are errors or warnings.

use crate::decode::Part;
use crate::manifest::Manifest;
use crate::model::{Origin, OwnerSpec, Values};

/// A `write_files` entry as user-data gave it (content still encoded).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFile {
    pub origin: Origin,
    pub path: String,
    pub content: String,
    /// The `encoding:` as written (normalised by render).
    pub encoding: Option<String>,
    pub permissions: Option<crate::model::Mode>,
    pub owner: Option<OwnerSpec>,
    pub append: bool,
    pub defer: bool,
}

/// Something user-data asked for that imprint does not do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// 1-based part number.
    pub part: usize,
    /// What: e.g. "cloud-config key `runcmd`" or "part type text/x-shellscript".
    pub what: String,
    /// What to do instead.
    pub hint: String,
}

/// The merged document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub values: Values,
    pub write_files: Vec<WriteFile>,
    /// Unsupported things, when the manifest says `unsupported: warn`.
    pub warnings: Vec<Notice>,
}

/// One problem found while merging (syntax, shape or unsupported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub part: usize,
    /// 1-based line and column in the part, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid user-data: {}", render_problems(.problems))]
pub struct MergeError {
    pub problems: Vec<Problem>,
}

fn render_problems(problems: &[Problem]) -> String {
    let mut s = String::new();
    for p in problems {
        s.push_str("\n  part ");
        s.push_str(&p.part.to_string());
        if let (Some(l), Some(c)) = (p.line, p.column) {
            s.push_str(&format!(", line {l}, column {c}"));
        }
        s.push_str(": ");
        s.push_str(&p.message);
    }
    s
}

/// Merge the parts.
pub fn merge(parts: &[Part], manifest: &Manifest) -> Result<Merged, MergeError> {
    let _ = (parts, manifest);
    todo!("merge")
}
