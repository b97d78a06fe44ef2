//! The `azure` source against a fake metadata server on 127.0.0.1 that
//! behaves as the provider documents (tests/fakes).

mod common;
mod fakes;

use fakes::AZURE as K;

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

use fakes::{fetch_from, options, Meta, Reply, Seen, Server, USER_DATA};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `Metadata: true`, an api-version and format=text on every request.
#[test]
fn metadata_header_and_api_version() {
    let s = Server::start(fakes::azure(Meta::new(
        "91267c52-9f02-4cfe-b1f4-a4da7ebac2cf",
        Some(USER_DATA),
    )));
    let f = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "91267c52-9f02-4cfe-b1f4-a4da7ebac2cf");
    for r in s.requests() {
        assert_eq!(r.header("metadata"), Some("true"));
        assert_eq!(r.query("api-version"), Some("2021-01-01"));
        assert_eq!(r.query("format"), Some("text"));
    }
    let routes: Vec<_> = s.requests().iter().map(|r| r.route().to_string()).collect();
    assert_eq!(
        routes,
        [
            "/metadata/instance/compute/vmId",
            "/metadata/instance/compute/osProfile/computerName",
            "/metadata/instance/compute/userData"
        ]
    );
}

/// Without the header IMDS answers 400 with its JSON error: that text
/// reaches the operator, and a 400 is not retried.
#[test]
fn wrong_header_gives_imds_error() {
    let inner = fakes::azure(Meta::new("x", None));
    let s = Server::start(Arc::new(move |r: &Seen| {
        let mut r = r.clone();
        r.headers.retain(|(n, _)| n != "metadata");
        inner(&r)
    }));
    let e = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("failed: status 400"), "{msg}");
    assert!(
        msg.contains("Required metadata header not specified"),
        "{msg}"
    );
    assert_eq!(s.requests().len(), 1);
}

/// Early after boot IMDS answers 404 and 410 for a while: retried.
#[test]
fn not_ready_yet_is_retried() {
    let n = Arc::new(AtomicUsize::new(0));
    let inner = fakes::azure(Meta::new("vm-1", Some(USER_DATA)));
    let n2 = n.clone();
    let s = Server::start(Arc::new(move |r: &Seen| {
        match n2.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::new(404, "{\"error\":\"Not found\"}"),
            1 => Reply::new(410, "{\"error\":\"Gone\"}"),
            _ => inner(r),
        }
    }));
    let f = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "vm-1");
    assert_eq!(f.user_data, USER_DATA);
}

/// userData that is not base64 is invalid user-data (65, not 69: asking
/// again gives the same bytes): the error names the source, the first bad
/// byte (counted in the body as served, white space included) and what to
/// do; `imprint run` writes nothing.
#[test]
fn user_data_not_base64() {
    let serve = |body: &'static str| {
        Server::start(Arc::new(move |r: &Seen| {
            if r.route().ends_with("/userData") {
                Reply::new(200, body)
            } else {
                Reply::new(200, "vm-1")
            }
        }))
    };
    let s = serve("aGVsbG8g\nd29y!GQ=");
    let e = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    let msg = e.to_string();
    for says in [
        &format!(
            "invalid user-data: Azure userData from {}/metadata/instance/compute/userData?",
            s.url()
        )[..],
        "not base64: byte 14 of 17 is '!', which is not a base64 character",
        "give the VM its user-data base64-encoded (Terraform: user_data = base64encode(...)",
    ] {
        assert!(msg.contains(says), "{says:?} in {msg}");
    }
    assert_eq!(
        imprint::error::Error::from(e).exit_code(),
        imprint::ExitCode::DataErr
    );
    // Cut short; and plain text (what a configuration that forgot
    // base64encode sends).
    let s = serve("aGVsbG8gd29ybGQ");
    let e = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    assert!(
        e.to_string()
            .contains("not base64: the = padding at its end is wrong"),
        "{e}"
    );
    let s = serve("aGVsbG8gd29yb");
    let e = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap_err();
    assert!(
        e.to_string()
            .contains("not base64: 13 base64 characters cannot be complete"),
        "{e}"
    );
    let s = serve("#cloud-config\n");
    let t = common::TempRoot::new();
    let o = common::run(
        common::imprint()
            .args(["run", "--root"])
            .arg(t.path())
            .args(["--datasource", "azure", "--metadata-url", &s.url()]),
    );
    let err = common::stderr(&o);
    assert_eq!(common::code(&o), 65, "{err}");
    assert!(
        err.contains("not base64: byte 1 of 14 is '#', which is not a base64 character"),
        "{err}"
    );
    assert!(
        !t.join("/etc").exists() && !t.join("/var/lib/imprint/sealed").exists(),
        "nothing written"
    );
}

/// No userData: empty user-data, and a warning that names `custom_data`
/// (not read: it reaches the VM through the provisioning ISO, not IMDS)
/// and says to use Terraform's `user_data` instead.
#[test]
fn empty_user_data_warns_about_custom_data() {
    let s = Server::start(fakes::azure(Meta::new("vm-1", None)));
    let f = fetch_from("azure", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert!(f.user_data.is_empty());
    let t = common::TempRoot::new();
    let o = common::run(
        common::imprint()
            .args(["fetch", "--root"])
            .arg(t.path())
            .args(["--datasource", "azure", "--metadata-url", &s.url()]),
    );
    let err = common::stderr(&o);
    assert_eq!(common::code(&o), 0, "{err}");
    assert!(err.contains("Azure userData is empty"), "{err}");
    assert!(err.contains("custom_data"), "{err}");
    assert!(
        err.contains("user_data (Terraform's user_data) instead"),
        "{err}"
    );
    // With userData: no such warning.
    let s = Server::start(fakes::azure(Meta::new("vm-1", Some(USER_DATA))));
    let o = common::run(
        common::imprint()
            .args(["fetch", "--root"])
            .arg(t.path())
            .args(["--datasource", "azure", "--metadata-url", &s.url()]),
    );
    assert_eq!(common::code(&o), 0, "{}", common::stderr(&o));
    assert!(
        !common::stderr(&o).contains("custom_data"),
        "{}",
        common::stderr(&o)
    );
}
