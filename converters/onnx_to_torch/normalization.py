"""Normalisation ops beyond BatchNorm/LayerNorm: InstanceNormalization → nn.InstanceNorm*d, GroupNormalization →
nn.GroupNorm, LRN → nn.LocalResponseNorm (odd sizes, where torch's window is ONNX's), LpNormalization and
MeanVarianceNormalization as the torch computations ONNX defines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall
from porttax.converters.onnx_to_torch.layers import _module, _param


@onnx_to_torch("InstanceNormalization")
def instance_norm(call: OnnxCall):
    scale, bias = call.const(1), call.const(2)
    rank = len(call.shape(0) or ())
    cls = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}.get(rank)
    if cls is None:
        raise call.unsupported(f"a rank-{rank} input: torch's InstanceNorm takes 3-D to 5-D (N, C, ...)")
    layer = cls(scale.shape[0], eps=float(call.attrs.get("epsilon", 1e-5)), affine=True)
    layer.weight, layer.bias = _param(scale), _param(bias)
    return _module(call, layer, 1, "instance_norm", call.value(0))


def _group_norm(call: OnnxCall, per_group: bool):
    shape = call.shape(0)
    if shape is None or len(shape) < 2:
        raise call.unsupported("needs a static input shape (N, C, ...)")
    groups, channels = int(call.attrs["num_groups"]), shape[1]
    scale, bias = call.const(1), call.const(2)
    if per_group:  # opset 18: one scale and bias per group, i.e. shared by that group's channels
        scale, bias = np.repeat(scale, channels // groups), np.repeat(bias, channels // groups)
    if int(call.attrs.get("stash_type", 1)) != 1:
        raise call.unsupported(f"stash_type={call.attrs['stash_type']}: torch's GroupNorm computes its statistics in "
                               "the input's precision or float32")
    layer = nn.GroupNorm(groups, channels, eps=float(call.attrs.get("epsilon", 1e-5)))
    layer.weight, layer.bias = _param(scale), _param(bias)
    return _module(call, layer, 1, "group_norm", call.value(0))


@onnx_to_torch("GroupNormalization", since=18)
def group_norm_18(call: OnnxCall):
    return _group_norm(call, per_group=True)


@onnx_to_torch("GroupNormalization", since=21)
def group_norm(call: OnnxCall):
    return _group_norm(call, per_group=False)


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    """ONNX LRN for even sizes: the window over channels is [c - floor((size-1)/2), c + ceil((size-1)/2)]
    (torch's nn.LocalResponseNorm puts the larger half before c)."""
    squares = (x * x).unsqueeze(1)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pad = [0, 0] * (x.dim() - 2) + [before, after]
    sums = F.pad(squares, pad).unfold(2, size, 1).sum(-1).squeeze(1)
    return x / (bias + alpha / size * sums) ** beta


@onnx_to_torch("LRN")
def lrn(call: OnnxCall):
    size = int(call.attrs["size"])
    alpha, beta = float(call.attrs.get("alpha", 1e-4)), float(call.attrs.get("beta", 0.75))
    bias = float(call.attrs.get("bias", 1.0))
    if size % 2:
        layer = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=bias)
        return call.ctx.graph.call_module(call.ctx.add_module(call.node.name or "lrn", layer), (call.value(0),))
    return call.call(local_response_norm, call.value(0), size, alpha, beta, bias)


def lp_normalize(x: torch.Tensor, p: int, axis: int) -> torch.Tensor:
    """x / ‖x‖_p along `axis`, 0 where the norm is 0 (ONNX's reference; F.normalize clamps the norm instead)."""
    norm = torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
    return torch.where(norm == 0, torch.zeros_like(x), x / norm)


@onnx_to_torch("LpNormalization")
def lp_normalization(call: OnnxCall):
    p = int(call.attrs.get("p", 2))
    if p not in (1, 2):
        raise call.unsupported(f"p={p}: ONNX defines LpNormalization for p = 1 and 2")
    return call.call(lp_normalize, call.value(0), p, int(call.attrs.get("axis", -1)))


def mean_variance_normalize(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """ONNX MeanVarianceNormalization, as its function body computes it: (x - E[x]) / (sqrt(E[x²] - E[x]²) + 1e-9)."""
    mean = x.mean(axes, keepdim=True)
    std = torch.sqrt((x * x).mean(axes, keepdim=True) - mean * mean)
    return (x - mean) / (std + 1e-9)


@onnx_to_torch("MeanVarianceNormalization")
def mvn(call: OnnxCall):
    axes = [int(a) for a in call.attrs.get("axes", [0, 2, 3])]
    return call.call(mean_variance_normalize, call.value(0), axes)
