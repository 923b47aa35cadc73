"""Sorting: sort, topk and nonzero.

Both sorts are one `top_k` over the whole axis. TensorFlow's top_k keeps equal elements in index
order, which is torch's `stable=True` order for a descending sort; an ascending sort takes the top_k
of an order-reversed key. The key is not the value itself because torch's order is a total order
(NaN above +inf, -0.0 equal to +0.0) and top_k compares NaN arbitrarily, and because negating a value
to reverse the order overflows the lowest integer: floats are keyed by their bits as integers, and
integers are reversed with `~` (exact for every value). The values are then gathered from the input
by the indices, so a NaN's payload or a zero's sign come out as torch gives them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, is_symbolic

_FLOAT_BITS = {"float16": ("float32", "int32"), "bfloat16": ("float32", "int32"), "float32": ("float32", "int32"),
               "float64": ("float64", "int64")}


def _order_key(ops: Any, x: Any, dtype: str) -> Any:
    """An integer tensor whose order along any axis is torch's sort order of `x`.

    A float's bits, read as a signed integer, order non-negative floats correctly and negative ones
    backwards; flipping the magnitude bits of the negative ones makes the whole line ascend. Before
    that every NaN becomes the one positive quiet NaN (above +inf, as torch sorts it) and -0.0 becomes
    +0.0 (torch holds them equal, so they keep their index order)."""
    if dtype == "bool":
        return ops.cast(x, "int8")
    if dtype not in _FLOAT_BITS:
        return x
    wide, bits_dtype = _FLOAT_BITS[dtype]
    x = ops.cast(x, wide) if dtype != wide else x
    x = ops.where(ops.isnan(x), float("nan"), ops.where(ops.equal(x, 0.0), 0.0, x))
    bits = ops.view(x, bits_dtype)
    # shape (1,), not 0-d: a saved .keras model keeps an array argument's dtype, a 0-d one becomes a Python int
    magnitude = np.array([np.iinfo(bits_dtype).max], dtype=bits_dtype)
    return ops.where(ops.less(bits, 0), ops.bitwise_xor(bits, magnitude), bits)


def _top(call: Call, v: Val, dim: int, k: int, largest: bool) -> tuple[Any, Any]:
    """The k largest (or smallest) entries along torch dim `dim` (>= 0), in order, ties in index order:
    (values, int64 indices), both in the value's own layout (the sort axis is mapped through it)."""
    ops = call.ctx.ops
    x = v.tensor
    axis = v.axis(dim)
    if (v.dims is not None and is_symbolic(v.dims[dim])) or x.shape[axis] is None:
        raise call.unsupported(f"sorting along dim {dim}, whose size is open: top_k needs it fixed", hint=STATIC_HINT)
    key = _order_key(ops, x, str(x.dtype))
    if not largest:
        key = ops.bitwise_invert(key)
    last = len(x.shape) - 1
    if axis != last:
        key, x = ops.moveaxis(key, axis, last), ops.moveaxis(x, axis, last)
    _, indices = ops.top_k(key, k, sorted=True)
    values = ops.take_along_axis(x, indices, axis=last)
    indices = ops.cast(indices, "int64")
    if axis != last:
        values, indices = ops.moveaxis(values, last, axis), ops.moveaxis(indices, last, axis)
    return values, indices


def _sorted(call: Call, k: int | None, largest: bool) -> list[Val]:
    """(values, indices) of sort (k None: the whole dim) or topk."""
    v = call.val("self")
    if v.rank == 0:  # a 0-d tensor sorts to itself, at index 0
        x = call.ctx.torch_layout(v)
        return [live_val(x, ()), live_val(call.ctx.ops.zeros_like(x, dtype="int64"), ())]
    dim = int(call.args.get("dim") if call.args.get("dim") is not None else -1) % v.rank
    values, indices = _top(call, v, dim, v.shape[dim] if k is None else k, largest)
    shape = list(v.shape)
    shape[dim] = shape[dim] if k is None else k
    return [live_val(values, shape, v.perm), live_val(indices, shape, v.perm)]


@torch_to_keras("aten.sort")
def sort(call: Call) -> list[Val]:
    """sort.default and sort.stable, any dim, both directions. The result is always the stable order:
    what torch gives with stable=True, and one of the orders it may give without."""
    return _sorted(call, None, largest=bool(call.args.get("descending")))


@torch_to_keras("aten.topk")
def topk(call: Call) -> list[Val]:
    """The k largest or smallest along a dim, in order. With sorted=False torch promises no order, so
    the sorted one is as good; ties come out in index order (torch's CPU kernel may pick others)."""
    largest = call.args.get("largest")
    return _sorted(call, int(call.args["k"]), largest=True if largest is None else bool(largest))


@torch_to_keras("aten.nonzero")
def nonzero(call: Call) -> Val:
    """The (n, rank) int64 coordinates of the non-zero elements in torch's element order. n depends on
    the data: the Keras tensor has that dim open, which a TensorFlow functional model carries (JAX,
    which traces fixed shapes, cannot run it)."""
    v = call.val("self")
    if v.rank == 0:
        raise call.unsupported("nonzero of a 0-d tensor (an (n, 0) result)", hint="index a 1-element view instead")
    ops = call.ctx.ops
    coords = ops.stack(ops.nonzero(call.ctx.torch_layout(v)), axis=1)
    return Val(tensor=ops.cast(coords, "int64"), shape=(0, v.rank))
