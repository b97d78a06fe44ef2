//! The `openstack` source against a fake metadata server on 127.0.0.1 that
//! behaves as the provider documents (tests/fakes).

mod fakes;

use fakes::OPENSTACK as K;

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
use imprint::fetch::{self, openstack, Options};
use imprint::identify::{self, Request};
use imprint::root::Root;
use std::time::Duration;

/// No config drive: the metadata service, `meta_data.json` (uuid) and
/// `user_data`; no header is needed (no "wrong header" case).
#[test]
fn metadata_service_paths() {
    let s = Server::start(fakes::openstack(Meta::new(
        "83679162-1378-4288-a2d4-70e13ec132aa",
        Some(USER_DATA),
    )));
    let f = fetch_from("openstack", &s.url(), &options(Duration::from_secs(5))).unwrap();
    assert_eq!(f.instance_id, "83679162-1378-4288-a2d4-70e13ec132aa");
    let meta: serde_json::Value = serde_json::from_slice(f.meta_data.as_ref().unwrap()).unwrap();
    assert_eq!(meta["name"], "web-1");
    let paths: Vec<_> = s.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/openstack/latest/meta_data.json",
            "/openstack/latest/user_data"
        ]
    );
}

/// A config drive's files, as Nova writes them (read from a directory:
/// mounting is covered by the NoCloud device tests, same code).
#[test]
fn config_drive_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("openstack/latest");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("meta_data.json"),
        r#"{"uuid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "hostname": "cd.novalocal", "name": "cd"}"#,
    )
    .unwrap();
    std::fs::write(d.join("user_data"), USER_DATA).unwrap();
    let f = openstack::read_config_drive(t.path(), "/dev/sr0", 1 << 20).unwrap();
    assert_eq!(f.instance_id, "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d");
    assert_eq!(f.hostname.as_deref(), Some("cd.novalocal"));
    assert_eq!(f.user_data, USER_DATA);
    std::fs::remove_file(d.join("user_data")).unwrap();
    assert!(openstack::read_config_drive(t.path(), "x", 1 << 20)
        .unwrap()
        .user_data
        .is_empty());
    std::fs::write(d.join("meta_data.json"), r#"{"name": "x"}"#).unwrap();
    let e = openstack::read_config_drive(t.path(), "/dev/sr0", 1 << 20).unwrap_err();
    assert!(e.to_string().contains("no \"uuid\""), "{e}");
}

/// A config drive present comes first: under --root it is found, not
/// mounted, and the metadata service is not asked.
#[test]
fn config_drive_first() {
    let s = Server::start(fakes::openstack(Meta::new("net", None)));
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("dev/disk/by-label")).unwrap();
    std::os::unix::fs::symlink("../../sr0", t.path().join("dev/disk/by-label/config-2")).unwrap();
    let root = Root::at(t.path());
    let req = Request {
        datasource: Some("openstack".into()),
        metadata_url: Some(s.url()),
        ..Request::default()
    };
    let id = identify::identify(&root, &req, &[]).unwrap();
    let e = fetch::fetch(&root, &id, &req, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("found the config drive"), "{e}");
    assert!(s.requests().is_empty());
}
