"""Shared check for Keras → torch converter tests: convert a live Keras model, run both on the same
inputs, compare in float64, and export the result with torch.export (what `--to torch` writes)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from porttax._frameworks import import_keras, import_torch

torch = import_torch()  # before Keras/TensorFlow: see porttax._frameworks
keras = import_keras()


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(b64)
    return float(np.linalg.norm(a64 - b64) / (denom if denom > 0 else 1.0))


def random_inputs(model: Any, seed: int, batch: int = 2, int_high: int = 10, sizes: dict | None = None) -> list[np.ndarray]:
    """Seeded inputs for every model input; None dims get `sizes[axis]` or 8; int inputs lie in [0, int_high)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = [batch if i == 0 and d is None else (d if d is not None else (sizes or {}).get(i, 8))
                 for i, d in enumerate(t.shape)]
        if "int" in str(t.dtype):
            out.append(rng.integers(0, int_high, size=shape).astype(str(t.dtype)))
        else:
            out.append(rng.standard_normal(shape).astype("float32"))
    return out


def outputs_of(values: Any) -> list[np.ndarray]:
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [np.asarray(v.detach().numpy() if hasattr(v, "detach") else keras.ops.convert_to_numpy(v)) for v in values]


def check_keras_to_torch(model: Any, seeds: Sequence[int] = (0, 1, 2), tol: float = 1e-5, export: bool = True,
                         channels_first: bool = False, **input_kw: Any) -> tuple[Any, float]:
    """Convert `model`, assert parity at ‖a−b‖/‖b‖ ≤ tol on every output and seed; return (module, worst)."""
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    result = convert_keras_model(model, channels_first_io=channels_first)
    module = result.module
    worst = 0.0
    for seed in seeds:
        xs = random_inputs(model, seed, **input_kw)
        feed = xs[0] if len(xs) == 1 else xs
        expected = outputs_of(model(feed, training=False))
        targs = [torch.from_numpy(x) for x in xs]
        if channels_first:
            targs = [t.permute(0, t.ndim - 1, *range(1, t.ndim - 1)) if t.ndim >= 4 else t for t in targs]
        with torch.no_grad():
            got = outputs_of(module(*targs))
        if channels_first:
            got = [g.transpose(0, *range(2, g.ndim), 1) if g.ndim >= 4 else g for g in got]
        assert len(got) == len(expected), f"{len(got)} outputs, Keras has {len(expected)}"
        for g, e in zip(got, expected):
            assert g.shape == e.shape, f"shape {g.shape} != Keras {e.shape}"
            err = rel_l2(g, e)
            worst = max(worst, err)
            assert err <= tol, f"seed {seed}: ‖a−b‖/‖b‖ = {err:.3g} > {tol}\n{module.code}"
    if export:
        xs = random_inputs(model, 0, **input_kw)
        targs = tuple(torch.from_numpy(x) for x in xs)
        if channels_first:
            targs = tuple(t.permute(0, t.ndim - 1, *range(1, t.ndim - 1)) if t.ndim >= 4 else t for t in targs)
        program = torch.export.export(module, targs)
        with torch.no_grad():
            a = outputs_of(program.module()(*targs))
            b = outputs_of(module(*targs))
        for x, y in zip(a, b):
            assert rel_l2(x, y) <= 1e-6
    return module, worst
