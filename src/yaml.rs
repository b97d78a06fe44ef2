//! YAML with cloud-init's meaning (PyYAML, YAML 1.1): `0644` is octal,
//! `yes/no/on/off` are booleans. One reader for every YAML imprint reads:
//! user-data (`decode`/`merge`), NoCloud's meta-data, and the manifest
//! (its run and its generator), so a word means the same in each: a
//! manifest's `enum: [y, n]` holds the strings user-data's `y` and `n` are.
//! Errors carry a 1-based line and column.
//!
//! [`parse_value`] composes a document from granit-parser's events with
//! PyYAML's own resolvers, because user-data must mean exactly what it
//! means to cloud-init, corner cases included (see docs/user-data.md). The
//! locators ([`key_at`], [`item_fields_written`]) walk the same events
//! again, only when an error needs a line and column, or a mode how it was
//! written.

use std::fmt;

/// A YAML syntax or shape error, located in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based; 0 when the parser could not say.
    pub line: u64,
    /// 1-based; 0 when the parser could not say.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

/// A scalar as its author wrote it: the text (without quotes or tag), its
/// 1-based line, whether it was plain (unquoted), and whether it came in
/// through a merge key (`<<: *defaults`: `line` is then the anchor's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub text: String,
    pub line: u64,
    pub plain: bool,
    pub merged: bool,
}

/// How each scalar at `KEY[i].FIELD` of the top-level mapping (say
/// `files[3].mode`) was written, by index `i`: what the parsed value no
/// longer says (`0640` and `416` both parse to 416). An alias gives its
/// anchor's scalar; a field the item does not set itself but merges in
/// (`<<: *defaults`, `<<: [*a, *b]`, `<<: *list`, `<<: {FIELD: ..}`,
/// merges within merges) gives the scalar of the mapping it comes from,
/// with the precedence of the merge: the item's own key first, then the
/// merged mappings in order. Only the first document; nothing when the text does
/// not parse (the caller has parsed it already) or the shape differs.
pub fn item_fields_written(text: &str, key: &str, field: &str) -> Vec<(usize, Written)> {
    use granit_parser::{Event, Parser, ScalarStyle};
    // Where a node sits: under a mapping key (None: a complex key), as the
    // value of a merge key (`<<`), or at an index of a sequence.
    #[derive(Clone)]
    enum Seg {
        Key(Option<String>),
        Merge,
        Index(usize),
    }
    enum Frame {
        Map {
            /// The pending key once read; `None` while a key is expected.
            key: Option<Seg>,
            /// FIELD as this mapping writes it (`Some(None)`: not a
            /// scalar), when it has the key.
            own: Option<Option<Written>>,
            /// FIELD as the first mapping merged in that has it writes it.
            merged: Option<Written>,
            anchor: usize,
        },
        Seq {
            next: usize,
            /// What the first item that has FIELD gives (a list of
            /// mappings merged in, `<<: *list`, takes it from there).
            first: Option<Written>,
            anchor: usize,
        },
    }
    let mut out = Vec::new();
    // Anchored scalars, and what FIELD anchored mappings (and lists of
    // them) give.
    let mut anchors: std::collections::HashMap<usize, Written> = Default::default();
    let mut mappings: std::collections::HashMap<usize, Written> = Default::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Seg> = Vec::new();
    // The segment of the node starting now, or `None` when it is a key
    // (which then becomes the pending key).
    fn position(stack: &mut [Frame]) -> Option<Seg> {
        match stack.last_mut() {
            None => Some(Seg::Index(0)),
            Some(Frame::Seq { next, .. }) => Some(Seg::Index(*next)),
            Some(Frame::Map { key, .. }) => key.clone(),
        }
    }
    // A value at `seg` is complete: its mapping takes it as FIELD
    // (`scalar`: a scalar or an alias of one) or as a merge (`fields`: what
    // a mapping, or an alias of one, gives as FIELD); then the parent moves
    // on.
    fn complete(
        stack: &mut [Frame],
        path: &[Seg],
        seg: &Seg,
        field: &str,
        scalar: Option<&Written>,
        fields: Option<&Written>,
    ) {
        let n = stack.len();
        let merge_into = match (seg, path.last()) {
            (Seg::Merge, _) => n.checked_sub(1),
            // An item of `<<: [*a, *b]`: the mapping holding the list.
            (Seg::Index(_), Some(Seg::Merge)) => n.checked_sub(2),
            _ => None,
        };
        if let Some(Frame::Map { merged, .. }) = merge_into.and_then(|j| stack.get_mut(j)) {
            if merged.is_none() {
                *merged = fields.map(|w| Written {
                    merged: true,
                    ..w.clone()
                });
            }
        }
        match stack.last_mut() {
            Some(Frame::Seq { next, first, .. }) => {
                *next += 1;
                if first.is_none() {
                    *first = fields.cloned();
                }
            }
            Some(Frame::Map { key, own, .. }) => {
                if matches!(seg, Seg::Key(Some(k)) if k == field) {
                    *own = Some(scalar.cloned());
                }
                *key = None;
            }
            None => {}
        }
    }
    for ev in Parser::new_from_str(text) {
        let Ok((ev, span)) = ev else {
            return Vec::new();
        };
        match ev {
            Event::DocumentEnd => break,
            Event::Scalar(t, style, anchor, tag) => {
                let plain = matches!(style, ScalarStyle::Plain);
                let w = Written {
                    text: t.into_owned(),
                    line: span.start.line() as u64,
                    plain,
                    merged: false,
                };
                if anchor > 0 {
                    anchors.insert(anchor, w.clone());
                }
                match position(&mut stack) {
                    None => {
                        // A merge key: plain `<<`, or tagged `!!merge`.
                        let merge = w.text == "<<"
                            && match &tag {
                                None => plain,
                                Some(t) => core(t) == Some("merge"),
                            };
                        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                            *key = Some(if merge {
                                Seg::Merge
                            } else {
                                Seg::Key(Some(w.text))
                            });
                        }
                    }
                    Some(seg) => complete(&mut stack, &path, &seg, field, Some(&w), None),
                }
            }
            Event::Alias(id) => match position(&mut stack) {
                None => {
                    if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                        *key = Some(Seg::Key(anchors.get(&id).map(|w| w.text.clone())));
                    }
                }
                Some(seg) => complete(
                    &mut stack,
                    &path,
                    &seg,
                    field,
                    anchors.get(&id),
                    mappings.get(&id),
                ),
            },
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                // A collection as a key: its path is nothing we look for.
                let seg = position(&mut stack).unwrap_or(Seg::Key(None));
                path.push(seg);
                stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        key: None,
                        own: None,
                        merged: None,
                        anchor,
                    }
                } else {
                    Frame::Seq {
                        next: 0,
                        first: None,
                        anchor,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // What a mapping gives as FIELD: its own key first, then
                // what it merges in; a list: its first item's.
                let (fields, anchor) = match stack.pop() {
                    Some(Frame::Map {
                        own,
                        merged,
                        anchor,
                        ..
                    }) => (own.unwrap_or(merged), anchor),
                    Some(Frame::Seq { first, anchor, .. }) => (first, anchor),
                    None => (None, 0),
                };
                if let (true, Some(w)) = (anchor > 0, &fields) {
                    mappings.insert(anchor, w.clone());
                }
                let Some(seg) = path.pop() else {
                    continue;
                };
                // An item of the top-level KEY.
                if let ([_, Seg::Key(Some(k))], Seg::Index(i), Some(w)) = (&path[..], &seg, &fields)
                {
                    if k == key {
                        out.push((*i, w.clone()));
                    }
                }
                match stack.last_mut() {
                    // A collection that was a key: its value comes next.
                    Some(Frame::Map { key: k @ None, .. }) => *k = Some(Seg::Key(None)),
                    _ => complete(&mut stack, &path, &seg, field, None, fields.as_ref()),
                }
            }
            _ => {}
        }
    }
    out
}

/// Where a mapping key is written: 1-based line and column, and the line
/// of the `<<` that merged it in when it was written in another (anchored
/// or inline) mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub line: u64,
    pub column: u64,
    pub merged_at: Option<u64>,
}

impl fmt::Display for KeyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if let Some(m) = self.merged_at {
            write!(f, " (merged in with << at line {m})")?;
        }
        Ok(())
    }
}

/// A step on the way from the top-level mapping to a node: a mapping's
/// key, or a list's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where the key `name` of the mapping at `parents` (from the top-level
/// mapping: `[]` for the top level itself, `[files, 3, env]` for
/// `files[3].env`) is written: in that mapping, in the mapping it is an
/// alias of (`env: *common`), or in one it merges in (`<<: *a`,
/// `<<: [*a, *b]`, `<<: {..}`, merges within merges; its own keys first,
/// then the merged ones in order). Only the first document; `None` when
/// the text does not parse, does not have it, or reaches it through an
/// alias on the way. From the parser's events, as [`item_fields_written`],
/// and only when an error needs the place.
pub fn key_at(text: &str, parents: &[Step], name: &str) -> Option<KeyAt> {
    use granit_parser::{Event, Parser, ScalarStyle};
    #[derive(Clone, PartialEq)]
    enum Seg {
        Key(String),
        Merge,
        Other,
        Index(usize),
    }
    enum Frame {
        /// A mapping (its index in `maps`) and its pending key.
        Map(usize, Option<Seg>),
        Seq(usize),
    }
    #[derive(Default)]
    struct MapInfo {
        keys: Vec<(String, KeyAt)>,
        /// Merged in: an anchor's mapping, or an inline one; the `<<` line.
        merges: Vec<(Result<usize, usize>, u64)>,
    }
    let mut maps: Vec<MapInfo> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, usize> = Default::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Seg> = Vec::new();
    // The mapping at LIST[index].MAP: `Ok(map)`, or `Err(anchor)` for an alias.
    let mut target: Option<Result<usize, usize>> = None;
    let want: Vec<Seg> = parents
        .iter()
        .map(|p| match p {
            Step::Key(k) => Seg::Key(k.to_string()),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect();
    // The segment of the node starting now; `None`: it is a key.
    fn position(stack: &[Frame]) -> Option<Seg> {
        match stack.last() {
            None => Some(Seg::Index(0)),
            Some(Frame::Seq(n)) => Some(Seg::Index(*n)),
            Some(Frame::Map(_, key)) => key.clone(),
        }
    }
    // A value is complete: its parent moves on.
    fn done(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Seq(n)) => *n += 1,
            Some(Frame::Map(_, key)) => *key = None,
            None => {}
        }
    }
    // The mapping a merge source at `seg` goes to: the mapping of `<<`, or
    // the one holding the list `<<: [..]`.
    fn merge_into(stack: &[Frame], path: &[Seg], seg: &Seg) -> Option<usize> {
        match (seg, path.last(), stack.len()) {
            (Seg::Merge, _, n) if n >= 1 => match stack[n - 1] {
                Frame::Map(m, _) => Some(m),
                _ => None,
            },
            (Seg::Index(_), Some(Seg::Merge), n) if n >= 2 => match stack[n - 2] {
                Frame::Map(m, _) => Some(m),
                _ => None,
            },
            _ => None,
        }
    }
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.ok()?;
        let line = span.start.line() as u64;
        let at = KeyAt {
            line,
            column: span.start.col() as u64 + 1,
            merged_at: None,
        };
        match ev {
            Event::DocumentEnd => break,
            Event::Scalar(t, style, _, tag) => match position(&stack) {
                None => {
                    let merge = t == "<<"
                        && match &tag {
                            None => matches!(style, ScalarStyle::Plain),
                            Some(tag) => core(tag) == Some("merge"),
                        };
                    if let Some(Frame::Map(m, key)) = stack.last_mut() {
                        *key = Some(if merge {
                            Seg::Merge
                        } else {
                            maps[*m].keys.push((t.to_string(), at));
                            Seg::Key(t.into_owned())
                        });
                    }
                }
                Some(_) => done(&mut stack),
            },
            Event::Alias(id) => match position(&stack) {
                None => {
                    if let Some(Frame::Map(_, key)) = stack.last_mut() {
                        *key = Some(Seg::Other);
                    }
                }
                Some(seg) => {
                    if let Some(m) = merge_into(&stack, &path, &seg) {
                        maps[m].merges.push((Err(id), line));
                    }
                    if want.last() == Some(&seg)
                        && path.get(1..).is_some_and(|p| p == &want[..want.len() - 1])
                    {
                        target = Some(Err(id));
                    }
                    done(&mut stack);
                }
            },
            Event::MappingStart(_, anchor, _) | Event::SequenceStart(_, anchor, _) => {
                let seg = position(&stack).unwrap_or(Seg::Other);
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    maps.push(MapInfo::default());
                    let m = maps.len() - 1;
                    if anchor > 0 {
                        anchors.insert(anchor, m);
                    }
                    if let Some(into) = merge_into(&stack, &path, &seg) {
                        maps[into].merges.push((Ok(m), line));
                    }
                    Frame::Map(m, None)
                } else {
                    Frame::Seq(0)
                };
                path.push(seg);
                if let (Frame::Map(m, _), true) = (&frame, path.get(1..) == Some(&want[..])) {
                    target = Some(Ok(*m));
                }
                stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                path.pop();
                match stack.last_mut() {
                    // A collection as a key: its value comes next.
                    Some(Frame::Map(_, key @ None)) => *key = Some(Seg::Other),
                    _ => done(&mut stack),
                }
            }
            _ => {}
        }
    }
    fn find(
        maps: &[MapInfo],
        anchors: &std::collections::HashMap<usize, usize>,
        m: usize,
        name: &str,
        depth: usize,
    ) -> Option<KeyAt> {
        let info = maps.get(m)?;
        if let Some((_, at)) = info.keys.iter().find(|(k, _)| k == name) {
            return Some(*at);
        }
        if depth > 32 {
            return None;
        }
        info.merges.iter().find_map(|(source, line)| {
            let from = match source {
                Ok(m) => *m,
                Err(anchor) => *anchors.get(anchor)?,
            };
            find(maps, anchors, from, name, depth + 1).map(|at| KeyAt {
                merged_at: Some(*line),
                ..at
            })
        })
    }
    let m = match target? {
        Ok(m) => m,
        Err(anchor) => *anchors.get(&anchor)?,
    };
    find(&maps, &anchors, m, name, 0)
}

// ------------------------------------------------------------ user-data YAML

/// How deep collections may nest (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 128;
/// Nodes that aliases may copy in one document (alias bombs).
pub const MAX_ALIAS_NODES: usize = 1_000_000;

/// A document read with PyYAML's `safe_load` meanings, as JSON-shaped data.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `Null` for an empty document.
    pub value: serde_json::Value,
    /// The base64 text of every `!!binary` scalar that is not UTF-8 once
    /// decoded (kept as base64 text in `value`); other `!!binary` scalars
    /// are decoded into their text.
    pub binary: Vec<String>,
}

/// Parse user-data YAML exactly as cloud-init's PyYAML (`yaml.safe_load`,
/// YAML 1.1) resolves it, into JSON-shaped values.
///
/// Other YAML 1.1 readers come close but not all the way (serde-saphyr
/// reads `y`/`n` as booleans, `09` as a number, `1e3` as a float, `1:20`
/// as a string), so documents are composed here from the parser's events
/// with PyYAML's own implicit resolvers; the differential test against
/// cloud-init checks the result. Differences that remain, on purpose: a
/// key given twice is an error (PyYAML silently keeps the last), `.inf` and
/// `.nan` are errors (JSON has neither), timestamps stay strings, integers
/// beyond 64 bits become floats.
pub fn parse_value(text: &str) -> Result<Document, YamlError> {
    use granit_parser::{Event, Parser};
    let mut c = Composer::default();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line() as u64,
            column: e.marker().col() as u64 + 1,
            message: e.info(),
        })?;
        let at = |message: String| YamlError {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
            message,
        };
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                c.docs += 1;
                if c.docs > 1 {
                    return Err(at(
                        "expected a single document, found a second one (---); user-data is one YAML document"
                            .into(),
                    ));
                }
            }
            Event::Alias(id) => {
                let (v, n) = c
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| at("an alias (*name) before its anchor (&name)".into()))?;
                c.alias_nodes += n;
                if c.alias_nodes > MAX_ALIAS_NODES {
                    return Err(at(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"
                    )));
                }
                c.push(v, n, None, line_col(&span)).map_err(at)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let v = c.scalar(&value, style, tag.as_deref()).map_err(at)?;
                c.push(v, 1, (anchor > 0).then_some(anchor), line_col(&span))
                    .map_err(at)?;
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                if c.stack.len() >= MAX_DEPTH {
                    return Err(at(format!(
                        "collections nest deeper than {MAX_DEPTH} levels"
                    )));
                }
                let kind = collection_tag(tag.as_deref(), is_map).map_err(at)?;
                c.stack.push(Frame {
                    is_map,
                    kind,
                    anchor: (anchor > 0).then_some(anchor),
                    items: Vec::new(),
                    nodes: 1,
                    at: line_col(&span),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let f = c.stack.pop().expect("parser balances collections");
                let (v, n, anchor, pos) =
                    c.finish(f).map_err(|(message, (line, column))| YamlError {
                        line,
                        column,
                        message,
                    })?;
                c.push(v, n, anchor, pos).map_err(at)?;
            }
            _ => {}
        }
    }
    Ok(Document {
        value: c.root.unwrap_or(serde_json::Value::Null),
        binary: c.binary,
    })
}

/// Every scalar of `text` that [`parse_value`] reads as a string: its byte
/// range in `text` (the scalar as written: quotes, a block scalar's
/// indicator and lines; not its tag) and the string it means. `None` when
/// the text does not parse, or the parser cannot say where a scalar is.
/// For masking a scalar's text by what it means (`imprint fetch`).
pub fn string_scalars(text: &str) -> Option<Vec<(std::ops::Range<usize>, String)>> {
    use granit_parser::{Event, Parser};
    let mut c = Composer::default();
    let mut out = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.ok()?;
        if let Event::Scalar(t, style, _, tag) = ev {
            if let Ok(serde_json::Value::String(v)) = c.scalar(&t, style, tag.as_deref()) {
                let range = span.byte_range()?;
                text.get(range.clone())?;
                out.push((range, v));
            }
        }
    }
    Some(out)
}

fn line_col(span: &granit_parser::Span) -> (u64, u64) {
    (span.start.line() as u64, span.start.col() as u64 + 1)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CollectionKind {
    Seq,
    Map,
    /// `!!set`: a map whose values are null.
    Set,
    /// `!!omap` / `!!pairs`: a list of one-entry maps, as `[key, value]`.
    Pairs,
}

fn collection_tag(
    tag: Option<&granit_parser::Tag>,
    is_map: bool,
) -> Result<CollectionKind, String> {
    let default = if is_map {
        CollectionKind::Map
    } else {
        CollectionKind::Seq
    };
    let Some(t) = tag else { return Ok(default) };
    if non_specific(t) {
        return Ok(default);
    }
    match (core(t), is_map) {
        (Some("map"), true) | (Some("seq"), false) => Ok(default),
        (Some("set"), true) => Ok(CollectionKind::Set),
        (Some("omap" | "pairs"), false) => Ok(CollectionKind::Pairs),
        _ => Err(format!(
            "unsupported tag {}{} on a {}; cloud-init's YAML loader rejects it too",
            t.handle(),
            t.suffix(),
            if is_map { "mapping" } else { "sequence" }
        )),
    }
}

struct Frame {
    is_map: bool,
    kind: CollectionKind,
    anchor: Option<usize>,
    /// Values in order (keys and values alternate for a mapping), with the
    /// position of each.
    items: Vec<(serde_json::Value, (u64, u64), bool)>,
    nodes: usize,
    at: (u64, u64),
}

/// A finished collection: its value, node count, anchor and position.
type Finished = (serde_json::Value, usize, Option<usize>, (u64, u64));

#[derive(Default)]
struct Composer {
    anchors: std::collections::HashMap<usize, (serde_json::Value, usize)>,
    stack: Vec<Frame>,
    root: Option<serde_json::Value>,
    alias_nodes: usize,
    binary: Vec<String>,
    docs: usize,
}

impl Composer {
    fn push(
        &mut self,
        v: serde_json::Value,
        nodes: usize,
        anchor: Option<usize>,
        at: (u64, u64),
    ) -> Result<(), String> {
        if let Some(a) = anchor {
            self.anchors.insert(a, (v.clone(), nodes));
        }
        match self.stack.last_mut() {
            Some(f) => {
                f.nodes += nodes;
                f.items.push((v, at, false));
            }
            None => self.root = Some(v),
        }
        Ok(())
    }

    fn finish(&mut self, f: Frame) -> Result<Finished, (String, (u64, u64))> {
        use serde_json::Value;
        let v = if !f.is_map {
            let items: Vec<Value> = f.items.into_iter().map(|(v, _, _)| v).collect();
            if f.kind == CollectionKind::Pairs {
                let mut out = Vec::new();
                for it in items {
                    match it {
                        Value::Object(m) if m.len() == 1 => {
                            let (k, v) = m.into_iter().next().expect("one entry");
                            out.push(Value::Array(vec![Value::String(k), v]));
                        }
                        _ => {
                            return Err((
                                "an !!omap or !!pairs item must be a one-entry mapping".into(),
                                f.at,
                            ))
                        }
                    }
                }
                Value::Array(out)
            } else {
                Value::Array(items)
            }
        } else {
            let mut explicit = crate::model::Values::new();
            let mut merged: Vec<crate::model::Values> = Vec::new();
            let mut it = f.items.into_iter();
            while let Some((k, (line, col), _)) = it.next() {
                let (v, _, _) = it.next().unwrap_or((Value::Null, (line, col), false));
                if k == Value::String("<<".into()) {
                    match v {
                        Value::Object(m) => merged.push(m),
                        Value::Array(list) => {
                            for m in list {
                                match m {
                                    Value::Object(m) => merged.push(m),
                                    _ => {
                                        return Err((
                                            "a merge (<<) list must hold mappings".into(),
                                            (line, col),
                                        ))
                                    }
                                }
                            }
                        }
                        _ => {
                            return Err((
                                "a merge (<<) takes a mapping or a list of mappings".into(),
                                (line, col),
                            ))
                        }
                    }
                    continue;
                }
                let key = key_text(k).map_err(|e| (e, (line, col)))?;
                let v = if f.kind == CollectionKind::Set {
                    Value::Null
                } else {
                    v
                };
                match explicit.entry(key) {
                    serde_json::map::Entry::Vacant(e) => {
                        e.insert(v);
                    }
                    serde_json::map::Entry::Occupied(e) => {
                        return Err((
                            format!(
                                "the key {:?} is given twice in one mapping; keep one",
                                e.key()
                            ),
                            (line, col),
                        ));
                    }
                }
            }
            if merged.is_empty() {
                Value::Object(explicit)
            } else {
                // Explicit keys win over merged ones; earlier merges win over
                // later ones.
                let mut out = crate::model::Values::new();
                for m in merged.into_iter().rev() {
                    out.extend(m);
                }
                out.extend(explicit);
                Value::Object(out)
            }
        };
        Ok((v, f.nodes, f.anchor, f.at))
    }

    fn scalar(
        &mut self,
        text: &str,
        style: granit_parser::ScalarStyle,
        tag: Option<&granit_parser::Tag>,
    ) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let plain = matches!(style, granit_parser::ScalarStyle::Plain);
        let Some(t) = tag else {
            return Ok(if plain {
                resolve_plain(text)?
            } else {
                Value::String(text.to_string())
            });
        };
        if non_specific(t) {
            // PyYAML resolves `! 12` as if untagged.
            return if plain {
                resolve_plain(text)
            } else {
                Ok(Value::String(text.to_string()))
            };
        }
        let bad = |what: &str| format!("{text:?} is not {what}");
        match core(t) {
            Some("str") => Ok(Value::String(text.to_string())),
            Some("null") => match text {
                "" | "~" | "null" | "Null" | "NULL" => Ok(Value::Null),
                _ => Err(bad("null")),
            },
            Some("bool") => resolve_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad("a YAML 1.1 boolean")),
            Some("int") => resolve_int(text).ok_or_else(|| bad("an integer")),
            Some("float") => match resolve_float(text) {
                Some(v) => v,
                None => resolve_int(text)
                    .and_then(|v| v.as_f64())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a float")),
            },
            Some("binary") => {
                use base64::Engine;
                let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&clean)
                    .map_err(|e| format!("!!binary is not base64: {e}"))?;
                match String::from_utf8(bytes) {
                    Ok(s) => Ok(Value::String(s)),
                    Err(_) => {
                        self.binary.push(clean.clone());
                        Ok(Value::String(clean))
                    }
                }
            }
            Some("timestamp") => Ok(Value::String(text.to_string())),
            _ => Err(format!(
                "unsupported tag {}{}; cloud-init's YAML loader rejects it too",
                t.handle(),
                t.suffix()
            )),
        }
    }
}

/// The bare `!` tag.
fn non_specific(t: &granit_parser::Tag) -> bool {
    t.handle().is_empty() && t.suffix() == "!"
}

/// The suffix of a `tag:yaml.org,2002:` (`!!`) tag.
fn core(t: &granit_parser::Tag) -> Option<&str> {
    (t.handle() == "tag:yaml.org,2002:").then(|| t.suffix())
}

/// A mapping key as JSON object text (PyYAML keys may be numbers, booleans
/// or null; JSON keys are strings).
fn key_text(k: serde_json::Value) -> Result<String, String> {
    use serde_json::Value;
    match k {
        Value::String(s) => Ok(s),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("a list or mapping cannot be a key".into()),
    }
}

fn resolve_bool(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// A plain scalar through PyYAML's implicit resolvers (YAML 1.1).
fn resolve_plain(t: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(t) {
        return Ok(Value::Bool(b));
    }
    if let Some(v) = resolve_int(t) {
        return Ok(v);
    }
    if let Some(v) = resolve_float(t) {
        return v;
    }
    Ok(Value::String(t.to_string()))
}

fn split_sign(t: &str) -> (bool, &str) {
    match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

/// PyYAML's int resolver and constructor:
/// `[-+]?0b[01_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
///  | [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+` (sexagesimal).
fn resolve_int(t: &str) -> Option<serde_json::Value> {
    let (neg, body) = split_sign(t);
    let digits = |s: &str| s.replace('_', "");
    let magnitude: i128 = if let Some(b) = body.strip_prefix("0b") {
        if !all(b, |c| c == b'0' || c == b'1' || c == b'_') {
            return None;
        }
        let d = digits(b);
        if d.is_empty() {
            0
        } else {
            i128::from_str_radix(&d, 2).ok()?
        }
    } else if let Some(h) = body.strip_prefix("0x") {
        if !all(h, |c| c.is_ascii_hexdigit() || c == b'_') {
            return None;
        }
        let d = digits(h);
        if d.is_empty() {
            0
        } else {
            i128::from_str_radix(&d, 16).ok()?
        }
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        if !all(o, |c| (b'0'..=b'7').contains(&c) || c == b'_') {
            return None;
        }
        let d = digits(o);
        if d.is_empty() {
            0
        } else {
            i128::from_str_radix(&d, 8).ok()?
        }
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !(first
            .as_bytes()
            .first()
            .is_some_and(|c| (b'1'..=b'9').contains(c))
            && all(first, |c| c.is_ascii_digit() || c == b'_'))
        {
            return None;
        }
        let mut n: i128 = digits(first).parse().ok()?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !all(p, |c| c.is_ascii_digit()) {
                return None;
            }
            if p.len() == 2 && p.as_bytes()[0] > b'5' {
                return None;
            }
            n = n.checked_mul(60)?.checked_add(p.parse::<i128>().ok()?)?;
        }
        n
    } else {
        if !(body
            .as_bytes()
            .first()
            .is_some_and(|c| (b'1'..=b'9').contains(c))
            && all(body, |c| c.is_ascii_digit() || c == b'_'))
        {
            return None;
        }
        match digits(body).parse::<i128>() {
            Ok(n) => n,
            // Beyond 128 bits: a float, like any JSON reader would.
            Err(_) => {
                let f: f64 = digits(body).parse().ok()?;
                let f = if neg { -f } else { f };
                return serde_json::Number::from_f64(f).map(serde_json::Value::Number);
            }
        }
    };
    let n = if neg { -magnitude } else { magnitude };
    if let Ok(i) = i64::try_from(n) {
        Some(i.into())
    } else if let Ok(u) = u64::try_from(n) {
        Some(u.into())
    } else {
        serde_json::Number::from_f64(n as f64).map(serde_json::Value::Number)
    }
}

/// PyYAML's float resolver: `[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?`
/// (a dot is required; an exponent needs a sign), sexagesimal
/// `[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`, `.inf`, `.nan`.
/// `Some(Err)` for infinities and NaN, which JSON cannot hold.
fn resolve_float(t: &str) -> Option<Result<serde_json::Value, String>> {
    let (neg, body) = split_sign(t);
    if matches!(body, ".inf" | ".Inf" | ".INF") || (matches!(t, ".nan" | ".NaN" | ".NAN")) {
        return Some(Err(format!(
            "{t} is not a finite number; values are JSON-shaped (quote it for the text)"
        )));
    }
    let value = if body.contains(':') {
        let (int, frac) = body.split_once('.')?;
        let mut parts = int.split(':');
        let first = parts.next()?;
        if !(first.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && all(first, |c| c.is_ascii_digit() || c == b'_'))
        {
            return None;
        }
        let mut n: f64 = first.replace('_', "").parse().ok()?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !all(p, |c| c.is_ascii_digit()) {
                return None;
            }
            if p.len() == 2 && p.as_bytes()[0] > b'5' {
                return None;
            }
            n = n * 60.0 + p.parse::<f64>().ok()?;
        }
        if !frac.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
            return None;
        }
        let f = frac.replace('_', "");
        n + if f.is_empty() {
            0.0
        } else {
            format!("0.{f}").parse::<f64>().ok()?
        }
    } else {
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = mantissa.split_once('.')?;
        if !int.bytes().all(|c| c.is_ascii_digit() || c == b'_')
            || !frac.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        {
            return None;
        }
        if int.starts_with('_')
            || (int.is_empty() && !frac.as_bytes().first().is_some_and(u8::is_ascii_digit))
        {
            return None;
        }
        if int.is_empty() && t.starts_with(['-', '+']) {
            return None;
        }
        if let Some(e) = exp {
            let digits = e.strip_prefix(['-', '+'])?;
            if !all(digits, |c| c.is_ascii_digit()) {
                return None;
            }
        }
        let int = int.replace('_', "");
        let frac = frac.replace('_', "");
        let text = format!(
            "{}.{}{}",
            if int.is_empty() { "0" } else { &int },
            if frac.is_empty() { "0" } else { &frac },
            exp.map(|e| format!("e{e}")).unwrap_or_default()
        );
        text.parse::<f64>().ok()?
    };
    let value = if neg { -value } else { value };
    Some(
        serde_json::Number::from_f64(value)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{t} is not a finite number")),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn string_scalars_give_where_each_string_is_written() {
        let t = "a:\n- content: |\n    one\n    two\n  mode: '0600'\n- content: \"q\\n\"\n  b: !!binary aGVsbG8=\n  n: 12\nd: &a plain\ne: *a\n";
        let got: Vec<(&str, String)> = string_scalars(t)
            .unwrap()
            .into_iter()
            .map(|(r, v)| (&t[r], v))
            .collect();
        let want = [
            ("a", "a"),
            ("content", "content"),
            ("one\n    two\n  ", "one\ntwo\n"),
            ("mode", "mode"),
            ("'0600'", "0600"),
            ("content", "content"),
            ("\"q\\n\"", "q\n"),
            ("b", "b"),
            ("aGVsbG8=", "hello"),
            ("n", "n"),
            ("d", "d"),
            ("plain", "plain"),
            ("e", "e"),
        ];
        let want: Vec<(&str, String)> = want.iter().map(|(a, b)| (*a, b.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(string_scalars("a: [\n"), None);
    }
    use super::*;

    /// A key of `files[i].env` through an alias, merged lists, inline
    /// merges and merges within merges; nothing where there is none.
    #[test]
    fn map_keys_located_through_aliases_and_merges() {
        let text = "x: &a\n  A: 1\ny: &b\n  <<: *a\n  B: 1\nfiles:\n  - env: *a\n  - env:\n      <<: [*b, {C: 1}]\n      A: 2\n  - path: /p\n";
        let item_map_key_at = |text, list, i, map, k| {
            key_at(text, &[Step::Key(list), Step::Index(i), Step::Key(map)], k)
        };
        let at = |i, k| item_map_key_at(text, "files", i, "env", k).map(|a| a.to_string());
        assert_eq!(at(0, "A").as_deref(), Some("line 2, column 3"));
        // Its own key first.
        assert_eq!(at(1, "A").as_deref(), Some("line 10, column 7"));
        assert_eq!(
            at(1, "B").as_deref(),
            Some("line 5, column 3 (merged in with << at line 9)")
        );
        assert_eq!(
            at(1, "C").as_deref(),
            Some("line 9, column 17 (merged in with << at line 9)")
        );
        assert_eq!(at(2, "A"), None);
        assert_eq!(at(3, "A"), None);
        assert_eq!(item_map_key_at(text, "x", 0, "env", "A"), None);
        assert_eq!(
            item_map_key_at("files: [unclosed", "files", 0, "env", "A"),
            None
        );
    }
    use serde_json::json;

    #[test]
    fn item_fields_as_written() {
        let text = "files:\n  - path: /a\n    mode: 0640\n  - {path: /b, mode: 640}\n  - path: /c\n    mode: &m \"0600\"\n  - path: /d\n    ? [complex]\n    : {mode: 1}\n    mode: *m\n  - path: /e\n    env: {mode: 2}\nother:\n  - mode: 3\n";
        let written = item_fields_written(text, "files", "mode");
        let got: Vec<(usize, &str, u64, bool)> = written
            .iter()
            .map(|(i, w)| (*i, w.text.as_str(), w.line, w.plain))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "0640", 3, true),
                (1, "640", 4, true),
                (2, "0600", 6, false),
                (3, "0600", 6, false),
            ]
        );
        assert!(item_fields_written("files: [", "files", "mode").is_empty());
    }

    /// A field merged in (`<<`) is the scalar of the mapping it comes from,
    /// with the merge's precedence: the item's own key, then the merged
    /// mappings in order, through merges within merges and lists.
    #[test]
    fn item_fields_merged_in() {
        let text = "\
files:
  - &a
    path: /a
    mode: 640
  - path: /b
    <<: *a
  - path: /c
    <<: *a
    mode: \"0600\"
  - &d
    <<: {owner: x, mode: 0755}
  - <<: [{path: /e}, *d, *a]
  - <<: {<<: *d}
  - path: /g
    <<: &l [{owner: y}, {mode: 0644}]
  - <<: *l
  - !!merge <<: {mode: 1}
  - \"<<\": {mode: 2}
";
        let got: Vec<(usize, String, u64, bool)> = item_fields_written(text, "files", "mode")
            .into_iter()
            .map(|(i, w)| (i, w.text, w.line, w.merged))
            .collect();
        let want = [
            (0, "640", 4, false),
            (1, "640", 4, true),
            (2, "0600", 9, false),
            (3, "0755", 11, true),
            (4, "0755", 11, true),
            (5, "0755", 11, true),
            (6, "0644", 15, true),
            (7, "0644", 15, true),
            (8, "1", 17, true),
        ];
        let want: Vec<(usize, String, u64, bool)> = want
            .iter()
            .map(|(i, t, l, m)| (*i, t.to_string(), *l, *m))
            .collect();
        assert_eq!(got, want);
    }

    fn v(t: &str) -> serde_json::Value {
        parse_value(t).unwrap().value
    }

    #[test]
    fn pyyaml_scalars() {
        // Each expectation is what PyYAML 6 (cloud-init's loader) gives.
        assert_eq!(
            v("[yes, No, ON, off, true, False, y, n, Y]"),
            json!([true, false, true, false, true, false, "y", "n", "Y"])
        );
        assert_eq!(
            v("[0644, 0o644, 644, 0x1f, 1_000, 0b101, 09, 012, -017, +12, 0, 1:20, 0_644]"),
            json!([420, "0o644", 644, 31, 1000, 5, "09", 10, -15, 12, 0, 80, 420])
        );
        assert_eq!(
            v("[1.5, 1e3, 1.0e3, 1.0e+3, .5, 6.8523015e+5, 1., -.5, 1:20.5, 1_0.5]"),
            json!([1.5, "1e3", "1.0e3", 1000.0, 0.5, 685230.15, 1.0, "-.5", 80.5, 10.5])
        );
        assert_eq!(
            v("[2001-12-14, ~, null, '', \"0644\", '1.10', 1.10, a b]"),
            json!(["2001-12-14", null, null, "", "0644", "1.10", 1.1, "a b"])
        );
        assert_eq!(
            v("{1: a, on: b, ~: c}"),
            json!({"1": "a", "true": "b", "null": "c"})
        );
        assert_eq!(v("\"write_files\": [1]"), json!({"write_files": [1]}));
        assert_eq!(v(""), json!(null));
        assert_eq!(v("# only a comment\n"), json!(null));
    }

    #[test]
    fn tags_anchors_merges() {
        assert_eq!(
            v("[!!str 0644, !!int '0644', !!float '1', !!bool 'yes', !!binary aGVsbG8=, ! 12]"),
            json!(["0644", 420, 1.0, true, "hello", 12])
        );
        let d = parse_value("a: !!binary H4sIAAAAAAAAA0vLTy9KLUoBAEFkq5wIAAAA\n").unwrap();
        assert_eq!(
            d.binary,
            vec!["H4sIAAAAAAAAA0vLTy9KLUoBAEFkq5wIAAAA".to_string()]
        );
        assert_eq!(
            v("base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\nlist: [*b]\n"),
            json!({"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}, "list": [{"x": 1, "y": 2}]})
        );
        assert_eq!(
            v("a: &a {x: 1}\nb: &b {x: 2, z: 2}\nc: {<<: [*a, *b]}\n")["c"],
            json!({"x": 1, "z": 2})
        );
        assert_eq!(v("!!set {a, b}"), json!({"a": null, "b": null}));
    }

    #[test]
    fn errors_are_located() {
        let e = parse_value("a: 1\nb: [1\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = parse_value("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1), "{e:?}");
        assert!(e.message.contains("given twice"), "{e:?}");
        let e = parse_value("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("single document"), "{e:?}");
        let e = parse_value("a: !custom x\n").unwrap_err();
        assert!(e.message.contains("unsupported tag"), "{e:?}");
        assert!(parse_value("a: .inf").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_value(&deep).unwrap_err().message.contains("deeper"));
    }

    #[test]
    fn alias_bombs_stop() {
        let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            t.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse_value(&t).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{e:?}");
    }
}
