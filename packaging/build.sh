#!/bin/sh
# Build imprint's packages in one command:
#
#   packaging/build.sh
#
# 1. the release binary, static (scripts/build-static.sh, the one place it
#    is built);
# 2. man pages and shell completions from the CLI definition (cargo xtask);
# 3. the .deb (cargo-deb, from [package.metadata.deb] in Cargo.toml) and
#    the .rpm (rpmbuild, from packaging/rpm/imprint.spec);
#
# into target/packages/ (OUT=DIR to change), and prints their paths.
#
# Environment:
#   IMPRINT_BIN=PATH       package this binary instead of building one. It
#                          must be statically linked, unless
#   IMPRINT_ALLOW_DYNAMIC=1  (tests package the debug build to check the
#                          package layout and maintainer scripts quickly).
#   OUT=DIR                where the packages go (default target/packages).
#
# Needs cargo-deb (cargo install --locked cargo-deb) and rpmbuild (Debian:
# apt-get install rpm). Files are staged in target/packaging/, where
# Cargo.toml's deb assets and the spec take them from.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${OUT:-$top/target/packages}
stage=$top/target/packaging
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build.sh: failed to read the version from Cargo.toml" >&2; exit 1; }

for tool in cargo-deb rpmbuild; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build.sh: $tool is missing (cargo install --locked cargo-deb; apt-get install rpm)" >&2
		exit 1
	}
done

if [ -z "${IMPRINT_BIN:-}" ]; then
	# The release build, in its one place: scripts/build-static.sh (musl
	# where its tools are installed, else static glibc) prints the path of
	# the binary it built and checked.
	IMPRINT_BIN=$(scripts/build-static.sh)
fi
[ -f "$IMPRINT_BIN" ] || { echo "build.sh: no binary at $IMPRINT_BIN" >&2; exit 1; }
if [ "${IMPRINT_ALLOW_DYNAMIC:-0}" != 1 ]; then
	# ldd says "statically linked" (static-pie) or "not a dynamic executable".
	if ldd "$IMPRINT_BIN" 2>&1 | grep -q '=>'; then
		echo "build.sh: $IMPRINT_BIN is dynamically linked; the packages ship a static binary" >&2
		ldd "$IMPRINT_BIN" >&2 || true
		exit 1
	fi
fi

rm -rf "$stage"
mkdir -p "$stage" "$out"
install -m 0755 "$IMPRINT_BIN" "$stage/imprint"
cargo xtask assets "$stage" >/dev/null

deb=$out/imprint_${version}-1_amd64.deb
rm -f "$deb"
cargo deb --no-build --no-strip --output "$deb" >/dev/null

rpmtop=$(mktemp -d "${TMPDIR:-/tmp}/imprint-rpm.XXXXXX")
trap 'rm -rf "$rpmtop"' EXIT
rpmbuild -bb --quiet \
	--define "_topdir $rpmtop" \
	--define "_rpmdir $rpmtop/RPMS" \
	--define "_build_id_links none" \
	--define "imprint_version $version" \
	--define "stage $stage" \
	--define "srcroot $top" \
	packaging/rpm/imprint.spec
rpm=$out/imprint-${version}-1.x86_64.rpm
mv "$rpmtop/RPMS/x86_64/imprint-${version}-1.x86_64.rpm" "$rpm"

echo "$deb"
echo "$rpm"
