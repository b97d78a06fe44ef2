#!/usr/bin/env bash
# budgets.sh BIN: issue 6's two budgets for the shipped static binary,
# checked on every CI run (budgets, not timings: a build of the same source
# is the same size, and a run on the same input peaks at the same memory
# within a few pages):
#   - the binary is at most 2.5 MiB (2,621,440 bytes);
#   - the peak RSS of `imprint run` on 1000 templated files
#     (benches/templated-root.sh) is at most 8 MiB (8,192 KiB).
# docs/benchmarks.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
size=$(stat -c %s "$bin")
echo "static binary: $size bytes (budget 2,621,440)"
[ "$size" -le 2621440 ] || { echo "FAIL: $bin is $size bytes, over the 2.5 MiB budget" >&2; exit 1; }

command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: apt-get install -y time" >&2; exit 69; }
work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-budgets.XXXXXX")
trap 'rm -rf "$work"' EXIT
benches/templated-root.sh 1000 "$work/root"
rss=$(/usr/bin/time -v "$bin" run --root "$work/root" --user-data "$work/root/user-data" \
  --instance-id i-budget 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/{print $2}')
written=$(find "$work/root/etc/app/conf.d" -name '*.conf' | wc -l)
[ "$written" = 1000 ] || { echo "FAIL: the run wrote $written of 1000 files" >&2; exit 1; }
echo "peak RSS of a run on 1000 templated files: $rss KiB (budget 8,192)"
[ "$rss" -le 8192 ] || { echo "FAIL: peak RSS $rss KiB, over the 8 MiB budget" >&2; exit 1; }
