//! Plan (stage 7): the pure comparison, the display (secrets masked) and
//! `read_disk` against a temp root.

use imprint::model::{Mode, Origin, OwnerSpec};
use imprint::plan::{self, ChangeKind, Disk, Existing, PlanError};
use imprint::render::{Rendered, RenderedFile};
use imprint::root::Root;
use imprint::secret::{Secrets, MASK};

fn file(path: &str, content: &str) -> RenderedFile {
    RenderedFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode: Mode(0o644),
        owner: None,
        restart: vec![],
        reload: vec![],
        origin: Origin::Manifest { index: 0 },
        append: false,
        holds_secret: false,
    }
}

fn existing(content: &str, mode: u32) -> Option<Existing> {
    Some(Existing {
        content: content.as_bytes().to_vec(),
        mode,
        uid: 0,
        gid: 0,
    })
}

fn rendered(files: Vec<RenderedFile>) -> Rendered {
    Rendered {
        files,
        ..Rendered::default()
    }
}

#[test]
fn only_changed_files_are_changes_and_only_their_units_restart() {
    let mut same = file("/etc/same.conf", "same\n");
    same.restart = vec!["same.service".into()];
    let mut changed = file("/etc/app.env", "A=\"2\"\n");
    changed.restart = vec!["app.service".into(), "worker.service".into()];
    changed.reload = vec!["app.service".into()];
    let mut new = file("/etc/syslog.conf", "x\n");
    new.reload = vec!["syslog-ng.service".into()];
    new.restart = vec!["worker.service".into()];
    let mut meta = file("/etc/meta.conf", "m\n");
    meta.mode = Mode(0o640);
    meta.reload = vec!["meta.service".into()];
    let mut disk = Disk::default();
    disk.files
        .insert("/etc/same.conf".into(), existing("same\n", 0o644));
    disk.files
        .insert("/etc/app.env".into(), existing("A=\"1\"\n", 0o644));
    disk.files.insert("/etc/syslog.conf".into(), None);
    disk.files
        .insert("/etc/meta.conf".into(), existing("m\n", 0o644));
    let mut r = rendered(vec![same, changed, new, meta]);
    r.enable = vec!["app.service".into()];
    let p = plan::plan(r, &disk).unwrap();

    assert_eq!(p.unchanged, ["/etc/same.conf"]);
    let kinds: Vec<(&str, ChangeKind)> = p
        .changes
        .iter()
        .map(|c| (c.file.path.as_str(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("/etc/app.env", ChangeKind::Content),
            ("/etc/syslog.conf", ChangeKind::Create),
            ("/etc/meta.conf", ChangeKind::Metadata)
        ]
    );
    assert_eq!(
        p.restart,
        ["app.service", "worker.service"],
        "deduplicated, in order, same.service not"
    );
    assert_eq!(
        p.reload,
        ["syslog-ng.service", "meta.service"],
        "app.service is restarted, not reloaded"
    );
    assert!(!p.daemon_reload);
    assert_eq!(p.enable, ["app.service"]);
    assert_eq!(p.changes[0].previous, existing("A=\"1\"\n", 0o644));
}

#[test]
fn nothing_to_do_when_everything_matches() {
    let mut f = file("/etc/a", "a");
    f.restart = vec!["a.service".into()];
    let mut disk = Disk::default();
    disk.files.insert("/etc/a".into(), existing("a", 0o644));
    let p = plan::plan(rendered(vec![f]), &disk).unwrap();
    assert!(p.changes.is_empty());
    assert!(p.restart.is_empty() && p.reload.is_empty() && !p.daemon_reload);
    assert!(p.display().contains("no changes"), "{}", p.display());
}

#[test]
fn owner_differences_are_metadata_changes() {
    let mut f = file("/etc/a", "a");
    f.owner = OwnerSpec::parse("app:app");
    let mut disk = Disk::default();
    disk.files.insert("/etc/a".into(), existing("a", 0o644));
    disk.owners.insert("app:app".into(), (1000, 1001));
    let p = plan::plan(rendered(vec![f.clone()]), &disk).unwrap();
    assert_eq!(p.changes[0].kind, ChangeKind::Metadata);
    assert_eq!((p.changes[0].uid, p.changes[0].gid), (1000, 1001));
    assert!(
        p.display().contains("owner 0:0 -> app:app (1000:1001)"),
        "{}",
        p.display()
    );
    disk.files.insert(
        "/etc/a".into(),
        Some(Existing {
            content: b"a".to_vec(),
            mode: 0o644,
            uid: 1000,
            gid: 1001,
        }),
    );
    assert!(plan::plan(rendered(vec![f]), &disk)
        .unwrap()
        .changes
        .is_empty());
}

#[test]
fn daemon_reload_only_for_unit_files_and_drop_ins() {
    for (path, reload) in [
        ("/etc/systemd/system/app.service", true),
        ("/etc/systemd/system/app.service.d/10-imprint.conf", true),
        ("/usr/lib/systemd/system/x.timer", true),
        ("/lib/systemd/system/x.socket", true),
        ("/run/systemd/system/y.service.d/a.conf", true),
        ("/etc/systemd/system/app.service.d/notes.txt", false),
        ("/etc/systemd/system.conf", false),
        ("/etc/systemd/system/README", false),
        ("/etc/app/app.service", false),
    ] {
        let p = plan::plan(rendered(vec![file(path, "x")]), &Disk::default()).unwrap();
        assert_eq!(p.daemon_reload, reload, "{path}");
        assert_eq!(plan::is_unit_path(path), reload, "{path}");
    }
    // An unchanged unit file needs no reload.
    let mut disk = Disk::default();
    disk.files.insert(
        "/etc/systemd/system/app.service".into(),
        existing("x", 0o644),
    );
    let p = plan::plan(
        rendered(vec![file("/etc/systemd/system/app.service", "x")]),
        &disk,
    )
    .unwrap();
    assert!(!p.daemon_reload);
    // Nor does one whose mode alone changes (systemd reads only content);
    // the file is still written.
    disk.files.insert(
        "/etc/systemd/system/app.service".into(),
        existing("x", 0o600),
    );
    let p = plan::plan(
        rendered(vec![file("/etc/systemd/system/app.service", "x")]),
        &disk,
    )
    .unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].kind, ChangeKind::Metadata);
    assert!(!p.daemon_reload);
    // Its content changing does.
    let p = plan::plan(
        rendered(vec![file("/etc/systemd/system/app.service", "y")]),
        &disk,
    )
    .unwrap();
    assert!(p.daemon_reload);
}

#[test]
fn append_adds_to_what_is_there() {
    let mut f = file("/etc/crontab", "new line\n");
    f.append = true;
    let mut disk = Disk::default();
    disk.files
        .insert("/etc/crontab".into(), existing("old\n", 0o644));
    let p = plan::plan(rendered(vec![f.clone()]), &disk).unwrap();
    assert_eq!(p.changes[0].content, b"old\nnew line\n");
    assert_eq!(p.changes[0].kind, ChangeKind::Content);
    let p = plan::plan(rendered(vec![f]), &Disk::default()).unwrap();
    assert_eq!(p.changes[0].content, b"new line\n");
}

#[test]
fn diff_masks_secrets_old_and_new() {
    let mut secrets = Secrets::new();
    secrets.add("n3w-s3cret");
    let mut f = file(
        "/etc/app.env",
        "DB_HOST=\"db2\"\nDB_PASSWORD=\"n3w-s3cret\"\nAPI_TOKEN=\"n3w-s3cret\"\n",
    );
    f.holds_secret = true;
    f.mode = Mode(0o600);
    let mut disk = Disk::default();
    disk.files.insert(
        "/etc/app.env".into(),
        existing("DB_HOST=\"db1\"\nDB_PASSWORD=\"0ld-pass\"\nAPI_TOKEN=\"0ld-tok\"\nLEGACY_SECRET=gone\n", 0o644),
    );
    let r = Rendered {
        files: vec![f],
        secrets,
        ..Rendered::default()
    };
    let out = plan::plan(r, &disk).unwrap().display();
    for leak in ["n3w-s3cret", "0ld-pass", "0ld-tok", "gone"] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
    }
    assert!(out.contains(MASK), "{out}");
    // The new text shows in full but for its secrets; an old line keeps only
    // what it shares with the new one (the file held secrets: any old value
    // may have been one, whatever its key).
    assert!(
        out.contains("-DB_HOST=\"********\"") && out.contains("+DB_HOST=\"db2\""),
        "{out}"
    );
    assert!(out.contains("-API_TOKEN=\"********\""), "{out}");
    assert!(!out.contains("db1"), "{out}");
    assert!(
        out.contains("modify   /etc/app.env (mode 0644 -> 0600, content)"),
        "{out}"
    );
    assert!(
        out.contains("--- a/etc/app.env") && out.contains("+++ b/etc/app.env"),
        "{out}"
    );
}

/// The plan of one file holding a secret (`n3w-s3cret`) over `old`.
fn secret_file_diff(path: &str, old: &str, new: &str, mode: u32) -> String {
    let mut secrets = Secrets::new();
    secrets.add("n3w-s3cret");
    let mut f = file(path, new);
    f.holds_secret = new.contains("n3w-s3cret");
    f.mode = Mode(mode);
    let mut disk = Disk::default();
    disk.files.insert(path.into(), existing(old, 0o644));
    let r = Rendered {
        files: vec![f],
        secrets,
        ..Rendered::default()
    };
    plan::plan(r, &disk).unwrap().display()
}

/// An old value is hidden whatever the shape of its line; the key and the
/// punctuation around the value (shared with the new line) stay, and a line
/// that is gone is masked whole.
#[test]
fn old_values_of_a_secret_file_are_masked_in_every_shape() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "/etc/redis/redis.conf",
            "port 6379\nrequirepass 0ld-redis\nmasterauth 0ld-master\n",
            "port 6379\nrequirepass n3w-s3cret\n",
            &[
                " port 6379",
                "-requirepass ********\n",
                "-********\n",
                "+requirepass ********",
            ],
        ),
        (
            "/etc/app.ini",
            "[db]\nhost = db1\nauth = 0ld-ini\n",
            "[db]\nhost = db2\npassword = n3w-s3cret\n",
            &["-host = ********\n", "+host = db2", "+password = ********"],
        ),
        (
            "/etc/app.json",
            "{\n  \"host\": \"db1\",\n  \"pw\": \"0ld-json\"\n}\n",
            "{\n  \"host\": \"db2\",\n  \"pw\": \"n3w-s3cret\"\n}\n",
            &[
                "-  \"pw\": \"********\"\n",
                "+  \"pw\": \"********\"",
                "+  \"host\": \"db2\",",
            ],
        ),
        (
            "/etc/app.xml",
            "<db>\n  <pass>0ld-xml</pass>\n</db>\n",
            "<db>\n  <pass>n3w-s3cret</pass>\n</db>\n",
            &["-  <pass>********</pass>\n", "+  <pass>********</pass>"],
        ),
        (
            "/etc/app.url",
            "DSN=postgres://app:0ld-url@db1:5432/app\n",
            "DSN=postgres://app:n3w-s3cret@db1:5432/app\n",
            &["-DSN=postgres://app:********@db1:5432/app\n"],
        ),
        (
            "/etc/app.pem",
            "-----BEGIN KEY-----\n0ldKeyLine1\n0ldKeyLine2\n-----END KEY-----\n",
            "token n3w-s3cret\n",
            &["-********\n", "+token ********"],
        ),
    ];
    for (path, old, new, want) in cases {
        let out = secret_file_diff(path, old, new, 0o600);
        for leak in ["0ld", "n3w-s3cret", "db1\"", "= db1"] {
            assert!(!out.contains(leak), "{leak} leaked:\n{out}");
        }
        for w in *want {
            assert!(out.contains(w), "{w:?} missing:\n{out}");
        }
    }
}

/// A long image file replaced by a short template: an old line is paired
/// with the new line of its key wherever each stands.
#[test]
fn an_old_line_is_paired_by_its_key_far_from_its_place() {
    let old: String = (0..300)
        .map(|i| format!("# comment {i}\n"))
        .chain(["requirepass 0ld-far\n".to_string()])
        .collect();
    let out = secret_file_diff(
        "/etc/redis/redis.conf",
        &old,
        "port 6379\nrequirepass n3w-s3cret\n",
        0o600,
    );
    assert!(
        !out.contains("0ld-far") && !out.contains("comment"),
        "{out}"
    );
    assert!(out.contains("-requirepass ********\n"), "{out}");
    assert_eq!(
        out.lines().filter(|l| *l == "-********").count(),
        300,
        "{out}"
    );
}

/// A secret that spans lines (a PEM key) is masked on each of its lines.
#[test]
fn a_secret_over_several_lines_is_masked_line_by_line() {
    let mut secrets = Secrets::new();
    secrets.add("-----BEGIN K-----\nAAAA\nBBBB\n-----END K-----");
    let mut f = file(
        "/etc/tls/key.pem",
        "# key\n-----BEGIN K-----\nAAAA\nBBBB\n-----END K-----\n",
    );
    f.holds_secret = true;
    let r = Rendered {
        files: vec![f],
        secrets,
        ..Rendered::default()
    };
    let out = plan::plan(r.clone(), &Disk::default()).unwrap().display();
    for leak in ["BEGIN", "AAAA", "BBBB", "END"] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
    }
    assert!(
        out.contains("+# key\n+********\n+********\n+********\n+********\n"),
        "{out}"
    );
    // An old line that is a line of the new text, but one the plan masks
    // there (part of the secret), is not shown either.
    let mut disk = Disk::default();
    disk.files
        .insert("/etc/tls/key.pem".into(), existing("AAAA\nAAAA\n", 0o600));
    let out = plan::plan(r, &disk).unwrap().display();
    assert!(!out.contains("AAAA"), "leaked:\n{out}");
}

/// A file that holds no secret, and that nothing says was private, shows its
/// old lines in full; one that was private on disk (or will be), or whose
/// removed lines name a secret, is masked as a secret file is.
#[test]
fn old_text_of_a_file_without_secrets_is_shown_unless_it_may_have_held_one() {
    let plan_of = |old: &str, old_mode: u32, new_mode: u32| {
        let mut f = file("/etc/app.conf", "port 6380\nlevel info\n");
        f.mode = Mode(new_mode);
        let mut disk = Disk::default();
        disk.files
            .insert("/etc/app.conf".into(), existing(old, old_mode));
        plan::plan(rendered(vec![f]), &disk).unwrap().display()
    };
    let out = plan_of("port 6379\nlevel info\n", 0o644, 0o644);
    assert!(out.contains("-port 6379\n+port 6380\n level info"), "{out}");
    for (old, old_mode, new_mode) in [
        ("port 6379\nauth 0ld-auth\nlevel info\n", 0o600, 0o644),
        ("port 6379\nauth 0ld-auth\nlevel info\n", 0o644, 0o640),
        (
            "port 6379\nrequirepass 0ld-auth\nlevel info\n",
            0o644,
            0o644,
        ),
        ("port 6379\nAPI_TOKEN=0ld-auth\nlevel info\n", 0o644, 0o644),
    ] {
        let out = plan_of(old, old_mode, new_mode);
        assert!(!out.contains("0ld-auth"), "leaked:\n{out}");
        assert!(!out.contains("6379"), "not masked:\n{out}");
        assert!(out.contains("-port ********\n"), "{out}");
        assert!(out.contains("+port 6380\n level info"), "{out}");
    }
}

/// The content of a `write_files` entry that others will not be able to
/// read (a licence, a key: user-data cannot declare it secret) is hidden,
/// every line of the diff one mask, context too, with why on the `+++` line;
/// the hunks and the mode change still show. A world-readable entry's
/// content is shown, and so is a private manifest file's (its secrets are
/// declared, and masked by value).
#[test]
fn content_of_a_private_write_files_entry_is_hidden() {
    let entry = |path: &str, content: &str, mode: u32| {
        let mut f = file(path, content);
        f.origin = Origin::WriteFiles { part: 1, index: 0 };
        f.mode = Mode(mode);
        f
    };
    let mut manifest_file = file(
        "/etc/app/private.conf",
        "level debug-manifest
",
    );
    manifest_file.mode = Mode(0o600);
    let mut disk = Disk::default();
    disk.files.insert(
        "/etc/app/licence.key".into(),
        existing("OLD-LICENCE\nkept-line\n", 0o644),
    );
    let r = rendered(vec![
        entry("/etc/app/licence.key", "NEW-LICENCE\nkept-line\n", 0o600),
        entry("/etc/app/group.key", "GROUP-ONLY", 0o640),
        entry("/etc/motd", "hello-world\n", 0o644),
        manifest_file,
    ]);
    let out = plan::plan(r, &disk).unwrap().display();
    for leak in ["OLD-LICENCE", "NEW-LICENCE", "kept-line", "GROUP-ONLY"] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
    }
    assert!(
        out.contains(
            "modify   /etc/app/licence.key (mode 0644 -> 0600, content)\n\
             create   /etc/app/group.key (mode 0640, owner 0:0, 10 bytes)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "--- a/etc/app/licence.key\n\
             +++ b/etc/app/licence.key (content hidden: write_files entry with mode 0600; \
             see docs/templates.md)\n\
             @@ -1,2 +1,2 @@\n-********\n+********\n ********\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "+++ b/etc/app/group.key (content hidden: write_files entry with mode 0640; \
             see docs/templates.md)\n\
             @@ -0,0 +1 @@\n+********\n\\ No newline at end of file\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("+++ b/etc/motd\n@@ -0,0 +1 @@\n+hello-world\n"),
        "{out}"
    );
    assert!(
        out.contains("+++ b/etc/app/private.conf\n@@ -0,0 +1 @@\n+level debug-manifest\n"),
        "{out}"
    );
}

#[test]
fn display_of_creation_binary_and_units() {
    let mut bin = file("/usr/bin/tool", "");
    bin.content = vec![0x7f, b'E', b'L', b'F', 0, 1, 2];
    bin.mode = Mode(0o755);
    let mut unit = file(
        "/etc/systemd/system/app.service",
        "[Service]\nExecStart=/bin/true\n",
    );
    unit.restart = vec!["app.service".into()];
    let p = plan::plan(rendered(vec![bin, unit]), &Disk::default()).unwrap();
    let out = p.display();
    assert!(
        out.contains("create   /usr/bin/tool (mode 0755, owner 0:0, 7 bytes)"),
        "{out}"
    );
    assert!(out.contains("binary, 7 bytes"), "{out}");
    assert!(
        out.contains("--- /dev/null\n+++ b/etc/systemd/system/app.service"),
        "{out}"
    );
    assert!(out.contains("+ExecStart=/bin/true"), "{out}");
    assert!(out.contains("daemon-reload"), "{out}");
    assert!(out.contains("restart  app.service"), "{out}");
}

struct TempRoot(tempfile::TempDir);

impl TempRoot {
    fn new() -> TempRoot {
        TempRoot(tempfile::tempdir().unwrap())
    }
    fn write(&self, p: &str, t: &str) {
        let p = self.0.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    fn root(&self) -> Root {
        Root::at(self.0.path())
    }
}

#[test]
fn read_disk_reads_content_mode_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = TempRoot::new();
    t.write("/etc/a.conf", "old");
    let host = t.0.path().join("etc/a.conf");
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o640)).unwrap();
    let md = std::fs::metadata(&host).unwrap();
    let d = plan::read_disk(
        &t.root(),
        &rendered(vec![file("/etc/a.conf", "new"), file("/etc/new.conf", "n")]),
    )
    .unwrap();
    assert_eq!(
        d.files["/etc/a.conf"],
        Some(Existing {
            content: b"old".to_vec(),
            mode: 0o640,
            uid: md.uid(),
            gid: md.gid()
        })
    );
    assert_eq!(d.files["/etc/new.conf"], None);
}

#[test]
fn read_disk_refuses_symlinks_and_directories() {
    let t = TempRoot::new();
    t.write("/etc/real", "x");
    std::os::unix::fs::symlink("real", t.0.path().join("etc/link")).unwrap();
    std::fs::create_dir_all(t.0.path().join("etc/dir")).unwrap();
    for p in ["/etc/link", "/etc/dir"] {
        let err = plan::read_disk(&t.root(), &rendered(vec![file(p, "x")])).unwrap_err();
        assert!(matches!(err, PlanError::Read { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(p), "{msg}");
    }
    // A parent that leads outside the root is refused, not followed.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), t.0.path().join("escape")).unwrap();
    let err = plan::read_disk(&t.root(), &rendered(vec![file("/escape/passwd", "x")])).unwrap_err();
    assert!(err.to_string().contains("/escape/passwd"), "{err}");
}

#[test]
fn owners_resolve_against_the_roots_passwd_and_group() {
    let t = TempRoot::new();
    t.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n# comment\napp:x:1001:1002::/opt/app:/usr/sbin/nologin\n",
    );
    t.write("/etc/group", "root:x:0:\nadm:x:4:\napp:x:1002:\n");
    let with = |owner: &str| {
        let mut f = file("/etc/x", "x");
        f.owner = OwnerSpec::parse(owner);
        f
    };
    let d = plan::read_disk(
        &t.root(),
        &rendered(vec![
            with("app"),
            with("app:adm"),
            with("root:app"),
            with("4242:4343"),
            with("root"),
        ]),
    )
    .unwrap();
    assert_eq!(d.owners["app"], (1001, 1002), "login group");
    assert_eq!(d.owners["app:adm"], (1001, 4));
    assert_eq!(d.owners["root:app"], (0, 1002));
    assert_eq!(d.owners["4242:4343"], (4242, 4343));
    assert_eq!(d.owners["root"], (0, 0));
    for (o, needle) in [
        ("nobody-here", "no user \"nobody-here\""),
        ("app:nogroup", "no group \"nogroup\""),
    ] {
        let err = plan::read_disk(&t.root(), &rendered(vec![with(o)])).unwrap_err();
        assert!(matches!(err, PlanError::Owner { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains(needle) && msg.contains("/etc/x") && msg.contains("numeric"),
            "{msg}"
        );
        assert_eq!(err.exit_code(), imprint::ExitCode::DataErr);
    }
    // Without passwd/group, root still resolves.
    let bare = TempRoot::new();
    let d = plan::read_disk(&bare.root(), &rendered(vec![with("root:root")])).unwrap();
    assert_eq!(d.owners["root:root"], (0, 0));
}
