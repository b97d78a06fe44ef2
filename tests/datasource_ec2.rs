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
fn insufficient_storage_twice_then_ok() {
    fakes::insufficient_storage_twice_then_ok(&K);
}

#[test]
fn not_implemented_is_fatal_at_once() {
    fakes::not_implemented_is_fatal_at_once(&K);
}

#[test]
fn instance_id_not_found_twice_then_ok() {
    fakes::instance_id_not_found_twice_then_ok(&K);
}

#[test]
fn instance_id_not_found_for_good_hits_the_deadline() {
    fakes::instance_id_not_found_for_good_hits_the_deadline(&K);
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
use std::io::Write;
use std::net::SocketAddr;
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
        nocloud: Default::default(),
        rules: Vec::new(),
    };
    let e = imprint::fetch::fetch(&root, &id, &req, &options(Duration::from_secs(1))).unwrap_err();
    assert!(e.to_string().contains("must be an http:// URL"), "{e}");
}

/// Make every IPv6 socket of the calling thread (and of threads it starts)
/// fail with EAFNOSUPPORT, as on a kernel booted with `ipv6.disable=1`: a
/// seccomp filter, which binds one thread only, so the fake servers of this
/// and other tests are untouched. `Err` where seccomp is not available.
fn refuse_ipv6_sockets_on_this_thread() -> std::io::Result<()> {
    use libc::{sock_filter, sock_fprog};
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at 0, args[0] at 16 (low half on the
    // little-endian targets this runs on).
    let filter = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            libc::SYS_socket as u32,
        ),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 16),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            libc::AF_INET6 as u32,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut sock_filter,
    };
    // SAFETY: plain prctl calls; `prog` and `filter` outlive them (the
    // kernel copies the program).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    match std::net::TcpStream::connect("[::1]:1") {
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(()),
        other => Err(std::io::Error::other(format!(
            "the filter did not take: {other:?}"
        ))),
    }
}

/// The default endpoints (IPv4, then IPv6) on a kernel without IPv6, early
/// in boot: IPv4 refuses at first, IPv6 fails with "address family not
/// supported". The IPv6 endpoint is dropped; the IPv4 one is asked until
/// it answers. (It used to end the fetch at once, exit 69.)
#[test]
fn ipv6_disabled_kernel_falls_back_to_ipv4() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let st = Arc::new(Ec2State::default());
    let fake = ec2(Meta::new("i-v4-only", Some(USER_DATA)), st.clone());
    let up = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        Server::start_on(addr, fake)
    });
    let fetched = std::thread::spawn(move || {
        if let Err(e) = refuse_ipv6_sockets_on_this_thread() {
            return Err(e.to_string());
        }
        let p = imprint::fetch::ec2::Ec2::with_bases(
            vec![format!("http://{addr}"), "http://[::1]:1".into()],
            &options(Duration::from_secs(10)),
        );
        Ok(p.fetch())
    })
    .join()
    .unwrap();
    let s = up.join().unwrap();
    let f = match fetched {
        Err(why) => {
            eprintln!("SKIPPED ipv6_disabled_kernel_falls_back_to_ipv4: no seccomp here ({why})");
            return;
        }
        Ok(r) => r.unwrap().unwrap(),
    };
    assert_eq!(f.instance_id, "i-v4-only");
    assert_eq!(f.source, s.url());
    assert_eq!(f.user_data, USER_DATA);
    assert_eq!(st.issued(), 1);
}

/// A server on 127.0.0.1 that answers every connection with something that
/// is not HTTP (an SSH banner), then closes.
fn not_http() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten().take(50) {
            let mut c = c;
            let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        }
    });
    addr
}

/// Any transport error that no retry helps drops that endpoint only: one
/// that does not speak HTTP is passed over for the next.
#[test]
fn an_endpoint_that_is_not_http_is_dropped() {
    let bad = not_http();
    let st = Arc::new(Ec2State::default());
    let s = server(&st, Some(USER_DATA));
    let p = imprint::fetch::ec2::Ec2::with_bases(
        vec![format!("http://{bad}"), s.url()],
        &options(Duration::from_secs(5)),
    );
    let f = p.fetch().unwrap().unwrap();
    assert_eq!(f.source, s.url());
    assert_eq!(f.user_data, USER_DATA);
}

/// With no endpoint left the fetch fails at once (no waiting for the
/// deadline), naming each endpoint and what went wrong with it.
#[test]
fn no_usable_endpoint_fails_at_once() {
    let (a, b) = (not_http(), not_http());
    let p = imprint::fetch::ec2::Ec2::with_bases(
        vec![format!("http://{a}"), format!("http://{b}")],
        &options(Duration::from_secs(10)),
    );
    let t = Instant::now();
    let e = p.fetch().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "datasource ec2: PUT http://{b}/latest/api/token failed: "
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "no other endpoint was usable either: PUT http://{a}/latest/api/token: "
        )),
        "{msg}"
    );
    assert_eq!(imprint::Error::from(e).exit_code().code(), 69);
}
