//! The `file` source: `--user-data FILE|-`. The instance-id is
//! `--instance-id`, else a hash of the user-data (so the same bytes are the
//! same instance, and changed bytes configure again).

use super::{FetchError, Fetched, Options, Provider};
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
    let h = Sha256::digest(user_data);
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("file-{hex}")
}

impl Provider for FileSource {
    fn fetch(&self) -> Result<Fetched, FetchError> {
        let (what, reader): (String, Box<dyn Read>) = match &self.arg {
            None | Some(UserDataArg::Stdin) => {
                ("standard input".into(), Box::new(std::io::stdin()))
            }
            Some(UserDataArg::Path(p)) => {
                let f = std::fs::File::open(p).map_err(|source| FetchError::Read {
                    what: p.display().to_string(),
                    source,
                })?;
                (p.display().to_string(), Box::new(f))
            }
        };
        let mut buf = Vec::new();
        reader
            .take(self.limit + 1)
            .read_to_end(&mut buf)
            .map_err(|source| FetchError::Read {
                what: what.clone(),
                source,
            })?;
        if buf.len() as u64 > self.limit {
            return Err(FetchError::TooLarge {
                what,
                size: buf.len() as u64,
                limit: self.limit,
            });
        }
        let instance_id = self
            .instance_id
            .clone()
            .unwrap_or_else(|| hash_instance_id(&buf));
        Ok(Fetched {
            instance_id,
            user_data: buf,
            ..Fetched::default()
        })
    }
}
