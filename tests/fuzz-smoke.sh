#!/usr/bin/env bash
# A short, bounded fuzz run of user-data decoding (fuzz/fuzz_targets/),
# seeded with the fixtures: no input may panic, hang (-timeout) or allocate
# past the caps (-rss_limit_mb). CI runs it from tests/all.sh.
#
# Needs cargo-fuzz (cargo install cargo-fuzz); on a stable toolchain the
# nightly flags it uses are unlocked with RUSTC_BOOTSTRAP=1. Without
# cargo-fuzz it says so and falls back to the bounded proptest runs of
# tests/decode_prop.rs (arbitrary and mutated bytes, no panic, within caps).
# IMPRINT_FUZZ_SECONDS sets the length (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${IMPRINT_FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is not installed; running the proptest fallback only" >&2
  PROPTEST_CASES=2000 cargo test --test decode_prop -- arbitrary mutated
  exit 0
fi
mkdir -p fuzz/corpus/decode
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz decode \
  fuzz/corpus/decode fixtures/user-data -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1
