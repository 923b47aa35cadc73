"""Indexing ops: GatherND, ScatterND, ScatterElements (and the deprecated Scatter), TensorScatter, OneHot, TopK,
NonZero, Compress, Unique and ReverseSequence, each a small torch function with ONNX's conventions (negative
indices count from the end, TopK breaks ties towards the lower index, Unique reports first occurrences).

NonZero, Unique and Compress with a computed condition have data-dependent output sizes: the converted module
computes them, but a static-shaped target (torch.export with fixed sizes, Keras) may refuse them.
"""

from __future__ import annotations

import numpy as np
import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_REDUCTIONS = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _wrap(index: torch.Tensor, size) -> torch.Tensor:
    index = index.to(torch.int64)
    return torch.where(index < 0, index + size, index)


def _linear_index(index: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Row-major flat positions of the index tuples in index[..., :len(dims)] over `dims`."""
    flat = torch.zeros(index.shape[:-1], dtype=torch.int64, device=index.device)
    for j, size in enumerate(dims):
        flat = flat * size + _wrap(index[..., j], size)
    return flat


def gather_nd(data: torch.Tensor, indices: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """ONNX GatherND: the first `batch_dims` axes pair up, the last axis of `indices` addresses the next
    indices.shape[-1] axes of `data`."""
    b, k = batch_dims, indices.shape[-1]
    batch = int(np.prod(data.shape[:b])) if b else 1
    addressed, rest = tuple(data.shape[b:b + k]), tuple(data.shape[b + k:])
    table = data.reshape(batch, int(np.prod(addressed)) if addressed else 1, *rest)
    flat = _linear_index(indices.reshape(batch, -1, k), addressed)
    picked = table[torch.arange(batch, device=data.device)[:, None], flat]
    return picked.reshape(*indices.shape[:-1], *rest)


@onnx_to_torch("GatherND")
def gather_nd_node(call: OnnxCall):
    return call.call(gather_nd, call.value(0), call.tensor(1), int(call.attrs.get("batch_dims", 0)))


def scatter_nd(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, reduction: str) -> torch.Tensor:
    """ONNX ScatterND: updates land at the index tuples of the last axis of `indices` (reduction none
    writes, add/mul/max/min combine with what is there, duplicates included)."""
    k = indices.shape[-1]
    addressed, rest = tuple(data.shape[:k]), tuple(data.shape[k:])
    table = data.reshape(int(np.prod(addressed)), *rest)
    flat = _linear_index(indices, addressed).reshape(-1)
    values = updates.reshape(-1, *rest).to(data.dtype)
    if reduction == "none":
        out = table.index_copy(0, flat, values)
    elif reduction == "add":
        out = table.index_add(0, flat, values)
    else:
        out = table.index_reduce(0, flat, values, _REDUCTIONS[reduction], include_self=True)
    return out.reshape(data.shape)


@onnx_to_torch("ScatterND")
def scatter_nd_node(call: OnnxCall):
    reduction = call.attrs.get("reduction", "none")
    if reduction not in ("none", *_REDUCTIONS):
        raise call.unsupported(f"reduction={reduction!r}")
    return call.call(scatter_nd, call.value(0), call.tensor(1), call.tensor(2), reduction)


def scatter_elements(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, axis: int,
                     reduction: str) -> torch.Tensor:
    """ONNX ScatterElements: torch.scatter / scatter_reduce with ONNX's negative indices."""
    index = _wrap(indices, data.shape[axis])
    if reduction == "none":
        return data.scatter(axis, index, updates)
    return data.scatter_reduce(axis, index, updates, _REDUCTIONS[reduction], include_self=True)


@onnx_to_torch("ScatterElements", "Scatter")
def scatter_elements_node(call: OnnxCall):
    reduction = call.attrs.get("reduction", "none")
    if reduction not in ("none", *_REDUCTIONS):
        raise call.unsupported(f"reduction={reduction!r}")
    return call.call(scatter_elements, call.value(0), call.tensor(1), call.tensor(2), int(call.attrs.get("axis", 0)),
                     reduction)


def tensor_scatter(past: torch.Tensor, update: torch.Tensor, write_indices: torch.Tensor | None, axis: int,
                   circular: bool) -> torch.Tensor:
    """ONNX TensorScatter (a KV-cache write): each batch row's update goes in at its write index along `axis`."""
    batch, length, capacity = past.shape[0], update.shape[axis], past.shape[axis]
    start = write_indices.to(torch.int64) if write_indices is not None else torch.zeros(batch, dtype=torch.int64)
    positions = start.reshape(batch, 1) + torch.arange(length)
    if circular:
        positions = positions % capacity
    shape = [1] * update.dim()
    shape[0], shape[axis] = batch, length
    return past.scatter(axis, positions.reshape(shape).expand(update.shape), update)


@onnx_to_torch("TensorScatter")
def tensor_scatter_node(call: OnnxCall):
    rank = len(call.shape(0) or ())
    if not rank:
        raise call.unsupported("needs a static input rank")
    write = call.tensor(2) if call.has(2) else None
    return call.call(tensor_scatter, call.value(0), call.value(1), write, int(call.attrs.get("axis", -2)) % rank,
                     call.attrs.get("mode", "linear") == "circular")


def one_hot(indices: torch.Tensor, depth: int, values: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX OneHot: values[1] where the (possibly negative, possibly float) index names the class along
    the new axis `axis`, values[0] elsewhere; indices outside [-depth, depth) give an all-off row."""
    index = indices.to(torch.int64)
    index = torch.where(index < 0, index + depth, index)
    axis %= indices.dim() + 1
    shape = [1] * (indices.dim() + 1)
    shape[axis] = depth
    hot = index.unsqueeze(axis) == torch.arange(depth, device=indices.device).reshape(shape)
    return torch.where(hot, values[1], values[0])


@onnx_to_torch("OneHot")
def one_hot_node(call: OnnxCall):
    depth = int(call.const(1).reshape(-1)[0])
    return call.call(one_hot, call.value(0), depth, call.tensor(2), int(call.attrs.get("axis", -1)))


def _sort_key(x: torch.Tensor) -> torch.Tensor:
    """A tensor torch can sort that orders like x: uint16/uint32 widened, uint64 reinterpreted with the sign
    bit flipped (torch's sort has no unsigned kernels above uint8)."""
    if x.dtype in (torch.uint16, torch.uint32):
        return x.to(torch.int64)
    if x.dtype == torch.uint64:
        return torch.bitwise_xor(x.view(torch.int64), -(2**63))
    return x


def top_k(x: torch.Tensor, k: int, axis: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX TopK as a stable sort: among equal values the lower index comes first, as ONNX requires
    (torch.topk leaves that order open)."""
    _, order = torch.sort(_sort_key(x), dim=axis, descending=largest, stable=True)
    indices = order.narrow(axis, 0, k)
    return torch.gather(x, axis, indices), indices


@onnx_to_torch("TopK")
def top_k_node(call: OnnxCall):
    k = int(call.const(1).reshape(-1)[0])
    return call.unpack(call.call(top_k, call.value(0), k, int(call.attrs.get("axis", -1)),
                                 bool(call.attrs.get("largest", 1))), 2)


def non_zero(x: torch.Tensor) -> torch.Tensor:
    """ONNX NonZero: the indices of the non-zero elements, one row per axis (torch gives one row per element)."""
    return torch.nonzero(x.reshape(1) if x.dim() == 0 else x).T


@onnx_to_torch("NonZero")
def non_zero_node(call: OnnxCall):
    return call.call(non_zero, call.value(0))


@onnx_to_torch("Compress")
def compress(call: OnnxCall):
    axis = call.attrs.get("axis")
    x = call.value(0)
    if axis is None:
        x = call.call(torch.reshape, x, (-1,))
        axis = 0
    if call.is_const(1):  # a fixed condition is a fixed selection
        keep = np.nonzero(call.const(1).reshape(-1))[0].astype(np.int64)
        return call.call(torch.index_select, x, int(axis), call.ctx.tensor(keep, call.node.input[1]))
    keep = call.call(torch.Tensor.reshape, call.call(torch.nonzero, call.value(1)), (-1,))
    return call.call(torch.index_select, x, int(axis), keep)


def unique(x: torch.Tensor, axis: int | None, sort: bool) -> tuple[torch.Tensor, ...]:
    """ONNX Unique: (values, first occurrence of each, inverse indices, counts); with sorted=0 the values
    come in the order they first occur."""
    data = x.reshape(-1) if axis is None else x
    dim = 0 if axis is None else axis
    values, inverse, counts = torch.unique(data, sorted=True, return_inverse=True, return_counts=True,
                                           dim=None if axis is None else axis)
    n = data.shape[dim]
    first = torch.full((counts.shape[0],), n, dtype=torch.int64).scatter_reduce(
        0, inverse.reshape(-1), torch.arange(n), "amin", include_self=True)
    if not sort:
        order = torch.argsort(first)
        rank = torch.empty_like(order).scatter(0, order, torch.arange(order.shape[0]))
        values, first, counts, inverse = values.index_select(dim, order), first[order], counts[order], rank[inverse]
    return values, first, inverse.reshape(-1), counts


@onnx_to_torch("Unique")
def unique_node(call: OnnxCall):
    axis = call.attrs.get("axis")
    rank = len(call.shape(0) or ())
    axis = None if axis is None else int(axis) % max(rank, 1)
    return call.unpack(call.call(unique, call.value(0), axis, bool(call.attrs.get("sorted", 1))), 4)


def reverse_sequence(x: torch.Tensor, lengths: torch.Tensor, batch_axis: int, time_axis: int) -> torch.Tensor:
    """ONNX ReverseSequence: along `time_axis`, the first lengths[b] steps of batch row b reversed, the rest kept."""
    steps = torch.arange(x.shape[time_axis], device=x.device)
    n = lengths.to(torch.int64).reshape(-1, 1)
    index = torch.where(steps < n, n - 1 - steps, steps)  # (batch, time)
    if batch_axis > time_axis:
        index = index.T
    shape = [1] * x.dim()
    shape[batch_axis], shape[time_axis] = x.shape[batch_axis], x.shape[time_axis]
    return torch.gather(x, time_axis, index.reshape(shape).expand(x.shape))


@onnx_to_torch("ReverseSequence")
def reverse_sequence_node(call: OnnxCall):
    return call.call(reverse_sequence, call.value(0), call.tensor(1), int(call.attrs.get("batch_axis", 1)),
                     int(call.attrs.get("time_axis", 0)))
