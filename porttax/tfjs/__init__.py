"""TensorFlow.js support: the isolated converter environment (`env`) and the Node.js runner (`node`).

This folder is also a small Node package (`package.json`, `package-lock.json`, `run_graph_model.mjs`):
the runner that executes graph models on TF.js's pure-JavaScript CPU backend for porttax's parity
checks. See porttax/targets/tfjs.py for the target itself and `env` for why the converter lives in a
virtual environment of its own.

Why a room of its own and not part of porttax.targets: both the tfjs target and the parity suite's
`TfjsRunner` (which `porttax parity` uses on any TF.js folder, however it was made) need the Node
environment, and parity may not import targets. So this sits below both, importing only the base.
"""

from __future__ import annotations

from pathlib import Path

TFJS_VERSION = "4.22.0"  # the tensorflowjs converter on PyPI and the @tensorflow/tfjs-* runtime on npm
HERE = Path(__file__).resolve().parent
