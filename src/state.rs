//! imprint's own state: `/var/lib/imprint/` (0700) and the run lock
//! `/run/imprint/lock` (SPEC §5).

use crate::error::ExitCode;
use crate::root::{self, Root};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "another imprint run holds {path}; not interleaving writes (try again when it is done)"
    )]
    Locked { path: PathBuf },
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl StateError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StateError::Locked { .. } => ExitCode::TempFail,
            StateError::Io { .. } => ExitCode::CantCreate,
            StateError::Corrupt { .. } => ExitCode::DataErr,
        }
    }
}

/// The state directory of a root.
pub fn dir(root: &Root) -> PathBuf {
    root.join(root::STATE_DIR)
}

/// The exclusive run lock; released on drop.
pub struct Lock {
    _file: std::fs::File,
}

/// Take the run lock without waiting; a held lock is `StateError::Locked`.
pub fn lock(root: &Root) -> Result<Lock, StateError> {
    let _ = root;
    todo!("lock")
}
