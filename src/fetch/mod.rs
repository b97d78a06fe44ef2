//! Stage 2, fetch: the instance-id and the raw user-data (and meta-data where
//! the source has it), from the identified datasource (SPEC §1.2).
//!
//! One module per source behind one trait; absence (no user-data) is
//! `Ok(None)`/empty, not an error. One dispatch `match` from datasource to
//! provider.

use crate::identify::{Datasource, Identified, Request};
use crate::root::Root;
use std::time::Duration;

pub mod file;

/// What a datasource gave.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub instance_id: String,
    /// Raw user-data bytes; empty when the instance has none.
    pub user_data: Vec<u8>,
    pub vendor_data: Option<Vec<u8>>,
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to read user-data from {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("user-data from {what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("datasource {datasource} unavailable: {message}")]
    Unavailable {
        datasource: Datasource,
        message: String,
    },
}

/// Options for fetching, from the command line and manifest.
#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    /// Largest raw user-data accepted (SPEC §1.3: 16 MiB).
    pub max_user_data: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(60),
            max_user_data: 16 << 20,
        }
    }
}

/// A datasource: fetches everything in one go (never lazily).
pub trait Provider {
    fn fetch(&self) -> Result<Fetched, FetchError>;
}

/// Fetch from the identified datasource.
pub fn fetch(
    root: &Root,
    identified: &Identified,
    request: &Request,
    options: &Options,
) -> Result<Fetched, FetchError> {
    let provider: Box<dyn Provider> = match identified.datasource {
        Datasource::File => Box::new(file::FileSource::new(request, options)),
        other => {
            let _ = root;
            return Err(FetchError::Unavailable {
                datasource: other,
                message: "not implemented yet".into(),
            });
        }
    };
    provider.fetch()
}
