#!/bin/sh
# Run by guest/e2e-wait-deadlock.service, which imprint.service is ordered
# after: `imprint status --wait` and `cloud-init status --wait` (imprint's
# shim, through a link of our own as in e2e-report.sh), each bounded by
# `timeout 30` (an imprint that waits would hold the boot for ever). Records
# each one's exit code, how long it took and what it said, for e2e-report.sh
# (wait-deadlock).
out=/run/wait-deadlock
mkdir -p /var/lib/e2e-shim
ln -sf /usr/bin/imprint /var/lib/e2e-shim/cloud-init
probe() {   # probe NAME CMD...
  name=$1; shift
  t0=$(cut -d' ' -f1 /proc/uptime)
  timeout 30 "$@" > "$out.$name" 2>&1
  rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "$name-rc=$rc"
  echo "$name-secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
}
{
  probe imprint /usr/bin/imprint status --wait
  probe shim /var/lib/e2e-shim/cloud-init status --wait
  echo "--- imprint"
  cat "$out.imprint"
  echo "--- shim"
  cat "$out.shim"
} > "$out.tmp"
mv "$out.tmp" "$out"
