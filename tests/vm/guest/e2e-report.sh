#!/bin/sh
# imprint e2e reporter (shell only: no Python, it would cost ~2 s per call
# under TCG). Waits for the boot to finish, then writes machine-readable
# sections to /dev/ttyS1 (qemu's second -serial file:) and powers off.
#
# Format (parsed by tests/vm/run.sh):
#   ===IMPRINT-E2E-BEGIN===
#   @@begin NAME [gz]      base64 of the section's bytes (gzip'd first if "gz")
#   ...
#   @@end NAME
#   ===IMPRINT-E2E-END===
# Base64 keeps every byte exact (non-ASCII, quotes, \r) through the UART.
# The UART is set to 115200 baud: qemu paces a 16550 at its baud rate, and
# at the default 9600 a 36 KB report takes ~35 s.
systemctl is-system-running --wait >/dev/null 2>&1
echo "e2e-report: boot finished at uptime $(cut -d' ' -f1 /proc/uptime)" > /dev/kmsg
state=$(systemctl is-system-running 2>/dev/null)

OUT=/dev/ttyS1
[ -w "$OUT" ] || OUT=/dev/console
stty -F "$OUT" 115200 raw -echo 2>/dev/null || true

up() { cut -d' ' -f1 /proc/uptime; }
sec() {   # sec NAME CMD... : the command's stdout+stderr, base64
  name=$1; shift
  echo "$(up) $name" >> /run/e2e-timing
  echo "@@begin $name"
  "$@" 2>&1 | base64 -w 76
  echo "@@end $name"
}
secgz() { # secgz NAME CMD... : same, gzip'd (for big sections)
  name=$1; shift
  echo "$(up) $name" >> /run/e2e-timing
  echo "@@begin $name gz"
  "$@" 2>&1 | gzip -6 | base64 -w 76
  echo "@@end $name"
}
catf() { [ -e "$1" ] && cat "$1"; return 0; }
# What Vagrant runs after boot: `cloud-init status --wait`, answered by
# imprint's shim (the binary under the name cloud-init). The image keeps a
# real, disabled cloud-init for the comparison boots, so the package did not
# link /usr/bin/cloud-init here: call the shim through a link of our own,
# outside PATH and on the root file system (/run is mounted noexec).
shim_status() {
  [ -x /usr/bin/imprint ] || { echo "no imprint"; return 0; }
  mkdir -p /var/lib/e2e-shim
  ln -sf /usr/bin/imprint /var/lib/e2e-shim/cloud-init
  /var/lib/e2e-shim/cloud-init status --wait --long; echo "rc=$?"
}
# `imprint status` once the boot is done, and its exit code.
imprint_status() {
  [ -x /usr/bin/imprint ] || { echo "no imprint"; return 0; }
  /usr/bin/imprint status; echo "rc=$?"
}

UNITS="imprint.service imprint-host-keys.service e2e-keys-fail.service e2e-kill-run.service e2e-wait-deadlock.service e2e-no-seed-links.service empty-oneshot.service early.service app.service ssh.service e2e-report.service
sshd-keygen@ed25519.service sshd-keygen@ecdsa.service sshdgenkeys.service ssh.socket ssh-probe.service empty-plain.service
cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service
networking.service systemd-journald.service sysinit.target basic.target multi-user.target"
PROPS="Result ExecMainStatus ExecMainCode ActiveState SubState NRestarts LoadState ConditionResult ConditionTimestampMonotonic
InactiveExitTimestampMonotonic ActiveEnterTimestampMonotonic
ExecMainStartTimestampMonotonic ExecMainExitTimestampMonotonic"

# run.sh --rerun: imprint again, after the boot, on scratch roots with the
# seed's user-data and the image's manifest (--root: no unit actions, no
# seed probe). warm1-3 use the binary that ran at boot, whose translated code
# qemu keeps (TCG keys it by physical page); "cold" a copy of it in other
# page-cache pages, translated anew. One line per run: wall time, then the
# stages from its report.json.
rerun_probe() {
  [ -x /usr/bin/imprint ] && [ -d /etc/imprint ] || { echo "no imprint in this image"; return 0; }
  mkdir -p /run/e2e-seed
  mount -o ro LABEL=cidata /run/e2e-seed || { echo "no cidata seed to mount"; return 0; }
  cp /usr/bin/imprint /var/tmp/imprint-cold
  for k in warm1 warm2 cold warm3; do
    r=/var/tmp/e2e-rerun-$k bin=/usr/bin/imprint
    [ "$k" = cold ] && bin=/var/tmp/imprint-cold
    mkdir -p "$r/etc" && cp -a /etc/imprint "$r/etc/"
    t0=$(date +%s%N)
    "$bin" run --root "$r" --user-data /run/e2e-seed/user-data --instance-id "i-$k" > /dev/null 2>&1
    rc=$? t1=$(date +%s%N)
    printf '%s rc=%s wall %s ms: ' "$k" "$rc" $(( (t1 - t0) / 1000000 ))
    # report.json is pretty-printed, one key a line: each stage's name and
    # duration, and when the report was taken (awk: python3 costs ~2 s a
    # call under TCG).
    awk -F': ' '/"stage":/ { gsub(/[",]/, "", $2); s = $2 }
      /"duration_ms":/ { gsub(/,/, "", $2); printf "%s %.0f ", s, $2 }
      /"report_ms":/ { gsub(/,/, "", $2); r = $2 }
      END { printf "| report at %.0f\n", r }' "$r/var/lib/imprint/report.json" 2>&1
  done
  umount /run/e2e-seed
}

props() {
  echo "system.state=$state"
  echo "system.uptime=$(cut -d' ' -f1 /proc/uptime)"
  echo "system.hostname=$(hostname)"
  echo "system.kernel=$(uname -r)"
  echo "system.finish_usec=$(systemctl show -p FinishTimestampMonotonic --value)"
  echo "system.userspace_usec=$(systemctl show -p UserspaceTimestampMonotonic --value)"
  # one systemctl call for all (each call costs ~0.1 s under TCG): blocks of
  # Prop=value separated by blank lines, labelled by Id=
  pargs=""; for p in $PROPS; do pargs="$pargs -p $p"; done
  # shellcheck disable=SC2086
  systemctl show -p Id $pargs $UNITS 2>/dev/null | awk -v RS= -F '\n' '
    { id = ""; for (i = 1; i <= NF; i++) if ($i ~ /^Id=/) id = substr($i, 4)
      for (i = 1; i <= NF; i++) if ($i !~ /^Id=/) print id "." $i }'
  journalctl -b --no-pager -o cat > /run/e2e-journal.txt 2>/dev/null
  echo "journal.ordering_cycle=$(grep -ci 'ordering cycle' /run/e2e-journal.txt)"
  echo "journal.found_ordering_cycle=$(grep -c 'Found ordering cycle' /run/e2e-journal.txt)"
  echo "app.starts=$(catf /run/app/starts)"
  echo "early.starts=$(catf /run/early/starts)"
  if [ -e /var/lib/imprint/sealed ]; then echo "seal.exists=yes"; else echo "seal.exists=no"; fi
  echo "seal.sha256=$(sha256sum /var/lib/imprint/sealed 2>/dev/null | cut -d' ' -f1)"
  echo "state.mode=$(stat -c %a /var/lib/imprint 2>/dev/null)"
  echo "ssh.active=$(systemctl is-active ssh.service 2>/dev/null)"
  for f in /opt/app/conf.env /etc/early/early.conf; do
    if [ -e "$f" ]; then
      echo "file.$f.exists=yes"
      echo "file.$f.sha256=$(sha256sum "$f" | cut -d' ' -f1)"
      echo "file.$f.mode=$(stat -c %a "$f")"
      echo "file.$f.owner=$(stat -c %U:%G "$f")"
    else
      echo "file.$f.exists=no"
    fi
  done
  echo "mounts.iso9660=$(findmnt -rn -t iso9660,vfat -o TARGET,SOURCE | tr '\n' ' ')"
}

ssh_fps() {
  for f in /etc/ssh/ssh_host_*_key.pub; do
    [ -e "$f" ] || continue
    # "256 SHA256:... root@host (ED25519)" -> "ED25519 SHA256:..."
    ssh-keygen -lf "$f" | awk '{print $NF, $2}' | tr -d '()'
  done | sort
}

# What a probe of the imprint image (tests/vm/image.sh, install_probes)
# recorded in /run/NAME, once it has (probes are simple services: the boot
# does not wait for them, and they wait for the host keys).
probe_out() {
  [ -e "/usr/local/bin/$1.sh" ] || { echo "no $1 in this image"; return 0; }
  # skipped on perf boots (ConditionKernelCommandLine=!imprint_e2e.verbose=1)
  grep -qw 'imprint_e2e.verbose=1' /proc/cmdline && { echo "$1 not run on perf boots"; return 0; }
  n=0
  while [ ! -e "/run/$1" ] && [ $n -lt 120 ]; do sleep 0.5; n=$((n + 1)); done
  catf "/run/$1"
}
# The per-connection sshd probe, and the ed25519 key sshd is to answer with.
ssh_probe() {
  probe_out ssh-probe
  echo "pub=$(awk '{print $1, $2}' /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null)"
}

sh_env() {   # what POSIX sh's "." makes of the env file (must equal systemd's)
  [ -r /opt/app/conf.env ] || return 0
  env -i /bin/sh -c 'set -a; . /opt/app/conf.env; env' | grep '^APP_' | LC_ALL=C sort
}

{
  echo "===IMPRINT-E2E-BEGIN==="
  sec props props
  sec imprint-journal journalctl -b --no-pager -o cat -u imprint.service
  sec imprint-status systemctl status --no-pager -l imprint.service
  sec host-keys-journal journalctl -b --no-pager -o cat -u imprint-host-keys.service
  sec shim-status shim_status
  sec imprint-status-out imprint_status
  sec wait-deadlock catf /run/wait-deadlock
  sec no-seed-links journalctl -b --no-pager -o cat -u e2e-no-seed-links.service
  sec failed systemctl --failed --no-legend --plain --no-pager
  sec app-seen.env catf /run/app/seen.env
  sec app-sh.env sh_env
  sec app-log catf /run/app/log
  sec early-seen.conf catf /run/early/seen.conf
  sec early-log catf /run/early/log
  sec early.conf catf /etc/early/early.conf
  sec conf.env catf /opt/app/conf.env
  sec sealed catf /var/lib/imprint/sealed
  sec report.json catf /var/lib/imprint/report.json
  sec ssh-fingerprints ssh_fps
  sec ssh-probe ssh_probe
  sec shim-probe probe_out shim-probe
  sec analyze-time systemd-analyze time
  # blame and critical-chain cost seconds each under TCG (more on a loaded
  # host): only when asked for (run.sh --perf adds imprint_e2e.verbose=1)
  if grep -qw 'imprint_e2e.verbose=1' /proc/cmdline; then
    sec blame sh -c 'systemd-analyze blame --no-pager | head -30'
    sec critical-chain systemd-analyze critical-chain --no-pager
    # what sysinit.target and app.service waited for (app.service starts
    # after basic.target, so a late sysinit.target is a late app)
    sec app-chain systemd-analyze critical-chain --no-pager sysinit.target network.target app.service
    sec sysinit-after systemctl show -p After sysinit.target network.target
    grep -qw 'imprint_e2e.rerun=1' /proc/cmdline && sec rerun rerun_probe
    # when journald received each of imprint's entries (run.sh's split)
    sec imprint-journal-mono journalctl -b --no-pager -o short-monotonic -u imprint.service
  fi
  sec generator-dropins sh -c 'for f in /run/systemd/generator*/*imprint* /run/systemd/generator*/*/*imprint*; do [ -e "$f" ] && { echo "== $f"; cat "$f"; }; done'
  secgz journal journalctl -b --no-pager -o short-monotonic
  sec tty stty -F "$OUT" -a
  echo "$(up) end" >> /run/e2e-timing
  sec report-timing cat /run/e2e-timing
  echo "===IMPRINT-E2E-END==="
} > "$OUT" 2>&1
echo "e2e-report: report written at uptime $(cut -d' ' -f1 /proc/uptime)" > /dev/kmsg
sync
systemctl poweroff --no-block
