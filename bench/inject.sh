#!/usr/bin/env bash
# Injection benchmark: hikyaku (sync = "group") against Postfix, same load,
# same run. See docs/BENCHMARKS.md.
#
#   sudo bench/inject.sh [--only postfix|hikyaku] [--messages N | --quick] [--repeat 3]
#
# The driver (bench/inject.py, Python 3 standard library) starts and stops
# everything itself and cleans up on failure and on SIGINT/SIGTERM.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $(id -u) -ne 0 ]]; then
  echo "inject.sh: run as root (loop mounts, cgroups, ftrace, a private Postfix instance)" >&2
  exit 2
fi
for tool in python3 smtp-source postfix mkfs.ext4 losetup; do
  command -v "$tool" >/dev/null || {
    echo "inject.sh: $tool missing (apt-get install python3 postfix e2fsprogs mount)" >&2
    exit 2
  }
done
exec python3 "$here/inject.py" "$@"
