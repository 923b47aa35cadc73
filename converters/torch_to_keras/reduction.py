"""Reductions. They work in any layout: the reduced axes are mapped through the value's permutation."""

from __future__ import annotations

from typing import Any

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.torch_ir import size_hints


def _reduce(call: Call, fn: Any, dim_arg: str = "dim", *, meta: Any = None, **extra: Any) -> Val:
    """`fn(x, axis=, keepdims=)` over the dims torch names, in the value's own layout. `meta` is the
    torch result this computes (one item of a multi-output op's), by default the node's only one."""
    meta = call.node.meta["val"] if meta is None else meta
    out_shape, out_dtype = size_hints(meta.shape), str(meta.dtype).replace("torch.", "")
    v = call.val("self")
    dims = call.args.get(dim_arg)
    if dims is None or dims == []:
        dims = list(range(v.rank))
    elif isinstance(dims, int):
        dims = [dims]
    dims = sorted(int(d) % v.rank for d in dims)
    keepdim = bool(call.args.get("keepdim", False))
    have = v.perm or tuple(range(v.rank))
    axes = tuple(have.index(d) for d in dims)
    out = fn(v.tensor, axis=axes, keepdims=keepdim, **extra)
    if out.dtype != out_dtype:  # torch sums booleans and small ints into int64, Keras into int32
        out = call.ctx.ops.cast(out, out_dtype)
    if keepdim:
        return live_val(out, out_shape, v.perm)
    remaining = [p for p in have if p not in dims]
    order = sorted(remaining)
    perm = tuple(order.index(p) for p in remaining)
    return live_val(out, out_shape, perm)


@torch_to_keras("aten.mean")
def mean(call: Call) -> Val:
    return _reduce(call, call.ctx.ops.mean)


@torch_to_keras("aten.sum")
def sum_(call: Call) -> Val:
    return _reduce(call, call.ctx.ops.sum)


@torch_to_keras("aten.amax")
def amax(call: Call) -> Val:
    return _reduce(call, call.ctx.ops.max)


@torch_to_keras("aten.amin")
def amin(call: Call) -> Val:
    return _reduce(call, call.ctx.ops.min)


@torch_to_keras("aten.prod")
def prod(call: Call) -> Val:
    return _reduce(call, call.ctx.ops.prod)


@torch_to_keras("aten.var", "aten.std")
def var(call: Call) -> Val:
    """var/std.correction (torch.var(x, dim, correction=c)) and var/std.dim (x.var(dim, unbiased=b),
    which is what `x.var(1)` exports as): the population variance times n / (n - correction)."""
    ops = call.ctx.ops
    if "unbiased" in call.args:  # var.dim / var.default
        correction = 1.0 if call.args["unbiased"] in (None, True) else 0.0
    else:
        correction = call.args.get("correction")
        correction = 1.0 if correction is None else float(correction)
    is_std = str(call.node.target.overloadpacket) == "aten.std"
    v = call.val("self")
    dims = call.args.get("dim") or list(range(v.rank))
    dims = [dims] if isinstance(dims, int) else dims
    n = 1
    for d in dims:
        n *= v.shape[int(d) % v.rank]

    def fn(x: Any, axis: Any, keepdims: bool) -> Any:
        out = ops.var(x, axis=axis, keepdims=keepdims) * (n / max(n - correction, 1e-12))
        return ops.sqrt(out) if is_std else out

    return _reduce(call, fn)
