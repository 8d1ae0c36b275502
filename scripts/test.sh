#!/usr/bin/env bash
# Second command of the README: install dependencies (including the external
# test tools), build with warnings as errors, and run every test: unit tests,
# fuzz-corpus replays and the integration tests that start real daemons on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
cmake --preset ci >/dev/null
cmake --build --preset ci -j"$(nproc)"
ctest --preset ci -j"$(nproc)" "$@"
