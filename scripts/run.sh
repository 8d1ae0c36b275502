#!/usr/bin/env bash
# First command of the README: install dependencies, build a release binary
# and run the daemon on the shipped configuration (etc/hikyaku.toml): SMTP on
# 127.0.0.1:2525, HTTP on 127.0.0.1:8025, spool in var/spool.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
mkdir -p var
exec build/release/src/app/hikyaku serve -c etc/hikyaku.toml "$@"
