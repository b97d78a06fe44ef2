//! The `file` source: `--user-data FILE|-`. The instance-id is
//! `--instance-id`, else a hash of the user-data (so the same bytes are the
//! same instance, and changed bytes configure again).

use super::{read_capped, FetchError, Fetched, Options, Provider};
use crate::identify::{Request, UserDataArg};
use sha2::{Digest, Sha256};
use std::io::Read;

pub struct FileSource {
    arg: Option<UserDataArg>,
    instance_id: Option<String>,
    limit: u64,
}

impl FileSource {
    pub fn new(request: &Request, options: &Options) -> FileSource {
        FileSource {
            arg: request.user_data.clone(),
            instance_id: request.instance_id.clone(),
            limit: options.max_user_data,
        }
    }
}

/// The instance-id the file source gives user-data without `--instance-id`.
pub fn hash_instance_id(user_data: &[u8]) -> String {
    format!("file-{}", short_hash(user_data))
}

/// The first 8 bytes of the sha256 of `bytes`, in hex.
pub fn short_hash(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Provider for FileSource {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let (what, reader): (String, Box<dyn Read>) = match &self.arg {
            None | Some(UserDataArg::Stdin) => {
                ("standard input".into(), Box::new(std::io::stdin()))
            }
            Some(UserDataArg::Path(p)) => {
                let f = std::fs::File::open(p).map_err(|source| FetchError::Read {
                    what: format!("user-data file {}", p.display()),
                    source,
                })?;
                (p.display().to_string(), Box::new(f))
            }
        };
        let buf = read_capped(reader, self.limit, &format!("user-data from {what}"))?;
        let instance_id = self
            .instance_id
            .clone()
            .unwrap_or_else(|| hash_instance_id(&buf));
        Ok(Some(Fetched {
            instance_id,
            user_data: buf,
            source: what,
            ..Fetched::default()
        }))
    }
}
