"""Scatters: scatter, scatter_add, scatter_reduce, index_put, select_scatter, slice_scatter, masked_scatter.

The index-driven ones (scatter*, index_put) are written as one scatter into the flattened input:
each element of the index (or of the indexed block) gets its row-major position in the input, the
part of that position that does not depend on index values computed at conversion time. Reductions
go through `keras.ops.scatter_update(..., reduction=)`, which combines duplicate positions the way
torch does (sum, product, max, min), and torch's `include_self=False` is the input with its touched
positions first reset to the reduction's identity. Plain scatter with duplicate positions is
nondeterministic in torch, so no order is promised there either.

select_scatter, slice_scatter and masked_scatter need no scatter: which source element lands where
is known at conversion time (or, for masked_scatter, is a running count of the mask), so they are a
gather and a `where`, and keep open sizes open in the dims they do not index.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from porttax._frameworks import import_torch
from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, any_symbolic, is_symbolic

_SCATTER_REDUCE = {"add": "sum", "multiply": "prod"}  # torch.scatter's reduce names, as scatter_reduce's


def require_static(call: Call, v: Any, arg: str) -> None:
    """Refuse a value with an open size: a flattened scatter needs every position fixed."""
    if not isinstance(v, Val):
        return
    opened = any_symbolic(v.dims) or (v.live and any(d is None for d in tuple(v.tensor.shape)))
    if opened:
        raise call.unsupported(f"argument {arg!r} has an open size; this op needs every size of it fixed",
                               hint=STATIC_HINT)


def _strides(shape: Sequence[int]) -> np.ndarray:
    """Row-major element strides of `shape`."""
    out = np.ones(len(shape), dtype=np.int64)
    for d in range(len(shape) - 2, -1, -1):
        out[d] = out[d + 1] * shape[d + 1]
    return out


def _as_tensor(call: Call, v: Any) -> Any:
    """A Val or Python scalar as a Keras tensor in the source layout, or a NumPy array."""
    if isinstance(v, Val):
        return call.ctx.torch_layout(v)
    return np.asarray(v)


def _cast(ops: Any, x: Any, dtype: str) -> Any:
    """`x` as `dtype`; a NumPy array stays one where NumPy knows the dtype (bfloat16 it does not)."""
    if isinstance(x, np.ndarray):
        return x.astype(dtype) if _numpy_knows(dtype) else ops.cast(x, dtype)
    return x if str(x.dtype) == dtype else ops.cast(x, dtype)


def _numpy_knows(dtype: str) -> bool:
    try:
        np.dtype(dtype)
    except TypeError:
        return False
    return True


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def _plus(ops: Any, a: Any, b: Any) -> Any:
    """a + b, folded in NumPy when both are arrays."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a + b
    return ops.add(a, b)


def _flat_scatter(call: Call, x: Any, numel: int, positions: Any, updates: Any, reduce: str | None,
                  include_self: bool, dtype: str) -> Any:
    """The flattened input `x` with `updates` scattered to `positions` ((N, 1) int64), reduced."""
    ops = call.ctx.ops
    flat = ops.reshape(x, (numel,))
    updates = _cast(ops, updates, dtype)
    if reduce is None:
        return ops.scatter_update(flat, positions, updates)
    ones = ops.ones_like(updates) if not isinstance(updates, np.ndarray) else np.ones_like(updates)
    count = ops.scatter(positions, ops.cast(ones, "int32"), (numel,))
    touched = ops.greater(count, 0)
    if reduce == "mean":
        total = ops.scatter_update(flat if include_self else ops.zeros_like(flat), positions, updates, reduction="add")
        count = _cast(ops, ops.add(count, 1) if include_self else ops.maximum(count, 1), dtype)
        # torch floor-divides an integer mean
        mean = ops.divide(total, count) if _is_float(dtype) else ops.floor_divide(total, count)
        return mean if include_self else ops.where(touched, mean, flat)
    kind = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}[reduce]
    if kind == "mul":  # Keras multiplies one update at a time in a loop, which slices them with a tensor index
        positions, updates = (ops.convert_to_tensor(t) if isinstance(t, np.ndarray) else t
                              for t in (positions, updates))
    start = flat
    if not include_self:
        start = ops.where(touched, _identity(reduce, dtype), flat)
    out = ops.scatter_update(start, positions, updates, reduction=kind)
    if reduce in ("amax", "amin") and _is_float(dtype):
        # torch's max/min propagate NaN; TensorFlow's scatter max/min skip it
        nan_in = ops.greater(ops.scatter(positions, ops.cast(ops.isnan(updates), "int32"), (numel,)), 0)
        if include_self:
            nan_in = ops.logical_or(nan_in, ops.isnan(flat))
        out = ops.where(nan_in, float("nan"), out)
    return out


def _identity(reduce: str, dtype: str) -> Any:
    """The value a reduction starts from where the input does not take part (include_self=False).

    An integer one is an array of shape (1,), not 0-d: a saved .keras model keeps an array argument's
    dtype, but turns a 0-d one into a Python int."""
    if reduce in ("sum", "prod"):
        return float(reduce == "prod") if _is_float(dtype) else np.array([int(reduce == "prod")], dtype)
    sign = -1 if reduce == "amax" else 1
    if _is_float(dtype):
        return sign * float("inf")
    info = np.iinfo(dtype)
    return np.array([info.min if sign < 0 else info.max], dtype)


def _scatter_along(call: Call, reduce: str | None, include_self: bool = True) -> Val:
    """torch.scatter's rule: out[..., index[p], ...] (index at `dim`, p's own coordinates elsewhere)
    takes src[p] for every position p of index."""
    ops = call.ctx.ops
    v, index_v = call.val("self"), call.val("index")
    for name in ("self", "index", "src"):
        if call.has(name):
            require_static(call, call.val(name), name)
    shape, index_shape = tuple(v.shape), tuple(index_v.shape)
    dim = int(call.args["dim"]) % max(len(shape), 1)
    dtype = call.out_dtype
    positions = _along_positions(ops, _cast(ops, _as_tensor(call, index_v), "int64"), index_shape, shape, dim)
    if call.has("src"):
        src_v = call.val("src")
        src = _as_tensor(call, src_v)
        if tuple(src_v.shape) != index_shape:  # src may be larger than index in every dim: its leading block
            src = src[tuple(slice(0, n) for n in index_shape)] if isinstance(src, np.ndarray) else \
                ops.slice(src, [0] * len(index_shape), list(index_shape))
    else:  # the value overloads
        src = _cast(ops, np.full(index_shape, const_to_numpy(call.args["value"])), dtype)
    updates = np.reshape(src, (-1,)) if isinstance(src, np.ndarray) else ops.reshape(src, (-1,))
    flat = _flat_scatter(call, call.ctx.torch_layout(v), int(np.prod(shape)), positions, updates, reduce,
                         include_self, dtype)
    return live_val(ops.reshape(flat, shape), shape)


def _along_positions(ops: Any, index: Any, index_shape: tuple[int, ...], shape: tuple[int, ...], dim: int) -> Any:
    """(N, 1) row-major positions in a tensor of `shape` of every element of a scatter index: the index
    value along `dim`, the element's own coordinates along the others (that part known now)."""
    strides = _strides(shape)
    grid = np.indices(index_shape, dtype=np.int64)
    base = sum((grid[d] * strides[d] for d in range(len(index_shape)) if d != dim), np.zeros(index_shape, np.int64))
    if isinstance(index, np.ndarray):
        return (index * strides[dim] + base).reshape(-1, 1)
    return ops.reshape(ops.add(ops.multiply(index, strides[dim]), base), (-1, 1))


@torch_to_keras("aten.scatter")
def scatter(call: Call) -> Val:
    """scatter.src / .value (write), .reduce / .value_reduce (reduce='add' or 'multiply', with the input)."""
    reduce = call.args.get("reduce")
    if reduce is not None and reduce not in ("add", "multiply"):
        raise call.unsupported(f"reduce={reduce!r}; torch.scatter takes 'add' or 'multiply'")
    return _scatter_along(call, None if reduce is None else _SCATTER_REDUCE[reduce])


@torch_to_keras("aten.scatter_add")
def scatter_add(call: Call) -> Val:
    return _scatter_along(call, "sum")


@torch_to_keras("aten.scatter_reduce")
def scatter_reduce(call: Call) -> Val:
    """sum, prod, mean, amax, amin; include_self either way."""
    reduce = str(call.args["reduce"])
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise call.unsupported(f"reduce={reduce!r}", hint="use one of sum, prod, mean, amax, amin")
    include_self = call.args.get("include_self")
    return _scatter_along(call, reduce, True if include_self is None else bool(include_self))


# ---- index_put ---------------------------------------------------------------------------------------


def _index_array(v: Val) -> np.ndarray | None:
    """A constant index (bool masks included) as a NumPy array; None for a live one."""
    if isinstance(v, Val) and not v.live:
        return np.asarray(const_to_numpy(v.const))
    return None


def _expand_masks(indices: list[Any]) -> list[Any]:
    """Constant boolean masks as the integer indices of their True elements (what torch does with
    them), one index per masked dim."""
    out: list[Any] = []
    for ix in indices:
        arr = _index_array(ix) if ix is not None else None
        if arr is not None and arr.dtype in (np.bool_, np.uint8):
            out.extend(Val(const=_torch_index(c), shape=c.shape) for c in np.nonzero(arr))
        else:
            out.append(ix)
    return out


def _torch_index(array: np.ndarray) -> Any:
    """A NumPy index array as the torch constant a Val holds."""
    return import_torch().from_numpy(np.ascontiguousarray(array.astype(np.int64)))


def _is_live_mask(ix: Any) -> bool:
    return isinstance(ix, Val) and ix.live and str(ix.tensor.dtype) in ("bool", "uint8")


def _masked_put(call: Call, v: Val, at: int, mask: Val, values: Any, accumulate: bool) -> Val:
    """x[..., mask, ...] = values with a mask computed from the inputs: the number of True elements is
    data-dependent, so only values that are the same for every one of them can be written (a `where`)."""
    ops = call.ctx.ops
    rank, k = v.rank, mask.rank
    value_shape = tuple(values.shape) if isinstance(values, Val) else ()
    result_rank = rank - k + 1  # before + (n,) + after
    padded = (1,) * (result_rank - len(value_shape)) + value_shape
    if len(value_shape) > result_rank or padded[at] != 1:
        raise call.unsupported(
            "values with one entry per True element of a boolean mask computed from the model inputs: "
            "how many there are is only known at run time",
            hint="write torch.where(mask, values, x), or x.masked_scatter(mask, values)")
    vals = _cast(ops, _as_tensor(call, values), call.out_dtype)
    vals = (np.reshape if isinstance(vals, np.ndarray) else ops.reshape)(vals, padded[:at] + (1,) * k + padded[at + 1:])
    m = ops.cast(call.ctx.torch_layout(mask), "bool")
    m = ops.reshape(m, (1,) * at + tuple(mask.shape) + (1,) * (rank - at - k))
    x = call.ctx.torch_layout(v)
    if accumulate:
        out = ops.add(x, ops.where(m, vals, ops.zeros_like(x)))
    else:
        out = ops.where(m, vals, x)
    return live_val(out, v.shape)


def _indexed_block(shape: tuple[int, ...], indices: list[Any]) -> tuple[tuple[int, ...], int, int, dict[int, int]]:
    """Where `x[indices]` puts things: (its shape, the axis its broadcast index block starts at, the
    block's rank, the axis of each whole (None) dim). Index tensors broadcast together; on adjacent
    dims their block takes their place, otherwise it goes first (numpy's rule, which torch follows)."""
    picked = [d for d, ix in enumerate(indices) if ix is not None]
    block = tuple(np.broadcast_shapes(*(tuple(indices[d].shape) for d in picked)))
    sliced = [d for d in range(len(shape)) if d not in picked]
    if picked == list(range(picked[0], picked[-1] + 1)):
        first = picked[0]
        result = shape[:first] + block + shape[picked[-1] + 1:]
        return result, first, len(block), {d: (d if d < first else d - len(picked) + len(block)) for d in sliced}
    result = block + tuple(shape[d] for d in sliced)
    return result, 0, len(block), {d: len(block) + i for i, d in enumerate(sliced)}


def _put_positions(call: Call, shape: tuple[int, ...], indices: list[Any]) -> tuple[Any, tuple[int, ...]]:
    """Row-major positions in the input of every element of `x[indices]` ((N, 1)), and that block's
    shape: the whole dims' part is known now, the index tensors' part is computed where they are live."""
    ops = call.ctx.ops
    result, first, block_rank, axis_of = _indexed_block(shape, indices)
    strides = _strides(shape)
    positions: Any = np.zeros((1,) * len(result), np.int64)
    for d, axis in axis_of.items():
        along = [1] * len(result)
        along[axis] = shape[d]
        positions = positions + (np.arange(shape[d], dtype=np.int64) * strides[d]).reshape(along)
    for d, ix in enumerate(indices):
        if ix is None:
            continue
        placed = (1,) * (first + block_rank - ix.rank) + tuple(ix.shape) + (1,) * (len(result) - first - block_rank)
        arr = _index_array(ix)
        if arr is not None:
            arr = np.where(arr < 0, arr + shape[d], arr).astype(np.int64)  # torch counts negatives from the end
            positions = _plus(ops, positions, arr.reshape(placed) * strides[d])
            continue
        t = ops.cast(call.ctx.torch_layout(ix), "int64")
        t = ops.where(ops.less(t, 0), ops.add(t, shape[d]), t)
        positions = ops.add(positions, ops.multiply(ops.reshape(t, placed), strides[d]))
    if isinstance(positions, np.ndarray):
        return np.broadcast_to(positions, result).reshape(-1, 1), result
    return ops.reshape(ops.broadcast_to(positions, result), (-1, 1)), result


@torch_to_keras("aten.index_put")
def index_put(call: Call) -> Val:
    """x[indices] = values (accumulate: +=): integer indices (negative ones count from the end), None
    for a whole dim, broadcasting values; boolean masks that are constants become the integer indices
    of their True elements, a mask computed from the inputs takes values that are the same for all."""
    ops = call.ctx.ops
    v, values = call.val("self"), call.val("values")
    accumulate = bool(call.args.get("accumulate"))
    indices = list(call.val("indices"))
    indices += [None] * (v.rank - len(indices))
    live_masks = [i for i, ix in enumerate(indices) if _is_live_mask(ix)]
    if live_masks:
        others = [ix for i, ix in enumerate(indices) if ix is not None and i not in live_masks]
        if len(live_masks) > 1 or others:
            raise call.unsupported("a boolean mask computed from the inputs, together with other indices",
                                   hint="index with the mask alone, or with torch.where")
        return _masked_put(call, v, live_masks[0], indices[live_masks[0]], values, accumulate)
    indices = _expand_masks(indices)
    indices += [None] * (v.rank - len(indices))
    if all(ix is None for ix in indices):
        raise call.unsupported("index_put with no index tensor")
    for name, val in (("self", v), ("values", values), *((f"indices[{i}]", ix) for i, ix in enumerate(indices))):
        require_static(call, val, name)
    shape = tuple(v.shape)
    positions, result = _put_positions(call, shape, indices)
    vals = _cast(ops, _as_tensor(call, values), call.out_dtype)
    vals = np.broadcast_to(vals, result).reshape(-1) if isinstance(vals, np.ndarray) else \
        ops.reshape(ops.broadcast_to(vals, result), (-1,))
    numel = int(np.prod(shape))
    flat = ops.reshape(call.ctx.torch_layout(v), (numel,))
    out = ops.scatter_update(flat, positions, vals, reduction="add" if accumulate else None)
    return live_val(ops.reshape(out, shape), shape)


# ---- select/slice/masked scatter ------------------------------------------------------------------------


def _along(mask: np.ndarray, dim: int, rank: int) -> np.ndarray:
    """A 1-D array shaped to broadcast along `dim` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[dim] = mask.shape[0]
    return mask.reshape(shape)


def _fixed_dim(call: Call, v: Val, dim: int) -> int:
    if v.dims is not None and is_symbolic(v.dims[dim]):
        raise call.unsupported(f"writing into dim {dim}, whose size is open", hint=STATIC_HINT)
    return int(v.shape[dim])


@torch_to_keras("aten.select_scatter")
def select_scatter(call: Call) -> Val:
    """out = self with out.select(dim, index) = src: src broadcast along dim, chosen where the position is index."""
    ops = call.ctx.ops
    v = call.val("self")
    dim = int(call.args["dim"]) % v.rank
    n = _fixed_dim(call, v, dim)
    chosen = np.zeros(n, dtype=bool)
    chosen[int(call.args["index"]) % n] = True
    src = _cast(ops, _as_tensor(call, call.val("src")), call.out_dtype)
    src = np.expand_dims(src, dim) if isinstance(src, np.ndarray) else ops.expand_dims(src, dim)
    out = ops.where(_along(chosen, dim, v.rank), src, call.ctx.torch_layout(v))
    return live_val(out, v.shape)


@torch_to_keras("aten.slice_scatter")
def slice_scatter(call: Call) -> Val:
    """out = self with out[start:end:step] (along dim) = src: each written position reads one src
    position known now, so src is gathered to self's size and chosen where the slice runs."""
    ops = call.ctx.ops
    v, src_v = call.val("self"), call.val("src")
    dim = int(call.args.get("dim") or 0) % v.rank
    n = _fixed_dim(call, v, dim)
    step = int(call.args.get("step") or 1)
    start, end, _ = slice(call.args.get("start"), call.args.get("end"), step).indices(n)
    written = np.arange(start, end, step)
    if len(written) != src_v.shape[dim]:
        raise call.unsupported(f"src has {src_v.shape[dim]} entries along dim {dim}, the slice {len(written)}")
    chosen = np.zeros(n, dtype=bool)
    chosen[written] = True
    reads = np.zeros(n, dtype=np.int32)
    reads[written] = np.arange(len(written))
    src = _cast(ops, _as_tensor(call, src_v), call.out_dtype)
    gathered = np.take(src, reads, axis=dim) if isinstance(src, np.ndarray) else ops.take(src, reads, axis=dim)
    out = ops.where(_along(chosen, dim, v.rank), gathered, call.ctx.torch_layout(v))
    return live_val(out, v.shape)


@torch_to_keras("aten.masked_scatter")
def masked_scatter(call: Call) -> Val:
    """Where the mask is True, the next element of source in row-major order: the i-th True element
    (a running count over the flattened mask) reads source's element i."""
    ops = call.ctx.ops
    v, source_v = call.val("self"), call.val("source")
    for name in ("self", "mask", "source"):
        require_static(call, call.val(name), name)
    shape = tuple(v.shape)
    x = call.ctx.torch_layout(v)
    if int(np.prod(source_v.shape)) == 0:  # torch requires as many source elements as True ones: none
        return live_val(x, shape)
    mask = _as_tensor(call, call.val("mask"))
    mask = ops.reshape(ops.broadcast_to(ops.cast(mask, "bool"), shape), (-1,))
    order = ops.maximum(ops.subtract(ops.cumsum(ops.cast(mask, "int32"), axis=0), 1), 0)
    source = _cast(ops, _as_tensor(call, source_v), call.out_dtype)
    read = ops.take(np.reshape(source, (-1,)) if isinstance(source, np.ndarray) else ops.reshape(source, (-1,)), order)
    out = ops.where(mask, read, ops.reshape(x, (-1,)))
    return live_val(ops.reshape(out, shape), shape)
