"""Element-wise ONNX ops: arithmetic, comparisons, activations (numpy broadcasting equals torch's)."""

from __future__ import annotations

import numpy as np

import torch
import torch.nn.functional as F

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow, "Equal": torch.eq,
           "Less": torch.lt, "LessOrEqual": torch.le, "Greater": torch.gt, "GreaterOrEqual": torch.ge,
           "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}
_UNARY = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
          "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
          "Not": torch.logical_not, "Floor": torch.floor, "Ceil": torch.ceil, "Sin": torch.sin, "Cos": torch.cos,
          "Softplus": F.softplus, "Sign": torch.sign, "Round": torch.round, "IsNaN": torch.isnan}


@onnx_to_torch(*_BINARY)
def binary(call: OnnxCall):
    return call.call(_BINARY[call.op], call.value(0), call.value(1))


@onnx_to_torch("Div")
def div(call: OnnxCall):
    a, b = call.value(0), call.value(1)
    integer = all((call.ctx.shapes.get(n, (None, None))[1] or "float").startswith(("int", "uint")) for n in call.node.input)
    return call.call(torch.div, a, b, rounding_mode="trunc") if integer else call.call(torch.div, a, b)


@onnx_to_torch(*_UNARY)
def unary(call: OnnxCall):
    return call.call(_UNARY[call.op], call.value(0))


@onnx_to_torch("Identity", "Dropout")
def identity(call: OnnxCall):
    return call.value(0)  # Dropout in an inference graph passes its input through


@onnx_to_torch("LeakyRelu")
def leaky_relu(call: OnnxCall):
    return call.call(F.leaky_relu, call.value(0), float(call.attrs.get("alpha", 0.01)))


@onnx_to_torch("Elu")
def elu(call: OnnxCall):
    return call.call(F.elu, call.value(0), float(call.attrs.get("alpha", 1.0)))


@onnx_to_torch("HardSigmoid")
def hard_sigmoid(call: OnnxCall):
    alpha, beta = float(call.attrs.get("alpha", 0.2)), float(call.attrs.get("beta", 0.5))
    return call.call(torch.clamp, call.call(torch.add, call.call(torch.mul, call.value(0), alpha), beta), 0.0, 1.0)


@onnx_to_torch("HardSwish", since=14)
def hard_swish(call: OnnxCall):
    return call.call(F.hardswish, call.value(0))


@onnx_to_torch("Gelu", since=20)
def gelu(call: OnnxCall):
    return call.call(F.gelu, call.value(0), approximate=call.attrs.get("approximate", "none"))


@onnx_to_torch("Clip")
def clip(call: OnnxCall):
    lo = float(call.const(1)) if call.has(1) else None
    hi = float(call.const(2)) if call.has(2) else None
    return call.call(torch.clamp, call.value(0), lo, hi)


@onnx_to_torch("Where")
def where(call: OnnxCall):
    return call.call(torch.where, call.value(0), call.value(1), call.value(2))


@onnx_to_torch("Max", "Min")
def max_min(call: OnnxCall):
    fn = torch.maximum if call.op == "Max" else torch.minimum
    out = call.value(0)
    for i in range(1, len(call.inputs)):
        other = call.value(i)
        out = call.call(fn, out, other if not isinstance(other, (int, float)) else call.ctx.tensor(
            np.asarray(call.const(i)), call.node.input[i]))
    return out


@onnx_to_torch("Sum")
def add_all(call: OnnxCall):
    out = call.value(0)
    for i in range(1, len(call.inputs)):
        out = call.call(torch.add, out, call.value(i))
    return out


@onnx_to_torch("Mod")
def mod(call: OnnxCall):
    fn = torch.fmod if call.attrs.get("fmod", 0) else torch.remainder
    return call.call(fn, call.value(0), call.value(1))


@onnx_to_torch("Mish")
def mish(call: OnnxCall):
    return call.call(F.mish, call.value(0))

