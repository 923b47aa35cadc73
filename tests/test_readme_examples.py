"""Every example the README shows runs, in the order it shows them, on real files of the names it uses.

test_docs.py checks that each documented command parses; this runs the README's "one example per job"
for real — convert (direct, Keras → torch, ONNX in, --route auto), parity as a CI gate, inspect,
audit, and the Python snippet — and each must exit 0 (parity passed). The files are built here: a
resnet and an MLP as `.pt2` by `porttax models build`, the MLP exported to ONNX by porttax, and a
plain Keras model saved by Keras itself.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs import ROOT, _commands

README = ROOT / "README.md"
PORTTAX = [sys.executable, "-m", "porttax.cli"]

KERAS_MODEL = """
import sys
from porttax._frameworks import import_keras
keras = import_keras()
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 3), name="image")
x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
x = keras.layers.GlobalAveragePooling2D()(x)
keras.Model(inputs, keras.layers.Dense(5)(x), name="small_cnn").save(sys.argv[1])
"""


def _run(argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("readme")
    _run([*PORTTAX, "models", "build", "resnet-tiny", "-o", "resnet.pt2"], work)
    _run([*PORTTAX, "models", "build", "mlp-tiny", "-o", "model.pt2"], work)
    _run([*PORTTAX, "convert", "model.pt2", "--to", "onnx", "-o", "model.onnx", "--quiet", "--no-latency"], work)
    _run([sys.executable, "-c", KERAS_MODEL, "model.keras"], work)
    (work / "models").mkdir()
    for name in ("model.pt2", "model.keras"):
        shutil.copy(work / name, work / "models" / name)
    return work


@pytest.mark.slow
def test_the_readme_examples_run_as_shown(workdir: Path) -> None:
    commands = [c for c in _commands(README) if not c.startswith("models build")]  # the quick start's own
    jobs = {shlex.split(c)[0] for c in commands}
    assert {"convert", "parity", "inspect", "audit"} <= jobs, jobs
    for command in commands:
        if command.startswith("convert demo/"):
            continue  # the quick start's line, which README's set-up command runs on a fresh machine
        _run([*PORTTAX, *shlex.split(command)], workdir)
    assert (workdir / "out" / "resnet_sm" / "saved_model.pb").is_file()
    assert (workdir / "out" / "model.pt2").is_file() and (workdir / "parity.xml").is_file()
    assert (workdir / "audit.html").is_file() and (workdir / "audit.json").is_file()


@pytest.mark.slow
def test_the_readme_python_example_runs(workdir: Path, tmp_path: Path) -> None:
    block = re.search(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S).group(1)
    shutil.copy(workdir / "model.pt2", tmp_path / "model.pt2")
    prelude = ("import torch\nprogram = torch.export.load('model.pt2')\nmodule = program.module()\n"
               "x = program.example_inputs[0][0]\n")  # the module the snippet names, and an input for it
    checks = "\nassert result.passed, result.parity.summary_line()\nprint('ok')\n"
    done = _run([sys.executable, "-c", prelude + block + checks], tmp_path)
    assert done.stdout.strip().endswith("ok")
