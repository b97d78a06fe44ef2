//! Stage 8, apply: write each changed file atomically, confined to the root,
//! with an in-progress journal so that a failure part-way restores every file
//! and a crash part-way is rolled back by the next run (SPEC §1.8).

use crate::plan::Plan;
use crate::root::Root;

/// A file as written (for the seal and report).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub path: String,
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub written: Vec<Written>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to write {path}: {message}; every file was rolled back")]
    Write { path: String, message: String },
    #[error("failed to write {path}: {message}; ROLLBACK FAILED for {failed:?}: restore them from {journal}")]
    RollbackFailed {
        path: String,
        message: String,
        failed: Vec<String>,
        journal: String,
    },
    #[error("failed to roll back an interrupted run from {journal}: {message}")]
    Recover { journal: String, message: String },
}

/// Roll back a run that crashed part-way (journal left behind). Returns the
/// paths restored.
pub fn recover(root: &Root) -> Result<Vec<String>, ApplyError> {
    let _ = root;
    Ok(Vec::new())
}

/// Write every change of the plan, or none.
pub fn apply(root: &Root, plan: &Plan) -> Result<Applied, ApplyError> {
    let _ = (root, plan);
    todo!("apply")
}
