#!/usr/bin/env bash
# Politeness benchmark (issue 11): hikyaku with two sources and no limits
# configured, and Postfix paced by hand for the receiver, each delivering to
# a fresh `hikyaku sink` that allows 3 connections and 300 messages a minute
# per client IP. Same machine, same run. See docs/BENCHMARKS.md.
#
#   sudo bench/politeness.sh [--minutes 5] [--messages N] [--only hikyaku,postfix,postfix-unpaced] [--hikyaku PATH]
#
# The driver (bench/politeness.py, Python 3 standard library; it imports the
# systems of bench/inject.py) starts and stops everything itself.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $(id -u) -ne 0 ]]; then
  echo "politeness.sh: run as root (a private Postfix instance)" >&2
  exit 2
fi
for tool in python3 smtp-source postfix; do
  command -v "$tool" >/dev/null || {
    echo "politeness.sh: $tool missing (apt-get install python3 postfix)" >&2
    exit 2
  }
done
exec python3 "$here/politeness.py" "$@"
