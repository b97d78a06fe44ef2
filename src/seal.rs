//! Stage 9, seal: record what was done, keyed by instance-id; from then on
//! imprint exits 77 at once on this instance (SPEC §5). Never holds a secret.

use crate::apply::Written;
use crate::root::Root;
use crate::state::StateError;
use crate::systemd::UnitAction;

/// `/var/lib/imprint/sealed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seal {
    pub instance_id: String,
    /// sha256 of the raw user-data.
    pub user_data_sha256: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub version: String,
    pub datasource: String,
    pub files: Vec<Written>,
    pub units: Vec<UnitAction>,
}

/// Read the seal, if any.
pub fn read(root: &Root) -> Result<Option<Seal>, StateError> {
    let _ = root;
    Ok(None)
}

/// Write the seal atomically.
pub fn write(root: &Root, seal: &Seal) -> Result<(), StateError> {
    let _ = (root, seal);
    todo!("seal write")
}
