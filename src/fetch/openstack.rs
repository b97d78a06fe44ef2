//! The `openstack` source: the config drive first, then the metadata
//! service (the fallback is written in `fetch`'s dispatch arm).
//!
//! - Config drive: cloud-init's seed directory for it,
//!   `/var/lib/cloud/seed/config_drive` (when it holds `meta_data.json`;
//!   read under `--root` too, as a NoCloud seed directory is), else a
//!   device labelled `config-2`, read like a NoCloud seed device (only
//!   when the root is the host): ISO 9660, as Nova writes it, in-process
//!   (`iso9660`, no mount: mounting cost up to seconds at boot under
//!   emulation), anything else (a vfat drive) mounted read-only for the
//!   time of the read (`mount`). Files `openstack/latest/meta_data.json`
//!   (`uuid` is the instance-id, `hostname`) and
//!   `openstack/latest/user_data` (absent = none). Both are local: a
//!   sealed instance reads its `uuid` there at every boot and compares it
//!   with the seal, so a new instance booted from a snapshot of a
//!   configured one is configured (src/pipeline.rs). An ISO 9660 drive
//!   whose volume descriptors or root directory cannot be read is
//!   "unavailable", as a drive that fails to mount is: a sealed instance
//!   then keeps its seal.
//! - Metadata service: the same two documents under
//!   `http://169.254.169.254/openstack/latest/` (404 on `user_data` = none;
//!   on `meta_data.json`, a service not ready yet: retried within the
//!   budget). No header is needed.
//!
//! Vendor data (`vendor_data.json`) is not read.

use super::http::{self, Client, Req};
use super::iso9660;
use super::mount;
use super::nocloud::{self, SeedFiles};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{
    self, Datasource, Identified, Request, CONFIG_DRIVE_LABELS, CONFIG_DRIVE_SEED_DIR,
};
use crate::root::{self, Root};
use std::path::{Path, PathBuf};

pub const ENDPOINTS: &[&str] = &["http://169.254.169.254"];
pub const META_DATA: &str = "openstack/latest/meta_data.json";
pub const USER_DATA: &str = "openstack/latest/user_data";

/// The instance-id and hostname of `meta_data.json`.
pub fn parse_meta_data(bytes: &[u8], what: &str) -> Result<(String, Option<String>), FetchError> {
    let invalid = |message: String| FetchError::Invalid {
        what: what.to_string(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let uuid = v
        .get("uuid")
        .and_then(|u| u.as_str())
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("no \"uuid\" (the instance-id)".into()))?;
    let hostname = v
        .get("hostname")
        .and_then(|h| h.as_str())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    Ok((uuid.to_string(), hostname))
}

/// Read a config drive's files from `dir` (a mounted drive, or the seed
/// directory).
pub fn read_config_drive(dir: &Path, what: &str, limit: u64) -> Result<Fetched, FetchError> {
    read_config_drive_from(&nocloud::Dir(dir), what, limit)
}

/// Read a config drive's `meta_data.json` and `user_data` (from a
/// directory or an ISO 9660 image). `what` names it in messages.
pub fn read_config_drive_from(
    files: &impl SeedFiles,
    what: &str,
    limit: u64,
) -> Result<Fetched, FetchError> {
    let meta_what = format!("{META_DATA} of {what}");
    let meta = files
        .read(META_DATA, nocloud::MAX_META_DATA, &meta_what)?
        .ok_or_else(|| FetchError::Unavailable {
            datasource: Datasource::OpenStack,
            message: format!("the config drive {what} has no {META_DATA}"),
        })?;
    let (instance_id, hostname) = parse_meta_data(&meta, &meta_what)?;
    let user_data = files
        .read(USER_DATA, limit, &format!("{USER_DATA} of {what}"))?
        .unwrap_or_default();
    Ok(Fetched {
        instance_id,
        user_data,
        hostname,
        meta_data: Some(meta),
        source: what.to_string(),
        ..Fetched::default()
    })
}

/// The config drive. `Ok(None)` when there is none.
pub struct ConfigDrive {
    root: Root,
    device: Option<PathBuf>,
    allow_mount: bool,
    limit: u64,
}

impl ConfigDrive {
    pub fn new(root: &Root, identified: &Identified, options: &Options) -> ConfigDrive {
        ConfigDrive {
            root: root.clone(),
            device: identified.device.clone(),
            allow_mount: options.allow_mount.unwrap_or(root.is_host()),
            limit: options.max_user_data,
        }
    }
}

impl Provider for ConfigDrive {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let dir = self.root.join(CONFIG_DRIVE_SEED_DIR);
        if identify::config_drive_dir_present(&dir) {
            return read_config_drive(&dir, &format!("/{CONFIG_DRIVE_SEED_DIR}"), self.limit)
                .map(Some);
        }
        let device = match &self.device {
            Some(d) => Some(d.clone()),
            None => identify::find_label(&self.root, CONFIG_DRIVE_LABELS, &mut Vec::new()),
        };
        let Some(device) = device else {
            return Ok(None);
        };
        if !self.allow_mount {
            return Err(FetchError::Unavailable {
                datasource: Datasource::OpenStack,
                message: format!(
                    "found the config drive {} (labelled config-2), but devices are read \
                     only when the root is the host, not under --root; put the drive's files \
                     in {}/{CONFIG_DRIVE_SEED_DIR} instead",
                    device.display(),
                    self.root.dir().display(),
                ),
            });
        }
        read_device(&device, &self.root.join(root::RUN_DIR), self.limit).map(Some)
    }
}

/// Read a config drive device: in-process when it is ISO 9660 (as Nova
/// writes it), else (vfat) mounted under `run_dir`.
pub fn read_device(device: &Path, run_dir: &Path, limit: u64) -> Result<Fetched, FetchError> {
    let what = device.display().to_string();
    // The volume descriptors and the root directory are what the kernel's
    // mount reads: an image it cannot read is a drive that did not mount.
    let opened = iso9660::open(device).map_err(|e| FetchError::Unavailable {
        datasource: Datasource::OpenStack,
        message: format!("the config drive {what} could not be read: {e}"),
    })?;
    match opened {
        iso9660::Opened::Seed(seed) => {
            tracing::debug!(
                device = %what,
                names = ?seed.names,
                volume = %seed.volume_id,
                "reading the ISO 9660 config drive in-process"
            );
            let fetched = read_config_drive_from(&seed, &what, limit);
            if let Err(FetchError::Unavailable { .. }) = &fetched {
                // No meta_data.json: say what the drive holds.
                let names = |dir: &str| -> String {
                    match seed.list(dir) {
                        Ok(Some(entries)) => entries
                            .iter()
                            .take(8)
                            .map(|e| e.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        Ok(None) => "absent".into(),
                        Err(e) => e.to_string(),
                    }
                };
                tracing::warn!(
                    "the config drive {what} has no {META_DATA} ({:?} names; its root \
                     holds: {}; openstack/latest: {})",
                    seed.names,
                    names(""),
                    names("openstack/latest")
                );
            }
            fetched
        }
        iso9660::Opened::Declined(why) => {
            tracing::debug!(device = %what, "not read in-process ({why}); mounting it");
            mount::with_mounted(device, "config-2", run_dir, mount::SEED_FS_TYPES, |dir| {
                read_config_drive(dir, &what, limit)
            })
        }
    }
}

/// The metadata service.
pub struct MetadataService {
    base: String,
    client: Client,
    limit: u64,
}

impl MetadataService {
    pub fn new(request: &Request, options: &Options) -> Result<MetadataService, FetchError> {
        let bases = http::bases(
            Datasource::OpenStack,
            request.metadata_url.as_deref(),
            ENDPOINTS,
        )?;
        Ok(MetadataService {
            base: bases[0].clone(),
            client: Client::new(
                Datasource::OpenStack,
                options.timeout,
                options.retry.clone(),
            ),
            limit: options.max_user_data,
        })
    }
}

impl Provider for MetadataService {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        // meta_data.json holds the instance-id: a 404 there is a service
        // not ready yet (cloud-init polls it until 2xx), retried within
        // the budget.
        let req = Req::get(
            format!("{}/{META_DATA}", self.base),
            "meta_data.json",
            super::nocloud::MAX_META_DATA,
        )
        .also_retry(&[404]);
        let resp = self.client.send(&req)?;
        let meta = http::ok(&self.client, &req, resp)?;
        let (instance_id, hostname) = parse_meta_data(&meta, &req.url)?;
        let req = Req::get(
            format!("{}/{USER_DATA}", self.base),
            "user_data",
            self.limit,
        );
        let resp = self.client.send(&req)?;
        let user_data = http::ok_or_absent(&self.client, &req, resp)?.unwrap_or_default();
        Ok(Some(Fetched {
            instance_id,
            user_data,
            hostname,
            meta_data: Some(meta),
            source: self.base.clone(),
            ..Fetched::default()
        }))
    }
}
