//! Unit tests of apply on temp roots with in-memory plans.

use super::*;
use crate::model::{Mode as FileMode, Origin};
use crate::plan::{ChangeKind, FileChange};
use crate::render::RenderedFile;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn change(path: &str, content: &str, mode: u32, uid: u32, gid: u32) -> FileChange {
    FileChange {
        file: RenderedFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: FileMode(mode),
            owner: None,
            restart: vec![],
            reload: vec![],
            origin: Origin::Manifest { index: 0 },
            append: false,
            holds_secret: false,
        },
        content: content.as_bytes().to_vec(),
        uid,
        gid,
        kind: ChangeKind::Create,
        previous: None,
    }
}

fn plan(changes: Vec<FileChange>) -> Plan {
    Plan {
        changes,
        ..Plan::default()
    }
}

/// Hash of every path, type, mode, owner, link target and content.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        let extra = if md.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().display().to_string()
        } else if md.is_file() {
            String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
        } else {
            let mut kids: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            stack.extend(kids);
            String::new()
        };
        out.push(format!(
            "{rel} {:o} {}:{} {extra}",
            md.mode(),
            md.uid(),
            md.gid()
        ));
    }
    out.sort();
    out
}

fn root_with_base() -> (tempfile::TempDir, Root) {
    let t = tempfile::tempdir().unwrap();
    for d in ["etc", "var/lib", "run"] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    let r = Root::at(t.path());
    (t, r)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn writes_files_parents_modes_and_owners() {
    let (t, root) = root_with_base();
    let (u, g) = if is_root() { (1234, 2345) } else { ids() };
    let p = plan(vec![
        change("/opt/app/conf/app.env", "A=1\n", 0o640, u, g),
        change("/etc/motd", "hello\n", 0o644, 0, 0),
        change("/usr/local/bin/tool", "#!/bin/sh\n", 0o4755, 0, 0),
    ]);
    let a = apply(&root, &p).unwrap();
    assert_eq!(a.written.len(), 3);
    assert_eq!(
        a.created_dirs,
        vec![
            "/opt",
            "/opt/app",
            "/opt/app/conf",
            "/usr",
            "/usr/local",
            "/usr/local/bin"
        ]
    );
    let md = std::fs::metadata(t.path().join("opt/app/conf/app.env")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 2345));
        let md = std::fs::metadata(t.path().join("usr/local/bin/tool")).unwrap();
        assert_eq!(
            md.mode() & 0o7777,
            0o4755,
            "set-uid kept: chmod comes after chown"
        );
    }
    assert_eq!(
        std::fs::read_to_string(t.path().join("opt/app/conf/app.env")).unwrap(),
        "A=1\n"
    );
    for d in ["opt", "opt/app", "opt/app/conf"] {
        let md = std::fs::metadata(t.path().join(d)).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o755, "{d}");
    }
    assert_eq!(a.written[0].sha256, crate::pipeline::sha256_hex(b"A=1\n"));
    assert_eq!((a.written[0].uid, a.written[0].gid), (u, g));
    // No temp files, no journal left behind.
    let all = tree(t.path()).join("\n");
    assert!(!all.contains("imprint-tmp"), "{all}");
    assert!(!t.path().join(JOURNAL).exists());
}

#[test]
fn replaces_existing_file_atomically() {
    let (t, root) = root_with_base();
    let f = t.path().join("etc/app.conf");
    std::fs::write(&f, "old\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ino = std::fs::metadata(&f).unwrap().ino();
    let (u, g) = ids();
    apply(
        &root,
        &plan(vec![change("/etc/app.conf", "new\n", 0o600, u, g)]),
    )
    .unwrap();
    let md = std::fs::metadata(&f).unwrap();
    assert_ne!(md.ino(), ino, "renamed over, not rewritten in place");
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
}

#[test]
fn empty_plan_touches_nothing() {
    let (t, root) = root_with_base();
    let before = tree(t.path());
    apply(&root, &Plan::default()).unwrap();
    assert_eq!(tree(t.path()), before);
}

fn assert_refused(root: &Root, t: &tempfile::TempDir, p: Plan, needle: &str) {
    let before = tree(t.path());
    let e = apply(root, &p).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, crate::Error::Apply(ApplyError::Refused { .. })),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg}");
    assert_eq!(
        tree(t.path()),
        before,
        "nothing written, not even the journal"
    );
}

#[test]
fn refuses_symlink_at_final_path() {
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/real"), "x").unwrap();
    std::os::unix::fs::symlink("real", t.path().join("etc/link")).unwrap();
    let (u, g) = ids();
    assert_refused(
        &root,
        &t,
        plan(vec![
            change("/etc/ok", "fine", 0o644, u, g),
            change("/etc/link", "y", 0o644, u, g),
        ]),
        "is a symlink",
    );
}

#[test]
fn refuses_symlink_out_of_the_root() {
    let (t, root) = root_with_base();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), t.path().join("etc/out")).unwrap();
    std::os::unix::fs::symlink("../../..", t.path().join("etc/up")).unwrap();
    let (u, g) = ids();
    for path in ["/etc/out/x", "/etc/out/sub/x", "/etc/up/x"] {
        assert_refused(
            &root,
            &t,
            plan(vec![
                change("/etc/ok", "fine", 0o644, u, g),
                change(path, "y", 0o644, u, g),
            ]),
            "leads outside the root",
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn refuses_parent_dir_components() {
    let (t, root) = root_with_base();
    let (u, g) = ids();
    assert_refused(
        &root,
        &t,
        plan(vec![change("/etc/../../x", "y", 0o644, u, g)]),
        "`..`",
    );
}

#[test]
fn refuses_directory_in_the_way_and_file_as_parent() {
    let (t, root) = root_with_base();
    std::fs::create_dir_all(t.path().join("etc/app.conf")).unwrap();
    std::fs::write(t.path().join("etc/plain"), "x").unwrap();
    let (u, g) = ids();
    assert_refused(
        &root,
        &t,
        plan(vec![change("/etc/app.conf", "y", 0o644, u, g)]),
        "a directory is in the way",
    );
    assert_refused(
        &root,
        &t,
        plan(vec![change("/etc/plain/x", "y", 0o644, u, g)]),
        "/etc/plain is not a directory",
    );
}

#[test]
fn follows_in_root_symlinks_for_parents() {
    let (t, root) = root_with_base();
    std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
    let (u, g) = ids();
    apply(&root, &plan(vec![change("/lib/x.conf", "y", 0o644, u, g)])).unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path().join("usr/lib/x.conf")).unwrap(),
        "y"
    );
}

#[test]
fn failure_part_way_restores_everything() {
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/y"), "old y\n").unwrap();
    std::fs::set_permissions(
        t.path().join("etc/y"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let before = tree(t.path());
    let (u, g) = ids();
    // /a/b is created as a directory (the parent of /a/b/c) and then cannot
    // be replaced by a file: a real failure after two files were written.
    let p = plan(vec![
        change("/etc/x", "new x\n", 0o644, u, g),
        change("/etc/y", "new y\n", 0o600, u, g),
        change("/a/b", "file\n", 0o644, u, g),
        change("/a/b/c", "deep\n", 0o644, u, g),
    ]);
    let e = apply(&root, &p).unwrap_err();
    assert!(
        matches!(e, crate::Error::Apply(ApplyError::Write { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("/a/b"), "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    // Only imprint's own (empty) state directory is new: the journal is gone.
    std::fs::remove_dir(t.path().join("var/lib/imprint")).unwrap();
    assert_eq!(tree(t.path()), before);
}

#[test]
fn recover_rolls_back_a_crashed_run() {
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/y"), "old y\n").unwrap();
    let before = tree(t.path());
    let rdir = open_root(&root).unwrap();
    let (u, g) = ids();
    let mut create = Vec::new();
    let ty = preflight(&rdir, "/etc/y", &mut create).unwrap();
    let tx = preflight(&rdir, "/new/dir/x", &mut create).unwrap();
    let j = Journal {
        version: 2,
        id: run_id(),
        started: "now".into(),
        entries: vec![
            Entry {
                path: ty.path.clone(),
                previous: ty.previous.clone(),
            },
            Entry {
                path: tx.path.clone(),
                previous: None,
            },
        ],
        created_dirs: create.iter().map(|d| display(d)).collect(),
    };
    begin_journal(&root, &j, &[]).unwrap();
    // The "crash": /etc/y written, /new/dir created and a temp file left.
    std::fs::write(t.path().join("etc/y"), "new y\n").unwrap();
    std::fs::create_dir_all(t.path().join("new/dir")).unwrap();
    std::fs::write(t.path().join("new/dir/.x.imprint-tmp"), "partial").unwrap();
    let _ = (u, g);
    let restored = recover(&root).unwrap();
    assert_eq!(restored, vec!["/etc/y", "/new/dir/x"]);
    // The state dir was created by the journal; everything else is as before.
    std::fs::remove_dir(t.path().join("var/lib/imprint")).unwrap();
    assert_eq!(tree(t.path()), before);
    assert!(recover(&root).unwrap().is_empty(), "idempotent");
}

#[test]
fn corrupt_journal_is_a_clear_error() {
    let (t, root) = root_with_base();
    std::fs::create_dir_all(t.path().join("var/lib/imprint")).unwrap();
    std::fs::write(t.path().join(JOURNAL), "{half").unwrap();
    let e = recover(&root).unwrap_err().to_string();
    assert!(e.contains("journal.json"), "{e}");
    assert!(e.contains("by hand"), "{e}");
}

#[test]
fn temp_file_is_created_with_final_mode() {
    // The temp file never has more permission bits than the final mode:
    // created O_EXCL with them, chmodded exactly before any byte is written.
    let t = tempfile::tempdir().unwrap();
    let dir = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
    write_atomic(&dir, OsStr::new("s"), b"secret", 0o600, None).unwrap();
    let md = std::fs::metadata(t.path().join("s")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600);
    // A stale temp (from a crash) is replaced, not an error.
    std::fs::write(t.path().join(".s.imprint-tmp"), "stale").unwrap();
    write_atomic(&dir, OsStr::new("s"), b"again", 0o600, None).unwrap();
    assert!(!t.path().join(".s.imprint-tmp").exists());
    assert_eq!(std::fs::read(t.path().join("s")).unwrap(), b"again");
}

#[test]
fn owner_policy() {
    assert_eq!(owner_to_set(0, 0, true, (5, 6)), Ok(Some((5, 6))));
    assert_eq!(
        owner_to_set(1000, 1000, true, (1000, 1000)),
        Ok(Some((1000, 1000)))
    );
    assert_eq!(owner_to_set(1000, 1000, false, (0, 0)), Ok(None));
    assert!(owner_to_set(1000, 1000, true, (0, 0))
        .unwrap_err()
        .contains("not running as root"));
}

#[test]
fn many_files_in_batches_are_all_written() {
    // More than one batch (64), in several directories (new and existing),
    // one of them created by this run: every file lands with its content and
    // mode, no temp file is left, and the journal is gone.
    let (t, root) = root_with_base();
    let (u, g) = ids();
    let changes: Vec<_> = (0..150)
        .map(|i| {
            let dir = ["etc/a", "etc", "srv/new/deep"][i % 3];
            change(
                &format!("/{dir}/f{i:03}"),
                &format!("file {i}\n"),
                0o640,
                u,
                g,
            )
        })
        .collect();
    std::fs::create_dir_all(t.path().join("etc/a")).unwrap();
    let applied = apply(&root, &plan(changes)).unwrap();
    assert_eq!(applied.written.len(), 150);
    assert_eq!(
        applied.created_dirs,
        vec!["/srv", "/srv/new", "/srv/new/deep"]
    );
    for i in 0..150 {
        let dir = ["etc/a", "etc", "srv/new/deep"][i % 3];
        let p = t.path().join(format!("{dir}/f{i:03}"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("file {i}\n"));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    }
    let temps: Vec<_> = tree(t.path())
        .into_iter()
        .filter(|l| l.contains("imprint-tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    assert!(!t.path().join(JOURNAL).exists());
}

#[test]
fn sync_all_reports_each_result_in_order() {
    // A pipe cannot be synced (EINVAL): its error lands at its own index
    // whichever worker thread synced it.
    let t = tempfile::tempdir().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    let r = std::os::fd::OwnedFd::from(r);
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    for i in 0..20 {
        if i == 13 {
            fds.push(r.try_clone().unwrap());
        } else {
            fds.push(
                std::fs::File::create(t.path().join(format!("f{i}")))
                    .unwrap()
                    .into(),
            );
        }
    }
    let results = sync_all(&fds);
    assert_eq!(results.len(), 20);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_err(), i == 13, "index {i}: {r:?}");
    }
    assert!(sync_all::<std::fs::File>(&[]).is_empty());
}

fn sample_journal(root: &Root) -> Journal {
    let rdir = open_root(root).unwrap();
    let mut create = Vec::new();
    let ty = preflight(&rdir, "/etc/y", &mut create).unwrap();
    Journal {
        version: 2,
        id: run_id(),
        started: "now".into(),
        entries: vec![Entry {
            path: ty.path.clone(),
            previous: ty.previous.clone(),
        }],
        created_dirs: vec![],
    }
}

#[test]
fn every_torn_journal_is_incomplete_and_damage_is_an_error() {
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/y"), "old y\n").unwrap();
    let j = sample_journal(&root);
    let bytes = encode_journal(&j).unwrap();
    assert!(matches!(decode_journal(&bytes), Ok(Found::Valid(v)) if v == j));
    // A crash before the sync returned leaves any prefix, possibly followed
    // by NUL bytes where the size reached the disk and the data did not.
    for n in 0..bytes.len() {
        let prefix = &bytes[..n];
        assert!(
            matches!(decode_journal(prefix), Ok(Found::Incomplete(_))),
            "prefix of {n} bytes: {:?}",
            decode_journal(prefix)
        );
        let mut zeroed = prefix.to_vec();
        zeroed.resize(bytes.len(), 0);
        assert!(
            matches!(decode_journal(&zeroed), Ok(Found::Incomplete(_))),
            "prefix of {n} bytes, NUL to full length: {:?}",
            decode_journal(&zeroed)
        );
    }
    // Damage a crash cannot explain stays an error for the operator.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x01;
    assert!(decode_journal(&flipped).is_err());
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"xx");
    assert!(decode_journal(&longer).is_err());
    assert!(decode_journal(b"hello\n{}").is_err());
    // Version 1 (plain JSON, renamed into place) still reads.
    let v1 = serde_json::to_vec(&j).unwrap();
    assert!(matches!(decode_journal(&v1), Ok(Found::Valid(_))));
}

#[test]
fn recover_drops_a_torn_journal_and_changes_nothing_else() {
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/y"), "old y\n").unwrap();
    let bytes = encode_journal(&sample_journal(&root)).unwrap();
    // The state directory as a run leaves it (one that is not 0700 is made
    // so: an_existing_state_directory_is_made_private).
    let state = t.path().join("var/lib/imprint");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let before = tree(t.path());
    std::fs::write(t.path().join(JOURNAL), &bytes[..bytes.len() / 2]).unwrap();
    assert!(recover(&root).unwrap().is_empty());
    assert_eq!(tree(t.path()), before, "only the journal went");
}

#[test]
fn recover_keeps_the_files_of_a_run_whose_seal_names_its_journal() {
    // The crash came after the seal's rename reached the disk and before the
    // journal's removal did: the run finished.
    let (t, root) = root_with_base();
    std::fs::write(t.path().join("etc/y"), "old y\n").unwrap();
    let (u, g) = ids();
    let mut a =
        apply_pending(&root, &plan(vec![change("/etc/y", "new y\n", 0o644, u, g)])).unwrap();
    let pending = std::mem::take(&mut a.pending);
    let id = pending.journal_id().unwrap().to_string();
    let seal = |journal: Option<String>| crate::seal::Seal {
        instance_id: "i-1".into(),
        user_data_sha256: String::new(),
        time: String::new(),
        version: String::new(),
        datasource: String::new(),
        files: a.written.clone(),
        units: vec![],
        journal,
        host_keys: None,
    };
    // A seal of another run (an older one, or none): roll back.
    crate::seal::write(&root, &seal(Some("another run".into()))).unwrap();
    assert!(t.path().join(JOURNAL).exists());
    let journal = std::fs::read(t.path().join(JOURNAL)).unwrap();
    assert_eq!(recover(&root).unwrap(), vec!["/etc/y"]);
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/y")).unwrap(),
        "old y\n"
    );
    // This run's seal: keep the files, drop the journal.
    std::fs::write(t.path().join("etc/y"), "new y\n").unwrap();
    std::fs::write(t.path().join(JOURNAL), &journal).unwrap();
    crate::seal::write(&root, &seal(Some(id))).unwrap();
    assert!(recover(&root).unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/y")).unwrap(),
        "new y\n"
    );
    assert!(!t.path().join(JOURNAL).exists());
}

#[test]
fn finish_seals_durably_with_or_without_files() {
    let (t, root) = root_with_base();
    let (u, g) = ids();
    // Nothing applied (a run that found every file as rendered): the seal
    // alone, on a root whose state directory does not exist yet.
    std::fs::remove_dir_all(t.path().join("var")).unwrap();
    finish(&root, &Pending::default(), Some(("sealed", b"{}\n"))).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("var/lib/imprint/sealed")).unwrap(),
        b"{}\n"
    );
    // Files applied: the journal stays until finish, which removes it.
    let mut a =
        apply_pending(&root, &plan(vec![change("/etc/new/x", "x\n", 0o644, u, g)])).unwrap();
    assert!(t.path().join(JOURNAL).exists(), "kept until finish");
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/new/x")).unwrap(),
        "x\n"
    );
    finish(
        &root,
        &std::mem::take(&mut a.pending),
        Some(("sealed", b"{\"n\":2}\n")),
    )
    .unwrap();
    assert!(!t.path().join(JOURNAL).exists());
    assert_eq!(
        std::fs::read(t.path().join("var/lib/imprint/sealed")).unwrap(),
        b"{\"n\":2}\n"
    );
    let names: Vec<_> = std::fs::read_dir(t.path().join("var/lib/imprint"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("sealed")],
        "no temp left"
    );
}

#[test]
fn named_temp_files_where_o_tmpfile_is_not_available() {
    // The path taken where O_TMPFILE or linking it fails: same result, in
    // new and existing directories, and more than one batch.
    let (t, root) = root_with_base();
    let (u, g) = ids();
    let changes: Vec<_> = (0..70)
        .map(|i| {
            let dir = ["etc", "srv/new"][i % 2];
            change(
                &format!("/{dir}/f{i:02}"),
                &format!("file {i}\n"),
                0o640,
                u,
                g,
            )
        })
        .collect();
    let mut a = apply_with(&root, &plan(changes), false).unwrap();
    assert!(a.pending.files.is_empty(), "nothing linked");
    finish(&root, &std::mem::take(&mut a.pending), None).unwrap();
    for i in 0..70 {
        let dir = ["etc", "srv/new"][i % 2];
        let p = t.path().join(format!("{dir}/f{i:02}"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("file {i}\n"));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    }
    assert!(tree(t.path()).iter().all(|l| !l.contains("imprint-tmp")));
    assert!(!t.path().join(JOURNAL).exists());
}

#[test]
fn the_first_batch_is_linked_from_anonymous_files() {
    // Where O_TMPFILE works (ext4, xfs, btrfs, tmpfs), the first batch is
    // synced with the journal and synced again by finish (its link count
    // changed after that sync).
    let (t, root) = root_with_base();
    let (u, g) = ids();
    let mut a = apply_pending(
        &root,
        &plan(vec![
            change("/etc/x", "x\n", 0o600, u, g),
            change("/new/y", "y\n", 0o644, u, g),
        ]),
    )
    .unwrap();
    let tmpfile = rustix::fs::openat(
        open_root(&root).unwrap(),
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .is_ok();
    if tmpfile {
        assert_eq!(
            a.pending.files,
            vec![PathBuf::from("etc/x"), PathBuf::from("new/y")]
        );
    }
    finish(&root, &std::mem::take(&mut a.pending), None).unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/x")).unwrap(),
        "x\n"
    );
    assert_eq!(
        std::fs::metadata(t.path().join("etc/x")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("new/y")).unwrap(),
        "y\n"
    );
    assert!(tree(t.path()).iter().all(|l| !l.contains("imprint-tmp")));
}
