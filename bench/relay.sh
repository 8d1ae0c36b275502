#!/usr/bin/env bash
# Relay benchmark: hikyaku (sync = "group") against Postfix, both delivering
# to Postfix's smtp-sink on loopback; plus the ceiling (smtp-source straight
# into the sink), delivery of a held spool, and a run with 20 % of the mail
# routed to a blackhole. Same machine, same run. See docs/BENCHMARKS.md.
#
#   sudo bench/relay.sh [--only ceiling,postfix,hikyaku,delivery,split,blackhole] [--messages N | --quick] [--repeat 3]
#
# The driver (bench/relay.py, Python 3 standard library; it imports the
# instruments of bench/inject.py) starts and stops everything itself and
# cleans up on failure and on SIGINT/SIGTERM.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $(id -u) -ne 0 ]]; then
  echo "relay.sh: run as root (loop mounts, cgroups, ftrace, a private Postfix, smtp-sink -u nobody)" >&2
  exit 2
fi
for tool in python3 smtp-source smtp-sink postfix mkfs.ext4 losetup; do
  command -v "$tool" >/dev/null || {
    echo "relay.sh: $tool missing (apt-get install python3 postfix e2fsprogs mount)" >&2
    exit 2
  }
done
exec python3 "$here/relay.py" "$@"
