#!/usr/bin/env bash
# tests/aarch64.sh - the arm64 binary, built and run beside the x86_64 one.
#
# Issue 6 asks for a static aarch64 build where rust-lld can link it;
# `scripts/build-static.sh --aarch64` makes it (docs/benchmarks.md, "Build").
# This builds it, checks that it is a static-pie AArch64 executable within the
# 2.5 MiB budget, then gives it and the x86_64 musl binary the same commands
# on copies of the demo's root: the arm64 one under qemu-aarch64 (qemu-user:
# the only arm64 CPU this machine kind has). Every step must exit with the
# same code and print the same text, and the roots must end up the same:
# the same files, with the same content, mode and owner (the seal compared
# without its time and the journal's random id; report.json not compared:
# it holds times; the stages' durations in the log masked).
#
# Steps: validate, plan and render (pure: the root unchanged), run (the
# demo: multipart, gzip, base64, Handlebars, write_files), run again
# (sealed: 77), and run with invalid user-data on a fresh root (65, nothing
# written, the same error text).
#
# Needs what `scripts/build-static.sh --aarch64 --deps` installs (arm64 as a
# dpkg architecture, musl-dev:arm64, the cross gcc, qemu-user) and the musl
# tools for the x86_64 binary. Without them it says so and exits 0, unless
# IMPRINT_REQUIRE_AARCH64=1 (CI), where a missing tool is a failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
   || [ ! -f /usr/lib/aarch64-linux-musl/libc.a ]; then
  msg="tests/aarch64.sh: the arm64 tools are missing (scripts/build-static.sh --aarch64 --deps installs them)"
  [ "${IMPRINT_REQUIRE_AARCH64:-0}" = 1 ] && fail "$msg"
  echo "skip: $msg"
  exit 0
fi

arm=$(scripts/build-static.sh --aarch64)
x86=$(scripts/build-static.sh --musl)
readelf -hW "$arm" | grep -q 'Machine:.*AArch64' || fail "$arm is not an AArch64 binary"
readelf -lW "$arm" | grep -q INTERP && fail "$arm asks for a program interpreter"
readelf -dW "$arm" 2>/dev/null | grep -q NEEDED && fail "$arm needs shared libraries"
readelf -hW "$arm" | grep -q 'Type:.*DYN' || fail "$arm is not a static-pie (its image would not be randomised)"
size=$(stat -c %s "$arm")
echo "static arm64 binary: $size bytes (budget 2,621,440)"
[ "$size" -le 2621440 ] || fail "$arm is $size bytes, over the 2.5 MiB budget"

work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-aarch64.XXXXXX")
trap 'rm -rf "$work"' EXIT
ud=fixtures/demo/user-data.b64
printf '#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: [unclosed\n' > "$work/bad.yaml"

# tree DIR: every entry with its type, mode, owner and size, each file's
# sha256, the seal without its time and journal id (report.json left out);
# one line each,
# starting with the path.
tree() {
  (cd "$1" && find . -path ./var/lib/imprint/report.json -prune -o -printf '%p %y %m %U %G %s\n' | sort
   find . -type f ! -path ./var/lib/imprint/report.json ! -path ./var/lib/imprint/sealed -exec sha256sum {} + \
     | awk '{print $2, $1}' | sort
   if [ -f var/lib/imprint/sealed ]; then
     printf './var/lib/imprint/sealed '
     python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s.pop("time"); s.pop("journal"); print(json.dumps(s, sort_keys=True))' \
       var/lib/imprint/sealed
   fi)
}
# Everything but imprint's own state (var/lib/imprint, run/imprint).
outside_state() { grep -vE '^\./(var|run)(/| )' "$1" || true; }

# steps ARCH RUNNER...: the steps with one binary, in the same root paths
# for both (errors and plans may name them), each step's exit code, stdout,
# stderr and root tree kept under $work/ARCH/.
steps() {
  local arch=$1; shift
  local out="$work/$arch" root="$work/root" bad="$work/bad-root" name rc
  rm -rf "$root" "$bad"; mkdir -p "$out" "$root" "$bad"
  cp -a fixtures/demo/root/. "$root"; cp -a fixtures/demo/root/. "$bad"
  for name in validate plan render run run-again bad; do
    rc=0
    case $name in
      validate|plan|render) "$@" "$name" --root "$root" --user-data "$ud" --instance-id i-arm ;;
      run|run-again) "$@" run --root "$root" --user-data "$ud" --instance-id i-arm ;;
      bad) "$@" run --root "$bad" --user-data "$work/bad.yaml" --instance-id i-arm ;;
    esac > "$out/$name.out" 2> "$out/$name.raw" || rc=$?
    # the stages' durations differ, of course
    sed -E 's/\([0-9]+\.[0-9] ms\)/(N ms)/; s/duration_ms=[0-9.]+/duration_ms=N/' "$out/$name.raw" > "$out/$name.err"
    echo "$rc" > "$out/$name.rc"
    case $name in bad) tree "$bad" ;; *) tree "$root" ;; esac > "$out/$name.tree"
  done
}

mkdir -p "$work/pristine"; cp -a fixtures/demo/root/. "$work/pristine"
tree "$work/pristine" > "$work/pristine.tree"
steps x86_64 "$x86"
steps aarch64 qemu-aarch64 "$arm"

# What each step must have done (checked on x86_64; aarch64 is then
# compared with it).
want() {
  [ "$(cat "$work/x86_64/$1.rc")" = "$2" ] \
    || fail "x86_64: $1 exited $(cat "$work/x86_64/$1.rc"), expected $2: $(cat "$work/x86_64/$1.err")"
}
want validate 0; want plan 0; want render 0; want run 0; want run-again 77; want bad 65
grep -q '^\./opt/app/conf.env f 640 0 990 ' "$work/x86_64/run.tree" \
  || fail "x86_64: the demo run did not write /opt/app/conf.env (0640 root:990)"
for name in validate plan render bad; do
  cmp -s <(outside_state "$work/pristine.tree") <(outside_state "$work/x86_64/$name.tree") \
    || fail "x86_64: $name changed files outside imprint's state"
done

n=0
for name in validate plan render run run-again bad; do
  for f in rc out err tree; do
    if ! cmp -s "$work/x86_64/$name.$f" "$work/aarch64/$name.$f"; then
      echo "aarch64 and x86_64 differ: $name ($f)" >&2
      diff -u "$work/x86_64/$name.$f" "$work/aarch64/$name.$f" | head -20 >&2 || true
      n=$((n + 1))
    fi
  done
done
[ "$n" = 0 ] || fail "$n difference(s) between the arm64 and the x86_64 binary"
echo "ok: the arm64 binary under qemu-aarch64 did what the x86_64 one did (6 steps: exit codes, output, files)"
