#!/bin/sh
# Right after imprint.service, run `cloud-init status --wait` (imprint's
# shim, through a link of our own: see e2e-report.sh's shim_status) and
# `imprint status --wait` side by side, and record where
# imprint-host-keys.service stood before them, and each one's exit code and
# the ed25519 host key at the moment it returned (read with the shell's own
# `read`: no process to start, so nothing can finish in between), and the
# CPU time each took (user and system, with what it started: what its
# polling costs the boot it waits for). Read by e2e-report.sh (shim-probe).
out=/run/shim-probe
mkdir -p /var/lib/e2e-shim
ln -sf /usr/bin/imprint /var/lib/e2e-shim/cloud-init
probe() {   # probe NAME CMD...
  name=$1; shift
  "$@" > /dev/null 2>&1
  rc=$?
  key=none
  read -r t k _ < /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null && key="$t $k"
  # this subshell's waited-for children's CPU time (cutime + cstime, in
  # clock ticks: /proc/PID/stat fields 16 and 17), read by the shell itself
  read -r stat < /proc/self/stat
  set -- $stat
  printf '%s-rc=%s\n%s-key=%s\n%s-cpu-ticks=%s\n' "$name" "$rc" "$name" "$key" \
    "$name" "$((${16} + ${17}))" > "$out.$name"
}
before=$(systemctl is-active imprint-host-keys.service)
probe shim /var/lib/e2e-shim/cloud-init status --wait &
probe imprint /usr/bin/imprint status --wait &
wait
{
  echo "host-keys-before=$before"
  cat "$out.shim" "$out.imprint"
} > "$out.tmp"
mv "$out.tmp" "$out"
