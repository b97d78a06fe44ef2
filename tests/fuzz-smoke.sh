#!/usr/bin/env bash
# A short, bounded fuzz run of each target in fuzz/fuzz_targets/: no input may
# panic, hang (-timeout) or allocate past the caps (-rss_limit_mb).
#   decode:   user-data through decode, merge and validate, seeded with the
#             fixtures;
#   manifest: any text as the manifest, through the run's reader and the
#             generator's, which must agree (seeded with fuzz/seeds/manifest
#             and the repository's manifests).
# CI runs it from tests/all.sh.
#
# Needs cargo-fuzz (cargo install cargo-fuzz); on a stable toolchain the
# nightly flags it uses are unlocked with RUSTC_BOOTSTRAP=1. Without
# cargo-fuzz it says so and falls back to the bounded proptest runs of
# tests/decode_prop.rs (arbitrary and mutated bytes, no panic, within caps)
# and tests/generator.rs (random manifests, the two readers alike).
# IMPRINT_FUZZ_SECONDS sets the length of each target's run (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${IMPRINT_FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is not installed; running the proptest fallbacks only" >&2
  PROPTEST_CASES=2000 cargo test --test decode_prop -- arbitrary mutated
  cargo test --test generator -- agreement
  exit 0
fi
mkdir -p fuzz/corpus/decode fuzz/corpus/manifest
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz decode \
  fuzz/corpus/decode fixtures/user-data -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
cp fuzz/seeds/manifest/*.yaml "$seeds/"
i=0
for m in fixtures/*/root/etc/imprint/imprint.yaml tests/vm/fixtures/imprint.yaml; do
  i=$((i + 1))
  cp "$m" "$seeds/repo-$i.yaml"
done
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz manifest \
  fuzz/corpus/manifest "$seeds" -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=16384 -print_final_stats=1
