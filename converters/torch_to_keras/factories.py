"""Tensors made from sizes alone: `arange`, `full`, `zeros`/`ones`, `new_*`, `*_like`, `scalar_tensor`.

With fixed input shapes the driver folds these to constants at conversion time. They reach a
converter only when a size is symbolic (an open batch or sequence dim: `torch.arange(seq)` for
positions, `full((seq, seq), -inf)` for a causal mask, `zeros_like(ids)`), and then the model builds
them at run time from the sizes of its inputs (converters.torch_to_keras.symbolic).
"""

from __future__ import annotations

from typing import Any

from porttax._frameworks import import_torch
from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, dims_of, symbolic_scalar


def _literal(call: Call, name: str, default: Any) -> Any:
    raw = call.args.get(name)
    if symbolic_scalar(raw):
        raise call.unsupported(f"its {name} is computed from an open input size", hint=STATIC_HINT)
    value = call.const(name) if raw is not None else default
    return value.item() if hasattr(value, "item") else value


@torch_to_keras("aten.arange")
def arange(call: Call) -> Val:
    """arange(end), arange(start, end) and arange(start, end, step) with a symbolic length."""
    start = _literal(call, "start", 0) if "start" in call.args else 0
    step = _literal(call, "step", 1) if "step" in call.args else 1
    (length,) = call.out_dims
    ops = call.ctx.ops
    index = call.ctx.sizes.arange(length, "int32" if call.out_dtype.startswith("int") else "float32")
    out = ops.add(ops.multiply(index, step), start) if (start, step) != (0, 1) else index
    return live_val(ops.cast(out, call.out_dtype), call.out_shape)


_FILL = {"aten.zeros": 0, "aten.ones": 1, "aten.new_zeros": 0, "aten.new_ones": 1, "aten.empty": 0,
         "aten.new_empty": 0, "aten.zeros_like": 0, "aten.ones_like": 1, "aten.empty_like": 0,
         "aten.empty_strided": 0}  # strides only say how the undefined contents sit in memory


@torch_to_keras("aten.full", "aten.new_full", "aten.full_like", "aten.fill.Scalar", *_FILL)
def fill(call: Call) -> Val:
    """A constant-filled tensor of a symbolic shape (empty ones as zeros: any value is valid); fill(x, v)
    is x's shape filled with v."""
    op = str(call.node.target.overloadpacket)
    value = _FILL[op] if op in _FILL else _literal(call, "value" if op == "aten.fill" else "fill_value", 0)
    ones = call.ctx.sizes.ones(call.out_dims, call.out_dtype if call.out_dtype != "bool" else "int32")
    out = call.ctx.ops.multiply(ones, value) if value != 1 else ones
    return live_val(call.ctx.ops.cast(out, call.out_dtype), call.out_shape)


@torch_to_keras("aten.eye")
def eye(call: Call) -> Val:
    """eye(n) / eye(n, m) of a symbolic size: ones where the row index equals the column index."""
    rows, cols = call.out_dims
    ops = call.ctx.ops
    same = ops.equal(ops.expand_dims(call.ctx.sizes.arange(rows, "int32"), 1),
                     ops.expand_dims(call.ctx.sizes.arange(cols, "int32"), 0))
    return live_val(ops.cast(same, call.out_dtype), call.out_shape)


@torch_to_keras("aten.scalar_tensor")
def scalar_tensor(call: Call) -> Val:
    """A 0-d tensor holding a number; it reaches a converter only when the number is an open size
    (`torch.tensor(x.shape[1])`), which is then counted at run time from the input carrying it."""
    raw = call.args["s"]
    if not symbolic_scalar(raw):  # a literal: folded by the driver, kept here for completeness
        return Val(const=import_torch().scalar_tensor(_literal(call, "s", 0), dtype=call.node.meta["val"].dtype))
    (size,) = dims_of((raw.meta["val"],))
    ops = call.ctx.ops
    count = ops.sum(call.ctx.sizes.vector(size))
    return live_val(ops.cast(count, call.out_dtype), ())
