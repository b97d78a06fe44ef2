//! The one HTTP client of the network datasources.
//!
//! Metadata services are link-local and answer in milliseconds when they
//! exist; what goes wrong in early boot is the network not being up yet
//! (connection refused, network unreachable), the service being briefly
//! overloaded (429, 5xx), or a service that never answers. So:
//!
//! - **one total deadline** shared by every request of a fetch (manifest
//!   `datasource.timeout`, default 60 s), and a per-request timeout never
//!   longer than what is left of it;
//! - retries as a value ([`Retry`]): exponential backoff with jitter, capped;
//!   transport errors (refused, unreachable, reset, timeouts) and explicitly
//!   listed statuses (429, every 5xx but 501 and 505, plus a request's own, e.g.
//!   404 on an instance-id, a service not ready yet) are retried; every other status goes back to the provider,
//!   which decides (404 = absent; EC2's 401 = new token; anything else is
//!   fatal at once); any other transport error (address family not
//!   supported, not HTTP) drops that endpoint, and the others go on;
//! - no proxy from the environment, no redirects (a 3xx is an error), no
//!   TLS (metadata services are plain HTTP on a link-local address), a cap
//!   on every body.
//!
//! The base URL of each provider can be overridden (`--metadata-url`), which
//! is how tests point it at a server on 127.0.0.1.

use super::FetchError;
use crate::identify::Datasource;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How to retry. Backoff doubles from `initial` up to `max`, each wait
/// drawn at random between half and all of it (jitter), never past the
/// deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Timeout of one request (connect, send, response and body), also
    /// bounded by what is left of the total deadline.
    pub per_request: Duration,
    pub initial: Duration,
    pub max: Duration,
    /// At most this many attempts per request; `None`: until the deadline.
    pub max_attempts: Option<u32>,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            per_request: Duration::from_secs(10),
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// Time kept for the last try before the deadline.
const LAST_TRY: Duration = Duration::from_millis(100);

/// Server errors never retried: "not implemented" (501) and "HTTP version
/// not supported" (505) say what the server cannot do, not how it is doing,
/// and will be the same answer next time.
pub const NEVER_RETRIED_5XX: &[u16] = &[501, 505];

/// Whether every provider retries `status`: throttling (429) and every
/// server error (5xx) but [`NEVER_RETRIED_5XX`] - a 507 or a 508 from an
/// overloaded service passes like a 503.
pub fn retried(status: u16) -> bool {
    status == 429 || ((500..=599).contains(&status) && !NEVER_RETRIED_5XX.contains(&status))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// Largest body accepted.
    pub cap: u64,
    /// What is fetched, for messages ("user-data", "instance-id").
    pub what: &'static str,
    /// Statuses retried for this request besides those all are ([`retried`]).
    pub also_retry: &'static [u16],
    /// When set, a status of `also_retry` is retried only if this accepts
    /// the answer (GCE: only a 404 that carries `Metadata-Flavor: Google`
    /// is "not ready yet"; any other is "not a GCE metadata server").
    pub also_retry_if: Option<fn(&Resp) -> bool>,
}

impl Req {
    pub fn get(url: String, what: &'static str, cap: u64) -> Req {
        Req {
            method: Method::Get,
            url,
            headers: Vec::new(),
            cap,
            what,
            also_retry: &[],
            also_retry_if: None,
        }
    }

    /// Retry these statuses too (see [`Req::also_retry`]).
    pub fn also_retry(mut self, statuses: &'static [u16]) -> Req {
        self.also_retry = statuses;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }
}

/// A response with a status imprint did not retry.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    /// Header names lower case.
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text for an error message: the first line, at most 200
    /// characters (a provider's error text, never user-data: only
    /// non-success responses are quoted).
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        if line.is_empty() {
            String::new()
        } else {
            format!(": {line:?}")
        }
    }
}

/// The client of one fetch: one agent, one deadline.
pub struct Client {
    agent: ureq::Agent,
    deadline: Instant,
    budget: Duration,
    retry: Retry,
    datasource: Datasource,
}

/// Why one attempt failed.
enum Attempt {
    /// Worth another try: transport trouble or a listed status.
    Retry(String, Option<Duration>),
    /// This endpoint cannot be used at all (a transport error no retry
    /// helps: the address family is unsupported, the answer is not HTTP):
    /// drop it and go on with the others.
    Unusable(String),
    /// The endpoint answered, and the answer stops the fetch (a redirect,
    /// a body over the cap).
    Fatal(FetchError),
}

impl Client {
    /// A client whose requests all end by `now + budget`.
    pub fn new(datasource: Datasource, budget: Duration, retry: Retry) -> Client {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(format!("imprint/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            deadline: Instant::now() + budget,
            budget,
            retry,
            datasource,
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn http_error(&self, req: &Req, message: String) -> FetchError {
        FetchError::Http {
            datasource: self.datasource,
            method: req.method.name(),
            url: req.url.clone(),
            message,
        }
    }

    /// Send `req`, retrying transport errors and retryable statuses until
    /// it gets another answer, the attempts run out or the deadline passes.
    pub fn send(&self, req: &Req) -> Result<Resp, FetchError> {
        self.send_any(std::slice::from_ref(req)).map(|(_, r)| r)
    }

    /// Like [`Client::send`] over alternatives (the same request to several
    /// endpoints): each round tries each in turn, and the first that gives
    /// an answer that is not retried wins, with its index.
    ///
    /// An endpoint that fails with a transport error no retry can help
    /// (EC2's IPv6 endpoint on a kernel booted with `ipv6.disable=1`:
    /// "address family not supported") is dropped from the rotation, and
    /// the others go on; the fetch fails for it only when no endpoint is
    /// left. A fatal *answer* (a redirect, a body over the cap) still
    /// stops the fetch at once.
    pub fn send_any(&self, reqs: &[Req]) -> Result<(usize, Resp), FetchError> {
        let mut backoff = self.retry.initial;
        let mut attempts = 0u32;
        let mut usable = vec![true; reqs.len()];
        let mut dropped: Vec<String> = Vec::new();
        loop {
            attempts += 1;
            let mut last = None;
            for (i, req) in reqs.iter().enumerate() {
                if !usable[i] {
                    continue;
                }
                match self.attempt(req) {
                    Ok(r) => return Ok((i, r)),
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Unusable(why)) => {
                        usable[i] = false;
                        if !usable.contains(&true) {
                            let others = if dropped.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "; no other endpoint was usable either: {}",
                                    dropped.join("; ")
                                )
                            };
                            return Err(self.http_error(req, format!("{why}{others}")));
                        }
                        tracing::warn!(
                            url = %req.url,
                            "{why}: this endpoint is dropped, the others are still asked"
                        );
                        dropped.push(format!("{} {}: {why}", req.method.name(), req.url));
                    }
                    Err(Attempt::Retry(why, after)) => last = Some((req, why, after)),
                }
            }
            let Some((req, why, retry_after)) = last else {
                return Err(FetchError::Unavailable {
                    datasource: self.datasource,
                    message: "no endpoint to ask".into(),
                });
            };
            if self.retry.max_attempts.is_some_and(|m| attempts >= m) {
                return Err(
                    self.http_error(req, format!("{why} (gave up after {attempts} attempt(s))"))
                );
            }
            let left = self.remaining();
            // Use the budget to its end: every wait leaves time for one
            // more try, the last just before the deadline, rather than
            // giving up a backoff early or trying with no time left.
            let wait = retry_after
                .unwrap_or_else(|| jitter(backoff))
                .min(left.saturating_sub(LAST_TRY));
            if left <= LAST_TRY {
                return Err(FetchError::Deadline {
                    datasource: self.datasource,
                    budget: self.budget,
                    method: req.method.name(),
                    url: req.url.clone(),
                    last: why,
                    attempts,
                });
            }
            tracing::debug!(
                url = %req.url,
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                "retrying: {why}"
            );
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(self.retry.max);
        }
    }

    fn attempt(&self, req: &Req) -> Result<Resp, Attempt> {
        let left = self.remaining();
        if left.is_zero() {
            return Err(Attempt::Retry("no time left".into(), None));
        }
        let timeout = self.retry.per_request.min(left);
        let result = match req.method {
            Method::Get => {
                let mut b = self.agent.get(&req.url);
                for (k, v) in &req.headers {
                    b = b.header(*k, v);
                }
                b.config().timeout_global(Some(timeout)).build().call()
            }
            Method::Put => {
                let mut b = self.agent.put(&req.url);
                for (k, v) in &req.headers {
                    b = b.header(*k, v);
                }
                b.config()
                    .timeout_global(Some(timeout))
                    .build()
                    .send_empty()
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Err(Attempt::Retry(
                    format!("no answer within {timeout:.1?}"),
                    None,
                ))
            }
            Err(e) => return Err(Self::classify(e)),
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if (300..400).contains(&status) {
            let location = headers
                .iter()
                .find(|(n, _)| n == "location")
                .map(|(_, v)| v.as_str())
                .unwrap_or("nowhere");
            return Err(Attempt::Fatal(self.http_error(
                req,
                format!(
                    "the server redirected ({status}) to {location}; redirects are never \
                     followed from a metadata service"
                ),
            )));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(req.cap)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Attempt::Fatal(FetchError::TooLarge {
                    what: format!("{} from {}", req.what, req.url),
                    size: req.cap + 1,
                    limit: req.cap,
                }),
                e => Self::classify(e),
            })?;
        let r = Resp {
            status,
            body,
            headers,
        };
        let also = req.also_retry.contains(&status) && req.also_retry_if.is_none_or(|f| f(&r));
        if retried(status) || also {
            let retry_after = r
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(self.retry.max));
            return Err(Attempt::Retry(
                format!("status {status}{}", r.snippet()),
                retry_after,
            ));
        }
        Ok(r)
    }

    fn classify(e: ureq::Error) -> Attempt {
        use std::io::ErrorKind as K;
        match e {
            ureq::Error::Timeout(t) => Attempt::Retry(format!("timed out ({t})"), None),
            ureq::Error::Io(io) => match io.kind() {
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NetworkUnreachable
                | K::HostUnreachable
                | K::NetworkDown
                | K::AddrNotAvailable
                | K::TimedOut
                | K::UnexpectedEof
                | K::BrokenPipe
                | K::Interrupted
                | K::WouldBlock => Attempt::Retry(io.to_string(), None),
                _ => Attempt::Unusable(io.to_string()),
            },
            ureq::Error::ConnectionFailed => Attempt::Retry("connection failed".into(), None),
            ureq::Error::HostNotFound => Attempt::Retry("host not found".into(), None),
            ureq::Error::BodyStalled => Attempt::Retry("the body stalled".into(), None),
            e => Attempt::Unusable(e.to_string()),
        }
    }
}

/// A wait between half of `d` and `d`, at random.
fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = 0.5 + (r % 1000) as f64 / 2000.0;
    d.mul_f64(frac)
}

/// The base URLs to try: the override (`--metadata-url`), else the
/// provider's defaults. An override must pass [`check_base_url`] (identify
/// already refused one that does not, as a usage error) and loses any
/// trailing `/`.
pub fn bases(
    datasource: Datasource,
    override_url: Option<&str>,
    defaults: &[&str],
) -> Result<Vec<String>, FetchError> {
    match override_url {
        None => Ok(defaults.iter().map(|s| s.to_string()).collect()),
        Some(u) => check_base_url(u)
            .map(|u| vec![u])
            .map_err(|message| FetchError::Unavailable {
                datasource,
                message: format!("--metadata-url {:?} {message}", u.trim()),
            }),
    }
}

/// A metadata base URL override as given (`--metadata-url`,
/// `IMPRINT_METADATA_URL`), trimmed and without a trailing `/`; `Err` says
/// what is wrong with it (completing "--metadata-url URL ...").
pub fn check_base_url(u: &str) -> Result<String, String> {
    let u = u.trim();
    let plain = "must be an http:// URL with a host (metadata services are plain HTTP; this build has no TLS)";
    let Some(rest) = u.strip_prefix("http://") else {
        return Err(plain.into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(plain.into());
    }
    match u.parse::<ureq::http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => {
            Ok(u.trim_end_matches('/').to_string())
        }
        Ok(_) => Err(plain.into()),
        Err(e) => Err(format!("is not a valid URL ({e})")),
    }
}

/// The outcome of a GET where 404 means "not there": `Ok(None)`. 2xx gives
/// the body; any other status is an error naming it.
pub fn ok_or_absent(client: &Client, req: &Req, resp: Resp) -> Result<Option<Vec<u8>>, FetchError> {
    match resp.status {
        200..=299 => Ok(Some(resp.body)),
        404 => Ok(None),
        s => Err(client.http_error(req, format!("status {s}{}", resp.snippet()))),
    }
}

/// The body of a 2xx; any other status (404 included) is an error.
pub fn ok(client: &Client, req: &Req, resp: Resp) -> Result<Vec<u8>, FetchError> {
    match resp.status {
        200..=299 => Ok(resp.body),
        s => Err(client.http_error(req, format!("status {s}{}", resp.snippet()))),
    }
}

impl Client {
    /// An error about `req` (for providers' own status handling).
    pub fn error(&self, req: &Req, message: String) -> FetchError {
        self.http_error(req, message)
    }
}

/// A short text value (instance-id, hostname): UTF-8, trimmed, non-empty.
pub fn text(bytes: Vec<u8>, what: &str, url: &str) -> Result<String, FetchError> {
    let s = String::from_utf8(bytes).map_err(|_| FetchError::Invalid {
        what: format!("{what} from {url}"),
        message: "not UTF-8 text".into(),
    })?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(FetchError::Invalid {
            what: format!("{what} from {url}"),
            message: "empty".into(),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(500) && j <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retried_statuses() {
        for s in [429, 500, 502, 503, 504, 507, 508, 599] {
            assert!(retried(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 501, 505, 600] {
            assert!(!retried(s), "{s}");
        }
    }

    #[test]
    fn override_must_be_plain_http() {
        let b = bases(Datasource::Ec2, Some("http://127.0.0.1:8080/"), &["x"]).unwrap();
        assert_eq!(b, vec!["http://127.0.0.1:8080".to_string()]);
        assert!(bases(Datasource::Ec2, Some("https://127.0.0.1"), &["x"]).is_err());
        assert!(bases(Datasource::Ec2, Some("http://"), &["x"]).is_err());
        for bad in [
            "notaurl",
            "http:///latest",
            "http://a b",
            "127.0.0.1:80",
            "",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_base_url(" http://[::1]:8080/base/ ").as_deref(),
            Ok("http://[::1]:8080/base")
        );
        assert_eq!(bases(Datasource::Ec2, None, &["a", "b"]).unwrap().len(), 2);
    }
}
