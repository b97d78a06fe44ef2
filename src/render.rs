//! Stage 6, render: every file in memory (SPEC §1.6, §4).
//!
//! Handlebars in strict mode (src/template.rs), no HTML escaping, per-file
//! escaping (`env`, `json`, `shell`, `none`), the helpers of SPEC §4
//! (src/helpers.rs); `write_files` entries decoded. Pure: values and
//! templates in, bytes out.

use crate::escape;
use crate::helpers::FileState;
use crate::manifest::{Manifest, Source};
use crate::merge::WriteFile;
use crate::model::{Mode, Origin, OwnerSpec, Values};
use crate::plan::is_unit_path;
use crate::root::{Confined, Root};
use crate::secret::Secrets;
use crate::template::{self, Reason, Template};
use crate::validate::Validated;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// One file to be written, fully rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedFile {
    /// Absolute path inside the root.
    pub path: String,
    pub content: Vec<u8>,
    /// Final mode: as given, else 0644, or 0600 when it holds a secret (SPEC §6).
    pub mode: Mode,
    pub owner: Option<OwnerSpec>,
    pub restart: Vec<String>,
    pub reload: Vec<String>,
    pub origin: Origin,
    /// `write_files` `append: true`: content is added to what is on disk.
    pub append: bool,
    /// Whether the content holds a secret value (masked in diffs).
    pub holds_secret: bool,
}

/// Everything rendered.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// In write order (manifest files, then `write_files`, deferred last).
    pub files: Vec<RenderedFile>,
    /// Files skipped by `if:` (path, the key that was unset).
    pub skipped: Vec<(String, String)>,
    /// Units to enable and start (manifest `units.enable`).
    pub enable: Vec<String>,
    /// Secret strings, including those marked by the `secret` helper.
    pub secrets: Secrets,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `line` and `column` are 1-based (0: not known).
    #[error(
        "failed to render {path} from template {template}, line {line}, column {column}: {message}"
    )]
    Template {
        path: String,
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin} ({path}): {message}")]
    File {
        origin: Origin,
        path: String,
        message: String,
    },
    #[error("several files render to {path}: {first} and {second}; give each path once")]
    Duplicate {
        path: String,
        first: Origin,
        second: Origin,
    },
}

/// One file using template `name` is done (rendered or skipped): drop the
/// compiled template when no file left uses it.
fn release<'a>(
    uses: &mut BTreeMap<&'a str, usize>,
    parsed: &mut BTreeMap<&'a str, Template>,
    name: &str,
) {
    if let Some(left) = uses.get_mut(name) {
        *left -= 1;
        if *left == 0 {
            parsed.remove(name);
        }
    }
}

/// Render every file.
///
/// `EnvironmentFile=` targets are found in the unit files and drop-ins this
/// run renders itself (manifest files and `write_files`); use [`render_with`]
/// to add those named by the image's own units ([`environment_files`]).
pub fn render(validated: &Validated, manifest: &Manifest) -> Result<Rendered, RenderError> {
    render_with(validated, manifest, &BTreeSet::new())
}

/// [`render`], with the `EnvironmentFile=` paths the root's unit files name
/// (from [`environment_files`]), so that those files default to `escape: env`.
pub fn render_with(
    validated: &Validated,
    manifest: &Manifest,
    env_files: &BTreeSet<String>,
) -> Result<Rendered, RenderError> {
    let data = serde_json::Value::Object(validated.values.clone());
    let mut st = FileState {
        secrets: validated.secrets.clone(),
        ..FileState::default()
    };
    // Each template parsed once, however many files use it, and kept only
    // while a file still to render uses it: a compiled template is ~20 times
    // its text, and 1000 of them alive at once were half a run's peak memory
    // (docs/benchmarks.md, twelfth round).
    let mut parsed: BTreeMap<&str, Template> = BTreeMap::new();
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &manifest.files {
        if let Source::Template { name, .. } = &f.source {
            *uses.entry(name.as_str()).or_default() += 1;
        }
    }
    let mut secrets = validated.secrets.clone();

    // write_files first: their unit files may name EnvironmentFile= paths.
    let mut extra: Vec<RenderedFile> = Vec::new();
    // Index of each path in `extra`, and whether its mode was given:
    // thousands of entries must not cost a scan each (16 MiB of write_files
    // took 70x the time of 1 MiB).
    let mut at: std::collections::HashMap<String, (usize, bool)> = Default::default();
    if manifest.write_files {
        let (plain, deferred): (Vec<_>, Vec<_>) =
            validated.write_files.iter().partition(|w| !w.defer);
        for w in plain.into_iter().chain(deferred) {
            let f = write_file(w, &secrets)?;
            fold(&mut extra, &mut at, f, w.permissions);
        }
    }

    // Manifest files: unit files first (they name EnvironmentFile= paths),
    // then the others, kept in manifest order.
    let mut env_files = env_files.clone();
    for f in &extra {
        if is_unit_path(&f.path) {
            env_files.extend(environment_file_paths(&String::from_utf8_lossy(&f.content)));
        }
    }
    let mut out: Vec<Option<RenderedFile>> = vec![None; manifest.files.len()];
    let mut skipped = Vec::new();
    let order: Vec<usize> = {
        let (units, rest): (Vec<usize>, Vec<usize>) = (0..manifest.files.len())
            .partition(|&i| is_unit_path(&normal(&manifest.files[i].path)));
        units.into_iter().chain(rest).collect()
    };
    for i in order {
        let spec = &manifest.files[i];
        let path = normal(&spec.path);
        if let Some(key) = &spec.when {
            if matches!(
                lookup(&validated.values, key),
                None | Some(serde_json::Value::Null)
            ) {
                if let Source::Template { name, .. } = &spec.source {
                    release(&mut uses, &mut parsed, name);
                }
                skipped.push((path, key.clone()));
                continue;
            }
        }
        let origin = Origin::Manifest { index: i };
        let (content, holds_secret) = match &spec.source {
            Source::Template { name, text } => {
                if !parsed.contains_key(name.as_str()) {
                    let t = Template::parse(text).map_err(|e| RenderError::Template {
                        path: path.clone(),
                        template: name.clone(),
                        line: e.pos.line,
                        column: e.pos.column,
                        message: secrets.mask(&format!("invalid template: {}", e.message)),
                    })?;
                    parsed.insert(name, t);
                }
                let escape = spec
                    .escape
                    .unwrap_or_else(|| escape::default_for(&path, &env_files));
                st.escape = Some(escape);
                st.holds_secret = false;
                st.escape_error = None;
                let text = parsed[name.as_str()].render(&data, &mut st);
                release(&mut uses, &mut parsed, name);
                let text = text.map_err(|e| {
                    let message = match st.escape_error.take() {
                        Some(u) => format!(
                            "failed to quote {} for escape {}: {}",
                            unquoted_key(&validated.values, &u),
                            escape::name(escape),
                            u.why
                        ),
                        None => render_error_message(&e.reason),
                    };
                    RenderError::Template {
                        path: path.clone(),
                        template: name.clone(),
                        line: e.pos.map_or(0, |p| p.line),
                        column: e.pos.map_or(0, |p| p.column),
                        message: st.secrets.mask(&message),
                    }
                })?;
                let holds = st.holds_secret || st.secrets.contains_any(text.as_bytes());
                (text.into_bytes(), holds)
            }
            Source::Env(vars) => env_lines(vars, validated, manifest, &origin, &path, &mut st)?,
        };
        if is_unit_path(&path) {
            env_files.extend(environment_file_paths(&String::from_utf8_lossy(&content)));
        }
        out[i] = Some(RenderedFile {
            mode: spec.mode.unwrap_or(if holds_secret {
                Mode(0o600)
            } else {
                Mode(0o644)
            }),
            owner: spec.owner.clone(),
            restart: spec.restart.clone(),
            reload: spec.reload.clone(),
            origin,
            append: false,
            holds_secret,
            path,
            content,
        });
    }
    // A value the `secret` helper marked is secret in every file, not only
    // in those rendered after the template that marked it: files rendered
    // (or decoded) before are looked at again with the final secrets, so
    // that one holding such a value, without a mode of its own, is 0600
    // whatever the order of `files:` (SPEC §6).
    let marked = st.secrets.len() > secrets.len();
    secrets.merge(&st.secrets);
    if marked {
        let manifest_files = out
            .iter_mut()
            .enumerate()
            .filter_map(|(i, f)| f.as_mut().map(|f| (f, manifest.files[i].mode.is_some())));
        let write_files = extra.iter_mut().map(|f| {
            let explicit = at.get(&f.path).is_some_and(|&(_, explicit)| explicit);
            (f, explicit)
        });
        for (f, explicit) in manifest_files.chain(write_files) {
            if !f.holds_secret && secrets.contains_any(&f.content) {
                f.holds_secret = true;
                if !explicit {
                    f.mode = Mode(0o600);
                }
            }
        }
    }

    let mut files: Vec<RenderedFile> = out.into_iter().flatten().collect();
    let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
    for f in files.iter().chain(&extra) {
        if let Some(first) = seen.insert(f.path.clone(), f.origin.clone()) {
            return Err(RenderError::Duplicate {
                path: f.path.clone(),
                first,
                second: f.origin.clone(),
            });
        }
    }
    files.extend(extra);
    Ok(Rendered {
        files,
        skipped,
        enable: manifest.enable.clone(),
        secrets,
    })
}

/// Decompressed `write_files` content stops here (SPEC §1.3's cap).
pub const GUNZIP_CAP: u64 = 64 << 20;

fn render_error_message(r: &Reason) -> String {
    match r {
        Reason::Missing(Some(key)) => format!(
            "value {key} is not set (set it in user-data, give it a default in the \
             manifest's values:, or guard it with {{{{#if {key}}}}})"
        ),
        Reason::UnknownHelper(h) => format!(
            "unknown helper {h}: imprint's helpers are {} and the built-ins {} \
             (docs/templates.md)",
            crate::helpers::HELPERS.join(", "),
            template::BUILTINS
                .iter()
                .filter(|b| !crate::helpers::HELPERS.contains(b))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        r => r.to_string(),
    }
}

/// `path` normalised: `/` + its components, `.` dropped (the manifest and
/// merge have already refused `..`).
fn normal(path: &str) -> String {
    match Root::rel(path) {
        Some(rel) => format!("/{}", rel.display()),
        None => path.to_string(),
    }
}

/// The value at a dotted key of the values tree.
pub fn lookup<'a>(values: &'a Values, dotted: &str) -> Option<&'a serde_json::Value> {
    let mut segs = dotted.split('.');
    let mut cur = values.get(segs.next()?)?;
    for s in segs {
        cur = cur.as_object()?.get(s)?;
    }
    Some(cur)
}

/// The key of a substitution the file's quoting refused: the key it was
/// written as when that is the value (`{{db.motd}}`: "value db.motd"), else
/// every key whose text it is (`{{this}}` in a loop: "value motd.[1]"),
/// else the key as written (through a helper: `{{upper db.motd}}`), else
/// "a value".
fn unquoted_key(values: &Values, u: &crate::helpers::Unquoted) -> String {
    let written = u.key.as_deref();
    if let Some(k) =
        written.filter(|k| lookup(values, k).is_some_and(|v| template::text(v) == u.text))
    {
        return format!("value {k}");
    }
    match (keys_with_text(values, &u.text), written) {
        (found, Some(k)) if found == "a value" => format!("value {k}"),
        (found, _) => found,
    }
}

/// "value db.motd" (every key whose scalar text is `text`); "a value" when
/// none match (the text came out of a helper).
fn keys_with_text(values: &Values, text: &str) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, text: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, text, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}.[{i}]"), v, text, out);
                }
            }
            v => {
                if template::text(v) == text {
                    out.push(prefix.to_string());
                }
            }
        }
    }
    let mut keys = Vec::new();
    for (k, v) in values {
        walk(k, v, text, &mut keys);
    }
    if keys.is_empty() {
        "a value".to_string()
    } else {
        format!("value {}", keys.join(" / "))
    }
}

/// The `env:` shorthand: `VAR="value"` lines, sorted by variable. A value
/// declared in `values:` but unset is left out (the variable stays unset);
/// a key neither declared nor set is an error (a typo in the manifest).
fn env_lines(
    vars: &BTreeMap<String, String>,
    validated: &Validated,
    manifest: &Manifest,
    origin: &Origin,
    path: &str,
    st: &mut FileState,
) -> Result<(Vec<u8>, bool), RenderError> {
    // `env.VAR`, with where the manifest writes the key (looked up only
    // for an error: the manifest is parsed again for it).
    let err = |var: &str, message: String| {
        let at = match origin {
            Origin::Manifest { index } => manifest.env_key_at(*index, var),
            _ => None,
        };
        let at = at
            .map(|at| format!(" ({at} of {})", manifest.path.display()))
            .unwrap_or_default();
        RenderError::File {
            origin: origin.clone(),
            path: path.to_string(),
            message: format!("env.{var}{at}: {message}"),
        }
    };
    st.holds_secret = false;
    let mut out = String::new();
    for (var, key) in vars {
        match lookup(&validated.values, key) {
            None | Some(serde_json::Value::Null) => {
                if !manifest.values.contains_key(key) && lookup(&validated.values, key).is_none() {
                    return Err(err(
                        var,
                        format!(
                            "value {key} is neither declared in the manifest's values: \
                             nor set by user-data; declare it (or fix the key)"
                        ),
                    ));
                }
            }
            Some(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
                return Err(err(
                    var,
                    format!(
                        "value {key} is a {}; env: takes strings, numbers and booleans \
                         (use a template with join or json)",
                        if v.is_array() { "list" } else { "map" }
                    ),
                ))
            }
            Some(v) => {
                // The quoting error's advice is for templates; env: has no
                // helpers, so it says how to get one.
                let q = escape::env(&template::text(v)).map_err(|e| {
                    err(
                        var,
                        format!(
                            "failed to quote value {key} for env: {}; write this file from a template \
                             instead (template:, with {{{{base64 {key}}}}} for this variable), \
                             or keep the value out of an env file",
                            e.reason()
                        ),
                    )
                })?;
                st.derived(v, &q);
                out.push_str(var);
                out.push('=');
                out.push_str(&q);
                out.push('\n');
            }
        }
    }
    let holds = st.holds_secret || st.secrets.contains_any(out.as_bytes());
    Ok((out.into_bytes(), holds))
}

/// Decode a `write_files` entry's content by its `encoding:`, with every
/// spelling cloud-init accepts (`cc_write_files.canonicalize_extraction`:
/// case-insensitive, surrounding blanks ignored). An unknown encoding is an
/// error here (cloud-init warns and writes the text as is).
pub fn decode_content(content: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    let enc = encoding.unwrap_or("").trim().to_lowercase();
    match enc.as_str() {
        "" | "text/plain" => Ok(content.as_bytes().to_vec()),
        "b64" | "base64" => b64(content),
        // YAML cannot hold raw gzip bytes in a string: gzip content arrives as
        // `!!binary`, i.e. base64 text, which PyYAML decodes for cloud-init.
        "gz" | "gzip" | "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => {
            gunzip(&b64(content)?)
        }
        other => Err(format!(
            "unknown encoding {other:?}; use one of b64, base64, gz, gzip, gz+b64, \
             gz+base64, gzip+b64, gzip+base64, text/plain"
        )),
    }
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    ENGINE
        .decode(&compact)
        .map_err(|e| format!("content is not valid base64: {e}"))
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(GUNZIP_CAP + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("content is not valid gzip: {e}"))?;
    if out.len() as u64 > GUNZIP_CAP {
        return Err(format!(
            "decompressed content exceeds {} MiB; write such a file from the image instead",
            GUNZIP_CAP >> 20
        ));
    }
    Ok(out)
}

/// One `write_files` entry as a file (mode not final: see [`fold`]).
fn write_file(w: &WriteFile, secrets: &Secrets) -> Result<RenderedFile, RenderError> {
    let err = |message: String| RenderError::File {
        origin: w.origin.clone(),
        path: w.path.clone(),
        message,
    };
    if !w.path.starts_with('/') || Root::rel(&w.path).is_none() {
        return Err(err(
            "path must be absolute and without '..' (imprint does not guess a directory)".into(),
        ));
    }
    let content = decode_content(&w.content, w.encoding.as_deref()).map_err(err)?;
    Ok(RenderedFile {
        path: normal(&w.path),
        holds_secret: secrets.contains_any(&content),
        content,
        mode: w.permissions.unwrap_or(Mode(0o644)),
        owner: w.owner.clone(),
        restart: Vec::new(),
        reload: Vec::new(),
        origin: w.origin.clone(),
        append: w.append,
    })
}

/// Add a `write_files` file, folding it into an earlier one for the same
/// path the way cloud-init's sequential writes would end: a plain entry
/// replaces the content, an `append` entry adds to it; the last entry's
/// permissions and owner win. Without `permissions`, a file holding a
/// secret is 0600.
fn fold(
    files: &mut Vec<RenderedFile>,
    at: &mut std::collections::HashMap<String, (usize, bool)>,
    f: RenderedFile,
    explicit: Option<Mode>,
) {
    let default = |holds: bool| explicit.unwrap_or(if holds { Mode(0o600) } else { Mode(0o644) });
    if let Some(&mut (i, ref mut given)) = at.get_mut(&f.path) {
        *given = explicit.is_some();
        let e = &mut files[i];
        if f.append {
            e.content.extend_from_slice(&f.content);
            e.holds_secret |= f.holds_secret;
        } else {
            e.content = f.content;
            e.append = false;
            e.holds_secret = f.holds_secret;
        }
        e.mode = default(e.holds_secret);
        e.owner = f.owner;
        e.origin = f.origin;
    } else {
        let mut f = f;
        f.mode = default(f.holds_secret);
        at.insert(f.path.clone(), (files.len(), explicit.is_some()));
        files.push(f);
    }
}

/// The absolute paths named by `EnvironmentFile=` in the `[Service]` (or
/// `[Socket]`, `[Mount]`, `[Swap]`) section of a unit file or drop-in, read as systemd reads it
/// ([`crate::unitfile`]: spaces around `=`, continued lines; a leading `-`
/// allowed; paths with specifiers such as `%i` are skipped: they are only
/// known at run time).
pub fn environment_file_paths(unit_text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    crate::unitfile::for_each_entry(unit_text, |section, k, v| {
        let v = v.trim_start_matches('-').trim();
        // systemd.exec(5)'s sections: where EnvironmentFile= means something.
        if matches!(section, "Service" | "Socket" | "Mount" | "Swap")
            && k == "EnvironmentFile"
            && v.starts_with('/')
            && !v.contains('%')
            && Root::rel(v).is_some()
        {
            paths.push(normal(v));
        }
    });
    paths
}

pub use crate::unitfile::UNIT_DIRS;

/// The `EnvironmentFile=` paths named by the unit files and drop-ins already
/// in the root (the image's own units). Reads the root: call it beside
/// `manifest::load`, then pass the set to [`render_with`]. Unreadable files
/// are skipped (this only chooses a default escape).
///
/// Reads stay inside the root, as apply's writes do: every path is opened
/// with `openat2(RESOLVE_IN_ROOT)` from a handle on the root, so a symlink
/// in the image (`/lib -> /usr/lib`, an alias in /etc/systemd/system
/// pointing at `/lib/systemd/system/x.service`) resolves in the image, the
/// way it will on the booted machine, never on the host running
/// `imprint --root`. Where `openat2` is missing (Linux < 5.6, some
/// sandboxes) cap-std opens them instead, which refuses what would leave
/// the root, absolute symlinks included: such files are then skipped.
pub fn environment_files(root: &Root) -> BTreeSet<String> {
    match root.confined() {
        Some(opener) => scan_units(opener.as_ref()),
        None => BTreeSet::new(),
    }
}

/// Whether the image's units can decide any file's escape: only a template
/// file without `escape:` whose name does not end in `.env` (those are
/// `env` whatever the units say) takes its default from
/// [`environment_files`]. When none does, the pipeline skips that read of
/// the image's 200-odd unit files (0.3-0.9 s at a first boot under
/// emulation, cold cache: docs/benchmarks.md).
pub fn needs_environment_files(manifest: &Manifest) -> bool {
    manifest.files.iter().any(|f| {
        matches!(f.source, Source::Template { .. })
            && f.escape.is_none()
            && escape::default_for(&normal(&f.path), &BTreeSet::new())
                != crate::manifest::Escape::Env
    })
}

/// Read every unit file and drop-in of [`UNIT_DIRS`] through `open`; each
/// directory once (with a merged /usr, /lib/systemd/system is
/// /usr/lib/systemd/system: half the reads of a real image).
fn scan_units(open: &dyn Confined) -> BTreeSet<String> {
    use std::io::Read as _;
    use std::path::Path;
    let mut out = BTreeSet::new();
    let mut buf = Vec::new();
    // Plain reads into one buffer, sized by the fstat already made:
    // `read_to_string` would add an fstat and an lseek per file.
    let mut read = |rel: &Path| {
        // A regular file of at most 1 MiB (a FIFO must not hang the run).
        let Some((mut f, size)) = open.regular(rel).ok().filter(|&(_, size)| size <= 1 << 20)
        else {
            return;
        };
        buf.clear();
        buf.resize(size as usize + 1, 0);
        let mut len = 0;
        loop {
            if len == buf.len() {
                if len > 1 << 20 {
                    return; // grew past the cap while being read
                }
                buf.resize(len * 2, 0);
            }
            match f.read(&mut buf[len..]) {
                Ok(0) => break,
                // fstat's size read: the file is whole (no read for EOF).
                Ok(n) if size > 0 && len + n == size as usize => {
                    len += n;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        if let Ok(text) = std::str::from_utf8(&buf[..len]) {
            out.extend(environment_file_paths(text));
        }
    };
    let mut seen = Vec::new();
    for dir in UNIT_DIRS {
        let rel = Path::new(dir.trim_start_matches('/'));
        let Some((id, entries)) = open.list(rel) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        for name in entries {
            let path = rel.join(&name);
            if name.ends_with(".d") {
                let Some((_, drop)) = open.list(&path) else {
                    continue;
                };
                for conf in drop {
                    if conf.ends_with(".conf") {
                        read(&path.join(conf));
                    }
                }
            } else if crate::manifest::is_unit_name(&name) {
                read(&path);
            }
        }
    }
    out
}

/// Why a file's content is hidden from `imprint plan` and `imprint render`,
/// if it is: it comes from a `write_files` entry and will not be readable by
/// others (its final mode has no `o+r`). Such content may be anything
/// private (a licence, a key) that user-data cannot declare secret, and that
/// output goes to terminals and CI logs. Files rendered from the manifest's
/// templates are not hidden: their secrets are declared, and masked by
/// value.
pub fn hidden_why(f: &RenderedFile) -> Option<String> {
    let write_files = matches!(f.origin, Origin::WriteFiles { .. });
    (write_files && f.mode.0 & 0o004 == 0).then(|| {
        format!(
            "content hidden: write_files entry with mode {}; see docs/templates.md",
            f.mode
        )
    })
}

/// The `write_files` entries (part, index) whose content [`hidden_why`]
/// hides once rendered: each entry whose file, folded as render folds it
/// (the last entry's permissions win; without any, 0600 when it holds a
/// secret), will not be readable by others, and each entry that itself
/// asks for such a mode. For `imprint fetch`, which prints the entries as
/// user-data gives them.
pub fn private_write_files(entries: &[WriteFile], secrets: &Secrets) -> BTreeSet<(usize, usize)> {
    let mut files = Vec::new();
    let mut at = std::collections::HashMap::new();
    let (plain, deferred): (Vec<_>, Vec<_>) = entries.iter().partition(|w| !w.defer);
    for w in plain.into_iter().chain(deferred) {
        if let Ok(f) = write_file(w, secrets) {
            fold(&mut files, &mut at, f, w.permissions);
        }
    }
    let private = |m: Mode| m.0 & 0o004 == 0;
    entries
        .iter()
        .filter(|w| {
            w.permissions.is_some_and(private)
                || at
                    .get(&normal(&w.path))
                    .is_some_and(|&(i, _)| private(files[i].mode))
        })
        .filter_map(|w| match w.origin {
            Origin::WriteFiles { part, index } => Some((part, index)),
            Origin::Manifest { .. } => None,
        })
        .collect()
}

/// Every rendered file as text for `imprint render`: a header line (path,
/// mode, owner, origin) and the content, secrets masked; binary content is
/// shown as its size. The content of a `write_files` entry that others will
/// not be able to read is not shown: one line says why ([`hidden_why`]).
/// Then the files skipped by `if:`.
pub fn display(rendered: &Rendered, secrets: &Secrets) -> String {
    let mut s = String::new();
    for f in &rendered.files {
        let owner = f
            .owner
            .as_ref()
            .map(|o| o.to_string())
            .unwrap_or_else(|| "root:root".into());
        let append = if f.append { ", appended" } else { "" };
        s.push_str(&format!(
            "==> {} (mode {}, owner {owner}, {}{append}) <==\n",
            f.path, f.mode, f.origin
        ));
        if let Some(why) = hidden_why(f) {
            s.push_str(&format!("({why}; {} bytes)\n", f.content.len()));
            continue;
        }
        match std::str::from_utf8(&f.content) {
            Ok(t) if !t.contains('\0') => {
                s.push_str(&secrets.mask(t));
                if !t.is_empty() && !t.ends_with('\n') {
                    s.push_str("\n\\ No newline at end of file\n");
                }
            }
            _ => s.push_str(&format!("(binary, {} bytes)\n", f.content.len())),
        }
    }
    for (path, key) in &rendered.skipped {
        s.push_str(&format!("==> {path} skipped: {key} is not set <==\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(base: &std::path::Path, rel: &str, text: &str) {
        let p = base.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The cap-std fallback (kernels without openat2) stays inside the root
    /// too: what would leave it is skipped, absolute symlinks included.
    #[test]
    fn the_fallback_is_confined() {
        let host = tempfile::tempdir().unwrap();
        write(
            host.path(),
            "systemd/system/host.service",
            "EnvironmentFile=/etc/host-secret\n",
        );
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "usr/lib/systemd/system/app.service",
            "[Service]\nEnvironmentFile=/etc/default/app\n",
        );
        write(
            root.path(),
            "etc/systemd/system/db.service.d/x.conf",
            "[Service]\nEnvironmentFile=-/etc/db/env\n",
        );
        symlink(host.path(), root.path().join("lib")).unwrap();
        symlink(
            host.path().join("systemd/system/host.service"),
            root.path().join("etc/systemd/system/host.service"),
        )
        .unwrap();
        let dir =
            cap_std::fs::Dir::open_ambient_dir(root.path(), cap_std::ambient_authority()).unwrap();
        let got: Vec<String> = scan_units(&crate::root::Beneath(dir)).into_iter().collect();
        assert_eq!(got, vec!["/etc/db/env", "/etc/default/app"]);
        // The main path gives the same here.
        let got: Vec<String> = environment_files(&Root::at(root.path()))
            .into_iter()
            .collect();
        assert_eq!(got, vec!["/etc/db/env", "/etc/default/app"]);
    }
}
