# shellcheck shell=bash
# lib.sh - shared settings and helpers for the VM end-to-end harness.
# Sourced by image.sh and run.sh; never executed on its own.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)

# Everything big lives here, never in the repo.
CACHE=${IMPRINT_VM_CACHE:-/var/cache/imprint-vm}
SUITE=${IMPRINT_VM_SUITE:-bookworm}
# The mirror apt already uses (deb822 first, classic sources.list second).
MIRROR=${IMPRINT_VM_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian

log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, qemu)"; }

# sha256 of stdin, hex only
hash_stdin() { sha256sum | cut -c1-16; }

# Resolve IMPRINT_BIN: "stand-in" means tests/vm/stand-in/imprint; a relative
# path is relative to the repo root; default target/release/imprint.
resolve_imprint_bin() {
  # With IMPRINT_DEB the package is what gets installed (and keys the image).
  if [ -n "${IMPRINT_DEB:-}" ]; then
    [ -f "$IMPRINT_DEB" ] || die "IMPRINT_DEB not found: $IMPRINT_DEB (build it: packaging/build.sh)"
    printf '%s\n' "$IMPRINT_DEB"; return
  fi
  local b=${IMPRINT_BIN:-target/release/imprint}
  case "$b" in
    stand-in) b="$VM_DIR/stand-in/imprint" ;;
    /*) ;;
    *) b="$REPO_ROOT/$b" ;;
  esac
  [ -f "$b" ] || die "imprint binary not found: $b
  build it (cargo build --release) or set IMPRINT_BIN=/path/to/imprint, or IMPRINT_BIN=stand-in to test the harness"
  printf '%s\n' "$b"
}

# ACCEL=auto|kvm|tcg. auto: KVM only with real hardware virtualisation (vmx/svm
# in /proc/cpuinfo) and no kvm_pvm module. On this machine kind /dev/kvm exists
# but is PVM, where a stock Debian kernel dies with "KVM internal error.
# Suberror: 1 / emulation failure", so auto picks TCG there.
pick_accel() {
  case "${ACCEL:-auto}" in
    kvm|tcg) echo "$ACCEL"; return ;;
  esac
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo \
     && [ ! -d /sys/module/kvm_pvm ]; then echo kvm; else echo tcg; fi
}
