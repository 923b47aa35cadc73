"""Planted faults: the porting mistakes a converter really makes, put into a converted Keras model on
purpose, so a parity gate can be shown to catch them (mutation testing for the gate itself).

Each kind is a mistake seen in the field: a weight scaled by a stray factor, a normalisation layer
left at Keras's default epsilon (1e-3, where torch uses 1e-5), a bias dropped, a square weight
transposed (in/out channels swapped, which shapes cannot catch). `plant()` changes one layer in
place and returns how to undo it; bench/parity_noise.py measures the verdict against them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("scale", "epsilon", "bias", "transpose")


@dataclass
class Planted:
    kind: str
    layer: str  # the Keras layer changed
    detail: str
    undo: Callable[[], None]


def candidates(model: Any, kind: str) -> list[Any]:
    """The layers of `model` a fault of `kind` can be planted in, in model order."""
    out = []
    for layer in _walk(model):
        names = {w.path.rsplit("/", 1)[-1]: w for w in layer.weights}
        if kind == "scale" and ("kernel" in names or "embeddings" in names):
            out.append(layer)
        elif kind == "epsilon" and hasattr(layer, "epsilon") and isinstance(getattr(layer, "epsilon"), float):
            out.append(layer)
        elif kind == "bias" and any(n in names and _matters(names[n]) for n in ("bias", "beta")):
            out.append(layer)  # a bias that is (nearly) zero already cannot be dropped
        elif kind == "transpose" and "kernel" in names:
            shape = tuple(names["kernel"].shape)
            if len(shape) >= 2 and shape[-1] == shape[-2] and shape[-1] > 1:
                out.append(layer)
    return out


def plant(model: Any, kind: str, rng: np.random.Generator, *, scale: float = 1.01,
          epsilon: float = 1e-3) -> Planted | None:
    """Plant one fault of `kind` in a layer chosen by `rng`; None when the model has no such layer."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; valid: {', '.join(KINDS)}")
    layers = candidates(model, kind)
    if not layers:
        return None
    layer = layers[int(rng.integers(len(layers)))]
    if kind == "epsilon":
        before = layer.epsilon
        after = epsilon if not np.isclose(before, epsilon) else before * 100
        layer.epsilon = after

        def undo_eps() -> None:
            layer.epsilon = before

        return Planted(kind, layer.name, f"epsilon {before:g} -> {after:g}", undo_eps)
    weights = {w.path.rsplit("/", 1)[-1]: w for w in layer.weights}
    wanted = ("kernel", "embeddings") if kind in ("scale", "transpose") else ("bias", "beta")
    var = next(weights[n] for n in wanted if n in weights and (kind != "bias" or _matters(weights[n])))
    before = np.array(var.numpy())
    if kind == "scale":
        after, detail = before * scale, f"{var.path} x {scale:g}"
    elif kind == "bias":
        after, detail = np.zeros_like(before), f"{var.path} set to zero"
    else:
        after, detail = np.swapaxes(before, -1, -2).copy(), f"{var.path} transposed {tuple(before.shape)}"
    var.assign(after)
    return Planted(kind, layer.name, detail, lambda: var.assign(before))


def _matters(variable: Any) -> bool:
    """A bias whose loss changes anything: not all within 1e-4 of zero (initialisers use 1e-6)."""
    return bool(np.max(np.abs(np.asarray(variable.numpy())), initial=0.0) > 1e-4)


def _walk(model: Any) -> list[Any]:
    """Every leaf layer, nested models opened."""
    out = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            out.extend(_walk(layer))
        elif layer.weights or hasattr(layer, "epsilon"):
            out.append(layer)
    return out
