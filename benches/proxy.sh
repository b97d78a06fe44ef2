#!/usr/bin/env bash
# The emulation proxy (docs/benchmarks.md, "Fifth round"): the demo's
# whole run under qemu-user's TCG, N times on fresh roots in /dev/shm, and
# the medians of the wall time and of each stage (report.json).
#
#   benches/proxy.sh BIN [N]     (N defaults to 8; needs qemu-user, python3)
#
# Alternate two binaries (old, new, old, new) to compare them: qemu-user
# translates every block anew in each process, as a VM does the first time
# it runs code, so the stages' times follow the code they run for the
# first time (the sixth round's instruction counts).
set -euo pipefail
bin=$1
n=${2:-8}
top=$(cd "$(dirname "$0")/.." && pwd)
stages=$(mktemp)
trap 'rm -f "$stages"' EXIT
for _ in $(seq "$n"); do
	root=$(mktemp -d /dev/shm/imprint-proxy.XXXXXX)
	cp -a "$top/fixtures/demo/root/." "$root"
	start=$(date +%s%N)
	qemu-x86_64 "$bin" run --root "$root" --user-data "$top/fixtures/demo/user-data.b64" \
		--instance-id i-proxy >/dev/null 2>&1
	end=$(date +%s%N)
	python3 - "$root/var/lib/imprint/report.json" "$(((end - start) / 1000))" >>"$stages" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(int(sys.argv[2]) / 1000, " ".join(f"{s['stage']}={s['duration_ms']}" for s in r["stages"]))
PY
	rm -rf "$root"
done
python3 - "$stages" <<'PY'
import statistics as S, sys
rows = [l.split() for l in open(sys.argv[1])]
stages = {}
for r in rows:
    for kv in r[1:]:
        k, v = kv.split("=")
        stages.setdefault(k, []).append(float(v))
print(f"wall median {S.median(float(r[0]) for r in rows):.1f} ms ({len(rows)} runs);",
      " ".join(f"{k} {S.median(v):.1f}" for k, v in stages.items()))
PY
