#!/bin/sh
# Demo app configured by imprint through EnvironmentFile=/opt/app/conf.env.
#   app.sh record   (ExecStartPre) count this start and record the environment
#                   systemd gave us, byte for byte, into /run/app/seen.env
#   app.sh          (ExecStart) idle
# Recording in ExecStartPre means the record exists once the unit is "started":
# no race with the reporter or with a restart.
set -eu
if [ "${1:-}" = record ]; then
  mkdir -p /run/app
  n=$(cat /run/app/starts 2>/dev/null || echo 0)
  echo $((n + 1)) > /run/app/starts
  # /proc/$$/environ is exactly the environment this shell was exec'd with
  # (NUL separated); values cannot contain a newline (imprint refuses those).
  tr '\0' '\n' < /proc/$$/environ | grep '^APP_' | LC_ALL=C sort > /run/app/seen.env.tmp || true
  mv /run/app/seen.env.tmp /run/app/seen.env
  echo "start $((n + 1)) at uptime $(cut -d' ' -f1 /proc/uptime)" >> /run/app/log
  exit 0
fi
exec sleep infinity
