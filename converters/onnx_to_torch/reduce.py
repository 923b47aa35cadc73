"""Reductions and normalised exponentials. Axes come from an attribute before opset 18 (13 for
ReduceSum) and from a constant input after."""

from __future__ import annotations

import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_REDUCE = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax, "ReduceMin": torch.amin,
           "ReduceProd": None, "ReduceL2": None, "ReduceSumSquare": None}


def _axes(call: OnnxCall) -> list[int] | None:
    if call.has(1):
        return [int(a) for a in call.const(1).reshape(-1)]
    axes = call.attrs.get("axes")
    return [int(a) for a in axes] if axes is not None else None


@onnx_to_torch("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2")
def reduce(call: OnnxCall):
    keep = bool(call.attrs.get("keepdims", 1))
    axes = _axes(call)
    shape = call.shape(0)
    if not axes:
        if call.attrs.get("noop_with_empty_axes", 0):
            return call.value(0)
        axes = list(range(len(shape))) if shape is not None else None
    if axes is None:
        raise call.unsupported("reducing over all axes needs a static rank")
    x = call.value(0)
    if call.op == "ReduceSumSquare":
        return call.call(torch.sum, call.call(torch.mul, x, x), axes, keep)
    if call.op == "ReduceL2":
        return call.call(torch.sqrt, call.call(torch.sum, call.call(torch.mul, x, x), axes, keep))
    return call.call(_REDUCE[call.op], x, axes, keep)


@onnx_to_torch("Softmax", "LogSoftmax", since=13)
def softmax(call: OnnxCall):
    fn = torch.softmax if call.op == "Softmax" else torch.log_softmax
    return call.call(fn, call.value(0), int(call.attrs.get("axis", -1)))


@onnx_to_torch("ArgMax", "ArgMin")
def argmax(call: OnnxCall):
    if call.attrs.get("select_last_index", 0):
        raise call.unsupported("select_last_index=1")
    fn = torch.argmax if call.op == "ArgMax" else torch.argmin
    return call.call(fn, call.value(0), int(call.attrs.get("axis", 0)), bool(call.attrs.get("keepdims", 1)))


@onnx_to_torch("CumSum")
def cumsum(call: OnnxCall):
    if call.attrs.get("exclusive", 0) or call.attrs.get("reverse", 0):
        raise call.unsupported("exclusive or reverse CumSum")
    return call.call(torch.cumsum, call.value(0), int(call.const(1)))
