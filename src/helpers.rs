//! The Handlebars helpers of SPEC §4, and the per-file state they share
//! with the escape function.
//!
//! How escaping works without double-escaping: the registry's escape
//! function is the *file's* quoting (`env`, `json`, `shell` or `none`), so a
//! plain `{{value}}`, and any helper that returns a value (`{{upper x}}`,
//! `{{default x "y"}}`, `{{secret x}}`), is quoted for the file. The explicit
//! quoting helpers `{{env x}}`, `{{shell x}}` and `{{json x}}` write their
//! output themselves, already quoted, so the escape function never sees it
//! (Handlebars only escapes what a helper *returns*). Used as a
//! subexpression (`{{env (join list " ")}}`) they return the quoted string.
//! `{{{x}}}` is raw, as in every Handlebars.
//!
//! A missing value is a strict-mode error naming its key, also inside
//! helpers (`{{upper nosuch}}`, `(eq nosuch "x")`), so that the message says
//! which key. Only `default`, `required` and the block helpers `if`/`unless`
//! accept a missing value.
//!
//! Secrets: every helper that derives text from a secret value (quoting,
//! `base64`, `upper`, ...) records the derived text as a secret too, so the
//! diff and the messages mask it; and marks the file as holding a secret.

use crate::escape;
use crate::manifest::Escape;
use crate::secret::Secrets;
use base64::Engine;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, PathAndJson,
    RenderContext, RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};

/// State of the file being rendered, shared by the helpers and the escape
/// function (reset for every file).
#[derive(Debug, Default)]
pub struct FileState {
    /// The file's quoting for `{{value}}` substitutions.
    pub escape: Option<Escape>,
    /// Every secret string known so far (declared, key-named, marked, derived).
    pub secrets: Secrets,
    /// Whether the file's content holds a secret value.
    pub holds_secret: bool,
    /// The first substitution the escape function could not quote, and the
    /// raw text it was given (used only to find the key; never printed).
    pub escape_error: Option<(escape::Unquotable, String)>,
}

impl FileState {
    /// `output` was derived from `input`: if `input` holds a secret, so does
    /// `output`, and so does the file.
    pub fn derived(&mut self, input: &Value, output: &str) {
        if value_has_secret(&self.secrets, input) {
            self.holds_secret = true;
            self.secrets.add(output);
        }
    }
}

fn value_has_secret(secrets: &Secrets, v: &Value) -> bool {
    match v {
        Value::String(s) => secrets.contains_any(s.as_bytes()),
        Value::Number(n) => secrets.contains_any(n.to_string().as_bytes()),
        Value::Array(a) => a.iter().any(|x| value_has_secret(secrets, x)),
        Value::Object(o) => o.values().any(|x| value_has_secret(secrets, x)),
        Value::Bool(_) | Value::Null => false,
    }
}

/// The shared state handle.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<FileState>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, FileState> {
        // A panic in a helper poisons nothing we cannot reuse.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registry in strict mode with every helper and the file's escape
/// function wired to `shared`.
pub fn registry(shared: &Shared) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    let s = shared.clone();
    hb.register_escape_fn(move |text: &str| {
        let mut st = s.lock();
        let esc = st.escape.unwrap_or(Escape::None);
        match escape::quote(esc, text) {
            Ok(q) => {
                st.derived(&Value::String(text.to_string()), &q);
                q
            }
            Err(e) => {
                if st.escape_error.is_none() {
                    st.escape_error = Some((e, text.to_string()));
                }
                String::new()
            }
        }
    });
    hb.register_helper("default", Box::new(DefaultHelper));
    hb.register_helper("required", Box::new(RequiredHelper));
    hb.register_helper("eq", Box::new(CompareHelper { equal: true }));
    hb.register_helper("ne", Box::new(CompareHelper { equal: false }));
    for (name, kind) in [
        ("json", Kind::Json),
        ("env", Kind::Env),
        ("shell", Kind::Shell),
        ("base64", Kind::Base64),
        ("lower", Kind::Lower),
        ("upper", Kind::Upper),
    ] {
        hb.register_helper(
            name,
            Box::new(Transform {
                kind,
                shared: shared.clone(),
            }),
        );
    }
    hb.register_helper(
        "join",
        Box::new(Join {
            shared: shared.clone(),
        }),
    );
    hb.register_helper(
        "concat",
        Box::new(Concat {
            shared: shared.clone(),
        }),
    );
    hb.register_helper(
        "secret",
        Box::new(Secret {
            shared: shared.clone(),
        }),
    );
    hb
}

fn other(msg: String) -> RenderError {
    RenderErrorReason::Other(msg).into()
}

/// Parameter `i` of helper `h`, present (a missing value is a strict-mode
/// error naming its key).
fn param<'a, 'rc>(
    h: &'a Helper<'rc>,
    i: usize,
    what: &str,
) -> Result<&'a PathAndJson<'rc>, RenderError> {
    let p = h.param(i).ok_or_else(|| {
        other(format!(
            "helper {} needs {what} as parameter {}",
            h.name(),
            i + 1
        ))
    })?;
    if p.is_value_missing() {
        return Err(RenderError::strict_error(p.relative_path()));
    }
    Ok(p)
}

/// Whether a parameter counts as unset for `default`/`required`: missing,
/// null or the empty string.
fn unset(p: Option<&PathAndJson<'_>>) -> bool {
    match p {
        None => true,
        Some(p) => {
            p.is_value_missing()
                || matches!(p.value(), Value::Null)
                || p.value() == &Value::String(String::new())
        }
    }
}

fn key_of(p: &PathAndJson<'_>) -> String {
    p.relative_path()
        .cloned()
        .unwrap_or_else(|| "the value".to_string())
}

/// The text of a scalar (`true`, `5432`, `abc`; null is empty). Lists and
/// maps have no text: use `json` or `join`.
fn scalar_text(helper: &str, p: &PathAndJson<'_>) -> Result<String, RenderError> {
    match p.value() {
        Value::Array(_) | Value::Object(_) => Err(other(format!(
            "helper {helper}: {} is a {}, not a string, number or boolean (use json or join)",
            key_of(p),
            if p.value().is_array() { "list" } else { "map" }
        ))),
        v => Ok(v.render()),
    }
}

/// `{{default value fallback}}`: the value, or the fallback when the value is
/// missing, null or "".
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if unset(h.param(0)) {
            let fb = param(h, 1, "a fallback")?;
            Ok(ScopedJson::Derived(fb.value().clone()))
        } else {
            Ok(ScopedJson::Derived(
                h.param(0).expect("set").value().clone(),
            ))
        }
    }
}

/// `{{required value "message"}}`: the value, or an error naming the key
/// (and the message) when it is missing, null or "".
struct RequiredHelper;

impl HelperDef for RequiredHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let p = h
            .param(0)
            .ok_or_else(|| other("helper required needs a value as parameter 1".into()))?;
        if unset(Some(p)) {
            let msg = h
                .param(1)
                .and_then(|m| m.value().as_str())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(other(format!(
                "required value {} is not set{msg}",
                key_of(p)
            )));
        }
        Ok(ScopedJson::Derived(p.value().clone()))
    }
}

/// `eq`/`ne` with strict-mode errors that name the key (the built-in ones
/// only name their parameter).
struct CompareHelper {
    equal: bool,
}

impl HelperDef for CompareHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = param(h, 0, "a value")?;
        let b = param(h, 1, "a value to compare with")?;
        let same = a.value() == b.value();
        Ok(ScopedJson::Derived(Value::Bool(same == self.equal)))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Env,
    Shell,
    Base64,
    Lower,
    Upper,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Env => "env",
            Kind::Shell => "shell",
            Kind::Base64 => "base64",
            Kind::Lower => "lower",
            Kind::Upper => "upper",
        }
    }
    /// Whether the output is already quoted for its syntax (written raw).
    fn quoting(self) -> bool {
        matches!(self, Kind::Json | Kind::Env | Kind::Shell)
    }
}

/// One-argument helpers: quoting (`json`, `env`, `shell`) and transforms
/// (`base64`, `lower`, `upper`).
struct Transform {
    kind: Kind,
    shared: Shared,
}

impl Transform {
    fn apply(&self, h: &Helper<'_>) -> Result<String, RenderError> {
        let p = param(h, 0, "a value")?;
        let name = self.kind.name();
        let out = match self.kind {
            Kind::Json => {
                serde_json::to_string(p.value()).map_err(|e| other(format!("helper json: {e}")))?
            }
            Kind::Env => escape::env(&scalar_text(name, p)?)
                .map_err(|e| other(format!("failed to quote {} for env: {e}", key_of(p))))?,
            Kind::Shell => escape::shell(&scalar_text(name, p)?)
                .map_err(|e| other(format!("failed to quote {} for shell: {e}", key_of(p))))?,
            Kind::Base64 => base64::engine::general_purpose::STANDARD.encode(scalar_text(name, p)?),
            Kind::Lower => scalar_text(name, p)?.to_lowercase(),
            Kind::Upper => scalar_text(name, p)?.to_uppercase(),
        };
        self.shared.lock().derived(p.value(), &out);
        Ok(out)
    }
}

impl HelperDef for Transform {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(ScopedJson::Derived(Value::String(self.apply(h)?)))
    }

    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        if self.kind.quoting() {
            // Already quoted: written as is, never through the escape function.
            out.write(&self.apply(h)?)?;
            Ok(())
        } else {
            let v = self.call_inner(h, r, ctx, rc)?;
            let text = v.render();
            let text = if rc.is_disable_escape() {
                text
            } else {
                r.get_escape_fn()(&text)
            };
            out.write(&text)?;
            Ok(())
        }
    }
}

/// `{{join list ", "}}`: the list's items (scalars) joined by the separator
/// (default ",").
struct Join {
    shared: Shared,
}

impl HelperDef for Join {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let list = param(h, 0, "a list")?;
        let sep = match h.param(1) {
            None => ",".to_string(),
            Some(_) => param(h, 1, "a separator")?.value().render(),
        };
        let items = list
            .value()
            .as_array()
            .ok_or_else(|| other(format!("helper join: {} is not a list", key_of(list))))?;
        let mut texts = Vec::with_capacity(items.len());
        for v in items {
            match v {
                Value::Array(_) | Value::Object(_) => {
                    return Err(other(format!(
                        "helper join: {} holds a list or map; join takes scalars",
                        key_of(list)
                    )))
                }
                v => texts.push(v.render()),
            }
        }
        let out = texts.join(&sep);
        self.shared.lock().derived(list.value(), &out);
        Ok(ScopedJson::Derived(Value::String(out)))
    }
}

/// `{{concat a "-" b}}`: the texts of its scalar parameters, one string (so
/// that a composite value is quoted once, as a whole, in an env file).
struct Concat {
    shared: Shared,
}

impl HelperDef for Concat {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut out = String::new();
        let mut inputs = Vec::new();
        for i in 0..h.params().len() {
            let p = param(h, i, "a value")?;
            out.push_str(&scalar_text("concat", p)?);
            inputs.push(p.value().clone());
        }
        self.shared.lock().derived(&Value::Array(inputs), &out);
        Ok(ScopedJson::Derived(Value::String(out)))
    }
}

/// `{{secret value}}`: the value, marked secret: masked in plans, diffs and
/// logs, and the file is written 0600 unless its mode says otherwise.
struct Secret {
    shared: Shared,
}

impl HelperDef for Secret {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let p = param(h, 0, "a value")?;
        let mut st = self.shared.lock();
        st.secrets.add_value(p.value());
        st.holds_secret = true;
        Ok(ScopedJson::Derived(p.value().clone()))
    }
}
