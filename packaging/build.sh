#!/bin/sh
# Build imprint's packages in one command:
#
#   packaging/build.sh [--arch auto|amd64|arm64|all]
#
# 1. the release binaries, static (scripts/build-static.sh, the one place
#    they are built): x86_64 and, for arm64, aarch64 (--aarch64);
# 2. man pages and shell completions from the CLI definition (cargo xtask;
#    the same files for every architecture);
# 3. for each architecture, the .deb (cargo-deb, from [package.metadata.deb]
#    in Cargo.toml) and the .rpm (rpmbuild, from packaging/rpm/imprint.spec):
#      amd64: imprint_VERSION-1_amd64.deb, imprint-VERSION-1.x86_64.rpm
#      arm64: imprint_VERSION-1_arm64.deb, imprint-VERSION-1.aarch64.rpm
#
# into target/packages/ (OUT=DIR to change), and prints their paths, one a
# line (nothing else goes to stdout).
#
# --arch: which packages.
#   auto   (the default) amd64, and arm64 as well where the arm64 tools are
#          installed (scripts/build-static.sh --aarch64 --deps installs
#          them); without them the arm64 packages are skipped, with a line
#          on stderr that says so.
#   amd64  the amd64 ones only.
#   arm64  the arm64 ones only; missing arm64 tools are an error.
#   all    both; missing arm64 tools are an error.
#
# Environment:
#   IMPRINT_BIN=PATH       package this x86_64 binary instead of building one.
#                          It must be statically linked, unless
#   IMPRINT_ALLOW_DYNAMIC=1  (tests package the debug build to check the
#                          package layout and maintainer scripts quickly).
#   IMPRINT_BIN_ARM64=PATH the same for the arm64 packages: a static
#                          AArch64 binary (always static: there is no quick
#                          debug build to package instead).
#   OUT=DIR                where the packages go (default target/packages).
#
# Needs cargo-deb (cargo install --locked cargo-deb) and rpmbuild (Debian:
# apt-get install rpm). Files are staged in target/packaging/, where
# Cargo.toml's deb assets and the spec take them from; the architectures are
# packaged one after the other, each with its own binary staged there.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${OUT:-$top/target/packages}
stage=$top/target/packaging
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build.sh: failed to read the version from Cargo.toml" >&2; exit 1; }

arch=auto
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) [ $# -ge 2 ] || { echo "build.sh: --arch needs auto, amd64, arm64 or all" >&2; exit 64; }
		arch=$2; shift 2 ;;
	--arch=*) arch=${1#--arch=}; shift ;;
	-h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
	esac
done
case "$arch" in
auto|all) amd64=1 arm64=1 ;;
amd64) amd64=1 arm64=0 ;;
arm64) amd64=0 arm64=1 ;;
*) echo "build.sh: --arch $arch: expected auto, amd64, arm64 or all" >&2; exit 64 ;;
esac

for tool in cargo-deb rpmbuild; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build.sh: $tool is missing (cargo install --locked cargo-deb; apt-get install rpm)" >&2
		exit 1
	}
done

if [ "$amd64" = 1 ]; then
	if [ -z "${IMPRINT_BIN:-}" ]; then
		# The release build, in its one place: scripts/build-static.sh (musl
		# where its tools are installed, else static glibc) prints the path
		# of the binary it built and checked.
		IMPRINT_BIN=$(scripts/build-static.sh)
	fi
	[ -f "$IMPRINT_BIN" ] || { echo "build.sh: no binary at $IMPRINT_BIN" >&2; exit 1; }
	readelf -hW "$IMPRINT_BIN" | grep -q 'Machine:.*X86-64' ||
		{ echo "build.sh: $IMPRINT_BIN is not an x86-64 binary" >&2; exit 1; }
	if [ "${IMPRINT_ALLOW_DYNAMIC:-0}" != 1 ]; then
		# ldd says "statically linked" (static-pie) or "not a dynamic executable".
		if ldd "$IMPRINT_BIN" 2>&1 | grep -q '=>'; then
			echo "build.sh: $IMPRINT_BIN is dynamically linked; the packages ship a static binary" >&2
			ldd "$IMPRINT_BIN" >&2 || true
			exit 1
		fi
	fi
fi

if [ "$arm64" = 1 ] && [ -z "${IMPRINT_BIN_ARM64:-}" ]; then
	# scripts/build-static.sh exits 69 when the arm64 tools are missing
	# (and says which); any other failure is a failure.
	rc=0
	IMPRINT_BIN_ARM64=$(scripts/build-static.sh --aarch64) || rc=$?
	if [ "$rc" = 69 ] && [ "$arch" = auto ]; then
		echo "build.sh: arm64 packages SKIPPED: the arm64 tools are missing (scripts/build-static.sh --aarch64 --deps installs them; --arch all makes this an error)" >&2
		arm64=0
	elif [ "$rc" = 69 ]; then
		echo "build.sh: --arch $arch: the arm64 tools are missing (scripts/build-static.sh --aarch64 --deps installs them)" >&2
		exit 1
	elif [ "$rc" != 0 ]; then
		echo "build.sh: the arm64 binary failed to build (scripts/build-static.sh --aarch64 exited $rc)" >&2
		exit 1
	fi
fi
if [ "$arm64" = 1 ]; then
	[ -f "$IMPRINT_BIN_ARM64" ] || { echo "build.sh: no binary at $IMPRINT_BIN_ARM64" >&2; exit 1; }
	# ldd cannot read a foreign binary: readelf, as build-static.sh checks.
	readelf -hW "$IMPRINT_BIN_ARM64" | grep -q 'Machine:.*AArch64' ||
		{ echo "build.sh: $IMPRINT_BIN_ARM64 is not an AArch64 binary" >&2; exit 1; }
	if readelf -lW "$IMPRINT_BIN_ARM64" | grep -q INTERP || readelf -dW "$IMPRINT_BIN_ARM64" | grep -q '(NEEDED)'; then
		echo "build.sh: $IMPRINT_BIN_ARM64 is dynamically linked; the packages ship a static binary" >&2
		exit 1
	fi
fi

rm -rf "$stage"
mkdir -p "$stage" "$out"
cargo xtask assets "$stage" >/dev/null

rpmtop=$(mktemp -d "${TMPDIR:-/tmp}/imprint-rpm.XXXXXX")
trap 'rm -rf "$rpmtop"' EXIT

# package BINARY DEB_ARCH RPM_ARCH RUST_TARGET: one .deb and one .rpm, their
# paths on stdout. cargo-deb takes the Debian architecture from --target
# (nothing else: with --no-build the binary is the staged one), the spec
# its architecture from rpmbuild's --target.
package() {
	bin=$1 debarch=$2 rpmarch=$3 triple=$4
	install -m 0755 "$bin" "$stage/imprint"
	deb=$out/imprint_${version}-1_${debarch}.deb
	rm -f "$deb"
	cargo deb --no-build --no-strip --target "$triple" --output "$deb" >/dev/null
	rpmbuild -bb --quiet --target "$rpmarch" \
		--define "_topdir $rpmtop" \
		--define "_rpmdir $rpmtop/RPMS" \
		--define "_build_id_links none" \
		--define "imprint_version $version" \
		--define "stage $stage" \
		--define "srcroot $top" \
		packaging/rpm/imprint.spec >/dev/null
	rpm=$out/imprint-${version}-1.${rpmarch}.rpm
	mv "$rpmtop/RPMS/$rpmarch/imprint-${version}-1.${rpmarch}.rpm" "$rpm"
	echo "$deb"
	echo "$rpm"
}

if [ "$amd64" = 1 ]; then package "$IMPRINT_BIN" amd64 x86_64 x86_64-unknown-linux-musl; fi
if [ "$arm64" = 1 ]; then package "$IMPRINT_BIN_ARM64" arm64 aarch64 aarch64-unknown-linux-musl; fi
