//! The template helpers of SPEC §4, and the per-file state they share with
//! the escape function: [`FileState`] is the [`Host`] of a file's render
//! (src/template.rs).
//!
//! How escaping works without double-escaping: the escape function is the
//! *file's* quoting (`env`, `json`, `shell` or `none`), so a plain
//! `{{value}}`, and any helper that returns a value (`{{upper x}}`,
//! `{{default x "y"}}`, `{{secret x}}`), is quoted for the file. The explicit
//! quoting helpers `{{env x}}`, `{{shell x}}` and `{{json x}}` return
//! [`Out::Quoted`] text, written as it is, never through the escape
//! function. Used as a subexpression (`{{env (join list " ")}}`) they return
//! the quoted string. `{{{x}}}` is raw, as in every Handlebars.
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
use crate::template::{text, Arg, Host, Out, Reason};
use base64::Engine;
use serde_json::Value;

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
    /// The substitution the escape function could not quote (the render
    /// stops there, at its line and column).
    pub escape_error: Option<Unquoted>,
}

/// A substitution the file's quoting refused: why, the text it was given
/// and the key it was written as (both used only to name the key in the
/// message, from the values tree: src/render.rs; the text is never printed).
#[derive(Debug)]
pub struct Unquoted {
    pub why: escape::Unquotable,
    pub text: String,
    pub key: Option<String>,
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

/// The helpers imprint adds to the template language's built-ins (`eq` and
/// `ne` replace the built-in ones: their errors name the key).
pub const HELPERS: &[&str] = &[
    "default", "required", "eq", "ne", "json", "env", "shell", "base64", "lower", "upper", "join",
    "concat", "secret",
];

impl Host for FileState {
    /// `{{x}}`: in a `json` file, the value as JSON (`5`, `true`, `null`,
    /// `"s"`, `["a"]`, `{"k":"v"}`, as `{{json x}}` writes it); elsewhere a
    /// scalar's text quoted for the file, and a list or map an error (it has
    /// no text).
    fn escape(&mut self, v: &Value, key: Option<&str>) -> Result<String, Reason> {
        let esc = self.escape.unwrap_or(Escape::None);
        if esc == Escape::Json {
            let q = v.to_string();
            self.derived(v, &q);
            return Ok(q);
        }
        let t = text_of(v, key, Some(esc))?;
        match escape::quote(esc, &t) {
            Ok(q) => {
                self.derived(&Value::String(t), &q);
                Ok(q)
            }
            Err(why) => {
                let who = key.map_or_else(|| "a value".to_string(), |k| format!("value {k}"));
                let message = format!(
                    "failed to quote {who} for escape {}: {why}",
                    escape::name(esc)
                );
                self.escape_error = Some(Unquoted {
                    why,
                    text: t,
                    key: key.map(str::to_string),
                });
                Err(Reason::NoText(message))
            }
        }
    }

    /// `{{{x}}}`: a scalar's text, unquoted; a list or map has none.
    fn raw(&mut self, v: &Value, key: Option<&str>) -> Result<String, Reason> {
        text_of(v, key, None)
    }

    fn has(&self, name: &str) -> bool {
        HELPERS.contains(&name)
    }

    fn call(&mut self, name: &str, params: &[Arg<'_>]) -> Result<Out, Reason> {
        let value = |v: &Value| Ok(Out::Value(v.clone()));
        match name {
            // The value, or the fallback when the value is missing, null or "".
            "default" => {
                if unset(params.first()) {
                    value(param(name, params, 1, "a fallback")?.value())
                } else {
                    value(params[0].value())
                }
            }
            // The value, or an error naming the key (and the message) when it
            // is missing, null or "".
            "required" => {
                let p = params
                    .first()
                    .ok_or_else(|| other("helper required needs a value as parameter 1"))?;
                if unset(Some(p)) {
                    let msg = params
                        .get(1)
                        .and_then(|m| m.value().as_str())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    return Err(other(&format!(
                        "required value {} is not set{msg}",
                        key_of(p)
                    )));
                }
                value(p.value())
            }
            "eq" | "ne" => {
                let a = param(name, params, 0, "a value")?;
                let b = param(name, params, 1, "a value to compare with")?;
                Ok(Out::Value(Value::Bool(
                    (a.value() == b.value()) == (name == "eq"),
                )))
            }
            "json" | "env" | "shell" | "base64" | "lower" | "upper" => {
                self.transform(name, param(name, params, 0, "a value")?)
            }
            "join" => {
                let list = param(name, params, 0, "a list")?;
                let sep = match params.get(1) {
                    None => ",".to_string(),
                    Some(_) => text(param(name, params, 1, "a separator")?.value()),
                };
                let items = list.value().as_array().ok_or_else(|| {
                    other(&format!("helper join: {} is not a list", key_of(list)))
                })?;
                let mut texts = Vec::with_capacity(items.len());
                for v in items {
                    match v {
                        Value::Array(_) | Value::Object(_) => {
                            return Err(other(&format!(
                                "helper join: {} holds a list or map; join takes scalars",
                                key_of(list)
                            )))
                        }
                        v => texts.push(text(v)),
                    }
                }
                let out = texts.join(&sep);
                self.derived(list.value(), &out);
                Ok(Out::Value(Value::String(out)))
            }
            // The texts of its scalar parameters, one string (so that a
            // composite value is quoted once, as a whole, in an env file).
            "concat" => {
                let mut out = String::new();
                let mut inputs = Vec::new();
                for i in 0..params.len() {
                    let p = param(name, params, i, "a value")?;
                    out.push_str(&scalar_text(name, p)?);
                    inputs.push(p.value().clone());
                }
                self.derived(&Value::Array(inputs), &out);
                Ok(Out::Value(Value::String(out)))
            }
            // The value, marked secret: masked in plans, diffs and logs, and
            // the file is written 0600 unless its mode says otherwise.
            "secret" => {
                let p = param(name, params, 0, "a value")?;
                self.secrets.add_value(p.value());
                self.holds_secret = true;
                value(p.value())
            }
            _ => Err(Reason::UnknownHelper(name.to_string())),
        }
    }
}

impl FileState {
    /// One-argument helpers: quoting (`json`, `env`, `shell`: already
    /// quoted, written as they are) and transforms (`base64`, `lower`,
    /// `upper`: a value, quoted for the file like any other).
    fn transform(&mut self, name: &str, p: &Arg<'_>) -> Result<Out, Reason> {
        let out = match name {
            "json" => {
                serde_json::to_string(p.value()).map_err(|e| other(&format!("helper json: {e}")))?
            }
            "env" => escape::env(&scalar_text(name, p)?)
                .map_err(|e| other(&format!("failed to quote {} for env: {e}", key_of(p))))?,
            "shell" => escape::shell(&scalar_text(name, p)?)
                .map_err(|e| other(&format!("failed to quote {} for shell: {e}", key_of(p))))?,
            "base64" => base64::engine::general_purpose::STANDARD.encode(scalar_text(name, p)?),
            "lower" => scalar_text(name, p)?.to_lowercase(),
            _ => scalar_text(name, p)?.to_uppercase(),
        };
        self.derived(p.value(), &out);
        Ok(if matches!(name, "json" | "env" | "shell") {
            Out::Quoted(out)
        } else {
            Out::Value(Value::String(out))
        })
    }
}

fn other(msg: &str) -> Reason {
    Reason::Helper(msg.to_string())
}

/// Parameter `i`, present (a missing value is a strict-mode error naming its
/// key).
fn param<'p, 'a>(
    helper: &str,
    params: &'p [Arg<'a>],
    i: usize,
    what: &str,
) -> Result<&'p Arg<'a>, Reason> {
    let p = params.get(i).ok_or_else(|| {
        other(&format!(
            "helper {helper} needs {what} as parameter {}",
            i + 1
        ))
    })?;
    if p.missing() {
        return Err(Reason::Missing(p.path.map(str::to_string)));
    }
    Ok(p)
}

/// Whether a parameter counts as unset for `default`/`required`: missing,
/// null or the empty string.
fn unset(p: Option<&Arg<'_>>) -> bool {
    match p {
        None => true,
        Some(p) => p.missing() || matches!(p.value(), Value::Null) || p.value() == "",
    }
}

fn key_of(p: &Arg<'_>) -> String {
    p.path.unwrap_or("the value").to_string()
}

/// The text of a scalar (`true`, `5432`, `abc`; null is empty). Lists and
/// maps have no text: use `json` or `join`.
fn scalar_text(helper: &str, p: &Arg<'_>) -> Result<String, Reason> {
    match p.value() {
        Value::Array(_) | Value::Object(_) => Err(other(&format!(
            "helper {helper}: {} is a {}, not a string, number or boolean (use json or join)",
            key_of(p),
            if p.value().is_array() { "list" } else { "map" }
        ))),
        v => Ok(text(v)),
    }
}

/// The text of a scalar substituted into a file quoted by `esc` (`None`:
/// raw, `{{{x}}}`). A list or map has no text: an error naming the key and
/// what to write instead.
fn text_of(v: &Value, key: Option<&str>, esc: Option<Escape>) -> Result<String, Reason> {
    let kind = match v {
        Value::Array(_) => "list",
        Value::Object(_) => "map",
        v => return Ok(text(v)),
    };
    let (who, k) = match key {
        Some(k) => (format!("value {k}"), k),
        None => ("the value".to_string(), "x"),
    };
    let (file, as_json) = match esc {
        Some(Escape::Env) => ("an env file".to_string(), format!("{{{{env (json {k})}}}}")),
        Some(Escape::Shell) => (
            "a shell file".to_string(),
            format!("{{{{shell (json {k})}}}}"),
        ),
        Some(e) => (
            format!("a file with escape: {}", escape::name(e)),
            format!("{{{{json {k}}}}}"),
        ),
        None => (
            "a raw {{{ }}} substitution".to_string(),
            format!("{{{{json {k}}}}}"),
        ),
    };
    let instead = if kind == "list" {
        let each = if esc == Some(Escape::Shell) {
            format!(", one word each ({{{{#each {k}}}}} {{{{this}}}}{{{{/each}}}})")
        } else {
            String::new()
        };
        format!(
            "pick one element ({{{{{k}.[0]}}}}), join them ({{{{join {k} \" \"}}}}){each}, \
             or write it as JSON ({as_json})"
        )
    } else {
        format!("pick one of its keys ({{{{{k}.NAME}}}}), or write it as JSON ({as_json})")
    };
    Err(Reason::NoText(format!(
        "{who} is a {kind}, which has no text to write in {file}: {instead}"
    )))
}
