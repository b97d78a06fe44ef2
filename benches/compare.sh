#!/usr/bin/env bash
# compare.sh - imprint against Debian's cloud-init on identical user-data,
# pair by pair, in one go (docs/benchmarks.md has the figures and how to read
# them).
#
#   benches/compare.sh [--bin PATH] [--runs N] [--ci-runs N] [--vm [--vm-runs N]]
#
#   --bin PATH    the imprint binary (default: the static one, built by
#                 scripts/build-static.sh if it is not there yet)
#   --runs N      timed runs per imprint command (default 200)
#   --ci-runs N   timed runs per cloud-init command (default 30)
#   --vm          also boot the VM variants (tests/vm/run.sh --perf): imprint,
#                 cloud-init, an empty oneshot unit, and neither
#   --vm-runs N   boots per VM variant (default 3)
#
# 1. Whole process on the host, one hyperfine run per pair (both commands,
#    same input, `-N`, warm-up, a fresh root before every run):
#      imprint run --root R --user-data IN --instance-id i-bench
#      python3 benches/cloudinit/write_files.py IN R   (cloud-init's own code)
#    Pairs: `demo` (the quick-start demo: 2 write_files + 4 manifest files) and
#    `demo+100` (the same plus 100 more write_files entries), each with the
#    roots on the work dir's disk (imprint fsyncs, cloud-init does not) and
#    on tmpfs (/dev/shm: fsync is free, so the work itself is compared).
#    Both tools get the same gzip-only bytes: cloud-init does not base64-decode
#    user-data (its platforms do), and the demo's one non-ASCII value is dropped
#    because cloud-init 22.4 drops a whole 7bit cloud-config part that holds
#    UTF-8 (docs/user-data.md), which would leave it nothing to write.
# 2. Peak RSS of one run of each (/usr/bin/time -v), and the binary's size.
# 3. With --vm: boots (see tests/vm/README.md, --perf).
#
# Needs (apt): hyperfine cloud-init time python3; for --vm what tests/vm needs.
# Prints a summary; raw hyperfine JSON stays in the work dir it names.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
PY=/usr/bin/python3           # Debian's python, where cloud-init is installed

BIN= RUNS=200 CI_RUNS=30 VM=0 VM_RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --ci-runs) CI_RUNS=$2; shift 2 ;;
    --vm) VM=1; shift ;;
    --vm-runs) VM=1; VM_RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
done
for t in hyperfine /usr/bin/time "$PY"; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y hyperfine time python3" >&2; exit 69; }
done
"$PY" -c 'import cloudinit' 2>/dev/null || { echo "missing cloud-init: apt-get install -y cloud-init" >&2; exit 69; }
if [ -z "$BIN" ]; then
  BIN=$("$top/scripts/build-static.sh")
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-compare.XXXXXX")
echo "== work dir: $work"
echo "== machine: $(nproc) cores, $(uname -r), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "== imprint: $BIN ($(stat -c %s "$BIN") bytes; $(file -b "$BIN" | cut -d, -f1-2,4 | tr -s ' '))"
echo "== cloud-init: $(cloud-init --version 2>&1)"

# ---------------------------------------------------------------- inputs
# mime CLOUD_CONFIG_FILE JSON_FILE: Terraform's cloudinit_config shape, as
# fixtures/demo/make-user-data.sh writes it (without the base64 step).
mime() {
  printf 'Content-Type: multipart/mixed; boundary="MIMEBOUNDARY"\r\nMIME-Version: 1.0\r\n\r\n'
  printf -- '--MIMEBOUNDARY\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/cloud-config\r\nMime-Version: 1.0\r\n\r\n'
  cat "$1"
  printf '\r\n--MIMEBOUNDARY\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: application/json\r\nMime-Version: 1.0\r\n\r\n'
  cat "$2"
  printf '\r\n--MIMEBOUNDARY--\r\n'
}
demo=$top/fixtures/demo
LC_ALL=C sed 's/ # [^"]*"$/"/' "$demo/cloud-config.yaml" > "$work/demo.yaml"
if LC_ALL=C grep -q '[^ -~]' "$work/demo.yaml"; then
  echo "demo.yaml still holds non-ASCII text: update the sed above" >&2; exit 70
fi
cp "$work/demo.yaml" "$work/demo+100.yaml"
for i in $(seq -w 1 100); do
  printf '  - path: /etc/app/conf.d/%s.conf\n    permissions: %s\n    content: |\n      # generated file %s\n      setting_%s = %s\n' \
    "$i" "'0644'" "$i" "$i" "$i" >> "$work/demo+100.yaml"
done
PAIRS=(demo demo+100)
for p in "${PAIRS[@]}"; do
  mime "$work/$p.yaml" "$demo/values.json" | gzip -9 -n > "$work/$p.gz"
done

# ---------------------------------------------------------------- sanity
# Both tools must write the same write_files bytes before their times mean
# anything.
for p in "${PAIRS[@]}"; do
  rm -rf "$work/r" "$work/c"; cp -a "$demo/root" "$work/r"; mkdir "$work/c"
  "$BIN" run --root "$work/r" --user-data "$work/$p.gz" --instance-id i-bench >/dev/null 2>"$work/$p.imprint.err" \
    || { cat "$work/$p.imprint.err" >&2; echo "imprint failed on $p" >&2; exit 70; }
  "$PY" "$here/cloudinit/write_files.py" "$work/$p.gz" "$work/c" 2>"$work/$p.ci.err" \
    || { cat "$work/$p.ci.err" >&2; echo "cloud-init failed on $p" >&2; exit 70; }
  n=0
  while IFS= read -r f; do
    cmp -s "$work/c/$f" "$work/r/$f" || { echo "$p: /$f differs between imprint and cloud-init" >&2; exit 70; }
    n=$((n + 1))
  done < <(cd "$work/c" && find . -path ./var/lib/cloud -prune -o -type f -printf '%P\n')
  echo "== $p: both wrote the same $n write_files file(s) (imprint also its 4 manifest files, journal, seal and report)"
done

# ---------------------------------------------------------------- 1. whole process
# Each pair twice: roots on the work dir's disk (what a boot pays: imprint
# fsyncs every file and directory, cloud-init's write_file does not), and on
# tmpfs (/dev/shm, where fsync costs nothing: the work itself).
# imprint's fresh root is synced before each run (`sync -f`, not timed): at
# boot the image's files are clean on disk, and imprint's syncfs rounds
# would otherwise also write back the benchmark's own copy. The previous
# run's root is moved aside, not removed, until the end: ext4 does not
# reuse an inode freed in the last 30 s, and after thousands of removals
# every create scans past them (benches/scale.rs `whole_run`): the pairs
# would measure the removals, not the runs.
summary=()
# The aside command: move DIR (if there) to old/ beside it, under a new name.
aside_sh="$work/aside"
printf '#!/bin/sh\n[ -e "$1" ] || exit 0\nmkdir -p "${1%%/*}/old" && exec mv "$1" "${1%%/*}/old/$(date +%%s%%N)"\n' >"$aside_sh"
chmod +x "$aside_sh"
shm=
if [ -d /dev/shm ] && [ -w /dev/shm ]; then shm=$(mktemp -d /dev/shm/imprint-compare.XXXXXX); fi
trap '[ -z "$shm" ] || rm -rf "$shm"; rm -rf "$work/old"' EXIT
for where in disk tmpfs; do
  case $where in
    disk) rd=$work ;;
    tmpfs) [ -n "$shm" ] || continue; rd=$shm ;;
  esac
  for p in "${PAIRS[@]}"; do
    echo "== pair $p on $where: hyperfine (-N, warm-up 3; imprint $RUNS runs, cloud-init $CI_RUNS runs)"
    hyperfine -N --warmup 3 --runs "$RUNS" --style basic \
      --prepare "sh -c '$aside_sh $rd/r && cp -a $demo/root $rd/r && sync -f $rd'" \
      --export-json "$work/$p.$where.imprint.json" \
      -n "imprint $p" "$BIN run --root $rd/r --user-data $work/$p.gz --instance-id i-bench" \
      >"$work/$p.$where.imprint.txt" 2>&1 || { cat "$work/$p.$where.imprint.txt"; exit 70; }
    hyperfine -N --warmup 3 --runs "$CI_RUNS" --style basic \
      --prepare "sh -c '$aside_sh $rd/c && mkdir $rd/c'" \
      --export-json "$work/$p.$where.ci.json" \
      -n "cloud-init $p" "$PY $here/cloudinit/write_files.py $work/$p.gz $rd/c" \
      >"$work/$p.$where.ci.txt" 2>&1 || { cat "$work/$p.$where.ci.txt"; exit 70; }
    summary+=("$("$PY" - "$work/$p.$where.imprint.json" "$work/$p.$where.ci.json" "$p@$where" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))["results"][0]
b = json.load(open(sys.argv[2]))["results"][0]
ma, mb = a["median"] * 1000, b["median"] * 1000
print(f"{sys.argv[3]:<15} imprint {ma:7.2f} ms (min {a['min']*1000:5.2f}, n={len(a['times'])})"
      f"   cloud-init {mb:7.1f} ms (min {b['min']*1000:6.1f}, n={len(b['times'])})"
      f"   ratio {mb/ma:5.1f}x (of mins {b['min']/a['min']:5.1f}x)")
EOF
)")
  done
done

# ---------------------------------------------------------------- 2. memory
rss() {  # rss PREPARE CMD...: peak RSS in KiB of one run
  sh -c "$1"; shift
  /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/{print $2}'
}
rss_i=$(rss "rm -rf $work/r && cp -a $demo/root $work/r" \
  "$BIN" run --root "$work/r" --user-data "$work/demo.gz" --instance-id i-bench)
rss_c=$(rss "rm -rf $work/c && mkdir $work/c" "$PY" "$here/cloudinit/write_files.py" "$work/demo.gz" "$work/c")

echo
echo "== whole process, median (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '   %s\n' "${summary[@]}"
echo "== peak RSS of one run on demo: imprint $rss_i KiB, cloud-init $rss_c KiB"
echo "== binary: $(stat -c %s "$BIN") bytes ($(awk -v s="$(stat -c %s "$BIN")" 'BEGIN{printf "%.2f", s/1048576}') MiB)"

# ---------------------------------------------------------------- 3. VM boots
if [ "$VM" = 1 ]; then
  echo "== VM boots: tests/vm/run.sh --perf --perf-runs $VM_RUNS (gzip seed, static binary)"
  IMPRINT_BIN=$BIN IMPRINT_VM_PERF_ENCODING=gzip "$top/tests/vm/run.sh" --perf --perf-runs "$VM_RUNS"
fi
