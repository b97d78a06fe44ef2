#!/usr/bin/env bash
# The whole test suite, as the README states it and CI runs it:
#   formatting, lints, unit + black-box tests (with fault-injection
#   fail points), a short bounded fuzz run, then the VM suite (a real
#   systemd boot under qemu).
# IMPRINT_SKIP_VM=1 skips the VM suite (it needs root, qemu and ~10 min).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets -- -D warnings
step "cargo test"
cargo test --all-targets
step "cargo test (fault injection: fail points between writes, kill -9)"
cargo test --features failpoints --test apply_faults
step "docs: every command in README.md and docs/*.md (tests/docs.sh)"
tests/docs.sh
step "packages: static release binary, .deb and .rpm (packaging/build.sh), then their checks"
packaging/build.sh
IMPRINT_PACKAGES="$PWD/target/packages" tests/packaging.sh
if [ -x tests/fuzz-smoke.sh ]; then
  step "fuzz smoke (bounded)"
  tests/fuzz-smoke.sh
fi
if [ "${IMPRINT_SKIP_VM:-0}" != 1 ] && [ -x tests/vm/run.sh ]; then
  step "VM suite (installs the .deb built above into the image)"
  IMPRINT_DEB=$(ls "$PWD"/target/packages/imprint_*_amd64.deb) tests/vm/run.sh
fi
