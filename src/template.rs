//! The template language of stage 6: Handlebars, as docs/templates.md
//! documents it, parsed and rendered the way handlebars-rust 6.4 does in
//! strict mode (same output, same whitespace control and standalone-line
//! rules, same errors at the same line and column).
//! `tests/template_oracle.rs` renders generated templates with both and
//! compares them.
//!
//! Why not the handlebars crate itself: it was the largest cost of a run
//! that was left (its pest parser compiled every template: 59% of the
//! instructions of a 1000-file run, 60-130 ms of a first boot under
//! emulation) and 112 KB of a binary with 16 KiB of its size budget left
//! (docs/benchmarks.md, fifth round). This is the part of it imprint uses.
//!
//! Not supported, each refused with a clear error when the template is
//! parsed: partials (`{{> x}}`), decorators (`{{* x}}`), raw blocks
//! (`{{{{raw}}}}`; write `\{{` for literal braces).
//!
//! Helpers: the built-ins (`if`, `unless`, `each`, `with`, `lookup`, `eq`,
//! `ne`, `gt`, `gte`, `lt`, `lte`, `and`, `or`, `not`, `len`, `log`, `raw`)
//! are here; the [`Host`] adds its own (it is asked first, so it can also
//! replace a built-in) and quotes every value substitution.

use serde_json::Value;
use std::fmt;

/// A 1-based line and column (in characters) in a template's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A template that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A value is not set (strict mode); the key when it is known.
    Missing(Option<String>),
    /// No helper of that name.
    UnknownHelper(String),
    /// Helper `.0` needs a parameter at index `.1`.
    NoParam(&'static str, usize),
    /// A path steps into a list with something that is not an index.
    BadIndex(String),
    /// A host helper refused its input.
    Helper(String),
    /// The host cannot write a value into the file: a list or map where
    /// the file's syntax needs text, or text its quoting cannot carry (a
    /// newline in an env file).
    NoText(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing(Some(k)) => write!(f, "value {k} is not set"),
            Reason::Missing(None) => f.write_str("a value is not set"),
            Reason::UnknownHelper(h) => write!(f, "unknown helper {h}"),
            Reason::NoParam(h, i) => write!(f, "helper {h} needs a parameter {}", i + 1),
            Reason::BadIndex(s) => write!(f, "{s} is not a list index (lists take 0, 1, ...)"),
            Reason::Helper(m) | Reason::NoText(m) => f.write_str(m),
        }
    }
}

/// A render that failed, and where (the innermost tag that failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub pos: Option<Pos>,
    pub reason: Reason,
}

impl From<Reason> for RenderError {
    fn from(reason: Reason) -> RenderError {
        RenderError { pos: None, reason }
    }
}

/// What a host helper returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A value: written through [`Host::escape`] (unless `{{{ }}}`).
    Value(Value),
    /// Text already quoted for its syntax: written as it is.
    Quoted(String),
}

/// A helper's parameter: the path it was written as (`None` for literals
/// and subexpressions) and its value (`None`: not set).
#[derive(Debug, Clone)]
pub struct Arg<'a> {
    pub path: Option<&'a str>,
    val: Val<'a>,
}

impl Arg<'_> {
    /// The value, `null` when it is not set.
    pub fn value(&self) -> &Value {
        self.val.get()
    }
    /// Whether the value is not set.
    pub fn missing(&self) -> bool {
        matches!(self.val, Val::Missing)
    }
}

/// What rendering needs from its caller.
pub trait Host {
    /// Write a value substitution (`{{x}}`, or the value a helper gives)
    /// quoted for the file. `key` names the value for error messages: the
    /// path it was written as, or the first parameter's path of the helper
    /// that gave it. A value the file cannot hold is an error, not a guess.
    fn escape(&mut self, value: &Value, key: Option<&str>) -> Result<String, Reason>;
    /// Write a raw substitution (`{{{x}}}`): the value's text, unquoted.
    /// By default [`text`], as handlebars-rust writes it.
    fn raw(&mut self, value: &Value, key: Option<&str>) -> Result<String, Reason> {
        let _ = key;
        Ok(text(value))
    }
    /// Whether `name` is one of the host's helpers.
    fn has(&self, name: &str) -> bool;
    /// Call the host's helper `name`.
    fn call(&mut self, name: &str, params: &[Arg<'_>]) -> Result<Out, Reason>;
}

// ------------------------------------------------------------------ the tree

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    /// A comment renders nothing, but is there: `~` and standalone lines
    /// trim the text before a tag only when that text is the last node.
    Comment,
    Expr {
        exp: Exp,
        raw: bool,
        pos: Pos,
    },
    Block(Box<Block>),
}

#[derive(Debug, Clone)]
struct Block {
    exp: Exp,
    /// `as |a b|`: the names bound (0, 1 or 2).
    bind: Vec<String>,
    body: Vec<Node>,
    inverse: Option<Vec<Node>>,
    pos: Pos,
}

#[derive(Debug, Clone)]
struct Exp {
    name: Callee,
    params: Vec<Param>,
    /// `key=value`, the last of a key winning.
    hash: Vec<(String, Param)>,
}

impl Exp {
    /// A lone path or subexpression, without parameters.
    fn lone(name: Callee) -> Exp {
        Exp {
            name,
            params: Vec::new(),
            hash: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
enum Callee {
    /// A helper name followed by parameters (or a block's name).
    Helper(String),
    /// A lone path: a helper of that name, else a value.
    Path(Path),
    /// A lone subexpression.
    Sub(Box<Exp>),
}

#[derive(Debug, Clone)]
enum Param {
    Path(Path),
    Lit(Value),
    Sub(Box<Exp>),
}

#[derive(Debug, Clone)]
struct Path {
    raw: String,
    /// `@name` (`@../name`: level 1): a block's local variable.
    local: Option<(usize, String)>,
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Name(String),
    Root,
    Up,
    Local,
}

// ------------------------------------------------------------------- parsing

fn is_sym(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':') || c as u32 >= 0x80
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// One tag or run of text, with its byte span.
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// `{{~`, `~}}`.
    trim_before: bool,
    trim_after: bool,
}

enum Kind {
    Text,
    Comment,
    Expr(Exp, bool),
    Open(Exp, Vec<String>),
    Else(Option<Line>),
    Close(String),
}

struct Lexer<'s> {
    s: &'s str,
    i: usize,
}

type Lex<T> = Result<Option<T>, String>;
/// Parameters and `key=value` pairs.
type Args = (Vec<Param>, Vec<(String, Param)>);
/// A block's line: its call and the names of `as |a b|`.
type Line = (Exp, Vec<String>);

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn eat(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn ws(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start_matches(is_ws).len();
    }
    fn syms(&mut self) -> Option<&'s str> {
        let r = self.rest();
        let n = r.len() - r.trim_start_matches(is_sym).len();
        self.i += n;
        (n > 0).then(|| &r[..n])
    }
    /// A keyword (`as`, `else`) that ends there.
    fn at_keyword(&self) -> bool {
        ["as", "else"].iter().any(|k| {
            self.rest()
                .strip_prefix(k)
                .is_some_and(|r| !r.starts_with(is_sym))
        })
    }

    /// `identifier (hash | param)+` when `min` is 1, `*` when 0.
    fn call_tail(&mut self, min: usize) -> Lex<Args> {
        let mut params = Vec::new();
        let mut hash: Vec<(String, Param)> = Vec::new();
        loop {
            let save = self.i;
            self.ws();
            if let Some((k, v)) = self.hash()? {
                hash.retain(|(x, _)| *x != k);
                hash.push((k, v));
            } else if let Some(p) = self.param()? {
                params.push(p);
            } else {
                self.i = save;
                break;
            }
        }
        Ok((params.len() + hash.len() >= min).then_some((params, hash)))
    }

    fn hash(&mut self) -> Lex<(String, Param)> {
        let save = self.i;
        if let Some(k) = self.syms() {
            self.ws();
            if self.eat("=") {
                self.ws();
                if let Some(v) = self.param()? {
                    return Ok(Some((k.to_string(), v)));
                }
            }
        }
        self.i = save;
        Ok(None)
    }

    fn param(&mut self) -> Lex<Param> {
        if self.at_keyword() {
            return Ok(None);
        }
        if let Some(v) = self.literal()? {
            return Ok(Some(Param::Lit(v)));
        }
        if let Some(p) = self.path() {
            return Ok(Some(Param::Path(p)));
        }
        Ok(self.sub()?.map(|e| Param::Sub(Box::new(e))))
    }

    /// `( identifier (hash|param)+ | path )`.
    fn sub(&mut self) -> Lex<Exp> {
        let save = self.i;
        if !self.eat("(") {
            return Ok(None);
        }
        self.ws();
        let exp = match self.helper_call(1)? {
            Some(e) => Some(e),
            None => self.path().map(|p| Exp::lone(Callee::Path(p))),
        };
        self.ws();
        match exp {
            Some(e) if self.eat(")") => Ok(Some(e)),
            _ => {
                self.i = save;
                Ok(None)
            }
        }
    }

    fn helper_call(&mut self, min: usize) -> Lex<Exp> {
        let save = self.i;
        if let Some(name) = self.syms() {
            if let Some((params, hash)) = self.call_tail(min)? {
                return Ok(Some(Exp {
                    name: Callee::Helper(name.to_string()),
                    params,
                    hash,
                }));
            }
        }
        self.i = save;
        Ok(None)
    }

    /// An expression's body: `identifier (hash|param)+ | sub | path`.
    fn body(&mut self) -> Lex<Exp> {
        if let Some(e) = self.helper_call(1)? {
            return Ok(Some(e));
        }
        if let Some(e) = self.sub()? {
            return Ok(Some(Exp::lone(Callee::Sub(Box::new(e)))));
        }
        Ok(self.path().map(|p| Exp::lone(Callee::Path(p))))
    }

    /// A block's line: `identifier (hash|param)* (as |a b|)?`.
    fn block_line(&mut self) -> Lex<Line> {
        let Some(exp) = self.helper_call(0)? else {
            return Ok(None);
        };
        let save = self.i;
        self.ws();
        let mut bind = Vec::new();
        if self.eat("as") {
            self.ws();
            if self.eat("|") {
                self.ws();
                while bind.len() < 2 {
                    match self.syms() {
                        Some(n) => bind.push(n.to_string()),
                        None => break,
                    }
                    self.ws();
                }
                if !bind.is_empty() && self.eat("|") {
                    return Ok(Some((exp, bind)));
                }
            }
        }
        self.i = save;
        Ok(Some((exp, Vec::new())))
    }

    fn path(&mut self) -> Option<Path> {
        let start = self.i;
        let mut segs = Vec::new();
        let sep = |l: &mut Self| l.eat("/") || l.eat(".");
        let save = self.i;
        if !(self.eat("this") && sep(self)) {
            self.i = save;
            self.eat("./");
        }
        let save = self.i;
        if self.eat("@root") && sep(self) {
            segs.push(Seg::Root);
        } else {
            self.i = save;
        }
        if self.eat("@") {
            segs.push(Seg::Local);
        }
        loop {
            let save = self.i;
            if self.eat("..") && sep(self) {
                segs.push(Seg::Up);
            } else {
                self.i = save;
                break;
            }
        }
        let Some(first) = self.path_item() else {
            self.i = start;
            return None;
        };
        segs.extend(first);
        loop {
            let save = self.i;
            match sep(self).then(|| self.path_item()).flatten() {
                Some(item) => segs.extend(item),
                None => {
                    self.i = save;
                    break;
                }
            }
        }
        let local = match segs.first() {
            Some(Seg::Local) => {
                let level = segs[1..].iter().take_while(|s| **s == Seg::Up).count();
                match segs.get(1 + level) {
                    Some(Seg::Name(n)) => Some((level, n.clone())),
                    _ => None,
                }
            }
            _ => None,
        };
        Some(Path {
            raw: self.s[start..self.i].to_string(),
            local,
            segs,
        })
    }

    /// `name` or `[any name]`; `this` names nothing (`Some(None)`).
    fn path_item(&mut self) -> Option<Option<Seg>> {
        let name = if self.eat("[") {
            let r = self.rest();
            let n = r.find(']')?;
            self.i += n + 1;
            &r[..n]
        } else {
            self.syms()?
        };
        Some((name != "this").then(|| Seg::Name(name.to_string())))
    }

    fn literal(&mut self) -> Lex<Value> {
        let start = self.i;
        let ok = self.string_lit().is_some()
            || self.array_lit()
            || self.object_lit()
            || self.number_lit()
            || self.word_lit("null")
            || self.word_lit("true")
            || self.word_lit("false");
        if !ok {
            self.i = start;
            return Ok(None);
        }
        let text = &self.s[start..self.i];
        let json = match text.strip_prefix('\'') {
            Some(inner) => format!(
                "\"{}\"",
                inner[..inner.len() - 1]
                    .replace("\\'", "'")
                    .replace('"', "\\\"")
            ),
            None => text.to_string(),
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|_| format!("invalid literal {text}"))
    }

    fn word_lit(&mut self, w: &str) -> bool {
        let save = self.i;
        if self.eat(w) && !self.rest().starts_with(is_sym) {
            return true;
        }
        self.i = save;
        false
    }

    /// A JSON-style string in `"` or `'`; `Some(())` when one was read.
    fn string_lit(&mut self) -> Option<()> {
        let q = match self.peek()? {
            c @ ('"' | '\'') => c,
            _ => return None,
        };
        let save = self.i;
        self.i += 1;
        loop {
            let Some(c) = self.peek() else {
                self.i = save;
                return None;
            };
            self.i += c.len_utf8();
            if c == q {
                return Some(());
            }
            if c == '\\' {
                let Some(e) = self.peek() else {
                    self.i = save;
                    return None;
                };
                let ok = e == q
                    || matches!(e, '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't')
                    || (e == 'u' && {
                        let r = &self.rest()[1..];
                        r.len() >= 4 && r.as_bytes()[..4].iter().all(u8::is_ascii_hexdigit)
                    });
                if !ok {
                    self.i = save;
                    return None;
                }
                self.i += if e == 'u' { 5 } else { 1 };
            }
        }
    }

    fn array_lit(&mut self) -> bool {
        let save = self.i;
        if !self.eat("[") {
            return false;
        }
        self.ws();
        if self.literal_shape() {
            self.ws();
        }
        loop {
            let s = self.i;
            if self.eat(",") {
                self.ws();
                if self.literal_shape() {
                    self.ws();
                    continue;
                }
            }
            self.i = s;
            break;
        }
        if self.eat("]") {
            return true;
        }
        self.i = save;
        false
    }

    /// `{ ("k": literal)? (, "k": literal)* }`, as handlebars-rust's grammar
    /// has it (serde_json then refuses what JSON does not allow).
    fn object_lit(&mut self) -> bool {
        let save = self.i;
        if !self.eat("{") {
            return false;
        }
        let pair = |l: &mut Self| {
            l.ws();
            l.string_lit().is_some()
                && {
                    l.ws();
                    l.eat(":")
                }
                && {
                    l.ws();
                    l.literal_shape()
                }
        };
        let s = self.i;
        if !pair(self) {
            self.i = s;
        }
        loop {
            let s = self.i;
            self.ws();
            if !(self.eat(",") && pair(self)) {
                self.i = s;
                break;
            }
        }
        self.ws();
        if self.eat("}") {
            return true;
        }
        self.i = save;
        false
    }

    /// A literal's extent, without its value.
    fn literal_shape(&mut self) -> bool {
        self.string_lit().is_some()
            || self.array_lit()
            || self.object_lit()
            || self.number_lit()
            || self.word_lit("null")
            || self.word_lit("true")
            || self.word_lit("false")
    }

    fn number_lit(&mut self) -> bool {
        let save = self.i;
        let digits = |l: &mut Self| {
            let r = l.rest();
            let n = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            l.i += n;
            n
        };
        self.eat("-");
        if digits(self) == 0 {
            self.i = save;
            return false;
        }
        self.eat(".");
        digits(self);
        let e = self.i;
        if !(self.eat("E") && {
            self.eat("-");
            digits(self) > 0
        }) {
            self.i = e;
        }
        if self.rest().starts_with(is_sym) {
            self.i = save;
            return false;
        }
        true
    }

    /// The rest of a tag: `~`? `}}`. Returns whether `~` was there.
    fn close(&mut self, braces: &str) -> Option<bool> {
        self.ws();
        let tilde = self.eat("~");
        self.ws();
        self.eat(braces).then_some(tilde)
    }

    /// The tag at `{{` (the caller checked), as a token.
    fn tag(&mut self) -> Result<Tok, String> {
        let start = self.i;
        let r = self.rest();
        let tok = |kind, end, trim_before, trim_after| Tok {
            kind,
            start,
            end,
            trim_before,
            trim_after,
        };
        if r.starts_with("{{{{") {
            return Err(
                "raw blocks ({{{{raw}}}}) are not supported: write \\{{ for literal braces".into(),
            );
        }
        if let Some(after) = r.strip_prefix("{{!") {
            let long = after.trim_start_matches(is_ws);
            if let Some(body) = long.strip_prefix("--") {
                if let Some(n) = body.find("--}}") {
                    let end = start + (r.len() - long.len()) + 2 + n + 4;
                    self.i = end;
                    return Ok(tok(Kind::Comment, end, false, false));
                }
            }
            let n = after
                .find("}}")
                .ok_or_else(|| "comment {{! is not closed by }}".to_string())?;
            self.i = start + 3 + n + 2;
            return Ok(tok(Kind::Comment, self.i, false, false));
        }
        // {{{ x }}}: the legacy triple-stash.
        if r.starts_with("{{{") {
            self.i += 3;
            self.ws();
            let tb = self.eat("~");
            self.ws();
            if let Some(exp) = self.body()? {
                if let Some(ta) = self.close("}}}") {
                    return Ok(tok(Kind::Expr(exp, true), self.i, tb, ta));
                }
            }
            self.i = start;
        }
        self.i += 2;
        self.ws();
        let tb = self.eat("~");
        self.ws();
        let bad = || {
            "not a valid tag: {{ opens a value ({{name}}, {{helper x}}), a block \
             ({{#if x}}...{{/if}}) or a comment ({{! ... }}); write \\{{ for literal braces"
                .to_string()
        };
        let c = self.peek().ok_or_else(bad)?;
        let (kind, ta) = match c {
            '#' => {
                self.i += 1;
                self.ws();
                if self.rest().starts_with('>') || self.rest().starts_with('*') {
                    return Err(unsupported(self.rest()));
                }
                let (exp, bind) = self.block_line()?.ok_or_else(bad)?;
                (Kind::Open(exp, bind), self.close("}}"))
            }
            '/' => {
                self.i += 1;
                self.ws();
                let name = self.syms().unwrap_or_default().to_string();
                (Kind::Close(name), self.close("}}"))
            }
            '>' | '*' => return Err(unsupported(self.rest())),
            '{' => {
                self.i += 1;
                self.ws();
                let exp = self.body()?.ok_or_else(bad)?;
                self.ws();
                if !self.eat("}") {
                    return Err(bad());
                }
                (Kind::Expr(exp, true), self.close("}}"))
            }
            '&' => {
                self.i += 1;
                self.ws();
                let exp = match self.sub()? {
                    Some(e) => Exp::lone(Callee::Sub(Box::new(e))),
                    None => Exp::lone(Callee::Path(self.path().ok_or_else(bad)?)),
                };
                (Kind::Expr(exp, true), self.close("}}"))
            }
            _ => {
                if let Some(k) = self.invert()? {
                    k
                } else {
                    let exp = self.body()?.ok_or_else(bad)?;
                    (Kind::Expr(exp, false), self.close("}}"))
                }
            }
        };
        let ta = ta.ok_or_else(bad)?;
        Ok(tok(kind, self.i, tb, ta))
    }

    /// `{{else}}`, `{{^}}`, `{{else if x}}`: `None` when it is not one.
    #[allow(clippy::type_complexity)]
    fn invert(&mut self) -> Result<Option<(Kind, Option<bool>)>, String> {
        let save = self.i;
        if !(self.eat("else") || self.eat("^")) {
            return Ok(None);
        }
        let after = self.i;
        self.ws();
        if let Some(line) = self.block_line()? {
            if let Some(ta) = self.close("}}") {
                return Ok(Some((Kind::Else(Some(line)), Some(ta))));
            }
        }
        self.i = after;
        if let Some(ta) = self.close("}}") {
            return Ok(Some((Kind::Else(None), Some(ta))));
        }
        self.i = save;
        Ok(None)
    }
}

fn unsupported(rest: &str) -> String {
    if rest.starts_with('>') {
        "partials ({{> name}}) are not supported: imprint registers none; inline the text".into()
    } else {
        "decorators ({{* name}}) are not supported".into()
    }
}

/// Text between tags, escapes resolved: `\{{` is literal braces (the
/// backslash goes), and of a run of backslashes right before a tag
/// (`at_tag`: the text ends where one starts) one goes too.
fn unescape(text: &str, at_tag: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let from = &rest[i..];
        let n = from.len() - from.trim_start_matches('\\').len();
        let after = &from[n..];
        let drop = after.starts_with("{{") || (after.is_empty() && at_tag && n >= 2);
        out.push_str(&from[usize::from(drop)..n]);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Where the next tag starts in `s` from `i` (escapes skipped), or its end.
fn next_tag(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let n = b[i..].iter().take_while(|&&c| c == b'\\').count();
                let j = i + n;
                if s[j..].starts_with("{{") {
                    if n == 1 {
                        // `\{{` (and `\{{{{`): literal, the text goes on.
                        i = j + if s[j..].starts_with("{{{{") { 4 } else { 2 };
                    } else {
                        return j;
                    }
                } else {
                    i = j;
                }
            }
            b'{' if s[i..].starts_with("{{") => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// The line and column of byte offsets, asked for in increasing order.
struct Lines<'s> {
    s: &'s str,
    at: usize,
    pos: Pos,
}

impl Lines<'_> {
    fn pos(&mut self, offset: usize) -> Pos {
        if offset < self.at {
            self.at = 0;
            self.pos = Pos { line: 1, column: 1 };
        }
        for c in self.s[self.at..offset].chars() {
            if c == '\n' {
                self.pos.line += 1;
                self.pos.column = 1;
            } else {
                self.pos.column += 1;
            }
        }
        self.at = offset;
        self.pos
    }
}

/// A block being parsed.
struct Open {
    exp: Exp,
    bind: Vec<String>,
    pos: Pos,
    name: String,
    /// Branches so far: the body, then `{{else x}}` links (with their
    /// expressions), then the branch being filled.
    branches: Vec<(Option<Line>, Vec<Node>)>,
    /// A plain `{{else}}` was seen.
    plain_else: bool,
}

impl Template {
    /// Parse a template.
    pub fn parse(src: &str) -> Result<Template, SyntaxError> {
        let mut lines = Lines {
            s: src,
            at: 0,
            pos: Pos { line: 1, column: 1 },
        };
        let mut lex = Lexer { s: src, i: 0 };
        let mut toks = Vec::new();
        while lex.i < src.len() {
            let start = lex.i;
            if src[start..].starts_with("{{") {
                let t = lex.tag().map_err(|message| SyntaxError {
                    pos: lines.pos(start),
                    message,
                })?;
                toks.push(t);
            } else {
                let end = next_tag(src, start);
                lex.i = end;
                toks.push(Tok {
                    kind: Kind::Text,
                    start,
                    end,
                    trim_before: false,
                    trim_after: false,
                });
            }
        }
        let mut lines = Lines {
            s: src,
            at: 0,
            pos: Pos { line: 1, column: 1 },
        };
        compile(src, toks, &mut lines)
    }

    /// Render with `data` as the root context.
    pub fn render(&self, data: &Value, host: &mut dyn Host) -> Result<String, RenderError> {
        let mut r = Renderer {
            frames: vec![Frame {
                base: Val::Ref(data),
                locals: Locals::default(),
                bind: Vec::new(),
            }],
            host,
            raw: false,
            out: String::new(),
            root: data,
        };
        r.nodes(&self.nodes)?;
        Ok(r.out)
    }
}

/// Build the tree from the tokens, with handlebars-rust's whitespace rules:
/// `~` trims next to a tag; a block tag, `{{else}}` or comment alone on its
/// line ("standalone") takes the line's indentation and line break with it.
fn compile(src: &str, toks: Vec<Tok>, lines: &mut Lines<'_>) -> Result<Template, SyntaxError> {
    let mut root: Vec<Node> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut trim_after = false;
    let mut trim_line = false;
    fn front<'t>(root: &'t mut Vec<Node>, open: &'t mut [Open]) -> &'t mut Vec<Node> {
        match open.last_mut() {
            Some(o) => &mut o.branches.last_mut().expect("a branch").1,
            None => root,
        }
    }
    fn trim_last(nodes: &mut [Node], f: impl Fn(&str) -> &str) {
        if let Some(Node::Text(t)) = nodes.last_mut() {
            let n = f(t).len();
            t.truncate(n);
        }
    }
    // A tag alone on its line: trims the indentation before it (now) and
    // the line break after it (when the next text comes).
    let standalone = |t: (usize, usize), nodes: &mut Vec<Node>| -> bool {
        let after = &src[t.1..];
        let trailing = after
            .trim_start_matches([' ', '\t'])
            .starts_with(['\n', '\r'])
            || after.is_empty();
        if !trailing {
            return false;
        }
        let before = src[..t.0].trim_end_matches([' ', '\t']);
        let leading = before.ends_with(['\n', '\r']) || before.is_empty();
        if leading {
            trim_last(nodes, |s| s.trim_end_matches([' ', '\t']));
        }
        t.0 == 0 || leading
    };
    for t in toks {
        let span = (t.start, t.end);
        let pos = lines.pos(t.start);
        let err = |message: String| SyntaxError { pos, message };
        if let Kind::Text = t.kind {
            let text = &src[t.start..t.end];
            if text.chars().all(is_ws) {
                if trim_after {
                    continue;
                }
                let s = if trim_line { strip_line(text) } else { text };
                front(&mut root, &mut open).push(Node::Text(s.to_string()));
            } else {
                let text = unescape(text, t.end < src.len());
                let s = if trim_after {
                    text.trim_start()
                } else if trim_line {
                    strip_line(&text)
                } else {
                    &text
                };
                front(&mut root, &mut open).push(Node::Text(s.to_string()));
            }
            trim_line = false;
            continue;
        }
        if t.trim_before {
            trim_last(front(&mut root, &mut open), str::trim_end);
        }
        if !matches!(t.kind, Kind::Comment) {
            trim_after = t.trim_after;
        }
        match t.kind {
            Kind::Text => unreachable!(),
            Kind::Comment => {
                let nodes = front(&mut root, &mut open);
                trim_line = standalone(span, nodes);
                nodes.push(Node::Comment);
            }
            Kind::Expr(exp, raw) => {
                front(&mut root, &mut open).push(Node::Expr { exp, raw, pos });
            }
            Kind::Open(exp, bind) => {
                trim_line = standalone(span, front(&mut root, &mut open));
                let Callee::Helper(name) = &exp.name else {
                    unreachable!("a block's name is an identifier")
                };
                open.push(Open {
                    name: name.clone(),
                    exp,
                    bind,
                    pos,
                    branches: vec![(None, Vec::new())],
                    plain_else: false,
                });
            }
            Kind::Else(link) => {
                trim_line = standalone(span, front(&mut root, &mut open));
                let Some(o) = open.last_mut() else {
                    return Err(err("{{else}} outside a block".into()));
                };
                if o.plain_else {
                    return Err(err(format!(
                        "a second {{{{else}}}} in {{{{#{}}}}} (opened at line {}, column {})",
                        o.name, o.pos.line, o.pos.column
                    )));
                }
                o.plain_else = link.is_none();
                o.branches.push((link, Vec::new()));
            }
            Kind::Close(name) => {
                trim_line = standalone(span, front(&mut root, &mut open));
                let Some(o) = open.pop() else {
                    return Err(err(format!("{{{{/{name}}}}} closes no block")));
                };
                if o.name != name {
                    return Err(err(format!(
                        "{{{{/{name}}}}} closes {{{{#{}}}}} (opened at line {}, column {}); \
                         close it with {{{{/{}}}}}",
                        o.name, o.pos.line, o.pos.column, o.name
                    )));
                }
                let node = o.into_node();
                front(&mut root, &mut open).push(node);
            }
        }
    }
    if let Some(o) = open.last() {
        return Err(SyntaxError {
            pos: o.pos,
            message: format!("{{{{#{}}}}} is not closed by {{{{/{}}}}}", o.name, o.name),
        });
    }
    Ok(Template { nodes: root })
}

/// Spaces and tabs, then one line break, taken off the front.
fn strip_line(s: &str) -> &str {
    let s = s.trim_start_matches([' ', '\t']);
    s.strip_prefix("\r\n")
        .or_else(|| s.strip_prefix('\n'))
        .unwrap_or(s)
}

impl Open {
    /// The block, its `{{else x}}` links nested as the inverse of each.
    fn into_node(self) -> Node {
        let mut branches = self.branches.into_iter();
        let (_, body) = branches.next().expect("the body");
        let rest: Vec<_> = branches.collect();
        // Build from the last branch back: a plain else is the inverse of
        // the link before it; each link is a block in its own right.
        let mut inverse: Option<Vec<Node>> = None;
        for (link, nodes) in rest.into_iter().rev() {
            inverse = Some(match link {
                None => nodes,
                Some((exp, bind)) => vec![Node::Block(Box::new(Block {
                    exp,
                    bind,
                    body: nodes,
                    inverse: inverse.take(),
                    // Errors in a link's own tag are reported at the
                    // block's opening tag, as handlebars-rust does.
                    pos: self.pos,
                }))],
            });
        }
        Node::Block(Box::new(Block {
            exp: self.exp,
            bind: self.bind,
            body,
            inverse,
            pos: self.pos,
        }))
    }
}

// ----------------------------------------------------------------- rendering

/// A value: borrowed from the data or a literal, owned (derived), or not set.
#[derive(Debug, Clone)]
enum Val<'a> {
    Ref(&'a Value),
    Own(Value),
    Missing,
}

static NULL: Value = Value::Null;

impl<'a> Val<'a> {
    fn get(&self) -> &Value {
        match self {
            Val::Ref(v) => v,
            Val::Own(v) => v,
            Val::Missing => &NULL,
        }
    }

    /// The value at `names` below this one.
    fn walk<'n>(&self, names: impl Iterator<Item = &'n str>) -> Result<Val<'a>, Reason> {
        fn step<'v>(v: &'v Value, name: &str) -> Result<Option<&'v Value>, Reason> {
            Ok(match v {
                Value::Array(l) => l.get(
                    name.parse::<usize>()
                        .map_err(|_| Reason::BadIndex(name.to_string()))?,
                ),
                Value::Object(m) => m.get(name),
                _ => None,
            })
        }
        match self {
            Val::Ref(v) => {
                let mut cur: Option<&'a Value> = Some(v);
                for n in names {
                    cur = match cur {
                        Some(c) => step(c, n)?,
                        None => None,
                    };
                }
                Ok(cur.map_or(Val::Missing, Val::Ref))
            }
            Val::Own(v) => {
                let mut cur: Option<&Value> = Some(v);
                for n in names {
                    cur = match cur {
                        Some(c) => step(c, n)?,
                        None => None,
                    };
                }
                Ok(cur.map_or(Val::Missing, |c| Val::Own(c.clone())))
            }
            Val::Missing => Ok(Val::Missing),
        }
    }
}

/// JSON as text: strings as they are, `null` empty, lists `[a, b]`, maps
/// `[object]` (handlebars-rust's rendering). imprint's host never writes a
/// list or map this way: it refuses them, or writes JSON in a JSON file
/// (src/helpers.rs).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(text).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(_) => "[object]".to_string(),
    }
}

/// Handlebars' truth: `false`, `null`, `""`, `[]`, `{}` and 0 (unless
/// `include_zero`) are false.
pub fn truthy(v: &Value, include_zero: bool) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => {
            let f = n.as_f64();
            if include_zero {
                f.is_some_and(|f| !f.is_nan())
            } else {
                f.is_some_and(f64::is_normal)
            }
        }
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[derive(Debug, Clone, Default)]
struct Locals {
    first: Option<Value>,
    last: Option<Value>,
    index: Option<Value>,
    key: Option<Value>,
}

impl Locals {
    fn get(&self, name: &str) -> Option<&Value> {
        match name {
            "first" => self.first.as_ref(),
            "last" => self.last.as_ref(),
            "index" => self.index.as_ref(),
            "key" => self.key.as_ref(),
            _ => None,
        }
    }
}

/// What a name bound by `as |x y|` stands for.
#[derive(Debug, Clone)]
enum Bound {
    /// The frame's own base (the item, or `with`'s value).
    Base,
    Value(Value),
}

struct Frame<'a> {
    base: Val<'a>,
    locals: Locals,
    bind: Vec<(&'a str, Bound)>,
}

struct Renderer<'a, 'h> {
    root: &'a Value,
    /// Innermost last.
    frames: Vec<Frame<'a>>,
    host: &'h mut dyn Host,
    /// Inside `{{{ }}}`: no escaping.
    raw: bool,
    out: String,
}

/// The built-in helpers (a host's helper of the same name replaces one).
pub const BUILTINS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or",
    "not", "len", "log", "raw",
];

impl<'a> Renderer<'a, '_> {
    fn nodes(&mut self, nodes: &'a [Node]) -> Result<(), RenderError> {
        for n in nodes {
            let r = match n {
                Node::Text(t) => {
                    self.out.push_str(t);
                    Ok(())
                }
                Node::Comment => Ok(()),
                Node::Expr { exp, raw, pos } => self.expr(exp, *raw).map_err(|e| at(e, *pos)),
                Node::Block(b) => self.call(&b.exp, Some(b)).map_err(|e| at(e, b.pos)),
            };
            r?;
        }
        Ok(())
    }

    fn is_helper(&self, name: &str) -> bool {
        self.host.has(name) || BUILTINS.contains(&name)
    }

    fn write_value(&mut self, v: &Value, key: Option<&str>) -> Result<(), Reason> {
        let t = if self.raw {
            self.host.raw(v, key)?
        } else {
            self.host.escape(v, key)?
        };
        self.out.push_str(&t);
        Ok(())
    }

    fn expr(&mut self, exp: &'a Exp, raw: bool) -> Result<(), RenderError> {
        if raw {
            self.raw = true;
        }
        let r = match &exp.name {
            Callee::Path(p) if exp.params.is_empty() && exp.hash.is_empty() => {
                if self.is_helper(&p.raw) {
                    self.call(exp, None)
                } else {
                    match self.path(p)? {
                        Val::Missing => Err(Reason::Missing(Some(p.raw.clone())).into()),
                        v => Ok(self.write_value(v.get(), Some(&p.raw))?),
                    }
                }
            }
            Callee::Sub(sub) => match self.sub(sub) {
                Ok(v) => Ok(self.write_value(v.get(), None)?),
                Err(e) => Err(e),
            },
            _ => self.call(exp, None),
        };
        if raw {
            self.raw = false;
        }
        r
    }

    fn frame(&self, depth: usize) -> &Frame<'a> {
        let n = self.frames.len();
        self.frames
            .get(n.wrapping_sub(1 + depth))
            .unwrap_or(&self.frames[n - 1])
    }

    fn path(&self, p: &'a Path) -> Result<Val<'a>, Reason> {
        if let Some((level, name)) = &p.local {
            let n = self.frames.len();
            let v = n
                .checked_sub(1 + level)
                .and_then(|i| self.frames[i].locals.get(name));
            return Ok(v.map_or(Val::Missing, |v| Val::Own(v.clone())));
        }
        let mut depth = 0;
        let mut from_root = false;
        let mut bound = None;
        for s in &p.segs {
            match s {
                Seg::Name(n) => {
                    bound = self.frames.iter().rev().find_map(|f| {
                        f.bind
                            .iter()
                            .find(|(b, _)| b == n)
                            .map(|(_, v)| (f, v.clone()))
                    });
                    break;
                }
                Seg::Root => {
                    from_root = true;
                    break;
                }
                Seg::Up => depth += 1,
                Seg::Local => break,
            }
        }
        let names = |segs: &'a [Seg]| {
            segs.iter().filter_map(|s| match s {
                Seg::Name(n) => Some(n.as_str()),
                _ => None,
            })
        };
        match bound {
            Some((f, b)) => {
                let rest = names(p.segs.get(depth + 1..).unwrap_or_default());
                match b {
                    Bound::Value(v) => Val::Own(v).walk(rest),
                    Bound::Base => f.base.walk(rest),
                }
            }
            None if depth > 0 => self.frame(depth).base.walk(names(&p.segs)),
            None if from_root => Val::Ref(self.root).walk(names(&p.segs)),
            None => self.frame(0).base.walk(names(&p.segs)),
        }
    }

    fn param(&mut self, p: &'a Param) -> Result<Arg<'a>, RenderError> {
        Ok(match p {
            Param::Path(path) => Arg {
                path: Some(&path.raw),
                val: self.path(path)?,
            },
            Param::Lit(v) => Arg {
                path: None,
                val: Val::Ref(v),
            },
            Param::Sub(e) => Arg {
                path: None,
                val: self.sub(e)?,
            },
        })
    }

    #[allow(clippy::type_complexity)]
    fn args(
        &mut self,
        exp: &'a Exp,
    ) -> Result<(Vec<Arg<'a>>, Vec<(&'a str, Arg<'a>)>), RenderError> {
        let mut params = Vec::with_capacity(exp.params.len());
        for p in &exp.params {
            params.push(self.param(p)?);
        }
        let mut hash = Vec::new();
        for (k, p) in &exp.hash {
            hash.push((k.as_str(), self.param(p)?));
        }
        Ok((params, hash))
    }

    fn name(exp: &'a Exp) -> &'a str {
        match &exp.name {
            Callee::Helper(n) => n,
            Callee::Path(p) => &p.raw,
            Callee::Sub(_) => "",
        }
    }

    /// A subexpression's value.
    fn sub(&mut self, exp: &'a Exp) -> Result<Val<'a>, RenderError> {
        let name = Self::name(exp);
        let (params, _hash) = self.args(exp)?;
        if self.host.has(name) {
            return Ok(match self.host.call(name, &params)? {
                Out::Value(v) => Val::Own(v),
                Out::Quoted(s) => Val::Own(Value::String(s)),
            });
        }
        let first = |i: usize| params.get(i).ok_or(Reason::NoParam(builtin(name), i));
        Ok(Val::Own(match name {
            // Block helpers used as values render no template: "".
            "if" | "unless" | "each" => {
                first(0)?;
                Value::String(String::new())
            }
            "with" => {
                let p = first(0)?;
                if !truthy(p.value(), false) {
                    return Err(Reason::Missing(p.path.map(str::to_string)).into());
                }
                Value::String(String::new())
            }
            "log" | "raw" => Value::String(String::new()),
            _ => self.value_helper(name, &params)?,
        }))
    }

    /// The built-in helpers that give a value.
    fn value_helper(&mut self, name: &str, params: &[Arg<'a>]) -> Result<Value, Reason> {
        let strict = |i: usize, who: &'static str| {
            params
                .get(i)
                .filter(|a| !a.missing())
                .map(Arg::value)
                .ok_or(Reason::NoParam(who, i))
        };
        Ok(match name {
            "lookup" => {
                let c = params.first().ok_or(Reason::NoParam("lookup", 0))?;
                let i = params.get(1).ok_or(Reason::NoParam("lookup", 1))?;
                let v = match c.value() {
                    Value::Array(l) => i.value().as_u64().and_then(|u| l.get(u as usize)),
                    Value::Object(m) => i.value().as_str().and_then(|k| m.get(k)),
                    _ => None,
                };
                v.ok_or(Reason::Missing(None))?.clone()
            }
            "eq" | "ne" | "gt" | "gte" | "lt" | "lte" => {
                let who = builtin(name);
                let (x, y) = (strict(0, who)?, strict(1, who)?);
                let ord = compare(x, y);
                Value::Bool(match name {
                    "eq" => x == y,
                    "ne" => x != y,
                    "gt" => ord == Some(std::cmp::Ordering::Greater),
                    "gte" => ord.is_some_and(|o| o != std::cmp::Ordering::Less),
                    "lt" => ord == Some(std::cmp::Ordering::Less),
                    _ => ord.is_some_and(|o| o != std::cmp::Ordering::Greater),
                })
            }
            "and" => Value::Bool(params.iter().all(|p| truthy(p.value(), false))),
            "or" => Value::Bool(params.iter().any(|p| truthy(p.value(), false))),
            "not" => Value::Bool(!truthy(strict(0, "not")?, false)),
            "len" => Value::from(match strict(0, "len")? {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                _ => 0,
            }),
            _ => return Err(Reason::UnknownHelper(name.to_string())),
        })
    }

    /// A helper call, as a tag (`block`: with its body).
    fn call(&mut self, exp: &'a Exp, block: Option<&'a Block>) -> Result<(), RenderError> {
        let name = Self::name(exp);
        let (params, hash) = self.args(exp)?;
        if self.host.has(name) {
            // Host helpers give a value; as a block, the body is not used.
            match self.host.call(name, &params)? {
                Out::Value(v) => self.write_value(&v, params.first().and_then(|p| p.path))?,
                Out::Quoted(s) => self.out.push_str(&s),
            }
            return Ok(());
        }
        let first = |i: usize| params.get(i).ok_or(Reason::NoParam(builtin(name), i));
        let pick = |this: &mut Self, yes: bool| -> Result<(), RenderError> {
            let b = block.and_then(|b| {
                if yes {
                    Some(&b.body)
                } else {
                    b.inverse.as_ref()
                }
            });
            match b {
                Some(nodes) => this.nodes(nodes),
                None => Ok(()),
            }
        };
        match name {
            "if" | "unless" => {
                let p = first(0)?;
                let zero = hash
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == "includeZero")
                    .and_then(|(_, v)| v.value().as_bool())
                    .unwrap_or(false);
                let yes = truthy(p.value(), zero) == (name == "if");
                pick(self, yes)
            }
            "each" => {
                let p = first(0)?;
                let Some(b) = block else { return Ok(()) };
                self.each(p, b)
            }
            "with" => {
                let p = first(0)?;
                if truthy(p.value(), false) {
                    let locals = self.frame(0).locals.clone();
                    let mut bind = Vec::new();
                    if let Some([one]) = block.map(|b| b.bind.as_slice()) {
                        bind.push((one.as_str(), Bound::Base));
                    }
                    self.frames.push(Frame {
                        base: p.val.clone(),
                        locals,
                        bind,
                    });
                    let r = match block {
                        Some(b) => self.nodes(&b.body),
                        None => Ok(()),
                    };
                    self.frames.pop();
                    r
                } else if let Some(inv) = block.and_then(|b| b.inverse.as_ref()) {
                    self.nodes(inv)
                } else {
                    Err(Reason::Missing(p.path.map(str::to_string)).into())
                }
            }
            "log" => Ok(()),
            "raw" => pick(self, true),
            "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "and" | "or" | "not" => {
                let yes = self.value_helper(name, &params)? == Value::Bool(true);
                if block.is_some() {
                    pick(self, yes)
                } else {
                    self.out.push_str(if yes { "true" } else { "false" });
                    Ok(())
                }
            }
            _ => {
                let v = self.value_helper(name, &params)?;
                // The key, for the host's messages: `m.[k]` for `lookup m "k"`.
                let key = match (name, params.first().and_then(|p| p.path), params.get(1)) {
                    ("lookup", Some(p), Some(k)) => Some(format!("{p}.[{}]", text(k.value()))),
                    (_, p, _) => p.map(str::to_string),
                };
                Ok(self.write_value(&v, key.as_deref())?)
            }
        }
    }

    fn each(&mut self, p: &Arg<'a>, b: &'a Block) -> Result<(), RenderError> {
        let (len, keys): (usize, Option<Vec<&String>>) = match (&p.val, p.value()) {
            (_, Value::Array(l)) if !l.is_empty() || b.inverse.is_none() => (l.len(), None),
            (_, Value::Object(m)) if !m.is_empty() || b.inverse.is_none() => {
                (m.len(), Some(m.keys().collect()))
            }
            _ => {
                return match &b.inverse {
                    Some(inv) => self.nodes(inv),
                    None => Err(Reason::Missing(p.path.map(str::to_string)).into()),
                }
            }
        };
        // Items of borrowed data stay borrowed; of derived data, cloned.
        let items: Vec<Val<'a>> = match &p.val {
            Val::Ref(v) => match v {
                Value::Array(l) => l.iter().map(Val::Ref).collect(),
                Value::Object(m) => m.values().map(Val::Ref).collect(),
                _ => Vec::new(),
            },
            other => match other.get() {
                Value::Array(l) => l.iter().map(|v| Val::Own(v.clone())).collect(),
                Value::Object(m) => m.values().map(|v| Val::Own(v.clone())).collect(),
                _ => Vec::new(),
            },
        };
        let keys: Option<Vec<String>> = keys.map(|k| k.into_iter().cloned().collect());
        self.frames.push(Frame {
            base: p.val.clone(),
            locals: Locals::default(),
            bind: Vec::new(),
        });
        let mut r = Ok(());
        for (i, item) in items.into_iter().enumerate() {
            let key = keys.as_ref().map(|k| Value::String(k[i].clone()));
            let f = self.frames.last_mut().expect("pushed");
            f.locals.first = Some(Value::Bool(i == 0));
            f.locals.last = Some(Value::Bool(i + 1 == len));
            f.locals.index = Some(Value::from(i));
            if let Some(k) = &key {
                f.locals.key = Some(k.clone());
            }
            f.base = item;
            f.bind.clear();
            if let Some(v) = b.bind.first() {
                f.bind.push((v.as_str(), Bound::Base));
                if let Some(k) = b.bind.get(1) {
                    let k_val = key.clone().unwrap_or_else(|| Value::from(i));
                    f.bind.push((k.as_str(), Bound::Value(k_val)));
                }
            }
            r = self.nodes(&b.body);
            if r.is_err() {
                break;
            }
        }
        self.frames.pop();
        r
    }
}

fn at(mut e: RenderError, pos: Pos) -> RenderError {
    e.pos.get_or_insert(pos);
    e
}

/// The built-in's name as a `'static` (for [`Reason::NoParam`]).
fn builtin(name: &str) -> &'static str {
    BUILTINS
        .iter()
        .find(|b| **b == name)
        .copied()
        .unwrap_or("helper")
}

/// Order of two JSON values for `gt`/`lt`: numbers (exactly, a numeric
/// string compared as a number), strings, booleans; anything else is
/// unordered.
fn compare(x: &Value, y: &Value) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    enum N {
        I(i128),
        F(f64),
    }
    fn n(v: &serde_json::Number) -> Option<N> {
        match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => Some(N::I(i.into())),
            (_, Some(u)) => Some(N::I(u.into())),
            _ => v.as_f64().map(N::F),
        }
    }
    // An integer against a float: as floats, and exactly where rounding
    // the integer made them equal.
    fn int_float(i: i128, f: f64) -> Option<Ordering> {
        match (i as f64).partial_cmp(&f)? {
            Ordering::Equal if f.abs() < 1.0e38 => Some(i.cmp(&(f as i128))),
            o => Some(o),
        }
    }
    fn nums(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
        match (n(a)?, n(b)?) {
            (N::I(a), N::I(b)) => Some(a.cmp(&b)),
            (N::F(a), N::F(b)) => a.partial_cmp(&b),
            (N::I(a), N::F(b)) => int_float(a, b),
            (N::F(a), N::I(b)) => int_float(b, a).map(Ordering::reverse),
        }
    }
    fn num_str(a: &serde_json::Number, s: &str) -> Option<Ordering> {
        nums(a, &s.parse::<serde_json::Number>().ok()?)
    }
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => nums(a, b),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::String(b)) => num_str(a, b),
        (Value::String(a), Value::Number(b)) => num_str(b, a).map(Ordering::reverse),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes what the engine hands it: the value (typed) and its key;
    /// refuses maps.
    struct Typed;

    impl Host for Typed {
        fn escape(&mut self, v: &Value, key: Option<&str>) -> Result<String, Reason> {
            if v.is_object() {
                return Err(Reason::NoText(format!("{key:?} is a map")));
            }
            Ok(format!("<{v}@{}>", key.unwrap_or("-")))
        }
        fn raw(&mut self, v: &Value, key: Option<&str>) -> Result<String, Reason> {
            Ok(format!("raw:{v}@{}", key.unwrap_or("-")))
        }
        fn has(&self, name: &str) -> bool {
            name == "same"
        }
        fn call(&mut self, _: &str, params: &[Arg<'_>]) -> Result<Out, Reason> {
            Ok(Out::Value(params[0].value().clone()))
        }
    }

    fn render(src: &str) -> Result<String, RenderError> {
        let data = json!({"n": 5, "l": ["a", true], "m": {"k": 1}});
        Template::parse(src).unwrap().render(&data, &mut Typed)
    }

    /// The host gets each substitution's value as it is (not its text) and
    /// its key, so that it can quote numbers, lists and maps for the file.
    #[test]
    fn the_host_gets_typed_values_and_their_keys() {
        assert_eq!(
            render("{{n}} {{l}} {{l.[1]}} {{same n}} {{(same l)}} {{len l}} {{{l}}}").unwrap(),
            r#"<5@n> <["a",true]@l> <true@l.[1]> <5@n> <["a",true]@-> <2@l> raw:["a",true]@l"#
        );
        // Blocks over lists and maps write only what their bodies write.
        assert_eq!(
            render("{{#each m}}{{@key}}{{/each}}{{#if l}}y{{/if}}{{#with m}}{{k}}{{/with}}")
                .unwrap(),
            r#"<"k"@@key>y<1@k>"#
        );
    }

    /// A value the host refuses is an error at its tag's line and column.
    #[test]
    fn a_refused_value_is_an_error_at_its_tag() {
        let e = render("a\n{{#each l}}\n  x {{../m}}\n{{/each}}").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 3, column: 5 }));
        assert_eq!(e.reason, Reason::NoText("Some(\"../m\") is a map".into()));
    }
}
