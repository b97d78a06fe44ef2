//! Stage 3, decode: raw user-data bytes -> ordered parts (SPEC §1.3).
//!
//! Layers are peeled by sniffing bytes: base64 (when the whole payload is
//! base64), gzip (by magic bytes), MIME multipart (nested, with transfer
//! encodings), then each part is typed by its Content-Type or first line.
//! Pure: bytes in, parts out. Every limit is its own error.
//!
//! Why this shape:
//! - cloud-init is the reference. A part is typed the way its
//!   `UserDataProcessor` types it (`cloudinit/user_data.py`): an explicit
//!   Content-Type wins, except `text/plain`, `text/x-not-multipart` and
//!   `text/x-shellscript`, which are typed by their first line (case-folded,
//!   leading white space skipped, longest prefix first). Parts cloud-init
//!   would leave untyped are imprint's values: JSON when they start with `{`,
//!   plain YAML otherwise.
//! - MIME is parsed here, not by a mail library: a mail parser has no part or
//!   allocation limits (16 MiB of boundary lines would make millions of parts
//!   before any check could run), converts charsets lossily, and applies mail
//!   recovery heuristics that Python's `email` (cloud-init's parser) does not.
//!   The subset user-data uses is small: headers with folding, a
//!   `Content-Type` with a `boundary`, boundary lines, and the transfer
//!   encodings base64, quoted-printable, 7bit, 8bit and binary.
//! - Every buffer is bounded while it is produced: gzip is inflated through a
//!   `take(cap + 1)` reader so a bomb stops at the cap, and parts are counted
//!   while the multipart is split, so no input allocates past the caps.

use base64::Engine;
use std::fmt;
use std::io::Read;

/// Caps on what decode accepts (SPEC §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Raw user-data, bytes (16 MiB).
    pub raw: usize,
    /// Total after decompression and decoding, bytes (64 MiB).
    pub decompressed: usize,
    /// MIME nesting depth (8).
    pub depth: usize,
    /// Number of parts (1000).
    pub parts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            raw: 16 << 20,
            decompressed: 64 << 20,
            depth: 8,
            parts: 1000,
        }
    }
}

/// How many encoding layers (base64, gzip) one payload may wrap. A gzip
/// "quine" decompresses to itself; without a bound it would loop forever.
pub const MAX_LAYERS: usize = 8;

/// What a part is, from its Content-Type or first line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// `#cloud-config` / `text/cloud-config`: YAML directives.
    CloudConfig,
    /// `#cloud-config-archive` / `text/cloud-config-archive`.
    CloudConfigArchive,
    /// `application/json` or a document starting with `{`: values.
    Json,
    /// Plain YAML (a mapping without a `#cloud-config` header): values.
    Yaml,
    /// `#!` / `text/x-shellscript`.
    Script,
    /// `## template: jinja` / `text/jinja2`.
    Jinja,
    /// `#include` / `text/x-include-url`.
    Include,
    /// `#cloud-boothook` / `text/cloud-boothook`.
    Boothook,
    /// `#part-handler` / `text/part-handler`.
    PartHandler,
    /// Empty or whitespace-only.
    Empty,
    /// Anything else, with its content type.
    Other(String),
}

impl fmt::Display for PartKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            PartKind::CloudConfig => "cloud-config",
            PartKind::CloudConfigArchive => "cloud-config-archive",
            PartKind::Json => "json",
            PartKind::Yaml => "yaml",
            PartKind::Script => "shell script",
            PartKind::Jinja => "jinja template",
            PartKind::Include => "include",
            PartKind::Boothook => "boothook",
            PartKind::PartHandler => "part-handler",
            PartKind::Empty => "empty",
            PartKind::Other(t) => return write!(f, "{t}"),
        };
        f.write_str(s)
    }
}

/// One decoded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based position in document order (what messages call "part N").
    pub number: usize,
    /// The Content-Type it came with (or was inferred).
    pub content_type: String,
    pub kind: PartKind,
    /// The MIME filename, when it had one.
    pub filename: Option<String>,
    /// The decoded body (transfer encoding removed).
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("user-data is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "user-data decompresses past the {limit}-byte limit (a gzip bomb?); stopped at the cap"
    )]
    TooLargeDecompressed { limit: usize },
    #[error("user-data nests MIME multiparts deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("user-data has more than {limit} parts")]
    TooManyParts { limit: usize },
    #[error("user-data in {whence} is wrapped in more than {limit} layers of base64/gzip")]
    TooManyLayers { whence: String, limit: usize },
    #[error("invalid gzip in {whence}: {message}")]
    Gzip { whence: String, message: String },
    #[error("invalid base64 in {whence}: {message}")]
    Base64 { whence: String, message: String },
    #[error("invalid MIME multipart in {whence}: {message}")]
    Mime { whence: String, message: String },
}

/// Decode raw user-data into its parts, in document order.
pub fn decode(raw: &[u8], limits: &Limits) -> Result<Vec<Part>, DecodeError> {
    if raw.len() > limits.raw {
        return Err(DecodeError::TooLarge {
            size: raw.len(),
            limit: limits.raw,
        });
    }
    let mut d = Decoder {
        limits,
        produced: 0,
        entities: 0,
        parts: Vec::new(),
    };
    let whence = "the user-data";
    let (data, _) = d.peel(raw.to_vec(), whence)?;
    if let Some(headers) = mime_headers(&data) {
        let body = &data[headers.body_at..];
        d.entity(&headers.fields, body, 0, whence)?;
    } else {
        d.leaf(None, None, data);
    }
    let mut parts = d.parts;
    for (i, p) in parts.iter_mut().enumerate() {
        p.number = i + 1;
    }
    Ok(parts)
}

struct Decoder<'l> {
    limits: &'l Limits,
    /// Bytes produced by decoding so far (the decompressed cap).
    produced: usize,
    /// Body parts seen (leaves and nested multiparts), for the parts cap.
    entities: usize,
    parts: Vec<Part>,
}

impl Decoder<'_> {
    fn remaining(&self) -> usize {
        self.limits.decompressed.saturating_sub(self.produced)
    }

    fn charge(&mut self, n: usize) -> Result<(), DecodeError> {
        self.produced = self.produced.saturating_add(n);
        if self.produced > self.limits.decompressed {
            return Err(DecodeError::TooLargeDecompressed {
                limit: self.limits.decompressed,
            });
        }
        Ok(())
    }

    /// Remove whole-payload encoding layers (gzip by magic, base64 when the
    /// whole payload is base64 of text or gzip). Returns the data and
    /// whether any layer was removed.
    fn peel(&mut self, mut data: Vec<u8>, whence: &str) -> Result<(Vec<u8>, bool), DecodeError> {
        let mut peeled = false;
        for _ in 0..=MAX_LAYERS {
            if is_gzip(&data) {
                let out = gunzip(&data, self.remaining(), whence, self.limits)?;
                self.charge(out.len())?;
                data = out;
            } else if let Some(out) = whole_base64(&data) {
                self.charge(out.len())?;
                data = out;
            } else {
                return Ok((data, peeled));
            }
            peeled = true;
        }
        Err(DecodeError::TooManyLayers {
            whence: whence.to_string(),
            limit: MAX_LAYERS,
        })
    }

    /// One MIME entity (a message or a body part) with its parsed headers.
    fn entity(
        &mut self,
        fields: &[(String, String)],
        body: &[u8],
        depth: usize,
        whence: &str,
    ) -> Result<(), DecodeError> {
        let ct = header(fields, "content-type").map(ContentType::parse);
        if let Some(ct) = ct.as_ref().filter(|c| c.mime.starts_with("multipart/")) {
            let depth = depth + 1;
            if depth > self.limits.depth {
                return Err(DecodeError::TooDeep {
                    limit: self.limits.depth,
                });
            }
            let boundary = ct.param("boundary").ok_or_else(|| DecodeError::Mime {
                whence: whence.to_string(),
                message: format!(
                    "Content-Type {} has no boundary parameter; add boundary=\"...\"",
                    ct.mime
                ),
            })?;
            return self.multipart(body, boundary.as_bytes(), depth, whence);
        }
        let cte = header(fields, "content-transfer-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let decoded = match cte.as_str() {
            "" | "7bit" | "8bit" | "binary" => body.to_vec(),
            "base64" => {
                let clean: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                b64().decode(&clean).map_err(|e| DecodeError::Base64 {
                    whence: whence.to_string(),
                    message: format!("Content-Transfer-Encoding base64: {}", base64_error(&e)),
                })?
            }
            "quoted-printable" => quoted_printable(body),
            other => {
                return Err(DecodeError::Mime {
                    whence: whence.to_string(),
                    message: format!(
                        "unsupported Content-Transfer-Encoding {other:?}; use base64, \
                         quoted-printable, 7bit or 8bit"
                    ),
                })
            }
        };
        if cte == "base64" || cte == "quoted-printable" {
            self.charge(decoded.len())?;
        }
        let mime = ct.as_ref().map(|c| c.mime.clone());
        let explicit_gzip = mime.as_deref().is_some_and(|m| DECOMP_TYPES.contains(&m));
        let (data, peeled) = self.peel(decoded, whence)?;
        if explicit_gzip && !peeled {
            return Err(DecodeError::Gzip {
                whence: whence.to_string(),
                message: format!(
                    "the part says Content-Type {} but its body is not gzip",
                    mime.as_deref().unwrap_or_default()
                ),
            });
        }
        if peeled {
            // A layer came off: the part may itself be a whole MIME message
            // (gzip of a multipart); it nests one level deeper.
            if let Some(h) = mime_headers(&data) {
                if depth + 1 > self.limits.depth {
                    return Err(DecodeError::TooDeep {
                        limit: self.limits.depth,
                    });
                }
                return self.entity(&h.fields, &data[h.body_at..], depth + 1, whence);
            }
        }
        // A gzip content type says nothing about what is inside: type the
        // decompressed payload by its first line, as cloud-init does.
        let mime = if explicit_gzip && peeled { None } else { mime };
        let filename = header(fields, "content-disposition")
            .map(ContentType::parse)
            .and_then(|d| d.param("filename").map(str::to_string))
            .or_else(|| {
                ct.as_ref()
                    .and_then(|c| c.param("name").map(str::to_string))
            });
        self.leaf(mime, filename, data);
        Ok(())
    }

    fn multipart(
        &mut self,
        body: &[u8],
        boundary: &[u8],
        depth: usize,
        whence: &str,
    ) -> Result<(), DecodeError> {
        let mut lines = Lines::new(body);
        // Preamble: skip to the first boundary line.
        let mut started = false;
        for (_, line, _) in lines.by_ref() {
            if let Some(close) = boundary_line(line, boundary) {
                if close {
                    return Ok(());
                }
                started = true;
                break;
            }
        }
        if !started {
            return Err(DecodeError::Mime {
                whence: whence.to_string(),
                message: format!(
                    "the boundary {:?} of the multipart never appears in its body",
                    String::from_utf8_lossy(boundary)
                ),
            });
        }
        let mut start = lines.pos;
        // `end` of a part is the start of the line ending before the
        // boundary line: that line ending belongs to the boundary.
        let mut prev_eol_start = None;
        loop {
            let Some((at, line, eol_start)) = lines.next() else {
                // No closing boundary: the last part runs to the end (Python's
                // email does the same).
                self.body_part(&body[start..], depth, whence)?;
                return Ok(());
            };
            if let Some(close) = boundary_line(line, boundary) {
                let end = prev_eol_start.unwrap_or(at).max(start);
                self.body_part(&body[start..end], depth, whence)?;
                if close {
                    return Ok(());
                }
                start = lines.pos;
                prev_eol_start = None;
            } else {
                prev_eol_start = Some(eol_start);
            }
        }
    }

    fn body_part(&mut self, raw: &[u8], depth: usize, whence: &str) -> Result<(), DecodeError> {
        self.entities += 1;
        if self.entities > self.limits.parts {
            return Err(DecodeError::TooManyParts {
                limit: self.limits.parts,
            });
        }
        let whence = format!("{whence}, MIME part {}", self.parts.len() + 1);
        let h = part_headers(raw);
        self.entity(&h.fields, &raw[h.body_at..], depth, &whence)
    }

    fn leaf(&mut self, mime: Option<String>, filename: Option<String>, body: Vec<u8>) {
        let (kind, content_type) = classify(mime.as_deref(), &body);
        self.parts.push(Part {
            number: 0,
            content_type,
            kind,
            filename,
            body,
        });
    }
}

/// Content types cloud-init decompresses before typing the payload.
const DECOMP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

/// cloud-init's first-line prefixes (`handlers.INCLUSION_TYPES_MAP`),
/// longest first.
const PREFIXES: &[(&str, &str)] = &[
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("## template: jinja", "text/jinja2"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#part-handler", "text/part-handler"),
    ("#cloud-config", "text/cloud-config"),
    ("#include", "text/x-include-url"),
    ("#!", "text/x-shellscript"),
];

/// The content type cloud-init infers from a payload's first bytes.
pub fn type_from_starts_with(body: &[u8]) -> Option<&'static str> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let head = &body[start..body.len().min(start + 32)];
    PREFIXES
        .iter()
        .find(|(p, _)| head.len() >= p.len() && head[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        .map(|(_, t)| *t)
}

/// Type a part: `(kind, effective content type)`.
fn classify(mime: Option<&str>, body: &[u8]) -> (PartKind, String) {
    let mime = mime.unwrap_or("text/plain");
    let sniff = matches!(
        mime,
        "text/plain" | "text/x-not-multipart" | "text/x-shellscript"
    );
    let ct = if sniff {
        type_from_starts_with(body).unwrap_or(mime)
    } else {
        mime
    };
    let kind = match ct {
        "text/cloud-config" => PartKind::CloudConfig,
        "text/cloud-config-archive" => PartKind::CloudConfigArchive,
        "application/json" | "text/json" | "text/x-json" | "application/x-json" => PartKind::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => PartKind::Yaml,
        "text/x-shellscript"
        | "text/x-shellscript-per-boot"
        | "text/x-shellscript-per-instance"
        | "text/x-shellscript-per-once" => PartKind::Script,
        "text/jinja2" => PartKind::Jinja,
        "text/x-include-url" | "text/x-include-once-url" => PartKind::Include,
        "text/cloud-boothook" => PartKind::Boothook,
        "text/part-handler" => PartKind::PartHandler,
        "text/plain" | "text/x-not-multipart" => {
            let t = trim_ascii_start(body);
            if t.is_empty() {
                PartKind::Empty
            } else if t.starts_with(b"{") || t.starts_with("\u{feff}{".as_bytes()) {
                PartKind::Json
            } else {
                PartKind::Yaml
            }
        }
        other => PartKind::Other(other.to_string()),
    };
    (kind, ct.to_string())
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[i..]
}

fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Inflate a gzip stream (all members), stopping at `cap` bytes of output.
/// Trailing bytes after the last member are an error (NUL padding, as tape
/// and some tools add, is accepted, as `gzip -d` does).
fn gunzip(data: &[u8], cap: usize, whence: &str, limits: &Limits) -> Result<Vec<u8>, DecodeError> {
    let err = |message: String| DecodeError::Gzip {
        whence: whence.to_string(),
        message,
    };
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if !is_gzip(rest) {
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            let at = data.len() - rest.len();
            return Err(err(format!(
                "{} bytes of trailing garbage after the gzip stream at byte {at}",
                rest.len()
            )));
        }
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        let room = (cap - out.len()) as u64;
        (&mut dec)
            .take(room + 1)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("{e}")))?;
        if out.len() > cap {
            return Err(DecodeError::TooLargeDecompressed {
                limit: limits.decompressed,
            });
        }
        rest = dec.into_inner();
    }
    Ok(out)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

/// The decoded payload when the whole of `data` is base64 (white space
/// allowed) of gzip or of UTF-8 text. Anything else is left alone: a
/// `#cloud-config`, a JSON or a YAML document always has characters outside
/// the base64 alphabet, and a lone word that happens to be valid base64
/// decodes to bytes that are not text.
fn whole_base64(data: &[u8]) -> Option<Vec<u8>> {
    let mut n = 0usize;
    for &b in data {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => n += 1,
            b if b.is_ascii_whitespace() => {}
            _ => return None,
        }
    }
    if n < 4 {
        return None;
    }
    let clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let out = b64().decode(&clean).ok()?;
    if out.is_empty() {
        return None;
    }
    (is_gzip(&out) || (std::str::from_utf8(&out).is_ok() && !out.contains(&0))).then_some(out)
}

/// A base64 error in words (white space was removed first, so offsets
/// count the base64 characters).
fn base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, b) => format!(
            "{:?} is not a base64 character (at base64 character {at})",
            char::from(*b)
        ),
        base64::DecodeError::InvalidLength(n) => {
            format!("{n} base64 characters cannot be complete (a truncated payload?)")
        }
        base64::DecodeError::InvalidLastSymbol { offset, symbol, .. } => format!(
            "the last character {:?} (at {offset}) has bits set past the end of the data",
            char::from(*symbol)
        ),
        _ => "the = padding is wrong".to_string(),
    }
}

/// Decode quoted-printable as Python's `binascii.a2b_qp` does (what
/// cloud-init's `email` uses): `=XX` is a byte (either case), `=` before a
/// line end is a soft break, `==` is `=`, a trailing `=` is dropped, and any
/// other `=` is kept as it is.
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        match body.get(i + 1).copied() {
            None => i += 1,
            Some(b'\n') => i += 2,
            Some(b'\r') if body.get(i + 2) == Some(&b'\n') => i += 3,
            Some(b'\r') => i += 2,
            Some(b'=') => {
                out.push(b'=');
                i += 2;
            }
            Some(h) => match (hex(h), body.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
        }
    }
    out
}

#[cfg(test)]
#[test]
fn quoted_printable_as_python() {
    // Each pair checked against Python's quopri.decodestring.
    for (enc, dec) in [
        (&b"a  \nb"[..], &b"a  \nb"[..]),
        (b"a=\n b", b"a b"),
        (b"a= \nb", b"a= \nb"),
        (b"==41", b"=41"),
        (b"=4", b"=4"),
        (b"a =20\nb", b"a  \nb"),
        (b"x=\r\ny", b"xy"),
        (b"=4g", b"=4g"),
        (b"a=", b"a"),
        (b"=3d=C3=A9", "=\u{e9}".as_bytes()),
    ] {
        assert_eq!(
            quoted_printable(enc),
            dec,
            "{}",
            String::from_utf8_lossy(enc)
        );
    }
}

/// Lines of a buffer: `(start, line without EOL, start of its EOL)`; `pos`
/// is the start of the next line.
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(data: &'a [u8]) -> Lines<'a> {
        Lines { data, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let at = self.pos;
        let rest = &self.data[at..];
        let (line_len, eol_len) = match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => (i, 2),
            Some(i) => (i, 1),
            None => (rest.len(), 0),
        };
        self.pos = at + line_len + eol_len;
        Some((at, &rest[..line_len], at + line_len))
    }
}

/// `Some(is_close)` when `line` is `--boundary` (or `--boundary--`),
/// optionally followed by spaces and tabs.
fn boundary_line(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|b| *b == b' ' || *b == b'\t')
        .then_some(close)
}

/// Parsed header fields of an entity, and where its body starts.
struct Headers {
    /// Lower-case name, unfolded value.
    fields: Vec<(String, String)>,
    body_at: usize,
}

fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| (33..=126).contains(b) && *b != b':')
}

/// Headers of a body part. A part that starts with an empty line has none;
/// a line that is neither a header nor a continuation starts the body (as
/// Python's `email` treats it).
fn part_headers(raw: &[u8]) -> Headers {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut lines = Lines::new(raw);
    let mut body_at = 0;
    while let Some((at, line, _)) = lines.next() {
        if line.is_empty() {
            body_at = lines.pos;
            return Headers { fields, body_at };
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(&String::from_utf8_lossy(line));
                body_at = lines.pos;
                continue;
            }
        }
        match line.iter().position(|&b| b == b':') {
            Some(i) if is_field_name(trim_end(&line[..i])) => {
                let name = String::from_utf8_lossy(trim_end(&line[..i])).to_ascii_lowercase();
                let value = String::from_utf8_lossy(&line[i + 1..]).into_owned();
                fields.push((name, value));
                body_at = lines.pos;
            }
            _ => {
                return Headers {
                    fields,
                    body_at: at,
                }
            }
        }
    }
    Headers {
        fields,
        body_at: body_at.max(lines.pos),
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(0, |i| i + 1);
    &b[..n]
}

/// The headers of a whole payload when it is a MIME message: it starts with
/// a header block that has a `MIME-Version` or a multipart `Content-Type`.
/// (cloud-init looks for `mime-version:` in the first 4 KiB; requiring it
/// in a leading header block keeps a `#cloud-config` that merely mentions
/// it from being taken for MIME.)
fn mime_headers(data: &[u8]) -> Option<Headers> {
    let first = data.split(|b| *b == b'\n').next()?;
    let colon = first.iter().position(|&b| b == b':')?;
    if !is_field_name(trim_end(&first[..colon])) {
        return None;
    }
    let h = part_headers(data);
    let is_mime = h.fields.iter().any(|(n, v)| {
        n == "mime-version"
            || (n == "content-type" && ContentType::parse(v).mime.starts_with("multipart/"))
    });
    is_mime.then_some(h)
}

fn header<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A parsed `Content-Type` (or `Content-Disposition`): lower-case value
/// and parameters.
struct ContentType {
    mime: String,
    params: Vec<(String, String)>,
}

impl ContentType {
    fn parse(v: &str) -> ContentType {
        let mut it = split_params(v).into_iter();
        let mime = it
            .next()
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_default();
        // Python's email falls back to text/plain for a malformed type.
        let mime = match mime.split_once('/') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('/') => mime,
            _ if mime.contains('/') => "text/plain".to_string(),
            _ => mime,
        };
        let params = it
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        ContentType { mime, params }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Split on `;` outside double quotes.
fn split_params(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        let cur = out.last_mut().expect("never empty");
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(String::new()),
            _ => cur.push(c),
        }
    }
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut esc = false;
            for c in inner.chars() {
                if esc {
                    out.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn one(raw: &[u8]) -> Part {
        let mut p = decode(raw, &Limits::default()).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        p.remove(0)
    }

    #[test]
    fn plain_documents_are_typed_by_first_line() {
        let p = one(b"#cloud-config\nwrite_files: []\n");
        assert_eq!(p.kind, PartKind::CloudConfig);
        assert_eq!(p.content_type, "text/cloud-config");
        assert_eq!(one(b"  #Cloud-Config\n").kind, PartKind::CloudConfig);
        assert_eq!(one(b"#!/bin/sh\necho hi\n").kind, PartKind::Script);
        assert_eq!(
            one(b"## template: jinja\n#cloud-config\n").kind,
            PartKind::Jinja
        );
        assert_eq!(one(b"#include\nhttp://x\n").kind, PartKind::Include);
        assert_eq!(one(b"#include-once\nhttp://x\n").kind, PartKind::Include);
        assert_eq!(one(b"#cloud-boothook\n").kind, PartKind::Boothook);
        assert_eq!(one(b"#part-handler\n").kind, PartKind::PartHandler);
        assert_eq!(
            one(b"#cloud-config-archive\n- x\n").kind,
            PartKind::CloudConfigArchive
        );
        assert_eq!(one(b" {\"a\": 1}").kind, PartKind::Json);
        assert_eq!(one(b"db:\n  host: x\n").kind, PartKind::Yaml);
        assert_eq!(one(b"").kind, PartKind::Empty);
        assert_eq!(one(b" \n\t\n").kind, PartKind::Empty);
    }

    #[test]
    fn gzip_and_base64_layers() {
        let doc = b"#cloud-config\nimprint: {a: 1}\n";
        let b64 = base64::engine::general_purpose::STANDARD;
        for raw in [
            gz(doc),
            b64.encode(doc).into_bytes(),
            b64.encode(gz(doc)).into_bytes(),
            gz(b64.encode(gz(doc)).as_bytes()),
        ] {
            let p = one(&raw);
            assert_eq!(p.body, doc);
            assert_eq!(p.kind, PartKind::CloudConfig);
        }
        // Line-wrapped base64, as `base64` prints it.
        let wrapped: String = b64
            .encode(gz(doc))
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(one(wrapped.as_bytes()).body, doc);
    }

    #[test]
    fn a_word_that_is_valid_base64_stays_a_word() {
        assert_eq!(one(b"true").body, b"true");
        assert_eq!(one(b"true").kind, PartKind::Yaml);
    }

    #[test]
    fn gzip_trailing_garbage_is_an_error() {
        let mut raw = gz(b"#cloud-config\n");
        raw.extend_from_slice(b"junk");
        let e = decode(&raw, &Limits::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("4 bytes of trailing garbage after the gzip stream"),
            "{e}"
        );
        // Several members are one stream; NUL padding is fine.
        let mut raw = gz(b"#cloud-");
        raw.extend(gz(b"config\n"));
        raw.extend([0u8; 16]);
        assert_eq!(one(&raw).body, b"#cloud-config\n");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let raw = gz(b"#cloud-config\nlots of text here\n");
        let e = decode(&raw[..raw.len() - 6], &Limits::default()).unwrap_err();
        assert!(matches!(e, DecodeError::Gzip { .. }), "{e}");
    }

    #[test]
    fn limits() {
        let l = Limits {
            raw: 10,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&[b'a'; 11], &l),
            Err(DecodeError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        let l = Limits {
            decompressed: 100,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&gz(&[b'a'; 101]), &l),
            Err(DecodeError::TooLargeDecompressed { limit: 100 })
        ));
        assert_eq!(one(&gz(&[b'a'; 100])).body.len(), 100);
    }

    #[test]
    fn multipart_with_encodings_and_folded_headers() {
        let raw =
            b"Content-Type: multipart/mixed;\r\n boundary=\"XYZ\"\r\nMIME-Version: 1.0\r\n\r\n\
preamble\r\n\
--XYZ\r\n\
Content-Type: text/cloud-config; charset=\"utf-8\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"cc.yaml\"\r\n\
\r\n\
I2Nsb3VkLWNvbmZpZwphOiAxCg==\r\n\
--XYZ\r\n\
Content-Type: text/x-shellscript\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
#!/bin/sh\r\n\
echo caf=C3=A9 lo=\r\n\
ng\r\n\
--XYZ\r\n\
\r\n\
{\"a\": 2}\r\n\
--XYZ--\r\n\
epilogue\r\n";
        let p = decode(raw, &Limits::default()).unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].kind, PartKind::CloudConfig);
        assert_eq!(p[0].body, b"#cloud-config\na: 1\n");
        assert_eq!(p[0].filename.as_deref(), Some("cc.yaml"));
        assert_eq!(p[1].kind, PartKind::Script);
        assert_eq!(p[1].body, "#!/bin/sh\r\necho café long".as_bytes());
        assert_eq!(p[2].kind, PartKind::Json);
        assert_eq!(p[2].content_type, "text/plain");
        assert_eq!(p[2].body, b"{\"a\": 2}");
        assert_eq!(
            p.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn nested_multipart_and_gzip_parts() {
        let inner = b"Content-Type: multipart/mixed; boundary=in\n\n--in\nContent-Type: text/cloud-config\n\na: 1\n--in--\n";
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw =
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=out\n\n--out\n".to_vec();
        raw.extend_from_slice(inner);
        raw.extend_from_slice(
            b"--out\nContent-Type: application/x-gzip\nContent-Transfer-Encoding: base64\n\n",
        );
        raw.extend_from_slice(b64.encode(gz(b"#!/bin/sh\n")).as_bytes());
        raw.extend_from_slice(b"\n--out--\n");
        let p = decode(&raw, &Limits::default()).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].kind, PartKind::CloudConfig);
        assert_eq!(p[0].body, b"a: 1");
        assert_eq!(p[1].kind, PartKind::Script);
        assert_eq!(p[1].body, b"#!/bin/sh\n");
    }

    #[test]
    fn depth_and_part_limits() {
        let mut raw = b"#cloud-config\n".to_vec();
        for i in 0..9 {
            let mut next = format!(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            )
            .into_bytes();
            next.extend(&raw);
            next.extend(format!("\n--b{i}--\n").as_bytes());
            raw = next;
        }
        assert!(matches!(
            decode(&raw, &Limits::default()),
            Err(DecodeError::TooDeep { limit: 8 })
        ));
        let mut raw = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n".to_vec();
        for _ in 0..1001 {
            raw.extend(b"--b\n\n{}\n");
        }
        raw.extend(b"--b--\n");
        assert!(matches!(
            decode(&raw, &Limits::default()),
            Err(DecodeError::TooManyParts { limit: 1000 })
        ));
    }

    #[test]
    fn content_type_wins_over_first_line_except_for_plain() {
        let raw = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/cloud-config\n\n#!/bin/sh\n--b\nContent-Type: text/x-shellscript\n\n#cloud-config\n--b\nContent-Type: application/octet-stream\n\nx\n--b--\n";
        let p = decode(raw, &Limits::default()).unwrap();
        assert_eq!(p[0].kind, PartKind::CloudConfig);
        assert_eq!(p[1].kind, PartKind::CloudConfig);
        assert_eq!(
            p[2].kind,
            PartKind::Other("application/octet-stream".into())
        );
    }

    #[test]
    fn mime_errors() {
        let raw = b"MIME-Version: 1.0\nContent-Type: multipart/mixed\n\nx\n";
        let e = decode(raw, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("no boundary parameter"), "{e}");
        let raw = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\nx\n";
        let e = decode(raw, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("never appears"), "{e}");
        let raw = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n!!!\n--b--\n";
        let e = decode(raw, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("MIME part 1"), "{e}");
    }

    #[test]
    fn cloud_config_mentioning_mime_is_not_mime() {
        let p = one(b"#cloud-config\n# MIME-Version: 1.0\n");
        assert_eq!(p.kind, PartKind::CloudConfig);
    }

    #[test]
    fn single_mime_message_without_multipart() {
        let p = one(b"MIME-Version: 1.0\nContent-Type: text/cloud-config\n\na: 1\n");
        assert_eq!(p.kind, PartKind::CloudConfig);
        assert_eq!(p.body, b"a: 1\n");
    }
}
