"""Shared test set-up.

torch._dynamo must be imported before TensorFlow in any process that uses both (see
porttax/_frameworks.py); importing it here first makes the whole test session safe regardless of
test order. tests/test_import_order.py checks the same in fresh processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from porttax._frameworks import import_torch  # noqa: E402

import_torch()

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m porttax.cli ...` in a fresh process, as a user's shell would."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", "porttax.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
