"""Elementwise arithmetic, comparisons and casts: layout-agnostic, so they run in their input's layout."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val


def broadcast_add(ops: Any, x: Any, y: Any) -> Any:
    """x + y, as torch broadcasts it.

    keras.ops.add on TensorFlow treats a second operand that squeezes to a vector as a bias and calls
    tf.nn.bias_add along the last axis or axis 1, whichever has the vector's length: the wrong axis (or a
    wrong shape) where broadcasting puts the vector elsewhere ((2, 3, 3) + (3, 1), (N, C, H, C) + (C, 1, 1)).
    Those adds are written x - (-y), the same IEEE sum bit for bit; every other add stays an add, so a
    bias after a matmul or convolution still fuses with it."""
    return ops.subtract(x, ops.negative(y)) if _bias_add_misplaces(x, y) else ops.add(x, y)


def _bias_add_misplaces(x: Any, y: Any) -> bool:
    """Whether keras.ops.add(x, y) would take its bias_add path onto another axis than broadcasting means."""
    xs, ys = list(getattr(x, "shape", np.shape(x))), list(getattr(y, "shape", np.shape(y)))
    wide = [i for i, d in enumerate(ys) if d is None or d > 1]
    if len(xs) < 2 or len(wide) != 1 or ys[wide[0]] is None:
        return False
    if len(ys) > len(xs):
        return True  # broadcasting widens x, which bias_add never does
    size, axis = ys[wide[0]], len(xs) - len(ys) + wide[0]  # the axis of x the vector broadcasts along
    if size == xs[-1]:
        return axis != len(xs) - 1
    if size == xs[1]:
        return axis != 1
    return False


def _binary(call: Call, fn: Callable[[Any, Any], Any], a: str = "self", b: str = "other") -> Val:
    (x, y), perm = call.ctx.align([call.val(a), call.val(b)], len(call.out_shape))
    return live_val(fn(x, y), call.out_shape, perm)


def _unary(call: Call, fn: Callable[[Any], Any], a: str = "self") -> Val:
    v = call.val(a)
    return live_val(fn(v.tensor), call.out_shape, v.perm)


def _scaled(call: Call, name: str) -> Any:
    alpha = call.args.get("alpha", 1)
    v = call.val(name)
    if alpha in (None, 1):
        return v
    if isinstance(v, Val) and v.live:
        return live_val(call.ctx.ops.multiply(v.tensor, alpha), v.shape, v.perm)
    return v.const * alpha if isinstance(v, Val) else v * alpha


@torch_to_keras("aten.add")
def add(call: Call) -> Val:
    other = _scaled(call, "other")
    (x, y), perm = call.ctx.align([call.val("self"), other], len(call.out_shape))
    return live_val(broadcast_add(call.ctx.ops, x, y), call.out_shape, perm)


@torch_to_keras("aten.sub")
def sub(call: Call) -> Val:
    other = _scaled(call, "other")
    (x, y), perm = call.ctx.align([call.val("self"), other], len(call.out_shape))
    return live_val(call.ctx.ops.subtract(x, y), call.out_shape, perm)


@torch_to_keras("aten.rsub")
def rsub(call: Call) -> Val:
    this = _scaled(call, "self")
    (x, y), perm = call.ctx.align([call.val("other"), this], len(call.out_shape))
    return live_val(call.ctx.ops.subtract(x, y), call.out_shape, perm)


@torch_to_keras("aten.mul")
def mul(call: Call) -> Val:
    return _binary(call, call.ctx.ops.multiply)


@torch_to_keras("aten.div")
def div(call: Call) -> Val:
    ops = call.ctx.ops
    mode = call.args.get("rounding_mode")
    if mode == "floor":
        return _binary(call, ops.floor_divide)
    if mode == "trunc":  # integer inputs stay integers in torch; true_divide made them float
        dtype = call.out_dtype
        return _binary(call, lambda x, y: ops.cast(ops.trunc(ops.true_divide(x, y)), dtype))
    return _binary(call, ops.true_divide)


@torch_to_keras("aten.pow")
def pow_(call: Call) -> Val:
    ops = call.ctx.ops
    if "self" in call.args and not isinstance(call.val("self"), Val):  # pow.Scalar: number ** tensor
        return _binary(call, ops.power, "self", "exponent")
    if call.args.get("exponent") == 2:
        return _unary(call, ops.square)
    return _binary(call, ops.power, "self", "exponent")


@torch_to_keras("aten.maximum")
def maximum(call: Call) -> Val:
    return _binary(call, call.ctx.ops.maximum)


@torch_to_keras("aten.minimum")
def minimum(call: Call) -> Val:
    return _binary(call, call.ctx.ops.minimum)


_COMPARE = {
    "aten.eq": "equal", "aten.ne": "not_equal", "aten.lt": "less", "aten.le": "less_equal",
    "aten.gt": "greater", "aten.ge": "greater_equal", "aten.logical_and": "logical_and",
    "aten.logical_or": "logical_or",
}


@torch_to_keras(*_COMPARE)
def compare(call: Call) -> Val:
    fn = getattr(call.ctx.ops, _COMPARE[str(call.node.target.overloadpacket)])
    return _binary(call, fn)


_BITWISE = {"aten.__and__": "and", "aten.bitwise_and": "and", "aten.__or__": "or", "aten.bitwise_or": "or"}


@torch_to_keras(*_BITWISE)
def bitwise(call: Call) -> Val:
    """`&` and `|`: logical on booleans (masks), bitwise on integers. Keras' bitwise ops take no
    Python numbers and want one dtype, so both operands are cast to the result dtype first."""
    ops = call.ctx.ops
    kind = _BITWISE[str(call.node.target.overloadpacket)]
    if call.out_dtype == "bool":
        return _binary(call, getattr(ops, f"logical_{kind}"))
    fn, dtype = getattr(ops, f"bitwise_{kind}"), call.out_dtype
    return _binary(call, lambda x, y: fn(ops.cast(x, dtype), ops.cast(y, dtype)))


_UNARY = {
    "aten.neg": "negative", "aten.abs": "abs", "aten.exp": "exp", "aten.log": "log",
    "aten.sqrt": "sqrt", "aten.rsqrt": "rsqrt", "aten.reciprocal": "reciprocal", "aten.sin": "sin",
    "aten.cos": "cos", "aten.erf": "erf", "aten.floor": "floor", "aten.ceil": "ceil",
    "aten.sign": "sign", "aten.log1p": "log1p", "aten.expm1": "expm1",
    "aten.logical_not": "logical_not", "aten.square": "square", "aten.isnan": "isnan",
    "aten.trunc": "trunc",
}


@torch_to_keras(*_UNARY)
def unary(call: Call) -> Val:
    return _unary(call, getattr(call.ctx.ops, _UNARY[str(call.node.target.overloadpacket)]))


@torch_to_keras("aten.round")
def round_(call: Call) -> Val:
    """Half-to-even in both frameworks; `decimals` (round.decimals) scales by 10^decimals first."""
    decimals = int(call.args.get("decimals") or 0)
    return _unary(call, lambda x: call.ctx.ops.round(x, decimals))


@torch_to_keras("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def where(call: Call) -> Val:
    """where(condition, self, other); the Scalar overloads pass Python numbers, which align keeps.
    (aten.where.default, the one-argument nonzero form, has a data-dependent shape and stays out.)"""
    ops = call.ctx.ops
    (c, x, y), perm = call.ctx.align([call.val("condition"), call.val("self"), call.val("other")],
                                     len(call.out_shape))
    return live_val(ops.where(c, x, y), call.out_shape, perm)


@torch_to_keras("aten.masked_fill")
def masked_fill(call: Call) -> Val:
    ops = call.ctx.ops
    (x, m, fill), perm = call.ctx.align([call.val("self"), call.val("mask"), call.val("value")],
                                        len(call.out_shape))
    return live_val(ops.where(m, ops.cast(fill, x.dtype) if not isinstance(fill, (int, float)) else fill, x),
                    call.out_shape, perm)


@torch_to_keras("aten.clamp", "aten.clamp_min", "aten.clamp_max", "aten.hardtanh")
def clamp(call: Call) -> Val:
    """Bounds are numbers or (clamp.Tensor, clamp_min.Tensor) tensors, resolved and aligned like any
    other operand. torch applies min first, then max, which decides the case min > max."""
    ops = call.ctx.ops
    lo, hi = ("min_val", "max_val") if "min_val" in call.args else ("min", "max")
    names = ["self", *(n for n in (lo, hi) if call.has(n))]
    vals, perm = call.ctx.align([call.val(n) for n in names], len(call.out_shape))
    bound = dict(zip(names, vals))
    x = bound["self"]
    if lo in bound:
        x = ops.maximum(x, bound[lo])
    if hi in bound:
        x = ops.minimum(x, bound[hi])
    return live_val(x, call.out_shape, perm)


_TORCH_DTYPES = {
    "float32": "float32", "float64": "float64", "float16": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}


@torch_to_keras("aten._to_copy", "aten.type_as")
def cast(call: Call) -> Val:
    v = call.val("self")
    dtype = _TORCH_DTYPES.get(call.out_dtype, call.out_dtype)
    return live_val(call.ctx.ops.cast(v.tensor, dtype), call.out_shape, v.perm)


@torch_to_keras("aten.copy")
def copy(call: Call) -> Val:
    """copy(self, src) — what `self.copy_(src)` becomes once functionalised: src broadcast to self's
    shape and cast to self's dtype. Nothing of self's values survives, so self lends only its shape
    (through a `where` over a mask of its shape, which reads no values and adds nothing: a NaN in self
    stays out, a -0.0 in src stays -0.0)."""
    ops = call.ctx.ops
    dtype = _TORCH_DTYPES.get(call.out_dtype, call.out_dtype)
    this, src = call.val("self"), call.val("src")
    (x, y), perm = call.ctx.align([this, src], len(call.out_shape))
    y = ops.cast(y, dtype)
    if not (isinstance(src, Val) and src.live) or tuple(src.shape) != tuple(call.out_shape):
        y = ops.where(ops.ones_like(x, dtype="bool"), y, ops.zeros_like(x, dtype=dtype))
    return live_val(y, call.out_shape, perm)


@torch_to_keras("aten.clone", "aten.alias", "aten.detach", "aten.native_dropout")
def identity(call: Call) -> Any:
    """Copies and inference-mode dropout compute nothing.

    Eval-mode dropout leaves no op at all after export; contiguous, to and lift_fresh_copy become
    clone and _to_copy, so only these spellings reach a converter.
    """
    if call.args.get("train"):
        raise call.unsupported("dropout in training mode", hint="convert the model in eval() mode")
    v = call.val("input" if "input" in call.args else "self")
    if str(call.node.target.overloadpacket) == "aten.native_dropout":
        return [v, None]
    return v
