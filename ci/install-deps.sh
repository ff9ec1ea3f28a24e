#!/usr/bin/env bash
# Installs the Debian packages mprpc needs, only those that are missing.
# Idempotent. `--check-or-install` is what make calls: silent when all is there.
set -euo pipefail

PKGS=(build-essential pkg-config libprotobuf-c-dev protobuf-c-compiler libev-dev
      libcmocka-dev libzookeeper-mt-dev libsnappy-dev zlib1g-dev libhttp-parser-dev libjansson-dev
      libssl-dev openssl
      protobuf-compiler prometheus libxml2-utils zookeeper default-jre-headless afl++ clang
      libclang-rt-14-dev python3 procps iproute2 nftables iptables chromium curl)

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  [[ "${1:-}" == "--check-or-install" ]] || echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
