//! The `digitalocean` source: the droplet metadata service,
//! `/metadata/v1/id` (required; the droplet id, also DMI's serial; a 404
//! is retried within the budget),
//! `/metadata/v1/hostname`, `/metadata/v1/user-data` (404 or empty = none)
//! and `/metadata/v1/vendor-data`. No header is needed.

use super::http::{self, Client, Req};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{Datasource, Request};

pub const ENDPOINTS: &[&str] = &["http://169.254.169.254"];
pub const PREFIX: &str = "/metadata/v1";

pub struct DigitalOcean {
    base: String,
    client: Client,
    limit: u64,
}

impl DigitalOcean {
    pub fn new(request: &Request, options: &Options) -> Result<DigitalOcean, FetchError> {
        let bases = http::bases(
            Datasource::DigitalOcean,
            request.metadata_url.as_deref(),
            ENDPOINTS,
        )?;
        Ok(DigitalOcean {
            base: bases[0].clone(),
            client: Client::new(
                Datasource::DigitalOcean,
                options.timeout,
                options.retry.clone(),
            ),
            limit: options.max_user_data,
        })
    }

    /// GET `path`: `Ok(None)` on 404.
    fn get(&self, path: &str, what: &'static str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let req = Req::get(format!("{}{PREFIX}/{path}", self.base), what, cap);
        let resp = self.client.send(&req)?;
        http::ok_or_absent(&self.client, &req, resp)
    }
}

impl Provider for DigitalOcean {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let cap = super::nocloud::MAX_META_DATA;
        // 404 here is a service not ready yet (cloud-init polls it until
        // 2xx): retried within the budget, so never the answer (a 404 for
        // good ends at the deadline); any other status is an error.
        let req =
            Req::get(format!("{}{PREFIX}/id", self.base), "droplet id", cap).also_retry(&[404]);
        let resp = self.client.send(&req)?;
        let instance_id = http::text(
            http::ok(&self.client, &req, resp)?,
            "droplet id",
            "/metadata/v1/id",
        )?;
        let hostname = self
            .get("hostname", "hostname", cap)?
            .and_then(|b| http::text(b, "hostname", "").ok());
        let user_data = self
            .get("user-data", "user-data", self.limit)?
            .unwrap_or_default();
        let vendor_data = self
            .get("vendor-data", "vendor-data", self.limit)?
            .filter(|v| !v.is_empty());
        Ok(Some(Fetched {
            instance_id,
            user_data,
            vendor_data,
            hostname,
            source: self.base.clone(),
            ..Fetched::default()
        }))
    }
}
