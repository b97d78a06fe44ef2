//! decode + merge + validate of a 16 KiB gzip+base64 multipart user-data
//! (Terraform's `cloudinit_config` with gzip and base64_encode), against a
//! manifest that declares its values. Target: well under 1 ms.
//!
//! Run: `cargo bench --bench decode` (criterion; plain-text report).

use criterion::{criterion_group, criterion_main, Criterion};
use imprint::decode::{decode, Limits};
use imprint::manifest::Manifest;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts live heap bytes and their peak, to report the peak memory of one
/// decode + merge + validate against the decompressed size.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A Terraform-shaped multipart of about 16 KiB before compression: a
/// cloud-config with imprint: values and write_files, and a JSON part.
pub fn user_data() -> (Vec<u8>, usize) {
    let mut cc = String::from("#cloud-config\nimprint:\n  app:\n    env: production\n");
    for i in 0..60 {
        cc.push_str(&format!(
            "    key_{i:02}: \"value number {i} with some text\"\n"
        ));
    }
    cc.push_str("write_files:\n");
    let mut i = 0;
    while cc.len() < 16 * 1024 {
        cc.push_str(&format!(
            "  - path: /etc/app/conf.d/{i:03}.conf\n    permissions: '0644'\n    owner: root:root\n    content: |\n      # generated file {i}\n      setting_{i} = {i}\n      other = \"a quoted value\"\n"
        ));
        i += 1;
    }
    let json = r#"{"db": {"host": "db.internal", "port": 5432, "password": "s3cret-pass"}}"#;
    let mut mime = String::from(
        "Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\r\nMIME-Version: 1.0\r\n\r\n",
    );
    for (ct, body) in [
        ("text/cloud-config", cc.as_str()),
        ("application/json", json),
    ] {
        mime.push_str(&format!(
            "--MIMEBOUNDARY\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: {ct}\r\nMime-Version: 1.0\r\n\r\n{body}\r\n"
        ));
    }
    mime.push_str("--MIMEBOUNDARY--\r\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(mime.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
    (b64.into_bytes(), mime.len())
}

fn manifest() -> Manifest {
    let text = "version: 1\nvalues:\n  app:      { type: map }\n  db.host:  { type: string, required: true }\n  db.port:  { type: integer, default: 5432 }\n  db.password: { type: string, required: true, secret: true }\n";
    imprint::manifest::parse(
        std::path::Path::new("bench.yaml"),
        text,
        std::path::Path::new("/nonexistent"),
    )
    .unwrap()
}

/// CPU time (user + system) of this process so far, in seconds, from
/// /proc/self/stat (clock ticks of 10 ms): robust on a loaded machine,
/// where wall-clock samples include time spent waiting for a core.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is index 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn bench(c: &mut Criterion) {
    let (raw, size) = user_data();
    let m = manifest();
    // Sanity: it is what the benchmark claims.
    let parts = decode(&raw, &Limits::default()).unwrap();
    assert_eq!(parts.len(), 2);
    assert!((16 * 1024..20 * 1024).contains(&size), "{size}");
    let v = imprint::validate::validate(imprint::merge::merge(&parts, &m).unwrap(), &m).unwrap();
    assert!(v.write_files.len() > 50);
    eprintln!(
        "user-data: {} bytes of base64, {size} bytes of multipart, {} write_files",
        raw.len(),
        v.write_files.len()
    );
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    {
        let parts = decode(&raw, &Limits::default()).unwrap();
        let merged = imprint::merge::merge(&parts, &m).unwrap();
        black_box(imprint::validate::validate(merged, &m).unwrap());
    }
    let peak = PEAK.load(Relaxed) - base;
    eprintln!(
        "peak heap of one decode+merge+validate: {peak} bytes, {:.1}x the {size} decompressed bytes",
        peak as f64 / size as f64
    );
    let n = 2000;
    let t0 = cpu_seconds();
    for _ in 0..n {
        let parts = decode(black_box(&raw), &Limits::default()).unwrap();
        let merged = imprint::merge::merge(&parts, &m).unwrap();
        black_box(imprint::validate::validate(merged, &m).unwrap());
    }
    eprintln!(
        "decode+merge+validate: {:.0} µs of CPU time per run ({n} runs)",
        (cpu_seconds() - t0) / n as f64 * 1e6
    );
    c.bench_function("decode only", |b| {
        b.iter(|| decode(black_box(&raw), &Limits::default()).unwrap())
    });
    c.bench_function("merge only", |b| {
        b.iter(|| imprint::merge::merge(black_box(&parts), &m).unwrap())
    });
    let text = std::str::from_utf8(&parts[0].body).unwrap();
    c.bench_function("yaml events only", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in granit_parser::Parser::new_from_str(black_box(text)) {
                black_box(e.unwrap());
                n += 1;
            }
            n
        })
    });
    c.bench_function("yaml only", |b| {
        b.iter(|| imprint::yaml::parse_value(black_box(text)).unwrap())
    });
    c.bench_function("decode+merge+validate 16 KiB gzip+base64 multipart", |b| {
        b.iter(|| {
            let parts = decode(black_box(&raw), &Limits::default()).unwrap();
            let merged = imprint::merge::merge(&parts, &m).unwrap();
            black_box(imprint::validate::validate(merged, &m).unwrap())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
