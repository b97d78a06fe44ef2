//! The manifest baked into the image (`/etc/imprint/imprint.yaml`, SPEC §3).
//!
//! Parsed into a raw struct (every field optional, unknown keys refused but
//! the top level's `x-` keys, the writer's own), then
//! resolved into a validated [`Manifest`]. Errors name the manifest file and,
//! for YAML errors, the line and column.

use crate::model::{Mode, OwnerSpec};
use crate::root::{self, Root};
pub use crate::yaml::KeyAt;
use crate::yaml::{self, YamlError};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub const ALL: [ValueType; 7] = [
        ValueType::String,
        ValueType::Integer,
        ValueType::Number,
        ValueType::Boolean,
        ValueType::List,
        ValueType::Map,
        ValueType::Any,
    ];

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
#[derive(Debug, Clone, PartialEq)]
pub struct ValueDecl {
    pub ty: ValueType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    /// `enum:`.
    pub allowed: Option<Vec<serde_json::Value>>,
    pub secret: bool,
    pub description: Option<String>,
}

/// How values are quoted when substituted into a file (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Env,
    Json,
    Shell,
    None,
}

/// What an unsupported directive or part type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// manifest ([`yaml::key_at`]); `None` when the text does not
    /// say (a manifest built in code). The text is read again for it only
    /// here: errors found after parsing (render's `env:` values) pay for
    /// it, a manifest that renders does not.
    pub fn env_key_at(&self, index: usize, var: &str) -> Option<KeyAt> {
        use yaml::Step;
        yaml::key_at(
            &self.text,
            &[Step::Key("files"), Step::Index(index), Step::Key("env")],
            var,
        )
    }
}

// ---------------------------------------------------------------- raw form

/// The manifest's keys as written, every one optional, read from the YAML
/// value tree by hand ([`RawManifest::read`]): typed deserializers cost
/// the binary ~150 KiB for these few structs.
#[derive(Debug, Default)]
struct RawManifest {
    version: Option<u32>,
    datasource: RawDatasource,
    values: BTreeMap<String, ValueDecl>,
    files: Vec<RawFile>,
    enable: Vec<String>,
    ssh_host_keys: Vec<String>,
    write_files: Option<bool>,
    unsupported: Option<UnsupportedPolicy>,
}

#[derive(Debug, Default)]
struct RawDatasource {
    order: Vec<String>,
    timeout: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
struct RawFile {
    path: Option<String>,
    template: Option<String>,
    env: Option<BTreeMap<String, String>>,
    mode: Option<serde_json::Value>,
    owner: Option<String>,
    restart: Vec<String>,
    reload: Vec<String>,
    when: Option<String>,
    escape: Option<Escape>,
}

/// A step from the top-level mapping to a node.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// What is wrong with the manifest's shape: the node at `path`, and what.
#[derive(Debug)]
struct Shape {
    path: Vec<Step>,
    message: String,
}

impl Shape {
    /// The key as messages name it: `files[0].restart`, `values.db.host`.
    fn key(&self) -> String {
        let mut k = String::new();
        for s in &self.path {
            match s {
                Step::Key(name) if k.is_empty() => k.push_str(name),
                Step::Key(name) => {
                    k.push('.');
                    k.push_str(name);
                }
                Step::Index(i) => k.push_str(&format!("[{i}]")),
            }
        }
        k
    }

    /// Where the node's key is written (a list item's: its list's key),
    /// when the text says.
    fn at(&self, text: &str) -> Option<yaml::KeyAt> {
        let steps: Vec<yaml::Step> = self
            .path
            .iter()
            .map(|s| match s {
                Step::Key(k) => yaml::Step::Key(k),
                Step::Index(i) => yaml::Step::Index(*i),
            })
            .collect();
        (0..steps.len()).rev().find_map(|j| match steps[j] {
            yaml::Step::Key(k) => yaml::key_at(text, &steps[..j], k),
            yaml::Step::Index(_) => None,
        })
    }
}

/// A mapping of the manifest and where it is. A key that is absent and a
/// key whose value is null (`units:` with nothing after it) are the same.
struct Node<'v> {
    map: &'v serde_json::Map<String, serde_json::Value>,
    path: Vec<Step>,
}

impl<'v> Node<'v> {
    /// The mapping `v` at `path` (`Ok(None)`: null), with only the keys
    /// `known` (any keys when it is empty).
    fn new(
        v: &'v serde_json::Value,
        path: Vec<Step>,
        known: &[&str],
    ) -> Result<Option<Node<'v>>, Shape> {
        let map = match v {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::Object(m) => m,
            other => {
                let of = if known.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", known.join(", "))
                };
                return Err(Shape {
                    path,
                    message: format!("expected a mapping{of}, found {}", found(other)),
                });
            }
        };
        for k in map.keys() {
            // An `x-` key at the top is the manifest writer's own (Docker
            // Compose's extension fields): a place for anchors to live in.
            let extension = path.is_empty() && k.starts_with("x-");
            if !known.is_empty() && !known.contains(&k.as_str()) && !extension {
                let near = known
                    .iter()
                    .map(|c| (distance(c, k), c))
                    .min()
                    .filter(|(d, c)| *d <= (c.len() / 2).clamp(1, 3))
                    .map(|(_, c)| format!(" (did you mean {c}?)"))
                    .unwrap_or_default();
                let mut path = path;
                path.push(Step::Key(k.clone()));
                return Err(Shape {
                    path,
                    message: format!(
                        "unknown key{near}; the keys allowed here are {}",
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(Some(Node { map, path }))
    }

    fn get(&self, key: &str) -> Option<&'v serde_json::Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, message: String) -> Shape {
        let mut path = self.path.clone();
        path.push(Step::Key(key.to_string()));
        Shape { path, message }
    }

    fn child(&self, key: &str, known: &[&str]) -> Result<Option<Node<'v>>, Shape> {
        let mut path = self.path.clone();
        path.push(Step::Key(key.to_string()));
        match self.get(key) {
            None => Ok(None),
            Some(v) => Node::new(v, path, known),
        }
    }

    /// A string; another scalar is refused, not turned into text: YAML
    /// already read it as something else (`owner: 33:33` is the number
    /// 2013 to YAML 1.1, base 60), and its text is gone.
    fn string(&self, key: &str) -> Result<Option<String>, Shape> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, expected_string(other))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, Shape> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                key,
                format!("expected true or false, found {}", found(other)),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, Shape> {
        let list = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => a,
            Some(other) => {
                return Err(self.err(
                    key,
                    format!("expected a list of strings, found {}", found(other)),
                ))
            }
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                other => Err(self.err(key, format!("item {i}: {}", expected_string(other)))),
            })
            .collect()
    }

    /// One of `words`.
    fn word<T: Copy>(&self, key: &str, words: &[(&str, T)]) -> Result<Option<T>, Shape> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match words.iter().find(|(w, _)| v.as_str() == Some(w)) {
            Some((_, t)) => Ok(Some(*t)),
            None => {
                let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
                Err(self.err(
                    key,
                    format!("expected one of {}, found {}", names.join(", "), found(v)),
                ))
            }
        }
    }
}

/// What was found, in words.
fn found(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn expected_string(v: &serde_json::Value) -> String {
    let quote = match v {
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            "; YAML 1.1 reads some unquoted words as numbers or booleans (33:33, 0755, yes, on): quote the string"
        }
        _ => "",
    };
    format!("expected a string, found {}{quote}", found(v))
}

impl RawManifest {
    const KEYS: &'static [&'static str] = &[
        "version",
        "datasource",
        "values",
        "files",
        "units",
        "ssh_host_keys",
        "cloud_config",
        "unsupported",
    ];

    /// The raw manifest in `v`, the YAML value tree of `text`.
    fn read(v: &serde_json::Value, text: &str) -> Result<RawManifest, Shape> {
        let Some(top) = Node::new(v, Vec::new(), Self::KEYS)? else {
            return Ok(RawManifest::default());
        };
        let version =
            match top.get("version") {
                None => None,
                Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                    || top.err("version", format!("expected 1, found {}", found(v))),
                )?),
            };
        let mut raw = RawManifest {
            version,
            ..RawManifest::default()
        };
        if let Some(ds) = top.child("datasource", &["order", "timeout"])? {
            raw.datasource = RawDatasource {
                order: ds.strings("order")?,
                timeout: ds.get("timeout").cloned(),
            };
        }
        if let Some(values) = top.child("values", &[])? {
            for (k, v) in values.map {
                raw.values
                    .insert(k.clone(), ValueDecl::read(v, values.path.clone(), k)?);
            }
        }
        match top.get("files") {
            None => {}
            Some(serde_json::Value::Array(files)) => {
                // How each number given as an owner was written (`1000`, a
                // uid, reads as the number it is; `0644` does not), read
                // again only when there is one.
                let numbers = files
                    .iter()
                    .any(|f| matches!(f.get("owner"), Some(serde_json::Value::Number(_))));
                let owners = if numbers {
                    yaml::item_fields_written(text, "files", "owner")
                } else {
                    Vec::new()
                };
                for (i, f) in files.iter().enumerate() {
                    let path = vec![Step::Key("files".into()), Step::Index(i)];
                    let owner = owners.iter().find(|(j, _)| *j == i).map(|(_, w)| w);
                    raw.files.push(match Node::new(f, path, RawFile::KEYS)? {
                        Some(f) => RawFile::read(&f, owner)?,
                        None => RawFile::default(),
                    });
                }
            }
            Some(other) => {
                return Err(top.err(
                    "files",
                    format!("expected a list of files, found {}", found(other)),
                ))
            }
        }
        if let Some(units) = top.child("units", &["enable"])? {
            raw.enable = units.strings("enable")?;
        }
        raw.ssh_host_keys = top.strings("ssh_host_keys")?;
        if let Some(cc) = top.child("cloud_config", &["write_files"])? {
            raw.write_files = cc.boolean("write_files")?;
        }
        raw.unsupported = top.word(
            "unsupported",
            &[
                ("error", UnsupportedPolicy::Error),
                ("warn", UnsupportedPolicy::Warn),
            ],
        )?;
        Ok(raw)
    }
}

impl ValueDecl {
    const KEYS: &'static [&'static str] = &[
        "type",
        "required",
        "default",
        "enum",
        "secret",
        "description",
    ];

    /// The declaration of `values.NAME` (`parents` is `[values]`); null is
    /// a declaration with every field left out.
    fn read(v: &serde_json::Value, mut parents: Vec<Step>, name: &str) -> Result<Self, Shape> {
        parents.push(Step::Key(name.to_string()));
        let mut d = ValueDecl {
            ty: ValueType::Any,
            required: false,
            default: None,
            allowed: None,
            secret: false,
            description: None,
        };
        let Some(n) = Node::new(v, parents, Self::KEYS)? else {
            return Ok(d);
        };
        let types: Vec<(&str, ValueType)> = ValueType::ALL.iter().map(|t| (t.name(), *t)).collect();
        d.ty = n.word("type", &types)?.unwrap_or(ValueType::Any);
        d.required = n.boolean("required")?.unwrap_or(false);
        d.default = n.get("default").cloned();
        d.allowed = match n.get("enum") {
            None => None,
            Some(serde_json::Value::Array(a)) => Some(a.clone()),
            Some(other) => {
                return Err(n.err(
                    "enum",
                    format!(
                        "expected a list of the values allowed, found {}",
                        found(other)
                    ),
                ))
            }
        };
        d.secret = n.boolean("secret")?.unwrap_or(false);
        // For people: any scalar will do.
        d.description = match n.get("description") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => {
                Some(v.to_string())
            }
            Some(other) => return Err(n.err("description", expected_string(other))),
        };
        Ok(d)
    }
}

impl RawFile {
    const KEYS: &'static [&'static str] = &[
        "path", "template", "env", "mode", "owner", "restart", "reload", "if", "escape",
    ];

    /// `owner`: how the file's owner was written, when it is a number.
    fn read(f: &Node, owner: Option<&yaml::Written>) -> Result<RawFile, Shape> {
        let env = match f.child("env", &[])? {
            None => None,
            Some(env) => Some(
                env.map
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                        other => Err(env.err(
                            k,
                            format!(
                                "expected the dotted key of a value, like db.host, found {}",
                                found(other)
                            ),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(RawFile {
            path: f.string("path")?,
            template: f.string("template")?,
            env,
            mode: f.get("mode").cloned(),
            owner: match (f.get("owner"), owner) {
                // A uid written as the decimal number it is: its digits.
                (Some(serde_json::Value::Number(n)), Some(w))
                    if w.plain && n.to_string() == w.text =>
                {
                    Some(w.text.clone())
                }
                _ => f.string("owner")?,
            },
            restart: f.strings("restart")?,
            reload: f.strings("reload")?,
            when: f.string("if")?,
            escape: f.word(
                "escape",
                &[
                    ("env", Escape::Env),
                    ("json", Escape::Json),
                    ("shell", Escape::Shell),
                    ("none", Escape::None),
                ],
            )?,
        })
    }
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
    parse_with(&path, &text, &templates, &read, &|| {
        ServiceTimeout::in_root(root)
    })
    .map(Some)
}

/// imprint.service's `TimeoutStartSec=` as systemd will apply it, and
/// where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTimeout {
    /// `None`: no limit (`infinity`, or `0`).
    pub limit: Option<Duration>,
    /// The file that set it, for the warning (relative to the root).
    pub from: String,
}

impl ServiceTimeout {
    /// The shipped unit's (units/imprint.service).
    pub fn shipped() -> ServiceTimeout {
        ServiceTimeout {
            limit: Some(SERVICE_TIMEOUT_START),
            from: "imprint.service".into(),
        }
    }

    /// The root's: its imprint.service (else the shipped one, which the
    /// package will install) with its drop-ins applied in order, as
    /// systemd does: the last `TimeoutStartSec=` (or `TimeoutSec=`) in
    /// `[Service]` wins, an empty one goes back to the default (90 s,
    /// systemd's `DefaultTimeoutStartSec=`); a value that is not a time
    /// span is ignored, as systemd ignores it.
    pub fn in_root(root: &Root) -> ServiceTimeout {
        const DEFAULT: Duration = Duration::from_secs(90);
        let (main, dropins) = crate::unitfile::unit_texts(root, "imprint.service");
        let mut t = match &main {
            Some(_) => ServiceTimeout {
                limit: Some(DEFAULT),
                from: "imprint.service (systemd's default)".into(),
            },
            None => ServiceTimeout::shipped(),
        };
        for (text, from) in main
            .iter()
            .map(|m| (m, "imprint.service".to_string()))
            .chain(dropins.iter().map(|(p, d)| (d, format!("the drop-in {p}"))))
        {
            crate::unitfile::for_each_entry(text, |section, k, v| {
                if section != "Service" || !matches!(k, "TimeoutStartSec" | "TimeoutSec") {
                    return;
                }
                let limit = if v.is_empty() {
                    Some(Some(DEFAULT))
                } else {
                    crate::unitfile::timespan(v)
                };
                if let Some(limit) = limit {
                    t = ServiceTimeout {
                        limit,
                        from: from.clone(),
                    };
                }
            });
        }
        t
    }

    /// The warning for a fetch budget of `timeout` under this limit.
    fn warning(&self, timeout: Duration) -> Option<String> {
        let limit = self.limit?;
        (timeout >= limit).then(|| format!(
            "datasource.timeout: {timeout:?} is not shorter than imprint.service's TimeoutStartSec={} (set by {}), so systemd would stop a run still fetching before the fetch gives up and says why; raise TimeoutStartSec= above it in a drop-in (/etc/systemd/system/imprint.service.d/*.conf), or lower datasource.timeout",
            crate::unitfile::format_span(limit),
            self.from
        ))
    }
}

/// Parse and resolve manifest text. `templates` is the template directory.
/// imprint.service's start timeout is taken to be the shipped unit's.
pub fn parse(path: &Path, text: &str, templates: &Path) -> Result<Manifest, ManifestError> {
    parse_with(
        path,
        text,
        templates,
        &|p| std::fs::read_to_string(p),
        &ServiceTimeout::shipped,
    )
}

/// [`parse`], reading each template with `read`, and imprint.service's
/// start timeout with `service_timeout` (only when `datasource.timeout`
/// is at least the shipped unit's: the one case it can change a warning).
fn parse_with(
    path: &Path,
    text: &str,
    templates: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
    service_timeout: &dyn Fn() -> ServiceTimeout,
) -> Result<Manifest, ManifestError> {
    let tree = yaml::parse_value(text).map_err(|error| ManifestError::Syntax {
        path: path.to_path_buf(),
        error,
    })?;
    // An error at the node `at` (a path of keys and indexes from the top),
    // with the line and column of its key when the text has it.
    let invalid = |at: Vec<Step>, message: String| {
        let e = Shape { path: at, message };
        ManifestError::Invalid {
            path: path.to_path_buf(),
            key: e.key(),
            message: match e.at(text) {
                Some(at) => format!("{at}: {}", e.message),
                None => e.message,
            },
        }
    };
    let key = |k: &str| Step::Key(k.into());
    let raw = RawManifest::read(&tree.value, text).map_err(|e| invalid(e.path, e.message))?;
    match raw.version {
        Some(1) | None => {}
        Some(v) => {
            return Err(invalid(
                vec![key("version")],
                format!("unsupported version {v}; this imprint reads version 1"),
            ))
        }
    }
    let ds = raw.datasource;
    let timeout = match &ds.timeout {
        None => Duration::from_secs(60),
        Some(v) => parse_duration(v).ok_or_else(|| {
            invalid(
                vec![key("datasource"), key("timeout")],
                format!("expected a duration like 60s, 2m or 500ms, found {v}"),
            )
        })?,
    };
    // 0 leaves no time for a single request: every network fetch would fail
    // at once, at first boot. Refused now, when `imprint validate` can say so.
    if timeout.is_zero() {
        return Err(invalid(
            vec![key("datasource"), key("timeout")],
            format!(
                "{} leaves no time for any request, so every fetch from a network datasource would fail at once; give a budget like 60s (the default, when the key is left out)",
                ds.timeout.as_ref().map(|v| v.to_string()).unwrap_or_default()
            ),
        ));
    }
    let mut warnings = Vec::new();
    let limit = if timeout >= SERVICE_TIMEOUT_START {
        service_timeout()
    } else {
        ServiceTimeout::shipped()
    };
    if let Some(w) = limit.warning(timeout) {
        warnings.push(w);
    }
    // A name identify would not know is the image's mistake: refused here,
    // so that `imprint validate` catches it at build time (65), not the
    // first boot.
    for (i, name) in ds.order.iter().enumerate() {
        if crate::identify::Datasource::parse(name).is_none() {
            let known: Vec<&str> = crate::identify::Datasource::ALL
                .iter()
                .map(|d| d.name())
                .collect();
            return Err(invalid(
                vec![key("datasource"), key("order"), Step::Index(i)],
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
                vec![key("values"), key(k)],
                "a value key is dotted words like db.host".into(),
            ));
        }
        if d.required && d.default.is_some() {
            return Err(invalid(
                vec![key("values"), key(k)],
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
        let field = |k: &str| vec![key("files"), Step::Index(i), key(k)];
        let p = f
            .path
            .ok_or_else(|| invalid(field("path"), "missing; every file needs a path".into()))?;
        if !p.starts_with('/') || Root::rel(&p).is_none() {
            return Err(invalid(
                field("path"),
                format!("{p:?} must be an absolute path without '..'"),
            ));
        }
        let source = match (f.template, f.env) {
            (Some(name), None) => {
                if Root::rel(&name).is_none() {
                    return Err(invalid(
                        field("template"),
                        format!("{name:?} must be a name under templates/ without '..'"),
                    ));
                }
                let tpath = templates.join(&name);
                let text = read(&tpath).map_err(|source| ManifestError::Template {
                    manifest: path.to_path_buf(),
                    key: format!("files[{i}].template"),
                    path: tpath.clone(),
                    source,
                })?;
                Source::Template { name, text }
            }
            (None, Some(env)) => {
                for (var, _) in env.iter() {
                    if !is_env_name(var) {
                        return Err(invalid(
                            vec![key("files"), Step::Index(i), key("env"), key(var)],
                            "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
                        ));
                    }
                }
                Source::Env(env)
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    field("template"),
                    "template and env are exclusive; pick one".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    field("template"),
                    "missing; a file needs a template or an env map".into(),
                ))
            }
        };
        if let Some(serde_json::Value::Number(n)) = &f.mode {
            let written = modes_written.iter().find(|(j, _)| *j == i).map(|(_, w)| w);
            if let Some(w) = written.filter(|w| !written_octal(&w.text)) {
                // Its message has the line the integer is written on.
                return Err(ManifestError::Invalid {
                    path: path.to_path_buf(),
                    key: format!("files[{i}].mode"),
                    message: not_octal(&p, n, w),
                });
            }
        }
        let mode = match f.mode {
            None => None,
            Some(v) => Some(parse_mode(&v).ok_or_else(|| {
                invalid(
                    field("mode"),
                    format!("expected an octal mode like \"0640\", found {v}"),
                )
            })?),
        };
        let owner = match f.owner {
            None => None,
            Some(o) => Some(OwnerSpec::parse(&o).ok_or_else(|| {
                invalid(
                    field("owner"),
                    format!("expected user or user:group, found {o:?}"),
                )
            })?),
        };
        for (list, units) in [("restart", &f.restart), ("reload", &f.reload)] {
            if let Some(u) = units.iter().find(|u| !is_unit_name(u)) {
                return Err(invalid(
                    field(list),
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
                    field("if"),
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
    let enable = raw.enable;
    for u in &enable {
        if !is_unit_name(u) {
            return Err(invalid(
                vec![key("units"), key("enable")],
                format!("{u:?} is not a unit name like app.service"),
            ));
        }
    }
    let ssh_host_keys = raw.ssh_host_keys;
    for k in &ssh_host_keys {
        if !SSH_KEY_TYPES.contains(&k.as_str()) {
            return Err(invalid(
                vec![key("ssh_host_keys")],
                format!("unknown key type {k:?}; expected one of {SSH_KEY_TYPES:?}"),
            ));
        }
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        datasource_order: ds.order,
        datasource_timeout: timeout,
        values: raw.values,
        files,
        enable,
        ssh_host_keys,
        write_files: raw.write_files.unwrap_or(true),
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

    fn err(text: &str) -> String {
        parse(Path::new("/m.yaml"), text, Path::new("/nonexistent"))
            .unwrap_err()
            .to_string()
    }

    /// A key that is not the manifest's, or a value of the wrong shape:
    /// the key, where it is written, and what is allowed or expected.
    #[test]
    fn shapes_are_errors_naming_key_place_and_fix() {
        assert_eq!(
            err("version: 1\nfiles:\n  - path: /etc/a\n    env: {A: a}\n    restrat: [app.service]\n"),
            "invalid manifest /m.yaml: files[0].restrat: line 5, column 5: unknown key (did you mean restart?); \
             the keys allowed here are path, template, env, mode, owner, restart, reload, if, escape"
        );
        assert_eq!(
            err("valeus: {}\n"),
            "invalid manifest /m.yaml: valeus: line 1, column 1: unknown key (did you mean values?); \
             the keys allowed here are version, datasource, values, files, units, ssh_host_keys, cloud_config, unsupported"
        );
        for (text, want) in [
            ("files: {}", "files: line 1, column 1: expected a list of files, found a mapping"),
            ("files:\n  - /etc/a", "files[0]: line 1, column 1: expected a mapping of path, template"),
            ("files:\n  - path: 7", "files[0].path: line 2, column 5: expected a string, found the number 7; YAML 1.1"),
            ("files:\n  - {path: /a, owner: 0644}", "files[0].owner: line 2, column 16: expected a string, found the number 420"),
            ("files:\n  - {path: /a, owner: 33:33}", "files[0].owner: line 2, column 16: expected a string, found the number 2013; YAML 1.1 reads some unquoted words as numbers or booleans (33:33, 0755, yes, on): quote the string"),
            ("files:\n  - {path: /a, restart: [a.service, 5]}", "files[0].restart: line 2, column 16: item 1: expected a string, found the number 5"),
            ("files:\n  - {path: /a, env: {A: [x]}}", "files[0].env.A: line 2, column 22: expected the dotted key of a value, like db.host, found a list"),
            ("files:\n  - {path: /a, escape: yaml}", "files[0].escape: line 2, column 16: expected one of env, json, shell, none, found the string \"yaml\""),
            ("values:\n  a: {type: text}", "values.a.type: line 2, column 7: expected one of string, integer, number, boolean, list, map, any, found the string \"text\""),
            ("values:\n  a: {required: \"true\"}", "values.a.required: line 2, column 7: expected true or false, found the string \"true\""),
            ("values:\n  a: {enum: x}", "values.a.enum: line 2, column 7: expected a list of the values allowed, found the string \"x\""),
            ("values:\n  a: string", "values.a: line 2, column 3: expected a mapping of type, required"),
            ("values: [a]", "values: line 1, column 1: expected a mapping, found a list"),
            ("units: {enable: x.service}", "units.enable: line 1, column 9: expected a list of strings, found the string \"x.service\""),
            ("cloud_config: {write_files: maybe}", "cloud_config.write_files: line 1, column 16: expected true or false, found the string \"maybe\""),
            ("unsupported: WARN", "unsupported: line 1, column 1: expected one of error, warn, found the string \"WARN\""),
            ("version: \"1\"", "version: line 1, column 1: expected 1, found the string \"1\""),
            ("datasource: {order: ec2}", "datasource.order: line 1, column 14: expected a list of strings"),
            ("- a", "invalid manifest /m.yaml: : expected a mapping of version, datasource"),
            // Checks after the shapes are located too.
            ("files:\n  - {path: /a, env: {A: a}, reload: [x]}", "files[0].reload: line 2, column 29: \"x\" is not a unit name"),
            ("files:\n  - {env: {A: a}}", "files[0].path: line 1, column 1: missing; every file needs a path"),
            ("values:\n  a..b: {}", "values.a..b: line 2, column 3: a value key is dotted words"),
            ("files:\n  - {path: /a, env: {1A: a}}", "files[0].env.1A: line 2, column 22: not a valid environment variable name"),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // Merged in: the line of the mapping it came from, and the merge's.
        let e =
            err("files:\n  - &d {path: /a, env: {A: a}, ownr: root}\n  - <<: *d\n    path: /b\n");
        assert!(
            e.contains("files[0].ownr: line 2, column 32: unknown key (did you mean owner?)"),
            "{e}"
        );
        // A syntax error: line and column once.
        assert_eq!(
            err("files:\n  - path: /a\n   - x: [\n"),
            "invalid manifest /m.yaml: line 3, column 4: while parsing a block collection, did not find expected '-' indicator"
        );
    }

    /// Null is the key left out; anchors, aliases, merges and tags are
    /// YAML's; words mean what they mean in user-data (one YAML reader).
    #[test]
    fn null_is_absent_and_words_mean_what_user_data_means() {
        let text = "version:\nvalues:\n  a:\n  b: {type: string, enum: [y, n, yes, 1e3, 1:20], default: y}\n  c: {description: 12}\nfiles:\nunits:\n  enable:\nssh_host_keys:\ncloud_config:\nunsupported:\ndatasource: {order: , timeout: }\n";
        let m = parse(Path::new("/m.yaml"), text, Path::new("/n")).unwrap();
        assert_eq!(m.values["a"].ty, ValueType::Any);
        assert!(!m.values["a"].required);
        let b = &m.values["b"];
        assert_eq!(
            b.allowed.as_deref().unwrap(),
            [
                serde_json::json!("y"),
                serde_json::json!("n"),
                serde_json::json!(true),
                serde_json::json!("1e3"),
                serde_json::json!(80),
            ]
        );
        assert_eq!(b.default, Some(serde_json::json!("y")));
        assert_eq!(m.values["c"].description.as_deref(), Some("12"));
        assert!(m.files.is_empty() && m.enable.is_empty() && m.ssh_host_keys.is_empty());
        assert!(m.write_files);
        assert_eq!(m.unsupported, UnsupportedPolicy::Error);
        assert_eq!(m.datasource_timeout, Duration::from_secs(60));

        let text = "files:\n  - &f\n    path: !!str /etc/a\n    owner: \"app:app\"\n    env: &e {A: a}\n    reload: !!seq [b.service]\n  - <<: *f\n    path: /etc/b\n    env: *e\n    escape: shell\nvalues: {a: {type: string, secret: yes}}\n";
        let m = parse(Path::new("/m.yaml"), text, Path::new("/n")).unwrap();
        let b = &m.files[1];
        assert_eq!(b.path, "/etc/b");
        assert_eq!(b.owner, OwnerSpec::parse("app:app"));
        assert_eq!(b.reload, ["b.service"]);
        // Numbers, as uids and gids: written as the decimal they are.
        let ids = parse(
            Path::new("/m.yaml"),
            "files:\n  - {path: /a, env: {A: a}, owner: 1000}\n  - {path: /b, env: {A: a}, owner: \"0:0\"}\n  - {path: /c, env: {A: a}, owner: 0}\n",
            Path::new("/n"),
        )
        .unwrap();
        let owners: Vec<String> = ids
            .files
            .iter()
            .map(|f| f.owner.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(owners, ["1000", "0:0", "0"]);
        assert_eq!(b.escape, Some(Escape::Shell));
        assert_eq!(b.source, m.files[0].source);
        assert!(m.values["a"].secret);
        // A key that only holds an anchor is a key like any other, unless
        // it is an `x-` key at the top, which is the writer's own.
        let e = err("common: &c {owner: root}\nfiles: []\n");
        assert!(e.contains("common: line 1, column 1: unknown key"), "{e}");
        let m = parse(
            Path::new("/m.yaml"),
            "x-common: &c {owner: root, mode: \"0640\", restart: [a.service]}\n\
             files:\n  - {<<: *c, path: /etc/a, env: {A: a}}\n  - {<<: *c, path: /etc/b, env: {B: b}}\n",
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(
            m.files
                .iter()
                .all(|f| f.mode == Some(crate::model::Mode(0o640)) && f.restart == ["a.service"]),
            "{:?}",
            m.files
        );
        // Only at the top: below it, an `x-` key is misspelt like any other.
        let e = err("files:\n  - {path: /etc/a, env: {A: a}, x-note: n}\n");
        assert!(
            e.contains("files[0].x-note: line 2, column 33: unknown key"),
            "{e}"
        );
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

    /// The root's imprint.service and its drop-ins decide the limit, as
    /// systemd applies them: a drop-in that raises `TimeoutStartSec=`
    /// above the budget (the warning's own advice) ends the warning.
    #[test]
    fn timeout_warning_reads_the_roots_unit_and_drop_ins() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        let put = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let warnings = |timeout: &str| {
            put(
                "etc/imprint/imprint.yaml",
                &format!("datasource: {{timeout: {timeout}}}\n"),
            );
            load(&root, None).unwrap().unwrap().warnings
        };
        // No unit in the root: the shipped one's 120 s.
        assert_eq!(warnings("5m").len(), 1);
        put(
            "usr/lib/systemd/system/imprint.service",
            include_str!("../units/imprint.service"),
        );
        let w = warnings("5m");
        assert!(
            w[0].contains("TimeoutStartSec=120s (set by imprint.service)"),
            "{w:?}"
        );
        put(
            "etc/systemd/system/imprint.service.d/50-timeout.conf",
            "[Service]\nTimeoutStartSec=10min\n",
        );
        assert_eq!(warnings("5m"), Vec::<String>::new());
        assert_eq!(warnings("2m"), Vec::<String>::new());
        // A later drop-in (by name) lowers it again; /etc's file of a name
        // hides /usr's.
        put(
            "usr/lib/systemd/system/imprint.service.d/60-lower.conf",
            "[Service]\nTimeoutSec=3min\n",
        );
        let w = warnings("5m");
        assert!(
            w[0].contains("TimeoutStartSec=180s (set by the drop-in /usr/lib/systemd/system/imprint.service.d/60-lower.conf)"),
            "{w:?}"
        );
        put(
            "etc/systemd/system/imprint.service.d/60-lower.conf",
            "[Service]\nTimeoutStartSec=infinity\n",
        );
        assert_eq!(warnings("5m"), Vec::<String>::new());
        // [Unit] entries and values that are no time span do not count.
        put(
            "etc/systemd/system/imprint.service.d/60-lower.conf",
            "[Unit]\nTimeoutStartSec=1s\n[Service]\nTimeoutStartSec=soon\n",
        );
        assert_eq!(warnings("5m"), Vec::<String>::new(), "10min stands");
        // An empty assignment goes back to systemd's default, 90 s.
        put(
            "etc/systemd/system/imprint.service.d/70-reset.conf",
            "[Service]\nTimeoutStartSec=\n",
        );
        assert!(warnings("5m")[0].contains("TimeoutStartSec=90s (set by the drop-in /etc/systemd/system/imprint.service.d/70-reset.conf)"));
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
