#!/usr/bin/env bash
# run.sh - imprint's VM end-to-end tests: build/reuse the cached Debian image,
# boot scenarios under qemu one at a time, assert on what the guest reports.
#
#   tests/vm/run.sh                          deps + image + every scenario
#   tests/vm/run.sh --scenario second        one scenario (and those it needs)
#   tests/vm/run.sh --perf                   boot imprint/imprintapp/cloudinit/emptyunit/none
#                                            variants with the same seed, report
#                                            timings and their medians
#   options: --no-deps (or IMPRINT_VM_SKIP_DEPS=1), --keep (keep disks/run dir),
#            --list, --perf-runs N, --interleave (perf: round i boots each
#            variant once, in the order given, instead of N in a row each),
#            --rerun (perf: after each imprint boot, the guest runs imprint
#            again on a scratch root with the seed's user-data, twice with the
#            binary that ran at boot and once with a copy of it: warm and cold
#            translation, without the boot around it)
#   env:     IMPRINT_BIN=path|stand-in (default target/release/imprint),
#            IMPRINT_VM_CACHE (default /var/cache/imprint-vm), ACCEL=auto|kvm|tcg,
#            IMPRINT_VM_BOOT_TIMEOUT (s, default 240), IMPRINT_VM_MEM, IMPRINT_VM_SMP,
#            IMPRINT_VM_PERF_ENCODING (seed encoding for --perf, default gzip+base64)
#
# Scenarios: first fresh2 second newid bad-missing bad-yaml
# Exit status: 0 all assertions passed, 1 some failed, 2 usage/infrastructure.
set -euo pipefail
# shellcheck source=image.sh
. "$(dirname "${BASH_SOURCE[0]}")/image.sh"

die() { log "ERROR: $*"; exit 2; }   # infrastructure/usage errors: exit 2, not 1

ALL_SCENARIOS=(first fresh2 second newid bad-missing bad-yaml keys-fail run-killed wait-deadlock cdrom configdrive)
MEM=${IMPRINT_VM_MEM:-1024}
SMP=${IMPRINT_VM_SMP:-2}
BOOT_TIMEOUT=${IMPRINT_VM_BOOT_TIMEOUT:-240}
CI_BOOT_TIMEOUT=${IMPRINT_VM_CLOUDINIT_TIMEOUT:-480}   # cloud-init boots take ~45 s under TCG
IMPRINT_MAX_FIRST=${IMPRINT_VM_IMPRINT_MAX_FIRST:-30}   # s, imprint.service on a first boot (TCG)
# s, imprint.service when sealed. Natively a sealed run exits in ~1 ms
# (docs/benchmarks.md); under TCG at boot, with the host loaded by parallel
# builds, process start plus the read-only mount of the cidata ISO (isofs
# module load) took 5.3-8.1 s. The cap is there to catch a real wait (a
# network probe, a datasource timeout: 60 s), not to measure speed.
IMPRINT_MAX_SEALED=${IMPRINT_VM_IMPRINT_MAX_SEALED:-15}
SECRET=hunter2-S3cret-Pa55                               # db.password in fixtures/user-data/values.json

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

PERF_SCENARIOS="perf-imprint perf-imprintapp perf-cloudinit perf-emptyunit perf-none"
# Not in --perf's default set, measurements only: a setup imprint does not
# support (the generator's drop-ins baked at image build; image.sh,
# bake_generator), and the emptyunit image with a second empty oneshot that
# has default dependencies (image.sh, install_plain_empty_unit).
PERF_EXTRA="perf-imprintbaked perf-emptyplain"
SCEN=() KEEP=0 SKIP_DEPS=${IMPRINT_VM_SKIP_DEPS:-0} PERF=0 PERF_RUNS=1 INTERLEAVE=0 RERUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) [ $# -ge 2 ] || { usage; exit 2; }; SCEN+=("$2"); shift 2 ;;
    --scenario=*) SCEN+=("${1#*=}"); shift ;;
    --keep) KEEP=1; shift ;;
    --no-deps) SKIP_DEPS=1; shift ;;
    --perf) PERF=1; shift ;;
    --perf-runs) PERF=1; PERF_RUNS=$2; shift 2 ;;
    --interleave) PERF=1; INTERLEAVE=1; shift ;;
    --rerun) PERF=1; RERUN=1; shift ;;
    --list) printf '%s\n' "${ALL_SCENARIOS[@]}" $PERF_SCENARIOS $PERF_EXTRA; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ ${#SCEN[@]} -eq 0 ]; then
  # shellcheck disable=SC2206
  if [ "$PERF" = 1 ]; then SCEN=($PERF_SCENARIOS); else SCEN=("${ALL_SCENARIOS[@]}"); fi
fi
for s in "${SCEN[@]}"; do
  case " ${ALL_SCENARIOS[*]} $PERF_SCENARIOS $PERF_EXTRA " in
    *" $s "*) ;; *) die "unknown scenario '$s' (see --list)" ;;
  esac
done
need_root

# ------------------------------------------------------------------ results
PASS=0 FAILN=0 FAILED=() CUR=setup
ok()   { PASS=$((PASS + 1)); printf '  ok    %-12s %s\n' "$CUR" "$1"; }
bad()  { FAILN=$((FAILN + 1)); FAILED+=("$CUR: $1"); printf '  FAIL  %-12s %s\n' "$CUR" "$1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/          | /' | head -40; }
note() { printf '  note  %-12s %s\n' "$CUR" "$1"; }
# check DESC CMD...       pass when CMD succeeds
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
# eq DESC EXPECTED ACTUAL
eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected: '$2'
actual:   '$3'"; fi; }
ne() { if [ "$2" != "$3" ]; then ok "$1"; else bad "$1" "both are: '$2'"; fi; }
# same_file DESC EXPECTED_FILE ACTUAL_FILE   byte-exact, diff (with cat -A) on failure
same_file() {
  if cmp -s "$2" "$3"; then ok "$1"; else
    bad "$1" "$(diff <(cat -A "$2" 2>&1) <(cat -A "$3" 2>&1) | head -30)
(expected: $2, actual: $3)"; fi
}
# le DESC A B: numeric A <= B
le() { if awk -v a="$2" -v b="$3" 'BEGIN{exit !(a+0 <= b+0 && a != "")}'; then ok "$1 ($2 <= $3)"; else bad "$1" "$2 > $3"; fi; }

# ------------------------------------------------------------------ work dir
mkdir -p "$CACHE/runs"
RUN="$CACHE/runs/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUN"
ln -sfn "$RUN" "$CACHE/runs/last"
# keep the last 5 runs' logs
ls -1dt "$CACHE"/runs/2*/ 2>/dev/null | tail -n +6 | xargs -r rm -rf
cleanup_run() {
  if [ "$KEEP" = 0 ]; then find "$RUN" -name '*.qcow2' -delete 2>/dev/null || true; fi
}
trap cleanup_run EXIT
T_START=$SECONDS
TIMINGS=()
timing() { TIMINGS+=("$(printf '%-28s %6s s' "$1" "$2")"); }

# ------------------------------------------------------------------ setup
if [ "$SKIP_DEPS" != 1 ]; then
  t=$SECONDS; deps >"$RUN/deps.log" 2>&1 || { tail -20 "$RUN/deps.log"; die "deps failed ($RUN/deps.log)"; }
  timing deps $((SECONDS - t))
fi
for t in qemu-system-x86_64 qemu-img genisoimage; do
  command -v "$t" >/dev/null || die "$t missing: run without --no-deps (or tests/vm/image.sh deps)"
done
ACC=$(pick_accel)
case "$ACC" in
  kvm) ACCEL_ARGS=(-enable-kvm -cpu host) ;;
  *)   ACCEL_ARGS=(-accel tcg -cpu max) ;;
esac
log "run dir: $RUN (accel: $ACC)"

exec 9>"$CACHE/.lock"; flock 9     # one harness at a time per cache (images + CPU)
declare -A IMG
image_for() {   # image_for VARIANT -> sets IMAGE KERNEL INITRD (builds once per run)
  local v=$1 t=$SECONDS bin=
  if [ -z "${IMG[$v]:-}" ]; then
    case "$v" in imprint|imprintapp|imprintbaked) bin=$(resolve_imprint_bin) ;; esac
    [ -n "$bin" ] && log "imprint binary: $bin"
    build_variant "$v" $bin
    IMG[$v]=$IMAGE
    timing "image $v" $((SECONDS - t))
  fi
  IMAGE=${IMG[$v]}
}

# ------------------------------------------------------------------ seeds
# seed NAME IID FILE:TYPE... -> $RUN/seed-NAME/seed.iso (encoding: $SEED_ENCODING)
SEED_ENCODING=gzip+base64
seed() {
  local name=$1; shift
  [ "$SEED_ENCODING" = gzip+base64 ] || name="$name-$SEED_ENCODING"
  [ -f "$RUN/seed-$name/seed.iso" ] || "$VM_DIR/fixtures/make-seed.sh" --encoding "$SEED_ENCODING" \
    "$RUN/seed-$name" "$@" >/dev/null
  SEED="$RUN/seed-$name/seed.iso"
}
seed_good()    { seed good    iid-e2e-0001 cloud-config.yaml:text/cloud-config values.json:application/json; }
seed_newid()   { seed newid   iid-e2e-0002 cloud-config-newid.yaml:text/cloud-config values.json:application/json; }
seed_missing() { seed missing iid-e2e-bad1 cloud-config-missing.yaml:text/cloud-config values.json:application/json; }
seed_badyaml() { seed badyaml iid-e2e-bad2 cloud-config-badyaml.yaml:text/cloud-config values.json:application/json; }
# --perf: ASCII only, so that cloud-init 22.4 parses it too (it drops a 7bit
# cloud-config part holding UTF-8 whole: docs/cloud-init.md)
seed_perf()    { seed perf    iid-e2e-perf cloud-config-perf.yaml:text/cloud-config values.json:application/json; }

# config_drive NAME UUID -> $SEED: an OpenStack config drive (ISO 9660,
# label config-2, as Nova writes it) holding openstack/latest/meta_data.json
# with UUID and, as openstack/latest/user_data, seed_good's user-data
config_drive() {
  local name=$1 uuid=$2 d="$RUN/configdrive-$1"
  seed_good
  if [ ! -f "$d/config.iso" ]; then
    mkdir -p "$d/tree/openstack/latest"
    printf '{"uuid": "%s", "hostname": "imprint-e2e", "name": "imprint-e2e"}\n' "$uuid" \
      > "$d/tree/openstack/latest/meta_data.json"
    cp "$(dirname "$SEED")/user-data" "$d/tree/openstack/latest/user_data"
    if command -v genisoimage >/dev/null; then
      genisoimage -quiet -output "$d/config.iso" -volid config-2 -joliet -rock "$d/tree"
    else
      xorriso -as mkisofs -quiet -output "$d/config.iso" -volid config-2 -joliet -rock "$d/tree"
    fi
  fi
  SEED="$d/config.iso"
}

# ------------------------------------------------------------------ boot
# boot NAME DISK SEED [TIMEOUT]: DISK is created as a fresh overlay over
# $IMAGE if it does not exist, else booted as it is (a later boot of the same
# instance). Results: $RUN/NAME/{console.log,report.log,report/*,wall}
boot() {
  local name=$1 disk=$2 seediso=$3 to=${4:-$BOOT_TIMEOUT}
  local rd="$RUN/$name"; rm -rf "$rd"; mkdir -p "$rd/report"
  [ -f "$disk" ] || qemu-img create -q -f qcow2 -b "$IMAGE" -F raw "$disk"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$to" qemu-system-x86_64 "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP" \
    -nographic -no-reboot -monitor none -nodefaults -vga none \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "root=/dev/vda rw console=ttyS0,115200 panic=-1 ${IMPRINT_VM_APPEND:-}" \
    -drive "file=$disk,if=virtio,format=qcow2" \
    -drive "file=$seediso,${SEED_DRIVE:-if=virtio},format=raw,readonly=on" \
    -nic user,model=virtio-net-pci,restrict=on \
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
    -serial "file:$rd/console.log" -serial "file:$rd/report.log" \
    </dev/null >"$rd/qemu.out" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  echo "$WALL" > "$rd/wall"
  timing "boot $name" "$WALL"
  [ "$rc" = 0 ] || echo "qemu exit status $rc (124 = timeout after ${to}s)" >> "$rd/qemu.out"
  QEMU_RC=$rc
  split_report "$rd"
  RD=$rd
  log "boot $name: ${WALL} s (qemu rc=$rc)"
}

# report.log -> report/NAME files (base64/gzip decoded)
split_report() {
  local rd=$1 name gz
  tr -d '\r' < "$rd/report.log" | awk -v dir="$rd/report" '
    /^@@begin / { name = $2; gz = ($3 == "gz"); f = dir "/" name ".b64"; printf "" > f; if (gz) print name > (dir "/.gz"); next }
    /^@@end / { close(f); f = ""; next }
    f != "" { print >> f }
  '
  for f in "$rd"/report/*.b64; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .b64)
    if grep -qx "$name" "$rd/report/.gz" 2>/dev/null; then
      base64 -d < "$f" | gzip -dc > "$rd/report/$name" 2>/dev/null || true
    else
      base64 -d < "$f" > "$rd/report/$name" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}
prop() { sed -n "s|^$1=||p" "$RD/report/props" 2>/dev/null | head -n1; }
rep()  { cat "$RD/report/$1" 2>/dev/null || true; }
# seconds between two monotonic usec props
unit_secs() {
  awk -v a="$(prop "$1.InactiveExitTimestampMonotonic")" -v b="$(prop "$1.ActiveEnterTimestampMonotonic")" \
    'BEGIN{ if (a > 0 && b > 0) printf "%.2f", (b-a)/1e6; else print "" }'
}

# The boot reached its end and the reporter ran: everything else depends on it.
assert_booted() {
  if grep -aq '===IMPRINT-E2E-END===' "$RD/report.log" && [ -s "$RD/report/props" ]; then
    ok "boot completed and reported ($(cat "$RD/wall") s, timeout ${1:-$BOOT_TIMEOUT} s)"
    # the guest's own "startup finished" (kernel + userspace), not qemu wall
    # time, which also counts the reporter and poweroff
    le "boot finished well inside its timeout (startup s)" \
      "$(awk -v a="$(prop system.finish_usec)" 'BEGIN{ if (a > 0) printf "%.1f", a/1e6 }')" "$(( ${1:-$BOOT_TIMEOUT} / 2 ))"
    return 0
  fi
  bad "boot completed and reported" "no complete report in $RD/report.log ($(cat "$RD/qemu.out" 2>/dev/null | tail -2))
console tail:
$(tail -25 "$RD/console.log" 2>/dev/null)"
  return 1
}

assert_common_good() {   # on every boot where imprint should have succeeded
  eq "imprint.service Result=success" success "$(prop imprint.service.Result)"
  eq "imprint.service active (RemainAfterExit)" active "$(prop imprint.service.ActiveState)"
  eq "no failed units" "" "$(rep failed)"
  eq "system state is running" running "$(prop system.state)"
  eq "no ordering cycle in the journal" "0/0" "$(prop journal.ordering_cycle)/$(prop journal.found_ordering_cycle)"
  eq "seal exists" yes "$(prop seal.exists)"
  eq "/var/lib/imprint is 0700" 700 "$(prop state.mode)"
  eq "app.service active" active "$(prop app.service.ActiveState)"
  eq "app.service started once" 1 "$(prop app.starts)"
  eq "ssh.service active" active "$(prop ssh.service.ActiveState)"
  eq "imprint-host-keys.service Result=success" success "$(prop imprint-host-keys.service.Result)"
  eq "imprint-host-keys.service ExecMainStatus=0" 0 "$(prop imprint-host-keys.service.ExecMainStatus)"
  check "ssh.service started after imprint-host-keys.service finished" \
    test "$(prop ssh.service.InactiveExitTimestampMonotonic)" -ge "$(prop imprint-host-keys.service.ActiveEnterTimestampMonotonic)"
  check "ssh host keys: ed25519 and ecdsa present" \
    bash -c 'grep -q "^ED25519 SHA256:" "$1" && grep -q "^ECDSA SHA256:" "$1"' _ "$RD/report/ssh-fingerprints"
  eq "conf.env mode 0640" 640 "$(prop file./opt/app/conf.env.mode)"
  no_secret_leak
}
# Other distributions' sshd, rebuilt in the imprint image (guest/sshd-shapes):
# imprint's drop-ins order them after imprint-host-keys.service. Fedora's key
# makers found imprint's keys in place and made none; Arch's made only the
# type imprint does not (rsa); sshd started per
# connection (Accept=yes) answered with the instance's final key. "made":
# this boot made the keys, and the probe connected before they were done.
assert_sshd_shapes() {
  local t probe key pub
  for t in ed25519 ecdsa; do
    check "Fedora's sshd-keygen@$t checked its condition after imprint-host-keys.service finished" \
      test "$(prop "sshd-keygen@$t.service.ConditionTimestampMonotonic")" -ge \
        "$(prop imprint-host-keys.service.ActiveEnterTimestampMonotonic)" -a \
        "$(prop imprint-host-keys.service.ActiveEnterTimestampMonotonic)" -gt 0
    eq "... and made no key (ConditionResult=no: imprint's $t key was there)" no \
      "$(prop "sshd-keygen@$t.service.ConditionResult")"
  done
  check "Arch's sshdgenkeys.service (ssh-keygen -A) checked its condition after imprint-host-keys.service finished" \
    test "$(prop sshdgenkeys.service.ConditionTimestampMonotonic)" -ge \
      "$(prop imprint-host-keys.service.ActiveEnterTimestampMonotonic)" -a \
      "$(prop imprint-host-keys.service.ActiveEnterTimestampMonotonic)" -gt 0
  if [ "$1" = made ]; then
    eq "... and ran (ConditionResult=yes: no rsa key, a type the manifest does not list)" yes \
      "$(prop sshdgenkeys.service.ConditionResult)"
    check "... and made the rsa key, which the instance keeps beside imprint's" \
      grep -q "^RSA SHA256:" "$RD/report/ssh-fingerprints"
    for t in ED25519 ECDSA; do
      eq "the $t key in place is the one imprint-host-keys.service generated (its journal's fingerprint)" \
        "$(sed -n "s|^generated ssh host key /etc/ssh/ssh_host_${t,,}_key (\(SHA256:[^)]*\)).*|\1|p" "$RD/report/host-keys-journal" | tail -n1)" \
        "$(awk -v t="$t" '$1==t{print $2}' "$RD/report/ssh-fingerprints")"
    done
    # ssh-keygen writes each key under a temporary name (KEY.XXXXXXXXXX)
    # before it renames it; an old instance's KEY.pub is not one.
    eq "imprint-host-keys.service removed no key another unit was writing" "" \
      "$(grep -aE '^removed ssh host key [^ ]*_key(\.pub)?\.[A-Za-z0-9]{6,} ' "$RD/report/host-keys-journal")"
  else
    eq "... and made no key (ConditionResult=no: every key was there)" no \
      "$(prop sshdgenkeys.service.ConditionResult)"
  fi
  probe=$(rep ssh-probe)
  key=$(sed -n 's/^key=//p' <<<"$probe"); pub=$(sed -n 's/^pub=//p' <<<"$probe")
  check "the instance has an ed25519 host key" test -n "$pub"
  eq "per-connection sshd (Accept=yes) answered the first connection with the instance's final ed25519 key" \
    "$pub" "$key"
  if [ "$1" = made ]; then
    ne "... a connection made before imprint-host-keys.service was done" active \
      "$(sed -n 's/^host-keys-at-connect=//p' <<<"$probe")"
  fi
}
# `cloud-init status --wait` (imprint's shim) and `imprint status --wait`,
# started side by side right after imprint.service (guest/shim-probe.service):
# each returns only once imprint-host-keys.service is done, as cloud-init's
# own "done" includes its ssh keys. assert_shim_probe made|kept RC (the
# shim's exit code; imprint status exits 1 where the shim does).
assert_shim_probe() {
  local probe w pub; probe=$(rep shim-probe); pub=$(rep ssh-probe | sed -n 's/^pub=//p')
  for w in shim imprint; do
    eq "an early $w status --wait exits $2" "$w-rc=$2" "$(grep "^$w-rc=" <<<"$probe")"
    eq "... only once the instance's final ed25519 host key is in place" \
      "$pub" "$(sed -n "s/^$w-key=//p" <<<"$probe")"
  done
  if [ "$1" = made ]; then
    ne "... both called before imprint-host-keys.service was done" active \
      "$(sed -n 's/^host-keys-before=//p' <<<"$probe")"
  fi
}
# After the boot: `imprint status` exits 1 with status STATUS and LINE (WHAT
# it says), and the shim's `status --wait --long` exits 1, `status: error`,
# with SHIM_ERROR in its errors.
assert_failed_status() {   # assert_failed_status STATUS WHAT LINE SHIM_ERROR
  local out; out=$(rep imprint-status-out)
  eq "imprint status exits 1" rc=1 "$(tail -1 <<<"$out")"
  eq "imprint status: $1" "status:        $1" "$(grep '^status:' <<<"$out")"
  check "imprint status $2" grep -qF -- "$3" <<<"$out"
  out=$(rep shim-status)
  eq "cloud-init status --wait (imprint's shim) exits 1" rc=1 "$(tail -1 <<<"$out")"
  eq "... status: error" "status: error" "$(grep '^status:' <<<"$out")"
  check "... its errors say: $4" grep -qF -- "- $4" <<<"$out"
}
no_secret_leak() {
  local f leaks=""
  for f in imprint-journal sealed report.json imprint-status; do
    grep -aqF "$SECRET" "$RD/report/$f" 2>/dev/null && leaks="$leaks $f"
  done
  grep -aqF "$SECRET" "$RD/console.log" && leaks="$leaks console.log"
  eq "secret value never in journal/seal/report/console" "" "${leaks# }"
}
assert_app_env() {   # assert_app_env EXPECTED_FILE
  same_file "app.service environment (systemd EnvironmentFile=) is byte-exact" "$1" "$RD/report/app-seen.env"
  same_file "conf.env sourced by POSIX sh gives the same bytes" "$1" "$RD/report/app-sh.env"
}
warn_seed_mounted() {
  [ -z "$(prop mounts.iso9660)" ] || note "a seed file system is still mounted after boot: $(prop mounts.iso9660)"
}

# ------------------------------------------------------------------ scenarios
declare -A DONE
need() { [ -n "${DONE[$1]:-}" ] || run_scenario "$1"; }
run_scenario() {
  local s=$1; DONE[$s]=1
  CUR=$s
  echo "== scenario $s"
  "scn_${s//-/_}" || true
}

DISK_A="$RUN/disk-a.qcow2"    # the instance that first/second/newid boot in turn

scn_first() {
  image_for imprint; seed_good
  boot first "$DISK_A" "$SEED"
  assert_booted || { FIRST_OK=0; return; }
  assert_common_good
  eq "imprint.service ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  le "imprint.service took at most ${IMPRINT_MAX_FIRST}s" "$(unit_secs imprint.service)" "$IMPRINT_MAX_FIRST"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  eq "early.service started twice (start + one restart by imprint)" 2 "$(prop early.starts)"
  eq "early.service active" active "$(prop early.service.ActiveState)"
  same_file "early.conf rendered as expected" "$VM_DIR/fixtures/expected/early-first.conf" "$RD/report/early.conf"
  same_file "early.service's last start saw the final early.conf" "$RD/report/early.conf" "$RD/report/early-seen.conf"
  check "seal names instance iid-e2e-0001" grep -q 'iid-e2e-0001' "$RD/report/sealed"
  eq "cloud-init status --wait (imprint's shim) exits 0 after a good boot" rc=0 "$(rep shim-status | tail -1)"
  assert_sshd_shapes made
  assert_shim_probe made 0
  warn_seed_mounted
  FIRST_RD=$RD
  FIRST_FP=$(rep ssh-fingerprints)
  FIRST_CONF=$(prop file./opt/app/conf.env.sha256)
  FIRST_EARLY=$(prop file./etc/early/early.conf.sha256)
  FIRST_SEAL=$(prop seal.sha256)
}

scn_fresh2() {
  need first
  image_for imprint; seed_good
  boot fresh2 "$RUN/disk-fresh2.qcow2" "$SEED"
  assert_booted || return
  eq "imprint.service ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  eq "ssh.service active" active "$(prop ssh.service.ActiveState)"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  local a b
  for t in ED25519 ECDSA; do
    a=$(printf '%s\n' "$FIRST_FP" | awk -v t=$t '$1==t{print $2}')
    b=$(rep ssh-fingerprints | awk -v t=$t '$1==t{print $2}')
    if [ -n "$a" ] && [ -n "$b" ]; then ne "$t host key differs from the first instance's" "$a" "$b"
    else bad "$t host key differs from the first instance's" "missing fingerprint (first: '$a', this: '$b')"; fi
  done
  assert_sshd_shapes made
  assert_shim_probe made 0
}

scn_second() {
  need first
  image_for imprint; seed_good
  [ -f "$DISK_A" ] || { bad "disk of scenario first exists"; return; }
  boot second "$DISK_A" "$SEED"
  assert_booted || return
  eq "imprint.service ExecMainStatus=77 (sealed)" 77 "$(prop imprint.service.ExecMainStatus)"
  eq "imprint.service Result=success (77 counts as success)" success "$(prop imprint.service.Result)"
  eq "imprint.service active" active "$(prop imprint.service.ActiveState)"
  le "imprint.service exited within ${IMPRINT_MAX_SEALED}s" "$(unit_secs imprint.service)" "$IMPRINT_MAX_SEALED"
  eq "no failed units" "" "$(rep failed)"
  eq "no ordering cycle in the journal" "0/0" "$(prop journal.ordering_cycle)/$(prop journal.found_ordering_cycle)"
  eq "conf.env unchanged (sha256)" "${FIRST_CONF:-?}" "$(prop file./opt/app/conf.env.sha256)"
  eq "early.conf unchanged (sha256)" "${FIRST_EARLY:-?}" "$(prop file./etc/early/early.conf.sha256)"
  eq "seal unchanged (sha256)" "${FIRST_SEAL:-?}" "$(prop seal.sha256)"
  eq "ssh host keys unchanged" "${FIRST_FP:-?}" "$(rep ssh-fingerprints)"
  eq "imprint-host-keys.service ExecMainStatus=0 (nothing to do)" 0 "$(prop imprint-host-keys.service.ExecMainStatus)"
  check "imprint-host-keys.service found nothing to do" grep -q "nothing to do" "$RD/report/host-keys-journal"
  eq "ssh.service active" active "$(prop ssh.service.ActiveState)"
  eq "early.service started once (not restarted)" 1 "$(prop early.starts)"
  eq "app.service active" active "$(prop app.service.ActiveState)"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  assert_sshd_shapes kept
  assert_shim_probe kept 0
  no_secret_leak
}

scn_newid() {
  need second
  image_for imprint; seed_newid
  [ -f "$DISK_A" ] || { bad "disk of scenario first exists"; return; }
  boot newid "$DISK_A" "$SEED"
  assert_booted || return
  assert_common_good
  eq "imprint.service ExecMainStatus=0 (configured again)" 0 "$(prop imprint.service.ExecMainStatus)"
  check "seal names the new instance iid-e2e-0002" grep -q 'iid-e2e-0002' "$RD/report/sealed"
  check "seal no longer names iid-e2e-0001" bash -c '! grep -q iid-e2e-0001 "$1"' _ "$RD/report/sealed"
  assert_app_env "$VM_DIR/fixtures/expected/app-newid.env"
  ne "conf.env changed" "${FIRST_CONF:-?}" "$(prop file./opt/app/conf.env.sha256)"
  eq "early.service started twice (changed early.conf -> restart)" 2 "$(prop early.starts)"
  same_file "early.service's last start saw the final early.conf" "$RD/report/early.conf" "$RD/report/early-seen.conf"
  ne "ssh host keys replaced for the new instance" "${FIRST_FP:-?}" "$(rep ssh-fingerprints)"
  assert_sshd_shapes made
  assert_shim_probe made 0
}

assert_bad() {   # assert_bad PATTERN WHAT INSTANCE-ID
  assert_booted || return
  eq "imprint.service Result=exit-code" exit-code "$(prop imprint.service.Result)"
  eq "imprint.service ExecMainStatus=65 (invalid user-data)" 65 "$(prop imprint.service.ExecMainStatus)"
  check "journal names the problem ($2: /$1/)" grep -aqiE "$1" "$RD/report/imprint-journal"
  eq "conf.env not written" no "$(prop file./opt/app/conf.env.exists)"
  eq "early.conf not written" no "$(prop file./etc/early/early.conf.exists)"
  eq "not sealed" no "$(prop seal.exists)"
  eq "early.service not restarted" 1 "$(prop early.starts)"
  eq "no ordering cycle in the journal" "0/0" "$(prop journal.ordering_cycle)/$(prop journal.found_ordering_cycle)"
  check "boot reached its end (system degraded, not hung)" test "$(prop system.state)" = degraded
  # Keys of its own all the same (src/hostkeys.rs, Unsealed): the image has
  # none, so sshd starts with this instance's, never with shared ones.
  eq "imprint-host-keys.service succeeded after the failed run" success "$(prop imprint-host-keys.service.Result)"
  check "host keys made for $3, which its run did not configure" \
    grep -aqF "host keys made for $3, which this boot's run did not configure" "$RD/report/host-keys-journal"
  eq "ssh host keys made: ECDSA and ED25519 (and RSA, by Arch's sshdgenkeys after them)" "ECDSA ED25519 RSA" \
    "$(rep ssh-fingerprints | awk '{print $1}' | xargs)"
  eq "ssh.service active with them" active "$(prop ssh.service.ActiveState)"
  assert_sshd_shapes made
  assert_shim_probe made 1
  no_secret_leak
}
scn_bad_missing() {
  image_for imprint; seed_missing
  boot bad-missing "$RUN/disk-bad-missing.qcow2" "$SEED"
  assert_bad 'app\.greeting' "missing required value" iid-e2e-bad1
  eq "cloud-init status --wait (imprint's shim) exits 1 after a failed run" rc=1 "$(rep shim-status | tail -1)"
}
scn_bad_yaml() {
  image_for imprint; seed_badyaml
  boot bad-yaml "$RUN/disk-bad-yaml.qcow2" "$SEED"
  assert_bad 'yaml|syntax|pars|scan' "YAML syntax error" iid-e2e-bad2
}

# The run configures the instance, then making its host keys fails for real:
# guest/e2e-keys-fail.service (enabled by imprint_e2e.keys_fail=1) makes
# /etc/ssh immutable before imprint-host-keys.service. `imprint status` and
# the shim must say so (cloud-init's status is "error" when its ssh module
# fails), the early `--wait` callers included; the app is not held back.
scn_keys_fail() {
  image_for imprint; seed_good
  IMPRINT_VM_APPEND="imprint_e2e.keys_fail=1 ${IMPRINT_VM_APPEND:-}" \
    boot keys-fail "$RUN/disk-keys-fail.qcow2" "$SEED"
  assert_booted || return
  eq "imprint.service ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  check "seal names instance iid-e2e-0001" grep -q 'iid-e2e-0001' "$RD/report/sealed"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  eq "e2e-keys-fail.service made /etc/ssh immutable" success "$(prop e2e-keys-fail.service.Result)"
  eq "imprint-host-keys.service Result=exit-code" exit-code "$(prop imprint-host-keys.service.Result)"
  check "its journal says why (the refusal to create a key in /etc/ssh)" \
    grep -aqE "/etc/ssh.*(Operation not permitted|Permission denied)" "$RD/report/host-keys-journal"
  eq "no ssh host keys" "" "$(rep ssh-fingerprints)"
  assert_failed_status host-keys-failed "names the failed unit" \
    "host keys:     failed: imprint-host-keys.service failed (exit-code): this instance's ssh host keys were not made" \
    "imprint-host-keys.service failed (exit-code)"
  check "... and the journal to read and the restart" grep -qF \
    "\`journalctl -b -u imprint-host-keys.service\` says why; fix that, then \`systemctl restart imprint-host-keys.service\`" \
    "$RD/report/imprint-status-out"
  local probe; probe=$(rep shim-probe)
  for w in shim imprint; do
    eq "an early $w status --wait exits 1 once the keys failed" "$w-rc=1" "$(grep "^$w-rc=" <<<"$probe")"
    eq "... with no ed25519 host key" "$w-key=none" "$(grep "^$w-key=" <<<"$probe")"
  done
  ne "... both called before imprint-host-keys.service was done" active \
    "$(sed -n 's/^host-keys-before=//p' <<<"$probe")"
  no_secret_leak
}

# The run is killed (-9) before it writes its report (guest/e2e-kill-run.service,
# enabled by imprint_e2e.kill_run=1), as by its TimeoutStartSec=, the OOM
# killer or a crash: the instance still gets host keys of its own (never the
# image's), and `imprint status` and the shim say the run failed (without
# the change both said "not run" and exited 0, and sshd had no keys).
scn_run_killed() {
  image_for imprint; seed_good
  IMPRINT_VM_APPEND="imprint_e2e.kill_run=1 ${IMPRINT_VM_APPEND:-}" \
    boot run-killed "$RUN/disk-run-killed.qcow2" "$SEED"
  assert_booted || return
  eq "e2e-kill-run.service killed the run" success "$(prop e2e-kill-run.service.Result)"
  eq "imprint.service Result=signal" signal "$(prop imprint.service.Result)"
  eq "no report.json (the run died before it)" "" "$(rep report.json)"
  eq "not sealed" no "$(prop seal.exists)"
  eq "imprint-host-keys.service succeeded after the killed run" success "$(prop imprint-host-keys.service.Result)"
  check "host keys made for an instance-id the run never learned" grep -aqF \
    "host keys made for this instance (its run never learned the instance-id), which this boot's run did not configure" \
    "$RD/report/host-keys-journal"
  eq "ssh host keys made: ECDSA and ED25519 (and RSA, by Arch's sshdgenkeys after them)" "ECDSA ED25519 RSA" \
    "$(rep ssh-fingerprints | awk '{print $1}' | xargs)"
  eq "ssh.service active with them" active "$(prop ssh.service.ActiveState)"
  assert_failed_status failed "says the run died before its report" \
    "error:         imprint.service failed (signal) before its run wrote a report: it was killed" \
    "imprint.service failed (signal) before its run wrote a report"
  assert_sshd_shapes made
  assert_shim_probe made 1
  no_secret_leak
}

# The seed on a CD-ROM (sr0, IDE: what Vagrant's cloud_init and
# cloud-localds users attach) whose /dev/disk/by-label links are gone when
# imprint starts (guest/e2e-no-seed-links.service, enabled by
# imprint_e2e.no_seed_links=1, after udev settled): imprint finds it by
# reading the block devices' labels (src/blockdev.rs), as on a boot where
# udev has not linked it yet (the image has no seed directory, so the scan
# is the only way left). Without that scan the run exits 69.
scn_cdrom() {
  image_for imprint; seed_good
  SEED_DRIVE="media=cdrom,if=ide" IMPRINT_VM_APPEND="imprint_e2e.no_seed_links=1 ${IMPRINT_VM_APPEND:-}" \
    boot cdrom "$RUN/disk-cdrom.qcow2" "$SEED"
  assert_booted || return
  eq "e2e-no-seed-links.service ran before imprint" success "$(prop e2e-no-seed-links.service.Result)"
  check "it removed the seed's by-label link" grep -aqE "removed '/dev/disk/by-label/(cidata|CIDATA)'" "$RD/report/no-seed-links"
  assert_common_good
  eq "imprint.service ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  check "seal names instance iid-e2e-0001" grep -q 'iid-e2e-0001' "$RD/report/sealed"
  check "no by-label link for the seed left after the removal" \
    bash -c 'sed -n "/^removed/,\$p" "$1" | grep -aq "root -> " && ! sed -n "/^removed/,\$p" "$1" | grep -aqiE "cidata -> "' _ "$RD/report/no-seed-links"
  check "imprint.service started after the removal" \
    test "$(prop imprint.service.InactiveExitTimestampMonotonic)" -ge "$(prop e2e-no-seed-links.service.ExecMainExitTimestampMonotonic)"
  no_secret_leak
}

# OpenStack's config drive (label config-2, named on the kernel command line
# since the image's manifest lists only nocloud): the instance is configured
# from it; booted again with the same drive it is sealed (77); booted with
# the drive of a new instance (a clone from a snapshot: another uuid) it is
# configured again, the drive's uuid being read offline and compared with
# the seal (before, the seal was trusted for OpenStack and the clone kept
# the first instance's configuration).
scn_configdrive() {
  image_for imprint
  local disk="$RUN/disk-configdrive.qcow2"
  local append="imprint.datasource=openstack ${IMPRINT_VM_APPEND:-}"
  config_drive one cd-e2e-0001
  IMPRINT_VM_APPEND=$append boot configdrive-1 "$disk" "$SEED"
  assert_booted || return
  assert_common_good
  eq "imprint.service ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  check "seal names the drive's uuid cd-e2e-0001" grep -q 'cd-e2e-0001' "$RD/report/sealed"
  check "seal says datasource openstack" grep -q 'openstack' "$RD/report/sealed"
  check "imprint not ordered after network-online.target (the drive is local)" \
    bash -c '! grep -q network-online "$1"' _ "$RD/report/generator-dropins"
  local seal1; seal1=$(prop seal.sha256)

  IMPRINT_VM_APPEND=$append boot configdrive-2 "$disk" "$SEED"
  assert_booted || return
  eq "same drive again: imprint.service ExecMainStatus=77 (sealed)" 77 "$(prop imprint.service.ExecMainStatus)"
  eq "seal unchanged (sha256)" "$seal1" "$(prop seal.sha256)"

  config_drive two cd-e2e-0002
  IMPRINT_VM_APPEND=$append boot configdrive-3 "$disk" "$SEED"
  assert_booted || return
  eq "a new instance's drive: imprint.service ExecMainStatus=0 (configured again)" 0 "$(prop imprint.service.ExecMainStatus)"
  check "seal names the new uuid cd-e2e-0002" grep -q 'cd-e2e-0002' "$RD/report/sealed"
  eq "imprint.service Result=success" success "$(prop imprint.service.Result)"
  no_secret_leak
}

# `imprint status --wait` and the shim's, called from a unit imprint.service
# is ordered after (guest/e2e-wait-deadlock.service, enabled by
# imprint_e2e.wait_deadlock=1): waiting would wait for a job that waits for
# the caller, and hold the boot for ever (cloud-init's has the same trap).
# Both must refuse at once, naming the unit, and the boot go on.
scn_wait_deadlock() {
  image_for imprint; seed_good
  IMPRINT_VM_APPEND="imprint_e2e.wait_deadlock=1 ${IMPRINT_VM_APPEND:-}" \
    boot wait-deadlock "$RUN/disk-wait-deadlock.qcow2" "$SEED"
  assert_booted || return
  local out; out=$(rep wait-deadlock)
  eq "e2e-wait-deadlock.service ran" success "$(prop e2e-wait-deadlock.service.Result)"
  eq "imprint status --wait there exits 64 (not 124: timed out waiting)" imprint-rc=64 "$(grep '^imprint-rc=' <<<"$out")"
  eq "the shim's status --wait there exits 1" shim-rc=1 "$(grep '^shim-rc=' <<<"$out")"
  local w
  for w in imprint shim; do
    le "$w refused within 10 s" "$(sed -n "s/^$w-secs=//p" <<<"$out")" 10
  done
  check "both say why, naming the unit and what to do" test "$(grep -cF \
    "not waiting: this process runs in e2e-wait-deadlock.service, and the start of imprint.service or imprint-host-keys.service waits for e2e-wait-deadlock.service's (they are ordered after it), so waiting here would hang the boot; order e2e-wait-deadlock.service after imprint-host-keys.service instead" \
    <<<"$out")" = 2
  eq "imprint.service ran after it: ExecMainStatus=0" 0 "$(prop imprint.service.ExecMainStatus)"
  check "seal names instance iid-e2e-0001" grep -q 'iid-e2e-0001' "$RD/report/sealed"
  assert_app_env "$VM_DIR/fixtures/expected/app-first.env"
  eq "cloud-init status --wait (imprint's shim) after the boot exits 0" rc=0 "$(rep shim-status | tail -1)"
}

# --perf: same seed, fresh overlay per boot; report only ("booted" is the one
# assertion). Per boot, from the guest's monotonic clock (s since the kernel
# started): each configurator unit's own time (ActiveEnter - InactiveExit),
# when app.service became active (its config is final there: imprint's
# generator orders it after imprint; none/emptyunit have it baked in;
# cloud-init cannot render imprint's manifest, so app.service fails there),
# when multi-user.target was reached, and the host's load average; for
# imprint, also imprint-host-keys.service's own time ("keys": ssh-keygen, off
# the app's path since it left imprint.service) and when ssh.service became
# active ("ssh-up"); in the medians also "app-us", app active counted from
# PID 1's start (UserspaceTimestampMonotonic): the same kernel, initrd and
# command line boot every variant, so the kernel's part is noise (0.1-0.2 s
# between variants' medians seen) and this leaves it out.
PERF_ROWS=() PERF_TSV="$RUN/perf.tsv"
perf_boot() {
  local v=$1 i=$2 to=$BOOT_TIMEOUT load
  [ "$v" = cloudinit ] && to=$CI_BOOT_TIMEOUT
  image_for "$v"
  SEED_ENCODING=${IMPRINT_VM_PERF_ENCODING:-gzip} seed_perf
  load=$(cut -d' ' -f1 /proc/loadavg)
  local extra=""; [ "$RERUN" = 1 ] && extra="imprint_e2e.rerun=1"
  IMPRINT_VM_APPEND="imprint_e2e.verbose=1 $extra ${IMPRINT_VM_APPEND:-}" \
    boot "perf-$v-$i" "$RUN/disk-perf-$v-$i.qcow2" "$SEED" "$to"
  assert_booted "$to" || return
  local u cols="" app mu fin
  app=$(abs_secs app.service ActiveEnter); mu=$(abs_secs multi-user.target ActiveEnter)
  fin=$(awk -v a="$(prop system.finish_usec)" 'BEGIN{ if (a > 0) printf "%.2f", a/1e6 }')
  for u in imprint.service imprint-host-keys.service empty-oneshot.service cloud-init-local.service \
           cloud-init.service cloud-config.service cloud-final.service; do
    cols="$cols $(printf '%-6s' "$(unit_secs "$u")")"
  done
  PERF_ROWS+=("$(printf '%-18s %5s %7s %8s %6s %6s %-9s %s' "$v#$i" "$load" "$(cat "$RD/wall")" \
    "$fin" "$mu" "${app:--}" "$(prop system.state)" "$cols")")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$load" "$fin" "$mu" "$app" \
    "$(unit_secs imprint.service)" "$(unit_secs empty-oneshot.service)" \
    "$(for u in cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service; do unit_secs "$u"; echo; done \
       | awk '$1 != "" {s += $1; n++} END { if (n) printf "%.2f", s }')" \
    "$(unit_secs imprint-host-keys.service)" "$(abs_secs ssh.service ActiveEnter)" \
    "$(awk -v a="$(prop app.service.ActiveEnterTimestampMonotonic)" -v u="$(prop system.userspace_usec)" \
        'BEGIN{ if (a > 0 && u > 0) printf "%.2f", (a-u)/1e6 }')" >> "$PERF_TSV"
  sed -n 1p "$RD/report/analyze-time" | sed 's/^/          /'
  perf_split | sed 's/^/          /'
  [ -s "$RD/report/rerun" ] && sed 's/^/          rerun: /' "$RD/report/rerun"
  [ "$v" = emptyplain ] && echo "          empty-plain.service (default dependencies): $(unit_secs empty-plain.service) s," \
    "started at $(abs_secs empty-plain.service InactiveExit) s; empty-oneshot.service $(unit_secs empty-oneshot.service) s"
  return 0
}
# Where imprint.service's time goes on this boot: systemd's timestamps of the
# unit (InactiveExit: the unit starts, ExecMainStart: the fork, ExecMainExit:
# the process's exit seen, ActiveEnter: the unit active) joined with the
# process's own clock in report.json (main's start on CLOCK_MONOTONIC, each
# stage's start and duration after main, when the report was taken). One
# line of ms per boot; "gaps" is the time between stages that no stage owns.
perf_split() {
  [ -s "$RD/report/report.json" ] && [ -n "$(prop imprint.service.ExecMainStartTimestampMonotonic)" ] || return 0
  python3 - "$RD/report/report.json" "$RD/report/imprint-journal-mono" \
    "$(prop imprint.service.InactiveExitTimestampMonotonic)" "$(prop imprint.service.ExecMainStartTimestampMonotonic)" \
    "$(prop imprint.service.ExecMainExitTimestampMonotonic)" "$(prop imprint.service.ActiveEnterTimestampMonotonic)" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
ie, ms, mx, ae = (int(x or 0) for x in sys.argv[3:7])
# journald's receive time of imprint's last entry ("[  12.345678] host imprint[N]: ...")
last_log = 0.0
try:
    for line in open(sys.argv[2], errors="replace"):
        if line.startswith("[") and " imprint[" in line:
            last_log = float(line[1:line.index("]")]) * 1e6
except (OSError, ValueError):
    pass
main = r.get("main_monotonic_ms", 0) * 1000.0   # us, as systemd's
report_ms = r.get("report_ms", 0)
if not (ie and ms and mx and ae and main):
    sys.exit(0)
st = r["stages"]
first = st[0]["start_ms"] if st else 0.0
last_end = max((s["start_ms"] + s["duration_ms"] for s in st), default=0.0)
spans = sorted((s["start_ms"], s["start_ms"] + s["duration_ms"]) for s in st)
owned, cur = 0.0, None
for a, b in spans:  # union of the stages' spans (in case two overlap)
    if cur is None or a > cur[1]:
        if cur: owned += cur[1] - cur[0]
        cur = [a, b]
    else:
        cur[1] = max(cur[1], b)
if cur: owned += cur[1] - cur[0]
ms_ = lambda us: us / 1000.0
print("split ms: start->exec %.0f | exec->main %.0f | main->1st stage %.0f | stages %.0f + gaps %.0f"
      " | last stage->report %.0f | report->exit %.0f | exit->active %.0f | unit %.0f"
      % (ms_(ms - ie), ms_(main - ms), first, owned, last_end - first - owned,
         report_ms - last_end, ms_(mx - main) - report_ms, ms_(ae - mx), ms_(ae - ie)))
# each stage's duration, and [the gap before it] where one is 5 ms or more
out, end = [], first
for s in st:
    gap = s["start_ms"] - end
    out.append(("[%.0f] " % gap if gap >= 5 else "") + "%s %.0f" % (s["stage"], s["duration_ms"]))
    end = max(end, s["start_ms"] + s["duration_ms"])
print("stages ms: " + " ".join(out))
if last_log:
    print("last journal entry received %.0f ms after the report, %.0f ms before the exit was seen"
          % (ms_(last_log - main) - report_ms, ms_(mx - last_log)))
PY
}
# seconds since boot at which UNIT entered a state (monotonic usec prop)
abs_secs() { awk -v a="$(prop "$1.$2TimestampMonotonic")" 'BEGIN{ if (a > 0) printf "%.2f", a/1e6 }'; }
scn_perf_imprint()   { local i; for i in $(seq "$PERF_RUNS"); do perf_boot imprint "$i"; done; }
scn_perf_imprintapp() { local i; for i in $(seq "$PERF_RUNS"); do perf_boot imprintapp "$i"; done; }
scn_perf_imprintbaked() { local i; for i in $(seq "$PERF_RUNS"); do perf_boot imprintbaked "$i"; done; }
scn_perf_emptyplain() { local i; for i in $(seq "$PERF_RUNS"); do perf_boot emptyplain "$i"; done; }
scn_perf_cloudinit() { local i; for i in $(seq "$PERF_RUNS"); do perf_boot cloudinit "$i"; done; }
scn_perf_emptyunit() { local i; for i in $(seq "$PERF_RUNS"); do perf_boot emptyunit "$i"; done; }
scn_perf_none()      { local i; for i in $(seq "$PERF_RUNS"); do perf_boot none "$i"; done; }

# Medians per variant, and imprint against its floors.
perf_summary() {
  [ -s "$PERF_TSV" ] || return 0
  awk -F'\t' '
    function med(v, k,   n, i, j, t, a) {
      n = 0; for (i = 1; i <= cnt[v]; i++) if (val[v, k, i] != "") a[++n] = val[v, k, i] + 0
      if (n == 0) return ""
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { v = $1; c = ++cnt[v]; if (!(v in seen)) { seen[v] = 1; order[++nv] = v }
      for (k = 2; k <= 11; k++) val[v, k, c] = $k }
    END {
      printf "   %-10s %4s %6s %9s %11s %8s %10s %8s %9s %6s %7s %7s\n", "variant", "n", "load", "finished", "multi-user", "app-up", "imprint", "empty", "ci-units", "keys", "ssh-up", "app-us"
      for (x = 1; x <= nv; x++) { v = order[x]
        printf "   %-10s %4d %6s %9s %11s %8s %10s %8s %9s %6s %7s %7s\n", v, cnt[v], med(v, 2), med(v, 3), med(v, 4), med(v, 5), med(v, 6), med(v, 7), med(v, 8), med(v, 9), med(v, 10), med(v, 11) }
      if (("imprint" in seen) && ("emptyunit" in seen))
        printf "   imprint.service - empty oneshot (medians): %+.2f s (target: <= +0.10)\n", med("imprint", 6) - med("emptyunit", 7)
      if (("imprint" in seen) && ("none" in seen) && med("none", 5) != "")
        printf "   app active, imprint - none (medians): %+.2f s (target: <= +0.50)\n", med("imprint", 5) - med("none", 5)
      if (("imprint" in seen) && ("emptyunit" in seen) && med("emptyunit", 5) != "")
        printf "   app active, imprint - emptyunit (medians): %+.2f s\n", med("imprint", 5) - med("emptyunit", 5)
      if (("imprintapp" in seen) && ("emptyunit" in seen))
        printf "   imprintapp: imprint.service - empty oneshot (medians): %+.2f s (target: <= +0.10)\n", med("imprintapp", 6) - med("emptyunit", 7)
      if (("imprintapp" in seen) && ("emptyunit" in seen) && med("emptyunit", 5) != "")
        printf "   imprintapp: app active - emptyunit (medians): %+.2f s (target: <= +0.50)\n", med("imprintapp", 5) - med("emptyunit", 5)
      if (("imprintapp" in seen) && ("emptyunit" in seen) && med("emptyunit", 11) != "")
        printf "   imprintapp: app active from PID 1 start - emptyunit (medians): %+.2f s (the kernel boot left out)\n", med("imprintapp", 11) - med("emptyunit", 11)
      if (("imprintbaked" in seen) && ("emptyunit" in seen) && med("emptyunit", 11) != "")
        printf "   imprintbaked: app active from PID 1 start - emptyunit (medians): %+.2f s (the kernel boot left out)\n", med("imprintbaked", 11) - med("emptyunit", 11)
    }' "$PERF_TSV"
}

# ------------------------------------------------------------------ main
if [ "$INTERLEAVE" = 1 ]; then
  # --interleave: round i boots every perf variant once, in the order given,
  # so that the host's load drift (which moves a boot by up to a second
  # here) hits every variant alike; the other scenarios run first.
  for s in "${SCEN[@]}"; do
    case "$s" in perf-*) ;; *) [ -n "${DONE[$s]:-}" ] || run_scenario "$s" ;; esac
  done
  for i in $(seq "$PERF_RUNS"); do
    for s in "${SCEN[@]}"; do
      case "$s" in perf-*) CUR=$s; echo "== scenario $s, round $i"; perf_boot "${s#perf-}" "$i" || true ;; esac
    done
  done
else
  for s in "${SCEN[@]}"; do
    [ -n "${DONE[$s]:-}" ] || run_scenario "$s"
  done
fi

echo
echo "== timings (accel $ACC, -smp $SMP -m $MEM)"
printf '   %s\n' "${TIMINGS[@]}"
printf '   %-28s %6s s\n' total $((SECONDS - T_START))
if [ ${#PERF_ROWS[@]} -gt 0 ]; then
  echo "== perf (s since boot, guest monotonic clock; unit columns: ActiveEnter - InactiveExit)"
  printf '   %-18s %5s %7s %8s %6s %6s %-9s  %s\n' boot load wall finished multi app-up state \
    "imprint keys   empty  ci-loc ci     ci-cfg ci-fin"
  printf '   %s\n' "${PERF_ROWS[@]}"
  echo "== perf medians (s; load = host 1-min load average when the boot started)"
  perf_summary
fi
echo "== logs: $RUN  (per boot: console.log = serial console, report.log = raw report, report/ = decoded sections)"
if [ "$FAILN" -gt 0 ]; then
  echo "== failed:"; printf '   %s\n' "${FAILED[@]}"
fi
echo "$PASS passed, $FAILN failed"
[ "$FAILN" -eq 0 ]
