//! Fake metadata servers on 127.0.0.1 that behave as each provider
//! documents: required headers and their real error answers, EC2's token
//! flow, 404 for absent user-data. Plus fault injection (503s, a redirect,
//! a server that never answers) and the scenarios every network source must
//! pass. Never any address but loopback.
#![allow(dead_code)]

use imprint::fetch::{self, http::Retry, FetchError, Fetched, Options};
use imprint::identify::{self, Request};
use imprint::root::Root;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the fake saw it. Header names lower case.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

pub enum Reply {
    Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept, read the request, never answer.
    Hang,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Resp {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Resp { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A fake server; stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), handler)
    }

    pub fn start_on(addr: SocketAddr, handler: Handler) -> Server {
        assert!(addr.ip().is_loopback(), "fakes listen on loopback only");
        let listener = TcpListener::bind(addr).expect("bind the fake server");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, l, s) = (handler.clone(), l2.clone(), s2.clone());
                std::thread::spawn(move || serve(conn, &*h, &l, &s));
            }
        });
        Server { addr, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn serve(
    conn: TcpStream,
    handler: &(dyn Fn(&Seen) -> Reply + Send + Sync),
    log: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let seen = Seen {
        method,
        path,
        headers,
    };
    log.lock().unwrap().push(seen.clone());
    let mut conn = conn;
    match handler(&seen) {
        Reply::Hang => {
            let t = Instant::now();
            while !stop.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Resp {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason(status),
                body.len()
            );
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
            let _ = conn.flush();
        }
    }
}

// ------------------------------------------------------------------ faults

/// Faults injected in front of a provider's fake.
#[derive(Default)]
pub struct Faults {
    /// Answer this many requests with 503 first.
    pub fail_503: AtomicUsize,
    /// The status those answers have instead of 503, when not 0.
    pub fail_status: AtomicU16,
    /// Redirect every request elsewhere.
    pub redirect: AtomicBool,
    /// Never answer.
    pub hang: AtomicBool,
    /// Answer this many GETs with 404 first (the provider's own headers
    /// kept): a metadata service not ready yet.
    pub fail_404: AtomicUsize,
}

pub fn with_faults(faults: Arc<Faults>, inner: Handler) -> Handler {
    Arc::new(move |r: &Seen| {
        if faults.hang.load(Ordering::SeqCst) {
            return Reply::Hang;
        }
        if faults.redirect.load(Ordering::SeqCst) {
            return Reply::new(302, "").with("Location", "http://127.0.0.1:1/elsewhere");
        }
        if faults
            .fail_503
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return match faults.fail_status.load(Ordering::SeqCst) {
                0 => Reply::new(503, "Service Unavailable"),
                s => Reply::new(s, format!("status {s} from the fake")),
            };
        }
        if r.method == "GET"
            && faults
                .fail_404
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return match inner(r) {
                Reply::Resp { headers, .. } => Reply::Resp {
                    status: 404,
                    headers,
                    body: b"not found (not ready yet)".to_vec(),
                },
                hang => hang,
            };
        }
        inner(r)
    })
}

// --------------------------------------------------------------- providers

/// What an instance's metadata holds.
#[derive(Debug, Clone)]
pub struct Meta {
    pub instance_id: String,
    pub hostname: String,
    pub user_data: Option<Vec<u8>>,
}

impl Meta {
    pub fn new(instance_id: &str, user_data: Option<&[u8]>) -> Meta {
        Meta {
            instance_id: instance_id.to_string(),
            hostname: "host-1.internal".to_string(),
            user_data: user_data.map(<[u8]>::to_vec),
        }
    }
}

/// EC2 IMDSv2's token state.
#[derive(Default)]
pub struct Ec2State {
    tokens: Mutex<Vec<String>>,
    issued: AtomicUsize,
    gets: AtomicUsize,
    /// Expire every token once after this many good GETs.
    pub expire_after: Mutex<Option<usize>>,
    /// The token PUT answers 403 (IMDS disabled).
    pub forbid_token: AtomicBool,
}

impl Ec2State {
    pub fn expire_after_lock(&self) -> std::sync::MutexGuard<'_, Option<usize>> {
        self.expire_after.lock().unwrap()
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// EC2's IMDS with `HttpTokens=required`, as AWS documents it.
pub fn ec2(meta: Meta, st: Arc<Ec2State>) -> Handler {
    Arc::new(move |r: &Seen| {
        if r.header("x-forwarded-for").is_some() {
            return Reply::new(403, "");
        }
        if r.route() == "/latest/api/token" {
            if r.method != "PUT" {
                return Reply::new(405, "");
            }
            if st.forbid_token.load(Ordering::SeqCst) {
                return Reply::new(403, "");
            }
            let ttl: Option<u32> = r
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.parse().ok());
            if !matches!(ttl, Some(1..=21600)) {
                return Reply::new(400, "");
            }
            let n = st.issued.fetch_add(1, Ordering::SeqCst);
            let token = format!("AQAEA-token-{n}");
            st.tokens.lock().unwrap().push(token.clone());
            return Reply::new(200, token).with(
                "X-aws-ec2-metadata-token-ttl-seconds",
                &ttl.unwrap().to_string(),
            );
        }
        if r.method != "GET" {
            return Reply::new(405, "");
        }
        // IMDSv2 required: no token or an unknown/expired one is 401.
        let ok = r
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|t| st.tokens.lock().unwrap().iter().any(|k| k == t));
        if !ok {
            return Reply::new(401, "");
        }
        let n = st.gets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut exp = st.expire_after.lock().unwrap();
        if *exp == Some(n - 1) && n > 1 {
            // This token expired just now.
            *exp = None;
            st.tokens.lock().unwrap().clear();
            return Reply::new(401, "");
        }
        drop(exp);
        match r.route() {
            "/latest/meta-data/instance-id" => Reply::new(200, meta.instance_id.clone()),
            "/latest/meta-data/local-hostname" => Reply::new(200, meta.hostname.clone()),
            "/latest/user-data" => match &meta.user_data {
                Some(u) => Reply::new(200, u.clone()),
                None => Reply::new(404, not_found_html()),
            },
            _ => Reply::new(404, not_found_html()),
        }
    })
}

fn not_found_html() -> &'static str {
    "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<title>404 - Not Found</title>"
}

/// GCE's metadata server: `Metadata-Flavor: Google` required (403 with
/// Google's text otherwise), echoed on every answer.
pub fn gce(meta: Meta) -> Handler {
    gce_with_encoding(meta, None)
}

pub fn gce_with_encoding(meta: Meta, encoding: Option<&'static str>) -> Handler {
    Arc::new(move |r: &Seen| {
        let flavor = |rep: Reply| rep.with("Metadata-Flavor", "Google");
        if r.header("metadata-flavor") != Some("Google") || r.header("x-forwarded-for").is_some() {
            return flavor(Reply::new(
                403,
                format!(
                    "Your client does not have permission to get URL <code>{}</code> from this \
                     server. Missing Metadata-Flavor:Google header.",
                    r.route()
                ),
            ));
        }
        let p = r.route();
        flavor(match p {
            "/computeMetadata/v1/instance/id" => Reply::new(200, meta.instance_id.clone()),
            "/computeMetadata/v1/instance/hostname" => Reply::new(200, meta.hostname.clone()),
            "/computeMetadata/v1/instance/attributes/user-data" => match &meta.user_data {
                Some(u) => Reply::new(200, u.clone()),
                None => Reply::new(404, "404 page not found"),
            },
            "/computeMetadata/v1/instance/attributes/user-data-encoding" => match encoding {
                Some(e) => Reply::new(200, e),
                None => Reply::new(404, "404 page not found"),
            },
            _ => Reply::new(404, "404 page not found"),
        })
    })
}

/// DigitalOcean's droplet metadata: no header needed.
pub fn digitalocean(meta: Meta) -> Handler {
    Arc::new(move |r: &Seen| match r.route() {
        "/metadata/v1/id" => Reply::new(200, meta.instance_id.clone()),
        "/metadata/v1/hostname" => Reply::new(200, meta.hostname.clone()),
        "/metadata/v1/user-data" => match &meta.user_data {
            Some(u) => Reply::new(200, u.clone()),
            None => Reply::new(404, "404 page not found\n"),
        },
        "/metadata/v1/vendor-data" => Reply::new(200, "#cloud-config\n"),
        _ => Reply::new(404, "404 page not found\n"),
    })
}

/// Azure IMDS: `Metadata: true` and an `api-version` required (400 with
/// IMDS's JSON error otherwise); `userData` base64, empty when unset.
pub fn azure(meta: Meta) -> Handler {
    Arc::new(move |r: &Seen| {
        if r.header("metadata") != Some("true") {
            return Reply::new(
                400,
                "{\"error\":\"Bad request. Required metadata header not specified\"}",
            );
        }
        if r.header("x-forwarded-for").is_some() {
            return Reply::new(
                400,
                "{\"error\":\"Bad request. X-Forwarded-For header present\"}",
            );
        }
        if r.query("api-version").is_none() {
            return Reply::new(
                400,
                "{\"error\":\"Bad request. api-version was not specified in the request\"}",
            );
        }
        if r.query("format") != Some("text") {
            return Reply::new(
                400,
                "{\"error\":\"Bad request. Leaf nodes need format=text\"}",
            );
        }
        use base64::Engine;
        match r.route() {
            "/metadata/instance/compute/vmId" => Reply::new(200, meta.instance_id.clone()),
            "/metadata/instance/compute/osProfile/computerName" => {
                Reply::new(200, meta.hostname.clone())
            }
            "/metadata/instance/compute/userData" => Reply::new(
                200,
                meta.user_data
                    .as_ref()
                    .map(|u| base64::engine::general_purpose::STANDARD.encode(u))
                    .unwrap_or_default(),
            ),
            _ => Reply::new(404, "{\"error\":\"Not found\"}"),
        }
    })
}

/// OpenStack's metadata service: `meta_data.json`, `user_data` (404 when
/// none).
pub fn openstack(meta: Meta) -> Handler {
    Arc::new(move |r: &Seen| match r.route() {
        "/openstack/latest/meta_data.json" => Reply::new(
            200,
            serde_json::json!({
                "uuid": meta.instance_id,
                "hostname": meta.hostname,
                "name": "web-1",
                "availability_zone": "nova",
                "launch_index": 0,
                "project_id": "0123456789abcdef"
            })
            .to_string(),
        ),
        "/openstack/latest/user_data" => match &meta.user_data {
            Some(u) => Reply::new(200, u.clone()),
            None => Reply::new(404, "404 Not Found\n\nThe resource could not be found.\n"),
        },
        _ => Reply::new(404, "404 Not Found\n\nThe resource could not be found.\n"),
    })
}

// --------------------------------------------------------------- scenarios

/// A network source under test: its name and its fake.
pub struct Kind {
    pub name: &'static str,
    pub fake: fn(Meta) -> Handler,
}

fn ec2_default(meta: Meta) -> Handler {
    ec2(meta, Arc::new(Ec2State::default()))
}

pub const EC2: Kind = Kind {
    name: "ec2",
    fake: ec2_default,
};
pub const GCE: Kind = Kind {
    name: "gce",
    fake: gce,
};
pub const DIGITALOCEAN: Kind = Kind {
    name: "digitalocean",
    fake: digitalocean,
};
pub const AZURE: Kind = Kind {
    name: "azure",
    fake: azure,
};
pub const OPENSTACK: Kind = Kind {
    name: "openstack",
    fake: openstack,
};

/// Fast retries for tests: the deadline is what matters.
pub fn options(total: Duration) -> Options {
    Options {
        timeout: total,
        retry: Retry {
            per_request: Duration::from_secs(10),
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            max_attempts: None,
        },
        ..Options::default()
    }
}

/// Fetch from datasource `name` at `url`, with an empty root.
pub fn fetch_from(name: &str, url: &str, options: &Options) -> Result<Fetched, FetchError> {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::at(dir.path());
    let req = Request {
        datasource: Some(name.to_string()),
        metadata_url: Some(url.to_string()),
        ..Request::default()
    };
    let id = identify::identify(&root, &req, &[]).expect("named on the command line");
    fetch::fetch(&root, &id, &req, options)
}

pub const USER_DATA: &[u8] = b"#cloud-config\nimprint:\n  db: {host: db.internal}\n";

pub fn happy(k: &Kind) {
    let s = Server::start((k.fake)(Meta::new("i-happy-1", Some(USER_DATA))));
    let f = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap();
    assert_eq!(f.instance_id, "i-happy-1", "{}", k.name);
    assert_eq!(f.user_data, USER_DATA, "{}", k.name);
    assert_eq!(f.hostname.as_deref(), Some("host-1.internal"), "{}", k.name);
    assert_eq!(f.source, s.url(), "{}", k.name);
    for r in s.requests() {
        assert!(r.header("x-forwarded-for").is_none());
        assert!(
            r.header("user-agent").unwrap_or("").starts_with("imprint/"),
            "{r:?}"
        );
    }
}

pub fn no_user_data(k: &Kind) {
    let s = Server::start((k.fake)(Meta::new("i-empty", None)));
    let f = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap();
    assert_eq!(f.instance_id, "i-empty");
    assert!(
        f.user_data.is_empty(),
        "{}: no user-data is empty, not an error",
        k.name
    );
}

pub fn unavailable_twice_then_ok(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.fail_503.store(2, Ordering::SeqCst);
    let s = Server::start(with_faults(
        faults.clone(),
        (k.fake)(Meta::new("i-503", Some(USER_DATA))),
    ));
    let f = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap();
    assert_eq!(f.user_data, USER_DATA);
    assert_eq!(faults.fail_503.load(Ordering::SeqCst), 0);
    let reqs = s.requests();
    // The first request was asked three times: 503, 503, then answered.
    assert_eq!(reqs[0].path, reqs[1].path);
    assert_eq!(reqs[1].path, reqs[2].path);
}

/// Every 5xx but 501 and 505 is retried: 507 (Insufficient Storage)
/// twice, then the answer.
pub fn insufficient_storage_twice_then_ok(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.fail_503.store(2, Ordering::SeqCst);
    faults.fail_status.store(507, Ordering::SeqCst);
    let s = Server::start(with_faults(
        faults.clone(),
        (k.fake)(Meta::new("i-507", Some(USER_DATA))),
    ));
    let f = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap();
    assert_eq!(f.user_data, USER_DATA, "{}", k.name);
    assert_eq!(faults.fail_503.load(Ordering::SeqCst), 0);
    let reqs = s.requests();
    assert_eq!(reqs[0].path, reqs[1].path);
    assert_eq!(reqs[1].path, reqs[2].path);
}

/// 501 (Not Implemented) will not change by asking again: fatal at once,
/// quoting the status.
pub fn not_implemented_is_fatal_at_once(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.fail_503.store(usize::MAX, Ordering::SeqCst);
    faults.fail_status.store(501, Ordering::SeqCst);
    let s = Server::start(with_faults(faults, (k.fake)(Meta::new("i", None))));
    let t = Instant::now();
    let e = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!matches!(e, FetchError::Deadline { .. }), "{e}");
    assert!(e.to_string().contains("status 501"), "{e}");
    assert_eq!(s.requests().len(), 1, "{}: not retried", k.name);
}

/// Early in boot a metadata service answers 404 for a while: the
/// instance-id request (the first GET) is retried until it gets 200, as
/// cloud-init polls it. (A 404 on user-data means "none": see
/// [`no_user_data`].)
pub fn instance_id_not_found_twice_then_ok(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.fail_404.store(2, Ordering::SeqCst);
    let s = Server::start(with_faults(
        faults.clone(),
        (k.fake)(Meta::new("i-late-404", Some(USER_DATA))),
    ));
    let f = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap();
    assert_eq!(f.instance_id, "i-late-404", "{}", k.name);
    assert_eq!(f.user_data, USER_DATA, "{}", k.name);
    assert_eq!(faults.fail_404.load(Ordering::SeqCst), 0);
    let gets: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.route().to_string())
        .collect();
    assert_eq!(gets[0], gets[1], "{}: {gets:?}", k.name);
    assert_eq!(gets[1], gets[2], "{}: {gets:?}", k.name);
    assert_ne!(gets[2], gets[3], "{}: {gets:?}", k.name);
}

/// A 404 on the instance-id that never ends is retried until the budget
/// ends, then it is the deadline's error (exit 69), naming the 404.
pub fn instance_id_not_found_for_good_hits_the_deadline(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.fail_404.store(usize::MAX, Ordering::SeqCst);
    let s = Server::start(with_faults(
        faults,
        (k.fake)(Meta::new("i", Some(USER_DATA))),
    ));
    let t = Instant::now();
    let e = fetch_from(k.name, &s.url(), &options(Duration::from_secs(1))).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(1600),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(e, FetchError::Deadline { .. }), "{e}");
    assert!(e.to_string().contains("status 404"), "{e}");
    assert_eq!(imprint::Error::from(e).exit_code().code(), 69);
}

pub fn refused_until_the_server_comes_up(k: &Kind) {
    // A port nothing listens on (yet).
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fake = (k.fake)(Meta::new("i-late", Some(USER_DATA)));
    let up = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        Server::start_on(addr, fake)
    });
    let t = Instant::now();
    let f = fetch_from(
        k.name,
        &format!("http://{addr}"),
        &options(Duration::from_secs(15)),
    )
    .unwrap();
    let s = up.join().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(700));
    assert_eq!(f.instance_id, "i-late");
    assert!(!s.requests().is_empty());
}

pub fn never_answers_the_deadline_holds(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.hang.store(true, Ordering::SeqCst);
    let s = Server::start(with_faults(faults, (k.fake)(Meta::new("i", None))));
    let t = Instant::now();
    let e = fetch_from(k.name, &s.url(), &options(Duration::from_secs(2))).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, FetchError::Deadline { .. }), "{e}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "{took:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("datasource {} did not answer within 2s", k.name)),
        "{msg}"
    );
    assert!(msg.contains("no answer within"), "{msg}");
    assert_eq!(imprint::Error::from(e).exit_code().code(), 69);
}

pub fn redirect_is_refused(k: &Kind) {
    let faults = Arc::new(Faults::default());
    faults.redirect.store(true, Ordering::SeqCst);
    let s = Server::start(with_faults(faults, (k.fake)(Meta::new("i", None))));
    let e = fetch_from(k.name, &s.url(), &options(Duration::from_secs(10))).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("the server redirected (302) to http://127.0.0.1:1/elsewhere; redirects are never followed"),
        "{msg}"
    );
    assert_eq!(s.requests().len(), 1, "neither followed nor retried");
}

pub fn oversized_body_is_capped(k: &Kind) {
    let big = vec![b'#'; 64 * 1024];
    let s = Server::start((k.fake)(Meta::new("i-big", Some(&big))));
    let opts = Options {
        max_user_data: 4096,
        ..options(Duration::from_secs(10))
    };
    let e = fetch_from(k.name, &s.url(), &opts).unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { limit: _, .. }), "{e}");
    assert!(e.to_string().contains("larger than the limit of"), "{e}");
}

pub fn refused_for_good_hits_the_deadline(k: &Kind) {
    // Port 1 (tcpmux): privileged and never served, so refused for sure
    // (a port freed by this process could be taken by a concurrent test).
    let addr = "127.0.0.1:1";
    let t = Instant::now();
    let e = fetch_from(
        k.name,
        &format!("http://{addr}"),
        &options(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(1600),
        "{:?}",
        t.elapsed()
    );
    let msg = e.to_string();
    assert!(msg.contains("did not answer within 1s"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}
