#!/usr/bin/env bash
# Sets up, then runs the main job on the example policy: gate it, compile it, test packets
# against it (in the kernel too, as root), explain one, and inspect the artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
policy=policies/edge-web.yaml
echo "== fwc check $policy"
.venv/bin/fwc check "$policy"
echo "== fwc compile $policy -o build/edge-web.o"
mkdir -p build
.venv/bin/fwc compile "$policy" -o build/edge-web.o
echo "== fwc test $policy policies/edge-web.cases.yaml"
.venv/bin/fwc test "$policy" policies/edge-web.cases.yaml
echo "== fwc explain $policy --src 203.0.113.9 --dst 192.0.2.10 --proto tcp --dport 22"
.venv/bin/fwc explain "$policy" --src 203.0.113.9 --dst 192.0.2.10 --proto tcp --dport 22
echo "== fw-load inspect build/edge-web.o"
.venv/bin/fw-load inspect build/edge-web.o
