//! A 1 GiB gzip bomb stops at the 64 MiB cap with a clear error, in bounded
//! memory: the peak resident size of this test process (its own binary, so
//! nothing else runs in it) stays a small multiple of the cap.
//!
//! The bomb is made by the `gzip` program (`head -c 1G /dev/zero | gzip`),
//! one stream, as an attacker would send it.

use imprint::decode::{decode, DecodeError, Limits};
use std::process::Command;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn one_gib_gzip_bomb_stops_at_the_cap_in_bounded_memory() {
    let out = Command::new("sh")
        .args(["-c", "head -c 1073741824 /dev/zero | gzip -9 -n"])
        .output()
        .expect("sh, head and gzip (Debian's gzip package)");
    assert!(out.status.success());
    let bomb = out.stdout;
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let before = peak_rss_kib();
    let t = std::time::Instant::now();
    let e = decode(&bomb, &Limits::default()).unwrap_err();
    let elapsed = t.elapsed();
    let peak = peak_rss_kib();
    assert!(
        matches!(e, DecodeError::TooLargeDecompressed { limit } if limit == 64 << 20),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "user-data decompresses past the 67108864-byte limit (a gzip bomb?); stopped at the cap"
    );
    eprintln!(
        "1 GiB bomb ({} bytes): stopped in {elapsed:?}; peak RSS {} MiB before, {} MiB after",
        bomb.len(),
        before / 1024,
        peak / 1024
    );
    // The cap is 64 MiB; allow the output buffer's growth and the input.
    assert!(peak < 200 * 1024, "peak RSS {} MiB", peak / 1024);
}
