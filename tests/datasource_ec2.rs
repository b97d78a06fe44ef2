//! The `ec2` source against a fake metadata server on 127.0.0.1 that
//! behaves as the provider documents (tests/fakes).

mod fakes;

use fakes::EC2 as K;

#[test]
fn happy_path() {
    fakes::happy(&K);
}

#[test]
fn no_user_data() {
    fakes::no_user_data(&K);
}

#[test]
fn unavailable_twice_then_ok() {
    fakes::unavailable_twice_then_ok(&K);
}

#[test]
fn refused_until_the_server_comes_up() {
    fakes::refused_until_the_server_comes_up(&K);
}

#[test]
fn refused_for_good_hits_the_deadline() {
    fakes::refused_for_good_hits_the_deadline(&K);
}

#[test]
fn never_answers_the_deadline_holds() {
    fakes::never_answers_the_deadline_holds(&K);
}

#[test]
fn redirect_is_refused() {
    fakes::redirect_is_refused(&K);
}

#[test]
fn oversized_body_is_capped() {
    fakes::oversized_body_is_capped(&K);
}

use fakes::{ec2, fetch_from, options, Ec2State, Meta, Server, USER_DATA};
use imprint::fetch::Provider;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn server(st: &Arc<Ec2State>, ud: Option<&[u8]>) -> Server {
    Server::start(ec2(Meta::new("i-0abc123", ud), st.clone()))
}

/// IMDSv2: one PUT with the TTL header, then every GET with the token;
/// IMDSv1 (a GET without a token) is never tried.
#[test]
fn token_flow() {
    let st = Arc::new(Ec2State::default());
    let s = server(&st, Some(USER_DATA));
    fetch_from("ec2", &s.url(), &options(Duration::from_secs(5))).unwrap();
    let reqs = s.requests();
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].path, "/latest/api/token");
    let ttl: u32 = reqs[0]
        .header("x-aws-ec2-metadata-token-ttl-seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=21600).contains(&ttl));
    assert_eq!(st.issued(), 1, "one token for the whole fetch");
    let gets: Vec<_> = reqs[1..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        gets,
        [
            "/latest/meta-data/instance-id",
            "/latest/meta-data/local-hostname",
            "/latest/user-data"
        ]
    );
    for r in &reqs[1..] {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("x-aws-ec2-metadata-token"), Some("AQAEA-token-0"));
    }
}

/// The token expires mid-fetch: 401, a new token, and on.
#[test]
fn expired_token_gets_a_new_one() {
    let st = Arc::new(Ec2State::default());
    *st.expire_after_lock() = Some(1);
    let s = server(&st, Some(USER_DATA));
    let f = fetch_from("ec2", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.user_data, USER_DATA);
    assert_eq!(st.issued(), 2);
    let paths: Vec<_> = s
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/instance-id",
            "GET /latest/meta-data/local-hostname",
            "PUT /latest/api/token",
            "GET /latest/meta-data/local-hostname",
            "GET /latest/user-data",
        ]
    );
}

/// 403 on the token: IMDS is disabled; stop at once, say so.
#[test]
fn forbidden_token_stops_at_once() {
    let st = Arc::new(Ec2State::default());
    st.forbid_token.store(true, Ordering::SeqCst);
    let s = server(&st, Some(USER_DATA));
    let t = Instant::now();
    let e = fetch_from("ec2", &s.url(), &options(Duration::from_secs(10))).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "datasource ec2: PUT {}/latest/api/token failed: status 403",
            s.url()
        )),
        "{msg}"
    );
    assert!(msg.contains("metadata service is disabled"), "{msg}");
    assert_eq!(s.requests().len(), 1, "no retry");
}

/// The IPv6 endpoint, as a literal in brackets.
#[test]
fn ipv6_endpoint() {
    let Ok(l) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("SKIPPED ipv6_endpoint: no ::1 here");
        return;
    };
    drop(l);
    let st = Arc::new(Ec2State::default());
    let s = Server::start_on("[::1]:0".parse().unwrap(), ec2(Meta::new("i-v6", None), st));
    assert!(s.url().starts_with("http://[::1]:"));
    let f = fetch_from("ec2", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "i-v6");
}

/// Several endpoints (IPv4, then IPv6 by default): one that refuses
/// connections is passed over for the next, which is then kept.
#[test]
fn next_endpoint_when_one_does_not_answer() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let st = Arc::new(Ec2State::default());
    let s = server(&st, Some(USER_DATA));
    let p = imprint::fetch::ec2::Ec2::with_bases(
        vec![format!("http://{dead}"), s.url()],
        &options(Duration::from_secs(5)),
    );
    let f = p.fetch().unwrap().unwrap();
    assert_eq!(f.source, s.url());
    assert_eq!(f.user_data, USER_DATA);
    assert_eq!(st.issued(), 1);
}

/// An override that is not plain `http://` is the caller's mistake: refused
/// by identify, before anything is read, as a usage error (64); fetch
/// refuses it too, for a caller that did not identify first.
#[test]
fn https_override_is_refused() {
    use imprint::identify::{Datasource, Identified, Request};
    let dir = tempfile::tempdir().unwrap();
    let root = imprint::root::Root::at(dir.path());
    let req = Request {
        datasource: Some("ec2".into()),
        metadata_url: Some("https://127.0.0.1:1".into()),
        ..Request::default()
    };
    let e = imprint::identify::identify(&root, &req, &[]).unwrap_err();
    assert_eq!(e.exit_code(), imprint::ExitCode::Usage);
    assert!(e.to_string().contains("must be an http:// URL"), "{e}");
    let id = Identified {
        datasource: Datasource::Ec2,
        seed: None,
        device: None,
        rules: Vec::new(),
    };
    let e = imprint::fetch::fetch(&root, &id, &req, &options(Duration::from_secs(1))).unwrap_err();
    assert!(e.to_string().contains("must be an http:// URL"), "{e}");
}
