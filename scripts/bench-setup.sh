#!/usr/bin/env bash
# Installs the tools only the benchmarks need: trafgen (netsniff-ng), iptables, ipset, nftables, ethtool.
# Safe to run again: it calls apt-get only when one of them is missing.
set -euo pipefail

packages=(netsniff-ng iptables ipset nftables ethtool)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "bench-setup: need root and apt-get to install: ${missing[*]}" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bench-setup: installed ${missing[*]}"
