//! Stage 4, merge: parts -> one document (SPEC §1.4).
//!
//! Values: the top-level keys of every JSON or plain-YAML part and the
//! `imprint:` key of every `#cloud-config` part, deep-merged in part order
//! (later parts win, maps merge, lists are replaced). `write_files` entries of
//! all parts are concatenated in order (cloud-init would replace the list).
//! Unsupported directives and part types are reported by name with what to do
//! instead; the manifest decides whether they are errors or warnings.
//!
//! Decisions where the spec is silent (docs/user-data.md says the same):
//! - A dotted key in user-data (`{"db.host": "x"}`) means the nested key
//!   (`{"db": {"host": "x"}}`), as in the manifest: Terraform users write
//!   both. Setting the same key both ways in one part is an error naming
//!   both spellings; across parts the later part wins as usual.
//! - `permissions` mean what cloud-init's `decode_perms` makes of them: a
//!   string is octal text (`"0644"`, `"644"`, `"0o644"`), an integer is taken
//!   as it is (unquoted `0644` is octal to YAML 1.1, so 420; unquoted `644`
//!   is the decimal number 644, mode 01204, exactly as cloud-init would
//!   write it, with a warning). What cloud-init would silently replace by
//!   its default (junk, a boolean, bits past 07777) is an error here.
//! - A few cloud-config keys only steer cloud-init itself (`merge_how`,
//!   `merge_type`) or ask for nothing (`package_update: false`, ...): they
//!   are always warnings, never errors, whatever `unsupported:` says.

use crate::decode::{Part, PartKind};
use crate::manifest::{Manifest, UnsupportedPolicy};
use crate::model::{Mode, Origin, OwnerSpec, Values};
use serde_json::Value;
use std::collections::BTreeMap;

/// A `write_files` entry as user-data gave it (content still encoded).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFile {
    pub origin: Origin,
    pub path: String,
    pub content: String,
    /// The `encoding:` as written (normalised by render).
    pub encoding: Option<String>,
    pub permissions: Option<crate::model::Mode>,
    pub owner: Option<OwnerSpec>,
    pub append: bool,
    pub defer: bool,
}

/// Something user-data asked for that imprint does not do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// 1-based part number.
    pub part: usize,
    /// What: e.g. "cloud-config key `runcmd`" or "part type text/x-shellscript".
    pub what: String,
    /// What to do instead.
    pub hint: String,
}

/// The merged document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub values: Values,
    pub write_files: Vec<WriteFile>,
    /// Unsupported things, when the manifest says `unsupported: warn`.
    pub warnings: Vec<Notice>,
    /// Dotted key of every value leaf -> the (last) part that set it, so
    /// validate can say where an undeclared value came from.
    pub value_parts: BTreeMap<String, usize>,
}

/// One problem found while merging (syntax, shape or unsupported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub part: usize,
    /// 1-based line and column in the part, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid user-data:{}", render_problems(.problems, *.unsupported))]
pub struct MergeError {
    pub problems: Vec<Problem>,
    /// Some problems are unsupported directives or part types (the message
    /// then says how to turn them into warnings).
    pub unsupported: bool,
}

fn render_problems(problems: &[Problem], unsupported: bool) -> String {
    let mut s = String::new();
    for p in problems {
        s.push_str("\n  part ");
        s.push_str(&p.part.to_string());
        if let (Some(l), Some(c)) = (p.line, p.column) {
            s.push_str(&format!(", line {l}, column {c}"));
        }
        s.push_str(": ");
        s.push_str(&p.message);
    }
    if unsupported {
        s.push_str(
            "\n(imprint does not do what cloud-init would for the things marked unsupported; \
             to only warn about them, set `unsupported: warn` in the manifest)",
        );
    }
    s
}

/// Encodings `write_files` accepts (cloud-init's `canonicalize_extraction`).
pub const ENCODINGS: &[&str] = &[
    "b64",
    "base64",
    "gz",
    "gzip",
    "gz+b64",
    "gz+base64",
    "gzip+b64",
    "gzip+base64",
    "text/plain",
];

/// Keys a `write_files` entry may have.
const WRITE_FILE_KEYS: &[&str] = &[
    "path",
    "content",
    "encoding",
    "permissions",
    "owner",
    "append",
    "defer",
];

/// Merge the parts.
pub fn merge(parts: &[Part], manifest: &Manifest) -> Result<Merged, MergeError> {
    let mut m = Merger {
        write_files_enabled: manifest.write_files,
        binary: Vec::new(),
        merged: Merged::default(),
        problems: Vec::new(),
        notices: Vec::new(),
        soft: Vec::new(),
        invalid: None,
    };
    for part in parts {
        m.part(part);
    }
    let Merger {
        mut merged,
        mut problems,
        notices,
        soft,
        ..
    } = m;
    let unsupported = !notices.is_empty() && manifest.unsupported == UnsupportedPolicy::Error;
    match manifest.unsupported {
        UnsupportedPolicy::Warn => merged.warnings.extend(notices),
        UnsupportedPolicy::Error => problems.extend(notices.into_iter().map(|n| Problem {
            part: n.part,
            line: None,
            column: None,
            message: format!("{} is unsupported: {}", n.what, n.hint),
        })),
    }
    merged.warnings.extend(soft);
    merged.warnings.sort_by_key(|n| n.part);
    if problems.is_empty() {
        Ok(merged)
    } else {
        problems.sort_by_key(|p| p.part);
        Err(MergeError {
            problems,
            unsupported,
        })
    }
}

/// The values one part sets (dotted keys expanded), ignoring its problems:
/// for masking secrets where no merge ran (`imprint fetch`).
pub fn part_values(part: &Part) -> Values {
    let mut m = Merger {
        write_files_enabled: false,
        binary: Vec::new(),
        merged: Merged::default(),
        problems: Vec::new(),
        notices: Vec::new(),
        soft: Vec::new(),
        invalid: None,
    };
    m.part(part);
    m.merged.values
}

/// Every `write_files` entry of the parts, as merge reads them, problems
/// ignored: entries with a problem are kept too (as far as they could be
/// read), and their origins are the second list. For `imprint fetch`,
/// which masks what it cannot merge.
pub fn write_files_of_parts(parts: &[Part]) -> (Vec<WriteFile>, Vec<Origin>) {
    let mut m = Merger {
        write_files_enabled: true,
        binary: Vec::new(),
        merged: Merged::default(),
        problems: Vec::new(),
        notices: Vec::new(),
        soft: Vec::new(),
        invalid: Some(Vec::new()),
    };
    for p in parts {
        m.part(p);
    }
    (m.merged.write_files, m.invalid.unwrap_or_default())
}

/// A part's document parsed as JSON-shaped data: `Ok(None)` for a part that
/// has no document (scripts, empty parts, ...). For `imprint fetch --json`.
pub fn part_document(part: &Part) -> Result<Option<Value>, Problem> {
    match part.kind {
        PartKind::CloudConfig | PartKind::Yaml => parse_yaml(part).map(|d| Some(d.value)),
        PartKind::Json => parse_json(part).map(Some),
        _ => Ok(None),
    }
}

struct Merger {
    write_files_enabled: bool,
    /// `!!binary` scalars of the current part kept as base64 text.
    binary: Vec<String>,
    merged: Merged,
    problems: Vec<Problem>,
    notices: Vec<Notice>,
    /// Warnings whatever the policy.
    soft: Vec<Notice>,
    /// `Some` for [`write_files_of_parts`]: `write_files` entries with a
    /// problem are kept too, and their origins listed here.
    invalid: Option<Vec<Origin>>,
}

fn problem(part: usize, message: impl Into<String>) -> Problem {
    Problem {
        part,
        line: None,
        column: None,
        message: message.into(),
    }
}

fn text_of(part: &Part) -> Result<&str, Problem> {
    let body = part
        .body
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(&part.body);
    std::str::from_utf8(body).map_err(|e| {
        problem(
            part.number,
            format!(
                "the {} part is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                part.kind,
                e.valid_up_to()
            ),
        )
    })
}

fn parse_yaml(part: &Part) -> Result<crate::yaml::Document, Problem> {
    let text = text_of(part)?;
    crate::yaml::parse_value(text).map_err(|e| Problem {
        part: part.number,
        line: (e.line > 0).then_some(e.line),
        column: (e.line > 0).then_some(e.column),
        message: format!(
            "failed to parse {} YAML: {}",
            part.kind,
            strip_location(&e.message)
        ),
    })
}

fn parse_json(part: &Part) -> Result<Value, Problem> {
    let text = text_of(part)?;
    serde_json::from_str::<Value>(text).map_err(|e| Problem {
        part: part.number,
        line: Some(e.line() as u64),
        column: Some(e.column() as u64),
        message: format!("failed to parse JSON: {}", strip_location(&e.to_string())),
    })
}

/// Parser messages end with " at line L, column C"; the problem already says
/// where.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains("column") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// A scalar as written (strings quoted, cut at 40 characters), or the
/// shape of a list or map. Only for values that are never secret.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut t: String = s.chars().take(40).collect();
            if t.len() < s.len() {
                t.push_str("...");
            }
            format!("{t:?}")
        }
        Value::Array(_) | Value::Object(_) => shape(v).to_string(),
        other => other.to_string(),
    }
}

/// "a list", "a string"... never the value itself.
pub(crate) fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Merger {
    fn part(&mut self, part: &Part) {
        let n = part.number;
        match &part.kind {
            PartKind::Empty => {}
            PartKind::Json => match parse_json(part) {
                Ok(Value::Object(map)) => self.values(n, map, ""),
                Ok(Value::Null) => {}
                Ok(other) => self.problems.push(problem(
                    n,
                    format!(
                        "a JSON part holds values and must be an object {{...}}, found {}",
                        shape(&other)
                    ),
                )),
                Err(p) => self.problems.push(p),
            },
            PartKind::Yaml => match parse_yaml(part).map(|d| d.value) {
                Ok(Value::Object(map)) => self.values(n, map, ""),
                Ok(Value::Null) => {}
                Ok(other) => self.problems.push(problem(
                    n,
                    format!(
                        "a part without a #cloud-config header holds values and must be a \
                         YAML mapping (key: value), found {}; if it is cloud-config, start it \
                         with #cloud-config",
                        shape(&other)
                    ),
                )),
                Err(p) => self.problems.push(p),
            },
            PartKind::CloudConfig => match parse_yaml(part).map(|d| {
                self.binary = d.binary;
                d.value
            }) {
                Ok(Value::Object(map)) => {
                    self.cloud_config(n, map, text_of(part).unwrap_or_default())
                }
                Ok(Value::Null) => {}
                Ok(other) => self.problems.push(problem(
                    n,
                    format!(
                        "a #cloud-config part must be a YAML mapping of directives, found {}",
                        shape(&other)
                    ),
                )),
                Err(p) => self.problems.push(p),
            },
            kind => self.notices.push(Notice {
                part: n,
                what: format!(
                    "{} part ({})",
                    with_article(&kind.to_string()),
                    part.content_type
                ),
                hint: part_hint(kind).to_string(),
            }),
        }
    }

    fn values(&mut self, part: usize, map: Values, what: &str) {
        match expand(map, "") {
            Ok(values) => {
                let mut leaves = Vec::new();
                leaf_keys(&values, "", &mut leaves);
                for k in leaves {
                    self.merged.value_parts.insert(k, part);
                }
                deep_merge(&mut self.merged.values, values);
            }
            Err(msgs) => {
                for m in msgs {
                    self.problems.push(problem(part, format!("{what}{m}")));
                }
            }
        }
    }

    fn cloud_config(&mut self, part: usize, map: Values, text: &str) {
        for (key, value) in map {
            match key.as_str() {
                "imprint" => match value {
                    Value::Object(v) => self.values(part, v, "imprint: "),
                    Value::Null => {}
                    other => self.problems.push(problem(
                        part,
                        format!(
                            "imprint: must be a mapping of values (key: value), found {}",
                            shape(&other)
                        ),
                    )),
                },
                "write_files" if self.write_files_enabled => self.write_files(part, value, text),
                "write_files" => self.notices.push(Notice {
                    part,
                    what: "cloud-config key `write_files`".into(),
                    hint: "this image's manifest turns it off (cloud_config.write_files: \
                           false); ask the image's author for a manifest file instead"
                        .into(),
                }),
                _ => {
                    let hint = key_hint(&key);
                    let notice = Notice {
                        part,
                        what: format!("cloud-config key `{key}`"),
                        hint: hint.to_string(),
                    };
                    if key == "merge_how" || key == "merge_type" {
                        self.soft.push(notice);
                    } else if asks_for_nothing(&key, &value) {
                        self.soft.push(Notice {
                            hint: "it asks cloud-init for nothing, so imprint ignores it".into(),
                            ..notice
                        });
                    } else {
                        self.notices.push(notice);
                    }
                }
            }
        }
    }

    fn write_files(&mut self, part: usize, value: Value, text: &str) {
        let list = match value {
            Value::Array(a) => a,
            Value::Null => return,
            other => {
                self.problems.push(problem(
                    part,
                    format!(
                        "write_files must be a list of files, found {}",
                        shape(&other)
                    ),
                ));
                return;
            }
        };
        for (index, entry) in list.into_iter().enumerate() {
            let at = format!("write_files[{index}]");
            let Value::Object(e) = entry else {
                self.problems.push(problem(
                    part,
                    format!(
                        "{at} must be a mapping with path and content, found {}",
                        shape(&entry)
                    ),
                ));
                continue;
            };
            let before = self.problems.len();
            let mut bad = |msg: String| self.problems.push(problem(part, format!("{at}{msg}")));
            let path = match e.get("path") {
                Some(Value::String(p))
                    if p.starts_with('/') && crate::root::Root::rel(p).is_some() =>
                {
                    p.clone()
                }
                Some(Value::String(p)) if !p.is_empty() => {
                    bad(format!(
                        ".path: {p:?} must be an absolute path without '..' components"
                    ));
                    String::new()
                }
                None | Some(Value::Null) => {
                    bad(": missing `path`; every entry needs the absolute path of the file to write".into());
                    String::new()
                }
                Some(Value::String(_)) => {
                    bad(".path: is empty; give the absolute path of the file to write".into());
                    String::new()
                }
                Some(other) => {
                    bad(format!(".path: expected a string, found {}", show(other)));
                    String::new()
                }
            };
            let content = match e.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    bad(format!(
                        ".content: expected a string, found {} (quote it)",
                        show(other)
                    ));
                    String::new()
                }
            };
            let encoding = match e.get("encoding") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    let norm = s.trim().to_ascii_lowercase();
                    if norm.is_empty() {
                        None
                    } else if ENCODINGS.contains(&norm.as_str()) {
                        Some(s.clone())
                    } else {
                        bad(format!(
                            ".encoding: unknown encoding {s:?}; use one of {}",
                            ENCODINGS.join(", ")
                        ));
                        None
                    }
                }
                Some(other) => {
                    bad(format!(
                        ".encoding: expected a string, found {}",
                        show(other)
                    ));
                    None
                }
            };
            // `content: !!binary` that is not text: YAML handed it over as
            // base64 (PyYAML gives cloud-init the bytes), so say so.
            let encoding = match e.get("content") {
                Some(Value::String(c)) if self.binary.contains(c) => {
                    match encoding.as_deref().map(|x| x.trim().to_ascii_lowercase()) {
                        None => Some("b64".to_string()),
                        Some(x) if x == "gz" || x == "gzip" => Some("gz+b64".to_string()),
                        _ => encoding,
                    }
                }
                _ => encoding,
            };
            let mut decimal_warning = None;
            let permissions = match e.get("permissions") {
                None | Some(Value::Null) => None,
                Some(v) => match decode_perms(v) {
                    Ok(m) => {
                        if let Value::Number(n) = v {
                            if written_bare(text, n) {
                                decimal_warning = Some(format!(
                                    "{at}.permissions: the unquoted number {n} is decimal, so the \
                                     mode is {m} (as cloud-init reads it)"
                                ));
                            }
                        }
                        Some(m)
                    }
                    Err(msg) => {
                        bad(format!(".permissions: {msg}"));
                        None
                    }
                },
            };
            let owner = match e.get("owner") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => match OwnerSpec::parse(s) {
                    Some(o) => Some(o),
                    None => {
                        bad(format!(".owner: expected user or user:group, found {s:?}"));
                        None
                    }
                },
                Some(other) => {
                    bad(format!(
                        ".owner: expected user or user:group, found {}",
                        show(other)
                    ));
                    None
                }
            };
            let mut flag = |name: &str| match e.get(name) {
                None | Some(Value::Null) => false,
                Some(v) => match cfg_bool(v) {
                    Some(b) => b,
                    None => {
                        bad(format!(
                            ".{name}: expected true or false, found {}",
                            show(v)
                        ));
                        false
                    }
                },
            };
            let append = flag("append");
            let defer = flag("defer");
            for k in e.keys() {
                if WRITE_FILE_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let hint = if k == "source" {
                    "imprint never fetches URLs from user-data; inline the file as content \
                     (with encoding: gz+b64 for binary data)"
                        .to_string()
                } else {
                    format!(
                        "remove it; a write_files entry takes {}",
                        WRITE_FILE_KEYS.join(", ")
                    )
                };
                self.notices.push(Notice {
                    part,
                    what: format!("{at}.{k}"),
                    hint,
                });
            }
            if self.problems.len() > before {
                match &mut self.invalid {
                    Some(invalid) => invalid.push(Origin::WriteFiles { part, index }),
                    None => continue,
                }
            }
            if let Some(w) = decimal_warning {
                self.soft.push(Notice {
                    part,
                    what: w,
                    hint: "quote the mode (\"0644\") or write it with a leading 0 to mean octal"
                        .into(),
                });
            }
            self.merged.write_files.push(WriteFile {
                origin: Origin::WriteFiles { part, index },
                path,
                content,
                encoding,
                permissions,
                owner,
                append,
                defer,
            });
        }
    }
}

/// Whether the document spells a mode as a bare decimal number that reads
/// like octal digits (`permissions: 644`), which YAML and cloud-init take
/// as the decimal 644. (`0644` is octal to YAML 1.1 and parses to 420, whose
/// spelling does not appear in the text, so it is not flagged.)
fn written_bare(text: &str, n: &serde_json::Number) -> bool {
    let s = n.to_string();
    if !(s.len() >= 3 && s.bytes().all(|b| (b'0'..=b'7').contains(&b))) {
        return false;
    }
    text.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("- ").map(str::trim_start).unwrap_or(l);
        l.strip_prefix("permissions:")
            .map(|v| v.split('#').next().unwrap_or("").trim() == s)
            .unwrap_or(false)
    })
}

/// cloud-init's `decode_perms`: numbers are taken as they are (floats
/// truncated), strings are octal text. Errors where cloud-init would fall
/// back to its default silently.
pub fn decode_perms(v: &Value) -> Result<Mode, String> {
    let m = match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u
            } else if let Some(f) = n.as_f64().filter(|f| *f >= 0.0 && f.is_finite()) {
                f.trunc() as u64
            } else {
                return Err(format!("expected an octal mode like \"0644\", found {n}"));
            }
        }
        Value::String(s) => {
            // Python's int(s, 8): white space, an 0o prefix and `_` between
            // digits are allowed.
            let t = s.trim();
            let t = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
            let digits: String = t.chars().filter(|c| *c != '_').collect();
            if digits.is_empty()
                || t.starts_with('_')
                || t.ends_with('_')
                || t.contains("__")
                || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
            {
                return Err(format!("expected an octal mode like \"0644\", found {s:?}"));
            }
            u64::from_str_radix(&digits, 8)
                .map_err(|_| format!("expected an octal mode like \"0644\", found {s:?}"))?
        }
        other => {
            return Err(format!(
                "expected an octal mode like \"0644\", found {}",
                show(other)
            ))
        }
    };
    if m > 0o7777 {
        return Err(format!(
            "{} is mode {m:o} in octal, past 7777; write it as a quoted octal string like \"0644\"",
            match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            }
        ));
    }
    Ok(Mode(m as u32))
}

/// cloud-init's `translate_bool`: booleans, and the strings true/yes/on/1
/// and false/no/off/0 (any case). cloud-init takes every other string as
/// false; imprint refuses it (`append: y` would silently replace a file its
/// author meant to append to).
fn cfg_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        _ => None,
    }
}

/// Expand dotted keys (`a.b: 1` -> `a: {b: 1}`), recursively. A key given
/// both ways in one mapping is an error naming both spellings.
fn expand(map: Values, prefix: &str) -> Result<Values, Vec<String>> {
    let mut out = Values::new();
    // First segment -> the key as written that created it.
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    for (k, v) in map {
        let full = format!("{prefix}{k}");
        let v = match v {
            Value::Object(inner) => match expand(inner, &format!("{full}.")) {
                Ok(m) => Value::Object(m),
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            },
            other => other,
        };
        let segs: Vec<&str> = k.split('.').collect();
        if k.contains('.') && segs.iter().any(|s| s.is_empty()) {
            errors.push(format!(
                "key `{full}` has an empty segment; a dotted key is words joined by dots like db.host"
            ));
            continue;
        }
        let mut nested = v;
        for s in segs[1..].iter().rev() {
            let mut m = Values::new();
            m.insert((*s).to_string(), nested);
            nested = Value::Object(m);
        }
        let first = segs[0].to_string();
        match out.get_mut(&first) {
            None => {
                origin.insert(first.clone(), k.clone());
                out.insert(first, nested);
            }
            Some(existing) => {
                if let Err(at) = merge_strict(existing, nested, &format!("{prefix}{first}")) {
                    let other = origin.get(&first).cloned().unwrap_or_default();
                    errors.push(format!(
                        "`{at}` is set twice, by the keys `{prefix}{other}` and `{full}`; keep one"
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Merge maps without overriding: a leaf set twice is an error (its path).
fn merge_strict(into: &mut Value, from: Value, at: &str) -> Result<(), String> {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let path = format!("{at}.{k}");
                match a.get_mut(&k) {
                    Some(existing) => merge_strict(existing, v, &path)?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        _ => Err(at.to_string()),
    }
}

/// Later wins; maps merge deeply; lists and scalars are replaced.
pub fn deep_merge(into: &mut Values, from: Values) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => deep_merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Dotted keys of every leaf (a non-map value, or an empty map).
pub fn leaf_keys(values: &Values, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in values {
        let key = format!("{prefix}{k}");
        match v {
            Value::Object(m) if !m.is_empty() => leaf_keys(m, &format!("{key}."), out),
            _ => out.push(key),
        }
    }
}

fn with_article(noun: &str) -> String {
    let vowel = noun
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

fn part_hint(kind: &PartKind) -> &'static str {
    match kind {
        PartKind::Script => {
            "bake the script into the image and run it from a unit ordered \
             After=imprint.service"
        }
        PartKind::Boothook => {
            "bake the command into the image and run it from a unit ordered \
             Before=imprint.service"
        }
        PartKind::Include => {
            "imprint never fetches URLs named by user-data; put the content in the \
             user-data itself"
        }
        PartKind::Jinja => {
            "imprint renders the image's own templates; pass the variables as values \
             (JSON, YAML or the imprint: key of #cloud-config) instead"
        }
        PartKind::PartHandler => {
            "part handlers run code from user-data; bake the logic into the image"
        }
        PartKind::CloudConfigArchive => {
            "send the parts as a MIME multipart instead (Terraform cloudinit_config, \
             cloud-init devel make-mime)"
        }
        _ => {
            "imprint reads #cloud-config (imprint: and write_files), JSON and YAML \
             values parts; send the data as one of those"
        }
    }
}

/// What to do instead of a cloud-config module imprint does not run.
pub fn key_hint(key: &str) -> &'static str {
    match key {
        "runcmd" => {
            "bake the command into the image, or run it from a unit ordered \
             After=imprint.service"
        }
        "bootcmd" => "bake the command into the image, in a unit ordered Before=imprint.service",
        "packages"
        | "package_update"
        | "package_upgrade"
        | "package_reboot_if_required"
        | "apt"
        | "yum_repos"
        | "zypper"
        | "snap"
        | "apk_repos" => {
            "install packages when the image is built (Packer); an immutable server \
             does not change its packages at boot"
        }
        "users"
        | "groups"
        | "user"
        | "chpasswd"
        | "password"
        | "ssh_pwauth"
        | "ssh_authorized_keys"
        | "disable_root" => {
            "create users in the image; deliver per-instance keys or passwords as values \
             rendered by a manifest file"
        }
        "hostname"
        | "fqdn"
        | "prefer_fqdn_over_hostname"
        | "preserve_hostname"
        | "manage_etc_hosts" => {
            "pass the name as a value and let the manifest render /etc/hostname \
             (and /etc/hosts)"
        }
        "ssh_keys" | "ssh_deletekeys" | "ssh_genkeytypes" | "ssh" => {
            "the image's manifest (ssh_host_keys) gives each new instance fresh host keys"
        }
        "timezone" | "locale" | "ntp" | "keyboard" => {
            "set it in the image, or pass it as a value rendered by a manifest file"
        }
        "mounts" | "disk_setup" | "fs_setup" | "growpart" | "resize_rootfs" | "swap" => {
            "declare storage in the image (systemd .mount/.swap units, \
             systemd-repart/growfs)"
        }
        "power_state" => "reboot from a unit ordered After=imprint.service if you must",
        "merge_how" | "merge_type" => {
            "imprint merges parts by fixed rules: values deep-merge, write_files \
             concatenate"
        }
        "phone_home" | "final_message" => {
            "imprint reports to the journal and /var/lib/imprint/report.json; read it \
             with imprint status"
        }
        _ => {
            "imprint does not run cloud-config modules; do this in the image, or in a \
             unit ordered After=imprint.service"
        }
    }
}

/// Values that ask cloud-init for nothing: always a warning, never an
/// error.
fn asks_for_nothing(key: &str, value: &Value) -> bool {
    match key {
        "package_update"
        | "package_upgrade"
        | "package_reboot_if_required"
        | "manage_etc_hosts"
        | "ssh_pwauth"
        | "ssh_deletekeys" => value == &Value::Bool(false),
        "preserve_hostname" => value == &Value::Bool(true),
        "packages" | "runcmd" | "bootcmd" | "write_files" | "users" | "ssh_authorized_keys" => {
            matches!(value, Value::Null) || value.as_array().is_some_and(Vec::is_empty)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(n: usize, kind: PartKind, body: &str) -> Part {
        Part {
            number: n,
            content_type: "text/plain".into(),
            kind,
            filename: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn manifest(policy: UnsupportedPolicy) -> Manifest {
        Manifest {
            unsupported: policy,
            ..Manifest::absent()
        }
    }

    #[test]
    fn values_deep_merge_in_order() {
        let parts = [
            part(
                1,
                PartKind::Json,
                r#"{"db": {"host": "a", "port": 1}, "l": [1, 2]}"#,
            ),
            part(2, PartKind::Yaml, "db.host: b\nl: [3]\n"),
            part(
                3,
                PartKind::CloudConfig,
                "#cloud-config\nimprint:\n  db: {user: u}\n",
            ),
        ];
        let m = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap();
        assert_eq!(
            Value::Object(m.values),
            json!({"db": {"host": "b", "port": 1, "user": "u"}, "l": [3]})
        );
        assert_eq!(m.value_parts["db.host"], 2);
        assert_eq!(m.value_parts["db.port"], 1);
        assert_eq!(m.value_parts["db.user"], 3);
    }

    #[test]
    fn dotted_and_nested_conflict() {
        let parts = [part(
            1,
            PartKind::Json,
            r#"{"db": {"host": "a"}, "db.host": "b"}"#,
        )];
        let e = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid user-data:\n  part 1: `db.host` is set twice, by the keys `db` and \
             `db.host`; keep one"
        );
    }

    #[test]
    fn write_files_concatenate_and_permissions() {
        let parts = [
            part(
                1,
                PartKind::CloudConfig,
                "#cloud-config\nwrite_files:\n- path: /a\n  content: x\n  permissions: 0644\n  owner: app:app\n",
            ),
            part(
                2,
                PartKind::CloudConfig,
                "#cloud-config\nwrite_files:\n- path: /b\n  permissions: '0600'\n  append: yes\n  defer: true\n  encoding: B64\n",
            ),
        ];
        let m = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap();
        assert_eq!(m.write_files.len(), 2);
        assert_eq!(m.write_files[0].permissions, Some(Mode(0o644)));
        assert_eq!(m.write_files[0].owner, OwnerSpec::parse("app:app"));
        assert_eq!(m.write_files[1].permissions, Some(Mode(0o600)));
        assert_eq!(m.write_files[1].content, "");
        assert!(m.write_files[1].append && m.write_files[1].defer);
        assert_eq!(m.write_files[1].encoding.as_deref(), Some("B64"));
        assert_eq!(
            m.write_files[1].origin,
            Origin::WriteFiles { part: 2, index: 0 }
        );
    }

    #[test]
    fn decode_perms_mirrors_cloud_init() {
        assert_eq!(decode_perms(&json!(420)), Ok(Mode(0o644)));
        assert_eq!(decode_perms(&json!(644)), Ok(Mode(644)));
        assert_eq!(decode_perms(&json!("644")), Ok(Mode(0o644)));
        assert_eq!(decode_perms(&json!(" 0o755 ")), Ok(Mode(0o755)));
        assert_eq!(decode_perms(&json!("6_44")), Ok(Mode(0o644)));
        assert_eq!(decode_perms(&json!(420.7)), Ok(Mode(420)));
        assert!(decode_perms(&json!("0999")).is_err());
        assert!(decode_perms(&json!(true)).is_err());
        assert!(decode_perms(&json!(0o17777)).is_err());
    }

    #[test]
    fn decimal_permissions_warn() {
        let parts = [part(
            1,
            PartKind::CloudConfig,
            "#cloud-config\nwrite_files:\n- path: /a\n  permissions: 644\n",
        )];
        let m = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap();
        assert_eq!(m.write_files[0].permissions, Some(Mode(644)));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(
            m.warnings[0].what.contains("mode is 1204"),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn write_file_without_path() {
        let parts = [part(
            1,
            PartKind::CloudConfig,
            "#cloud-config\nwrite_files:\n- content: x\n- path: rel\n",
        )];
        let e = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap_err();
        assert_eq!(e.problems.len(), 2);
        assert!(e.problems[0]
            .message
            .starts_with("write_files[0]: missing `path`"));
        assert!(e.problems[1].message.contains("write_files[1].path"));
    }

    #[test]
    fn unsupported_policy() {
        let parts = [
            part(
                1,
                PartKind::CloudConfig,
                "#cloud-config\nruncmd: [ls]\nmerge_how: x\n",
            ),
            part(2, PartKind::Script, "#!/bin/sh\n"),
        ];
        let e = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].message.contains("`runcmd` is unsupported"));
        assert!(e.problems[1].message.contains("shell script part"));
        let m = merge(&parts, &manifest(UnsupportedPolicy::Warn)).unwrap();
        assert_eq!(m.warnings.len(), 3);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let parts = [
            part(
                1,
                PartKind::CloudConfig,
                "#cloud-config\nimprint:\n  a: [1\n",
            ),
            part(2, PartKind::Json, "{\"a\": 1,\n  oops}"),
        ];
        let e = merge(&parts, &manifest(UnsupportedPolicy::Error)).unwrap_err();
        assert_eq!(e.problems.len(), 2);
        assert!(e.problems[0].line.is_some());
        assert_eq!(e.problems[1].line, Some(2));
        assert_eq!(e.problems[1].column, Some(3));
    }
}
