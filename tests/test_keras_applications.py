"""Architectures keras.applications defines with layers of its own (LayerScale, StochasticDepth):
ConvNeXt converts to PyTorch and computes the same function, with LayerScale as a readable module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from porttax._frameworks import import_keras, import_torch

import_torch()


@pytest.mark.slow
def test_convnext_with_layer_scale_and_stochastic_depth_converts(tmp_path: Path) -> None:
    keras = import_keras()
    keras.utils.set_random_seed(0)
    from keras.src.applications.convnext import ConvNeXt  # the builder behind ConvNeXtTiny ... XLarge

    # ConvNeXtTiny's own blocks, smaller; with a drop-path rate its residual paths are StochasticDepth
    model = ConvNeXt(depths=[1, 1, 2, 1], projection_dims=[16, 32, 64, 96], drop_path_rate=0.1, weights=None,
                     input_shape=(32, 32, 3), classes=10, name="convnext_small_test")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"LayerScale", "StochasticDepth"} <= kinds, kinds
    rng = np.random.default_rng(0)
    for layer in model.layers:  # gamma starts at 1e-6, which would hide a wrong block from any check
        if type(layer).__name__ == "LayerScale":
            layer.gamma.assign(rng.uniform(0.5, 1.5, size=layer.gamma.shape).astype("float32"))
    src = tmp_path / "convnext.keras"
    model.save(str(src))
    out, report = tmp_path / "convnext.pt2", tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "porttax.cli", "convert", str(src), "--to", "torch", "-o", str(out),
                           "--no-latency", "--seeds", "2", "--report", str(report)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["parity"]["passed"]
    scales = [r for r in data["mapping"]["layers"] if r["source_type"] == "LayerScale"]
    depths = [r for r in data["mapping"]["layers"] if r["source_type"] == "StochasticDepth"]
    assert scales and depths and all(r["status"] != "unsupported" for r in scales + depths)
    import torch

    module = torch.export.load(str(out)).module()
    assert any(name.endswith("gamma") for name, _ in module.named_parameters())
