//! The `gce` source: Google Compute Engine's metadata server.
//!
//! Every request carries `Metadata-Flavor: Google` (without it the server
//! answers 403), and every answer whose body is used (a 2xx) must carry it
//! back: a server that does not is not Google's metadata server, and
//! imprint stops. A 404 is "absent" with or without the header (cloud-init
//! checks no response header at all). Paths under
//! `/computeMetadata/v1/`: `instance/id` (required; a 404 from Google's
//! server, with its header, is retried within the budget), `instance/hostname`,
//! `instance/attributes/user-data` (404 = none) and
//! `instance/attributes/user-data-encoding` (`base64`: the user-data is
//! decoded here, as cloud-init does; any other value is invalid user-data,
//! exit 65, where cloud-init ignores it and reads the bytes as they are).
//!
//! The endpoint is the link-local address, not `metadata.google.internal`:
//! no DNS in early boot.

use super::http::{self, Client, Req};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{Datasource, Request};
use base64::Engine;

pub const ENDPOINTS: &[&str] = &["http://169.254.169.254"];
pub const PREFIX: &str = "/computeMetadata/v1";
pub const FLAVOR_HEADER: &str = "Metadata-Flavor";
pub const FLAVOR: &str = "Google";

pub struct Gce {
    base: String,
    client: Client,
    limit: u64,
}

impl Gce {
    pub fn new(request: &Request, options: &Options) -> Result<Gce, FetchError> {
        let bases = http::bases(Datasource::Gce, request.metadata_url.as_deref(), ENDPOINTS)?;
        Ok(Gce {
            base: bases[0].clone(),
            client: Client::new(Datasource::Gce, options.timeout, options.retry.clone()),
            limit: options.max_user_data,
        })
    }

    /// GET `path`: `Ok(None)` on 404.
    fn get(&self, path: &str, what: &'static str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let (req, resp) = self.send(path, what, cap, &[])?;
        http::ok_or_absent(&self.client, &req, resp)
    }

    /// GET `path`, retrying `also_retry` too when the answer is Google's
    /// (a 404 from Google's server, with its header); an answer that must
    /// be Google's and is not is an error. The answer, and the request
    /// that got it.
    fn send(
        &self,
        path: &str,
        what: &'static str,
        cap: u64,
        also_retry: &'static [u16],
    ) -> Result<(Req, http::Resp), FetchError> {
        let mut req = Req::get(format!("{}{PREFIX}/{path}", self.base), what, cap)
            .header(FLAVOR_HEADER, FLAVOR)
            .also_retry(also_retry);
        req.also_retry_if = Some(|r| r.header(FLAVOR_HEADER) == Some(FLAVOR));
        let resp = self.client.send(&req)?;
        // An answer whose body is used must be Google's, and so must a 404
        // on a path that has to be there (`also_retry`: instance/id, where
        // a foreign server's 404 is said at once, not retried). Elsewhere a
        // 404 means absent with or without the header (Google's server has
        // been seen answering 404 without it, googleapis/gcp-metadata#657,
        // and `user-data-encoding` is nearly always absent); other statuses
        // are errors either way, quoting the server's text.
        let must_be_google =
            (200..=299).contains(&resp.status) || (resp.status == 404 && also_retry.contains(&404));
        if must_be_google && resp.header(FLAVOR_HEADER) != Some(FLAVOR) {
            return Err(self.client.error(
                &req,
                format!(
                    "status {}{}: the answer has no \"Metadata-Flavor: Google\" header, so \
                     this is not a GCE metadata server",
                    resp.status,
                    resp.snippet()
                ),
            ));
        }
        Ok((req, resp))
    }
}

impl Provider for Gce {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let cap = super::nocloud::MAX_META_DATA;
        // 404 here is a server not ready yet (cloud-init polls it until
        // 2xx): Google's is retried within the budget, so never the answer
        // (a 404 for good ends at the deadline), and any other is refused
        // by `send` as not Google's; any other status is an error.
        let (req, resp) = self.send("instance/id", "instance-id", cap, &[404])?;
        let instance_id = http::text(
            http::ok(&self.client, &req, resp)?,
            "instance-id",
            "instance/id",
        )?;
        let hostname = self
            .get("instance/hostname", "hostname", cap)?
            .and_then(|b| http::text(b, "hostname", "instance/hostname").ok());
        let mut user_data = self
            .get("instance/attributes/user-data", "user-data", self.limit)?
            .unwrap_or_default();
        let encoding = self
            .get(
                "instance/attributes/user-data-encoding",
                "user-data-encoding",
                256,
            )?
            .map(|b| String::from_utf8_lossy(&b).trim().to_ascii_lowercase());
        match encoding.as_deref() {
            None | Some("") => {}
            Some("base64") | Some("b64") => {
                let text: Vec<u8> = user_data
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                user_data = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map_err(|e| FetchError::UserData {
                        what: "instance/attributes/user-data (user-data-encoding: base64)".into(),
                        message: format!(
                            "not valid base64: {e}; encode it with base64, or remove the \
                             user-data-encoding metadata key if it is plain"
                        ),
                    })?;
            }
            // cloud-init logs "unknown user-data-encoding ..., ignoring" and
            // uses the raw bytes; a misread user-data at first boot is worse
            // than a clear stop (docs/datasources.md).
            Some(other) => {
                return Err(FetchError::UserData {
                    what: "instance/attributes/user-data-encoding".into(),
                    message: format!(
                        "{other:?} is not an encoding imprint knows (the only one is base64); \
                         set user-data-encoding to base64 with base64-encoded user-data, or \
                         remove the key for plain user-data (cloud-init would ignore it and \
                         read the bytes as they are; imprint refuses rather than misread them)"
                    ),
                })
            }
        }
        Ok(Some(Fetched {
            instance_id,
            user_data,
            hostname,
            source: self.base.clone(),
            ..Fetched::default()
        }))
    }
}
