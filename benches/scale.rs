//! How imprint's cost grows (docs/benchmarks.md has the figures):
//!
//! - `manifest/{yaml,load}/N`: the N-file manifest's YAML alone
//!   (`yaml::parse_value`), and the whole `manifest::load` (YAML, checks,
//!   N template files read);
//! - `render/N`, `plan/N`: N templated files (10, 100, 1000), each from its
//!   own template (a real manifest's worst case), in memory (`render`), then
//!   compared with N files on disk (`plan`: read_disk + plan);
//! - `run/N`: the whole process, `imprint run --root`, on a fresh root each
//!   time (the copy is not timed, and is written back before the run, as an
//!   image's files are at boot; no root is removed until the end, see
//!   `whole_run`), every file written with its fsync, the journal, the seal
//!   and the report: what a first boot pays;
//! - `userdata/SIZE`: plain `#cloud-config` user-data of 1 KiB to 16 MiB (the
//!   raw cap), mostly `write_files` entries, through decode, merge, validate
//!   and render (the decode helper's `benches/decode.rs` has the 16 KiB
//!   Terraform-shaped case stage by stage).
//!
//! Run: `cargo bench --bench scale` (criterion, plain-text report; add a
//! filter such as `run/` to run one group). `IMPRINT_BENCH_BIN=PATH` times
//! that binary in `run/N` (the shipped static one) instead of the bench
//! profile's own.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use imprint::manifest::Manifest;
use imprint::root::Root;
use imprint::validate::Validated;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

const SIZES: &[usize] = &[10, 100, 1000];

/// The values of benches/templated-root.sh's user-data, which
/// `big_user_data` grows.
const USER_DATA: &str = "#cloud-config\nimprint:\n  app:\n    name: bench\n    tags: [a, b, c]\n  db:\n    host: db.internal\n    password: s3cret-bench-pass\n";

/// An image root with a manifest of `n` templated files under
/// /etc/app/conf.d, each from its own template, and `user-data`
/// (benches/templated-root.sh, which tests/budgets.sh uses too).
fn image_root(dir: &Path, n: usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/templated-root.sh");
    let status = std::process::Command::new(script)
        .arg(n.to_string())
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{script} failed");
}

fn validated(user_data: &[u8], manifest: &Manifest) -> Validated {
    let parts = imprint::decode::decode(user_data, &imprint::decode::Limits::default()).unwrap();
    let merged = imprint::merge::merge(&parts, manifest).unwrap();
    imprint::validate::validate(merged, manifest).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Write back everything dirty on `dir`'s file system (the fresh copy), as
/// an image's files are at boot: otherwise the run's own `syncfs` would pay
/// for writing the copy (1000 templates and targets: ~300 ms of `run/1000`).
fn sync_fs(dir: &Path) {
    let d = std::fs::File::open(dir).unwrap();
    rustix::fs::syncfs(&d).unwrap();
}

fn render_and_plan(c: &mut Criterion) {
    // Reading and parsing the manifest (and its N templates' text), and
    // its YAML alone.
    let mut g = c.benchmark_group("manifest");
    for &n in SIZES {
        let t = tempfile::tempdir().unwrap();
        image_root(t.path(), n);
        let path = t.path().join("etc/imprint/imprint.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("yaml", n), &n, |b, _| {
            b.iter(|| imprint::yaml::parse_value(black_box(&text)).unwrap())
        });
        let root = Root::at(t.path());
        g.bench_with_input(BenchmarkId::new("load", n), &n, |b, _| {
            b.iter(|| imprint::manifest::load(&root, None).unwrap().unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("render");
    for &n in SIZES {
        let t = tempfile::tempdir().unwrap();
        image_root(t.path(), n);
        let root = Root::at(t.path());
        let m = imprint::manifest::load(&root, None).unwrap().unwrap();
        let v = validated(&std::fs::read(t.path().join("user-data")).unwrap(), &m);
        let r = imprint::render::render(&v, &m).unwrap();
        assert_eq!(r.files.len(), n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| imprint::render::render(black_box(&v), &m).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("plan");
    for &n in SIZES {
        let t = tempfile::tempdir().unwrap();
        image_root(t.path(), n);
        let root = Root::at(t.path());
        let m = imprint::manifest::load(&root, None).unwrap().unwrap();
        let v = validated(&std::fs::read(t.path().join("user-data")).unwrap(), &m);
        let r = imprint::render::render(&v, &m).unwrap();
        // Every file on disk with older content: all N are read and change.
        std::fs::create_dir_all(t.path().join("etc/app/conf.d")).unwrap();
        for f in &r.files {
            std::fs::write(root.join(&f.path), "old = 1\n").unwrap();
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let disk = imprint::plan::read_disk(&root, &r).unwrap();
                let p = imprint::plan::plan(r.clone(), &disk).unwrap();
                assert_eq!(p.changes.len(), n);
                p
            })
        });
    }
    g.finish();
}

fn whole_run(c: &mut Criterion) {
    // IMPRINT_BENCH_BIN: time another build (the shipped static musl
    // binary, scripts/build-static.sh) instead of this profile's.
    let bin = std::env::var_os("IMPRINT_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_imprint").into());
    let mut g = c.benchmark_group("run");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // Every run gets a root of its own, and none is removed before the
    // group ends. ext4 does not reuse an inode deleted in the last 30 s
    // (`recently_deleted()` in its inode allocator): after `rm -rf` of the
    // previous run's 1000 files, every create scanned past them, ~0.2 ms
    // each, 40% of the kernel's samples (`perf record -g`), so that
    // `run/1000` measured the deletion before it, not the run (250-330 ms
    // against 66-87 ms for the same binary on roots copied 35 s before:
    // docs/benchmarks.md, fifth round). An image's first boot follows no
    // mass deletion.
    let t = tempfile::tempdir().unwrap();
    let mut next = 0usize;
    for &n in SIZES {
        let image = t.path().join(format!("image-{n}"));
        image_root(&image, n);
        let mut last = None;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched(
                || {
                    next += 1;
                    let fresh = t.path().join(format!("root-{next}"));
                    copy_tree(&image, &fresh);
                    sync_fs(&fresh);
                    last = Some(fresh.clone());
                    fresh
                },
                |fresh| {
                    let o = std::process::Command::new(&bin)
                        .args([
                            "run",
                            "--user-data",
                            "/dev/stdin",
                            "--instance-id",
                            "i-bench",
                        ])
                        .arg("--root")
                        .arg(&fresh)
                        .stdin(std::fs::File::open(image.join("user-data")).unwrap())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .unwrap();
                    assert_eq!(o.code(), Some(0));
                },
                BatchSize::PerIteration,
            )
        });
        // (No root when a filter skipped this size.)
        if let Some(fresh) = last {
            assert_eq!(
                std::fs::read_dir(fresh.join("etc/app/conf.d"))
                    .unwrap()
                    .count(),
                n,
                "every file written"
            );
        }
    }
    g.finish();
}

/// Plain `#cloud-config` of about `size` bytes: the values, then
/// `write_files` entries of ~1 KiB each.
fn big_user_data(size: usize) -> String {
    let mut s = String::from(USER_DATA);
    s.push_str("write_files:\n");
    let line = "      lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do\n";
    let mut i = 0;
    loop {
        let mut e =
            format!("  - path: /srv/data/{i:06}.txt\n    permissions: '0644'\n    content: |\n");
        while e.len() < 1024 {
            e.push_str(line);
        }
        if s.len() + e.len() > size {
            break;
        }
        s.push_str(&e);
        i += 1;
    }
    s
}

fn user_data_sizes(c: &mut Criterion) {
    let manifest = imprint::manifest::parse(
        Path::new("bench.yaml"),
        "version: 1\nvalues:\n  app.name: { type: string, required: true }\n  \
         app.tags: { type: list, default: [] }\n  db.host: { type: string }\n  \
         db.password: { type: string, secret: true }\n",
        Path::new("/nonexistent"),
    )
    .unwrap();
    let mut g = c.benchmark_group("userdata");
    g.sample_size(10);
    for (label, size) in [
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
        ("16MiB", (16 << 20) - 4096),
    ] {
        let ud = big_user_data(size);
        assert!(ud.len() <= size && ud.len() * 10 >= size * 9 || size < 4096);
        g.throughput(Throughput::Bytes(ud.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), &ud, |b, ud| {
            b.iter(|| {
                let v = validated(black_box(ud.as_bytes()), &manifest);
                imprint::render::render(&v, &manifest).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render_and_plan, whole_run, user_data_sizes);
criterion_main!(benches);
