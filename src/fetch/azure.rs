//! The `azure` source: Azure's Instance Metadata Service (IMDS).
//!
//! Every request carries `Metadata: true` (without it IMDS answers 400
//! "Required metadata header not specified") and an `api-version`; text
//! leaves use `format=text`. `compute/vmId` is the instance-id (the same
//! value DMI's `product_uuid` gives offline, byte-swapped on Gen1);
//! `compute/osProfile/computerName` the hostname; `compute/userData` the
//! user-data, base64-encoded (empty = none; not base64 = invalid user-data,
//! exit 65, naming the first bad byte). IMDS answers 404 and 410
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
        let user_data = decode_user_data(&encoded).map_err(|why| FetchError::UserData {
            what: format!("Azure userData from {}", req.url),
            message: format!(
                "IMDS serves userData base64-encoded, as it was given to the VM, but this is \
                 not base64: {why}; give the VM its user-data base64-encoded (Terraform: \
                 user_data = base64encode(...) on azurerm_linux_virtual_machine; the API and \
                 `az vm update --user-data` take it base64 too), then boot it again"
            ),
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

/// `userData` as IMDS serves it: base64 (standard alphabet, padded), white
/// space ignored. `Err` says what is wrong and where, counting bytes of the
/// body as served (1-based).
pub fn decode_user_data(encoded: &[u8]) -> Result<Vec<u8>, String> {
    // Where each base64 character sits in the body (white space dropped).
    let (text, at): (Vec<u8>, Vec<usize>) = encoded
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_ascii_whitespace())
        .map(|(i, &b)| (b, i))
        .unzip();
    let byte = |i: usize| at.get(i).map_or(0, |p| p + 1);
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(i, b) => format!(
                "byte {} of {} is {}, which is not a base64 character",
                byte(i),
                encoded.len(),
                shown(b)
            ),
            base64::DecodeError::InvalidLength(n) => {
                format!("{n} base64 characters cannot be complete (a multiple of 4 is): cut short?")
            }
            base64::DecodeError::InvalidLastSymbol {
                offset: i,
                symbol: b,
                ..
            } => format!(
                "the last character, {} (byte {} of {}), has bits set past the end of the data",
                shown(b),
                byte(i),
                encoded.len()
            ),
            base64::DecodeError::InvalidPadding => {
                "the = padding at its end is wrong (missing, or too much)".to_string()
            }
        })
}

fn shown(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("{:?}", char::from(b))
    } else {
        format!("the byte 0x{b:02x}")
    }
}
