#!/usr/bin/env bash
# build-static.sh - build imprint's static release binary; print its path.
#
#   scripts/build-static.sh [--musl|--glibc] [--deps]
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
#            (libunwind-14-dev). About 2.4 MiB.
#   --glibc  x86_64-unknown-linux-gnu with +crt-static, the rustup toolchain
#            only (the fallback): about 3.3 MiB, glibc's static libc being
#            ~0.9 MiB of it. imprint uses no NSS (it reads the root's
#            /etc/passwd and /etc/group itself) and resolves no host names
#            (metadata services are addressed by IP), the two things a static
#            glibc does badly.
#   --deps   apt-get install what --musl needs first.
#
# aarch64 is not built: no aarch64 std exists for the rustup toolchain here
# and rustup cannot download one; the same build-std route would need arm64
# as a dpkg foreign architecture (musl-dev:arm64, libunwind-14-dev:arm64)
# plus an aarch64 linker (docs/benchmarks.md, "Build").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

MODE=auto DEPS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --musl) MODE=musl; shift ;;
    --glibc) MODE=glibc; shift ;;
    --deps) DEPS=1; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-static.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

MUSL_PKGS="rustc-web rust-web-src musl-tools libunwind-14-dev"
DEB_RUSTC=/usr/bin/rustc
STD_SRC=/usr/lib/rustlib/src/rust/library
MUSL_LIB=/usr/lib/x86_64-linux-musl
UNWIND=/usr/lib/llvm-14/lib/libunwind.a

musl_ready() {
  [ -x "$DEB_RUSTC" ] && [ -d "$STD_SRC/std" ] && [ -f "$MUSL_LIB/libc.a" ] \
    && [ -f "$MUSL_LIB/rcrt1.o" ] && command -v musl-gcc >/dev/null && [ -f "$UNWIND" ]
}

if [ "$DEPS" = 1 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $MUSL_PKGS >&2
fi
if [ "$MODE" = auto ]; then
  if musl_ready; then MODE=musl; else
    echo "build-static.sh: musl tools missing ($MUSL_PKGS; --deps installs them): building the static glibc binary" >&2
    MODE=glibc
  fi
fi

check_static() {
  local bin=$1
  if readelf -lW "$bin" | grep -q 'INTERP'; then
    echo "build-static.sh: $bin asks for a program interpreter: not static" >&2; exit 70
  fi
  if readelf -dW "$bin" | grep -q '(NEEDED)'; then
    echo "build-static.sh: $bin needs shared libraries: not static" >&2; exit 70
  fi
  "$bin" --version >/dev/null || { echo "build-static.sh: $bin does not run" >&2; exit 70; }
}

case "$MODE" in
  musl)
    musl_ready || { echo "build-static.sh: --musl needs: apt-get install $MUSL_PKGS (or --deps)" >&2; exit 69; }
    # rustc's self-contained musl linking finds the C runtime objects on -L
    # paths: give it Debian's musl, gcc's crtbegin/crtend and LLVM's
    # libunwind in one directory.
    link="$top/target/musl/link"
    rm -rf "$link"; mkdir -p "$link"
    for f in crt1.o rcrt1.o Scrt1.o crti.o crtn.o libc.a; do ln -s "$MUSL_LIB/$f" "$link/$f"; done
    for f in crtbegin.o crtbeginS.o crtbeginT.o crtend.o crtendS.o; do
      ln -s "$(gcc -print-file-name=$f)" "$link/$f"
    done
    ln -s "$UNWIND" "$link/libunwind.a"
    # Debian builds LLVM's libunwind with _FORTIFY_SOURCE: its one glibc-only
    # call, __fprintf_chk (debug output only), mapped onto musl's vfprintf.
    cat > "$link/fortify.c" <<'EOF'
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
    musl-gcc -O2 -fPIE -c "$link/fortify.c" -o "$link/fortify.o"
    # RUSTC_BOOTSTRAP: -Zbuild-std on Debian's stable compiler, the std
    # source being that compiler's own. std's features: optimize_for_size
    # only, so neither `backtrace` (gimli, addr2line, a demangler: ~0.2 MiB
    # that only RUST_BACKTRACE output uses; a panic still prints its message
    # and location) nor `panic-unwind` (the binary aborts on panic).
    RUSTC="$DEB_RUSTC" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$top/target/musl" \
      RUSTFLAGS="-C link-self-contained=yes -L native=$link -C link-arg=$link/fortify.o" \
      cargo build --release --locked --target x86_64-unknown-linux-musl \
      -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size >&2
    bin="$top/target/musl/x86_64-unknown-linux-musl/release/imprint"
    ;;
  glibc)
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target x86_64-unknown-linux-gnu >&2
    bin="$top/target/x86_64-unknown-linux-gnu/release/imprint"
    ;;
esac
check_static "$bin"
echo "$bin"
