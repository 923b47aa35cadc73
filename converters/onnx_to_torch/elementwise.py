"""Element-wise ONNX ops: arithmetic, comparisons, bitwise ops, activations (numpy broadcasting equals torch's).

torch's CPU kernels for uint16/uint32/uint64 cover little more than copies and bitwise and/or/xor, so ops on
those types compute on int64 and cast back: exact for uint16/uint32 (every value fits, and the cast back wraps
as ONNX's fixed-width arithmetic does); for uint64 the bits are reinterpreted as int64, which is exact where
two's-complement arithmetic is (add, sub, mul, bitwise ops, left shifts) and for comparisons with the sign bit
flipped, and refused where it is not (division, remainder, right shifts of values ≥ 2**63).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, OnnxCall
from porttax.converters.onnx_to_torch.layers import _module, _param

_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq,
           "Less": torch.lt, "LessOrEqual": torch.le, "Greater": torch.gt, "GreaterOrEqual": torch.ge,
           "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
           "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor}
_COMPARE = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
_UNARY = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
          "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
          "Not": torch.logical_not, "Floor": torch.floor, "Ceil": torch.ceil, "Sin": torch.sin, "Cos": torch.cos,
          "Tan": torch.tan, "Asin": torch.asin, "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh,
          "Cosh": torch.cosh, "Asinh": torch.asinh, "Acosh": torch.acosh, "Atanh": torch.atanh,
          "Softplus": F.softplus, "Softsign": F.softsign, "Sign": torch.sign, "Round": torch.round,
          "IsNaN": torch.isnan, "BitwiseNot": torch.bitwise_not, "Det": torch.linalg.det}
_NARROW_UNSIGNED = ("uint16", "uint32")
_SIGN_BIT = -(2**63)


def _unsigned(call: OnnxCall) -> str | None:
    """'uint16' / 'uint32' / 'uint64' when the node works on a type torch's kernels lack, else None."""
    for i in range(len(call.inputs)):
        if call.has(i) and call.dtype(i) in ("uint16", "uint32", "uint64"):
            return call.dtype(i)
    return None


def _widen(call: OnnxCall, i: int, kind: str, flip_sign: bool = False):
    """Input i as int64: a cast for uint16/uint32, the same bits for uint64 (sign bit flipped when an
    order comparison must see 2**63 and above as large)."""
    x = call.tensor(i)
    if kind in _NARROW_UNSIGNED:
        return call.call(torch.Tensor.to, x, torch.int64)
    x = call.call(torch.Tensor.view, x, torch.int64)
    return call.call(torch.bitwise_xor, x, _SIGN_BIT) if flip_sign else x


def _narrow(call: OnnxCall, y, kind: str):
    if kind in _NARROW_UNSIGNED:
        return call.call(torch.Tensor.to, y, getattr(torch, kind))
    return call.call(torch.Tensor.view, y, torch.uint64)


def _on_int64(call: OnnxCall, fn, kind: str, *, boolean: bool = False, ordered: bool = False, **kwargs):
    args = [_widen(call, i, kind, flip_sign=ordered) for i in range(len(call.inputs)) if call.has(i)]
    y = call.call(fn, *args, **kwargs)
    return y if boolean else _narrow(call, y, kind)


@onnx_to_torch(*_BINARY)
def binary(call: OnnxCall):
    kind = _unsigned(call)
    if kind is not None and call.op not in ("BitwiseAnd", "BitwiseOr", "BitwiseXor", "And", "Or", "Xor", "Equal"):
        return _on_int64(call, _BINARY[call.op], kind, boolean=call.op in _COMPARE,
                         ordered=call.op in _COMPARE and kind == "uint64")
    return call.call(_BINARY[call.op], call.tensor(0), call.value(1))  # torch ops take a scalar second only


@onnx_to_torch("Pow")
def pow_(call: OnnxCall):
    """ONNX Pow's output has the base's type: an integer base with a float exponent is computed in float64
    and truncated back, as the reference does (torch would promote to float)."""
    base, exponent = call.dtype(0), call.dtype(1)
    if base and exponent and base != exponent and np.dtype(base).kind in "iu":
        y = call.call(torch.pow, call.call(torch.Tensor.to, call.tensor(0), torch.float64), call.value(1))
        return call.call(torch.Tensor.to, y, getattr(torch, base))
    return call.call(torch.pow, call.value(0), call.value(1))


@onnx_to_torch("Div")
def div(call: OnnxCall):
    integer = all((call.dtype(i) or "float").startswith(("int", "uint")) for i in range(2))
    kind = _unsigned(call)
    if kind == "uint64":
        raise call.unsupported("uint64 division: torch has no uint64 kernels and int64 division differs for values "
                               "≥ 2**63", hint="cast to int64 before the Div if the values allow it")
    if kind is not None:
        return _on_int64(call, torch.div, kind, rounding_mode="trunc")
    a, b = call.value(0), call.value(1)
    return call.call(torch.div, a, b, rounding_mode="trunc") if integer else call.call(torch.div, a, b)


@onnx_to_torch("Mod")
def mod(call: OnnxCall):
    fn = torch.fmod if call.attrs.get("fmod", 0) else torch.remainder
    kind = _unsigned(call)
    if kind == "uint64":
        raise call.unsupported("uint64 Mod: torch has no uint64 kernels and int64 remainders differ for values "
                               "≥ 2**63",
                               hint="cast to int64 before the Mod if the values allow it")
    if kind is not None:
        return _on_int64(call, fn, kind)
    return call.call(fn, call.value(0), call.value(1))


@onnx_to_torch("BitShift")
def bit_shift(call: OnnxCall):
    left = call.attrs.get("direction") == "LEFT"
    fn = torch.bitwise_left_shift if left else torch.bitwise_right_shift
    kind = _unsigned(call)
    if kind == "uint64" and not left:
        return call.call(_logical_right_shift_u64, call.tensor(0), call.tensor(1))
    if kind is not None:
        return _on_int64(call, fn, kind)
    return call.call(fn, call.value(0), call.value(1))


def _logical_right_shift_u64(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint64 >> shift on int64 bits: an arithmetic shift, then the copies of the sign bit masked off."""
    bits, n = x.view(torch.int64), shift.view(torch.int64)
    shifted = torch.bitwise_right_shift(bits, n)
    keep = torch.bitwise_not(torch.bitwise_left_shift(torch.full_like(bits, -1), 64 - n))
    keep = torch.where(n == 0, torch.full_like(bits, -1), keep)
    return torch.bitwise_and(shifted, keep).view(torch.uint64)


@onnx_to_torch(*_UNARY)
def unary(call: OnnxCall):
    kind = _unsigned(call)
    if kind is not None and call.op in ("BitwiseNot", "Abs", "Neg", "Sign"):
        return _on_int64(call, _UNARY[call.op], kind)
    return call.call(_UNARY[call.op], call.value(0))


@onnx_to_torch("IsInf")
def is_inf(call: OnnxCall):
    neg, pos = bool(call.attrs.get("detect_negative", 1)), bool(call.attrs.get("detect_positive", 1))
    if neg and pos:
        return call.call(torch.isinf, call.value(0))
    if not neg and not pos:
        return call.call(torch.zeros_like, call.value(0), dtype=torch.bool)
    return call.call(torch.isneginf if neg else torch.isposinf, call.value(0))


@onnx_to_torch("Identity", "Dropout")
def identity(call: OnnxCall):
    """Dropout in an inference graph passes its input through; its mask output, when used, is all ones."""
    training = call.op == "Dropout" and call.has(2) and bool(call.const(2))
    if training and (not call.has(1) or float(call.const(1)) != 0.0):
        raise call.unsupported("training_mode=True with a non-zero ratio: dropout draws random numbers, which "
                               "cannot match", hint="export the model in eval mode")
    x = call.value(0)
    if len(call.node.output) > 1 and call.node.output[1]:
        return [x, call.call(torch.ones_like, x, dtype=torch.bool)]
    return x


@onnx_to_torch("LeakyRelu")
def leaky_relu(call: OnnxCall):
    return call.call(F.leaky_relu, call.value(0), float(call.attrs.get("alpha", 0.01)))


@onnx_to_torch("Elu")
def elu(call: OnnxCall):
    return call.call(F.elu, call.value(0), float(call.attrs.get("alpha", 1.0)))


@onnx_to_torch("Celu")
def celu(call: OnnxCall):
    return call.call(F.celu, call.value(0), float(call.attrs.get("alpha", 1.0)))


def selu(x: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """ONNX Selu with its own alpha and gamma (torch's F.selu fixes both)."""
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@onnx_to_torch("Selu")
def selu_node(call: OnnxCall):
    if "alpha" not in call.attrs and "gamma" not in call.attrs:
        return call.call(F.selu, call.value(0))  # the defaults are torch's constants rounded to float32
    return call.call(selu, call.value(0), float(call.attrs.get("alpha", 1.67326319217681884765625)),
                     float(call.attrs.get("gamma", 1.05070102214813232421875)))


def shrink(x: torch.Tensor, lambd: float, bias: float) -> torch.Tensor:
    """ONNX Shrink: x + bias below -lambd, x - bias above lambd, 0 between; integer inputs stay integer."""
    y = torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, torch.zeros_like(x)))
    return y.to(x.dtype)


@onnx_to_torch("Shrink")
def shrink_node(call: OnnxCall):
    lambd, bias = float(call.attrs.get("lambd", 0.5)), float(call.attrs.get("bias", 0.0))
    floating = np.dtype(call.dtype(0) or "float32").kind == "f"
    if floating and bias == lambd:
        return call.call(F.softshrink, call.value(0), lambd)
    if floating and bias == 0.0:
        return call.call(F.hardshrink, call.value(0), lambd)
    return call.call(shrink, call.value(0), lambd, bias)


@onnx_to_torch("ThresholdedRelu")
def thresholded_relu(call: OnnxCall):
    return call.call(F.threshold, call.value(0), float(call.attrs.get("alpha", 1.0)), 0.0)


@onnx_to_torch("Swish")
def swish(call: OnnxCall):
    alpha = float(call.attrs.get("alpha", 1.0))
    x = call.value(0)
    if alpha == 1.0:
        return call.call(F.silu, x)
    return call.call(torch.mul, x, call.call(torch.sigmoid, call.call(torch.mul, x, alpha)))


@onnx_to_torch("SwiGLU")
def swiglu(call: OnnxCall):
    alpha = float(call.attrs.get("alpha", 1.0))
    gate = call.value(0)
    act = call.call(F.silu, gate) if alpha == 1.0 else call.call(
        torch.mul, gate, call.call(torch.sigmoid, call.call(torch.mul, gate, alpha)))
    return call.call(torch.mul, act, call.value(1))


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


@onnx_to_torch("PRelu")
def prelu(call: OnnxCall):
    """A constant per-channel slope (shape (C,), (C, 1, ...) or one value) is nn.PReLU; any other slope
    broadcasts as ONNX says (unidirectionally to X)."""
    shape = call.shape(0)
    if call.is_const(1) and shape is not None and len(shape) >= 2:
        slope = call.const(1)
        channels = shape[1]
        # broadcast right-aligned against X, the slope's first axis must land on X's channel axis
        per_channel = slope.ndim == len(shape) - 1 and slope.shape[0] == channels and slope.size == channels
        if slope.size == 1 and slope.ndim <= len(shape) or per_channel:
            layer = nn.PReLU(num_parameters=int(slope.size))
            layer.weight = _param(slope.reshape(-1).astype(np.dtype(call.dtype(0) or slope.dtype)))
            return _module(call, layer, 1, "prelu", call.value(0))
    x = call.value(0)
    return call.call(torch.where, call.call(torch.lt, x, 0), call.call(torch.mul, x, call.value(1)), x)


@onnx_to_torch("Clip")
def clip(call: OnnxCall):
    lo = call.inputs[1] if call.has(1) else None
    hi = call.inputs[2] if call.has(2) else None
    if lo is None and hi is None:
        return call.value(0)
    integer = np.dtype(call.dtype(0) or "float32").kind in "iu"

    def bound(i: int):
        if not call.has(i):
            return None
        if isinstance(call.inputs[i], Const):
            value = call.const(i).reshape(())
            return int(value) if integer else float(value)
        return call.value(i)

    return call.call(torch.clamp, call.value(0), bound(1), bound(2))


@onnx_to_torch("Where")
def where(call: OnnxCall):
    return call.call(torch.where, call.value(0), call.tensor(1), call.tensor(2))


@onnx_to_torch("Max", "Min")
def max_min(call: OnnxCall):
    fn = torch.maximum if call.op == "Max" else torch.minimum
    kind = _unsigned(call)
    if len(call.inputs) == 1:
        return call.value(0)
    if kind is not None:
        args = [_widen(call, i, kind, flip_sign=kind == "uint64") for i in range(len(call.inputs))]
        out = args[0]
        for other in args[1:]:
            out = call.call(fn, out, other)
        if kind == "uint64":
            out = call.call(torch.bitwise_xor, out, _SIGN_BIT)
        return _narrow(call, out, kind)
    out = call.tensor(0)
    for i in range(1, len(call.inputs)):
        out = call.call(fn, out, call.tensor(i))
    return out


@onnx_to_torch("Sum", "Mean")
def add_all(call: OnnxCall):
    out = call.value(0)
    for i in range(1, len(call.inputs)):
        out = call.call(torch.add, out, call.value(i))
    if call.op == "Mean" and len(call.inputs) > 1:
        out = call.call(torch.div, out, float(len(call.inputs)))
    return out


@onnx_to_torch("Mish")
def mish(call: OnnxCall):
    return call.call(F.mish, call.value(0))
