#!/usr/bin/env bash
# build-static.sh - build imprint's static release binary; print its path.
#
#   scripts/build-static.sh [--musl|--glibc|--aarch64] [--deps]
#
# The one command that makes the binary that ships (packaging/, the VM test's
# IMPRINT_BIN, benches/compare.sh). Its path is the only thing on stdout;
# cargo's output goes to stderr. The binary is checked: no program
# interpreter, no shared library, and it runs.
#
#   --musl   x86_64-unknown-linux-musl (the default when its tools are there):
#            rustup cannot download the musl std on this machine kind, so the
#            std is built from source (-Zbuild-std) with Debian's own matching
#            compiler and source (rustc-web + rust-web-src, 1.96) and linked
#            against Debian's musl (musl-tools) and LLVM's libunwind
#            (libunwind-14-dev). About 2.1 MiB.
#   --glibc  x86_64-unknown-linux-gnu with +crt-static, the rustup toolchain
#            only (the fallback): about 3.3 MiB, glibc's static libc being
#            ~0.9 MiB of it. imprint uses no NSS (it reads the root's
#            /etc/passwd and /etc/group itself) and resolves no host names
#            (metadata services are addressed by IP), the two things a static
#            glibc does badly.
#   --aarch64  aarch64-unknown-linux-musl, cross-built (never the default):
#            the --musl route for arm64. rustup has no aarch64 std here and
#            cannot download one; Debian's rustc (LLVM 22) has the aarch64
#            backend, so std is built from rust-web-src as for --musl. Needs
#            arm64 as a dpkg foreign architecture for musl-dev:arm64 (musl's
#            aarch64 libc.a and crt objects, plus aarch64-linux-musl-gcc for
#            the fortify shim below) and gcc-aarch64-linux-gnu (the linker
#            driver, and the crtbegin/crtend objects rustc's self-contained
#            link asks for). LLVM's aarch64 libunwind.a is taken from
#            libunwind-14-dev:arm64 unpacked into target/aarch64-deps/, not
#            installed: that package puts libunwind.a in /usr/lib/llvm-14/lib,
#            the same path as the amd64 one --musl needs, so dpkg refuses to
#            install both. (GCC's aarch64 libgcc_eh.a is no substitute: it
#            calls glibc's _dl_find_object, which musl lacks.) The check runs
#            the binary under qemu-aarch64 (qemu-user) when that is there.
#            A static-pie, as the x86_64 one: rustc's own aarch64 musl target
#            does not make one, so it is built for that target's spec with
#            static-pie asked for (pie_target below).
#   --deps   apt-get install what --musl needs first; with --aarch64, what
#            --aarch64 needs instead (adds the arm64 architecture, runs
#            apt-get update, fetches libunwind-14-dev:arm64).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

MODE=auto DEPS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --musl) MODE=musl; shift ;;
    --glibc) MODE=glibc; shift ;;
    --aarch64) MODE=aarch64; shift ;;
    --deps) DEPS=1; shift ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-static.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

MUSL_PKGS="rustc-web rust-web-src musl-tools libunwind-14-dev"
DEB_RUSTC=/usr/bin/rustc
STD_SRC=/usr/lib/rustlib/src/rust/library
MUSL_LIB=/usr/lib/x86_64-linux-musl
UNWIND=/usr/lib/llvm-14/lib/libunwind.a

# --aarch64: Debian's arm64 musl and cross gcc; LLVM's arm64 libunwind.a
# unpacked from its .deb (see the header: it cannot be installed beside the
# amd64 one).
ARM_PKGS="rustc-web rust-web-src musl-dev:arm64 gcc-aarch64-linux-gnu qemu-user"
ARM_MUSL_LIB=/usr/lib/aarch64-linux-musl
ARM_DEPS="$top/target/aarch64-deps"
ARM_UNWIND="$ARM_DEPS/libunwind-14-dev/usr/lib/llvm-14/lib/libunwind.a"

musl_ready() {
  [ -x "$DEB_RUSTC" ] && [ -d "$STD_SRC/std" ] && [ -f "$MUSL_LIB/libc.a" ] \
    && [ -f "$MUSL_LIB/rcrt1.o" ] && command -v musl-gcc >/dev/null && [ -f "$UNWIND" ]
}

aarch64_ready() {
  [ -x "$DEB_RUSTC" ] && [ -d "$STD_SRC/std" ] && [ -f "$ARM_MUSL_LIB/libc.a" ] \
    && [ -f "$ARM_MUSL_LIB/rcrt1.o" ] && command -v aarch64-linux-musl-gcc >/dev/null \
    && command -v aarch64-linux-gnu-gcc >/dev/null && [ -f "$ARM_UNWIND" ]
}

if [ "$DEPS" = 1 ] && [ "$MODE" = aarch64 ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $ARM_PKGS >&2
  # apt-get download writes as _apt where it can: give it the directory.
  tmp=$(mktemp -d); chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download -q libunwind-14-dev:arm64) >&2
  rm -rf "$ARM_DEPS/libunwind-14-dev"; mkdir -p "$ARM_DEPS"
  dpkg-deb -x "$tmp"/libunwind-14-dev_*_arm64.deb "$ARM_DEPS/libunwind-14-dev"
  rm -rf "$tmp"
elif [ "$DEPS" = 1 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $MUSL_PKGS >&2
fi
if [ "$MODE" = auto ]; then
  if musl_ready; then MODE=musl; else
    echo "build-static.sh: musl tools missing ($MUSL_PKGS; --deps installs them): building the static glibc binary" >&2
    MODE=glibc
  fi
fi

check_static() {
  local bin=$1 run=${2:-}
  if readelf -lW "$bin" | grep -q 'INTERP'; then
    echo "build-static.sh: $bin asks for a program interpreter: not static" >&2; exit 70
  fi
  if readelf -dW "$bin" | grep -q '(NEEDED)'; then
    echo "build-static.sh: $bin needs shared libraries: not static" >&2; exit 70
  fi
  $run "$bin" --version >/dev/null || { echo "build-static.sh: $bin does not run" >&2; exit 70; }
}

# Debian builds LLVM's libunwind with _FORTIFY_SOURCE: its one glibc-only
# call, __fprintf_chk (debug output only), mapped onto musl's vfprintf.
write_fortify() {
  cat > "$1" <<'EOF'
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    va_list ap;
    (void)flag;
    va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}
EOF
}

# pie_target DIR TRIPLE: prints what to give cargo's --target for a static
# position-independent executable. rustc's aarch64-unknown-linux-musl has
# the objects for one (rcrt1.o, crtbeginS.o) but does not ask for it
# (static-position-independent-executables is false; x86_64's is true), so
# the binary's own image would not be randomised. This writes that
# compiler's own spec of TRIPLE, with that one field set, as DIR/TRIPLE.json
# (the file's name keeps the triple: cargo's output path and the linker's
# environment variable stay those of TRIPLE), and prints its path. Needs
# -Zjson-target-spec (RUSTC_BOOTSTRAP, as for -Zbuild-std).
pie_target() {
  local dir=$1 triple=$2 spec
  spec=$(RUSTC_BOOTSTRAP=1 "$DEB_RUSTC" -Z unstable-options --print target-spec-json --target "$triple")
  if grep -q '"static-position-independent-executables": true' <<<"$spec"; then
    echo "$triple"; return
  fi
  grep -q '^{$' <<<"$spec" || { echo "build-static.sh: unexpected target spec of $triple from $DEB_RUSTC" >&2; exit 70; }
  mkdir -p "$dir"
  sed '1a\  "static-position-independent-executables": true,' <<<"$spec" \
    | grep -v '"is-builtin"' > "$dir/$triple.json"
  echo "$dir/$triple.json"
}

# build_musl DIR TRIPLE LIBC_DIR GCC UNWIND_A CC [LINKER]: the musl route,
# into DIR (the binary's path in $bin). TRIPLE is a target name, or the
# path of a DIR/NAME.json spec (pie_target).
build_musl() {
  local dir=$1 target=$2 libc=$3 gcc=$4 unwind=$5 cc=$6 linker=${7:-} f triple json=()
  triple=$(basename "$target" .json)
  [ "$target" = "$triple" ] || json=(-Zjson-target-spec)
  # rustc's self-contained musl linking finds the C runtime objects on -L
  # paths: give it the target's musl, GCC's crtbegin/crtend and LLVM's
  # libunwind in one directory.
  local link="$dir/link"
  rm -rf "$link"; mkdir -p "$link"
  for f in crt1.o rcrt1.o Scrt1.o crti.o crtn.o libc.a; do ln -s "$libc/$f" "$link/$f"; done
  for f in crtbegin.o crtbeginS.o crtbeginT.o crtend.o crtendS.o; do
    ln -s "$("$gcc" -print-file-name=$f)" "$link/$f"
  done
  ln -s "$unwind" "$link/libunwind.a"
  write_fortify "$link/fortify.c"
  "$cc" -O2 -fPIE -c "$link/fortify.c" -o "$link/fortify.o"
  local linker_env=()
  [ -z "$linker" ] || linker_env=("CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER=$linker")
  # RUSTC_BOOTSTRAP: -Zbuild-std on Debian's stable compiler, the std
  # source being that compiler's own. std's features: optimize_for_size
  # only, so neither `backtrace` (gimli, addr2line, a demangler: ~0.2 MiB
  # that only RUST_BACKTRACE output uses; a panic still prints its message
  # and location) nor `panic-unwind` (the binary aborts on panic).
  # force-unwind-tables=no: with neither, nothing ever unwinds the stack,
  # so no .eh_frame tables are emitted for std or imprint (344 KiB of the
  # x86_64 binary, 14% of it; a panic's message and location print as
  # before: the panic hook needs no unwinding).
  # The source paths a panic's location names, without this machine's
  # directories: `crates.io/ureq-3.x/src/...`, `rust/library/core/...`
  # (the binary is then the same whoever builds it, wherever; and ~9 KiB
  # smaller than with ~/.cargo/registry/src/index.crates.io-<hash>/ 133
  # times).
  # (Fetched first: on a fresh machine the registry's directory is made by
  # the download.)
  cargo fetch --locked >&2
  local remap="--remap-path-prefix=$(dirname "$STD_SRC")=rust" reg
  for reg in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
    [ -d "$reg" ] || continue
    remap+=" --remap-path-prefix=${reg%/}=crates.io"
  done
  env "${linker_env[@]}" RUSTC="$DEB_RUSTC" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$dir" \
    RUSTFLAGS="-C link-self-contained=yes -L native=$link -C link-arg=$link/fortify.o -C force-unwind-tables=no $remap" \
    cargo build --release --locked --target "$target" "${json[@]}" \
    -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size >&2
  bin="$dir/$triple/release/imprint"
}

case "$MODE" in
  musl)
    musl_ready || { echo "build-static.sh: --musl needs: apt-get install $MUSL_PKGS (or --deps)" >&2; exit 69; }
    build_musl "$top/target/musl" x86_64-unknown-linux-musl "$MUSL_LIB" gcc "$UNWIND" musl-gcc
    ;;
  aarch64)
    aarch64_ready || { echo "build-static.sh: --aarch64 needs arm64 as a dpkg architecture, apt-get install $ARM_PKGS and libunwind-14-dev:arm64 unpacked in $ARM_DEPS (--aarch64 --deps does all three)" >&2; exit 69; }
    # Debian's arm64 musl, the cross gcc's crtbegin/crtend, LLVM's arm64
    # libunwind; the cross gcc links; a static-pie, as the x86_64 one.
    build_musl "$top/target/aarch64" "$(pie_target "$top/target/aarch64" aarch64-unknown-linux-musl)" "$ARM_MUSL_LIB" \
      aarch64-linux-gnu-gcc "$ARM_UNWIND" aarch64-linux-musl-gcc aarch64-linux-gnu-gcc
    ;;
  glibc)
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target x86_64-unknown-linux-gnu >&2
    bin="$top/target/x86_64-unknown-linux-gnu/release/imprint"
    ;;
esac
if [ "$MODE" = aarch64 ]; then
  readelf -h "$bin" | grep -q 'Machine:.*AArch64' \
    || { echo "build-static.sh: $bin is not an AArch64 binary" >&2; exit 70; }
  if command -v qemu-aarch64 >/dev/null; then check_static "$bin" qemu-aarch64; else
    echo "build-static.sh: qemu-aarch64 missing (qemu-user): $bin checked static, not run" >&2
    check_static "$bin" true
  fi
else
  check_static "$bin"
fi
if [ "$MODE" != glibc ] && ! readelf -hW "$bin" | grep -q 'Type:.*DYN'; then
  echo "build-static.sh: $bin is not position-independent (a static-pie): its image would not be randomised" >&2; exit 70
fi
echo "$bin"
