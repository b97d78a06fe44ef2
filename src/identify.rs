//! Stage 1, identify: which datasource, without probing the network blindly
//! (SPEC §1.1).
//!
//! Order: `--datasource` / `--user-data` flags > kernel command line
//! (`imprint.datasource=NAME`, `ds=nocloud;s=...`) > the manifest's
//! `datasource.order` > a NoCloud seed that is present > DMI. A network
//! datasource is chosen only when one of these names it. Every rule's
//! evidence is kept for `imprint identify --explain`.

use crate::root::Root;
use std::fmt;
use std::path::PathBuf;

/// The datasources imprint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datasource {
    File,
    NoCloud,
    Ec2,
    Gce,
    DigitalOcean,
    Azure,
    OpenStack,
}

impl Datasource {
    pub const ALL: &'static [Datasource] = &[
        Datasource::File,
        Datasource::NoCloud,
        Datasource::Ec2,
        Datasource::Gce,
        Datasource::DigitalOcean,
        Datasource::Azure,
        Datasource::OpenStack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Datasource::File => "file",
            Datasource::NoCloud => "nocloud",
            Datasource::Ec2 => "ec2",
            Datasource::Gce => "gce",
            Datasource::DigitalOcean => "digitalocean",
            Datasource::Azure => "azure",
            Datasource::OpenStack => "openstack",
        }
    }

    /// Parse a name as written on the command line, kernel command line or
    /// manifest (case-insensitive; cloud-init's spellings accepted).
    pub fn parse(s: &str) -> Option<Datasource> {
        match s.trim().to_ascii_lowercase().as_str() {
            "file" => Some(Datasource::File),
            "nocloud" | "nocloud-net" | "nocloudnet" => Some(Datasource::NoCloud),
            "ec2" | "aws" => Some(Datasource::Ec2),
            "gce" | "google" => Some(Datasource::Gce),
            "digitalocean" | "do" => Some(Datasource::DigitalOcean),
            "azure" => Some(Datasource::Azure),
            "openstack" | "configdrive" | "config-drive" => Some(Datasource::OpenStack),
            _ => None,
        }
    }

    /// Whether fetching talks to a metadata service over the network.
    pub fn is_network(self) -> bool {
        !matches!(self, Datasource::File | Datasource::NoCloud)
    }
}

impl fmt::Display for Datasource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `--user-data` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDataArg {
    Stdin,
    Path(PathBuf),
}

/// The datasource inputs of the command line.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub datasource: Option<String>,
    pub user_data: Option<UserDataArg>,
    pub instance_id: Option<String>,
    /// Base URL override for network sources (`--metadata-url`,
    /// `IMPRINT_METADATA_URL`).
    pub metadata_url: Option<String>,
}

/// One detection rule, its evidence, and what it concluded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub rule: String,
    pub evidence: String,
    /// `Some(name)` when this rule chose the datasource.
    pub verdict: Option<String>,
}

/// The chosen datasource and why.
#[derive(Debug, Clone)]
pub struct Identified {
    pub datasource: Datasource,
    /// For NoCloud: the seed named on the kernel command line
    /// (`ds=nocloud;s=file://DIR/`), if any.
    pub seed: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("unknown datasource {name:?} (from {from}); known: file, nocloud, ec2, gce, digitalocean, azure, openstack")]
    Unknown { name: String, from: String },
    #[error("no datasource identified: nothing names one and no NoCloud seed or known platform was found (run `imprint identify --explain` for the evidence; pass --datasource or --user-data)")]
    Nothing { rules: Vec<Rule> },
}

/// Identify the datasource. Reads only local files under the root (kernel
/// command line, seed directories, DMI); never the network.
pub fn identify(
    root: &Root,
    request: &Request,
    manifest_order: &[String],
) -> Result<Identified, IdentifyError> {
    let _ = (root, request, manifest_order);
    todo!("identify")
}

/// The instance-id when it can be known without the network (NoCloud
/// meta-data, DMI ids, `--instance-id`), so a sealed instance exits at once.
pub fn offline_instance_id(
    root: &Root,
    identified: &Identified,
    request: &Request,
) -> Option<String> {
    let _ = (root, identified, request);
    None
}
