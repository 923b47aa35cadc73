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

# The TensorFlow.js target (`--to tfjs`): the tensorflowjs converter pins TensorFlow 2.19, so it gets a
# virtual environment of its own, and graph models are checked in Node.js with the @tensorflow/tfjs-*
# packages pinned in porttax/tfjs/package-lock.json (npm ci into porttax's cache folder). Both go to
# ~/.cache/porttax (or $XDG_CACHE_HOME/porttax); pip's and npm's progress is shown. Needs Node.js >= 18
# and npm; without them (or the network) setup goes on and only the TF.js tests fail, saying why.
if command -v node >/dev/null && command -v npm >/dev/null; then
    echo "porttax setup: preparing the TensorFlow.js converter environment and Node runtime (first run downloads ~600 MB)"
    if ! .venv/bin/python -m porttax.tfjs.env; then
        echo "porttax setup: the TensorFlow.js environment could not be prepared (see above); porttax tries" \
             "again on first use of --to tfjs" >&2
    fi
else
    echo "porttax setup: no node/npm on PATH; install Node.js 18+ for the TensorFlow.js target (--to tfjs) and its tests" >&2
fi
echo "porttax setup: done — try .venv/bin/porttax --help"
