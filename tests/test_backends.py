"""A converted .keras model runs on every Keras backend: TensorFlow, JAX and torch.

Keras fixes its backend at import, so each backend runs in its own worker process
(porttax.parity.worker), on the same seeded inputs as the PyTorch source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import porttax
from porttax import models
from porttax._frameworks import import_torch
from porttax.parity import make_inputs
from porttax.parity.worker import run_in_worker

torch = import_torch()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    out = {}
    root = tmp_path_factory.mktemp("backends")
    for name in ("resnet-tiny", "llama-tiny"):
        module = models.build_model(name)
        result = porttax.convert(module, example_inputs=models.example_inputs(name, batch=2, seq=16),
                                 to="keras", output=root / f"{name}.keras", parity=False,
                                 measure_latency=False)
        out[name] = (result.output, module, result.source.specs)
    return out


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", ["resnet-tiny", "llama-tiny"])
def test_keras_file_holds_parity_on_backend(converted: dict, name: str, backend: str) -> None:
    path, module, specs = converted[name]
    for seed in (0, 1, 2):
        inputs = make_inputs(specs, seed)
        with torch.no_grad():
            expected = module(*[torch.from_numpy(inputs[s.name]) for s in specs]).numpy()
        outputs, info = run_in_worker(path, inputs, backend)
        assert info["backend"] == backend
        got = np.asarray(outputs[0], np.float64)
        rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
        assert rel <= 1e-5, f"{name} on {backend}, seed {seed}: rel_l2 {rel:.2e}"
