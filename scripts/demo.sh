#!/usr/bin/env bash
# Sets up, then runs the main job on the example policy: gate it, compile it, explain a packet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
policy=policies/edge-web.yaml
echo "== fwc check $policy"
.venv/bin/fwc check "$policy"
echo "== fwc compile $policy -o build/edge-web.o"
mkdir -p build
.venv/bin/fwc compile "$policy" -o build/edge-web.o
echo "== fw-load inspect build/edge-web.o"
.venv/bin/fw-load inspect build/edge-web.o
