//! Render (stage 6), pure: manifests and values built in memory.

use imprint::manifest::{Escape, FileSpec, Manifest, Source};
use imprint::merge::WriteFile;
use imprint::model::{Mode, Origin, OwnerSpec};
use imprint::render::{self, RenderError, Rendered};
use imprint::secret::Secrets;
use imprint::validate::Validated;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

fn spec(path: &str, template: &str) -> FileSpec {
    FileSpec {
        path: path.into(),
        source: Source::Template {
            name: format!("t{}.hbs", path.replace('/', "_")),
            text: template.into(),
        },
        mode: None,
        owner: None,
        restart: vec![],
        reload: vec![],
        when: None,
        escape: None,
    }
}

fn manifest(files: Vec<FileSpec>) -> Manifest {
    let mut m = Manifest::absent();
    m.files = files;
    m
}

fn validated(values: serde_json::Value) -> Validated {
    Validated {
        values: values.as_object().cloned().expect("a map"),
        ..Validated::default()
    }
}

fn one(values: serde_json::Value, path: &str, template: &str) -> Result<String, RenderError> {
    let r = render::render(&validated(values), &manifest(vec![spec(path, template)]))?;
    Ok(String::from_utf8(r.files[0].content.clone()).unwrap())
}

fn text(r: &Rendered, path: &str) -> String {
    let f = r
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    String::from_utf8(f.content.clone()).unwrap()
}

#[test]
fn no_html_escaping_by_default() {
    let out = one(
        json!({"x": "<a href='x'>&amp;\"</a>"}),
        "/etc/app.conf",
        "v={{x}}\n",
    )
    .unwrap();
    assert_eq!(out, "v=<a href='x'>&amp;\"</a>\n");
}

#[test]
fn nested_keys_numbers_booleans_and_each() {
    let out = one(
        json!({"db": {"host": "h", "port": 5432, "tls": true}, "hosts": ["a", "b"]}),
        "/etc/app.conf",
        "{{db.host}}:{{db.port}} {{db.tls}}{{#each hosts}} {{this}}{{/each}}",
    )
    .unwrap();
    assert_eq!(out, "h:5432 true a b");
}

#[test]
fn env_files_quote_every_substitution() {
    let v = json!({"p": "a \"b\" $HOME `id` \\ # it's ü"});
    let quoted = r#""a \"b\" \$HOME \`id\` \\ # it's ü""#;
    let out = one(v.clone(), "/opt/app/conf.env", "P={{p}}\n").unwrap();
    assert_eq!(out, format!("P={quoted}\n"));
    // The explicit helper is not quoted twice; triple-stash is raw.
    let out = one(v.clone(), "/opt/app/conf.env", "P={{env p}}\nR={{{p}}}\n").unwrap();
    assert_eq!(
        out,
        format!("P={quoted}\nR=a \"b\" $HOME `id` \\ # it's ü\n")
    );
    // Helpers that return a value are quoted once, as a whole.
    let out = one(
        json!({"h": "db", "port": 5432}),
        "/opt/app/conf.env",
        "URL={{concat \"pg://\" h \":\" port}}\nU={{upper h}}\n",
    )
    .unwrap();
    assert_eq!(out, "URL=\"pg://db:5432\"\nU=\"DB\"\n");
}

#[test]
fn explicit_escape_overrides_the_default() {
    let mut s = spec("/opt/app/conf.env", "P={{p}}\n");
    s.escape = Some(Escape::None);
    let r = render::render(&validated(json!({"p": "a b"})), &manifest(vec![s])).unwrap();
    assert_eq!(text(&r, "/opt/app/conf.env"), "P=a b\n");

    let mut s = spec("/usr/local/bin/start", "exec app {{arg}}\n");
    s.escape = Some(Escape::Shell);
    let r = render::render(&validated(json!({"arg": "it's $x"})), &manifest(vec![s])).unwrap();
    assert_eq!(text(&r, "/usr/local/bin/start"), "exec app 'it'\\''s $x'\n");
}

#[test]
fn shell_helper_quotes_for_sh() {
    let out = one(json!({"a": "x'y z"}), "/etc/x.sh", "run {{shell a}}").unwrap();
    assert_eq!(out, r"run 'x'\''y z'");
}

#[test]
fn json_files_default_to_json_strings() {
    let out = one(
        json!({"host": "d\"b\n", "port": 5432, "tags": ["a", "b"], "on": true}),
        "/etc/app/config.json",
        r#"{"host": {{host}}, "port": {{json port}}, "tags": {{json tags}}, "on": {{json on}}}"#,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(
        v,
        json!({"host": "d\"b\n", "port": 5432, "tags": ["a", "b"], "on": true})
    );
}

/// In a json file `{{x}}` writes the value as JSON, typed, as `{{json x}}`
/// does: numbers and booleans as literals, null as `null`, lists and maps as
/// JSON (not `"5"`, `"[a, b]"` or `"[object]"`).
#[test]
fn json_files_write_values_typed() {
    let v = json!({
        "port": 5, "ratio": 1.5, "on": true, "nul": null, "s": "5",
        "flags": ["a", "b\"c"], "api": {"url": "https://x", "tags": [1, false]},
    });
    let out = one(
        v.clone(),
        "/etc/app/config.json",
        r#"{"port": {{port}}, "ratio": {{ratio}}, "on": {{on}}, "nul": {{nul}},
"s": {{s}}, "flags": {{flags}}, "api": {{api}}, "first": {{flags.[0]}},
"d": {{default nope 7}}, "n": {{len flags}}, "each": [{{#each flags}}{{#if @index}}, {{/if}}{{this}}{{/each}}]}"#,
    )
    .unwrap();
    assert!(
        out.starts_with(r#"{"port": 5, "ratio": 1.5, "on": true, "nul": null,"#),
        "{out}"
    );
    assert!(
        out.contains(r#""flags": ["a","b\"c"], "api": {"tags":[1,false],"url":"https://x"}"#),
        "{out}"
    );
    let got: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(
        got,
        json!({
            "port": 5, "ratio": 1.5, "on": true, "nul": null, "s": "5",
            "flags": ["a", "b\"c"], "api": {"url": "https://x", "tags": [1, false]},
            "first": "a", "d": 7, "n": 2, "each": ["a", "b\"c"],
        })
    );
    // A map holding a secret: written, and the file holds a secret (0600).
    let mut v = validated(json!({"db": {"password": "pw-9", "host": "h"}}));
    v.secrets.add("pw-9");
    let r = render::render(&v, &manifest(vec![spec("/etc/db.json", "{{db}}\n")])).unwrap();
    assert_eq!(
        text(&r, "/etc/db.json"),
        "{\"host\":\"h\",\"password\":\"pw-9\"}\n"
    );
    assert!(r.files[0].holds_secret);
    assert_eq!(r.files[0].mode, Mode(0o600));
}

/// Outside json files a list or map has no text: `{{x}}` (and `{{{x}}}`,
/// and a helper giving one) is an error naming the file, template, line
/// and key, saying what to write instead, never `[a, b]` or `[object]`. The
/// forms it suggests work, and blocks over lists and maps still do.
#[test]
fn lists_and_maps_have_no_text_outside_json_files() {
    let v = json!({"flags": ["a", "b c"], "api": {"url": "u"}, "port": 5, "on": true, "hosts": {"web": ["w"]}});
    let with = |path: &str, escape: Option<Escape>, template: &str| {
        let mut s = spec(path, template);
        s.escape = escape;
        render::render(&validated(v.clone()), &manifest(vec![s])).map(|r| text(&r, path))
    };
    // (path, escape, the substitution, key, what, a suggested form)
    let cases = [
        (
            "/etc/app.env",
            None,
            "{{flags}}",
            "flags",
            "list",
            "{{env (json flags)}}",
        ),
        (
            "/etc/app.env",
            None,
            "{{api}}",
            "api",
            "map",
            "{{api.NAME}}",
        ),
        (
            "/etc/app.env",
            None,
            "{{default flags \"x\"}}",
            "flags",
            "list",
            "{{join flags \" \"}}",
        ),
        (
            "/bin/start",
            Some(Escape::Shell),
            "{{flags}}",
            "flags",
            "list",
            "{{#each flags}} {{this}}{{/each}}",
        ),
        (
            "/bin/start",
            Some(Escape::Shell),
            "{{api}}",
            "api",
            "map",
            "{{shell (json api)}}",
        ),
        (
            "/etc/app.conf",
            None,
            "{{flags}}",
            "flags",
            "list",
            "{{flags.[0]}}",
        ),
        (
            "/etc/app.conf",
            None,
            "{{#with api}}{{this}}{{/with}}",
            "this",
            "map",
            "{{json this}}",
        ),
        (
            "/etc/app.conf",
            None,
            "{{lookup hosts \"web\"}}",
            "hosts.[web]",
            "list",
            "{{hosts.[web].[0]}}",
        ),
        (
            "/etc/app.conf",
            None,
            "{{{api}}}",
            "api",
            "map",
            "{{json api}}",
        ),
        (
            "/etc/app/config.json",
            None,
            "{{{flags}}}",
            "flags",
            "list",
            "{{json flags}}",
        ),
    ];
    for (path, escape, subst, key, what, suggested) in cases {
        let err = with(path, escape, &format!("A=1\nB={subst}\n")).unwrap_err();
        match &err {
            RenderError::Template {
                path: p,
                template,
                line,
                column,
                message,
            } => {
                // The innermost tag: `{{this}}` inside `{{#with}}`.
                let at = 3 + subst.rfind("{{this}}").unwrap_or(0);
                assert_eq!(
                    (p.as_str(), *line, *column),
                    (path, 2, at),
                    "{subst}: {err}"
                );
                assert!(template.ends_with(".hbs"), "{err}");
                assert!(
                    message.contains(&format!("value {key} is a {what}")),
                    "{subst}: {message}"
                );
                assert!(message.contains(suggested), "{subst}: {message}");
            }
            e => panic!("{subst}: {e:?}"),
        }
        assert!(
            !err.to_string().contains("[object]") && !err.to_string().contains("b c"),
            "{err}"
        );
    }
    // What the messages suggest renders, quoted for the file.
    assert_eq!(
        with(
            "/etc/app.env",
            None,
            "F={{flags.[0]}}\nJ={{join flags \" \"}}\nA={{env (json api)}}\nU={{api.url}}\nP={{port}}\nO={{on}}\n"
        )
        .unwrap(),
        "F=\"a\"\nJ=\"a b c\"\nA=\"{\\\"url\\\":\\\"u\\\"}\"\nU=\"u\"\nP=\"5\"\nO=\"true\"\n"
    );
    assert_eq!(
        with(
            "/bin/start",
            Some(Escape::Shell),
            "exec app{{#each flags}} {{this}}{{/each}} {{shell (json api)}}"
        )
        .unwrap(),
        r#"exec app 'a' 'b c' '{"url":"u"}'"#
    );
    assert_eq!(
        with(
            "/etc/app.conf",
            None,
            "{{#if flags}}{{#each api}}{{@key}}={{this}}{{/each}} {{json flags}} {{{port}}}{{/if}}"
        )
        .unwrap(),
        r#"url=u ["a","b c"] 5"#
    );
}

#[test]
fn missing_value_names_file_template_line_and_key() {
    let err = one(
        json!({"a": 1}),
        "/etc/app.conf",
        "a={{a}}\n\nb={{db.host}}\n",
    )
    .unwrap_err();
    match &err {
        RenderError::Template {
            path,
            template,
            line,
            column,
            message,
        } => {
            assert_eq!(*column, 3);
            assert_eq!(path, "/etc/app.conf");
            assert_eq!(template, "t_etc_app.conf.hbs");
            assert_eq!(*line, 3, "1-based line");
            assert!(message.contains("db.host"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/app.conf") && msg.contains("line 3") && msg.contains("db.host"),
        "{msg}"
    );
    // First line is line 1; inside a block too.
    let err = one(json!({}), "/x", "{{nope}}").unwrap_err();
    assert!(
        matches!(err, RenderError::Template { line: 1, .. }),
        "{err:?}"
    );
    let err = one(
        json!({"l": [1]}),
        "/x",
        "x\n{{#each l}}\n  {{this.nope}}\n{{/each}}",
    )
    .unwrap_err();
    assert!(
        matches!(err, RenderError::Template { line: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn missing_value_inside_helpers_names_the_key() {
    for t in [
        "{{upper nosuch.key}}",
        "{{env nosuch.key}}",
        "{{json nosuch.key}}",
        "{{#if (eq nosuch.key \"x\")}}y{{/if}}",
        "{{join nosuch.key \",\"}}",
        "{{secret nosuch.key}}",
    ] {
        let err = one(json!({"a": 1}), "/x", t).unwrap_err();
        assert!(err.to_string().contains("nosuch.key"), "{t}: {err}");
    }
}

#[test]
fn template_syntax_error_has_a_line() {
    let err = one(json!({}), "/x", "ok\n{{#if a}}\n").unwrap_err();
    match err {
        RenderError::Template { line, template, .. } => {
            assert!(line >= 2, "{line}");
            assert_eq!(template, "t_x.hbs");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn default_and_required() {
    let v = json!({"set": "v", "empty": "", "nul": null});
    let out = one(
        v.clone(),
        "/x",
        "{{default set \"d\"}} {{default empty \"d\"}} {{default nul \"d\"}} {{default missing \"d\"}}",
    )
    .unwrap();
    assert_eq!(out, "v d d d");
    assert_eq!(one(v.clone(), "/x", "{{required set}}").unwrap(), "v");
    for t in [
        "{{required missing \"ask ops\"}}",
        "{{required empty}}",
        "{{required nul}}",
    ] {
        let err = one(v.clone(), "/x", t).unwrap_err().to_string();
        assert!(err.contains("required value"), "{err}");
    }
    let err = one(v, "/x", "{{required missing \"ask ops\"}}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing") && err.contains("ask ops"), "{err}");
}

#[test]
fn json_base64_join_lower_upper_eq_ne() {
    let v = json!({"s": "Hello World", "l": ["a", 1, true], "m": {"k": "v"}, "n": 7});
    assert_eq!(
        one(v.clone(), "/x", "{{json s}} {{json m}}").unwrap(),
        "\"Hello World\" {\"k\":\"v\"}"
    );
    assert_eq!(
        one(v.clone(), "/x", "{{base64 s}} {{base64 n}}").unwrap(),
        "SGVsbG8gV29ybGQ= Nw=="
    );
    assert_eq!(
        one(v.clone(), "/x", "{{join l \", \"}}|{{join l}}").unwrap(),
        "a, 1, true|a,1,true"
    );
    assert_eq!(
        one(v.clone(), "/x", "{{lower s}} {{upper s}}").unwrap(),
        "hello world HELLO WORLD"
    );
    assert_eq!(
        one(
            v.clone(),
            "/x",
            "{{#if (eq n 7)}}y{{else}}n{{/if}}{{#if (ne s \"x\")}}y{{else}}n{{/if}}{{#if (eq s \"x\")}}y{{else}}n{{/if}}"
        )
        .unwrap(),
        "yyn"
    );
    let err = one(v.clone(), "/x", "{{upper m}}").unwrap_err().to_string();
    assert!(err.contains("m is a map"), "{err}");
    let err = one(v, "/x", "{{join s}}").unwrap_err().to_string();
    assert!(err.contains("not a list"), "{err}");
}

#[test]
fn if_block_on_a_missing_value_is_false() {
    let out = one(json!({}), "/x", "a{{#if p.url}}{{p.url}}{{/if}}b").unwrap();
    assert_eq!(out, "ab");
}

#[test]
fn secret_helper_marks_value_and_file() {
    let r = render::render(
        &validated(json!({"token": "tok-123", "plain": "p"})),
        &manifest(vec![
            spec("/etc/a.conf", "t={{secret token}}\n"),
            spec("/etc/b.conf", "p={{plain}}\n"),
        ]),
    )
    .unwrap();
    assert!(r.secrets.iter().any(|s| s == "tok-123"));
    let a = &r.files[0];
    assert!(a.holds_secret);
    assert_eq!(a.mode, Mode(0o600));
    let b = &r.files[1];
    assert!(!b.holds_secret);
    assert_eq!(b.mode, Mode(0o644));
}

/// A value the helper marks in a later file is secret in the earlier ones
/// too: their default mode does not depend on the order of `files:`, and
/// neither does a `write_files` entry's (decoded before any template).
#[test]
fn secret_helper_marks_files_rendered_before_it() {
    let mut v = validated(json!({"app": {"license": "LIC-42", "name": "n"}}));
    let mut given = wf(1, "/etc/given", "LIC-42", None);
    given.permissions = Some(Mode(0o640));
    v.write_files = vec![wf(0, "/etc/wf", "license LIC-42\n", None), given];
    let mut with_mode = spec("/etc/c.conf", "license {{app.license}}\n");
    with_mode.mode = Some(Mode(0o644));
    let r = render::render(
        &v,
        &manifest(vec![
            spec("/etc/a.conf", "license {{app.license}}\n"),
            spec("/etc/plain.conf", "name {{app.name}}\n"),
            with_mode,
            spec("/etc/b.conf", "lic {{secret app.license}}\n"),
        ]),
    )
    .unwrap();
    let file = |p: &str| r.files.iter().find(|f| f.path == p).unwrap();
    for p in ["/etc/a.conf", "/etc/b.conf", "/etc/wf"] {
        assert!(file(p).holds_secret, "{p}");
        assert_eq!(file(p).mode, Mode(0o600), "{p}");
    }
    // A mode given stays; a file without the value stays 0644.
    assert!(file("/etc/c.conf").holds_secret);
    assert_eq!(file("/etc/c.conf").mode, Mode(0o644));
    assert!(file("/etc/given").holds_secret);
    assert_eq!(file("/etc/given").mode, Mode(0o640));
    assert!(!file("/etc/plain.conf").holds_secret);
    assert_eq!(file("/etc/plain.conf").mode, Mode(0o644));
}

#[test]
fn declared_secrets_make_files_0600_unless_mode_given() {
    let mut v = validated(json!({"db": {"password": "pw-9", "host": "h"}}));
    let mut s = Secrets::new();
    s.add("pw-9");
    v.secrets = s;
    let mut with_mode = spec("/etc/b.env", "P={{db.password}}\n");
    with_mode.mode = Some(Mode(0o640));
    let r = render::render(
        &v,
        &manifest(vec![
            spec("/etc/a.env", "P={{db.password}}\nH={{db.host}}\n"),
            with_mode,
        ]),
    )
    .unwrap();
    assert!(r.files[0].holds_secret);
    assert_eq!(r.files[0].mode, Mode(0o600));
    assert_eq!(r.files[1].mode, Mode(0o640));
    assert!(r.files[1].holds_secret);
}

#[test]
fn derived_forms_of_secrets_are_secrets_too() {
    let mut v = validated(json!({"pw": "a$b"}));
    let mut s = Secrets::new();
    s.add("a$b");
    v.secrets = s;
    let r = render::render(
        &v,
        &manifest(vec![spec(
            "/etc/a.env",
            "P={{pw}}\nB={{base64 pw}}\nU={{upper pw}}\n",
        )]),
    )
    .unwrap();
    let content = text(&r, "/etc/a.env");
    assert_eq!(content, "P=\"a\\$b\"\nB=\"YSRi\"\nU=\"A\\$B\"\n");
    let masked = r.secrets.mask(&content);
    for leak in ["a\\$b", "YSRi", "A\\$B"] {
        assert!(!masked.contains(leak), "{leak} in {masked}");
    }
}

#[test]
fn env_value_that_cannot_round_trip_is_an_error_naming_file_and_key() {
    let mut v = validated(json!({"motd": "line1\nline2", "db": {"password": "x\ny"}}));
    v.secrets.add("x\ny");
    let err = one(
        json!({"motd": "line1\nline2"}),
        "/etc/a.env",
        "# motd\nM={{motd}}\n",
    )
    .unwrap_err();
    let msg = err.to_string();
    // Where, as every render error says it: file, template, line, column,
    // key; then why and what to do.
    assert!(
        msg.starts_with("failed to render /etc/a.env from template t_etc_a.env.hbs, line 2, column 3: failed to quote value motd for escape env: the value has a newline at byte 5: an env file value cannot carry it"),
        "{msg}"
    );
    assert!(!msg.contains("line1"), "{msg}");
    // In a loop the key is the list item's; through a helper, its parameter.
    for (template, at) in [
        ("{{#each l}}\nL={{this}}\n{{/each}}\n", "line 2, column 3: failed to quote value l.[1] for escape env: the value has a NUL byte at byte 1"),
        ("U=\n{{#if l}}U={{upper motd}}{{/if}}\n", "line 2, column 12: failed to quote value motd for escape env: the value has a newline"),
    ] {
        let msg = one(json!({"motd": "line1\nline2", "l": ["a", "b\u{0}"]}), "/etc/a.env", template)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(at), "{msg}");
    }
    // Through the explicit helper: also names the key (and a line).
    let r = render::render(
        &v,
        &manifest(vec![spec("/etc/x.conf", "\nP={{env db.password}}\n")]),
    );
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("db.password") && msg.contains("line 2"),
        "{msg}"
    );
    assert!(!msg.contains("x\ny"), "{msg}");
}

#[test]
fn env_shorthand_sorted_and_quoted() {
    let mut m = manifest(vec![]);
    let mut env = BTreeMap::new();
    env.insert("WORKER_PORT".to_string(), "db.port".to_string());
    env.insert("WORKER_DB".to_string(), "db.host".to_string());
    env.insert("A_OPTIONAL".to_string(), "opt".to_string());
    m.values.insert(
        "opt".into(),
        imprint::manifest::ValueDecl {
            ty: imprint::manifest::ValueType::String,
            required: false,
            default: None,
            allowed: None,
            secret: false,
            description: None,
        },
    );
    m.files.push(FileSpec {
        source: Source::Env(env.clone()),
        ..spec("/etc/default/worker", "")
    });
    let r = render::render(&validated(json!({"db": {"host": "d b", "port": 5432}})), &m).unwrap();
    assert_eq!(
        text(&r, "/etc/default/worker"),
        "WORKER_DB=\"d b\"\nWORKER_PORT=\"5432\"\n"
    );

    // A key neither declared nor set: a typo, an error naming it.
    env.insert("X".into(), "db.hots".into());
    m.files[0].source = Source::Env(env);
    let err = render::render(&validated(json!({"db": {"host": "h", "port": 1}})), &m).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("db.hots") && msg.contains("/etc/default/worker") && msg.contains("files[0]"),
        "{msg}"
    );
}

#[test]
fn if_skips_file_when_value_unset_or_null() {
    let mut a = spec("/etc/a.conf", "{{p.url}}");
    a.when = Some("p.url".into());
    let mut b = spec("/etc/b.conf", "x");
    b.when = Some("q".into());
    let mut c = spec("/etc/c.conf", "{{r}}");
    c.when = Some("r".into());
    let r = render::render(
        &validated(json!({"q": null, "r": "set"})),
        &manifest(vec![a, b, c]),
    )
    .unwrap();
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].path, "/etc/c.conf");
    assert_eq!(
        r.skipped,
        vec![
            ("/etc/a.conf".to_string(), "p.url".to_string()),
            ("/etc/b.conf".to_string(), "q".to_string())
        ]
    );
}

#[test]
fn environment_file_targets_default_to_env() {
    let files = vec![
        spec("/etc/app/settings", "S={{s}}\n"),
        spec(
            "/etc/systemd/system/app.service.d/10-imprint.conf",
            "[Service]\nEnvironmentFile=-/etc/app/settings\nEnvironmentFile=/etc/%i.env\n",
        ),
        spec("/etc/other/settings", "S={{s}}\n"),
    ];
    let r = render::render(&validated(json!({"s": "a b"})), &manifest(files.clone())).unwrap();
    assert_eq!(text(&r, "/etc/app/settings"), "S=\"a b\"\n");
    assert_eq!(text(&r, "/etc/other/settings"), "S=a b\n");
    // Files keep the manifest's order.
    assert_eq!(r.files[0].path, "/etc/app/settings");
    // Paths named by the image's own units, given by the caller.
    let mut set = BTreeSet::new();
    set.insert("/etc/other/settings".to_string());
    let r = render::render_with(&validated(json!({"s": "a b"})), &manifest(files), &set).unwrap();
    assert_eq!(text(&r, "/etc/other/settings"), "S=\"a b\"\n");
}

#[test]
fn environment_files_reads_the_roots_units() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, t: &str| {
        let p = dir.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    w(
        "usr/lib/systemd/system/app.service",
        "[Service]\nEnvironmentFile=/etc/default/app\n",
    );
    w(
        "etc/systemd/system/db.service.d/x.conf",
        "[Service]\nEnvironmentFile=-/etc/db//env\n",
    );
    w("etc/systemd/system/notes.txt", "EnvironmentFile=/nope\n");
    // As systemd reads it: spaces around `=`, a comment, a line continued;
    // not in [Unit] or [Install], where it means nothing.
    w(
        "etc/systemd/system/web.service",
        "[Unit]\nEnvironmentFile=/not/unit\n[Service]\n# EnvironmentFile=/commented\n\
         EnvironmentFile = /etc/web/env\nEnvironmentFile=\\\n  -/etc/web/more\n\
         [Install]\nEnvironmentFile=/not/install\n",
    );
    let set = render::environment_files(&imprint::root::Root::at(dir.path()));
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        vec![
            "/etc/db/env".to_string(),
            "/etc/default/app".to_string(),
            "/etc/web/env".to_string(),
            "/etc/web/more".to_string()
        ]
    );
}

/// The pipeline reads the image's units only when
/// `needs_environment_files` says a file's escape can depend on them: when
/// it says no, rendering with the units' set gives the same bytes as
/// rendering without it; when it says yes, here, the set changes a file.
#[test]
fn the_image_units_are_read_only_when_they_can_change_a_file() {
    let named: BTreeSet<String> = ["/etc/app/settings", "/etc/app/conf.env", "/etc/app/x.json"]
        .into_iter()
        .map(String::from)
        .collect();
    let v = validated(json!({"x": "a b\"$c"}));
    let with_escape = |path: &str, e: Escape| FileSpec {
        escape: Some(e),
        ..spec(path, "X={{x}}\n")
    };
    let env_only = FileSpec {
        source: Source::Env(BTreeMap::from([("X".to_string(), "x".to_string())])),
        ..spec("/etc/app/settings", "")
    };
    let not_needed = [
        vec![],
        vec![spec("/etc/app/conf.env", "X={{x}}\n")],
        vec![with_escape("/etc/app/settings", Escape::None)],
        vec![with_escape("/etc/app/x.json", Escape::Shell)],
        vec![env_only],
    ];
    for files in not_needed {
        let m = manifest(files);
        assert!(!render::needs_environment_files(&m), "{:?}", m.files);
        assert_eq!(
            format!("{:?}", render::render_with(&v, &m, &named).unwrap()),
            format!(
                "{:?}",
                render::render_with(&v, &m, &BTreeSet::new()).unwrap()
            )
        );
    }
    for path in ["/etc/app/settings", "/etc/app/x.json"] {
        let m = manifest(vec![
            spec("/etc/app/conf.env", "X={{x}}\n"),
            spec(path, "X={{x}}\n"),
        ]);
        assert!(render::needs_environment_files(&m), "{path}");
        assert_ne!(
            text(&render::render_with(&v, &m, &named).unwrap(), path),
            text(
                &render::render_with(&v, &m, &BTreeSet::new()).unwrap(),
                path
            ),
            "{path}"
        );
    }
}

fn wf(index: usize, path: &str, content: &str, encoding: Option<&str>) -> WriteFile {
    WriteFile {
        origin: Origin::WriteFiles { part: 1, index },
        path: path.into(),
        content: content.into(),
        encoding: encoding.map(str::to_string),
        permissions: None,
        owner: None,
        append: false,
        defer: false,
    }
}

fn with_write_files(w: Vec<WriteFile>) -> Validated {
    Validated {
        write_files: w,
        ..Validated::default()
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn write_files_every_encoding_spelling() {
    let payload = b"hello\x00\xffworld\n";
    let gzb64 = b64(&gz(payload));
    let mut entries = vec![
        wf(0, "/a/plain", "text\n", None),
        wf(1, "/a/textplain", "text\n", Some("text/plain")),
        wf(2, "/a/b64", &b64(payload), Some("b64")),
        wf(3, "/a/base64", &b64(payload), Some(" BASE64 ")),
    ];
    for (i, enc) in [
        "gz",
        "gzip",
        "gz+b64",
        "gz+base64",
        "gzip+base64",
        "gzip+b64",
        "GZIP+B64",
    ]
    .iter()
    .enumerate()
    {
        entries.push(wf(10 + i, &format!("/a/gz{i}"), &gzb64, Some(enc)));
    }
    // base64 wrapped over lines, without padding, as YAML block scalars give it.
    let wrapped: String = b64(payload)
        .trim_end_matches('=')
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>() + "\n")
        .collect();
    entries.push(wf(30, "/a/wrapped", &wrapped, Some("b64")));
    let r = render::render(&with_write_files(entries), &Manifest::absent()).unwrap();
    for f in &r.files {
        match f.path.as_str() {
            "/a/plain" | "/a/textplain" => assert_eq!(f.content, b"text\n"),
            _ => assert_eq!(f.content, payload, "{}", f.path),
        }
        assert_eq!(f.mode, Mode(0o644), "cloud-init's default");
        assert_eq!(f.owner, None);
    }
    assert_eq!(r.files.len(), 12);
}

#[test]
fn write_files_bad_input_names_part_and_index() {
    for (w, needle) in [
        (wf(3, "/a", "x", Some("rot13")), "unknown encoding"),
        (wf(3, "/a", "!!!", Some("b64")), "not valid base64"),
        (
            wf(3, "/a", &b64(b"not gzip"), Some("gzip")),
            "not valid gzip",
        ),
        (wf(3, "relative/path", "x", None), "absolute"),
        (wf(3, "/etc/../../x", "x", None), "'..'"),
    ] {
        let err = render::render(&with_write_files(vec![w]), &Manifest::absent()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("part 1 write_files[3]") && msg.contains(needle),
            "{msg}"
        );
    }
}

#[test]
fn write_files_gzip_bomb_stops_at_the_cap() {
    let big = vec![0u8; (render::GUNZIP_CAP + 1) as usize];
    let bomb = b64(&gz(&big));
    assert!(bomb.len() < 1 << 20);
    let err = render::render(
        &with_write_files(vec![wf(0, "/a", &bomb, Some("gz+b64"))]),
        &Manifest::absent(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("exceeds 64 MiB"), "{err}");
}

#[test]
fn write_files_same_path_folds_like_sequential_writes() {
    let mut a = wf(0, "/etc/x", "one\n", None);
    a.permissions = Some(Mode(0o600));
    let mut b = wf(1, "/etc/x", "two\n", None);
    b.append = true;
    b.owner = OwnerSpec::parse("app:app");
    let mut c = wf(2, "/etc/y", "y1\n", None);
    c.append = true;
    let mut d = wf(3, "/etc/y", "y2\n", None);
    d.append = true;
    let e = wf(4, "//etc/./z", "first\n", None);
    let f = wf(5, "/etc/z", "last\n", None);
    let r = render::render(
        &with_write_files(vec![a, b, c, d, e, f]),
        &Manifest::absent(),
    )
    .unwrap();
    assert_eq!(r.files.len(), 3);
    let x = &r.files[0];
    assert_eq!(
        (x.content.as_slice(), x.append, x.mode),
        (&b"one\ntwo\n"[..], false, Mode(0o644))
    );
    assert_eq!(x.owner, OwnerSpec::parse("app:app"));
    let y = &r.files[1];
    assert_eq!((y.content.as_slice(), y.append), (&b"y1\ny2\n"[..], true));
    assert_eq!(r.files[2].path, "/etc/z");
    assert_eq!(r.files[2].content, b"last\n");
    assert_eq!(r.files[2].origin, Origin::WriteFiles { part: 1, index: 5 });
}

#[test]
fn write_files_deferred_come_last() {
    let mut a = wf(0, "/late", "l", None);
    a.defer = true;
    let b = wf(1, "/early", "e", None);
    let m = manifest(vec![spec("/manifest", "m")]);
    let mut v = with_write_files(vec![a, b]);
    v.values = serde_json::Map::new();
    let r = render::render(&v, &m).unwrap();
    let order: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(order, ["/manifest", "/early", "/late"]);
}

#[test]
fn write_files_off_in_the_manifest() {
    let mut m = manifest(vec![]);
    m.write_files = false;
    let r = render::render(&with_write_files(vec![wf(0, "/a", "x", None)]), &m).unwrap();
    assert!(r.files.is_empty());
}

#[test]
fn manifest_and_write_files_on_one_path_is_an_error_with_both_origins() {
    let m = manifest(vec![spec("/etc/app.conf", "m")]);
    let err = render::render(
        &with_write_files(vec![wf(2, "/etc//app.conf", "w", None)]),
        &m,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("manifest files[0]")
            && msg.contains("part 1 write_files[2]")
            && msg.contains("/etc/app.conf"),
        "{msg}"
    );
    let err = render::render(
        &Validated::default(),
        &manifest(vec![spec("/a", "1"), spec("/a", "2")]),
    )
    .unwrap_err();
    assert!(matches!(err, RenderError::Duplicate { .. }), "{err:?}");
}

#[test]
fn write_files_holding_a_secret_default_to_0600() {
    let mut v = with_write_files(vec![
        wf(0, "/etc/k", "key=SEKRIT\n", None),
        wf(1, "/etc/o", "x", None),
    ]);
    v.secrets.add("SEKRIT");
    let r = render::render(&v, &Manifest::absent()).unwrap();
    assert_eq!(r.files[0].mode, Mode(0o600));
    assert!(r.files[0].holds_secret);
    assert_eq!(r.files[1].mode, Mode(0o644));
}

#[test]
fn enable_is_passed_on() {
    let mut m = manifest(vec![]);
    m.enable = vec!["app.service".into()];
    let r = render::render(&Validated::default(), &m).unwrap();
    assert_eq!(r.enable, ["app.service"]);
}

#[test]
fn triple_stash_helpers_are_raw_and_missing_each_names_its_key() {
    let out = one(
        json!({"p": "a b"}),
        "/etc/a.env",
        "R={{{upper p}}}\nQ={{upper p}}\n",
    )
    .unwrap();
    assert_eq!(out, "R=A B\nQ=\"A B\"\n");
    let err = one(json!({}), "/x", "{{#each hosts}}{{this}}{{/each}}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hosts"), "{err}");
}

/// The whole path, template to sh: random values substituted into an env
/// file by `render` come back byte for byte from dash's `.`.
mod through_dash {
    use super::*;
    use proptest::prelude::*;

    fn values() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            prop::sample::select(vec![
                ' ', '\t', '"', '\'', '\\', '$', '`', '#', '!', '*', '{', '}', 'é', '€', '😀'
            ]),
            any::<char>().prop_filter("printable", |c| !c.is_control() || *c == '\t'),
        ];
        prop::collection::vec(c, 0..30).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn rendered_env_files_round_trip(a in values(), b in values()) {
            let r = render::render(
                &validated(json!({"a": a, "n": {"b": b}})),
                &manifest(vec![spec("/etc/app.env", "# {{{a}}} is not a comment problem\nA={{a}}\nB={{env n.b}}\nC={{concat a n.b}}\n")]),
            );
            // A raw {{{a}}} on a comment line is fine for sh unless it holds a newline.
            let r = r.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("app.env");
            std::fs::write(&f, &r.files[0].content).unwrap();
            let out = std::process::Command::new("dash")
                .env_clear()
                .arg("-c")
                .arg(r#". "$1" && printf '%s\0%s\0%s' "$A" "$B" "$C""#)
                .arg("sh")
                .arg(&f)
                .output()
                .unwrap();
            prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            prop_assert_eq!(out.stdout, format!("{a}\0{b}\0{a}{b}").into_bytes());
        }
    }
}

/// A template several files use renders each of them, some skipped by `if:`
/// between them (render drops a compiled template after its last use; the
/// memory this saves is tests/budgets.sh's).
#[test]
fn a_template_shared_by_files_some_skipped_renders_each() {
    let shared = |path: &str, when: Option<&str>| FileSpec {
        source: Source::Template {
            name: "shared.hbs".into(),
            text: "name={{name}}\n".into(),
        },
        when: when.map(Into::into),
        ..spec(path, "")
    };
    let m = manifest(vec![
        shared("/etc/a.conf", None),
        shared("/etc/b.conf", Some("missing")),
        spec("/etc/other.conf", "o={{name}}\n"),
        shared("/etc/c.conf", None),
        shared("/etc/d.conf", Some("missing")),
        shared("/etc/e.conf", None),
    ]);
    let r = render::render(&validated(json!({"name": "x"})), &m).unwrap();
    for p in ["/etc/a.conf", "/etc/c.conf", "/etc/e.conf"] {
        assert_eq!(text(&r, p), "name=x\n");
    }
    assert_eq!(text(&r, "/etc/other.conf"), "o=x\n");
    assert_eq!(r.files.len(), 4);
    assert_eq!(r.skipped.len(), 2);
}

/// `imprint render` shows every file whole except the content of a
/// `write_files` entry that others will not be able to read (a licence, a
/// key: user-data cannot declare it secret): its path, mode and owner, and
/// why its content is hidden. A world-readable entry is shown whole, and a
/// private manifest file too (its secrets are declared, and masked by
/// value).
#[test]
fn display_hides_the_content_of_a_private_write_files_entry() {
    let private = |index, path: &str, content: &str, mode| WriteFile {
        permissions: Some(Mode(mode)),
        owner: OwnerSpec::parse("app:app"),
        ..wf(index, path, content, None)
    };
    let mut v = with_write_files(vec![
        private(
            0,
            "/etc/app/licence.key",
            "LICENCE-1234\nsecond-line\n",
            0o600,
        ),
        private(1, "/etc/app/group.key", "GROUP-ONLY", 0o640),
        wf(2, "/etc/motd", "hello-world\n", None),
        // Private by its secret (made 0600 without `permissions`).
        wf(3, "/etc/app/token", "t=pw-0123456789\n", None),
    ]);
    v.values = json!({"db": {"password": "pw-0123456789"}})
        .as_object()
        .cloned()
        .unwrap();
    v.secrets.add("pw-0123456789");
    let mut conf = spec("/etc/app/private.conf", "level debug-manifest\n");
    conf.mode = Some(Mode(0o600));
    let r = render::render(&v, &manifest(vec![conf])).unwrap();
    let out = render::display(&r, &r.secrets);
    for leak in [
        "LICENCE-1234",
        "second-line",
        "GROUP-ONLY",
        "pw-0123456789",
        "t=",
    ] {
        assert!(!out.contains(leak), "{leak} leaked:\n{out}");
    }
    assert_eq!(
        out,
        "==> /etc/app/private.conf (mode 0600, owner root:root, manifest files[0]) <==\n\
         level debug-manifest\n\
         ==> /etc/app/licence.key (mode 0600, owner app:app, user-data part 1 write_files[0]) <==\n\
         (content hidden: write_files entry with mode 0600; see docs/templates.md; 25 bytes)\n\
         ==> /etc/app/group.key (mode 0640, owner app:app, user-data part 1 write_files[1]) <==\n\
         (content hidden: write_files entry with mode 0640; see docs/templates.md; 10 bytes)\n\
         ==> /etc/motd (mode 0644, owner root:root, user-data part 1 write_files[2]) <==\n\
         hello-world\n\
         ==> /etc/app/token (mode 0600, owner root:root, user-data part 1 write_files[3]) <==\n\
         (content hidden: write_files entry with mode 0600; see docs/templates.md; 16 bytes)\n"
    );
}
