"""`keras.ops` operations recorded in functional models (`keras.ops.add(x, y)` on symbolic tensors, `x[:, 0]`,
and everything porttax's own torch → Keras road writes: einsum permutes, rotary slices, causal masks).

Each becomes the torch function a person would write. Elementwise operations run in their operands'
common layout; operations whose meaning depends on axes (reshape, einsum, slicing) run in the Keras
layout, except pure permutations, which are free (the value is only re-labelled, see reshape.held_permute).
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.keras_to_torch.reshape import held_permute

torch = import_torch()
F = torch.nn.functional


def _val(a: Any) -> Any:
    """Constants as TVals too, so `align` can move them into a live operand's layout at conversion time."""
    if isinstance(a, TVal):
        return a
    if isinstance(a, (np.ndarray, np.generic)):
        arr = np.asarray(a)
        return TVal(const=arr, shape=tuple(arr.shape), dtype=str(arr.dtype))
    return a


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[LayerCall], TVal]:
    def convert(call: LayerCall) -> TVal:
        operands = [_val(a) for a in call.args[:2]]
        if not any(isinstance(o, TVal) and o.live for o in operands):
            raise call.unsupported("an operation on constants only reached the converter")
        dtype = call.out_dtype()
        vals, perm = call.ctx.align(operands, dtype if "float" in dtype else None)
        return call.result(fn(*vals), perm)

    return convert


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add, "Subtract": operator.sub, "Multiply": operator.mul, "Divide": operator.truediv,
    "TrueDivide": operator.truediv, "Power": torch.pow, "Maximum": torch.maximum, "Minimum": torch.minimum,
    "FloorDivide": torch.floor_divide, "Mod": torch.remainder, "Equal": torch.eq, "NotEqual": torch.ne,
    "Greater": torch.gt, "GreaterEqual": torch.ge, "Less": torch.lt, "LessEqual": torch.le,
    "LogicalAnd": torch.logical_and, "LogicalOr": torch.logical_or,
}
for _name, _fn in _BINARY.items():
    keras_to_torch(f"ops.{_name}")(_binary(_fn))


def _unary(fn: Callable[[Any], Any]) -> Callable[[LayerCall], TVal]:
    def convert(call: LayerCall) -> TVal:
        v = call.x
        return call.result(fn(call.ctx.in_layout(v, v.perm)), v.perm)

    return convert


_UNARY: dict[str, Callable[[Any], Any]] = {
    "Negative": operator.neg, "Abs": torch.abs, "Absolute": torch.abs, "Sqrt": torch.sqrt, "Rsqrt": torch.rsqrt,
    "Exp": torch.exp, "Log": torch.log, "Square": torch.square, "Sin": torch.sin, "Cos": torch.cos,
    "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Relu": F.relu, "Relu6": F.relu6, "Silu": F.silu,
    "Softplus": F.softplus, "Softsign": F.softsign, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
    "Sign": torch.sign, "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "LogicalNot": torch.logical_not,
    "Selu": F.selu, "HardSigmoid": F.hardsigmoid, "HardSilu": F.hardswish, "Mish": F.mish, "Log1p": torch.log1p,
    "Expm1": torch.expm1, "LogSigmoid": F.logsigmoid, "IsNan": torch.isnan, "Tan": torch.tan,
}
for _name, _fn in _UNARY.items():
    keras_to_torch(f"ops.{_name}")(_unary(_fn))


@keras_to_torch("ops.Gelu")
def gelu(call: LayerCall) -> TVal:
    v = call.x
    mode = "tanh" if call.layer.approximate else "none"
    return call.result(F.gelu(call.ctx.in_layout(v, v.perm), approximate=mode), v.perm)


@keras_to_torch("ops.LeakyRelu")
def leaky_relu(call: LayerCall) -> TVal:
    v = call.x
    return call.result(F.leaky_relu(call.ctx.in_layout(v, v.perm), float(call.layer.negative_slope)), v.perm)


@keras_to_torch("ops.Elu")
def elu(call: LayerCall) -> TVal:
    v = call.x
    return call.result(F.elu(call.ctx.in_layout(v, v.perm), float(call.layer.alpha)), v.perm)


@keras_to_torch("ops.Clip")
def clip(call: LayerCall) -> TVal:
    v = call.x
    out = torch.clamp(call.ctx.in_layout(v, v.perm), min=call.layer.x_min, max=call.layer.x_max)
    return call.result(out, v.perm)


@keras_to_torch("ops.Cast")
def cast(call: LayerCall) -> TVal:
    v = call.x
    dtype = getattr(torch, str(call.layer.dtype))
    return call.result(call.ctx.in_layout(v, v.perm).to(dtype), v.perm)


def _axis_op(call: LayerCall, axis: int, fn: Callable[[Any, int], Any]) -> TVal:
    v = call.x
    return call.result(fn(call.ctx.in_layout(v, v.perm), call.ctx.held_axis(v, axis)), v.perm)


@keras_to_torch("ops.Cumsum")
def cumsum(call: LayerCall) -> TVal:
    """Running sums; porttax's own torch → Keras road writes one per open size (arange(seq) as a cumsum
    of ones). torch sums small ints in int64: cast back to Keras' dtype."""
    dtype = getattr(torch, call.out_dtype())
    if call.layer.axis is None:
        v = call.x
        return call.result(torch.cumsum(call.ctx.in_layout(v, None).flatten(), dim=0).to(dtype))
    return _axis_op(call, int(call.layer.axis), lambda x, d: torch.cumsum(x, dim=d).to(dtype))


def _filled_like(value: float) -> Callable[[LayerCall], TVal]:
    def convert(call: LayerCall) -> TVal:
        v = call.x
        dtype = getattr(torch, call.out_dtype())
        return call.result(torch.full_like(call.ctx.in_layout(v, v.perm), value, dtype=dtype), v.perm)

    return convert


keras_to_torch("ops.OnesLike")(_filled_like(1))
keras_to_torch("ops.ZerosLike")(_filled_like(0))


@keras_to_torch("ops.Moveaxis")
def moveaxis(call: LayerCall) -> TVal:
    v = call.x
    return call.result(torch.movedim(call.ctx.in_layout(v, None), tuple(call.layer.source),
                                     tuple(call.layer.destination)))


@keras_to_torch("ops.Softmax")
def softmax(call: LayerCall) -> TVal:
    axis = call.layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise call.unsupported(f"softmax over several axes {axis}")
        axis = axis[0]
    return _axis_op(call, int(axis), lambda x, d: torch.softmax(x, dim=d))


@keras_to_torch("ops.LogSoftmax")
def log_softmax(call: LayerCall) -> TVal:
    return _axis_op(call, int(call.layer.axis), lambda x, d: torch.log_softmax(x, dim=d))


def _reduction(fn: Callable[..., Any]) -> Callable[[LayerCall], TVal]:
    def convert(call: LayerCall) -> TVal:
        v = call.x
        axis = call.layer.axis
        keep = bool(call.layer.keepdims)
        if axis is None:
            out = fn(call.ctx.keras_layout(v), dim=tuple(range(v.rank)), keepdim=keep)
            return call.result(out)
        axes = [int(a) % v.rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
        if keep:  # the layout survives: reduce the held axes
            x = call.ctx.in_layout(v, v.perm)
            return call.result(fn(x, dim=tuple(call.ctx.held_axis(v, a) for a in axes), keepdim=True), v.perm)
        return call.result(fn(call.ctx.keras_layout(v), dim=tuple(axes), keepdim=False))

    return convert


keras_to_torch("ops.Mean")(_reduction(torch.mean))
keras_to_torch("ops.Sum")(_reduction(torch.sum))
keras_to_torch("ops.Max")(_reduction(torch.amax))
keras_to_torch("ops.Min")(_reduction(torch.amin))


@keras_to_torch("ops.Reshape")
def reshape(call: LayerCall) -> TVal:
    x = call.ctx.keras_layout(call.x)
    return call.result(x.reshape(*[int(d) for d in call.layer.newshape]))


@keras_to_torch("ops.Transpose")
def transpose(call: LayerCall) -> TVal:
    axes = call.layer.axes
    v = call.x
    perm = tuple(reversed(range(v.rank))) if axes is None else tuple(int(a) % v.rank for a in axes)
    return held_permute(v, perm, call.out_shape())


@keras_to_torch("ops.Einsum")
def einsum(call: LayerCall) -> TVal:
    subscripts = call.layer.subscripts.replace(" ", "")
    operands = list(call.args)
    lhs, _, rhs = subscripts.partition("->")
    if len(operands) == 1 and isinstance(operands[0], TVal) and operands[0].live and "." not in subscripts:
        letters = lhs
        if rhs and sorted(rhs) == sorted(letters) and len(set(letters)) == len(letters):
            # A pure permutation (porttax writes transposes this way): re-label, move no data.
            return held_permute(operands[0], tuple(letters.index(c) for c in rhs), call.out_shape())
    args = [call.ctx.operand(a) for a in operands]
    return call.result(torch.einsum(subscripts, *args))


@keras_to_torch("ops.Matmul")
def matmul(call: LayerCall) -> TVal:
    a, b = (call.ctx.operand(x) for x in call.args[:2])
    return call.result(torch.matmul(a, b))


@keras_to_torch("ops.Concatenate")
def concatenate(call: LayerCall) -> TVal:
    items = [_val(a) for a in call.args[0]]
    dtype = call.out_dtype()
    vals, perm = call.ctx.align(items, dtype if "float" in dtype else None)
    rank = len(call.out_shape())
    axis = int(call.layer.axis) % rank
    held = axis if perm is None else tuple(perm).index(axis)
    return call.result(torch.cat(vals, dim=held), perm)


@keras_to_torch("ops.Stack")
def stack(call: LayerCall) -> TVal:
    items = [call.ctx.operand(a) for a in call.args[0]]
    return call.result(torch.stack(items, dim=int(call.layer.axis)))


@keras_to_torch("ops.Unstack")
def unstack(call: LayerCall) -> list[TVal]:
    x = call.ctx.operand(call.x)
    pieces = torch.unbind(x, dim=int(call.layer.axis))
    return [call.result(pieces[i], index=i) for i in range(len(call.outputs))]


@keras_to_torch("ops.Split")
def split(call: LayerCall) -> list[TVal]:
    x = call.ctx.operand(call.x)
    sections = call.layer.indices_or_sections  # NumPy's meaning: a count of equal parts, or cut points
    sections = int(sections) if isinstance(sections, int) else [int(i) for i in sections]
    pieces = torch.tensor_split(x, sections, dim=int(call.layer.axis))
    return [call.result(pieces[i], index=i) for i in range(len(call.outputs))]


@keras_to_torch("ops.Slice")
def slice_(call: LayerCall) -> TVal:
    v, start = call.args[0], call.args[1]
    if isinstance(start, TVal):
        raise call.unsupported("slice start indices computed from the inputs")
    x = call.ctx.in_layout(v, v.perm)
    start = [int(s) for s in np.asarray(start).reshape(-1)]
    sizes = [int(s) for s in call.layer.shape]
    for axis, (s, n) in enumerate(zip(start, sizes)):
        full = v.shape[axis]
        if s == 0 and (n == -1 or (full is not None and n == full)):
            continue
        held = call.ctx.held_axis(v, axis)
        x = x.narrow(held, s, (int(full) - s) if n == -1 else n)
    return call.result(x, v.perm)


@keras_to_torch("ops.GetItem")
def get_item(call: LayerCall) -> TVal:
    v, key = call.args[0], call.args[1]
    if isinstance(key, TVal) or (isinstance(key, (list, tuple)) and any(isinstance(k, TVal) for k in key)):
        raise call.unsupported("indexing with tensors computed from the inputs")
    x = call.ctx.keras_layout(v)
    key = tuple(key) if isinstance(key, list) else key
    return call.result(x[key])


@keras_to_torch("ops.Squeeze")
def squeeze(call: LayerCall) -> TVal:
    v = call.x
    x = call.ctx.keras_layout(v)
    axis = call.layer.axis
    if axis is None:
        return call.result(x.squeeze())
    axes = [int(a) % v.rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
    return call.result(x.squeeze(tuple(axes)))


@keras_to_torch("ops.ExpandDims")
def expand_dims(call: LayerCall) -> TVal:
    v = call.x
    x = call.ctx.keras_layout(v)
    axis = call.layer.axis
    axes = sorted(int(a) % (v.rank + len(axis if isinstance(axis, (list, tuple)) else [axis]))
                  for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    for a in axes:
        x = x.unsqueeze(a)
    return call.result(x)


@keras_to_torch("ops.Repeat")
def repeat(call: LayerCall) -> TVal:
    v = call.x
    axis = call.layer.axis
    repeats = call.layer.repeats
    if axis is None:
        return call.result(call.ctx.keras_layout(v).flatten().repeat_interleave(repeats))
    x = call.ctx.in_layout(v, v.perm)
    return call.result(torch.repeat_interleave(x, repeats, dim=call.ctx.held_axis(v, int(axis))), v.perm)


@keras_to_torch("ops.Tile")
def tile(call: LayerCall) -> TVal:
    x = call.ctx.keras_layout(call.x)
    return call.result(torch.tile(x, tuple(int(r) for r in call.layer.repeats)))


@keras_to_torch("ops.Pad")
def pad(call: LayerCall) -> TVal:
    v = call.x
    mode = call.layer.mode
    value = call.kwargs.get("constant_values", call.args[1] if len(call.args) > 1 else None)
    value = 0.0 if value is None else float(np.asarray(value))
    widths = [tuple(int(p) for p in w) for w in call.layer.pad_width]
    if len(widths) == 1:
        widths = widths * v.rank
    x = call.ctx.in_layout(v, v.perm)
    held = tuple(range(v.rank)) if v.perm is None else tuple(v.perm)
    flat: list[int] = []
    for keras_axis in reversed(held):  # F.pad lists the last held axis first
        flat.extend(widths[keras_axis])
    while len(flat) > 2 and flat[-2:] == [0, 0]:
        flat = flat[:-2]
    torch_mode = {"constant": "constant", "reflect": "reflect", "symmetric": None, "edge": "replicate"}.get(mode)
    if mode == "symmetric" and max(flat, default=0) <= 1:
        torch_mode = "replicate"  # a one-wide mirror is a copy of the edge
    if torch_mode is None:
        raise call.unsupported(f"padding mode {mode!r}")
    out = F.pad(x, flat, mode=torch_mode, value=value) if torch_mode == "constant" else F.pad(x, flat, mode=torch_mode)
    return call.result(out, v.perm)


@keras_to_torch("ops.Where")
def where(call: LayerCall) -> TVal:
    operands = [_val(a) for a in call.args[:3]]
    if len(operands) < 3 or operands[1] is None:
        raise call.unsupported("where() with one argument (nonzero indices) has a data-dependent shape")
    dtype = call.out_dtype()
    vals, perm = call.ctx.align(operands, dtype if "float" in dtype else None)
    cond = vals[0]
    if isinstance(cond, torch.fx.Proxy) and operands[0].dtype != "bool":
        cond = cond.bool()
    elif not isinstance(cond, torch.fx.Proxy):
        cond = call.ctx.as_operand(np.asarray(operands[0].const if isinstance(operands[0], TVal) else cond).astype(bool))
    return call.result(torch.where(cond, vals[1], vals[2]), perm)


@keras_to_torch("ops.Take")
def take(call: LayerCall) -> TVal:
    v, idx = call.args[0], call.args[1]
    x = call.ctx.operand(v)
    index = call.ctx.operand(idx)
    if not isinstance(index, torch.fx.Proxy):
        index = call.ctx.as_operand(np.asarray(index, dtype=np.int64))
    else:
        index = index.long()
    axis = call.layer.axis
    if axis is None:
        return call.result(x.flatten()[index])
    return call.result(torch.index_select(x, int(axis) % len(v.shape), index.flatten()).reshape(
        *[int(d) if d is not None else -1 for d in call.out_shape()]))
