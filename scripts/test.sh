#!/usr/bin/env bash
# Sets up, then runs the whole test suite: lint, types, and pytest (kernel tests need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check compiler loader artifact tests bench src
.venv/bin/ruff format --check compiler loader artifact tests bench src
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
