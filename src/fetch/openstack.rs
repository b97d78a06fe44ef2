//! The `openstack` source: the config drive first, then the metadata
//! service (the fallback is written in `fetch`'s dispatch arm).
//!
//! - Config drive: cloud-init's seed directory for it,
//!   `/var/lib/cloud/seed/config_drive` (when it holds `meta_data.json`;
//!   read under `--root` too, as a NoCloud seed directory is), else a
//!   device labelled `config-2` (ISO 9660 or vfat), mounted read-only like
//!   a NoCloud seed (only when the root is the host), files
//!   `openstack/latest/meta_data.json` (`uuid` is the instance-id,
//!   `hostname`) and `openstack/latest/user_data` (absent = none). Both
//!   are local: a sealed instance reads its `uuid` there at every boot and
//!   compares it with the seal, so a new instance booted from a snapshot
//!   of a configured one is configured (src/pipeline.rs).
//! - Metadata service: the same two documents under
//!   `http://169.254.169.254/openstack/latest/` (404 on `user_data` = none;
//!   on `meta_data.json`, a service not ready yet: retried within the
//!   budget). No header is needed.
//!
//! Vendor data (`vendor_data.json`) is not read.

use super::http::{self, Client, Req};
use super::mount::{self, read_file_opt};
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

/// Read a config drive's files from `dir` (a mounted drive).
pub fn read_config_drive(dir: &Path, what: &str, limit: u64) -> Result<Fetched, FetchError> {
    let meta_what = format!("{META_DATA} of {what}");
    let meta = read_file_opt(
        &dir.join(META_DATA),
        super::nocloud::MAX_META_DATA,
        &meta_what,
    )?
    .ok_or_else(|| FetchError::Unavailable {
        datasource: Datasource::OpenStack,
        message: format!("the config drive {what} has no {META_DATA}"),
    })?;
    let (instance_id, hostname) = parse_meta_data(&meta, &meta_what)?;
    let user_data = read_file_opt(
        &dir.join(USER_DATA),
        limit,
        &format!("{USER_DATA} of {what}"),
    )?
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
                    "found the config drive {} (labelled config-2), but devices are mounted \
                     only when the root is the host, not under --root",
                    device.display()
                ),
            });
        }
        let what = device.display().to_string();
        let limit = self.limit;
        mount::with_mounted(
            &device,
            "config-2",
            &self.root.join(root::RUN_DIR),
            mount::SEED_FS_TYPES,
            |dir| read_config_drive(dir, &what, limit),
        )
        .map(Some)
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
