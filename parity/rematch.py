"""Matching layers without the layer map: for a converted Keras model that lost porttax's map.

A user loads porttax's `.keras`, fine-tunes or edits it, and saves it with plain `model.save()`; Keras
writes its own zip and the `porttax/layer_map.json` entry is gone. What survives is enough for most
layers: porttax names every Keras layer after the source module it came from
(`porttax.layer_map.keras_layer_name`), the layer keeps its weights' sizes, and its output's shape is
the module's output in the source layout or in channels-last. A source module output is matched with
the same-named Keras layer when all three agree. The reverse road is the same match seen from the other
side: a `.pt2` porttax wrote from a Keras model and the user saved again with `torch.export.save` keeps
module paths named after the Keras layers, and loses only the map. Anything ambiguous (a module called more than once,
a layer whose weights or shape disagree) is left unmatched rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from porttax.layer_map import LayerMap, Tap, keras_layer_name

_SPATIAL = re.compile(r"Conv|Pool|BatchNorm|UpSampling|ZeroPadding|Cropping")


def layer_map_from_names(model: Any, source_values: Mapping[str, np.ndarray],
                         source_sizes: Mapping[str, int] | None = None) -> LayerMap:
    """A layer map rebuilt from names, weight sizes and shapes; `source_values` is the source's
    captured module outputs (tap key → array, in execution order), `source_sizes` the element count
    of each module's parameters and buffers when known."""
    ops = {op.name: op for op in getattr(model, "operations", [])}
    # the Keras → torch road names modules after layers: dashes back to dots for porttax's own names,
    # anything else made an identifier (porttax.converters.keras_to_torch.context.module_path)
    by_path = {_identifier(name): op for name, op in ops.items()}
    taps = []
    for order, (key, value) in enumerate(source_values.items()):
        path, _, index = key.rpartition("#")
        if not path or not index.isdigit() or "@" in path:
            continue  # a shared module's later calls: which Keras node carries which is not recorded
        op = ops.get(keras_layer_name(path)) or by_path.get(path)
        nodes = getattr(op, "_inbound_nodes", None) if op is not None else None
        if not nodes or len(nodes) != 1 or int(index) >= len(nodes[0].output_tensors):
            continue
        if source_sizes is not None and source_sizes.get(path, 0) != _weight_count(op):
            continue
        tensor = nodes[0].output_tensors[int(index)]
        perm = _layout(tuple(np.shape(value)), tuple(tensor.shape), _channels_last_upstream(op))
        if perm is False:
            continue
        taps.append(Tap(key, path, type(op).__name__, order, operation=op.name, tensor_index=int(index),
                        perm=list(perm) if perm else None, shape=list(np.shape(value))))
    return LayerMap(taps)


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def module_sizes(module: Any) -> dict[str, int]:
    """{module path: elements in its floating parameters and buffers, its children's included}."""
    sizes: dict[str, int] = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if not t.is_floating_point():
            continue  # BatchNorm's num_batches_tracked has no Keras counterpart
        parts = name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            sizes[prefix] = sizes.get(prefix, 0) + int(t.numel())
    return sizes


def _channels_last_upstream(op: Any, budget: int = 32) -> bool:
    """Whether `op` computes in channels-last: it is, or is fed (through layers that keep the layout,
    such as activations and adds) by, a convolution, pooling or BatchNorm layer. The model's inputs
    take the source's layout, so reaching one first means the source layout."""
    seen, frontier = set(), [op]
    while frontier and budget > 0:
        current = frontier.pop(0)
        budget -= 1
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _SPATIAL.search(type(current).__name__):
            return True
        nodes = getattr(current, "_inbound_nodes", None) or []
        for t in (nodes[0].input_tensors if nodes else []):
            history = getattr(t, "_keras_history", None)
            if history is not None and history[0] is not None:
                frontier.append(history[0])
    return False


def _weight_count(op: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in getattr(op, "weights", [])))


def _layout(source: tuple[int, ...], keras: tuple[Any, ...], spatial: bool) -> tuple[int, ...] | None | bool:
    """None when the Keras tensor holds the source layout, the channels-last permutation when it holds
    that, False when neither shape fits (unknown dims match anything). When both fit (C == H == W), the
    graph decides: `spatial` is whether the layer sits in porttax's channels-last region."""

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == len(keras) and all(k is None or int(k) == s for s, k in zip(shape, keras))

    last = (0, *range(2, len(source)), 1) if len(source) >= 3 else None
    as_is, moved = fits(source), last is not None and fits(tuple(source[p] for p in last))
    if as_is and moved:
        return last if spatial else None
    if as_is:
        return None
    return last if moved else False
