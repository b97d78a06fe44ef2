//! Stage 5, validate: the merged values against the manifest's `values`
//! declarations (SPEC §1.5): types, required keys, defaults, enums. Every
//! problem in one report; secret values never appear in a message.
//!
//! Decisions where the spec is silent (docs/user-data.md says the same):
//! - No coercion: `"5432"` is not an integer and `1.10` (a YAML number) is
//!   not a string; the message says how to write it. A silent coercion
//!   would hide the mistake until a template renders something surprising.
//! - `null` means "not set": a default applies, a required key is missing.
//! - When the manifest declares values, a value it does not declare (or
//!   that is not under a declared `map`/`any`) is a problem under
//!   `unsupported: error` (it is usually a typo) and a warning under `warn`.
//!   With no declarations at all (or no manifest) anything goes.
//! - Secrets: every value declared `secret: true` and every value whose key
//!   names a secret (`secret::is_secret_key`), declared or not, is recorded
//!   in [`Validated::secrets`]; a problem about a secret says its type,
//!   never its value.

use crate::manifest::{self, Manifest, UnsupportedPolicy, ValueDecl, ValueType};
use crate::merge::{Merged, Notice, WriteFile};
use crate::model::Values;
use crate::secret::{self, Secrets};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Values checked and completed with defaults.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub values: Values,
    pub write_files: Vec<WriteFile>,
    pub warnings: Vec<Notice>,
    /// Every secret string (by declaration or key name).
    pub secrets: Secrets,
}

/// One problem with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `db.port`.
    pub key: String,
    pub expected: String,
    /// What was found (masked when the value is secret).
    pub found: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid values:{}", .problems.iter().map(|p| format!("\n  {}: expected {}, found {}", p.key, p.expected, p.found)).collect::<String>())]
pub struct ValidateError {
    pub problems: Vec<Problem>,
}

/// Validate and complete the values.
pub fn validate(merged: Merged, manifest: &Manifest) -> Result<Validated, ValidateError> {
    let Merged {
        mut values,
        write_files,
        mut warnings,
        value_parts,
    } = merged;
    let mut problems = Vec::new();
    for (key, decl) in &manifest.values {
        let secret = decl.secret || secret::is_secret_key(key);
        match get_path(&values, key) {
            None | Some(Value::Null) => {
                if decl.required {
                    problems.push(Problem {
                        key: key.clone(),
                        expected: format!("{} (it is required)", expected(decl)),
                        found: match get_path(&values, key) {
                            Some(Value::Null) => "null".into(),
                            _ => "nothing".into(),
                        },
                    });
                } else if let Some(d) = &decl.default {
                    if let Err(at) = set_path(&mut values, key, d.clone()) {
                        problems.push(Problem {
                            key: at.clone(),
                            expected: format!("a map (the manifest declares {key})"),
                            found: describe(get_path(&values, &at).unwrap_or(&Value::Null), secret),
                        });
                    }
                }
            }
            Some(v) => {
                if let Some(why) = check(decl, v) {
                    problems.push(Problem {
                        key: key.clone(),
                        expected: why,
                        found: describe(v, secret),
                    });
                }
            }
        }
    }
    // A declared key whose parent was given as a scalar (`db: x` when the
    // manifest declares db.host) is found as "nothing" above; say why.
    for key in manifest.values.keys() {
        let segs: Vec<&str> = key.split('.').collect();
        for i in 1..segs.len() {
            let parent = segs[..i].join(".");
            if manifest.values.contains_key(&parent) {
                break;
            }
            if let Some(v) = get_path(&values, &parent) {
                if !v.is_object() && !v.is_null() {
                    let secret = secret::is_secret_key(&parent);
                    let p = Problem {
                        key: parent.clone(),
                        expected: format!("a map (the manifest declares {key})"),
                        found: describe(v, secret),
                    };
                    if !problems.contains(&p) {
                        problems.push(p);
                    }
                }
                break;
            }
        }
    }
    if !manifest.values.is_empty() {
        let mut leaves = Vec::new();
        crate::merge::leaf_keys(&values, "", &mut leaves);
        for leaf in leaves {
            if manifest::covers(&manifest.values, &leaf) {
                continue;
            }
            match manifest.unsupported {
                UnsupportedPolicy::Error => problems.push(Problem {
                    key: leaf.clone(),
                    expected: manifest::undeclared_hint(&manifest.values, &leaf),
                    found: describe(
                        get_path(&values, &leaf).unwrap_or(&Value::Null),
                        secret::is_secret_key(&leaf),
                    ),
                }),
                UnsupportedPolicy::Warn => warnings.push(Notice {
                    part: value_parts.get(&leaf).copied().unwrap_or(0),
                    what: format!("value `{leaf}`"),
                    hint: format!(
                        "the manifest does not declare it; {}",
                        manifest::undeclared_hint(&manifest.values, &leaf)
                    ),
                }),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ValidateError { problems });
    }
    let secrets = secrets_of(&values, manifest);
    warnings.sort_by_key(|n| n.part);
    Ok(Validated {
        values,
        write_files,
        warnings,
        secrets,
    })
}

/// Every secret string in `values`: declared `secret: true`, or under a key
/// whose name says secret.
pub fn secrets_of(values: &Values, manifest: &Manifest) -> Secrets {
    let mut s = Secrets::new();
    for (key, decl) in &manifest.values {
        if decl.secret {
            if let Some(v) = get_path(values, key) {
                s.add_value(v);
            }
        }
    }
    walk_secrets(values, "", &mut s);
    s
}

/// Best-effort secrets of parts that were not merged (`imprint fetch`):
/// each part's values on their own, problems ignored.
pub fn secrets_of_parts(parts: &[crate::decode::Part], manifest: &Manifest) -> Secrets {
    let mut s = Secrets::new();
    for p in parts {
        let v = crate::merge::part_values(p);
        s.merge(&secrets_of(&v, manifest));
        // Secret-named keys anywhere in a cloud-config document too.
        if p.kind == crate::decode::PartKind::CloudConfig {
            if let Ok(Some(Value::Object(doc))) = crate::merge::part_document(p) {
                walk_secrets(&doc, "", &mut s);
            }
        }
    }
    s
}

/// What `imprint fetch` hides of the parts it prints: secret values
/// ([`secrets_of_parts`]), and the content of every `write_files` entry
/// whose file others will not be able to read
/// ([`crate::render::private_write_files`]: what `plan` and `render` hide),
/// or that merge could not read (its mode unknown).
#[derive(Debug, Clone, Default)]
pub struct PartMasks {
    pub secrets: Secrets,
    /// By part number: the index and content (as YAML gives it) of each
    /// such entry.
    private: BTreeMap<usize, Vec<(usize, String)>>,
}

/// [`PartMasks`] of the parts (each read on its own, problems ignored).
pub fn part_masks(parts: &[crate::decode::Part], manifest: &Manifest) -> PartMasks {
    let secrets = secrets_of_parts(parts, manifest);
    let (entries, invalid) = crate::merge::write_files_of_parts(parts);
    let mut hidden = crate::render::private_write_files(&entries, &secrets);
    for o in invalid {
        if let crate::model::Origin::WriteFiles { part, index } = o {
            hidden.insert((part, index));
        }
    }
    let mut private: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
    for w in entries {
        if let crate::model::Origin::WriteFiles { part, index } = w.origin {
            if hidden.contains(&(part, index)) {
                private.entry(part).or_default().push((index, w.content));
            }
        }
    }
    PartMasks { secrets, private }
}

impl PartMasks {
    /// A part's body, as text, for display. In a cloud-config part, each
    /// scalar that means the content of a hidden `write_files` entry (the
    /// entry's own, or the anchor it aliases) is replaced by `********` in
    /// place, found by where the YAML parser says it is written (a block
    /// scalar keeps its line break); then secrets are masked. When one
    /// such content is not found that way, the whole body is withheld: a
    /// line says why.
    pub fn body(&self, part: &crate::decode::Part, text: &str) -> String {
        let hide: BTreeSet<&str> = self
            .private
            .get(&part.number)
            .into_iter()
            .flatten()
            .map(|(_, c)| c.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        if hide.is_empty() {
            return mask_text(text, &self.secrets);
        }
        let (bom, yaml) = match text.strip_prefix('\u{feff}') {
            Some(rest) => ("\u{feff}", rest),
            None => ("", text),
        };
        let withheld = || {
            "(part withheld: it holds the content of a write_files entry others will \
             not be able to read, which imprint could not find in its text to mask; \
             see docs/user-data.md)\n"
                .to_string()
        };
        let Some(scalars) = crate::yaml::string_scalars(yaml) else {
            return withheld();
        };
        let mut found = BTreeSet::new();
        let mut out = String::from(bom);
        let mut pos = 0;
        for (r, v) in scalars {
            if !hide.contains(v.as_str()) || r.start < pos {
                continue;
            }
            found.insert(v);
            let written = &yaml[r.clone()];
            let kept = &written[written.trim_end().len()..];
            out.push_str(&yaml[pos..r.start]);
            out.push_str(secret::MASK);
            // A block scalar's span runs to the next line's indentation.
            if kept.contains('\n') {
                out.push_str(kept);
            }
            pos = r.end;
        }
        out.push_str(&yaml[pos..]);
        if found.len() < hide.len() {
            return withheld();
        }
        mask_text(&out, &self.secrets)
    }

    /// A part's parsed document for display (`imprint fetch --json`): the
    /// content of each hidden `write_files` entry is `********`, then
    /// [`mask_document`].
    pub fn document(&self, part: &crate::decode::Part, doc: &mut Value) {
        for (index, _) in self.private.get(&part.number).into_iter().flatten() {
            if let Some(c) = doc.pointer_mut(&format!("/write_files/{index}/content")) {
                if !c.is_null() {
                    *c = Value::String(secret::MASK.into());
                }
            }
        }
        mask_document(doc, &self.secrets);
    }
}

/// `text` with every secret masked for display. A secret of four or more
/// characters is masked wherever it appears; a shorter one (a port number,
/// say) only where it stands alone, so that masking `1` does not turn every
/// digit of the output into stars.
pub fn mask_text(text: &str, secrets: &Secrets) -> String {
    let mut out = text.to_string();
    for s in secrets.iter() {
        if s.chars().count() >= 4 {
            if out.contains(s) {
                out = out.replace(s, secret::MASK);
            }
            continue;
        }
        let mut res = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(s) {
            let before = rest[..i].chars().next_back();
            let after = rest[i + s.len()..].chars().next();
            let alone = !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric);
            res.push_str(&rest[..i]);
            res.push_str(if alone { secret::MASK } else { s });
            rest = &rest[i + s.len()..];
        }
        res.push_str(rest);
        out = res;
    }
    out
}

/// Mask a parsed document for display: every value under a key that names
/// a secret, and every string or number that is (or holds) a known secret.
pub fn mask_document(v: &mut Value, secrets: &Secrets) {
    match v {
        Value::String(s) => {
            let m = mask_text(s, secrets);
            if m != *s {
                *s = m;
            }
        }
        Value::Number(n) => {
            if secrets.iter().any(|x| x == n.to_string()) {
                *v = Value::String(secret::MASK.into());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask_document(x, secrets)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if secret::is_secret_key(k) && !x.is_object() && !x.is_array() && !x.is_null() {
                    *x = Value::String(secret::MASK.into());
                } else if secret::is_secret_key(k) {
                    let mut all = Secrets::new();
                    all.add_value(x);
                    all.merge(secrets);
                    mask_document(x, &all);
                } else {
                    mask_document(x, secrets);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn walk_secrets(values: &Values, prefix: &str, s: &mut Secrets) {
    for (k, v) in values {
        let key = format!("{prefix}{k}");
        if secret::is_secret_key(&key) {
            s.add_value(v);
        } else if let Value::Object(m) = v {
            walk_secrets(m, &format!("{key}."), s);
        }
    }
}

/// What a declaration expects, in words.
fn expected(decl: &ValueDecl) -> String {
    if let Some(allowed) = &decl.allowed {
        return format!(
            "one of {}",
            allowed
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    type_words(decl.ty).to_string()
}

fn type_words(t: ValueType) -> &'static str {
    match t {
        ValueType::String => "a string",
        ValueType::Integer => "an integer",
        ValueType::Number => "a number",
        ValueType::Boolean => "a boolean",
        ValueType::List => "a list",
        ValueType::Map => "a map",
        ValueType::Any => "a value",
    }
}

/// `None` when `v` fits `decl`, else what was expected (with a hint).
fn check(decl: &ValueDecl, v: &Value) -> Option<String> {
    let ok = match decl.ty {
        ValueType::String => v.is_string(),
        ValueType::Integer => v.is_i64() || v.is_u64(),
        ValueType::Number => v.is_number(),
        ValueType::Boolean => v.is_boolean(),
        ValueType::List => v.is_array(),
        ValueType::Map => v.is_object(),
        ValueType::Any => true,
    };
    if !ok {
        let hint = match (decl.ty, v) {
            (ValueType::Integer | ValueType::Number, Value::String(s))
                if s.trim().parse::<f64>().is_ok() =>
            {
                " (write the number without quotes)"
            }
            (ValueType::Boolean, Value::String(s))
                if ["true", "false", "yes", "no", "on", "off"]
                    .contains(&s.trim().to_ascii_lowercase().as_str()) =>
            {
                " (write true or false without quotes)"
            }
            (ValueType::String, Value::Number(_) | Value::Bool(_)) => {
                " (quote it so it stays text)"
            }
            _ => "",
        };
        return Some(format!("{}{hint}", type_words(decl.ty)));
    }
    if let Some(allowed) = &decl.allowed {
        if !allowed.contains(v) {
            return Some(expected(decl));
        }
    }
    None
}

/// What was found, in words; a secret shows only its type.
fn describe(v: &Value, secret: bool) -> String {
    if secret {
        return match v {
            Value::Null => "null".into(),
            other => format!("{} (secret, not shown)", crate::merge::shape(other)),
        };
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut t: String = s.chars().take(60).collect();
            if t.len() < s.len() {
                t.push_str("...");
            }
            format!("the string {t:?}")
        }
        Value::Array(a) => format!("a list of {} item(s)", a.len()),
        Value::Object(m) => format!(
            "a map with keys {}",
            m.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The value at a dotted key.
pub fn get_path<'a>(values: &'a Values, dotted: &str) -> Option<&'a Value> {
    let mut segs = dotted.split('.');
    let mut cur = values.get(segs.next()?)?;
    for s in segs {
        cur = cur.as_object()?.get(s)?;
    }
    Some(cur)
}

/// Set the value at a dotted key, creating maps; `Err(prefix)` when a
/// prefix holds a non-map.
fn set_path(values: &mut Values, dotted: &str, v: Value) -> Result<(), String> {
    let segs: Vec<&str> = dotted.split('.').collect();
    let mut cur = values;
    for (i, s) in segs[..segs.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(s.to_string())
            .or_insert_with(|| Value::Object(Values::new()));
        if entry.is_null() {
            *entry = Value::Object(Values::new());
        }
        cur = match entry {
            Value::Object(m) => m,
            _ => return Err(segs[..=i].join(".")),
        };
    }
    cur.insert(segs[segs.len() - 1].to_string(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl(ty: ValueType) -> ValueDecl {
        ValueDecl {
            ty,
            required: false,
            default: None,
            allowed: None,
            secret: false,
            description: None,
        }
    }

    fn manifest(decls: Vec<(&str, ValueDecl)>) -> Manifest {
        Manifest {
            values: decls
                .into_iter()
                .map(|(k, d)| (k.to_string(), d))
                .collect::<BTreeMap<_, _>>(),
            unsupported: UnsupportedPolicy::Error,
            ..Manifest::absent()
        }
    }

    fn merged(v: Value) -> Merged {
        Merged {
            values: v.as_object().unwrap().clone(),
            ..Merged::default()
        }
    }

    #[test]
    fn all_problems_in_one_report() {
        let m = manifest(vec![
            (
                "db.host",
                ValueDecl {
                    required: true,
                    ..decl(ValueType::String)
                },
            ),
            (
                "db.port",
                ValueDecl {
                    default: Some(json!(5432)),
                    ..decl(ValueType::Integer)
                },
            ),
            (
                "db.password",
                ValueDecl {
                    required: true,
                    secret: true,
                    ..decl(ValueType::String)
                },
            ),
            (
                "mode",
                ValueDecl {
                    allowed: Some(vec![json!("a"), json!("b")]),
                    ..decl(ValueType::String)
                },
            ),
        ]);
        let e = validate(
            merged(json!({"db": {"port": "5432", "password": 1234}, "mode": "c", "db_hots": "x"})),
            &m,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid values:\n  \
             db.host: expected a string (it is required), found nothing\n  \
             db.password: expected a string (quote it so it stays text), found a number (secret, not shown)\n  \
             db.port: expected an integer (write the number without quotes), found the string \"5432\"\n  \
             mode: expected one of \"a\", \"b\", found the string \"c\"\n  \
             db_hots: expected a key the manifest declares (did you mean db.host?), found the string \"x\""
        );
        assert!(!e.to_string().contains("1234"));
    }

    #[test]
    fn defaults_and_secrets() {
        let m = manifest(vec![
            (
                "db.port",
                ValueDecl {
                    default: Some(json!(5432)),
                    ..decl(ValueType::Integer)
                },
            ),
            (
                "db.pass",
                ValueDecl {
                    secret: true,
                    ..decl(ValueType::String)
                },
            ),
            ("api", decl(ValueType::Map)),
        ]);
        let v = validate(
            merged(json!({"db": {"pass": "hunter2"}, "api": {"token": "t0k", "url": "u"}})),
            &m,
        )
        .unwrap();
        assert_eq!(v.values["db"]["port"], json!(5432));
        let s: Vec<&str> = v.secrets.iter().collect();
        assert!(s.contains(&"hunter2") && s.contains(&"t0k"), "{s:?}");
        assert!(!s.contains(&"u"));
    }

    #[test]
    fn undeclared_values_warn_under_warn() {
        let mut m = manifest(vec![("a", decl(ValueType::Any))]);
        m.unsupported = UnsupportedPolicy::Warn;
        let mut mg = merged(json!({"a": 1, "b": {"c": 2}}));
        mg.value_parts.insert("b.c".into(), 3);
        let v = validate(mg, &m).unwrap();
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].part, 3);
        assert_eq!(v.warnings[0].what, "value `b.c`");
    }

    #[test]
    fn scalar_where_a_map_is_declared() {
        let m = manifest(vec![("db.host", decl(ValueType::String))]);
        let e = validate(merged(json!({"db": "x"})), &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid values:\n  db: expected a map (the manifest declares db.host), found the string \"x\""
        );
    }

    #[test]
    fn short_secrets_are_masked_only_where_they_stand_alone() {
        let mut s = Secrets::new();
        s.add("42");
        s.add("hunter2");
        assert_eq!(
            mask_text("port 42, 142, x42, pw=hunter2hunter2", &s),
            "port ********, 142, x42, pw=****************"
        );
    }

    #[test]
    fn no_declarations_accept_anything() {
        let v = validate(merged(json!({"x": {"y": 1}})), &Manifest::absent()).unwrap();
        assert_eq!(v.values["x"]["y"], json!(1));
    }

    /// A hidden content that cannot be found in the part's text (here: a
    /// text that does not parse) withholds the whole body, never shows it.
    #[test]
    fn part_masks_withhold_a_body_they_cannot_mask() {
        let part = crate::decode::Part {
            number: 1,
            content_type: "text/cloud-config".into(),
            kind: crate::decode::PartKind::CloudConfig,
            filename: None,
            body: Vec::new(),
        };
        let masks = PartMasks {
            secrets: Secrets::new(),
            private: BTreeMap::from([(1, vec![(0, "KEY-TEXT".to_string())])]),
        };
        for text in [
            "#cloud-config\nwrite_files: [{content: KEY-TEXT\n",
            "#cloud-config\nwrite_files:\n- content: OTHER # KEY-TEXT\n",
        ] {
            let out = masks.body(&part, text);
            assert!(out.starts_with("(part withheld: "), "{out}");
            assert!(!out.contains("KEY-TEXT"), "{out}");
        }
        let out = masks.body(
            &part,
            "\u{feff}#cloud-config\nwrite_files:\n- content: KEY-TEXT\n  path: /k\n",
        );
        assert_eq!(
            out,
            "\u{feff}#cloud-config\nwrite_files:\n- content: ********\n  path: /k\n"
        );
    }
}
