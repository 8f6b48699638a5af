#!/usr/bin/env bash
# Installs what fwc needs: Debian packages (when root) and a venv in .venv.
# Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(python3 python3-venv libbpf1 libbpf-dev bpftool iproute2 linux-libc-dev libc6-dev make
    # the deploy tests: systemd-analyze verify, promtool check rules, capsh, git
    systemd prometheus libcap2-bin git
    # netfilter, the oracle of the import tests
    iptables nftables ipset
    # conntrack entries made by hand in the connection-state kernel tests
    conntrack
    # trafgen (netsniff-ng), the veth harness's sender, in the benchmark smoke tests
    netsniff-ng
    # veth XDP drop counters (ethtool -S) in the kernel tests
    ethtool)

newest_clang() {
    # The kernel wants BTF from a recent clang: take the newest one Debian offers.
    apt-cache search --names-only '^clang-[0-9]+$' 2>/dev/null \
        | sed -n 's/^clang-\([0-9]\+\) .*/\1/p' | sort -n | tail -n 1
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    have_all=1
    for p in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || have_all=0
    done
    # Any clang from 18 on writes BTF this kernel accepts; otherwise fetch the newest.
    recent=0
    for c in /usr/bin/clang-[0-9]*; do
        n=${c##*/clang-}
        case "$n" in *[!0-9]*|"") continue ;; esac
        [ "$n" -ge 18 ] && recent=1
    done
    [ "$recent" = 1 ] || have_all=0
    # kubectl builds the kustomize overlays (deploy/kubernetes): Debian's kubectl package
    # where the archive has one, else kubernetes-client
    command -v kubectl >/dev/null || have_all=0
    if [ "$have_all" = 0 ] || [ -n "${FWC_APT_REFRESH:-}" ]; then
        apt-get update -qq
        v=$(newest_clang)
        extra=()
        [ -n "$v" ] && extra=("clang-$v" "llvm-$v")
        if ! command -v kubectl >/dev/null; then
            if apt-cache show kubectl >/dev/null 2>&1; then
                extra+=(kubectl)
            else
                extra+=(kubernetes-client)
            fi
        fi
        apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" "${extra[@]}" >/dev/null
    fi
else
    echo "setup: not root; skipping apt packages (need: ${apt_packages[*]} and a recent clang)" >&2
fi

# bpffs is where fw-load pins; mount it when we can and it is missing.
if [ "$(id -u)" = 0 ] && ! mount | grep -q ' /sys/fs/bpf type bpf'; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: could not mount bpffs at /sys/fs/bpf" >&2
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.fwc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
