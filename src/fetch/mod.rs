//! Stage 2, fetch: the instance-id and the raw user-data (and meta-data where
//! the source has it), from the identified datasource (SPEC §1.2).
//!
//! One module per source behind one trait, [`Provider`]. A provider fetches
//! everything in one go (never lazily, so the network is touched once) and
//! returns `Ok(None)` when its source is simply not there (no seed, no
//! config drive); "no user-data" is an empty `user_data`, never an error.
//! One dispatch `match` from datasource to provider, with the fallbacks
//! (OpenStack: config drive, then metadata service) written in the arm.

use crate::identify::{Datasource, Identified, Request};
use crate::root::Root;
use std::time::Duration;

pub mod azure;
pub mod digitalocean;
pub mod ec2;
pub mod file;
pub mod gce;
pub mod http;
pub mod iso9660;
pub mod mount;
pub mod nocloud;
pub mod openstack;

/// What a datasource gave.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub instance_id: String,
    /// Raw user-data bytes; empty when the instance has none.
    pub user_data: Vec<u8>,
    pub vendor_data: Option<Vec<u8>>,
    pub hostname: Option<String>,
    /// Raw meta-data as the source gave it (NoCloud `meta-data` YAML,
    /// OpenStack `meta_data.json`), when it has one document for it.
    pub meta_data: Option<Vec<u8>>,
    /// Where it came from, for messages and the report: a seed directory, a
    /// device, or the metadata service's base URL.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} is larger than the limit of {limit} bytes ({size} bytes or more)")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("datasource {datasource} unavailable: {message}")]
    Unavailable {
        datasource: Datasource,
        message: String,
    },
    #[error("failed to mount {device} (labelled {label}) read-only: {message}")]
    Mount {
        device: String,
        label: String,
        message: String,
    },
    #[error("datasource {datasource}: {method} {url} failed: {message}")]
    Http {
        datasource: Datasource,
        method: &'static str,
        url: String,
        message: String,
    },
    #[error("datasource {datasource} did not answer within {budget:?} (the manifest's datasource.timeout); {attempts} attempt(s), the last {method} {url}: {last}")]
    Deadline {
        datasource: Datasource,
        budget: Duration,
        method: &'static str,
        url: String,
        last: String,
        attempts: u32,
    },
    #[error("failed to parse {what}: {message}")]
    Invalid { what: String, message: String },
    /// The source answered, but what it holds for the user-data cannot be
    /// read as it says (an unknown GCE `user-data-encoding`, user-data that
    /// is not the base64 it is declared to be): invalid user-data, exit 65
    /// (asking again will not help).
    #[error("invalid user-data: {what}: {message}")]
    UserData { what: String, message: String },
}

/// Options for fetching, from the command line and manifest.
#[derive(Debug, Clone)]
pub struct Options {
    /// The total deadline shared by every request of one fetch (manifest
    /// `datasource.timeout`).
    pub timeout: Duration,
    /// Largest raw user-data accepted (SPEC §1.3: 16 MiB).
    pub max_user_data: u64,
    /// Whether a labelled seed device may be mounted. `None`: only when the
    /// root is the host (never under `--root`).
    pub allow_mount: Option<bool>,
    /// Retries and per-request timeout of network sources.
    pub retry: http::Retry,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(60),
            max_user_data: 16 << 20,
            allow_mount: None,
            retry: http::Retry::default(),
        }
    }
}

/// A datasource: fetches everything in one go (never lazily). `Ok(None)`
/// when the source is not present on this machine.
pub trait Provider {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError>;
}

/// Fetch from the identified datasource.
pub fn fetch(
    root: &Root,
    identified: &Identified,
    request: &Request,
    options: &Options,
) -> Result<Fetched, FetchError> {
    let ds = identified.datasource;
    let absent = |message: String| FetchError::Unavailable {
        datasource: ds,
        message,
    };
    let provider: Box<dyn Provider> = match ds {
        Datasource::File => Box::new(file::FileSource::new(request, options)),
        Datasource::NoCloud => Box::new(nocloud::NoCloud::new(root, identified, options)),
        Datasource::Ec2 => Box::new(ec2::Ec2::new(request, options)?),
        Datasource::Gce => Box::new(gce::Gce::new(request, options)?),
        Datasource::DigitalOcean => Box::new(digitalocean::DigitalOcean::new(request, options)?),
        Datasource::Azure => Box::new(azure::Azure::new(request, options)?),
        Datasource::OpenStack => {
            // The config drive first; the metadata service when there is none.
            match openstack::ConfigDrive::new(root, identified, options).fetch()? {
                Some(f) => return Ok(f),
                None => Box::new(openstack::MetadataService::new(request, options)?),
            }
        }
    };
    let started = std::time::Instant::now();
    let fetched = provider.fetch()?.ok_or_else(|| match ds {
        Datasource::NoCloud => absent(nocloud::absent_message(root)),
        _ => absent("the source is not present".into()),
    })?;
    tracing::debug!(
        datasource = %ds,
        source = %fetched.source,
        ms = started.elapsed().as_millis() as u64,
        bytes = fetched.user_data.len(),
        "fetched"
    );
    Ok(fetched)
}

/// Read at most `limit` bytes from `r`; more is [`FetchError::TooLarge`].
pub(crate) fn read_capped(
    r: impl std::io::Read,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, FetchError> {
    use std::io::Read;
    let mut buf = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FetchError::Read {
            what: what.to_string(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            what: what.to_string(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}
