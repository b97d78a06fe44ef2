#!/bin/sh
# Demo service that runs BEFORE imprint (its unit says Before=imprint.service),
# so on a first boot imprint finds it active and must restart it.
#   early.sh record   (ExecStartPre) count starts, keep a copy of the config seen
#   early.sh          (ExecStart) idle
set -eu
if [ "${1:-}" = record ]; then
  mkdir -p /run/early
  n=$(cat /run/early/starts 2>/dev/null || echo 0)
  echo $((n + 1)) > /run/early/starts
  if [ -f /etc/early/early.conf ]; then
    cp /etc/early/early.conf /run/early/seen.conf
  else
    echo '(absent)' > /run/early/seen.conf
  fi
  echo "start $((n + 1)) at uptime $(cut -d' ' -f1 /proc/uptime)" >> /run/early/log
  exit 0
fi
exec sleep infinity
