//! The `digitalocean` source against a fake metadata server on 127.0.0.1 that
//! behaves as the provider documents (tests/fakes).

mod fakes;

use fakes::DIGITALOCEAN as K;

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

use fakes::{fetch_from, options, Meta, Server, USER_DATA};
use std::time::Duration;

/// The droplet id, hostname, user-data and vendor-data paths; no header
/// is needed (so there is no "wrong header" case for DigitalOcean).
#[test]
fn paths_and_vendor_data() {
    let s = Server::start(fakes::digitalocean(Meta::new("123456789", Some(USER_DATA))));
    let f = fetch_from("digitalocean", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "123456789");
    assert_eq!(f.vendor_data.as_deref(), Some(&b"#cloud-config\n"[..]));
    let paths: Vec<_> = s.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/v1/id",
            "/metadata/v1/hostname",
            "/metadata/v1/user-data",
            "/metadata/v1/vendor-data"
        ]
    );
}
