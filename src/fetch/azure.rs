//! The `azure` source: Azure's Instance Metadata Service (IMDS).
//!
//! Every request carries `Metadata: true` (without it IMDS answers 400
//! "Required metadata header not specified") and an `api-version`; text
//! leaves use `format=text`. `compute/vmId` is the instance-id (the same
//! value DMI's `product_uuid` gives offline, byte-swapped on Gen1);
//! `compute/osProfile/computerName` the hostname; `compute/userData` the
//! user-data, base64-encoded (empty = none). IMDS answers 404 and 410
//! while it is not ready yet after boot: both are retried for vmId (as
//! cloud-init does), besides 429 and 5xx.
//!
//! Azure's `customData` (Terraform's `custom_data`, the portal's "Custom
//! data") comes through the provisioning ISO (ovf-env.xml), not IMDS, and
//! is not read: use `userData` (Terraform's `user_data`). When `userData`
//! is empty, a warning says so, since data put in `custom_data` by a
//! configuration written for cloud-init would otherwise vanish silently.

use super::http::{self, Client, Req};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{Datasource, Request};
use base64::Engine;

pub const ENDPOINTS: &[&str] = &["http://169.254.169.254"];
pub const API_VERSION: &str = "2021-01-01";
pub const HEADER: &str = "Metadata";
/// Logged when `userData` is empty.
pub const CUSTOM_DATA_WARNING: &str = "Azure userData is empty; if this VM was given custom_data \
     (Terraform's custom_data, the portal's \"Custom data\"), imprint does not read it (it \
     reaches the VM only through the provisioning ISO): pass the same content as user_data \
     (Terraform's user_data) instead (docs/datasources.md)";

pub struct Azure {
    base: String,
    client: Client,
    limit: u64,
}

impl Azure {
    pub fn new(request: &Request, options: &Options) -> Result<Azure, FetchError> {
        let bases = http::bases(
            Datasource::Azure,
            request.metadata_url.as_deref(),
            ENDPOINTS,
        )?;
        Ok(Azure {
            base: bases[0].clone(),
            client: Client::new(Datasource::Azure, options.timeout, options.retry.clone()),
            limit: options.max_user_data,
        })
    }

    fn req(&self, leaf: &str, what: &'static str, cap: u64) -> Req {
        Req::get(
            format!(
                "{}/metadata/instance/compute/{leaf}?api-version={API_VERSION}&format=text",
                self.base
            ),
            what,
            cap,
        )
        .header(HEADER, "true")
    }
}

impl Provider for Azure {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let cap = super::nocloud::MAX_META_DATA;
        let mut req = self.req("vmId", "vmId", cap);
        req.also_retry = &[404, 410];
        let resp = self.client.send(&req)?;
        let instance_id =
            http::text(http::ok(&self.client, &req, resp)?, "vmId", &req.url)?.to_ascii_lowercase();
        let req = self.req("osProfile/computerName", "computerName", cap);
        let resp = self.client.send(&req)?;
        let hostname = http::ok_or_absent(&self.client, &req, resp)?
            .and_then(|b| http::text(b, "computerName", "").ok());
        // base64 makes the text 4/3 of the bytes.
        let mut req = self.req("userData", "userData", self.limit / 3 * 4 + 4);
        req.also_retry = &[410];
        let resp = self.client.send(&req)?;
        let encoded = http::ok_or_absent(&self.client, &req, resp)?.unwrap_or_default();
        let text: Vec<u8> = encoded
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let user_data = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| FetchError::Invalid {
                what: format!("userData from {}", req.url),
                message: format!("IMDS gives userData base64-encoded, but this is not: {e}"),
            })?;
        if user_data.is_empty() {
            tracing::warn!("{CUSTOM_DATA_WARNING}");
        }
        if user_data.len() as u64 > self.limit {
            return Err(FetchError::TooLarge {
                what: format!("userData from {}", req.url),
                size: user_data.len() as u64,
                limit: self.limit,
            });
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
