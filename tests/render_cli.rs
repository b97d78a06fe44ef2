//! `imprint render` and `imprint plan` as black boxes, on sandbox roots.
//!
//! Needs: dash (Debian's /bin/sh).

mod common;

use common::*;
use std::path::{Path, PathBuf};

const DEMO_PASSWORD: &str = "s3cr3t-Pa$$word";
const DEMO_GREETING: &str = "it's a \"quoted\" $HOME \\ # ünïcødé";

fn demo() -> (TempRoot, PathBuf) {
    let root = TempRoot::new();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    copy_tree(&fx.join("root"), root.path());
    (root, fx.join("user-data.b64"))
}

fn cmd(what: &str, root: &TempRoot, user_data: &Path) -> std::process::Output {
    run(imprint()
        .arg(what)
        .arg("--root")
        .arg(root.path())
        .arg("--user-data")
        .arg(user_data))
}

/// A root with this manifest and templates, and user-data (written outside
/// the root).
fn image(
    manifest: &str,
    templates: &[(&str, &str)],
    user_data: &str,
) -> (TempRoot, tempfile::TempDir) {
    let root = TempRoot::new();
    root.write("/etc/imprint/imprint.yaml", manifest);
    for (name, text) in templates {
        root.write(&format!("/etc/imprint/templates/{name}"), text);
    }
    root.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:990:990::/opt/app:/usr/sbin/nologin\n",
    );
    root.write("/etc/group", "root:x:0:\napp:x:990:\n");
    let ud = tempfile::tempdir().unwrap();
    std::fs::write(ud.path().join("user-data"), user_data).unwrap();
    (root, ud)
}

#[test]
fn render_prints_files_quoted_for_env_with_secrets_masked() {
    let (root, ud) = demo();
    let before = tree_hash(root.path(), &[]);
    let o = cmd("render", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(r#"APP_GREETING="it's a \"quoted\" \$HOME \\ # ünïcødé""#),
        "{out}"
    );
    assert!(out.contains("WORKER_PORT=\"6432\""), "{out}");
    assert!(
        out.contains("==> /opt/app/conf.env (mode 0640, owner root:app, manifest files[0]) <=="),
        "{out}"
    );
    assert!(
        !out.contains(DEMO_PASSWORD) && !stderr(&o).contains(DEMO_PASSWORD),
        "{out}"
    );
    assert!(out.contains("DB_PASSWORD=********"), "{out}");
    assert_eq!(
        tree_hash(root.path(), &[]),
        before,
        "render changed the root"
    );
}

/// The demo's 0600 licence key from `write_files` (user-data cannot declare
/// it secret) is listed by `render` with its mode and owner, its content
/// hidden; the world-readable /etc/motd entry is shown whole.
#[test]
fn render_hides_the_demo_licence_key() {
    let (root, ud) = demo();
    let o = cmd("render", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("LICENSE-1234-ABCD") && !stderr(&o).contains("LICENSE-1234-ABCD"),
        "{out}"
    );
    assert!(
        out.contains(
            "==> /etc/app/licence.key (mode 0600, owner root:root, user-data part 1 write_files[1]) <==\n\
             (content hidden: write_files entry with mode 0600; see docs/templates.md; 18 bytes)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "==> /etc/motd (mode 0644, owner root:root, user-data part 1 write_files[0]) <==\n\
             This server was configured by imprint at first boot.\n"
        ),
        "{out}"
    );
}

#[test]
fn render_missing_value_names_file_template_line_and_key() {
    let (root, ud) = image(
        "files:\n  - path: /etc/app.conf\n    template: app.conf.hbs\n",
        &[("app.conf.hbs", "host={{db.host}}\nport={{db.nope}}\n")],
        r#"{"db": {"host": "h"}}"#,
    );
    let before = tree_hash(root.path(), &[]);
    let o = cmd("render", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    for needle in ["/etc/app.conf", "app.conf.hbs", "line 2", "db.nope"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    assert_eq!(tree_hash(root.path(), &[]), before);
}

#[test]
fn render_refuses_a_value_env_cannot_carry_without_showing_it() {
    let (root, ud) = image(
        "values:\n  db.password: { type: string, secret: true }\nfiles:\n  - path: /etc/app.env\n    template: app.env.hbs\n",
        &[("app.env.hbs", "P={{db.password}}\n")],
        r#"{"db": {"password": "first-line\nsecond-line"}}"#,
    );
    let o = cmd("plan", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("/etc/app.env") && err.contains("db.password") && err.contains("newline"),
        "{err}"
    );
    assert!(
        !err.contains("first-line") && !stdout(&o).contains("first-line"),
        "{err}"
    );
}

/// The operator's report: a number and a list in `config.json` came out as
/// `"5"` and `"[a, b]"`, a map in an env file as `API="[object]"`. Now the
/// json file gets JSON, and the env file is refused (65, before anything is
/// written) with the file, template, line, key and what to write instead.
#[test]
fn lists_maps_and_numbers_are_json_in_json_files_and_refused_in_env_files() {
    let manifest = "files:\n  - path: /etc/app/config.json\n    template: config.json.hbs\n";
    let json_t = (
        "config.json.hbs",
        "{\"port\": {{port}}, \"flags\": {{flags}}}\n",
    );
    let user_data = r#"{"port": 5, "flags": ["a", "b"], "api": {"url": "https://api"}}"#;
    let (root, ud) = image(manifest, &[json_t], user_data);
    let o = cmd("render", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("{\"port\": 5, \"flags\": [\"a\",\"b\"]}\n"),
        "{}",
        stdout(&o)
    );

    let manifest = format!("{manifest}  - path: /etc/app/api.env\n    template: api.env.hbs\n");
    let env_t = ("api.env.hbs", "# the API\nAPI={{api}}\n");
    let (root, ud) = image(&manifest, &[json_t, env_t], user_data);
    let state = ["var", "run"];
    let before = tree_hash(root.path(), &state);
    for what in ["render", "plan", "run"] {
        let o = cmd(what, &root, &ud.path().join("user-data"));
        assert_eq!(code(&o), 65, "{what}: {}", stderr(&o));
        let err = stderr(&o);
        for needle in [
            "/etc/app/api.env",
            "api.env.hbs",
            "line 2",
            "value api is a map",
            "{{api.NAME}}",
            "{{env (json api)}}",
        ] {
            assert!(err.contains(needle), "{what}: {needle} missing from: {err}");
        }
        assert!(!err.contains("https://api"), "{err}");
        assert!(!stdout(&o).contains("[object]"), "{}", stdout(&o));
    }
    assert!(
        !root.join("/etc/app/config.json").exists(),
        "nothing written"
    );
    assert_eq!(tree_hash(root.path(), &state), before);
}

/// `validate` renders too (in memory): user-data whose values pass the
/// manifest's declarations but that the run would reject at render time is
/// invalid (65) with the same message, and the root is left as it was.
#[test]
fn validate_rejects_what_render_would_reject() {
    let cases = [
        // a template's value that is not there (strict mode)
        (
            "files:\n  - path: /etc/app.conf\n    template: app.conf.hbs\n",
            ("app.conf.hbs", "host={{db.host}}\nport={{db.nope}}\n"),
            r#"{"db": {"host": "h"}}"#,
            vec!["/etc/app.conf", "app.conf.hbs", "line 2", "db.nope"],
        ),
        // a value env quoting cannot carry
        (
            "values:\n  db.password: { type: string, secret: true }\nfiles:\n  - path: /etc/app.env\n    template: app.env.hbs\n",
            ("app.env.hbs", "# the password\nP={{db.password}}\n"),
            r#"{"db": {"password": "first-line\nsecond-line"}}"#,
            vec!["failed to render /etc/app.env from template app.env.hbs, line 2, column 3: failed to quote value db.password for escape env: the value has a newline at byte 10"],
        ),
    ];
    for (manifest, template, user_data, needles) in cases {
        let (root, ud) = image(manifest, &[template], user_data);
        let ud = ud.path().join("user-data");
        let before = tree_hash(root.path(), &[]);
        let render = cmd("render", &root, &ud);
        let o = cmd("validate", &root, &ud);
        assert_eq!(code(&o), 65, "{}", stderr(&o));
        let err = stderr(&o);
        for needle in needles {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        assert!(!err.contains("first-line"), "{err}");
        assert_eq!(err, stderr(&render), "validate and render say the same");
        assert_eq!(
            tree_hash(root.path(), &[]),
            before,
            "validate changed the root"
        );
    }
}

#[test]
fn render_write_files_undecodable_content_names_the_entry() {
    // base64 of "not gzip", said to be gzip.
    let (root, ud) = image(
        "",
        &[],
        "#cloud-config\nwrite_files:\n  - path: /etc/ok\n    content: fine\n  - path: /etc/x\n    encoding: gz+b64\n    content: bm90IGd6aXA=\n",
    );
    let state = ["var", "run"];
    let before = tree_hash(root.path(), &state);
    let o = cmd("run", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("part 1 write_files[1]")
            && err.contains("not valid gzip")
            && err.contains("/etc/x"),
        "{err}"
    );
    assert!(!root.join("/etc/ok").exists(), "nothing is written");
    assert_eq!(
        tree_hash(root.path(), &state),
        before,
        "only state (the report) may change"
    );
}

#[test]
fn plan_unknown_owner_is_an_error_saying_what_to_do() {
    let (root, ud) = image(
        "files:\n  - path: /etc/a\n    template: a.hbs\n    owner: nosuchuser\n",
        &[("a.hbs", "x\n")],
        "{}",
    );
    let o = cmd("plan", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("nosuchuser") && err.contains("/etc/a") && err.contains("numeric uid"),
        "{err}"
    );
}

#[test]
fn plan_shows_only_changes_masks_secrets_and_changes_nothing() {
    let (root, ud) = demo();
    // Already as rendered: unchanged.
    root.write(
        "/etc/motd",
        "This server was configured by imprint at first boot.\n",
    );
    // A previous version holding another password.
    root.write(
        "/opt/app/conf.env",
        "DB_HOST=\"old-db\"\nDB_PASSWORD=\"old-Pa55\"\n",
    );
    let before = tree_hash(root.path(), &[]);
    let o = cmd("plan", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("unchanged /etc/motd"), "{out}");
    assert!(!out.contains("create   /etc/motd"), "{out}");
    assert!(out.contains("modify   /opt/app/conf.env"), "{out}");
    // The file holds a secret: old values are masked whatever their key.
    assert!(
        out.contains("-DB_HOST=\"********\"") && out.contains("+DB_HOST=\"db.prod.internal\""),
        "{out}"
    );
    // The licence key (a 0600 write_files entry) is hidden whole.
    assert!(
        out.contains(
            "+++ b/etc/app/licence.key (content hidden: write_files entry with mode 0600; \
             see docs/templates.md)\n@@ -0,0 +1 @@\n+********\n"
        ),
        "{out}"
    );
    for leak in [DEMO_PASSWORD, "old-Pa55", "old-db", "LICENSE-1234"] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
        assert!(!stderr(&o).contains(leak));
    }
    assert_eq!(tree_hash(root.path(), &[]), before, "plan changed the root");
}

/// `plan` of a one-file manifest over an image file: stdout, checked to
/// hold none of `leaks`.
fn plan_over(
    manifest: &str,
    template: &str,
    image_file: (&str, &str, u32),
    user_data: &str,
    leaks: &[&str],
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let (root, ud) = image(manifest, &[("t.hbs", template)], user_data);
    let (path, old, mode) = image_file;
    root.write(path, old);
    std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    let before = tree_hash(root.path(), &[]);
    let o = cmd("plan", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for leak in leaks {
        assert!(
            !out.contains(leak) && !stderr(&o).contains(leak),
            "{leak} leaked:\n{out}"
        );
    }
    assert_eq!(tree_hash(root.path(), &[]), before, "plan changed the root");
    out
}

/// The image's redis.conf holds its own password, on a `key value` line
/// (no `=` or `:`), and another one on a line that goes away.
#[test]
fn plan_masks_old_secrets_on_space_separated_lines() {
    let out = plan_over(
        "files:\n  - path: /etc/redis/redis.conf\n    template: t.hbs\n",
        "bind 0.0.0.0\nport 6379\nrequirepass {{redis.password}}\n",
        (
            "/etc/redis/redis.conf",
            "bind 127.0.0.1\nport 6379\nrequirepass OLDSECRET-from-image\nmasterauth OLD-masterauth\n",
            0o640,
        ),
        r#"{"redis": {"password": "n3w-redis-pw"}}"#,
        &["OLDSECRET", "OLD-masterauth", "n3w-redis-pw", "127.0.0.1"],
    );
    assert!(out.contains("modify   /etc/redis/redis.conf"), "{out}");
    assert!(
        out.contains("-requirepass ********\n") && out.contains("+requirepass ********\n"),
        "{out}"
    );
    assert!(out.contains("-bind ********\n+bind 0.0.0.0\n"), "{out}");
    assert!(out.contains(" port 6379\n"), "{out}");
}

/// INI: a secret under a key that the new rendering renames, and a file
/// that held a secret (0600, written for a previous instance) and now holds
/// none.
#[test]
fn plan_masks_old_secrets_in_ini_files_with_or_without_a_secret_now() {
    let manifest = "values:\n  db.host: { type: string }\n  db.password: { type: string }\nfiles:\n  - path: /etc/app/app.ini\n    template: t.hbs\n";
    let out = plan_over(
        manifest,
        "[database]\nhost = {{db.host}}\npassword = {{db.password}}\n",
        (
            "/etc/app/app.ini",
            "[database]\nhost = old-db\nauth = OLD-ini-auth\n",
            0o644,
        ),
        r#"{"db": {"host": "db2", "password": "n3w-ini-pw"}}"#,
        &["OLD-ini-auth", "n3w-ini-pw", "old-db"],
    );
    assert!(out.contains(" [database]\n-host = ********\n"), "{out}");
    assert!(out.contains("+host = db2\n+password = ********\n"), "{out}");

    let out = plan_over(
        manifest,
        "[database]\nhost = {{db.host}}\n{{#if db.password}}password = {{db.password}}\n{{/if}}",
        (
            "/etc/app/app.ini",
            "[database]\nhost = old-db\npassword = OLD-ini-pw\n",
            0o600,
        ),
        r#"{"db": {"host": "db2"}}"#,
        &["OLD-ini-pw", "old-db"],
    );
    assert!(
        out.contains("-host = ********\n-********\n+host = db2\n"),
        "{out}"
    );
}

/// A file that holds no secret and was readable by all shows its old text:
/// the diff of a plain config stays readable, beside a masked one.
#[test]
fn plan_shows_old_text_of_files_without_secrets() {
    let (root, ud) = image(
        "values:\n  redis.port: { type: integer }\n  redis.password: { type: string }\nfiles:\n  - path: /etc/redis/redis.conf\n    template: redis.hbs\n  - path: /etc/redis/auth.conf\n    template: auth.hbs\n",
        &[
            ("redis.hbs", "# redis\nport {{redis.port}}\nloglevel notice\n"),
            ("auth.hbs", "requirepass {{redis.password}}\n"),
        ],
        r#"{"redis": {"port": 6380, "password": "n3w-redis-pw"}}"#,
    );
    root.write(
        "/etc/redis/redis.conf",
        "# redis\nport 6379\nloglevel verbose\n",
    );
    root.write("/etc/redis/auth.conf", "requirepass OLD-auth\n");
    let o = cmd("plan", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(" # redis\n-port 6379\n-loglevel verbose\n+port 6380\n+loglevel notice\n"),
        "{out}"
    );
    assert!(
        out.contains("-requirepass ********\n+requirepass ********\n"),
        "{out}"
    );
    assert!(
        !out.contains("OLD-auth") && !out.contains("n3w-redis-pw"),
        "{out}"
    );
}

#[test]
fn plan_after_a_run_restarts_only_units_of_changed_files() {
    let (root, ud) = demo();
    let o = cmd("run", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = cmd("plan", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("no changes: 6 file(s)"),
        "{}",
        stdout(&o)
    );

    root.write("/etc/default/worker", "WORKER_DB=\"elsewhere\"\n");
    let o = cmd("plan", &root, &ud);
    let out = stdout(&o);
    assert!(out.contains("modify   /etc/default/worker"), "{out}");
    assert!(out.contains("restart  worker.service"), "{out}");
    assert!(!out.contains(" app.service"), "{out}");
    assert!(!out.contains("syslog-ng.service"), "{out}");
    assert!(!out.contains("daemon-reload"), "{out}");
}

#[test]
fn env_files_written_by_a_run_read_back_byte_for_byte_in_dash() {
    let (root, ud) = demo();
    let o = cmd("run", &root, &ud);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let sh = run(std::process::Command::new("dash")
        .env_clear()
        .arg("-c")
        .arg(r#". "$1" && . "$2" && printf '%s\n' "$APP_GREETING" "$DB_PASSWORD" "$APP_WORKERS" "$WORKER_DB""#)
        .arg("sh")
        .arg(root.join("/opt/app/conf.env"))
        .arg(root.join("/etc/default/worker")));
    assert!(sh.status.success(), "{}", stderr(&sh));
    assert_eq!(
        stdout(&sh),
        format!("{DEMO_GREETING}\n{DEMO_PASSWORD}\n4\ndb.prod.internal\n")
    );
}

#[test]
fn validate_with_config_away_from_the_image_says_the_units_were_this_machines() {
    const WARNING: &str = "depends on the image's unit files (a path named by EnvironmentFile= is quoted as env), and without --root they were read from this machine's";
    let (root, ud) = demo();
    let config = root.join("/etc/imprint/imprint.yaml");
    let validate = |with_root: bool, config: &Path| {
        let mut c = imprint();
        c.arg("validate")
            .arg("--user-data")
            .arg(&ud)
            .arg("--config")
            .arg(config);
        if with_root {
            c.arg("--root").arg(root.path());
        }
        run(&mut c)
    };
    // The demo's papertrail.conf and app.service drop-in take their
    // default quoting from the units: without --root, from the host's.
    let o = validate(false, &config);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains(WARNING), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pass --root with the image's tree"),
        "{}",
        stderr(&o)
    );
    // With the image's tree, or when no file's quoting depends on units.
    let o = validate(true, &config);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains(WARNING), "{}", stderr(&o));
    let (only_env, _ud) = image(
        "files:\n  - path: /etc/app.env\n    template: app.env.hbs\n  - path: /etc/app.conf\n    template: app.conf.hbs\n    escape: none\n",
        &[("app.env.hbs", "A=1\n"), ("app.conf.hbs", "a=1\n")],
        "{}",
    );
    let o = validate(false, &only_env.join("/etc/imprint/imprint.yaml"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains(WARNING), "{}", stderr(&o));
}

/// `if:` naming a key no `values:` declaration covers: with undeclared keys
/// refused (the default), it could never be set and the file would be
/// skipped for ever; the manifest is refused instead, naming the entry and
/// the nearest declared key. Under `unsupported: warn` such a key can be
/// set, and is accepted.
#[test]
fn if_naming_an_undeclared_key_is_a_manifest_error() {
    let manifest = |policy: &str| {
        format!(
            "{policy}values:\n  papertrail.url: {{type: string}}\nfiles:\n  - path: /etc/pt.conf\n    template: pt.hbs\n    escape: none\n    if: papertrail.urll\n"
        )
    };
    let (root, ud) = image(&manifest(""), &[("pt.hbs", "{{papertrail.url}}\n")], "{}");
    let before = tree_hash(root.path(), &[]);
    let o = cmd("validate", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "files[0].if: line 7, column 5: papertrail.urll is not declared under values:, so it would never be set and the file never written; name a key the manifest declares (did you mean papertrail.url?)"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_hash(root.path(), &[]), before);
    let (root, ud) = image(
        &manifest("unsupported: warn\n"),
        &[("pt.hbs", "{{papertrail.url}}\n")],
        "{}",
    );
    let o = cmd("validate", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// An unquoted decimal mode (`mode: 640`, the decimal number 640, mode
/// 1200) is an invalid manifest, found by `validate` at image build; YAML
/// 1.1 octal (`mode: 0640`) and the quoted string are the mode they say.
#[test]
fn decimal_mode_in_the_manifest_is_refused_octal_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let manifest = |mode: &str| {
        format!("version: 1\nfiles:\n  - path: /etc/x.env\n    env: {{X: x}}\n    mode: {mode}\n")
    };
    let (root, ud) = image(&manifest("640"), &[], "{\"x\": \"1\"}\n");
    // A failed run leaves its report: where it goes is made beforehand.
    std::fs::create_dir_all(root.join("/var/lib")).unwrap();
    std::fs::create_dir_all(root.join("/run")).unwrap();
    let before = tree_hash(root.path(), &["var/lib/imprint", "run"]);
    for what in ["validate", "run"] {
        let o = cmd(what, &root, &ud.path().join("user-data"));
        assert_eq!(code(&o), 65, "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "files[0].mode: line 5: the file /etc/x.env has mode: 640, an integer not written in octal: YAML reads it as 640, which is mode 1200, not 0640; write the mode as a quoted octal string: mode: \"0640\""
            ),
            "{what}: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        tree_hash(root.path(), &["var/lib/imprint", "run"]),
        before,
        "nothing written"
    );
    for mode in ["0640", "\"0640\""] {
        let (root, ud) = image(&manifest(mode), &[], "{\"x\": \"1\"}\n");
        let o = cmd("run", &root, &ud.path().join("user-data"));
        assert_eq!(code(&o), 0, "{mode}: {}", stderr(&o));
        let m = std::fs::metadata(root.join("/etc/x.env")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640, "{mode}");
    }
    // The same mode merged in from an anchor (`<<: *defaults`) is refused
    // too, at the line where the anchor wrote it; a file that sets its own
    // mode is not affected by the merged one.
    let merged = |mode: &str| {
        format!("version: 1\nfiles:\n  - path: /etc/w.env\n    env: {{W: x}}\n    mode: \"0600\"\n    <<: &defaults {{owner: root, mode: {mode}}}\n  - path: /etc/x.env\n    env: {{X: x}}\n    <<: *defaults\n")
    };
    let (root, ud) = image(&merged("640"), &[], "{\"x\": \"1\"}\n");
    let o = cmd("validate", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "files[1].mode: line 6 (merged in with <<): the file /etc/x.env has mode: 640, an integer not written in octal: YAML reads it as 640, which is mode 1200, not 0640; write the mode as a quoted octal string: mode: \"0640\""
        ),
        "{}",
        stderr(&o)
    );
    let (root, ud) = image(&merged("0640"), &[], "{\"x\": \"1\"}\n");
    let o = cmd("run", &root, &ud.path().join("user-data"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!((mode("/etc/w.env"), mode("/etc/x.env")), (0o600, 0o640));
}
