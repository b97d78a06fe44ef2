//! The `nocloud` source: `user-data`, `meta-data` (YAML: `instance-id`,
//! `local-hostname`) and optional `vendor-data`, from
//!
//! 1. the seed named on the kernel command line (`ds=nocloud;s=file://DIR/`
//!    or `s=/DIR/`), else in the SMBIOS serial (identify decides), which
//!    must then exist;
//! 2. a seed directory, `/var/lib/cloud/seed/nocloud`, then `nocloud-net`;
//! 3. a block device labelled `cidata`/`CIDATA` (ISO 9660 or vfat, as
//!    `cloud-localds`, Vagrant's `cloud_init` and `genisoimage -V cidata`
//!    make): an ISO 9660 seed is read in-process (`iso9660`: no mount,
//!    which cost up to seconds at boot under emulation); anything else is
//!    mounted read-only for the time of the read (see `mount`). Only when
//!    the root is the host: under `--root` a device is never read, and the
//!    files belong in the seed directory instead.
//!
//! A seed with no `user-data` has none (empty). A seed whose `meta-data`
//! has no `instance-id` gets `nocloud-` and a hash of its user-data, like
//! the `file` source: same bytes, same instance. `i=ID` / `h=HOST` (or
//! `instance-id=`, `local-hostname=`) in `ds=nocloud;...` of the SMBIOS
//! serial or the kernel command line override `meta-data`, as in
//! cloud-init ([`identify::NoCloudOverrides`]).

use super::iso9660;
use super::mount::{self, read_file_opt};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{self, Identified, BY_LABEL, NOCLOUD_LABELS, SEED_DIRS};
use crate::root::{self, Root};
use std::path::{Path, PathBuf};

/// Largest `meta-data` accepted.
pub const MAX_META_DATA: u64 = 1 << 20;

pub struct NoCloud {
    root: Root,
    overrides: identify::NoCloudOverrides,
    seed: Option<String>,
    device: Option<PathBuf>,
    allow_mount: bool,
    limit: u64,
}

impl NoCloud {
    pub fn new(root: &Root, identified: &Identified, options: &Options) -> NoCloud {
        NoCloud {
            root: root.clone(),
            overrides: identified.nocloud.clone(),
            seed: identified.seed.clone(),
            device: identified.device.clone(),
            allow_mount: options.allow_mount.unwrap_or(root.is_host()),
            limit: options.max_user_data,
        }
    }
}

impl Provider for NoCloud {
    /// The seed's files, then what the SMBIOS serial and the kernel command
    /// line's `ds=nocloud;i=ID;h=HOST` say over its `meta-data`
    /// ([`identify::NoCloudOverrides`], as cloud-init).
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let overrides = &self.overrides;
        Ok(self.fetch_seed()?.map(|mut f| {
            if let Some(id) = &overrides.instance_id {
                f.instance_id = id.clone();
            }
            if let Some(h) = &overrides.hostname {
                f.hostname = Some(h.clone());
            }
            f
        }))
    }
}

impl NoCloud {
    fn fetch_seed(&self) -> Result<Option<Fetched>, FetchError> {
        if let Some(seed) = &self.seed {
            let dir = seed_path(&self.root, seed)?;
            if !dir.is_dir() {
                return Err(FetchError::Unavailable {
                    datasource: identify::Datasource::NoCloud,
                    message: format!(
                        "the seed {seed} named on the kernel command line (or in the SMBIOS serial) is not a directory ({})",
                        dir.display()
                    ),
                });
            }
            return read_seed(&dir, &display_in(&self.root, &dir), self.limit).map(Some);
        }
        for d in SEED_DIRS {
            let dir = self.root.join(d);
            if identify::seed_dir_present(&dir) {
                return read_seed(&dir, &format!("/{d}"), self.limit).map(Some);
            }
        }
        let device = match &self.device {
            Some(d) => Some(d.clone()),
            None => identify::find_label(&self.root, NOCLOUD_LABELS, &mut Vec::new()),
        };
        let Some(device) = device else {
            return Ok(None);
        };
        if !self.allow_mount {
            return Err(FetchError::Unavailable {
                datasource: identify::Datasource::NoCloud,
                message: format!(
                    "found the seed device {} (labelled cidata), but devices are read only \
                     when the root is the host, not under --root; put the seed's files in \
                     {}/{} instead",
                    device.display(),
                    self.root.dir().display(),
                    SEED_DIRS[0]
                ),
            });
        }
        let run_dir = self.root.join(root::RUN_DIR);
        read_device(&device, &run_dir, self.limit).map(Some)
    }
}

/// Read a seed device: in-process when it is ISO 9660, else mounted.
pub fn read_device(device: &Path, run_dir: &Path, limit: u64) -> Result<Fetched, FetchError> {
    let what = device.display().to_string();
    match iso9660::open(device)? {
        iso9660::Opened::Seed(seed) => {
            tracing::debug!(
                device = %what,
                names = ?seed.names,
                volume = %seed.volume_id,
                "reading the ISO 9660 seed in-process"
            );
            let fetched = read_seed_from(&seed, &what, limit)?;
            if fetched.meta_data.is_none() && fetched.user_data.is_empty() {
                let names: Vec<&str> = seed
                    .entries
                    .iter()
                    .take(8)
                    .map(|e| e.name.as_str())
                    .collect();
                tracing::warn!(
                    "the seed {what} has neither user-data nor meta-data at its root \
                     (it holds: {}); was it made without Rock Ridge or Joliet names \
                     (genisoimage -r -J)?",
                    names.join(", ")
                );
            }
            Ok(fetched)
        }
        iso9660::Opened::Declined(why) => {
            tracing::debug!(device = %what, "not read in-process ({why}); mounting it");
            mount::with_mounted(device, "cidata", run_dir, mount::SEED_FS_TYPES, |dir| {
                read_seed(dir, &what, limit)
            })
        }
    }
}

/// The seed device whose read failed, when `e` is the failure of a NoCloud
/// fetch that went to a labelled device and found it there but could not
/// read it: a failed mount, an I/O error, a damaged image, a `meta-data`
/// that does not parse. `None` for anything else: a seed named on the
/// kernel command line (or in the SMBIOS serial) or a seed directory (read
/// before any device), a seed that is not there at all
/// ([`FetchError::Unavailable`]), user-data over the size limit (invalid
/// user-data). The pipeline lets the seal of a sealed instance stand on it
/// (docs/lockout.md).
pub fn unreadable_device(root: &Root, identified: &Identified, e: &FetchError) -> Option<PathBuf> {
    if identified.datasource != identify::Datasource::NoCloud
        || identified.seed.is_some()
        || !matches!(
            e,
            FetchError::Read { .. } | FetchError::Invalid { .. } | FetchError::Mount { .. }
        )
        || SEED_DIRS
            .iter()
            .any(|d| identify::seed_dir_present(&root.join(d)))
    {
        return None;
    }
    identified
        .device
        .clone()
        .or_else(|| identify::find_label(root, NOCLOUD_LABELS, &mut Vec::new()))
}

/// The message when no seed was found anywhere.
pub fn absent_message(root: &Root) -> String {
    let _ = root;
    format!(
        "no NoCloud seed found: looked in /{}, and for /{BY_LABEL}/{{{}}} and a \
         seed-sized device so labelled in /{}",
        SEED_DIRS.join(", /"),
        NOCLOUD_LABELS.join(","),
        crate::blockdev::SYS_BLOCK
    )
}

fn display_in(root: &Root, p: &Path) -> String {
    match p.strip_prefix(root.dir()) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// The directory of a seed named on the kernel command line (or in the
/// SMBIOS serial)
/// (`file:///DIR/` or `/DIR/`), inside the root.
pub fn seed_path(root: &Root, seed: &str) -> Result<PathBuf, FetchError> {
    let path = seed.strip_prefix("file://").unwrap_or(seed);
    if !path.starts_with('/') {
        return Err(FetchError::Unavailable {
            datasource: identify::Datasource::NoCloud,
            message: format!(
                "the seed {seed:?} on the kernel command line (or in the SMBIOS serial) is not a local directory \
                 (file:///DIR/ or /DIR/); network seeds are not supported: use a seed \
                 directory, a cidata device, or a network datasource"
            ),
        });
    }
    match Root::rel(path) {
        Some(rel) => Ok(root.join(rel)),
        None => Err(FetchError::Unavailable {
            datasource: identify::Datasource::NoCloud,
            message: format!("the seed {seed:?} on the kernel command line (or in the SMBIOS serial) has '..' or is '/'"),
        }),
    }
}

/// What imprint uses of NoCloud's meta-data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaData {
    pub instance_id: Option<String>,
    pub local_hostname: Option<String>,
}

/// Parse NoCloud `meta-data` (YAML, or JSON): a map with `instance-id` and
/// `local-hostname` (or `hostname`). An empty document is an empty map.
pub fn parse_meta_data(text: &str) -> Result<MetaData, String> {
    if text.trim().is_empty() {
        return Ok(MetaData::default());
    }
    let v = crate::yaml::parse_value(text)
        .map_err(|e| e.to_string())?
        .value;
    let map = match v {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => return Ok(MetaData::default()),
        other => {
            return Err(format!(
                "expected a map of keys like instance-id and local-hostname, found {}",
                kind(&other)
            ))
        }
    };
    let scalar = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!("{key}: expected a string, found {}", kind(other))),
        }
    };
    Ok(MetaData {
        instance_id: scalar("instance-id")?.filter(|s| !s.is_empty()),
        local_hostname: match scalar("local-hostname")? {
            Some(h) => Some(h),
            None => scalar("hostname")?,
        }
        .filter(|s| !s.is_empty()),
    })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// The files of a seed, by name: a directory, or an ISO 9660 image.
pub trait SeedFiles {
    /// The file `name`, at most `limit` bytes; `Ok(None)` when absent.
    fn read(&self, name: &str, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError>;
}

/// A directory's files (a seed directory, a mounted device).
pub struct Dir<'a>(pub &'a Path);

impl SeedFiles for Dir<'_> {
    fn read(&self, name: &str, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError> {
        read_file_opt(&self.0.join(name), limit, what)
    }
}

impl<R: iso9660::ReadAt> SeedFiles for iso9660::Seed<R> {
    fn read(&self, name: &str, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError> {
        iso9660::Seed::read(self, name, limit, what)
    }
}

/// Read a seed directory (or a mounted device): `user-data`, `meta-data`,
/// `vendor-data`. `what` names it in messages.
pub fn read_seed(dir: &Path, what: &str, limit: u64) -> Result<Fetched, FetchError> {
    read_seed_from(&Dir(dir), what, limit)
}

/// Read a seed's `user-data`, `meta-data`, `vendor-data`.
pub fn read_seed_from(
    files: &impl SeedFiles,
    what: &str,
    limit: u64,
) -> Result<Fetched, FetchError> {
    let user_data = files
        .read("user-data", limit, &format!("user-data of {what}"))?
        .unwrap_or_default();
    let meta_raw = files.read("meta-data", MAX_META_DATA, &format!("meta-data of {what}"))?;
    let vendor_data = files.read("vendor-data", limit, &format!("vendor-data of {what}"))?;
    let meta = match &meta_raw {
        None => MetaData::default(),
        Some(b) => {
            let text = std::str::from_utf8(b).map_err(|_| FetchError::Invalid {
                what: format!("meta-data of {what}"),
                message: "not UTF-8 text".into(),
            })?;
            parse_meta_data(text).map_err(|message| FetchError::Invalid {
                what: format!("meta-data of {what}"),
                message,
            })?
        }
    };
    let instance_id = meta
        .instance_id
        .unwrap_or_else(|| format!("nocloud-{}", super::file::short_hash(&user_data)));
    Ok(Fetched {
        instance_id,
        user_data,
        vendor_data,
        hostname: meta.local_hostname,
        meta_data: meta_raw,
        source: what.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_shapes() {
        let m = parse_meta_data("instance-id: iid-1\nlocal-hostname: web-1\n").unwrap();
        assert_eq!(m.instance_id.as_deref(), Some("iid-1"));
        assert_eq!(m.local_hostname.as_deref(), Some("web-1"));
        let m = parse_meta_data("{\"instance-id\": 42, \"hostname\": \"h\"}").unwrap();
        assert_eq!(m.instance_id.as_deref(), Some("42"));
        assert_eq!(m.local_hostname.as_deref(), Some("h"));
        assert_eq!(parse_meta_data("\n").unwrap(), MetaData::default());
        let e = parse_meta_data("- a\n- b\n").unwrap_err();
        assert!(e.contains("found a list"), "{e}");
        let e = parse_meta_data("instance-id: [1]\n").unwrap_err();
        assert!(e.contains("instance-id"), "{e}");
        assert!(parse_meta_data("instance-id: 'x\n").is_err());
    }

    #[test]
    fn seed_paths() {
        let r = Root::at("/tmp/r");
        assert_eq!(
            seed_path(&r, "file:///srv/seed/").unwrap(),
            PathBuf::from("/tmp/r/srv/seed")
        );
        assert_eq!(
            seed_path(&r, "/srv/seed").unwrap(),
            PathBuf::from("/tmp/r/srv/seed")
        );
        assert!(seed_path(&r, "http://10.0.0.1/").is_err());
        assert!(seed_path(&r, "file:///a/../../b").is_err());
    }
}
