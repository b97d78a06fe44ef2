#!/usr/bin/env bash
# image.sh - build (and cache) the Debian VM images the end-to-end tests boot.
#
#   tests/vm/image.sh deps             install host tools with apt-get (idempotent)
#   tests/vm/image.sh rootfs           debootstrap the shared rootfs (cached)
#   tests/vm/image.sh image VARIANT    build one image variant (cached); prints its path
#   tests/vm/image.sh all              deps + rootfs + all three variants
#   tests/vm/image.sh clean            remove the whole cache
#
# Variants, all from ONE debootstrapped rootfs (same kernel, same packages):
#   imprint    cloud-init disabled; imprint binary + unit + generator link +
#              fixture manifest/templates installed        (needs IMPRINT_BIN)
#   cloudinit  cloud-init enabled, no imprint
#   none       neither (the floor)
#   emptyunit  an empty oneshot (ExecStart=/bin/true) with imprint.service's
#              [Unit] ordering, at imprint's place: the floor a first-boot unit
#              cannot go below (--perf)
# none and emptyunit carry the app's config (/opt/app/conf.env) and ssh host
# keys baked in, as an image configured without any configurator would:
# app.service's start there is the floor for "boot to configured app".
# Every variant also carries the test harness: demo app.service, early.service
# and the reporter that writes results to ttyS1 and powers off.
#
# Cache (outside the repo): ${IMPRINT_VM_CACHE:-/var/cache/imprint-vm}
#   debcache/                .deb cache for debootstrap
#   rootfs-KEY/              debootstrapped + customised rootfs (KEY = hash of the
#                            package list, the suite and this script's version)
#   boot-KEY/                vmlinuz + initrd.img copied out of it
#   img/VARIANT-KEY2.img     raw ext4 images (KEY2 also covers the harness files,
#                            fixtures, unit and imprint binary): rebuilt in ~2 s
#                            by mkfs.ext4 -d, no loop mount
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump when the rootfs recipe changes in a way the package list doesn't show.
IMAGE_SCRIPT_VERSION=1
IMG_SIZE=${IMPRINT_VM_IMG_SIZE:-2G}

PKGS=(
  systemd systemd-sysv udev dbus
  linux-image-cloud-amd64 initramfs-tools
  openssh-server iproute2 procps e2fsprogs
  # cloud-init is in every image (disabled where it must not run) so that a
  # boot with imprint, with cloud-init and with neither compare like for like.
  cloud-init
  python3-cffi-backend   # debootstrap does not follow Provides: python3-cryptography needs python3-cffi-backend-api-*
  locales                # cloud-init's cc_locale fails without it (cloud-config.service 'failed')
  ifupdown isc-dhcp-client netbase   # cloud-init's fallback network config renders to ifupdown
)

# --------------------------------------------------------------------------
deps() {
  need_root
  # On this machine kind qemu-utils is 10.x from bookworm-backports and Breaks
  # qemu-system-common < 8.0, so bookworm's qemu-system-x86 (7.2) cannot be
  # installed next to it: take qemu from backports, through a private sources
  # dir (the system's apt configuration is not modified).
  local have=1 t
  for t in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 genisoimage flock ssh-keygen; do
    command -v "$t" >/dev/null || have=0
  done
  if [ "$have" = 1 ] && [ -z "${IMPRINT_VM_FORCE_DEPS:-}" ]; then
    log "deps: all host tools present"; return 0
  fi
  local aptd="$CACHE/apt/sources.list.d"
  mkdir -p "$aptd"
  rm -f "$aptd"/*.sources "$aptd"/*.list
  cp /etc/apt/sources.list.d/*.sources "$aptd/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$aptd/00-system.list"
  cat > "$aptd/imprint-vm-backports.sources" <<EOS
Types: deb
URIs: $MIRROR
Suites: $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
  local o=(-o "Dir::Etc::SourceParts=$aptd" -o Dir::Etc::SourceList=/dev/null)
  export DEBIAN_FRONTEND=noninteractive
  apt-get "${o[@]}" update -q
  apt-get "${o[@]}" install -y -q --no-install-recommends \
    -t "$SUITE-backports" qemu-system-x86 qemu-utils
  apt-get "${o[@]}" install -y -q --no-install-recommends \
    debootstrap genisoimage e2fsprogs util-linux gzip coreutils openssh-client
}

# --------------------------------------------------------------------------
# Customisation of the shared rootfs, done once, inside the cache. Anything
# variant-specific goes in build_variant instead.
customize_base() {
  local r=$1
  echo localhost > "$r/etc/hostname"
  : > "$r/etc/machine-id"                 # empty: first-boot semantics, systemd generates one
  rm -f "$r/var/lib/dbus/machine-id"
  ln -sf /etc/machine-id "$r/var/lib/dbus/machine-id"
  ln -sf /dev/null "$r/etc/systemd/system/systemd-firstboot.service"  # would prompt on the console
  rm -f "$r"/etc/ssh/ssh_host_*           # every instance must get its own host keys
  printf 'LABEL=root / ext4 rw,errors=remount-ro 0 1\n' > "$r/etc/fstab"
  echo 'en_US.UTF-8 UTF-8' > "$r/etc/locale.gen"
  chroot "$r" locale-gen >/dev/null
  echo 'LANG=en_US.UTF-8' > "$r/etc/default/locale"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*_Packages
  rm -rf "$r/var/lib/cloud" "$r"/var/log/cloud-init*
}

rootfs_key() {
  { echo "v$IMAGE_SCRIPT_VERSION $SUITE"; printf '%s\n' "${PKGS[@]}"; declare -f customize_base; } | hash_stdin
}

# ensure_rootfs: sets ROOTFS and BOOTDIR (building them if missing)
ensure_rootfs() {
  need_root
  local key; key=$(rootfs_key)
  ROOTFS="$CACHE/rootfs-$key"
  BOOTDIR="$CACHE/boot-$key"
  if [ -f "$ROOTFS/.imprint-vm-complete" ] && [ -f "$BOOTDIR/vmlinuz" ] && [ -f "$BOOTDIR/initrd.img" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap missing: run tests/vm/image.sh deps"
  # a different key means a different package list: drop the old ones
  local old
  for old in "$CACHE"/rootfs-* "$CACHE"/boot-*; do
    [ -e "$old" ] && [ "$old" != "$ROOTFS" ] && [ "$old" != "$BOOTDIR" ] && rm -rf "$old"
  done
  rm -rf "$ROOTFS" "$BOOTDIR"
  mkdir -p "$CACHE/debcache" "$BOOTDIR"
  local inc t0=$SECONDS
  inc=$(IFS=,; echo "${PKGS[*]}")
  log "debootstrap $SUITE ($MIRROR) -> $ROOTFS"
  debootstrap --variant=minbase --include="$inc" --cache-dir="$CACHE/debcache" \
    "$SUITE" "$ROOTFS" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
    || { tail -30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (full log: $CACHE/debootstrap.log)"; }
  customize_base "$ROOTFS"
  cp "$ROOTFS"/boot/vmlinuz-* "$BOOTDIR/vmlinuz"
  cp "$ROOTFS"/boot/initrd.img-* "$BOOTDIR/initrd.img"
  touch "$ROOTFS/.imprint-vm-complete"
  log "rootfs ready in $((SECONDS - t0)) s"
}

# --------------------------------------------------------------------------
# The staging tree is a hard-link copy of the cached rootfs (cp -al: ~1 s).
# NEVER write into an existing file there (it is shared with the cache):
# put/replace files with these helpers, which unlink first.
put() {   # put MODE DEST  < content
  local mode=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  rm -f "$dest"
  cat > "$dest"
  chmod "$mode" "$dest"
}
put_file() { put "$1" "$3" < "$2"; }   # put_file MODE SRC DEST
link() {  # link TARGET LINKNAME
  mkdir -p "$(dirname "$2")"
  rm -f "$2"
  ln -s "$1" "$2"
}
# enable UNITFILE_IN_ROOT ROOT: symlink into each WantedBy=.wants, like systemctl enable
enable_unit() {
  local unitpath=$1 r=$2 name wb
  name=$(basename "$unitpath")
  for wb in $(awk -F= '/^WantedBy=/{print $2}' "$r$unitpath"); do
    link "$unitpath" "$r/etc/systemd/system/$wb.wants/$name"
  done
}

# The harness itself: demo units and the reporter (every variant).
install_harness() {
  local r=$1 g="$VM_DIR/guest" u
  put 0644 "$r/etc/imprint-e2e-guest" <<<"imprint VM end-to-end guest (tests/vm)"
  put_file 0755 "$g/app.sh" "$r/usr/local/bin/app.sh"
  put_file 0755 "$g/early.sh" "$r/usr/local/bin/early.sh"
  put_file 0755 "$g/e2e-report.sh" "$r/usr/local/sbin/e2e-report.sh"
  for u in app.service early.service e2e-report.service; do
    put_file 0644 "$g/$u" "$r/etc/systemd/system/$u"
    enable_unit "/etc/systemd/system/$u" "$r"
  done
  mkdir -p "$r/opt/app" "$r/etc/early"
}

disable_cloudinit() {
  put 0644 "$1/etc/cloud/cloud-init.disabled" </dev/null
}

# install_imprint ROOT BIN: the one place that installs imprint into an image.
# With IMPRINT_DEB=path/to/imprint_*.deb (what tests/all.sh and CI use) the
# package is installed with dpkg --root, maintainer scripts and all (they
# honour DPKG_ROOT), so every VM run tests the packaging too: the unit
# enabled by the package, the generator link, the cloud-init shim link.
# Without it, BIN, units/imprint.service and units/imprint-host-keys.service
# are copied (quick iteration).
install_imprint() {
  local r=$1 bin=$2
  if [ -n "${IMPRINT_DEB:-}" ]; then
    DPKG_ROOT=$r dpkg --root="$r" --force-script-chrootless --force-not-root \
      --log=/dev/null -i "$IMPRINT_DEB" > "$CACHE/dpkg-imprint.log" 2>&1 \
      || { cat "$CACHE/dpkg-imprint.log" >&2; die "dpkg -i $IMPRINT_DEB failed"; }
    [ -L "$r/etc/systemd/system/sysinit.target.wants/imprint.service" ] \
      || die "the .deb did not enable imprint.service (sysinit.target.wants)"
    [ -L "$r/etc/systemd/system/multi-user.target.wants/imprint-host-keys.service" ] \
      || die "the .deb did not enable imprint-host-keys.service (multi-user.target.wants)"
    [ -f "$r/usr/lib/systemd/system/sshd-keygen@.service.d/50-imprint-host-keys.conf" ] \
      || die "the .deb did not install the sshd-keygen@.service drop-in"
    [ -f "$r/usr/lib/systemd/system/sshdgenkeys.service.d/50-imprint-host-keys.conf" ] \
      || die "the .deb did not install the sshdgenkeys.service drop-in"
    return
  fi
  put_file 0755 "$bin" "$r/usr/bin/imprint"
  put_file 0644 "$REPO_ROOT/units/imprint.service" "$r/usr/lib/systemd/system/imprint.service"
  enable_unit /usr/lib/systemd/system/imprint.service "$r"
  put_file 0644 "$REPO_ROOT/units/imprint-host-keys.service" "$r/usr/lib/systemd/system/imprint-host-keys.service"
  enable_unit /usr/lib/systemd/system/imprint-host-keys.service "$r"
  link /usr/bin/imprint "$r/usr/lib/systemd/system-generators/imprint-generator"
  local u
  for u in sshd-keygen@ sshdgenkeys sshd@ ssh@; do
    put_file 0644 "$REPO_ROOT/units/50-imprint-host-keys.conf" \
      "$r/usr/lib/systemd/system/$u.service.d/50-imprint-host-keys.conf"
  done
}

# install_probes ROOT: what only the imprint image's scenarios check:
# other distributions' sshd key makers and per-connection sshd, with a probe
# of the latter (guest/sshd-shapes/README), and an early `cloud-init status
# --wait` (guest/shim-probe.service), both started while
# guest/e2e-slow-keys.service holds the host keys back, and
# guest/e2e-keys-fail.service, which makes them fail in scenario keys-fail
# only, guest/e2e-kill-run.service, which kills the run in scenario
# run-killed only, and guest/e2e-wait-deadlock.service, which calls `status
# --wait` from a unit imprint.service waits for in scenario wait-deadlock
# only, and guest/e2e-no-seed-links.service, which removes the seed's
# by-label links in scenario cdrom only (each by its kernel command line). The probes and the hold are skipped on perf boots
# (ConditionKernelCommandLine); the sshd
# shapes stay (on perf-imprint boots: two sshd-keygen@ units skipped by
# their condition).
install_probes() {
  local r=$1 g="$VM_DIR/guest/sshd-shapes" u
  put_file 0644 "$VM_DIR/guest/shim-probe.service" "$r/etc/systemd/system/shim-probe.service"
  put_file 0755 "$VM_DIR/guest/shim-probe.sh" "$r/usr/local/bin/shim-probe.sh"
  enable_unit /etc/systemd/system/shim-probe.service "$r"
  put_file 0644 "$VM_DIR/guest/e2e-slow-keys.service" "$r/etc/systemd/system/e2e-slow-keys.service"
  enable_unit /etc/systemd/system/e2e-slow-keys.service "$r"
  put_file 0644 "$VM_DIR/guest/e2e-keys-fail.service" "$r/etc/systemd/system/e2e-keys-fail.service"
  enable_unit /etc/systemd/system/e2e-keys-fail.service "$r"
  put_file 0644 "$VM_DIR/guest/e2e-kill-run.service" "$r/etc/systemd/system/e2e-kill-run.service"
  put_file 0755 "$VM_DIR/guest/e2e-kill-run.sh" "$r/usr/local/bin/e2e-kill-run.sh"
  enable_unit /etc/systemd/system/e2e-kill-run.service "$r"
  put_file 0644 "$VM_DIR/guest/e2e-wait-deadlock.service" "$r/etc/systemd/system/e2e-wait-deadlock.service"
  put_file 0755 "$VM_DIR/guest/e2e-wait-deadlock.sh" "$r/usr/local/bin/e2e-wait-deadlock.sh"
  enable_unit /etc/systemd/system/e2e-wait-deadlock.service "$r"
  put_file 0644 "$VM_DIR/guest/e2e-no-seed-links.service" "$r/etc/systemd/system/e2e-no-seed-links.service"
  enable_unit /etc/systemd/system/e2e-no-seed-links.service "$r"
  for u in sshd-keygen@.service sshd-keygen.target sshdgenkeys.service ssh.socket ssh@.service ssh-probe.service; do
    put_file 0644 "$g/$u" "$r/etc/systemd/system/$u"
  done
  put_file 0755 "$g/sshd-keygen" "$r/usr/local/libexec/sshd-keygen"
  put_file 0755 "$g/ssh-probe.sh" "$r/usr/local/bin/ssh-probe.sh"
  put_file 0644 "$g/ssh.service.conf" "$r/etc/systemd/system/ssh.service.d/sshd-keygen.conf"
  for u in sshd-keygen@ed25519.service sshd-keygen@ecdsa.service; do
    link /etc/systemd/system/sshd-keygen@.service "$r/etc/systemd/system/sshd-keygen.target.wants/$u"
  done
  enable_unit /etc/systemd/system/ssh.socket "$r"
  enable_unit /etc/systemd/system/ssh-probe.service "$r"
}

# install_empty_unit ROOT: units/imprint.service with ExecStart=/bin/true, as
# empty-oneshot.service (same [Unit] ordering, same [Install]).
install_empty_unit() {
  local r=$1
  sed -e 's|^ExecStart=.*|ExecStart=/bin/true|' \
      -e 's|^Description=.*|Description=Empty oneshot at imprint.service'"'"'s place (perf floor)|' \
      "$REPO_ROOT/units/imprint.service" | put 0644 "$r/usr/lib/systemd/system/empty-oneshot.service"
  enable_unit /usr/lib/systemd/system/empty-oneshot.service "$r"
}

# install_plain_empty_unit ROOT: the `emptyplain` perf variant (a
# measurement: docs/benchmarks.md, "Ninth round"): the emptyunit image plus
# an empty oneshot written as one usually is, with default dependencies
# (after basic.target, among the ordinary services), to compare with the
# empty oneshot at imprint.service's place in the same boot.
install_plain_empty_unit() {
  local r=$1
  printf '%s\n' '[Unit]' 'Description=Empty oneshot with default dependencies (perf)' '' \
    '[Service]' 'Type=oneshot' 'RemainAfterExit=yes' 'ExecStart=/bin/true' '' \
    '[Install]' 'WantedBy=multi-user.target' | put 0644 "$r/etc/systemd/system/empty-plain.service"
  enable_unit /etc/systemd/system/empty-plain.service "$r"
}

# bake_app_config ROOT: the app's config already in the image (no configurator).
bake_app_config() {
  printf 'APP_NAME="baked"\nAPP_GREETING="baked into the image"\n' | put 0640 "$1/opt/app/conf.env"
}

# The floors' images carry host keys made at build time, as an image without
# a configurator would: ssh.service starts there as in a real image, instead
# of failing (which left those boots "degraded" and lighter than imprint's).
# The types imprint's fixtures make: ed25519 and ecdsa.
bake_host_keys() {
  local r=$1 t
  mkdir -p "$r/etc/ssh"
  for t in ed25519 ecdsa; do
    ssh-keygen -q -t "$t" -N '' -C "root@floor-image" -f "$r/etc/ssh/ssh_host_${t}_key" \
      || die "ssh-keygen -t $t for the $r image failed"
  done
}

# bake_generator ROOT BIN: the `imprintbaked` perf variant (a measurement,
# not a supported setup: docs/benchmarks.md, "Ninth round"): imprint's
# generator run once at image build, its drop-ins written into
# /etc/systemd/system, and its link removed, so that no imprint code runs in
# the boot's generator phase. What the boot would gain if images did that.
# The run trusts a unit to start after it, without asking PID 1, only from
# the generator's own directory (src/systemd.rs, not_started_yet): a
# tmpfiles.d entry copies the drop-ins there before imprint.service starts
# (it runs after systemd-tmpfiles-setup.service), as a supported version of
# this would have the run look in /etc too.
bake_generator() {
  local r=$1 bin=$2 out d n
  out=$(mktemp -d)
  "$bin" generator --root "$r" "$out" >/dev/null || die "imprint generator --root $r failed"
  [ -f "$out/app.service.d/50-imprint.conf" ] || die "the baked generator wrote no app.service drop-in"
  {
    echo "# tests/vm imprintbaked: the baked generator drop-ins, where the run looks for them"
    echo "d /run/systemd/generator 0755 root root -"
    for d in "$out"/*.d; do
      n=$(basename "$d")
      put_file 0644 "$d/50-imprint.conf" "$r/etc/systemd/system/$n/50-imprint.conf"
      echo "d /run/systemd/generator/$n 0755 root root -"
      echo "C /run/systemd/generator/$n/50-imprint.conf - - - - /etc/systemd/system/$n/50-imprint.conf"
    done
  } | put 0644 "$r/etc/tmpfiles.d/imprint-baked.conf"
  rm -rf "$out"
  rm -f "$r/usr/lib/systemd/system-generators/imprint-generator"
}

# The image author's part: manifest and templates (tests/vm/fixtures).
install_manifest() {
  local r=$1 f="$VM_DIR/fixtures" t
  put_file 0644 "$f/imprint.yaml" "$r/etc/imprint/imprint.yaml"
  for t in "$f"/templates/*; do
    put_file 0644 "$t" "$r/etc/imprint/templates/$(basename "$t")"
  done
}

variant_key() {
  local variant=$1 bin=${2:-}
  {
    rootfs_key; echo "$variant"
    declare -f put put_file link enable_unit install_harness disable_cloudinit install_imprint install_manifest \
      install_probes install_empty_unit install_plain_empty_unit bake_app_config bake_host_keys bake_generator build_variant
    (cd "$VM_DIR" && find guest -type f | sort | xargs sha256sum)
    case "$variant" in emptyunit|emptyplain) sha256sum < "$REPO_ROOT/units/imprint.service" ;; esac
    if [ "$variant" = imprint ] || [ "$variant" = imprintapp ] || [ "$variant" = imprintbaked ]; then
      (cd "$VM_DIR" && find fixtures/imprint.yaml fixtures/imprint-app.yaml fixtures/templates -type f | sort | xargs sha256sum)
      sha256sum < "$REPO_ROOT/units/imprint.service"
      sha256sum < "$REPO_ROOT/units/imprint-host-keys.service"
      sha256sum < "$REPO_ROOT/units/50-imprint-host-keys.conf"
      sha256sum < "$bin"
    fi
  } | hash_stdin
}

# build_variant VARIANT [BIN]: sets IMAGE, KERNEL, INITRD
build_variant() {
  local variant=$1 bin=${2:-}
  case "$variant" in imprint|imprintapp|imprintbaked|cloudinit|none|emptyunit|emptyplain) ;;
    *) die "unknown variant '$variant' (imprint|imprintapp|imprintbaked|cloudinit|none|emptyunit|emptyplain)";; esac
  case "$variant" in imprint|imprintapp|imprintbaked) [ -n "$bin" ] || bin=$(resolve_imprint_bin) ;; esac
  ensure_rootfs
  KERNEL="$BOOTDIR/vmlinuz"; INITRD="$BOOTDIR/initrd.img"
  local key; key=$(variant_key "$variant" "$bin")
  IMAGE="$CACHE/img/$variant-$key.img"
  [ -f "$IMAGE" ] && { log "image $variant: cached ($IMAGE)"; return 0; }
  mkdir -p "$CACHE/img"
  rm -f "$CACHE/img/$variant"-*.img        # keep one image per variant
  local st="$CACHE/stage-$variant" t0=$SECONDS
  rm -rf "$st"
  cp -al "$ROOTFS" "$st"
  rm -f "$st/.imprint-vm-complete"
  install_harness "$st"
  case "$variant" in
    imprint)   disable_cloudinit "$st"; install_manifest "$st"; install_imprint "$st" "$bin"
               install_probes "$st" ;;
    imprintapp) disable_cloudinit "$st"; install_manifest "$st"; install_imprint "$st" "$bin"
               put_file 0644 "$VM_DIR/fixtures/imprint-app.yaml" "$st/etc/imprint/imprint.yaml" ;;
    imprintbaked) disable_cloudinit "$st"; install_manifest "$st"; install_imprint "$st" "$bin"
               put_file 0644 "$VM_DIR/fixtures/imprint-app.yaml" "$st/etc/imprint/imprint.yaml"
               bake_generator "$st" "$bin" ;;
    cloudinit) ;;
    none)      disable_cloudinit "$st"; bake_app_config "$st"; bake_host_keys "$st" ;;
    emptyunit) disable_cloudinit "$st"; bake_app_config "$st"; bake_host_keys "$st"; install_empty_unit "$st" ;;
    emptyplain) disable_cloudinit "$st"; bake_app_config "$st"; bake_host_keys "$st"; install_empty_unit "$st"
               install_plain_empty_unit "$st" ;;
  esac
  # -d populates the fs from a directory: no loop mount. It prints "Creating
  # regular file ..." even with -q, hence the redirect.
  mkfs.ext4 -q -F -L root -d "$st" "$IMAGE.tmp" "$IMG_SIZE" > "$CACHE/mkfs-$variant.log" 2>&1 \
    || { cat "$CACHE/mkfs-$variant.log" >&2; die "mkfs.ext4 failed"; }
  mv "$IMAGE.tmp" "$IMAGE"
  rm -rf "$st"
  log "image $variant built in $((SECONDS - t0)) s: $IMAGE"
}

# --------------------------------------------------------------------------
main() {
  local cmd=${1:-all}; shift || true
  mkdir -p "$CACHE"
  case "$cmd" in
    deps) deps ;;
    rootfs) ensure_rootfs; echo "$ROOTFS" ;;
    image) [ $# -ge 1 ] || die "usage: image.sh image VARIANT"
           exec 9>"$CACHE/.lock"; flock 9
           build_variant "$@"; echo "$IMAGE" ;;
    all) deps; exec 9>"$CACHE/.lock"; flock 9
         ensure_rootfs
         build_variant none; build_variant emptyunit; build_variant cloudinit; build_variant imprint ;;
    clean) rm -rf "$CACHE" ;;
    *) die "unknown command '$cmd' (deps|rootfs|image VARIANT|all|clean)" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
