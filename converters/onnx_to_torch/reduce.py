"""Reductions, cumulative sums and products, arg-max/min and normalised exponentials.

Axes come from an attribute before opset 18 (13 for ReduceSum) and from a constant input after. A reduction
is an element-wise step, the reduction over the axes, and a final step (ReduceL2 = square, sum, sqrt); with
`noop_with_empty_axes` and no axes only the element-wise steps run, as in ONNX's reference. Reducing an empty
axis gives the reduction's identity (ONNX 18: -inf for ReduceMax, +inf for ReduceMin), which torch's amax/amin
refuse to compute, so that case is a constant of the right shape.
"""

from __future__ import annotations

import numpy as np
import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, OnnxCall


def _square(x: torch.Tensor) -> torch.Tensor:
    return x * x


def _prod(x: torch.Tensor, dims: list[int], keepdim: bool) -> torch.Tensor:
    """torch.prod over several dims (torch's takes one), innermost first so the others keep their index."""
    for dim in sorted((d % x.dim() for d in dims), reverse=True):
        x = torch.prod(x, dim, keepdim)
    return x


# op -> (element-wise step before, reduction, step after)
_REDUCE = {"ReduceSum": (None, torch.sum, None), "ReduceMean": (None, torch.mean, None),
           "ReduceMax": (None, torch.amax, None), "ReduceMin": (None, torch.amin, None),
           "ReduceProd": (None, _prod, None), "ReduceSumSquare": (_square, torch.sum, None),
           "ReduceL1": (torch.abs, torch.sum, None), "ReduceL2": (_square, torch.sum, torch.sqrt),
           "ReduceLogSum": (None, torch.sum, torch.log), "ReduceLogSumExp": (None, torch.logsumexp, None)}


_FLOAT_ONLY = ("ReduceMean", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")


def _axes(call: OnnxCall) -> list[int] | None:
    if call.has(1):
        return [int(a) for a in call.const(1).reshape(-1)]
    axes = call.attrs.get("axes")
    return [int(a) for a in axes] if axes is not None else None


@onnx_to_torch(*_REDUCE)
def reduce(call: OnnxCall):
    keep = bool(call.attrs.get("keepdims", 1))
    axes = _axes(call)
    shape = call.shape(0)
    before, fn, after = _REDUCE[call.op]
    x = call.value(0)
    if not axes and call.attrs.get("noop_with_empty_axes", 0):
        x = call.call(before, x) if before is not None else x
        return call.call(after, x) if after is not None else x
    if not axes:
        if shape is None:
            raise call.unsupported("reducing over all axes needs a static rank")
        axes = list(range(len(shape)))
    if call.op in ("ReduceMax", "ReduceMin") and shape is not None and any(shape[a] == 0 for a in axes):
        return Const(_empty_extreme(call, shape, axes, keep))
    source = call.dtype(0)
    widen = source and np.dtype(source).kind in "iu" and call.op in _FLOAT_ONLY
    if widen:  # torch computes these only in floating point; ONNX's reference casts the result back
        x = call.call(torch.Tensor.to, x, torch.float64)
    if before is not None:
        x = call.call(before, x)
    y = call.call(fn, x, axes, keep)
    if after is not None:
        y = call.call(after, y)
    return call.call(torch.Tensor.to, y, getattr(torch, source)) if widen else y


def _empty_extreme(call: OnnxCall, shape: tuple[int, ...], axes: list[int], keep: bool) -> np.ndarray:
    dtype = np.dtype(call.dtype(0) or "float32")
    low = call.op == "ReduceMax"
    if dtype.kind == "f":
        value = -np.inf if low else np.inf
    elif dtype.kind == "b":
        value = not low
    else:
        value = np.iinfo(dtype).min if low else np.iinfo(dtype).max
    axes = [a % len(shape) for a in axes]
    out = [1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes]
    return np.full(out, value, dtype=dtype)


@onnx_to_torch("Softmax", "LogSoftmax", since=13)
def softmax(call: OnnxCall):
    fn = torch.softmax if call.op == "Softmax" else torch.log_softmax
    return call.call(fn, call.value(0), int(call.attrs.get("axis", -1)))


def hardmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Hardmax: 1 at the first maximum along `axis`, 0 elsewhere."""
    first = torch.argmax(x, dim=axis, keepdim=True)
    return torch.zeros_like(x).scatter(axis, first, 1)


@onnx_to_torch("Hardmax", since=13)
def hardmax_node(call: OnnxCall):
    return call.call(hardmax, call.value(0), int(call.attrs.get("axis", -1)))


def arg_last(x: torch.Tensor, dim: int, keepdim: bool, largest: bool) -> torch.Tensor:
    """The index of the last maximum (minimum): the first one of the reversed axis, counted from the end."""
    fn = torch.argmax if largest else torch.argmin
    return (x.shape[dim] - 1) - fn(torch.flip(x, (dim,)), dim, keepdim)


@onnx_to_torch("ArgMax", "ArgMin")
def argmax(call: OnnxCall):
    axis, keep = int(call.attrs.get("axis", 0)), bool(call.attrs.get("keepdims", 1))
    if call.attrs.get("select_last_index", 0):
        return call.call(arg_last, call.value(0), axis, keep, call.op == "ArgMax")
    fn = torch.argmax if call.op == "ArgMax" else torch.argmin
    return call.call(fn, call.value(0), axis, keep)


def cumulative(x: torch.Tensor, axis: int, exclusive: bool, reverse: bool, product: bool) -> torch.Tensor:
    """ONNX CumSum / CumProd. `exclusive` shifts the running total by one (the first element gets the
    identity), `reverse` accumulates from the end; the result keeps x's dtype (torch's cumsum widens ints)."""
    if reverse:
        x = torch.flip(x, (axis,))
    if exclusive:
        identity = torch.ones_like if product else torch.zeros_like
        x = torch.cat((identity(x.narrow(axis, 0, 1)), x.narrow(axis, 0, x.shape[axis] - 1)), axis)
    y = (torch.cumprod if product else torch.cumsum)(x, axis, dtype=x.dtype)
    return torch.flip(y, (axis,)) if reverse else y


@onnx_to_torch("CumSum", "CumProd")
def cumsum(call: OnnxCall):
    axis = int(call.const(1).reshape(()))
    exclusive, reverse = bool(call.attrs.get("exclusive", 0)), bool(call.attrs.get("reverse", 0))
    product = call.op == "CumProd"
    if not exclusive and not reverse:
        return call.call(torch.cumprod if product else torch.cumsum, call.value(0), axis,
                         dtype=getattr(torch, call.dtype(0) or "float32"))
    return call.call(cumulative, call.value(0), axis, exclusive, reverse, product)
