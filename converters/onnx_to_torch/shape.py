"""Shape and data-movement ops. Shapes, axes and indices must be constants at conversion time (after
folding they almost always are); a value computed from the model's inputs is refused by name."""

from __future__ import annotations

import numpy as np
import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, OnnxCall, to_torch

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32, 13: torch.uint64,
           16: torch.bfloat16, 17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz, 19: torch.float8_e5m2,
           20: torch.float8_e5m2fnuz}
_ML_TYPES = (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


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
    if shape is None:
        raise call.unsupported("computed indices into an input whose shape ONNX shape inference does not know")
    return call.call(take, call.value(0), call.value(1), axis % len(shape))


def take(x: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Gather with indices computed at run time: negative ones count from the end, and the indices'
    shape replaces the gathered axis."""
    flat = indices.reshape(-1).to(torch.int64)
    flat = torch.where(flat < 0, flat + x.shape[axis], flat)
    picked = torch.index_select(x, axis, flat)
    return picked.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])


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
    return _cast_to(call, _DTYPES.get(int(call.attrs["to"])), f"ONNX type {call.attrs['to']}")


@onnx_to_torch("CastLike")
def cast_like(call: OnnxCall):
    dtype_name = call.dtype(1)
    if dtype_name is None:
        raise call.unsupported("the target type is unknown")
    return _cast_to(call, getattr(torch, dtype_name, None), dtype_name)


def _cast_to(call: OnnxCall, dtype, name: str):
    """`.to(dtype)`; a constant input (CastLike of a literal to the type of a live value, as ONNX's function
    bodies write it) is cast at conversion time."""
    if dtype is None:
        raise call.unsupported(f"cast to {name}: torch has no such tensor type (4-bit and string tensors)")
    saturate = bool(call.attrs.get("saturate", 1))
    float8 = dtype in _ML_TYPES and dtype != torch.bfloat16 and np.dtype(call.dtype(0) or "float32").kind == "f"
    if call.is_const(0):
        x = to_torch(call.const(0))
        return Const(_to_numpy(cast_float8(x, dtype, saturate) if float8 else x.to(dtype)))
    if float8:
        return call.call(cast_float8, call.value(0), dtype, saturate)
    return call.call(torch.Tensor.to, call.value(0), dtype)


def cast_float8(x: torch.Tensor, dtype: torch.dtype, saturate: bool) -> torch.Tensor:
    """ONNX Cast to a float8 type. torch rounds in-range values to nearest-even as ONNX does, but handles
    the out-of-range ones its own way per type (e4m3fn clamps, the others overflow); ONNX's
    saturate=1 clamps to ±max (infinities included), saturate=0 gives ±inf for e5m2 and NaN for the others."""
    info = torch.finfo(dtype)
    wide = x.to(torch.float32)
    if saturate:
        return torch.clamp(wide, -info.max, info.max).to(dtype)
    if dtype == torch.float8_e4m3fn:  # torch clamps this one: beyond the rounding range of ±max is NaN
        limit = info.max + (info.max - float(torch.nextafter(torch.tensor(info.max, dtype=dtype).float(),
                                                               torch.tensor(0.0)))) / 2
        return torch.where(wide.abs() > limit, torch.full_like(wide, float("nan")), wide).to(dtype)
    return wide.to(dtype)


def _to_numpy(tensor) -> np.ndarray:
    if tensor.dtype in _ML_TYPES:
        import ml_dtypes

        bits = tensor.view(torch.uint8 if tensor.element_size() == 1 else torch.int16).numpy()
        return bits.view(getattr(ml_dtypes, str(tensor.dtype).removeprefix("torch.")))
    return tensor.numpy()


@onnx_to_torch("Trilu")
def trilu(call: OnnxCall):
    k = int(call.const(1)) if call.has(1) else 0
    fn = torch.triu if call.attrs.get("upper", 1) else torch.tril
    return call.call(fn, call.value(0), k)


@onnx_to_torch("Pad", since=13)
def pad(call: OnnxCall):
    mode = call.attrs.get("mode", "constant")
    pads = _ints(call, 1)
    value = call.const(2).reshape(-1)[0].item() if call.has(2) and call.const(2).size else 0
    shape = call.shape(0)
    rank = len(shape)
    axes = [a % rank for a in (_ints(call, 3) if call.has(3) else range(rank))]
    begins, ends = [0] * rank, [0] * rank
    for j, axis in enumerate(axes):
        begins[axis], ends[axis] = pads[j], pads[j + len(axes)]
    if mode == "constant":
        flat: list[int] = []
        for i in range(rank - 1, -1, -1):  # F.pad lists the last dimension first
            flat += [begins[i], ends[i]]
        return call.call(torch.nn.functional.pad, call.value(0), flat, "constant", value)
    if mode not in ("reflect", "edge", "wrap"):
        raise call.unsupported(f"mode={mode!r}")
    padded = [a for a in range(rank) if begins[a] or ends[a]]
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    if padded and min(padded) >= max(rank - 3, 2 if rank > 2 else 1) and min(begins + ends) >= 0 and (
            mode != "reflect" or all(max(begins[a], ends[a]) < shape[a] for a in padded)):
        flat = []
        for i in range(rank - 1, min(padded) - 1, -1):  # the trailing axes torch's F.pad modes take
            flat += [begins[i], ends[i]]
        return call.call(torch.nn.functional.pad, call.value(0), flat, torch_mode)
    # otherwise (batch or channel axes, more than three axes, crops): reflect / edge / wrap pick existing
    # elements, so per padded axis the source index of every output position is known now (np.pad of the
    # index range) and one index_select does it
    x = call.value(0)
    for axis in range(rank):
        if begins[axis] == ends[axis] == 0:
            continue
        index = np.pad(np.arange(shape[axis]), (max(begins[axis], 0), max(ends[axis], 0)),
                       mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}[mode])
        index = index[max(-begins[axis], 0): len(index) - max(-ends[axis], 0)]
        x = call.call(torch.index_select, x, axis, call.ctx.tensor(index.astype(np.int64), f"pad_{mode}_index"))
    return x


@onnx_to_torch("GatherElements")
def gather_elements(call: OnnxCall):
    axis = int(call.attrs.get("axis", 0))
    shape = call.shape(0)
    if call.is_const(1) and shape is not None:
        index = call.const(1).astype(np.int64)
        index = np.where(index < 0, index + shape[axis], index)
        return call.call(torch.gather, call.value(0), axis, call.ctx.tensor(index, call.node.input[1]))
    return call.call(gather_elements_wrapped, call.value(0), call.tensor(1), axis)


def gather_elements_wrapped(x: torch.Tensor, index: torch.Tensor, axis: int) -> torch.Tensor:
    """torch.gather with ONNX's negative indices (counted from the end of the axis)."""
    index = index.to(torch.int64)
    return torch.gather(x, axis, torch.where(index < 0, index + x.shape[axis], index))


@onnx_to_torch("BitCast")
def bit_cast(call: OnnxCall):
    dtype = _DTYPES.get(int(call.attrs["to"]))
    if dtype is None:
        raise call.unsupported(f"bit cast to ONNX type {call.attrs['to']}: torch has no such tensor type")
    return call.call(torch.Tensor.view, call.value(0), dtype)


@onnx_to_torch("Size")
def size(call: OnnxCall):
    """The element count of a static shape is a constant."""
    shape = call.shape(0)
    if shape is None:
        return shape_arithmetic(call)
    return Const(np.array(int(np.prod(shape)), dtype=np.int64))


@onnx_to_torch("EyeLike")
def eye_like(call: OnnxCall):
    """EyeLike reads only its input's shape (and type), so with static shapes it is a constant."""
    shape = call.shape(0)
    if shape is None or len(shape) != 2:
        return shape_arithmetic(call)
    to = call.attrs.get("dtype")
    dtype = np.dtype(call.dtype(0) or "float32") if to is None else np.dtype(str(_DTYPES[int(to)]).split(".")[1])
    return Const(np.eye(shape[0], shape[1], k=int(call.attrs.get("k", 0)), dtype=dtype))


@onnx_to_torch("Shape", "Range", "ConstantOfShape", "BlackmanWindow", "HammingWindow", "HannWindow",
               "MelWeightMatrix")
def shape_arithmetic(call: OnnxCall):
    """These fold to constants when their inputs are known (the driver does that before any converter
    runs; windows and mel matrices are generated from sizes too); reaching a converter means a size
    computed from the model's inputs at run time."""
    for i in range(len(call.inputs)):
        if call.has(i) and not call.is_const(i) and call.op != "Shape":
            call.const(i)  # names the input that would have to be known
    raise call.unsupported("a size computed from the inputs at run time; the converted model is static-shaped, "
                           "so fix the input sizes (--input-shape)")
