"""Quantisation ops. A QuantizeLinear whose only consumer is a DequantizeLinear with the same scale and zero point
(the QDQ pairs quantisation tools insert) becomes one `QDQFakeQuantize` module: it quantises and dequantises
in float — round half to even of x / scale, plus the zero point, clamped to the integer range, minus the zero
point, times the scale — which is what onnxruntime computes for the pair, so the port keeps the rounding error
the quantised model has instead of silently running in full precision.

A lone QuantizeLinear gives the integer tensor, a lone DequantizeLinear the float one (per-tensor, per-axis
and blocked scales). DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv compute
as ONNX defines them (integer products exact in int64 / float64). 4-bit and 2-bit types are refused: torch
has no tensors of them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, OnnxCall
from porttax.converters.onnx_to_torch.layers import _same_pads, scope_path
from porttax.converters.onnx_to_torch.shape import _DTYPES, cast_float8

_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767)}
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


def _expand(value: np.ndarray, shape: tuple[int, ...], axis: int, block: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast against x: a scalar stays, a per-axis vector lies along
    `axis`, a blocked one is repeated block_size times along it (the last block may be cut short)."""
    if value.ndim == 0 or value.size == 1:
        return value.reshape(())
    if not block:
        dims = [1] * len(shape)
        dims[axis] = value.size
        return value.reshape(dims)
    return np.repeat(value, block, axis=axis).take(range(shape[axis]), axis=axis)


def _quant_type(call: OnnxCall):
    if call.has(2):
        name = call.dtype(2)
        dtype = getattr(torch, name, None) if name else None
    else:
        dtype = _DTYPES.get(int(call.attrs.get("output_dtype", 0)) or 2)
    if dtype not in _RANGES and dtype not in _FLOAT8:
        raise call.unsupported(f"quantised type {call.dtype(2) or call.attrs.get('output_dtype')}: torch holds "
                               "8- and 16-bit integer and float8 tensors only")
    return dtype


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, dtype: torch.dtype,
             precision: torch.dtype | None, saturate: bool) -> torch.Tensor:
    """ONNX QuantizeLinear: round half to even of x / scale, plus the zero point, saturated to `dtype`."""
    if precision is not None:
        x, scale = x.to(precision), scale.to(precision)
    scaled = x / scale
    if dtype in _FLOAT8:
        return cast_float8(scaled, dtype, saturate)
    q = torch.round(scaled).to(torch.int32)
    if zero_point is not None:
        q = q + zero_point.to(torch.int32)
    low, high = _RANGES[dtype]
    return torch.clamp(q, low, high).to(dtype)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    """ONNX DequantizeLinear: (q - zero point) * scale, computed in float32, in the scale's type."""
    wide = q.to(torch.float32)
    if zero_point is not None and q.dtype not in _FLOAT8:
        wide = wide - zero_point.to(torch.float32)
    return (wide * scale).to(dtype)


class QDQFakeQuantize(nn.Module):
    """A QuantizeLinear → DequantizeLinear pair kept as fake quantisation (quantise, then dequantise, in
    float): round half to even of x / scale, plus zero point, clamped to [qmin, qmax], minus zero point,
    times scale — onnxruntime's arithmetic for the pair."""

    def __init__(self, scale: np.ndarray, zero_point: np.ndarray, qmin: int, qmax: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.array(scale, copy=True)))
        self.register_buffer("zero_point", torch.from_numpy(np.array(zero_point, dtype=np.float32)))
        self.qmin, self.qmax, self.out_dtype = qmin, qmax, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
        return ((q - self.zero_point) * self.scale.to(torch.float32)).to(self.out_dtype)

    def extra_repr(self) -> str:
        return f"qmin={self.qmin}, qmax={self.qmax}, scale={tuple(self.scale.shape)}"


def expand_scale(value: torch.Tensor, shape: tuple[int, ...], axis: int, block: int) -> torch.Tensor:
    """_expand for a scale or zero point the graph computes at run time (DynamicQuantizeLinear's function
    body feeds QuantizeLinear that way)."""
    if value.numel() == 1:
        return value.reshape(())
    if not block:
        dims = [1] * len(shape)
        dims[axis] = value.numel()
        return value.reshape(dims)
    return torch.repeat_interleave(value, block, dim=axis).narrow(axis, 0, shape[axis])


def _scale_zp(call: OnnxCall, scale_input: int, zp_input: int):
    """(scale, zero point or None) as fx values shaped to broadcast against input 0."""
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    axis, block = int(call.attrs.get("axis", 1)) % max(len(shape), 1), int(call.attrs.get("block_size", 0))

    def one(i: int):
        if not call.has(i):
            return None
        if call.is_const(i):
            return call.ctx.tensor(_expand(call.const(i), shape, axis, block), call.node.input[i])
        return call.call(expand_scale, call.value(i), shape, axis, block)

    return one(scale_input), one(zp_input)


def _sole_dequantize(call: OnnxCall):
    """The DequantizeLinear that alone reads this QuantizeLinear's output, with the same scale, zero point,
    axis and block size — the pair fake quantisation replaces — or None."""
    users = call.ctx.consumers.get(call.node.output[0], [])
    if len(users) != 1 or users[0] is None or users[0].op_type != "DequantizeLinear":
        return None
    dq = users[0]
    env = call.ctx.env
    from onnx import helper

    theirs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
    same = all(int(call.attrs.get(k, d)) == int(theirs.get(k, d)) for k, d in (("axis", 1), ("block_size", 0)))
    for mine, theirs in ((1, 1), (2, 2)):
        a = env.get(call.node.input[mine]) if mine < len(call.node.input) and call.node.input[mine] else None
        b = env.get(dq.input[theirs]) if theirs < len(dq.input) and dq.input[theirs] else None
        if (a is None) != (b is None) or (a is not None and not (isinstance(a, Const) and isinstance(b, Const)
                                                                 and np.array_equal(a.value, b.value))):
            return None
    if not same or any(a.name == "output_dtype" for a in dq.attribute):
        return None
    return dq


@onnx_to_torch("QuantizeLinear", since=13)
def quantize_linear(call: OnnxCall):
    dtype = _quant_type(call)
    precision = _DTYPES.get(int(call.attrs.get("precision", 0))) if call.attrs.get("precision") else None
    dq = _sole_dequantize(call) if dtype in _RANGES and precision is None else None
    if dq is not None:
        shape = call.shape(0)
        axis, block = int(call.attrs.get("axis", 1)) % max(len(shape), 1), int(call.attrs.get("block_size", 0))
        scale = _expand(call.const(1), shape, axis, block)
        zp = _expand(call.const(2), shape, axis, block) if call.has(2) else np.zeros((), np.float32)
        low, high = _RANGES[dtype]
        layer = QDQFakeQuantize(scale, zp, low, high, getattr(torch, str(scale.dtype)))
        name = call.ctx.add_module(scope_path(call.node) or f"{call.node.name or 'qdq'}_fake_quant", layer)
        out = call.ctx.graph.call_module(name, (call.value(0),))
        call.ctx.absorbed[dq.output[0]] = (name, out)
        return out
    scale, zp = _scale_zp(call, 1, 2)
    return call.call(quantize, call.value(0), scale, zp, dtype, precision, bool(call.attrs.get("saturate", 1)))


@onnx_to_torch("DequantizeLinear", since=13)
def dequantize_linear(call: OnnxCall):
    source = call.dtype(0)
    if source is None or getattr(torch, source, None) not in (*_RANGES, *_FLOAT8, torch.int32):
        raise call.unsupported(f"dequantising {source}: torch holds 8-, 16- and 32-bit integer and float8 tensors only")
    scale, zp = _scale_zp(call, 1, 2)
    out = _DTYPES.get(int(call.attrs.get("output_dtype", 0))) if call.attrs.get("output_dtype") else None
    return call.call(dequantize, call.value(0), scale, zp, out or getattr(torch, call.dtype(1) or "float32"))


def dynamic_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX DynamicQuantizeLinear: uint8 over the range [min(x, 0), max(x, 0)]; (y, scale, zero point)."""
    high = torch.clamp(x.max().to(torch.float32), min=0.0)
    low = torch.clamp(x.min().to(torch.float32), max=0.0)
    span = torch.where(high == low, torch.ones_like(high), high - low)
    scale = span / 255.0
    zero = torch.round(torch.clamp(0.0 - low / scale, 0.0, 255.0))
    y = torch.clamp(torch.round(x / scale) + zero, 0, 255).to(torch.uint8)
    return y, scale.to(x.dtype), zero.to(torch.uint8)


@onnx_to_torch("DynamicQuantizeLinear")
def dynamic_quantize_linear(call: OnnxCall):
    return call.unpack(call.call(dynamic_quantize, call.value(0)), 3)


def _centered(x: torch.Tensor, zero_point: torch.Tensor | None, per_row: bool = False) -> torch.Tensor:
    wide = x.to(torch.int64)
    if zero_point is None:
        return wide
    zp = zero_point.to(torch.int64)
    if per_row and zp.dim() == 1 and zp.numel() > 1:
        zp = zp.reshape(-1, 1)
    return wide - zp


def matmul_integer(a, b, a_zero_point, b_zero_point) -> torch.Tensor:
    """ONNX MatMulInteger: (a - a_zp) @ (b - b_zp) in int32 (computed in int64, exact)."""
    return torch.matmul(_centered(a, a_zero_point, per_row=True), _centered(b, b_zero_point)).to(torch.int32)


@onnx_to_torch("MatMulInteger")
def matmul_integer_node(call: OnnxCall):
    return call.call(matmul_integer, call.value(0), call.value(1), call.tensor(2) if call.has(2) else None,
                     call.tensor(3) if call.has(3) else None)


def qlinear_matmul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, dtype: torch.dtype) -> torch.Tensor:
    """ONNX QLinearMatMul: the integer product rescaled by a_scale * b_scale / y_scale (float64, as ONNX's
    reference), plus y's zero point, rounded half to even and saturated."""
    product = torch.matmul(_centered(a, a_zp, per_row=True), _centered(b, b_zp)).to(torch.float64)
    y = product * (a_scale * b_scale / y_scale).to(torch.float64) + y_zp.to(torch.float64)
    low, high = _RANGES[dtype]
    return torch.clamp(torch.round(y), low, high).to(dtype)


@onnx_to_torch("QLinearMatMul")
def qlinear_matmul_node(call: OnnxCall):
    dtype = getattr(torch, call.dtype(7) or "uint8")
    return call.call(qlinear_matmul, *[call.tensor(i) for i in range(8)], dtype)


def _conv_args(call: OnnxCall, weight_shape: tuple[int, ...]):
    rank = len(weight_shape) - 2
    kernel = list(call.attrs.get("kernel_shape", weight_shape[2:]))
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    pads = _same_pads(call, kernel, strides, dilations)
    return rank, strides, dilations, pads, int(call.attrs.get("group", 1))


def integer_conv(x, w, pads: list[int], strides: list[int], dilations: list[int], groups: int):
    """A convolution of integer tensors, exact: float64 holds every partial sum of 8-bit products."""
    rank = len(strides)
    flat: list[int] = []
    for i in reversed(range(rank)):
        flat += [pads[i], pads[rank + i]]
    conv = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    return conv(F.pad(x.to(torch.float64), flat), w.to(torch.float64), stride=strides, dilation=dilations,
                groups=groups)


def conv_integer(x, w, x_zp, w_zp, pads, strides, dilations, groups) -> torch.Tensor:
    """ONNX ConvInteger: conv(x - x_zp, w - w_zp) in int32; a per-channel w_zp lies along the output channels."""
    if w_zp is not None and w_zp.dim() == 1 and w_zp.numel() > 1:
        w_zp = w_zp.reshape(-1, *([1] * (w.dim() - 1)))
    return torch.round(integer_conv(_centered(x, x_zp), _centered(w, w_zp), pads, strides, dilations,
                                    groups)).to(torch.int32)


@onnx_to_torch("ConvInteger")
def conv_integer_node(call: OnnxCall):
    rank, strides, dilations, pads, groups = _conv_args(call, call.shape(1))
    return call.call(conv_integer, call.value(0), call.tensor(1), call.tensor(2) if call.has(2) else None,
                     call.tensor(3) if call.has(3) else None, pads, strides, dilations, groups)


def qlinear_conv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias, pads, strides, dilations, groups,
                 dtype: torch.dtype) -> torch.Tensor:
    """ONNX QLinearConv: the integer convolution (plus the int32 bias) rescaled by x_scale * w_scale / y_scale
    (per output channel where w_scale is), plus y's zero point, saturated and rounded half to even."""
    spatial = [1] * (w.dim() - 2)
    if w_zp.dim() == 1 and w_zp.numel() > 1:
        w_zp = w_zp.reshape(-1, 1, *spatial)
    acc = integer_conv(_centered(x, x_zp), _centered(w, w_zp), pads, strides, dilations, groups)
    if bias is not None:
        acc = acc + bias.to(torch.float64).reshape(1, -1, *spatial)
    if w_scale.dim() == 1 and w_scale.numel() > 1:
        w_scale = w_scale.reshape(1, -1, *spatial)
    y = acc * (x_scale * w_scale / y_scale).to(torch.float64) + y_zp.to(torch.float64)
    low, high = _RANGES[dtype]
    return torch.round(torch.clamp(y, low, high)).to(dtype)


@onnx_to_torch("QLinearConv")
def qlinear_conv_node(call: OnnxCall):
    rank, strides, dilations, pads, groups = _conv_args(call, call.shape(3))
    dtype = getattr(torch, call.dtype(7) or "uint8")
    return call.call(qlinear_conv, *[call.tensor(i) for i in range(8)], call.tensor(8) if call.has(8) else None,
                     pads, strides, dilations, groups, dtype)
