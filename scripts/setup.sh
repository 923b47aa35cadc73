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

# tests/test_reports.py screenshots the HTML parity report in headless Chromium. Install it where apt-get
# can; if that fails, setup goes on and that one test fails with the command to run.
have_chromium() { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null
if ! have_chromium && command -v apt-get >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo -n"; fi
    echo "porttax setup: no Chromium found; installing it with ${SUDO:+$SUDO }apt-get (for the HTML report test)"
    if ! { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; then
        echo "porttax setup: could not install chromium; the HTML screenshot test will fail until" \
             "'apt-get install -y chromium' succeeds (needs root)" >&2
    fi
elif ! have_chromium; then
    echo "porttax setup: no Chromium and no apt-get; install chromium (or google-chrome) for the HTML report test"
fi
echo "porttax setup: done — try .venv/bin/porttax --help"
