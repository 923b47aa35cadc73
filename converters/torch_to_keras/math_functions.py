"""The rest of core ATen's elementwise math (trigonometric, hyperbolic, other log bases, isinf,
remainder/fmod/atan2, xor and not), flip, roll, any, max/min with a dim and argmax/argmin: each maps to one `keras.ops` function and, like the
elementwise ops, runs in its input's layout (a dim argument is mapped through the value's permutation)."""

from __future__ import annotations

from typing import Any

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.torch_to_keras.elementwise import _binary, _unary
from porttax.converters.torch_to_keras.reduction import _reduce
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT

_UNARY = {
    "aten.tan": "tan", "aten.asin": "arcsin", "aten.acos": "arccos", "aten.atan": "arctan",
    "aten.sinh": "sinh", "aten.cosh": "cosh", "aten.asinh": "arcsinh", "aten.acosh": "arccosh",
    "aten.atanh": "arctanh", "aten.log2": "log2", "aten.log10": "log10", "aten.isinf": "isinf",
}


@torch_to_keras(*_UNARY)
def unary(call: Call) -> Val:
    return _unary(call, getattr(call.ctx.ops, _UNARY[str(call.node.target.overloadpacket)]))


# remainder takes the divisor's sign (Python's %), as `keras.ops.mod` does
_BINARY = {"aten.atan2": "arctan2", "aten.remainder": "mod"}


@torch_to_keras(*_BINARY)
def binary(call: Call) -> Val:
    return _binary(call, getattr(call.ctx.ops, _BINARY[str(call.node.target.overloadpacket)]))


@torch_to_keras("aten.fmod")
def fmod(call: Call) -> Val:
    """torch.fmod takes the dividend's sign (C's fmod). Keras has only the divisor-signed `mod`, so a
    non-zero result whose sign differs from the dividend's is moved back by one divisor; this holds for
    integers too, where x - trunc(x / y) * y would go through floats."""
    ops = call.ctx.ops

    def fn(x: Any, y: Any) -> Any:
        r = ops.mod(x, y)
        wrong_sign = ops.logical_and(ops.not_equal(r, 0), ops.not_equal(ops.less(r, 0), ops.less(x, 0)))
        return ops.where(wrong_sign, r - y, r)

    return _binary(call, fn)


@torch_to_keras("aten.flip")
def flip(call: Call) -> Val:
    v = call.val("self")
    x = v.tensor
    for d in call.args.get("dims") or []:
        x = call.ctx.ops.flip(x, axis=v.axis(d))
    return live_val(x, call.out_shape, v.perm)


@torch_to_keras("aten.roll")
def roll(call: Call) -> Val:
    """torch.roll: per dim in the value's layout (Swin's shifted windows roll an image held channels-last);
    with no dims, over the flattened tensor in torch's element order, then back to its shape."""
    ops, v = call.ctx.ops, call.val("self")
    shifts, dims = list(call.args.get("shifts") or []), list(call.args.get("dims") or [])
    if not dims:
        if v.dims is not None and any(not isinstance(d, int) for d in v.dims):
            raise call.unsupported("a roll over the flattened tensor with open sizes", hint=STATIC_HINT)
        flat = ops.roll(ops.reshape(call.ctx.in_layout(v, None), (-1,)), int(shifts[0]), axis=0)
        return live_val(ops.reshape(flat, v.shape), call.out_shape)
    x = v.tensor
    for shift, d in zip(shifts, dims):
        x = ops.roll(x, int(shift), axis=v.axis(d))
    return live_val(x, call.out_shape, v.perm)


def _arg_extreme(call: Call, fn: Any) -> Val:
    """argmax/argmin over one dim (keepdim honoured), or over the flattened tensor in torch's own
    element order when dim is None: a permuted value is put back in torch layout before flattening."""
    ops, v = call.ctx.ops, call.val("self")
    if call.args.get("dim") is None:
        x = v.tensor
        if v.perm and list(v.perm) != list(range(v.rank)):
            x = ops.transpose(x, [v.perm.index(d) for d in range(v.rank)])
        out = ops.cast(fn(ops.reshape(x, (-1,)), axis=0), call.out_dtype)
        if call.args.get("keepdim"):
            out = ops.reshape(out, [1] * v.rank)
        return live_val(out, call.out_shape, None)
    return _reduce(call, lambda x, axis, keepdims: fn(x, axis=axis[0], keepdims=keepdims))


@torch_to_keras("aten.argmax", "aten.argmin")
def arg_extreme(call: Call) -> Val:
    return _arg_extreme(call, getattr(call.ctx.ops, str(call.node.target.overloadpacket)[len("aten."):]))


@torch_to_keras("aten.bitwise_not")
def bitwise_not(call: Call) -> Val:
    """`~`: logical on booleans (masks), bitwise on integers."""
    ops = call.ctx.ops
    return _unary(call, ops.logical_not if call.out_dtype == "bool" else ops.bitwise_invert)


@torch_to_keras("aten.bitwise_xor", "aten.__xor__", "aten.logical_xor")
def xor(call: Call) -> Val:
    ops = call.ctx.ops
    if call.out_dtype == "bool":
        return _binary(call, lambda x, y: ops.logical_xor(ops.cast(x, "bool"), ops.cast(y, "bool")))
    dtype = call.out_dtype
    return _binary(call, lambda x, y: ops.bitwise_xor(ops.cast(x, dtype), ops.cast(y, dtype)))


@torch_to_keras("aten.any")
def any_(call: Call) -> Val:
    ops = call.ctx.ops
    return _reduce(call, lambda x, axis, keepdims: ops.any(ops.cast(x, "bool"), axis=axis, keepdims=keepdims))


def _extreme_with_index(call: Call, value_fn: Any, index_fn: Any) -> Any:
    """max/min: over everything (max.default, one value), or over a dim: (values, indices)."""
    if call.args.get("dim") is None:
        return _reduce(call, value_fn)
    values_meta, indices_meta = call.node.meta["val"]
    values = _reduce(call, value_fn, meta=values_meta)
    indices = _reduce(call, lambda x, axis, keepdims: index_fn(x, axis=axis[0], keepdims=keepdims), meta=indices_meta)
    return [values, indices]


@torch_to_keras("aten.max", "aten.min")
def extreme(call: Call) -> Any:
    ops, kind = call.ctx.ops, str(call.node.target.overloadpacket)[len("aten."):]
    return _extreme_with_index(call, getattr(ops, kind), getattr(ops, f"arg{kind}"))
