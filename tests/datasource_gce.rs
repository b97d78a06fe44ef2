//! The `gce` source against a fake metadata server on 127.0.0.1 that
//! behaves as the provider documents (tests/fakes).

mod fakes;

use fakes::GCE as K;

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

use fakes::{fetch_from, gce_with_encoding, options, Meta, Reply, Seen, Server, USER_DATA};
use imprint::error::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Every request says `Metadata-Flavor: Google`.
#[test]
fn metadata_flavor_on_every_request() {
    let s = Server::start(fakes::gce(Meta::new("1234567890", Some(USER_DATA))));
    fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap();
    let reqs = s.requests();
    assert!(reqs.len() >= 3);
    for r in &reqs {
        assert_eq!(r.header("metadata-flavor"), Some("Google"), "{r:?}");
        assert!(r.path.starts_with("/computeMetadata/v1/instance/"), "{r:?}");
    }
}

/// The header is refused (a proxy stripped it, say): GCE's real 403 text
/// reaches the operator, and nothing is retried.
#[test]
fn wrong_header_gives_googles_error() {
    let inner = fakes::gce(Meta::new("1", None));
    let s = Server::start(Arc::new(move |r: &Seen| {
        let mut r = r.clone();
        r.headers.retain(|(n, _)| n != "metadata-flavor");
        inner(&r)
    }));
    let e = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("/computeMetadata/v1/instance/id failed: status 403"),
        "{msg}"
    );
    assert!(
        msg.contains("Missing Metadata-Flavor:Google header"),
        "{msg}"
    );
    assert_eq!(s.requests().len(), 1);
}

/// A server that does not answer as Google's (no Metadata-Flavor header
/// back) is not trusted.
#[test]
fn not_a_gce_server() {
    let s = Server::start(Arc::new(|_: &Seen| Reply::new(200, "1")));
    let e = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    assert!(
        e.to_string().contains("this is not a GCE metadata server"),
        "{e}"
    );
}

/// A 404 on `instance/id` without Google's header back is not a server
/// that is not ready yet: it is not a GCE server, and that is said at once.
#[test]
fn not_found_from_a_server_that_is_not_gce() {
    let s = Server::start(Arc::new(|_: &Seen| Reply::new(404, "nothing here")));
    let e = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    assert!(
        e.to_string().contains("this is not a GCE metadata server"),
        "{e}"
    );
    assert_eq!(s.requests().len(), 1, "not retried");
}

/// `user-data-encoding: base64` is decoded.
#[test]
fn base64_user_data_encoding() {
    use base64::Engine;
    let enc = base64::engine::general_purpose::STANDARD.encode(USER_DATA);
    let s = Server::start(gce_with_encoding(
        Meta::new("1", Some(enc.as_bytes())),
        Some("base64"),
    ));
    let f = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.user_data, USER_DATA);
    let s = Server::start(gce_with_encoding(
        Meta::new("1", Some(b"!!")),
        Some("base64"),
    ));
    let e = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    assert!(e.to_string().contains("not valid base64"), "{e}");
    assert_eq!(
        imprint::error::Error::from(e).exit_code(),
        ExitCode::DataErr
    );
}

/// An unknown `user-data-encoding` is invalid user-data (65), not an
/// unavailable datasource (69): the message names the value, the one
/// accepted, and what to do. (cloud-init ignores it and reads the raw
/// bytes; imprint refuses rather than misread them: docs/datasources.md.)
#[test]
fn unknown_user_data_encoding_is_invalid_user_data() {
    let s = Server::start(gce_with_encoding(Meta::new("1", Some(b"x")), Some("rot13")));
    let e = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    let msg = e.to_string();
    for says in [
        "invalid user-data: instance/attributes/user-data-encoding:",
        "\"rot13\" is not an encoding imprint knows (the only one is base64)",
        "set user-data-encoding to base64",
        "remove the key",
    ] {
        assert!(msg.contains(says), "{says:?} in {msg}");
    }
    assert_eq!(
        imprint::error::Error::from(e).exit_code(),
        ExitCode::DataErr
    );
}

/// A 404 without `Metadata-Flavor: Google` (Google's server has been seen
/// answering so, googleapis/gcp-metadata#657) means absent, like any 404:
/// no user-data, no `user-data-encoding`. A 200 without it is still
/// refused (`not_a_gce_server`).
#[test]
fn not_found_without_the_flavor_header_is_absent() {
    let strip_404 = |inner: fakes::Handler| -> fakes::Handler {
        Arc::new(move |r: &Seen| match inner(r) {
            Reply::Resp {
                status: 404,
                mut headers,
                body,
            } => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("metadata-flavor"));
                Reply::Resp {
                    status: 404,
                    headers,
                    body,
                }
            }
            other => other,
        })
    };
    // user-data present, user-data-encoding absent (the usual case).
    let s = Server::start(strip_404(fakes::gce(Meta::new("1", Some(USER_DATA)))));
    let f = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "1");
    assert_eq!(f.user_data, USER_DATA);
    // Neither present.
    let s = Server::start(strip_404(fakes::gce(Meta::new("2", None))));
    let f = fetch_from("gce", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert!(f.user_data.is_empty());
}
