//! Stage 7, plan: compare each rendered file with what is on disk (content,
//! mode, owner); only changes are written, only units whose files changed
//! are restarted or reloaded (SPEC §1.7).
//!
//! [`read_disk`] is the one impure half (reads the targets and the root's
//! passwd/group); [`plan`] is pure.

use crate::error::ExitCode;
use crate::render::{Rendered, RenderedFile};
use crate::root::Root;
use crate::secret::Secrets;
use std::collections::BTreeMap;

/// A file as it is on disk now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What is on disk for every rendered path, and resolved owners.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// Path -> existing file (absent: `None`).
    pub files: BTreeMap<String, Option<Existing>>,
    /// Owner spec text (`user[:group]`) -> (uid, gid).
    pub owners: BTreeMap<String, (u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Content,
    Metadata,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    pub file: RenderedFile,
    /// Final bytes (for `append`, existing + new).
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub kind: ChangeKind,
    pub previous: Option<Existing>,
}

/// What apply will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<FileChange>,
    /// Paths already as rendered.
    pub unchanged: Vec<String>,
    pub daemon_reload: bool,
    pub restart: Vec<String>,
    pub reload: Vec<String>,
    pub enable: Vec<String>,
    pub secrets: Secrets,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: owner {owner:?}: {message}")]
    Owner {
        path: String,
        owner: String,
        message: String,
    },
}

impl PlanError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            PlanError::Read { .. } => ExitCode::CantCreate,
            PlanError::Owner { .. } => ExitCode::DataErr,
        }
    }
}

/// Read what is on disk for every rendered file (the impure half).
pub fn read_disk(root: &Root, rendered: &Rendered) -> Result<Disk, PlanError> {
    let _ = (root, rendered);
    todo!("read_disk")
}

/// Compare and decide (pure).
pub fn plan(rendered: Rendered, disk: &Disk) -> Result<Plan, PlanError> {
    let _ = (rendered, disk);
    todo!("plan")
}

impl Plan {
    /// The plan as text: one line per change and a unified diff per file,
    /// secret values masked.
    pub fn display(&self) -> String {
        todo!("plan display")
    }
}
