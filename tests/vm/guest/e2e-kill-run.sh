#!/bin/sh
# tests/vm, scenario run-killed only (guest/e2e-kill-run.service): kill -9
# `imprint run` (imprint.service's process) the moment it shows in /proc,
# so that it dies before writing its report, as a run killed by its
# TimeoutStartSec=, the OOM killer or a crash would. Shell builtins only
# (no process started per look): under emulation the run takes ~0.2 s.
n=0
while [ $n -lt 20000 ]; do
  for p in /proc/[0-9]*; do
    { read -r c < "$p/comm"; } 2>/dev/null || continue
    if [ "$c" = imprint ] && kill -9 "${p#/proc/}" 2>/dev/null; then
      echo "e2e-kill-run: killed imprint (pid ${p#/proc/}) after $n look(s)" > /dev/kmsg
      exit 0
    fi
  done
  n=$((n + 1))
done
echo "e2e-kill-run: no imprint process seen" > /dev/kmsg
exit 1
