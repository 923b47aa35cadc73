"""Failure paths: planted drift exits 1, interrupted writes leave nothing, import order can't crash."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from porttax import cli, models
from porttax._frameworks import import_torch
from porttax.converters.registry import REGISTRY, Converter, ConverterKey
from porttax.saving import atomic_output

torch = import_torch()


def test_planted_drift_fails_parity_with_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    import porttax.converters.torch_to_keras  # noqa: F401  (registers converters)

    key = ConverterKey("torch", "keras", "aten.linear")
    honest = REGISTRY.lookup("torch", "keras", "aten.linear")

    def drifting_linear(call):  # a converter bug: a bias off by 1e-3
        val = honest.fn(call)
        val.tensor = call.ctx.ops.add(val.tensor, 1e-3)
        return val

    monkeypatch.setitem(REGISTRY._converters, key, Converter(key, drifting_linear, "planted"))
    ckpt = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    out = tmp_path / "mlp.keras"
    code = cli.main(["convert", str(ckpt), "-o", str(out), "--no-latency", "-q", "--report", str(tmp_path / "r.json")])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out and "parity FAILED" in captured.err


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from porttax._frameworks import import_keras

    keras = import_keras()

    def save_then_die(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", save_then_die)
    ckpt = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    out = tmp_path / "mlp.keras"
    assert cli.main(["convert", str(ckpt), "-o", str(out), "-q"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mlp.pt", "mlp.config.json"])


def test_atomic_output_keeps_existing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target, force=True) as tmp:
            tmp.write_text("new, half written")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_tensorflow_first_then_export_does_not_crash() -> None:
    """TF loaded through porttax first, then torch.export, torchvision and a full conversion."""
    proc = _python(
        "from porttax._frameworks import import_tf, import_torch, import_torchvision\n"
        "tf = import_tf(); assert tf.constant(1).numpy() == 1\n"
        "torch = import_torch()\n"
        "ep = torch.export.export(torch.nn.Linear(3, 2).eval(), (torch.randn(1, 3),))\n"
        "import_torchvision()\n"
        "import porttax\n"
        "r = porttax.convert(torch.nn.Linear(3, 2), example_inputs=(torch.randn(1, 3),), measure_latency=False)\n"
        "assert r.passed\n"
        "print('survived')\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "survived" in proc.stdout


def test_import_porttax_and_help_load_no_framework() -> None:
    proc = _python(
        "import sys, porttax, porttax.parity, porttax.models, porttax.converters, porttax.cli\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "print(heavy)\n"
        "try:\n"
        "    porttax.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "print(heavy)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[0] == "[]"
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_wheel_has_no_generic_top_level_packages(tmp_path: Path, repo: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(repo)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("porttax-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert not tops & {"converters", "parity", "models", "tests", "bench"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "porttax/converters/torch_to_keras/driver.py" in names
    assert "porttax/parity/runners.py" in names and "porttax/models/llama.py" in names


def test_numeric_inputs_from_signature_are_valid_token_ids() -> None:
    from porttax.sources.torch_source import load_torch_source
    from porttax.parity import make_inputs

    module = models.build_model("llama-tiny")
    src = load_torch_source(module, example_inputs=models.example_inputs("llama-tiny"))
    (spec,) = src.specs
    assert spec.value_range == (0, 256)
    ids = make_inputs(src.specs, 7)[spec.name]
    assert ids.min() >= 0 and ids.max() < 256 and np.unique(ids).size > 10
