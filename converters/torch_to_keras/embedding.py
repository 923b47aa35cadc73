"""Embedding lookups become Keras Embedding layers; the table needs no layout change.

An embedding bag (nn.EmbeddingBag) is a lookup followed by a reduction per bag: bag b holds the
indices from offsets[b] up to the next offset. Here that is one Embedding lookup and one segment
reduction (sum, mean or max) keyed by each index's bag, so no (bags x indices) mask is built.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, is_symbolic
from porttax.converters.transforms import Identity


def _lookup(call: Call, w: Val, ids: Any) -> Any:
    """Rows `ids` of table `w`: a Keras Embedding layer holding a constant table, a gather of a computed one."""
    if w.live:
        return call.ctx.ops.take(call.ctx.torch_layout(w), ids, axis=0)
    num, dim = (int(s) for s in w.shape)
    layer = call.ctx.keras.layers.Embedding(num, dim, name=call.layer_name(), embeddings_initializer="zeros")
    return call.ctx.apply_layer(layer, ids, {"embeddings": (w, Identity())})


@torch_to_keras("aten.embedding")
def embedding(call: Call) -> Val:
    return live_val(_lookup(call, call.val("weight"), call.tensor("indices")), call.out_shape)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def _bag_of_each_index(call: Call, n: int) -> tuple[Any, int]:
    """(bag number of each of the n indices, number of bags), from the offsets.

    Indices past the last offset (include_last_offset=True with offsets[-1] < n) fall in the last bag,
    as torch's own offset2bag result puts them; torch's kernels disagree on them, so constant
    offsets that leave any are refused."""
    ops = call.ctx.ops
    offsets = call.val("offsets")
    last = bool(call.args.get("include_last_offset"))
    if offsets.rank != 1:
        raise call.unsupported(f"offsets of shape {tuple(offsets.shape)} (they must be 1-D)")
    if offsets.dims is not None and is_symbolic(offsets.dims[0]):
        raise call.unsupported("an open number of bags (offsets of an open length)", hint=STATIC_HINT)
    bags = offsets.shape[0] - (1 if last else 0)
    if not offsets.live and not is_symbolic(n):
        starts = np.asarray(const_to_numpy(offsets.const)).astype(np.int64)
        if starts.size and (starts[0] != 0 or (last and starts[-1] != n)):
            raise call.unsupported(f"offsets {starts.tolist()} for {n} indices: the first must be 0 and, with "
                                   "include_last_offset, the last the number of indices")
        bag = np.searchsorted(starts[:bags], np.arange(n), side="right") - 1
        return bag.astype(np.int32), bags
    # computed offsets: an index's bag is the number of bag starts at or before it, minus one
    starts = ops.cast(call.ctx.torch_layout(offsets), "int32")[:bags, ...]  # a tuple key: Keras takes no bare slice
    ids = call.tensor("indices")
    position = ops.subtract(ops.cumsum(ops.ones_like(ids, dtype="int32"), axis=0), 1)
    started = ops.less_equal(ops.expand_dims(starts, 0), ops.expand_dims(position, 1))
    return ops.subtract(ops.sum(ops.cast(started, "int32"), axis=1), 1), bags


@torch_to_keras("aten._embedding_bag", "aten.embedding_bag")
def embedding_bag(call: Call) -> list:
    """nn.EmbeddingBag's forward: modes sum (with per_sample_weights), mean and max, padding_idx rows
    left out of every bag (and of a mean's count); an empty bag gives zeros. Only the first result is
    computed: the other three (offset2bag, bag_size, max_indices) serve torch's backward pass."""
    ops = call.ctx.ops
    for index, what in ((1, "offset2bag"), (2, "bag_size"), (3, "max_indices")):
        if any(u.target is operator.getitem and u.args[1] == index for u in call.node.users):
            raise call.unsupported(f"the model reads its result {index} ({what}), which porttax does not compute",
                                   hint="use only the pooled embeddings, or open an issue with the model")
    mode = _BAG_MODES.get(int(call.args.get("mode") or 0))
    if mode is None:
        raise call.unsupported(f"embedding_bag mode {call.args['mode']} (sum=0, mean=1 and max=2 convert)")
    weighted = call.has("per_sample_weights")
    if weighted and mode != "sum":
        raise call.unsupported(f"per_sample_weights with mode {mode!r} (torch allows them only for sum)")
    w, ids_val = call.val("weight"), call.val("indices")
    if ids_val.rank != 1:
        raise call.unsupported(f"indices of shape {tuple(ids_val.shape)} (aten.embedding_bag takes them flat, "
                               "with offsets)")
    n = ids_val.dims[0] if ids_val.dims is not None else ids_val.shape[0]
    bag, bags = _bag_of_each_index(call, n)
    ids = call.tensor("indices")
    rows = _lookup(call, w, ids)
    if weighted:
        rows = ops.multiply(rows, ops.expand_dims(call.tensor("per_sample_weights"), -1))
    padding = call.args.get("padding_idx")
    keep = ops.not_equal(ids, int(padding)) if padding is not None and int(padding) >= 0 else None
    if mode == "max":
        out = ops.segment_max(rows if keep is None else ops.where(ops.expand_dims(keep, -1), rows, -np.inf),
                              bag, num_segments=bags)
        filled = _count(call, keep, ids, bag, bags)
        return [live_val(ops.where(ops.greater(filled, 0), out, 0.0), (bags, int(w.shape[1]))), None, None, None]
    if keep is not None:
        rows = ops.where(ops.expand_dims(keep, -1), rows, 0.0)
    out = ops.segment_sum(rows, bag, num_segments=bags)
    if mode == "mean":
        out = ops.divide(out, ops.maximum(_count(call, keep, ids, bag, bags), 1.0))
    return [live_val(out, (bags, int(w.shape[1]))), None, None, None]


def _count(call: Call, keep: Any, ids: Any, bag: Any, bags: int) -> Any:
    """Indices counted in each bag (padding_idx ones not), as a (bags, 1) float column."""
    ops = call.ctx.ops
    ones = ops.ones_like(ids, dtype="float32") if keep is None else ops.cast(keep, "float32")
    return ops.expand_dims(ops.segment_sum(ones, bag, num_segments=bags), -1)
