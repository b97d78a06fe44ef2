//! Any bytes through decode, merge and validate: no panic, no hang, and no
//! allocation past the caps (run with -rss_limit_mb; the decompressed cap
//! is lowered so that reaching it is cheap).
#![no_main]

use imprint::decode::{decode, Limits};
use imprint::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        decompressed: 1 << 20,
        ..Limits::default()
    };
    let Ok(parts) = decode(data, &limits) else {
        return;
    };
    assert!(parts.len() <= limits.parts);
    let m = Manifest::absent();
    if let Ok(merged) = imprint::merge::merge(&parts, &m) {
        let _ = imprint::validate::validate(merged, &m);
    }
    // The hidden fetch --json path parses every part's document too.
    for p in &parts {
        let _ = imprint::merge::part_document(p);
    }
});
