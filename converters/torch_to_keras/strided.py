"""Strided views: diagonal and as_strided.

A Keras tensor has no storage to view, so a view is a gather. diagonal is `keras.ops.diagonal`,
which follows numpy's rule (the diagonal becomes the last axis), the same as torch's, and works in
the value's own layout. as_strided reads the input's storage through sizes and strides: on an input
whose storage is its own elements in row-major order (contiguous), every element of the result reads
one flat position known at conversion time, so it is one gather from the flattened tensor.
"""

from __future__ import annotations

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.torch_to_keras.scatter import require_static


@torch_to_keras("aten.diagonal")
def diagonal(call: Call) -> Val:
    """Elements (i, i + offset) of dims dim1 and dim2 (offset < 0: (i - offset, i)), as a new last dim."""
    v = call.val("self")
    offset = int(call.args.get("offset") or 0)
    dim1, dim2 = (int(call.args.get(name) if call.args.get(name) is not None else default) % v.rank
                  for name, default in (("dim1", 0), ("dim2", 1)))
    if dim1 == dim2:
        raise call.unsupported(f"dim1 and dim2 are both {dim1}")
    out = call.ctx.ops.diagonal(v.tensor, offset=offset, axis1=v.axis(dim1), axis2=v.axis(dim2))
    held = v.perm or tuple(range(v.rank))
    remaining = [d for d in held if d not in (dim1, dim2)]  # the other dims, in the order the tensor holds them
    order = sorted(remaining)
    perm = tuple(order.index(d) for d in remaining) + (len(remaining),)
    return live_val(out, call.out_shape, perm)


@torch_to_keras("aten.as_strided")
def as_strided(call: Call) -> Val:
    """out[i0, i1, …] = storage[storage_offset + Σ i_k · stride_k], on an input that is contiguous."""
    v = call.val("self")
    require_static(call, v, "self")
    meta = call.args["self"].meta.get("val")
    contiguous = meta is not None and bool(meta.is_contiguous())
    if not contiguous:
        raise call.unsupported(
            "as_strided of a tensor that is not contiguous in the source (a permuted, expanded or sliced "
            "view): its storage holds elements the converted value does not",
            hint="call .contiguous() before as_strided, or write the view with slicing/unfold")
    base = int(meta.storage_offset())
    size = [int(s) for s in call.args["size"]]
    stride = [int(s) for s in call.args["stride"]]
    offset = call.args.get("storage_offset")
    offset = base if offset is None else int(offset)
    positions = np.full(size, offset - base, dtype=np.int64)
    for k, (n, s) in enumerate(zip(size, stride)):
        along = [1] * len(size)
        along[k] = n
        positions = positions + (np.arange(n, dtype=np.int64) * s).reshape(along)
    numel = int(np.prod(v.shape))
    if positions.size and (positions.min() < 0 or positions.max() >= numel):
        raise call.unsupported(
            f"as_strided(size={size}, stride={stride}, storage_offset={offset}) reads outside the "
            f"{numel} elements of its input (storage the converted model does not have)",
            hint="make the view read only the input's own elements")
    ops = call.ctx.ops
    flat = ops.reshape(call.ctx.torch_layout(v), (numel,))
    return live_val(ops.take(flat, positions.astype(np.int32)), size)
