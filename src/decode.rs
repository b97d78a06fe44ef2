//! Stage 3, decode: raw user-data bytes -> ordered parts (SPEC §1.3).
//!
//! Layers are peeled by sniffing bytes: base64 (when the whole payload is
//! base64), gzip (by magic bytes), MIME multipart (nested, with transfer
//! encodings), then each part is typed by its Content-Type or first line.
//! Pure: bytes in, parts out. Every limit is its own error.

use std::fmt;

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
    #[error("invalid gzip in {whence}: {message}")]
    Gzip { whence: String, message: String },
    #[error("invalid base64 in {whence}: {message}")]
    Base64 { whence: String, message: String },
    #[error("invalid MIME multipart in {whence}: {message}")]
    Mime { whence: String, message: String },
}

/// Decode raw user-data into its parts, in document order.
pub fn decode(raw: &[u8], limits: &Limits) -> Result<Vec<Part>, DecodeError> {
    let _ = (raw, limits);
    todo!("decode")
}
