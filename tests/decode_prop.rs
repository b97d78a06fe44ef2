//! Property tests of decode: user-data encoded in random layer orders and
//! depths (gzip, whole-payload base64, MIME multiparts with 7bit, base64 and
//! quoted-printable parts, gzip parts, nested multiparts, CRLF or LF)
//! decodes back to the same parts in the same order; and arbitrary bytes
//! never panic and never get past the caps.

use base64::Engine;
use imprint::decode::{decode, DecodeError, Limits, PartKind};
use proptest::prelude::*;
use std::io::Write;

/// A leaf part: a body whose first line says what it is, so its kind is
/// the same whether or not a Content-Type survives the layers around it.
#[derive(Debug, Clone)]
struct Leaf {
    kind: PartKind,
    body: Vec<u8>,
    /// An explicit Content-Type that agrees with the body, if any.
    content_type: Option<&'static str>,
    /// Transfer encoding inside a multipart: 0 none, 1 base64, 2 QP.
    cte: u8,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(Leaf),
    Multipart(Vec<Node>, String),
    Gzip(Box<Node>),
    Base64(Box<Node>),
}

fn text_line() -> impl Strategy<Value = String> {
    // Printable text with the characters MIME and QP care about.
    proptest::string::string_regex("[a-zA-Z0-9 =:_.#\\-\"'{}é]{0,40}").unwrap()
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (
        0..4u8,
        proptest::collection::vec(text_line(), 0..5),
        any::<bool>(),
        0..3u8,
        any::<bool>(),
    )
        .prop_map(|(k, lines, explicit, cte, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let rest: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
            let (kind, head, ct) = match k {
                0 => (PartKind::CloudConfig, "#cloud-config", "text/cloud-config"),
                1 => (PartKind::Script, "#!/bin/sh", "text/x-shellscript"),
                2 => (PartKind::Json, "{\"k\": 1}", "text/plain"),
                _ => (PartKind::Yaml, "key: value", "text/plain"),
            };
            Leaf {
                kind,
                body: format!("{head}{eol}{rest}").into_bytes(),
                content_type: explicit.then_some(ct),
                cte,
            }
        })
}

fn node() -> impl Strategy<Value = Node> {
    leaf()
        .prop_map(Node::Leaf)
        .prop_recursive(5, 24, 4, |inner| {
            prop_oneof![
                (
                    proptest::collection::vec(inner.clone(), 0..4),
                    "[A-Za-z0-9'()+_,./:=?-]{1,30}"
                )
                    .prop_map(|(c, b)| Node::Multipart(c, b)),
                inner.clone().prop_map(|n| Node::Gzip(Box::new(n))),
                inner.prop_map(|n| Node::Base64(Box::new(n))),
            ]
        })
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn b64_wrapped(data: &[u8]) -> Vec<u8> {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out
}

fn qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut col = 0;
    for &b in data {
        let enc = if (33..=126).contains(&b) && b != b'=' {
            vec![b]
        } else {
            format!("={b:02X}").into_bytes()
        };
        if col + enc.len() > 72 {
            out.extend_from_slice(b"=\n");
            col = 0;
        }
        col += enc.len();
        out.extend(enc);
    }
    out
}

/// The whole-payload bytes of a node.
fn encode(n: &Node) -> Vec<u8> {
    match n {
        Node::Leaf(l) => l.body.clone(),
        Node::Gzip(inner) => gz(&encode(inner)),
        Node::Base64(inner) => b64_wrapped(&encode(inner)),
        Node::Multipart(children, boundary) => {
            let mut out = format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\nMIME-Version: 1.0\r\n\r\npreamble\r\n"
            )
            .into_bytes();
            for c in children {
                out.extend(format!("--{boundary}\r\n").as_bytes());
                out.extend(part(c));
                out.extend(b"\r\n");
            }
            out.extend(format!("--{boundary}--\r\nepilogue\r\n").as_bytes());
            out
        }
    }
}

/// A body part (headers and body) of a multipart.
fn part(n: &Node) -> Vec<u8> {
    match n {
        Node::Leaf(l) => {
            let mut h = String::new();
            if let Some(ct) = l.content_type {
                h.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            let body = match l.cte {
                1 => {
                    h.push_str("Content-Transfer-Encoding: base64\r\n");
                    b64_wrapped(&l.body)
                }
                2 => {
                    h.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
                    qp(&l.body)
                }
                _ => l.body.clone(),
            };
            let mut out = format!("{h}\r\n").into_bytes();
            out.extend(body);
            out
        }
        Node::Multipart(children, boundary) => {
            let mut out =
                format!("Content-Type: multipart/alternative;\r\n\tboundary={boundary:?}\r\n\r\n")
                    .into_bytes();
            for c in children {
                out.extend(format!("--{boundary}\r\n").as_bytes());
                out.extend(part(c));
                out.extend(b"\r\n");
            }
            out.extend(format!("--{boundary}--").as_bytes());
            out
        }
        Node::Gzip(inner) => {
            let mut out =
                b"Content-Type: application/x-gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    .to_vec();
            out.extend(b64_wrapped(&gz(&encode(inner))));
            out
        }
        Node::Base64(inner) => {
            let mut out = b"\r\n".to_vec();
            out.extend(b64_wrapped(&encode(inner)));
            out
        }
    }
}

fn leaves(n: &Node, out: &mut Vec<Leaf>) {
    match n {
        Node::Leaf(l) => out.push(l.clone()),
        Node::Multipart(c, _) => c.iter().for_each(|c| leaves(c, out)),
        Node::Gzip(i) | Node::Base64(i) => leaves(i, out),
    }
}

/// Boundaries must not occur in the content they delimit (as any MIME
/// writer ensures): make nested ones distinct.
fn distinct_boundaries(n: &mut Node, depth: usize, next: &mut usize) {
    match n {
        Node::Multipart(c, b) => {
            *next += 1;
            *b = format!("{b}-{depth}-{next}");
            c.iter_mut()
                .for_each(|c| distinct_boundaries(c, depth + 1, next));
        }
        Node::Gzip(i) | Node::Base64(i) => distinct_boundaries(i, depth + 1, next),
        Node::Leaf(_) => {}
    }
}

proptest! {
    // PROPTEST_CASES raises the count (tests/fuzz-smoke.sh's fallback does).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn layers_round_trip(mut n in node()) {
        distinct_boundaries(&mut n, 0, &mut 0);
        let raw = encode(&n);
        let parts = decode(&raw, &Limits::default()).expect("decodes");
        let mut expected = Vec::new();
        leaves(&n, &mut expected);
        prop_assert_eq!(parts.len(), expected.len(), "raw: {}", String::from_utf8_lossy(&raw));
        for (i, (p, e)) in parts.iter().zip(&expected).enumerate() {
            prop_assert_eq!(p.number, i + 1);
            prop_assert_eq!(&p.kind, &e.kind);
            prop_assert_eq!(
                String::from_utf8_lossy(&p.body),
                String::from_utf8_lossy(&e.body)
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&raw, &Limits::default());
    }

    #[test]
    fn mutated_user_data_never_panics_and_respects_caps(
        n in node(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut raw = encode(&n);
        if !raw.is_empty() {
            for (i, b) in flips {
                let at = i.index(raw.len());
                raw[at] = b;
            }
        }
        let limits = Limits { raw: 1 << 20, decompressed: 1 << 16, depth: 3, parts: 8 };
        match decode(&raw, &limits) {
            Ok(parts) => {
                prop_assert!(parts.len() <= limits.parts);
                let total: usize = parts.iter().map(|p| p.body.len()).sum();
                prop_assert!(total <= limits.decompressed + raw.len());
            }
            Err(DecodeError::TooLarge { .. })
            | Err(DecodeError::TooLargeDecompressed { .. })
            | Err(DecodeError::TooDeep { .. })
            | Err(DecodeError::TooManyParts { .. })
            | Err(DecodeError::TooManyLayers { .. })
            | Err(DecodeError::Gzip { .. })
            | Err(DecodeError::Base64 { .. })
            | Err(DecodeError::Mime { .. }) => {}
        }
    }
}
