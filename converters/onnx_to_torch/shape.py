"""Shape and data-movement ops. Shapes, axes and indices must be constants at conversion time (after
folding they almost always are); a value computed from the model's inputs is refused by name."""

from __future__ import annotations

import numpy as np
import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _ints(call: OnnxCall, i: int) -> list[int]:
    return [int(v) for v in call.const(i).reshape(-1)]


@onnx_to_torch("Reshape")
def reshape(call: OnnxCall):
    target = _ints(call, 1)
    shape = call.shape(0)
    if not call.attrs.get("allowzero", 0) and 0 in target:
        if shape is None:
            raise call.unsupported("0 in the target shape needs a static input shape")
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    return call.call(torch.reshape, call.value(0), tuple(target))


@onnx_to_torch("Transpose")
def transpose(call: OnnxCall):
    perm = call.attrs.get("perm")
    if perm is None:
        shape = call.shape(0)
        perm = list(reversed(range(len(shape))))
    return call.call(torch.permute, call.value(0), tuple(int(p) for p in perm))


@onnx_to_torch("Flatten")
def flatten(call: OnnxCall):
    shape = call.shape(0)
    axis = int(call.attrs.get("axis", 1))
    if shape is None:  # shape inference could not follow the graph here (pads computed by the graph)
        if axis == 0:
            return call.call(torch.reshape, call.value(0), (1, -1))
        if axis == 1:  # (d0, d1 × d2 × ...): torch.flatten from dim 1, for any rank ≥ 2
            return call.call(torch.flatten, call.value(0), 1)
        raise call.unsupported(f"Flatten with axis={axis} of an input whose shape ONNX shape inference does not know")
    axis %= max(len(shape), 1)
    lead = int(np.prod(shape[:axis])) if axis else 1
    return call.call(torch.reshape, call.value(0), (lead, -1))


@onnx_to_torch("Squeeze", since=13)
def squeeze(call: OnnxCall):
    if call.has(1):
        return call.call(torch.squeeze, call.value(0), tuple(_ints(call, 1)))
    return call.call(torch.squeeze, call.value(0))


@onnx_to_torch("Unsqueeze", since=13)
def unsqueeze(call: OnnxCall):
    out_rank = len(call.shape(0)) + len(_ints(call, 1))
    x = call.value(0)
    for axis in sorted(a % out_rank for a in _ints(call, 1)):
        x = call.call(torch.unsqueeze, x, axis)
    return x


@onnx_to_torch("Concat")
def concat(call: OnnxCall):
    parts = []
    for i in range(len(call.inputs)):
        if call.is_const(i) and call.const(i).size == 0:
            continue
        v = call.value(i)
        parts.append(v if not isinstance(v, (int, float)) else call.ctx.tensor(np.asarray(call.const(i)).reshape(1)))
    return call.call(torch.cat, parts, int(call.attrs["axis"]))


@onnx_to_torch("Split", since=13)
def split(call: OnnxCall):
    axis = int(call.attrs.get("axis", 0))
    shape = call.shape(0)
    n = len(call.node.output)
    if call.has(1):
        sizes = _ints(call, 1)
    else:
        total = shape[axis]
        chunk = -(-total // int(call.attrs.get("num_outputs", n)))
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    node = call.call(torch.split, call.value(0), sizes, axis)
    import operator

    return [call.call(operator.getitem, node, i) for i in range(n)]


@onnx_to_torch("Slice", since=13)
def slice_(call: OnnxCall):
    starts, ends = _ints(call, 1), _ints(call, 2)
    shape = call.shape(0)
    axes = _ints(call, 3) if call.has(3) else list(range(len(starts)))
    steps = _ints(call, 4) if call.has(4) else [1] * len(starts)
    x = call.value(0)
    rank = len(shape) if shape else max(axes) + 1
    index: list = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= rank
        size = shape[axis] if shape else None
        if step < 0:
            if size is None:
                raise call.unsupported("negative steps need a static shape")
            indices = np.arange(size)[slice(start, end if end > -(2**62) else None, step)]
            x = call.call(torch.index_select, x, axis, call.ctx.tensor(indices.astype(np.int64)))
            continue
        if size is not None:
            start, end = max(min(start, size), -size), max(min(end, size), -size - 1)
        index[axis] = slice(start, end, step)
    if any(s != slice(None) for s in index):
        import operator

        x = call.call(operator.getitem, x, tuple(index))
    return x


@onnx_to_torch("Gather")
def gather(call: OnnxCall):
    axis = int(call.attrs.get("axis", 0))
    if call.is_const(1):
        indices = call.const(1).astype(np.int64)
        shape = call.shape(0)
        if shape is not None:
            indices = np.where(indices < 0, indices + shape[axis], indices)
        if indices.ndim == 0:
            return call.call(torch.select, call.value(0), axis, int(indices))
        flat = call.call(torch.index_select, call.value(0), axis, call.ctx.tensor(indices.reshape(-1), call.node.input[1]))
        if indices.ndim == 1:
            return flat
        out_shape = tuple(shape[:axis]) + indices.shape + tuple(shape[axis + 1:])
        return call.call(torch.reshape, flat, out_shape)
    if axis == 0 and call.is_const(0) and call.const(0).ndim == 2:
        # a constant table looked up by computed indices: an embedding
        table = call.const(0)
        from torch import nn

        from porttax.converters.onnx_to_torch.context import module_path

        layer = nn.Embedding(*table.shape)
        layer.weight = nn.Parameter(torch.from_numpy(np.array(table, copy=True)), requires_grad=False)
        source = call.ctx.origin.get(call.node.input[0], call.node.input[0])
        from porttax.converters.onnx_to_torch.layers import scope_path

        name = call.ctx.add_module(module_path(source) or scope_path(call.node) or "embedding", layer)
        return call.ctx.graph.call_module(name, (call.value(1),))
    shape = call.shape(0)
    idx = call.value(1)
    if axis == 0:
        import operator

        return call.call(operator.getitem, call.value(0), idx)
    raise call.unsupported(f"computed indices along axis {axis}")


@onnx_to_torch("Expand")
def expand(call: OnnxCall):
    target = _ints(call, 1)
    shape = call.shape(0) or ()
    out = list(np.broadcast_shapes(tuple(shape), tuple(target)))
    x = call.value(0)
    if len(shape) < len(out):
        x = call.call(torch.reshape, x, (1,) * (len(out) - len(shape)) + tuple(shape))
    return call.call(torch.Tensor.expand, x, tuple(out))


@onnx_to_torch("Tile")
def tile(call: OnnxCall):
    return call.call(torch.tile, call.value(0), tuple(_ints(call, 1)))


@onnx_to_torch("Cast")
def cast(call: OnnxCall):
    dtype = _DTYPES.get(int(call.attrs["to"]))
    if dtype is None:
        raise call.unsupported(f"cast to ONNX type {call.attrs['to']}")
    return call.call(torch.Tensor.to, call.value(0), dtype)


@onnx_to_torch("CastLike")
def cast_like(call: OnnxCall):
    dtype_name = call.ctx.shapes.get(call.node.input[1], (None, None))[1]
    if dtype_name is None:
        raise call.unsupported("the target type is unknown")
    return call.call(torch.Tensor.to, call.value(0), getattr(torch, dtype_name))


@onnx_to_torch("Trilu")
def trilu(call: OnnxCall):
    k = int(call.const(1)) if call.has(1) else 0
    fn = torch.triu if call.attrs.get("upper", 1) else torch.tril
    return call.call(fn, call.value(0), k)


@onnx_to_torch("Pad", since=13)
def pad(call: OnnxCall):
    mode = call.attrs.get("mode", "constant")
    pads = _ints(call, 1)
    value = float(call.const(2)) if call.has(2) and call.const(2).size else 0.0
    shape = call.shape(0)
    rank = len(shape)
    axes = _ints(call, 3) if call.has(3) else list(range(rank))
    full = [0] * (2 * rank)
    for j, axis in enumerate(axes):
        full[axis % rank], full[axis % rank + rank] = pads[j], pads[j + len(axes)]
    flat: list[int] = []
    for i in range(rank - 1, -1, -1):  # F.pad lists the last dimension first
        flat += [full[i], full[i + rank]]
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return call.call(torch.nn.functional.pad, call.value(0), flat, torch_mode, value if mode == "constant" else None)


@onnx_to_torch("GatherElements")
def gather_elements(call: OnnxCall):
    index = call.value(1)
    return call.call(torch.gather, call.value(0), int(call.attrs.get("axis", 0)),
                     index if not isinstance(index, (int, float)) else call.ctx.tensor(call.const(1)))


@onnx_to_torch("Shape", "Size", "Range", "ConstantOfShape", "EyeLike")
def shape_arithmetic(call: OnnxCall):
    """These fold to constants when their inputs are known (the driver does that before any converter
    runs); reaching a converter means a size computed from the model's inputs at run time."""
    raise call.unsupported("a size computed from the inputs at run time; the converted model is static-shaped, "
                           "so fix the input sizes (--input-shape)")
