#!/usr/bin/env bash
# The packages, checked as a user meets them (issue 7). Run by tests/all.sh.
#
#   tests/packaging.sh                 # builds the amd64 packages from the
#                                      # debug binary (fast), the arm64 ones
#                                      # from the static aarch64 binary where
#                                      # its tools are installed, then checks
#   IMPRINT_PACKAGES=DIR tests/packaging.sh   # checks DIR/imprint_*.deb and
#                                      # DIR/imprint-*.rpm built by
#                                      # packaging/build.sh (the release ones)
#
# 1. `dpkg -c` and `rpm -qlp` list exactly the expected files, modes and link
#    targets (man pages: one per visible subcommand of the packaged binary;
#    docs: every docs/*.md of the tree).
# 2. The packaged binary runs, reports the crate's version, is static (for
#    release packages), and the generator link resolves to it.
# 3. The maintainer scripts never start or restart a unit.
# 4. A real install with dpkg --root into a sandbox (maintainer scripts run
#    chrootless with DPKG_ROOT, the host's deb-systemd-helper acting inside
#    the sandbox): imprint.service enabled, /usr/bin/cloud-init linked; a
#    package owning /usr/bin/cloud-init (a real cloud-init) replaces the link
#    and its removal brings the link back; reinstall keeps it; remove and
#    purge take away only what is ours. Needs root; runs in a private mount
#    namespace with /run/systemd hidden, so that nothing reaches the host's
#    systemd.
# 5. The same for the .rpm with rpm --root: its scriptlets run chrooted, in
#    a minimal root holding the host's sh, ln, readlink, rm and systemctl
#    (so `systemctl preset` really enables the unit), with a stand-in
#    cloud-init RPM built here for the trigger.
# 6. The arm64 .deb and .rpm (before 4, which needs root): the same entries
#    as the amd64 ones (paths, modes, owners, link targets), the same
#    maintainer scripts and triggers, Architecture arm64 / aarch64, and the
#    binary inside a static AArch64 executable that reports the crate's
#    version under qemu-aarch64. Not installed (this is an amd64 host).
#    Required where the arm64 tools are installed and with
#    IMPRINT_REQUIRE_AARCH64=1 (CI); otherwise skipped, with a line saying so.
#
# Needs: dpkg-deb, rpm and rpmbuild (apt-get install rpm), util-linux
# (unshare), and for building: cargo-deb (cargo install --locked cargo-deb).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-packaging-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

if [ -n "${IMPRINT_PACKAGES:-}" ]; then
	pkgdir=$IMPRINT_PACKAGES
	release=1
else
	cargo build --quiet
	OUT=$work/out IMPRINT_BIN=$top/target/debug/imprint IMPRINT_ALLOW_DYNAMIC=1 \
		packaging/build.sh >/dev/null
	pkgdir=$work/out
	release=0
fi
deb=$pkgdir/imprint_${version}-1_amd64.deb
rpm=$pkgdir/imprint-${version}-1.x86_64.rpm
[ -f "$deb" ] || fail "no $deb"
[ -f "$rpm" ] || fail "no $rpm"

# --- the binary inside, and what the listings must hold ----------------------
x=$work/x
mkdir -p "$x"
dpkg-deb -x "$deb" "$x"
bin=$x/usr/bin/imprint
# (an aarch64 binary could run here too, through binfmt_misc and qemu)
readelf -hW "$bin" | grep -q 'Machine:.*X86-64' || fail "the amd64 .deb's binary is not x86-64"
got=$("$bin" --version)
[ "$got" = "imprint $version" ] || fail "packaged binary says '$got', expected 'imprint $version'"
if [ "$release" = 1 ]; then
	if ldd "$bin" 2>&1 | grep -q '=>'; then fail "packaged binary is not static: $(ldd "$bin")"; fi
	ok "packaged binary is static ($(stat -c %s "$bin") bytes)"
fi
[ "$(readlink -f "$x/usr/lib/systemd/system-generators/imprint-generator")" = "$(readlink -f "$bin")" ] ||
	fail "generator link does not resolve to /usr/bin/imprint"

# Visible subcommands, from the packaged binary's own help.
subs=$("$bin" --help | awk '/^Commands:/ {c=1; next} /^$/ {c=0} c && $1 != "help" {print $1}')
[ -n "$subs" ] || fail "no subcommands in imprint --help"

# "MODE PATH" or "MODE PATH -> TARGET"; directories are left out.
expected() {
	local zsh=$1
	{
		echo "-rwxr-xr-x /usr/bin/imprint"
		echo "lrwxrwxrwx /usr/lib/systemd/system-generators/imprint-generator -> ../../../bin/imprint"
		echo "-rw-r--r-- /usr/lib/systemd/system/imprint.service"
		echo "-rw-r--r-- /usr/lib/systemd/system/imprint-host-keys.service"
		echo "-rw-r--r-- /usr/lib/systemd/system/imprint-verify.service"
		echo "-rw-r--r-- /usr/lib/systemd/system/imprint-verify.timer"
		echo "-rw-r--r-- /usr/lib/systemd/system-preset/80-imprint.preset"
		for u in sshd-keygen@ sshdgenkeys sshd@ ssh@; do
			echo "-rw-r--r-- /usr/lib/systemd/system/$u.service.d/50-imprint-host-keys.conf"
		done
		echo "-rw-r--r-- /usr/share/man/man1/imprint.1.gz"
		for s in $subs; do echo "-rw-r--r-- /usr/share/man/man1/imprint-$s.1.gz"; done
		echo "-rw-r--r-- /usr/share/bash-completion/completions/imprint"
		echo "-rw-r--r-- $zsh/_imprint"
		echo "-rw-r--r-- /usr/share/fish/vendor_completions.d/imprint.fish"
		echo "-rw-r--r-- /usr/share/doc/imprint/README.md"
		for d in docs/*.md; do echo "-rw-r--r-- /usr/share/doc/imprint/$d"; done
		echo "-rw-r--r-- /usr/share/doc/imprint/examples/imprint.yaml"
		for t in fixtures/demo/root/etc/imprint/templates/*; do
			echo "-rw-r--r-- /usr/share/doc/imprint/examples/templates/${t##*/}"
		done
		echo "-rw-r--r-- /usr/share/doc/imprint/examples/user-data/cloud-config.yaml"
		echo "-rw-r--r-- /usr/share/doc/imprint/examples/user-data/values.json"
	} | LC_ALL=C sort
}

check_listing() {
	local what=$1 want=$2 got=$3
	if ! diff -u "$want" "$got" >"$work/diff"; then
		cat "$work/diff" >&2
		fail "$what listing differs from the expected one (- expected, + packaged)"
	fi
	ok "$what listing: $(wc -l <"$got") entries as expected"
}

# dpkg -c: "perms owner/group size date time ./path [-> target]".
expected /usr/share/zsh/vendor-completions >"$work/want.deb"
{ echo "-rw-r--r-- /usr/share/doc/imprint/copyright"; cat "$work/want.deb"; } | LC_ALL=C sort >"$work/want.deb2"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { $2=""; $3=""; $4=""; $5=""; sub(/^\.\//, "/", $6); print }' |
	sed 's/  */ /g; s| \./| /|' | LC_ALL=C sort >"$work/got.deb"
check_listing "dpkg -c" "$work/want.deb2" "$work/got.deb"
dpkg-deb -c "$deb" | awk '{print $2}' | sort -u | grep -qvxE 'root/root|0/0' && fail "a file in the .deb is not owned by root"

# rpm -qlvp: "perms links owner group size month day time path [-> target]".
expected /usr/share/zsh/site-functions >"$work/want.rpm"
rpm -qlvp "$rpm" | awk '$1 !~ /^d/ { out=$1; for (i=9; i<=NF; i++) out=out" "$i; print out }' |
	LC_ALL=C sort >"$work/got.rpm"
check_listing "rpm -qlp" "$work/want.rpm" "$work/got.rpm"
rpm -qlvp "$rpm" | awk '{print $3"/"$4}' | sort -u | grep -qvx 'root/root' && fail "a file in the .rpm is not owned by root"

# --- control data --------------------------------------------------------------
dpkg-deb -e "$deb" "$work/control"
grep -qx 'Package: imprint' "$work/control/control" || fail "deb control: no Package: imprint"
grep -qx "Version: ${version}-1" "$work/control/control" || fail "deb control: wrong version"
desc=$(sed -n 's/^Description: //p' "$work/control/control")
[ "${#desc}" -le 80 ] || fail "deb synopsis longer than 80 characters: $desc"
grep -qx 'interest-noawait /usr/bin/cloud-init' "$work/control/triggers" || fail "deb: no cloud-init file trigger"
rpm -qp --triggers "$rpm" | grep -q 'triggerpostun.* -- cloud-init' || fail "rpm: no cloud-init trigger"
# Enabled, never started: no start/restart in any maintainer script.
rpm -qp --scripts "$rpm" >"$work/rpm-scripts"
if grep -nE 'deb-systemd-invoke +(start|restart)|systemctl[^|;]* (start|restart|try-restart|reload-or-restart) ' \
	"$work"/control/{preinst,postinst,prerm,postrm} "$work/rpm-scripts" 2>/dev/null; then
	fail "a maintainer script starts or restarts a unit"
fi
for u in imprint.service imprint-host-keys.service; do
	grep -q "deb-systemd-helper enable $u" "$work/control/postinst" || fail "deb postinst does not enable $u"
	grep -q "systemctl --no-reload preset .*$u" "$work/rpm-scripts" || fail "rpm %post does not preset $u"
	grep -qx "enable $u" "$x/usr/lib/systemd/system-preset/80-imprint.preset" || fail "preset does not enable $u"
done
grep -qx 'disable imprint-verify.timer' "$x/usr/lib/systemd/system-preset/80-imprint.preset" || fail "preset does not leave the verify timer disabled"
zcat "$x/usr/share/man/man1/imprint.1.gz" | grep -q 'EXIT STATUS' || fail "imprint(1) has no EXIT STATUS section"
ok "control data: version, synopsis, triggers, enable-not-start, preset, man page"

# --- the arm64 packages ---------------------------------------------------------
# Checked against the amd64 ones, whose entries are checked above: the same
# listings, scripts and triggers; then their own architecture and binary.
arm_deb=$pkgdir/imprint_${version}-1_arm64.deb
arm_rpm=$pkgdir/imprint-${version}-1.aarch64.rpm
arm_tools=1
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null ||
	[ ! -f /usr/lib/aarch64-linux-musl/libc.a ]; then
	arm_tools=0
fi
if [ "$arm_tools" = 0 ] && [ "${IMPRINT_REQUIRE_AARCH64:-0}" != 1 ] && [ ! -f "$arm_deb" ] && [ ! -f "$arm_rpm" ]; then
	echo "skip: arm64 packages not checked: the arm64 tools are missing (scripts/build-static.sh --aarch64 --deps installs them)"
else
	why="the arm64 tools are installed: packaging/build.sh makes it, or says on stderr why not"
	[ "$arm_tools" = 1 ] || why="IMPRINT_REQUIRE_AARCH64=1, and the arm64 tools are missing: scripts/build-static.sh --aarch64 --deps installs them"
	[ -f "$arm_deb" ] || fail "no $arm_deb ($why)"
	[ -f "$arm_rpm" ] || fail "no $arm_rpm ($why)"
	command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 (qemu-user) is missing: the arm64 binary cannot be run"

	a=$(dpkg-deb -f "$arm_deb" Architecture)
	[ "$a" = arm64 ] || fail "arm64 .deb: Architecture: $a"
	a=$(dpkg-deb -f "$deb" Architecture)
	[ "$a" = amd64 ] || fail "amd64 .deb: Architecture: $a"
	a=$(rpm -qp --qf '%{ARCH}' "$arm_rpm")
	[ "$a" = aarch64 ] || fail "aarch64 .rpm: Arch: $a"
	a=$(rpm -qp --qf '%{ARCH}' "$rpm")
	[ "$a" = x86_64 ] || fail "x86_64 .rpm: Arch: $a"
	ok "architectures: .deb arm64 and amd64, .rpm aarch64 and x86_64"

	# Every entry, directories included: mode, owner and group, path, link
	# target; sizes and dates left out (the binaries differ).
	deb_entries() { dpkg-deb -c "$1" | awk '{ $3 = ""; $4 = ""; $5 = ""; print }' | LC_ALL=C sort; }
	rpm_entries() { rpm -qlvp "$1" | awk '{ $5 = ""; $6 = ""; $7 = ""; $8 = ""; print }' | LC_ALL=C sort; }
	deb_entries "$deb" >"$work/amd64.deb-entries"
	deb_entries "$arm_deb" >"$work/arm64.deb-entries"
	check_listing "arm64 dpkg -c (against amd64's)" "$work/amd64.deb-entries" "$work/arm64.deb-entries"
	rpm_entries "$rpm" >"$work/x86_64.rpm-entries"
	rpm_entries "$arm_rpm" >"$work/aarch64.rpm-entries"
	check_listing "aarch64 rpm -qlp (against x86_64's)" "$work/x86_64.rpm-entries" "$work/aarch64.rpm-entries"

	# Maintainer scripts, triggers and the other control fields: the same.
	dpkg-deb -e "$arm_deb" "$work/arm-control"
	for f in "$work"/control/* "$work"/arm-control/*; do
		case ${f##*/} in md5sums | control) continue ;; esac
		cmp -s "$work/control/${f##*/}" "$work/arm-control/${f##*/}" || fail "arm64 .deb: ${f##*/} differs from the amd64 one"
	done
	diff -u <(grep -vE '^(Architecture|Installed-Size):' "$work/control/control") \
		<(grep -vE '^(Architecture|Installed-Size):' "$work/arm-control/control") >&2 ||
		fail "arm64 .deb: control fields differ from the amd64 ones (other than Architecture, Installed-Size)"
	rpm_meta() {
		rpm -qp --scripts --triggers --requires "$1"
		rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{LICENSE} %{SUMMARY}\n%{DESCRIPTION}\n' "$1"
	}
	diff -u <(rpm_meta "$rpm") <(rpm_meta "$arm_rpm") >&2 ||
		fail "aarch64 .rpm: scripts, triggers, requirements or description differ from the x86_64 one"
	ok "arm64 .deb and .rpm: the same maintainer scripts, triggers and fields as amd64's"

	# The binary: the same in both packages, a static AArch64 executable,
	# and it runs (under qemu-aarch64) and reports the crate's version.
	mkdir -p "$work/arm-x" "$work/arm-rpm-x"
	dpkg-deb -x "$arm_deb" "$work/arm-x"
	(cd "$work/arm-rpm-x" && rpm2archive - <"$arm_rpm" | tar -xzf -)
	abin=$work/arm-x/usr/bin/imprint
	cmp -s "$abin" "$work/arm-rpm-x/usr/bin/imprint" || fail "the arm64 .deb and the aarch64 .rpm hold different binaries"
	readelf -hW "$abin" | grep -q 'Machine:.*AArch64' ||
		fail "the arm64 packages' binary is not AArch64: $(readelf -hW "$abin" | grep Machine:)"
	if readelf -lW "$abin" | grep -q INTERP || readelf -dW "$abin" | grep -q '(NEEDED)'; then
		fail "the arm64 packages' binary is not static: $(readelf -lW "$abin" | grep -A1 INTERP) $(readelf -dW "$abin" | grep NEEDED)"
	fi
	got=$(qemu-aarch64 "$abin" --version) || fail "the arm64 packages' binary does not run under qemu-aarch64"
	[ "$got" = "imprint $version" ] || fail "arm64 binary says '$got', expected 'imprint $version'"
	[ "$(readlink -f "$work/arm-x/usr/lib/systemd/system-generators/imprint-generator")" = "$(readlink -f "$abin")" ] ||
		fail "arm64 .deb: the generator link does not resolve to /usr/bin/imprint"
	ok "arm64 binary: static AArch64 executable ($(stat -c %s "$abin") bytes), the same in both packages, 'imprint $version' under qemu-aarch64"
fi

# --- a real install into a sandbox -------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: dpkg --root install checks need root" >&2
	exit 0
fi

# Stand-in packages, built here: "init-system-helpers" satisfies Depends: in
# the sandbox's own dpkg database (the host's deb-systemd-helper is what
# runs, chrootless), "cloud-init" owns /usr/bin/cloud-init as the real one
# does.
standin() {
	local name=$1 ver=$2 dir=$work/standin-$1
	mkdir -p "$dir/DEBIAN"
	printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: tests <tests@example.invalid>\nDescription: stand-in for tests/packaging.sh\n' \
		"$name" "$ver" >"$dir/DEBIAN/control"
	if [ "$name" = cloud-init ]; then
		mkdir -p "$dir/usr/bin"
		printf '#!/bin/sh\necho real cloud-init\n' >"$dir/usr/bin/cloud-init"
		chmod 0755 "$dir/usr/bin/cloud-init"
	fi
	dpkg-deb --root-owner-group -b "$dir" "$work/$name.deb" >/dev/null
}
standin init-system-helpers 1.65.2
standin cloud-init 99

# A stand-in cloud-init RPM, owning /usr/bin/cloud-init.
mkdir -p "$work/rpmbuild"
cat >"$work/cloud-init.spec" <<'EOF'
Name: cloud-init
Version: 99
Release: 1
Summary: stand-in for tests/packaging.sh
License: none
BuildArch: noarch
%description
stand-in
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho real cloud-init\n' > %{buildroot}/usr/bin/cloud-init
chmod 0755 %{buildroot}/usr/bin/cloud-init
%files
/usr/bin/cloud-init
EOF
rpmbuild -bb --quiet --define "_topdir $work/rpmbuild" --define "_rpmdir $work/rpmbuild/RPMS" \
	--define "__os_install_post %{nil}" "$work/cloud-init.spec"
cp "$work/rpmbuild/RPMS/noarch/cloud-init-99-1.noarch.rpm" "$work/cloud-init.rpm"

cat >"$work/install.sh" <<'EOF'
#!/usr/bin/env bash
# Runs in a private mount namespace: /run/systemd hidden, so the maintainer
# scripts' "is systemd running" checks are false and nothing talks to the
# host's PID 1.
set -euo pipefail
work=$1 deb=$2 demo=$3 rpm=$4
if [ -d /run/systemd ]; then mount -t tmpfs -o size=1m tmpfs /run/systemd; fi
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
r=$work/root
mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers" "$r/usr/sbin"
touch "$r/var/lib/dpkg/status" "$r/var/lib/dpkg/available"
# As in any image build: no service is started by a package install.
printf '#!/bin/sh\nexit 101\n' >"$work/policy-rc.d"
chmod 0755 "$work/policy-rc.d"
cp "$work/policy-rc.d" "$r/usr/sbin/policy-rc.d"
d() { dpkg --root="$r" --force-script-chrootless --log=/dev/null "$@" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg $*"; }; }
link=$r/usr/bin/cloud-init
wants=$r/etc/systemd/system/sysinit.target.wants/imprint.service
keys=$r/etc/systemd/system/multi-user.target.wants/imprint-host-keys.service

d -i "$work/init-system-helpers.deb"
d -i "$deb"
[ -x "$r/usr/bin/imprint" ] || fail "no /usr/bin/imprint after install"
[ "$(readlink "$wants")" = /usr/lib/systemd/system/imprint.service ] ||
	fail "imprint.service not enabled (no sysinit.target.wants link)"
[ "$(readlink "$keys")" = /usr/lib/systemd/system/imprint-host-keys.service ] ||
	fail "imprint-host-keys.service not enabled (no multi-user.target.wants link)"
[ -L "$link" ] && [ "$(readlink "$link")" = imprint ] || fail "no /usr/bin/cloud-init -> imprint link"
[ "$(readlink -f "$link")" = "$(readlink -f "$r/usr/bin/imprint")" ] || fail "cloud-init link does not resolve to imprint"
ok "install: binary, units enabled (sysinit.target.wants, multi-user.target.wants), cloud-init -> imprint"

d -i "$deb"
[ -L "$link" ] && [ -L "$wants" ] && [ -L "$keys" ] || fail "reinstall lost the cloud-init link or the enablement"
ok "reinstall keeps the link and the enablement"

d -i "$work/cloud-init.deb"
[ -f "$link" ] && [ ! -L "$link" ] || fail "a real cloud-init did not replace the link"
grep -q 'real cloud-init' "$link" || fail "/usr/bin/cloud-init is not the real one"
d -i "$deb"
grep -q 'real cloud-init' "$link" || fail "reinstalling imprint touched a real cloud-init"
ok "a real cloud-init replaces the link; imprint leaves it alone"

d -r cloud-init
[ -L "$link" ] && [ "$(readlink "$link")" = imprint ] || fail "removing a real cloud-init did not bring the link back (trigger)"
ok "removing the real cloud-init brings the link back (file trigger)"

d -r imprint
[ ! -e "$link" ] && [ ! -L "$link" ] || fail "remove left /usr/bin/cloud-init behind"
[ ! -e "$r/usr/bin/imprint" ] || fail "remove left /usr/bin/imprint"
d --purge imprint
[ ! -L "$wants" ] || fail "purge left the sysinit.target.wants link"
left=$(cd "$r" && find . \( -path ./var/lib/dpkg -o -path ./usr/sbin/policy-rc.d \) -prune -o ! -type d -print)
[ -z "$left" ] || fail "purge left files behind: $left"
ok "remove and purge take away the binary, the link and the enablement, nothing else"

# The image-build flow on a fresh root, with the installed files only:
# install (as Packer's provisioner does), add a manifest and templates,
# validate, then boot-like runs through `--root`, answered by the
# cloud-init name as Vagrant asks: a failed run is non-zero, a good one 0;
# `imprint clean --machine-id --host-keys` (Packer's last step) forgets it
# all and removes the build machine's ssh host keys.
r=$work/image
mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers" "$r/usr/sbin"
touch "$r/var/lib/dpkg/status" "$r/var/lib/dpkg/available"
cp "$work/policy-rc.d" "$r/usr/sbin/policy-rc.d"
d -i "$work/init-system-helpers.deb"
d -i "$deb"
cp -a "$demo/root/etc/." "$r/etc/"
echo 0123456789abcdef0123456789abcdef >"$r/etc/machine-id"
ci() { "$r/usr/bin/cloud-init" --root "$r" status "$@"; }
im() { "$r/usr/bin/imprint" "$@"; }
[ "$(ci)" = "status: not started" ] || fail "cloud-init status before any run: $(ci)"
im validate --root "$r" --user-data "$demo/user-data.b64" >/dev/null || fail "imprint validate of the demo user-data"
printf '#cloud-config\nimprint:\n  app:\n    env: qa\n' >"$work/bad-user-data"
rc=0; im run --root "$r" --user-data "$work/bad-user-data" --instance-id i-pkg >/dev/null 2>&1 || rc=$?
[ "$rc" = 65 ] || fail "a run with invalid user-data exited $rc, expected 65"
rc=0; ci --wait >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "cloud-init status --wait after a failed run exited $rc, expected 1"
im run --root "$r" --user-data "$demo/user-data.b64" --instance-id i-pkg >/dev/null 2>&1 || fail "imprint run of the demo user-data"
out=$(ci --wait) || fail "cloud-init status --wait after a good run exited non-zero: $out"
case "$out" in *"status: done"*) ;; *) fail "cloud-init status --wait after a good run: $out" ;; esac
mkdir -p "$r/etc/ssh"
for k in ssh_host_ed25519_key ssh_host_ed25519_key.pub ssh_host_rsa_key; do echo build >"$r/etc/ssh/$k"; done
echo "Port 22" >"$r/etc/ssh/sshd_config"
im clean --root "$r" --machine-id --host-keys >/dev/null || fail "imprint clean --machine-id --host-keys"
[ ! -s "$r/etc/machine-id" ] || fail "clean --machine-id left /etc/machine-id non-empty"
left=$(cd "$r/etc/ssh" && ls)
[ "$left" = sshd_config ] || fail "clean --host-keys left in /etc/ssh: $left (expected sshd_config only)"
[ "$(ci)" = "status: not started" ] || fail "cloud-init status after clean: $(ci)"
ok "image flow: install, manifest, validate; cloud-init status 1 after a failed run, 0 after a good one; clean forgets, and removes the host keys"
r=$work/root

# A real cloud-init first: imprint never takes the name, and its removal
# never touches the real one.
d -i "$work/cloud-init.deb"
d -i "$deb"
grep -q 'real cloud-init' "$link" || fail "install over a real cloud-init replaced it"
d --purge imprint
grep -q 'real cloud-init' "$link" || fail "purging imprint removed a real cloud-init"
ok "with a real cloud-init installed first, imprint never touches /usr/bin/cloud-init"

# --- the .rpm, in a minimal chroot -------------------------------------------
r=$work/rpmroot
mkdir -p "$r/usr/bin" "$r/usr/lib" "$r/usr/lib64" "$r/etc" "$r/dev" "$r/tmp" "$r/var/tmp"
ln -s usr/bin "$r/bin"; ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
for b in dash ln readlink rm systemctl; do
	cp -L "$(command -v "$b")" "$r/usr/bin/$b"
	for l in $(ldd "$(command -v "$b")" | grep -o '/[^ ]*'); do
		mkdir -p "$r$(dirname "$l")"
		cp -L "$l" "$r$l"
	done
done
ln -s dash "$r/usr/bin/sh"
mknod -m 0666 "$r/dev/null" c 1 3
p() { rpm --root "$r" "$@" >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log" >&2; fail "rpm $*"; }; }
p --initdb
link=$r/usr/bin/cloud-init
wants=$r/etc/systemd/system/sysinit.target.wants/imprint.service
keys=$r/etc/systemd/system/multi-user.target.wants/imprint-host-keys.service
p -i --nodeps "$rpm"
[ -L "$wants" ] || fail "rpm: imprint.service not enabled by systemctl preset"
[ -L "$keys" ] || fail "rpm: imprint-host-keys.service not enabled by systemctl preset"
[ -L "$link" ] && [ "$(readlink "$link")" = imprint ] || fail "rpm: no /usr/bin/cloud-init -> imprint link"
ok "rpm install: unit enabled by preset, cloud-init -> imprint"
p -U --replacepkgs --nodeps "$rpm"
[ -L "$link" ] && [ -L "$wants" ] || fail "rpm: reinstall lost the link or the enablement"
p -i --nodeps "$work/cloud-init.rpm"
grep -q 'real cloud-init' "$link" || fail "rpm: a real cloud-init did not replace the link"
p -e cloud-init
[ -L "$link" ] && [ "$(readlink "$link")" = imprint ] || fail "rpm: removing a real cloud-init did not bring the link back (%triggerpostun)"
ok "rpm: a real cloud-init replaces the link; its removal brings it back"
p -e imprint
[ ! -e "$link" ] && [ ! -L "$link" ] || fail "rpm: erase left /usr/bin/cloud-init behind"
[ ! -L "$wants" ] || fail "rpm: erase left imprint.service enabled"
[ ! -L "$keys" ] || fail "rpm: erase left imprint-host-keys.service enabled"
p -i --nodeps "$work/cloud-init.rpm"
p -i --nodeps "$rpm"
grep -q 'real cloud-init' "$link" || fail "rpm: install over a real cloud-init replaced it"
p -e imprint
grep -q 'real cloud-init' "$link" || fail "rpm: erasing imprint removed a real cloud-init"
ok "rpm: erase takes the link and the enablement; a real cloud-init is never touched"
EOF
chmod 0755 "$work/install.sh"
unshare --mount --propagation private "$work/install.sh" "$work" "$deb" "$top/fixtures/demo" "$rpm"
echo "packaging: all checks passed"
