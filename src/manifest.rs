//! The manifest baked into the image (`/etc/imprint/imprint.yaml`, SPEC §3).
//!
//! Parsed into a raw struct (every field optional, unknown keys refused), then
//! resolved into a validated [`Manifest`]. Errors name the manifest file and,
//! for YAML errors, the line and column.

use crate::model::{Mode, OwnerSpec};
use crate::root::{self, Root};
pub use crate::yaml::KeyAt;
use crate::yaml::{self, YamlError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {error}")]
    Syntax { path: PathBuf, error: YamlError },
    #[error("invalid manifest {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("failed to read template {path} (named by {key} of manifest {manifest}): {source}")]
    Template {
        manifest: PathBuf,
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A declared value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Integer,
    Number,
    Boolean,
    List,
    Map,
    Any,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Number => "number",
            ValueType::Boolean => "boolean",
            ValueType::List => "list",
            ValueType::Map => "map",
            ValueType::Any => "any",
        }
    }
}

/// One entry of `values:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueDecl {
    #[serde(rename = "type", default = "default_type")]
    pub ty: ValueType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(rename = "enum", default)]
    pub allowed: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_type() -> ValueType {
    ValueType::Any
}

/// How values are quoted when substituted into a file (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Escape {
    Env,
    Json,
    Shell,
    None,
}

/// What an unsupported directive or part type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedPolicy {
    #[default]
    Error,
    Warn,
}

/// How a file's content is produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A Handlebars template: its name under `templates/` and its text.
    Template { name: String, text: String },
    /// `env:` shorthand: variable name -> dotted value key, written sorted.
    Env(BTreeMap<String, String>),
}

/// One entry of `files:`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Absolute path inside the root, as written (validated: no `..`).
    pub path: String,
    pub source: Source,
    pub mode: Option<Mode>,
    pub owner: Option<OwnerSpec>,
    pub restart: Vec<String>,
    pub reload: Vec<String>,
    /// Dotted key: the file is rendered only when this value is set.
    pub when: Option<String>,
    /// Explicit escaping; `None` means the default for the path (SPEC §4).
    pub escape: Option<Escape>,
}

/// The validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it was read from (host path), for messages.
    pub path: PathBuf,
    pub datasource_order: Vec<String>,
    pub datasource_timeout: Duration,
    /// Dotted key -> declaration.
    pub values: BTreeMap<String, ValueDecl>,
    pub files: Vec<FileSpec>,
    pub enable: Vec<String>,
    pub ssh_host_keys: Vec<String>,
    pub write_files: bool,
    pub unsupported: UnsupportedPolicy,
    /// What is allowed but likely a mistake, each a full sentence naming
    /// the key; logged as warnings by every command that reads the manifest
    /// and listed in the report.
    pub warnings: Vec<String>,
    /// The manifest's text as read (empty for [`Manifest::absent`]), for
    /// the line and column of what is found wrong after parsing
    /// ([`Manifest::env_key_at`]); read again only then.
    pub text: String,
}

/// imprint.service's `TimeoutStartSec=` (units/imprint.service; a test
/// keeps the two the same): a `datasource.timeout` as long would have
/// systemd stop the run before the fetch gives up.
pub const SERVICE_TIMEOUT_START: Duration = Duration::from_secs(120);

impl Manifest {
    /// The manifest used when the image has none: apply cloud-config
    /// `write_files` only (SPEC §3), unsupported directives are warnings.
    pub fn absent() -> Manifest {
        Manifest {
            path: PathBuf::new(),
            datasource_order: Vec::new(),
            datasource_timeout: Duration::from_secs(60),
            values: BTreeMap::new(),
            files: Vec::new(),
            enable: Vec::new(),
            ssh_host_keys: Vec::new(),
            write_files: true,
            unsupported: UnsupportedPolicy::Warn,
            warnings: Vec::new(),
            text: String::new(),
        }
    }

    /// Where the key `var` of `files[index].env` is written in the
    /// manifest ([`yaml::item_map_key_at`]); `None` when the text does not
    /// say (a manifest built in code). The text is read again for it only
    /// here: errors found after parsing (render's `env:` values) pay for
    /// it, a manifest that renders does not.
    pub fn env_key_at(&self, index: usize, var: &str) -> Option<KeyAt> {
        yaml::item_map_key_at(&self.text, "files", index, "env", var)
    }
}

// ---------------------------------------------------------------- raw form

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<u32>,
    datasource: Option<RawDatasource>,
    #[serde(default)]
    values: BTreeMap<String, ValueDecl>,
    #[serde(default)]
    files: Vec<RawFile>,
    units: Option<RawUnits>,
    ssh_host_keys: Option<Vec<String>>,
    cloud_config: Option<RawCloudConfig>,
    unsupported: Option<UnsupportedPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatasource {
    order: Option<Vec<String>>,
    timeout: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnits {
    #[serde(default)]
    enable: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloudConfig {
    write_files: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<String>,
    template: Option<String>,
    env: Option<BTreeMap<String, String>>,
    mode: Option<serde_json::Value>,
    owner: Option<String>,
    #[serde(default)]
    restart: Vec<String>,
    #[serde(default)]
    reload: Vec<String>,
    #[serde(rename = "if")]
    when: Option<String>,
    escape: Option<Escape>,
}

/// Known SSH host key types (`ssh-keygen -t`).
pub const SSH_KEY_TYPES: &[&str] = &["rsa", "ecdsa", "ed25519"];

/// Load the manifest: `config` if given (a host path), else the root's
/// `/etc/imprint/imprint.yaml`. `Ok(None)` when the default path is absent.
/// Templates are read from `templates/` beside the manifest.
///
/// The root's manifest and templates are read as the booted image will see
/// them ([`Root::read`]): under `--root DIR` a symlink in the image resolves
/// inside DIR, never on the machine running `imprint --root`. `--config`
/// names a file of that machine, and its `templates/` are read as they are.
pub fn load(root: &Root, config: Option<&Path>) -> Result<Option<Manifest>, ManifestError> {
    let (path, in_root) = match config {
        Some(p) => (p.to_path_buf(), false),
        None => (root.join(root::MANIFEST), true),
    };
    let read = |p: &Path| -> std::io::Result<String> {
        let bytes = match p.strip_prefix(root.dir()) {
            Ok(rel) if in_root => root.read(rel)?,
            _ => std::fs::read(p)?,
        };
        String::from_utf8(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
    };
    let text = match read(&path) {
        Ok(t) => t,
        // No manifest: write_files only. A symlink there whose target the
        // image lacks is a broken image, not "no manifest".
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && config.is_none()
                && std::fs::symlink_metadata(&path).is_err() =>
        {
            return Ok(None)
        }
        Err(source) => return Err(ManifestError::Read { path, source }),
    };
    let templates = path
        .parent()
        .map(|d| d.join("templates"))
        .unwrap_or_else(|| root.join(root::TEMPLATES));
    parse_with(&path, &text, &templates, &read).map(Some)
}

/// Parse and resolve manifest text. `templates` is the template directory.
pub fn parse(path: &Path, text: &str, templates: &Path) -> Result<Manifest, ManifestError> {
    parse_with(path, text, templates, &|p| std::fs::read_to_string(p))
}

/// [`parse`], reading each template with `read`.
fn parse_with(
    path: &Path,
    text: &str,
    templates: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = if text.trim().is_empty() {
        RawManifest::default()
    } else {
        yaml::parse(text).map_err(|error| ManifestError::Syntax {
            path: path.to_path_buf(),
            error,
        })?
    };
    let invalid = |key: String, message: String| ManifestError::Invalid {
        path: path.to_path_buf(),
        key,
        message,
    };
    match raw.version {
        Some(1) | None => {}
        Some(v) => {
            return Err(invalid(
                "version".into(),
                format!("unsupported version {v}; this imprint reads version 1"),
            ))
        }
    }
    let ds = raw.datasource.unwrap_or_default();
    let timeout = match &ds.timeout {
        None => Duration::from_secs(60),
        Some(v) => parse_duration(v).ok_or_else(|| {
            invalid(
                "datasource.timeout".into(),
                format!("expected a duration like 60s, 2m or 500ms, found {v}"),
            )
        })?,
    };
    // 0 leaves no time for a single request: every network fetch would fail
    // at once, at first boot. Refused now, when `imprint validate` can say so.
    if timeout.is_zero() {
        return Err(invalid(
            "datasource.timeout".into(),
            format!(
                "{} leaves no time for any request, so every fetch from a network datasource would fail at once; give a budget like 60s (the default, when the key is left out)",
                ds.timeout.as_ref().map(|v| v.to_string()).unwrap_or_default()
            ),
        ));
    }
    let mut warnings = Vec::new();
    if timeout >= SERVICE_TIMEOUT_START {
        warnings.push(format!(
            "datasource.timeout: {timeout:?} is not shorter than imprint.service's TimeoutStartSec={}s, so systemd would stop a run still fetching before the fetch gives up and says why; raise TimeoutStartSec= above it in a drop-in (/etc/systemd/system/imprint.service.d/*.conf), or lower datasource.timeout",
            SERVICE_TIMEOUT_START.as_secs()
        ));
    }
    // A name identify would not know is the image's mistake: refused here,
    // so that `imprint validate` catches it at build time (65), not the
    // first boot.
    for (i, name) in ds.order.iter().flatten().enumerate() {
        if crate::identify::Datasource::parse(name).is_none() {
            let known: Vec<&str> = crate::identify::Datasource::ALL
                .iter()
                .map(|d| d.name())
                .collect();
            return Err(invalid(
                format!("datasource.order[{i}]"),
                format!(
                    "unknown datasource {name:?}; list only known ones: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    for (k, d) in &raw.values {
        if k.is_empty() || k.split('.').any(str::is_empty) {
            return Err(invalid(
                format!("values.{k}"),
                "a value key is dotted words like db.host".into(),
            ));
        }
        if d.required && d.default.is_some() {
            return Err(invalid(
                format!("values.{k}"),
                "required and default together make no sense; drop one".into(),
            ));
        }
    }
    // How each integer mode was written (the parsed number no longer says):
    // read again only when there is one, which a manifest that quotes its
    // modes never pays for.
    let modes_written = if raw
        .files
        .iter()
        .any(|f| matches!(f.mode, Some(serde_json::Value::Number(_))))
    {
        yaml::item_fields_written(text, "files", "mode")
    } else {
        Vec::new()
    };
    let mut files = Vec::with_capacity(raw.files.len());
    for (i, f) in raw.files.into_iter().enumerate() {
        let key = |k: &str| format!("files[{i}].{k}");
        let p = f
            .path
            .ok_or_else(|| invalid(key("path"), "missing; every file needs a path".into()))?;
        if !p.starts_with('/') || Root::rel(&p).is_none() {
            return Err(invalid(
                key("path"),
                format!("{p:?} must be an absolute path without '..'"),
            ));
        }
        let source = match (f.template, f.env) {
            (Some(name), None) => {
                if Root::rel(&name).is_none() {
                    return Err(invalid(
                        key("template"),
                        format!("{name:?} must be a name under templates/ without '..'"),
                    ));
                }
                let tpath = templates.join(&name);
                let text = read(&tpath).map_err(|source| ManifestError::Template {
                    manifest: path.to_path_buf(),
                    key: key("template"),
                    path: tpath.clone(),
                    source,
                })?;
                Source::Template { name, text }
            }
            (None, Some(env)) => {
                for (var, _) in env.iter() {
                    if !is_env_name(var) {
                        return Err(invalid(
                            format!("files[{i}].env.{var}"),
                            "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
                        ));
                    }
                }
                Source::Env(env)
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("template"),
                    "template and env are exclusive; pick one".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    key("template"),
                    "missing; a file needs a template or an env map".into(),
                ))
            }
        };
        if let Some(serde_json::Value::Number(n)) = &f.mode {
            let written = modes_written.iter().find(|(j, _)| *j == i).map(|(_, w)| w);
            if let Some(w) = written.filter(|w| !written_octal(&w.text)) {
                return Err(invalid(key("mode"), not_octal(&p, n, w)));
            }
        }
        let mode = match f.mode {
            None => None,
            Some(v) => Some(parse_mode(&v).ok_or_else(|| {
                invalid(
                    key("mode"),
                    format!("expected an octal mode like \"0640\", found {v}"),
                )
            })?),
        };
        let owner = match f.owner {
            None => None,
            Some(o) => Some(OwnerSpec::parse(&o).ok_or_else(|| {
                invalid(
                    key("owner"),
                    format!("expected user or user:group, found {o:?}"),
                )
            })?),
        };
        for u in f.restart.iter().chain(&f.reload) {
            if !is_unit_name(u) {
                return Err(invalid(
                    key("restart"),
                    format!("{u:?} is not a unit name like app.service"),
                ));
            }
        }
        // A key `if:` names that no declaration covers can never be set
        // when user-data's undeclared keys are refused (`unsupported:
        // error`, the default), so the file would be skipped for ever,
        // silently: a typo. (Under `warn` such a key can be set.)
        if let Some(k) = &f.when {
            let refused = raw.unsupported.unwrap_or_default() == UnsupportedPolicy::Error;
            if refused && !raw.values.is_empty() && !covers(&raw.values, k) {
                return Err(invalid(
                    key("if"),
                    format!(
                        "{k} is not declared under values:, so it would never be set and the file never written; name {}",
                        undeclared_hint(&raw.values, k)
                    ),
                ));
            }
        }
        files.push(FileSpec {
            path: p,
            source,
            mode,
            owner,
            restart: f.restart,
            reload: f.reload,
            when: f.when,
            escape: f.escape,
        });
    }
    let enable = raw.units.map(|u| u.enable).unwrap_or_default();
    for u in &enable {
        if !is_unit_name(u) {
            return Err(invalid(
                "units.enable".into(),
                format!("{u:?} is not a unit name like app.service"),
            ));
        }
    }
    let ssh_host_keys = raw.ssh_host_keys.unwrap_or_default();
    for k in &ssh_host_keys {
        if !SSH_KEY_TYPES.contains(&k.as_str()) {
            return Err(invalid(
                "ssh_host_keys".into(),
                format!("unknown key type {k:?}; expected one of {SSH_KEY_TYPES:?}"),
            ));
        }
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        datasource_order: ds.order.unwrap_or_default(),
        datasource_timeout: timeout,
        values: raw.values,
        files,
        enable,
        ssh_host_keys,
        write_files: raw.cloud_config.and_then(|c| c.write_files).unwrap_or(true),
        unsupported: raw.unsupported.unwrap_or_default(),
        warnings,
        text: text.to_string(),
    })
}

/// `60s`, `2m`, `500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(v: &serde_json::Value) -> Option<Duration> {
    if let Some(n) = v.as_u64() {
        return Some(Duration::from_secs(n));
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" | "min" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// A mode as YAML gives it: an octal string (`"0640"`), or an integer that
/// the YAML 1.1 reader already took as octal (`0640` unquoted).
pub fn parse_mode(v: &serde_json::Value) -> Option<Mode> {
    match v {
        serde_json::Value::String(s) => Mode::parse_octal(s),
        serde_json::Value::Number(n) => n.as_u64().filter(|m| *m <= 0o7777).map(|m| Mode(m as u32)),
        _ => None,
    }
}

/// Whether an integer was written as octal, as YAML 1.1 reads it: a leading
/// `0` (`0640`, also `0_640`), or `0o640`; `0` alone is the same in every
/// base. Decimal (`640`), hex and binary are not.
fn written_octal(text: &str) -> bool {
    let t: String = text
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix('0'));
    digits.is_some_and(|d| d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
}

/// The error for an integer mode not written as octal (`mode: 640`, which
/// YAML reads as the decimal 640, mode 1200): what was found, what it would
/// mean, what to write.
fn not_octal(path: &str, n: &serde_json::Number, w: &yaml::Written) -> String {
    let meant = match n.as_u64().filter(|m| *m <= 0o7777) {
        Some(m) => format!("mode {m:04o}"),
        None => "no mode at all (past 7777 in octal)".into(),
    };
    let t = w.text.trim();
    // `640` meant 0640: say so; anything else gets the usual example.
    let meant_octal = (3..=4).contains(&t.len()) && t.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let (fix, not) = if meant_octal {
        let fix = format!("{t:0>4}");
        let not = format!(", not {fix}");
        (fix, not)
    } else {
        ("0640".into(), String::new())
    };
    // Merged in (`<<: *defaults`): the line is the anchor's, where the
    // integer was written.
    let via = if w.merged { " (merged in with <<)" } else { "" };
    format!(
        "line {}{via}: the file {path} has mode: {t}, an integer not written in octal: YAML \
         reads it as {n}, which is {meant}{not}; write the mode as a quoted octal string: mode: \"{fix}\"",
        w.line
    )
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// A systemd unit name: `name.type`, with the characters systemd allows.
pub fn is_unit_name(s: &str) -> bool {
    const TYPES: &[&str] = &[
        "service",
        "socket",
        "target",
        "timer",
        "path",
        "mount",
        "automount",
        "swap",
        "slice",
        "scope",
        "device",
    ];
    match s.rsplit_once('.') {
        Some((name, ty)) => {
            !name.is_empty()
                && TYPES.contains(&ty)
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b":-_.@\\".contains(&c))
        }
        None => false,
    }
}

/// Whether a leaf is declared, or under a declared map/any.
pub fn covers(values: &BTreeMap<String, ValueDecl>, leaf: &str) -> bool {
    if values.contains_key(leaf) {
        return true;
    }
    let mut at = leaf;
    while let Some((parent, _)) = at.rsplit_once('.') {
        if values.contains_key(parent) {
            return true;
        }
        at = parent;
    }
    // An empty map given for a key whose children are declared.
    let prefix = format!("{leaf}.");
    values.keys().any(|k| k.starts_with(&prefix))
}

/// What a key that no declaration covers should have been, in words: the
/// nearest declared key when one is close ("did you mean"), else a few.
pub fn undeclared_hint(values: &BTreeMap<String, ValueDecl>, leaf: &str) -> String {
    let best = values
        .keys()
        .map(|k| (distance(k, leaf), k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 2).clamp(1, 3));
    match best {
        Some((_, k)) => format!("a key the manifest declares (did you mean {k}?)"),
        None => {
            let keys: Vec<&str> = values.keys().map(String::as_str).collect();
            let more = keys.len().saturating_sub(8);
            format!(
                "a key the manifest declares ({}{})",
                keys[..keys.len().min(8)].join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `env:` keys are found where they are written: in place, in flow
    /// style, and merged in from an anchored map.
    #[test]
    fn env_keys_located() {
        let text = "files:\n  - path: /etc/a\n    env: &common\n      A_VAR: db.host\n      B_VAR: db.host\n  - path: /etc/b\n    env: {ONE: db.host,  TWO: db.host}\n  - path: /etc/c\n    env:\n      <<: *common\n      OWN: db.host\n";
        let m = parse(Path::new("/m.yaml"), text, Path::new("/nonexistent")).unwrap();
        let at = |i, v| m.env_key_at(i, v).map(|k| k.to_string());
        assert_eq!(at(0, "A_VAR").as_deref(), Some("line 4, column 7"));
        assert_eq!(
            m.env_key_at(0, "B_VAR"),
            Some(KeyAt {
                line: 5,
                column: 7,
                merged_at: None
            })
        );
        assert_eq!(at(1, "TWO").as_deref(), Some("line 7, column 26"));
        assert_eq!(at(2, "OWN").as_deref(), Some("line 11, column 7"));
        assert_eq!(
            at(2, "A_VAR").as_deref(),
            Some("line 4, column 7 (merged in with << at line 10)")
        );
        assert_eq!(at(0, "NOPE"), None);
        assert_eq!(at(3, "A_VAR"), None);
        assert_eq!(Manifest::absent().env_key_at(0, "A"), None);
    }

    fn with_mode(mode: &str) -> Result<Manifest, ManifestError> {
        let text = format!("files:\n  - path: /etc/x\n    env: {{X: x}}\n    mode: {mode}\n");
        parse(Path::new("/m.yaml"), &text, Path::new("/nonexistent"))
    }

    /// Octal as YAML 1.1 writes it, or a quoted string: accepted. A decimal
    /// (or hex, binary) integer is an error naming the file, the key, what
    /// was found and what to write.
    fn with_timeout(t: &str) -> Result<Manifest, ManifestError> {
        let text = format!("datasource:\n  timeout: {t}\n");
        parse(Path::new("/m.yaml"), &text, Path::new("/nonexistent"))
    }

    /// A zero budget would fail every network fetch at once: refused,
    /// naming the key and the fix.
    #[test]
    fn zero_timeout_is_refused() {
        for t in ["0", "0s", "0ms", "\"0m\""] {
            let e = with_timeout(t).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid manifest /m.yaml: datasource.timeout: "),
                "{t}: {e}"
            );
            assert!(e.contains("leaves no time for any request"), "{t}: {e}");
            assert!(e.contains("give a budget like 60s"), "{t}: {e}");
        }
        let m = with_timeout("1ms").unwrap();
        assert_eq!(m.datasource_timeout, Duration::from_millis(1));
    }

    /// A budget as long as imprint.service's TimeoutStartSec= is allowed,
    /// with a warning; a shorter one, or none, gives no warning.
    #[test]
    fn timeout_as_long_as_the_unit_warns() {
        for t in ["120", "120s", "2m", "1h"] {
            let m = with_timeout(t).unwrap();
            assert_eq!(m.warnings.len(), 1, "{t}");
            assert!(
                m.warnings[0].starts_with("datasource.timeout: ")
                    && m.warnings[0].contains("TimeoutStartSec=120s")
                    && m.warnings[0].contains("raise TimeoutStartSec= above it"),
                "{t}: {:?}",
                m.warnings
            );
        }
        for t in ["60s", "119s", "119999ms"] {
            assert!(with_timeout(t).unwrap().warnings.is_empty(), "{t}");
        }
        let m = parse(Path::new("/m.yaml"), "", Path::new("/n")).unwrap();
        assert!(m.warnings.is_empty());
    }

    /// The warning's number is the unit's.
    #[test]
    fn service_timeout_is_the_units() {
        let unit = include_str!("../units/imprint.service");
        let line = format!("TimeoutStartSec={}s", SERVICE_TIMEOUT_START.as_secs());
        assert!(unit.lines().any(|l| l.trim() == line), "{line}");
    }

    #[test]
    fn integer_modes_must_be_written_in_octal() {
        for (written, mode) in [
            ("0640", 0o640),
            ("00640", 0o640),
            ("0_640", 0o640),
            ("0o640", 0o640),
            ("+0640", 0o640),
            ("\"0640\"", 0o640),
            ("'640'", 0o640),
            ("0", 0),
            ("!!int 0755", 0o755),
        ] {
            let m = with_mode(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(m.files[0].mode, Some(Mode(mode)), "{written}");
        }
        for (written, says) in [
            ("640", "has mode: 640, an integer not written in octal: YAML reads it as 640, which is mode 1200, not 0640; write the mode as a quoted octal string: mode: \"0640\""),
            ("6_40", "YAML reads it as 640, which is mode 1200; write"),
            ("0x1a0", "has mode: 0x1a0, an integer not written in octal: YAML reads it as 416, which is mode 0640; write the mode as a quoted octal string: mode: \"0640\""),
            ("0b101", "YAML reads it as 5, which is mode 0005;"),
            ("10000", "which is no mode at all (past 7777 in octal); write the mode as a quoted octal string: mode: \"0640\""),
            ("!!int 644", "not 0644; write the mode as a quoted octal string: mode: \"0644\""),
        ] {
            let e = with_mode(written).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid manifest /m.yaml: files[0].mode: line 4: the file /etc/x has mode: "),
                "{written}: {e}"
            );
            assert!(e.contains(says), "{written}: {e}");
        }
        // Past 7777 in octal is refused as before.
        let e = with_mode("017777").unwrap_err().to_string();
        assert!(e.contains("expected an octal mode like \"0640\""), "{e}");
        // Through an anchor too.
        let text = "values: {a: {default: &m 644}}\nfiles:\n  - path: /etc/x\n    env: {X: x}\n    mode: *m\n";
        let e = parse(Path::new("/m.yaml"), text, Path::new("/n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: the file /etc/x has mode: 644"),
            "{e}"
        );
        // Through a merge key: the line is where the anchor wrote it.
        let text = "files:\n  - path: /etc/a\n    env: {X: x}\n    mode: \"0600\"\n    <<: &defaults {mode: 640}\n  - path: /etc/b\n    env: {X: x}\n    <<: *defaults\n";
        let e = parse(Path::new("/m.yaml"), text, Path::new("/n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid manifest /m.yaml: files[1].mode: line 5 (merged in with <<): the file /etc/b has mode: 640, an integer not written in octal:"),
            "{e}"
        );
        let text = "values: {a: {default: 1}}\nfiles:\n  - path: /etc/a\n    <<: &d {env: {X: x}, mode: 640}\n  - path: /etc/b\n    <<: [{owner: root}, *d]\n";
        let e = parse(Path::new("/m.yaml"), text, Path::new("/n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid manifest /m.yaml: files[0].mode: line 4 (merged in with <<): the file /etc/a has mode: 640, an integer not written in octal: YAML reads it as 640, which is mode 1200, not 0640; write the mode as a quoted octal string: mode: \"0640\""
        );
        // The item's own mode wins over a merged one, as in the parsed value.
        let text = "files:\n  - path: /etc/a\n    env: {X: x}\n    mode: 0600\n    <<: &d {mode: \"0644\"}\n  - path: /etc/b\n    <<: &e {env: {X: x}, mode: 0640}\n    mode: \"0600\"\n  - path: /etc/c\n    <<: [*d, *e]\n";
        let m = parse(Path::new("/m.yaml"), text, Path::new("/n")).unwrap();
        let modes: Vec<_> = m.files.iter().map(|f| f.mode).collect();
        assert_eq!(
            modes,
            [Some(Mode(0o600)), Some(Mode(0o600)), Some(Mode(0o644))]
        );
        let text = "files:\n  - path: /etc/a\n    env: {X: x}\n    mode: 0600\n    <<: &d {mode: 640}\n  - path: /etc/b\n    env: {X: x}\n    <<: [{mode: 0640}, *d]\n";
        let m = parse(Path::new("/m.yaml"), text, Path::new("/n")).unwrap();
        let modes: Vec<_> = m.files.iter().map(|f| f.mode).collect();
        assert_eq!(modes, [Some(Mode(0o600)), Some(Mode(0o640))]);
    }
}
