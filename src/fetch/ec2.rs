//! The `ec2` source: AWS's instance metadata service, IMDSv2 only.
//!
//! IMDSv2 (session tokens) is what AWS recommends and what instances with
//! `HttpTokens=required` accept; IMDSv1 is never tried. The flow:
//!
//! 1. `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`
//!    gives a token. 403 there means IMDS is disabled for this instance:
//!    stop at once (no retry can help). 400: the TTL header was refused.
//! 2. every `GET` carries `X-aws-ec2-metadata-token`. 401 means the token
//!    expired or is invalid: get a new one and try again (once per request).
//! 3. `latest/meta-data/instance-id` (required; a 404 there is retried
//!    within the budget, as cloud-init polls it), `local-hostname`
//!    (optional), `latest/user-data` (404 = the instance has no user-data).
//!
//! Endpoints: `http://169.254.169.254`, then the IPv6 endpoint
//! `http://[fd00:ec2::254]` (Nitro, when enabled) if IPv4 does not answer;
//! `--metadata-url` replaces both.

use super::http::{self, Client, Method, Req};
use super::{FetchError, Fetched, Options, Provider};
use crate::identify::{Datasource, Request};
use std::cell::RefCell;

pub const ENDPOINTS: &[&str] = &["http://169.254.169.254", "http://[fd00:ec2::254]"];
pub const TOKEN_PATH: &str = "/latest/api/token";
pub const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
/// Token lifetime asked for: long enough for one fetch, short enough to be
/// worthless later.
pub const TTL_SECONDS: u32 = 300;

pub struct Ec2 {
    bases: Vec<String>,
    client: Client,
    limit: u64,
    token: RefCell<Option<(String, String)>>,
}

impl Ec2 {
    pub fn new(request: &Request, options: &Options) -> Result<Ec2, FetchError> {
        Ok(Ec2 {
            bases: http::bases(Datasource::Ec2, request.metadata_url.as_deref(), ENDPOINTS)?,
            client: Client::new(Datasource::Ec2, options.timeout, options.retry.clone()),
            limit: options.max_user_data,
            token: RefCell::new(None),
        })
    }

    /// With explicit base URLs, tried in order (the defaults are IPv4,
    /// then IPv6); for tests of the fallback between endpoints.
    pub fn with_bases(bases: Vec<String>, options: &Options) -> Ec2 {
        Ec2 {
            bases,
            client: Client::new(Datasource::Ec2, options.timeout, options.retry.clone()),
            limit: options.max_user_data,
            token: RefCell::new(None),
        }
    }

    /// A fresh token, and the base that gave it: each round asks each
    /// endpoint in turn (IPv4, then IPv6); the first to answer is used
    /// from then on.
    fn new_token(&self) -> Result<(String, String), FetchError> {
        let reqs: Vec<Req> = self
            .bases
            .iter()
            .map(|base| Req {
                method: Method::Put,
                url: format!("{base}{TOKEN_PATH}"),
                headers: vec![(TTL_HEADER, TTL_SECONDS.to_string())],
                cap: 4096,
                what: "an IMDSv2 token",
                also_retry: &[],
                also_retry_if: None,
            })
            .collect();
        let (i, resp) = self.client.send_any(&reqs)?;
        let req = &reqs[i];
        match resp.status {
            200 => {
                let token = http::text(resp.body, "the IMDSv2 token", &req.url)?;
                Ok((self.bases[i].clone(), token))
            }
            403 => Err(self.client.error(
                req,
                format!(
                    "status 403{}: the instance metadata service is disabled for this \
                     instance (HttpEndpoint=disabled) or the request was forwarded; \
                     enable it, or give user-data another way (--datasource nocloud)",
                    resp.snippet()
                ),
            )),
            s => Err(self.client.error(
                req,
                format!("status {s}{} on the IMDSv2 token request", resp.snippet()),
            )),
        }
    }

    fn token(&self) -> Result<(String, String), FetchError> {
        if let Some(t) = self.token.borrow().clone() {
            return Ok(t);
        }
        let t = self.new_token()?;
        *self.token.borrow_mut() = Some(t.clone());
        Ok(t)
    }

    /// GET `path` with the token: `Ok(None)` on 404.
    fn get(&self, path: &str, what: &'static str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let (req, resp) = self.send(path, what, cap, &[])?;
        http::ok_or_absent(&self.client, &req, resp)
    }

    /// GET `path` with the token, retrying `also_retry` too; a 401 gets a
    /// new token and one more try. The answer, and the request that got it.
    fn send(
        &self,
        path: &str,
        what: &'static str,
        cap: u64,
        also_retry: &'static [u16],
    ) -> Result<(Req, http::Resp), FetchError> {
        let mut renewed = false;
        loop {
            let (base, token) = self.token()?;
            let req = Req::get(format!("{base}{path}"), what, cap)
                .header(TOKEN_HEADER, token)
                .also_retry(also_retry);
            let resp = self.client.send(&req)?;
            if resp.status == 401 && !renewed {
                tracing::debug!(url = %req.url, "IMDSv2 token refused (401); getting a new one");
                *self.token.borrow_mut() = None;
                renewed = true;
                continue;
            }
            if resp.status == 401 {
                return Err(self.client.error(
                    &req,
                    format!("status 401{} even with a new IMDSv2 token", resp.snippet()),
                ));
            }
            return Ok((req, resp));
        }
    }
}

impl Provider for Ec2 {
    fn fetch(&self) -> Result<Option<Fetched>, FetchError> {
        let meta_cap = super::nocloud::MAX_META_DATA;
        let id_path = "/latest/meta-data/instance-id";
        // 404 here is a service not ready yet (cloud-init polls it until
        // 2xx): retried within the budget, so never the answer (a 404 for
        // good ends at the deadline); any other status is an error.
        let (req, resp) = self.send(id_path, "instance-id", meta_cap, &[404])?;
        let instance_id = http::text(http::ok(&self.client, &req, resp)?, "instance-id", id_path)?;
        let hostname = self
            .get(
                "/latest/meta-data/local-hostname",
                "local-hostname",
                meta_cap,
            )?
            .and_then(|b| http::text(b, "local-hostname", "").ok());
        let user_data = self
            .get("/latest/user-data", "user-data", self.limit)?
            .unwrap_or_default();
        let (base, _) = self.token()?;
        Ok(Some(Fetched {
            instance_id,
            user_data,
            hostname,
            source: base,
            ..Fetched::default()
        }))
    }
}
