#!/usr/bin/env bash
# Installs hikyaku's build and test dependencies from Debian (idempotent).
# Usage: scripts/setup.sh            build + runtime dependencies
#        scripts/setup.sh --test     also the external test/benchmark tools
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3
  libboost1.81-all-dev libssl-dev librocksdb-dev libtomlplusplus-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libc-ares-dev
  libexpected-dev libgtest-dev libgmock-dev libbenchmark-dev
)
if [[ "${1:-}" == "--test" ]]; then
  # swaks and Postfix's smtp-source/smtp-sink test injection from outside;
  # clang brings libFuzzer for the fuzz preset.
  packages+=(swaks postfix clang libclang-rt-14-dev procps dnsmasq)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks a debconf question on install; "No configuration" keeps it
  # from touching the machine's mail setup (bench/ runs its own instance).
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo_cmd debconf-set-selections
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
