#!/bin/sh
# Connect to the per-connection sshd (ssh.socket, port 2222) and record
# where imprint-host-keys.service stood at that moment and the ed25519 host
# key sshd answered with ("none" when it had no key to answer with).
# Read by e2e-report.sh (ssh-probe).
out=/run/ssh-probe
at=$(systemctl is-active imprint-host-keys.service)
t0=$(cut -d' ' -f1 /proc/uptime)
key=$(ssh-keyscan -T 60 -p 2222 -t ed25519 127.0.0.1 2>/dev/null | awk '{print $2, $3}')
t1=$(cut -d' ' -f1 /proc/uptime)
{
  echo "host-keys-at-connect=$at"
  echo "connected-at=$t0"
  echo "answered-at=$t1"
  echo "key=${key:-none}"
} > "$out.tmp"
mv "$out.tmp" "$out"
