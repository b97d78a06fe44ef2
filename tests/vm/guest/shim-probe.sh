#!/bin/sh
# Run `cloud-init status --wait` (imprint's shim, through a link of our own:
# see e2e-report.sh's shim_status) right after imprint.service, and record
# where imprint-host-keys.service stood before it, and the ed25519 host key
# at the moment it returned (read with the shell's own `read`: no process to
# start, so nothing can finish in between). Read by e2e-report.sh
# (shim-probe).
out=/run/shim-probe
mkdir -p /var/lib/e2e-shim
ln -sf /usr/bin/imprint /var/lib/e2e-shim/cloud-init
before=$(systemctl is-active imprint-host-keys.service)
/var/lib/e2e-shim/cloud-init status --wait > /dev/null 2>&1
rc=$?
read -r up _ < /proc/uptime
key=none
read -r t k _ < /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null && key="$t $k"
{
  echo "rc=$rc"
  echo "returned-at=$up"
  echo "host-keys-before=$before"
  echo "key=$key"
} > "$out.tmp"
mv "$out.tmp" "$out"
