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
from porttax.parity.profiles import NOISE_FACTOR, Profile, noise_verdict
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
    reference: Runner | None = None,
    noise_factor: float = NOISE_FACTOR,
) -> Localization:
    """Per-layer drift of `converted` against `source` on one case, in the source's execution order.

    With a float64 `reference` (the source widened), each layer is judged against its own noise: the
    first diverging layer is the first whose converted output is more than `noise_factor` × as far
    from float64 as the source's own output at that layer, so rounding that a deep net accumulates
    in float32 is not blamed on whichever layer first crosses a fixed number.
    """
    layer_map = getattr(converted, "layer_map", None)
    matched_by = "layer map"
    want = None
    if layer_map is None:
        layer_map, want, why = _match_by_names(source, converted, inputs)
        if layer_map is None:
            return Localization(label, [], note=f"{converted.describe()} carries no porttax layer map (was it written "
                                f"by porttax?) and {why}, so its layers cannot be matched to the source's",
                                matched_by=None)
        matched_by = "layer names"
        if reference is not None and reference.framework == "keras":
            reference.layer_map = layer_map  # a widened Keras source taps the same rebuilt map
    try:
        got = converted.capture(inputs)
        if want is None and got is not None:
            want = source.capture(inputs)
    except Exception as exc:  # a framework failing to re-run a model must not hide the parity verdict
        return Localization(label, [], note=f"could not capture layer outputs: {type(exc).__name__}: {exc}")
    if got is None or want is None:
        side = converted if got is None else source
        return Localization(label, [], note=f"{side.describe()} cannot expose its layer outputs")
    wide: Mapping[str, np.ndarray] = {}
    rule_note = "fixed tolerance per layer (no float64 reference)"
    if reference is not None:
        try:
            wide = reference.capture(inputs) or {}
            if wide:
                rule_note = f"each layer against its own float32 noise (float64 reference, factor {noise_factor:g})"
        except Exception as exc:  # the widened graph failing to re-run leaves the fixed rule, said so
            rule_note = f"fixed tolerance per layer (the float64 reference could not capture layers: {type(exc).__name__})"
    layers: list[LayerResult] = []
    unmatched: list[str] = []
    for tap in sorted(layer_map.taps, key=lambda t: t.order):
        name, output = _split(tap.key)
        if tap.key not in want or tap.key not in got:
            unmatched.append(tap.key)
            continue
        m = compare(got[tap.key], want[tap.key])
        src_ref = conv_ref = None
        if tap.key in wide and np.shape(wide[tap.key]) == np.shape(want[tap.key]):
            src_ref, conv_ref = compare(want[tap.key], wide[tap.key]), compare(got[tap.key], wide[tap.key])
        ok, why, noise = noise_verdict(m, profile, src_ref, conv_ref, atol=atol, rtol=rtol, factor=noise_factor)
        target = tap.operation if tap.kind == "tensor" else "(constant folded at conversion)"
        layers.append(LayerResult(name, str(target), tap.order, m, ok, why, output, noise))
    unmatched += sorted(set(want) - {t.key for t in layer_map.taps})
    first = next((lay for lay in layers if not lay.passed), None)
    if first is not None:
        note = f"first diverging layer: {first.name} ({first.reason})"
    elif layers:
        note = f"all {len(layers)} matched layers are within tolerance"
    else:
        note = "no layer could be matched between the two models"
    if matched_by == "layer names":
        note += (f"; matched by layer names, weight sizes and shapes ({len(layer_map.taps)} layers): the file "
                 "carries no porttax layer map (re-saved by Keras?)")
    return Localization(label, layers, first.name if first else None, unmatched, f"{note}; judged by {rule_note}",
                        matched_by=matched_by)


def _match_by_names(source: Runner, converted: Runner, inputs: Mapping[str, np.ndarray]) -> tuple:
    """(layer map rebuilt from names or None, the source's captured values or None, why not) when the
    converted model lost its map: a Keras model from PyTorch, or a torch program from Keras, re-saved.
    The rebuilt map goes on the Keras side's runner (its capture reads taps from it) and the converted one."""
    from porttax.parity.rematch import layer_map_from_names, module_sizes

    sides = {source.framework: source, converted.framework: converted}
    keras_side, torch_side = sides.get("keras"), sides.get("torch")
    if keras_side is None or torch_side is None or getattr(keras_side, "model", None) is None:
        return None, None, "porttax matches layers by name only between a Keras model and a PyTorch one"
    try:
        torch_values = torch_side.capture(inputs)
    except Exception as exc:
        return None, None, f"the PyTorch side's layer outputs could not be captured ({type(exc).__name__})"
    if not torch_values:
        return None, None, "the PyTorch side exposes no layer outputs"
    module = getattr(torch_side, "module", None)
    rebuilt = layer_map_from_names(keras_side.model, torch_values, module_sizes(module) if module is not None else None)
    if not rebuilt.taps:
        return None, None, "none of its layer names follows porttax's naming of the other side's modules"
    keras_side.layer_map = rebuilt
    converted.layer_map = rebuilt
    if getattr(keras_side, "_tap_model", None) is not None:
        keras_side._tap_model = None  # built for an earlier map
    return rebuilt, (torch_values if torch_side is source else None), ""
