"""Localisation: run both models once more, keep every matched layer's output, and name the first to drift.

Layers are matched by tap key (see `porttax.parity.taps`): the converter records, for every source
module output, which tensor of the converted model carries it and in which layout. Drift is
accumulated drift: a layer's output is compared as the models compute it, inputs included, so the
first layer over tolerance in execution order is where the port first goes wrong; every later layer
inherits that drift, which the per-layer plot makes plain.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from porttax.parity.metrics import compare
from porttax.parity.profiles import Profile, verdict
from porttax.parity.report import LayerResult, Localization
from porttax.parity.runners import Runner


def _split(key: str) -> tuple[str, int]:
    name, _, index = key.rpartition("#")
    return (name, int(index)) if name and index.isdigit() else (key, 0)


def localize(
    source: Runner,
    converted: Runner,
    inputs: Mapping[str, np.ndarray],
    profile: Profile,
    *,
    label: str = "",
    atol: float | None = None,
    rtol: float | None = None,
) -> Localization:
    """Per-layer drift of `converted` against `source` on one case, in the source's execution order."""
    layer_map = getattr(converted, "layer_map", None)
    if layer_map is None:
        return Localization(label, [], note=f"{converted.describe()} carries no porttax layer map (was it written by "
                            "porttax?), so its layers cannot be matched to the source's")
    try:
        got = converted.capture(inputs)
        want = source.capture(inputs) if got is not None else None
    except Exception as exc:  # a framework failing to re-run a model must not hide the parity verdict
        return Localization(label, [], note=f"could not capture layer outputs: {type(exc).__name__}: {exc}")
    if got is None or want is None:
        side = converted if got is None else source
        return Localization(label, [], note=f"{side.describe()} cannot expose its layer outputs")
    layers: list[LayerResult] = []
    unmatched: list[str] = []
    for tap in sorted(layer_map.taps, key=lambda t: t.order):
        name, output = _split(tap.key)
        if tap.key not in want or tap.key not in got:
            unmatched.append(tap.key)
            continue
        m = compare(got[tap.key], want[tap.key])
        ok, why = verdict(m, profile, atol=atol, rtol=rtol)
        target = tap.operation if tap.kind == "tensor" else "(constant folded at conversion)"
        layers.append(LayerResult(name, str(target), tap.order, m, ok, why, output))
    unmatched += sorted(set(want) - {t.key for t in layer_map.taps})
    first = next((lay for lay in layers if not lay.passed), None)
    if first is not None:
        note = f"first diverging layer: {first.name} ({first.reason})"
    elif layers:
        note = f"all {len(layers)} matched layers are within tolerance"
    else:
        note = "no layer could be matched between the two models"
    return Localization(label, layers, first.name if first else None, unmatched, note)
