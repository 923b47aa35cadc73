#!/usr/bin/env bash
# Create .venv and install porttax with its test dependencies. Idempotent; shows pip's progress
# (the Linux torch wheel pulls several GB of CUDA libraries on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "porttax setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --upgrade --progress-bar on "pip>=24" >/dev/null
echo "porttax setup: installing porttax and its dependencies (first run downloads torch with CUDA libraries, several GB)"
.venv/bin/python -m pip install --progress-bar on -e ".[test]"
echo "porttax setup: done — try .venv/bin/porttax --help"
