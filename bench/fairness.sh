#!/usr/bin/env bash
# Fairness benchmark (issue 11): 50 password resets of one tenant injected
# while another tenant's 200 000-message newsletter is queued for the same
# rate-limited site; their latency from hikyaku's 250 to the receiver's
# timestamp, without a tenant (the FIFO control), as another tenant, and as
# high priority. See docs/BENCHMARKS.md.
#
#   bench/fairness.sh [--newsletter 200000] [--rate 2000] [--only fifo,tenant,priority] [--hikyaku PATH]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in python3 smtp-source; do
  command -v "$tool" >/dev/null || {
    echo "fairness.sh: $tool missing (apt-get install python3 postfix)" >&2
    exit 2
  }
done
exec python3 "$here/fairness.py" "$@"
