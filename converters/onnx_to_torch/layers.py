"""ONNX patterns that are known layers become the torch module, named after the exporter's weight name:
Conv → nn.Conv1d/2d/3d, Gemm and MatMul(+Add) with a constant weight → nn.Linear, BatchNormalization →
nn.BatchNorm*d, LayerNormalization → nn.LayerNorm. Weights are carried with their layout (Gemm's
transB, MatMul's (in, out) kernel transposed to Linear's (out, in)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, OnnxCall, module_path


def _param(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(array, copy=True)), requires_grad=False)


def _source_name(call: OnnxCall, i: int) -> str:
    return call.ctx.origin.get(call.node.input[i], call.node.input[i])


def _name(call: OnnxCall, weight_input: int, fallback: str) -> str:
    return (module_path(_source_name(call, weight_input)) or scope_path(call.node)
            or (call.node.name or fallback).replace("/", ".").strip("."))


def scope_path(node) -> str | None:
    """The module path torch's exporter records per node (`pkg.torch.onnx.name_scopes`): its optimiser
    may rename a weight (`val_28`, pre-transposed), but the node still says which module it ran in."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value)[:-1] if isinstance(s, str) and s]
            except (ValueError, SyntaxError):
                return None
            return module_path(f"{scopes[-1]}.weight") if scopes else None
    return None


def _module(call: OnnxCall, module: nn.Module, weight_input: int, fallback: str, *args):
    name = call.ctx.add_module(_name(call, weight_input, fallback), module)
    return call.ctx.graph.call_module(name, args)


def _same_pads(call: OnnxCall, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int] | None:
    auto_pad = call.attrs.get("auto_pad", "NOTSET")
    shape = call.shape(0)
    if auto_pad in ("NOTSET", "VALID"):
        pads = call.attrs.get("pads", [0] * 2 * len(kernel)) if auto_pad == "NOTSET" else [0] * 2 * len(kernel)
        return list(pads)
    if shape is None:
        raise call.unsupported(f"auto_pad={auto_pad} needs a static input shape")
    begins, ends = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(large if auto_pad == "SAME_LOWER" else small)
        ends.append(small if auto_pad == "SAME_LOWER" else large)
    return begins + ends


def _pad_input(call: OnnxCall, x, pads: list[int], value: float = 0.0):
    """Asymmetric pads as an explicit F.pad (torch layers take only symmetric padding)."""
    n = len(pads) // 2
    flat: list[int] = []
    for i in reversed(range(n)):
        flat += [pads[i], pads[i + n]]
    return call.call(F.pad, x, flat, value=value)


@onnx_to_torch("Conv")
def conv(call: OnnxCall):
    weight = call.const(1)
    bias = call.const(2) if call.has(2) else None
    rank = weight.ndim - 2
    kernel = list(call.attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    groups = int(call.attrs.get("group", 1))
    pads = _same_pads(call, kernel, strides, dilations)
    x = call.value(0)
    symmetric = pads[:rank] == pads[rank:]
    if not symmetric:
        x = _pad_input(call, x, pads)
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank]
    layer = cls(weight.shape[1] * groups, weight.shape[0], kernel, stride=strides,
                padding=pads[:rank] if symmetric else 0, dilation=dilations, groups=groups, bias=bias is not None)
    layer.weight = _param(weight)
    if bias is not None:
        layer.bias = _param(bias)
    return _module(call, layer, 1, "conv", x)


@onnx_to_torch("Gemm")
def gemm(call: OnnxCall):
    alpha, beta = float(call.attrs.get("alpha", 1.0)), float(call.attrs.get("beta", 1.0))
    if call.attrs.get("transA", 0) or not call.is_const(1) or alpha != 1.0:
        a = call.value(0)
        if call.attrs.get("transA", 0):
            a = call.call(torch.transpose, a, 0, 1)
        b = call.value(1)
        if call.attrs.get("transB", 0):
            b = call.call(torch.transpose, b, 0, 1)
        out = call.call(torch.mul, call.call(torch.matmul, a, b), alpha)
        return call.call(torch.add, out, call.call(torch.mul, call.value(2), beta)) if call.has(2) else out
    weight = call.const(1)
    weight = weight if call.attrs.get("transB", 0) else weight.T
    bias = call.const(2) * beta if call.is_const(2) else None
    if bias is not None and bias.shape != (weight.shape[0],):
        bias = np.broadcast_to(bias, (weight.shape[0],)).copy() if bias.size in (1, weight.shape[0]) else None
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = _param(weight)
    if bias is not None:
        layer.bias = _param(bias)
    out = _module(call, layer, 1, "linear", call.value(0))
    if call.has(2) and bias is None:
        out = call.call(torch.add, out, call.call(torch.mul, call.value(2), beta))
    return out


@onnx_to_torch("MatMul")
def matmul(call: OnnxCall):
    if not call.is_const(1) or call.const(1).ndim != 2:
        return call.call(torch.matmul, call.value(0), call.value(1))
    weight = call.const(1)  # (in, out): x @ W
    bias, add = _sole_bias_add(call, weight.shape[1])
    layer = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    layer.weight = _param(weight.T)
    if bias is not None:
        layer.bias = _param(bias)
    bias_name = (add.input[1] if add.input[0] == call.node.output[0] else add.input[0]) if add is not None else None
    path = (module_path(_source_name(call, 1)) or module_path(call.ctx.origin.get(bias_name or "", bias_name))
            or scope_path(call.node) or (call.node.name or "linear").replace("/", ".").strip("."))
    module_name = call.ctx.add_module(path, layer)
    out = call.ctx.graph.call_module(module_name, (call.value(0),))
    if add is not None:
        call.ctx.absorbed[add.output[0]] = (module_name, out)
    return out


def _sole_bias_add(call: OnnxCall, width: int):
    """The bias of `MatMul → Add(constant of shape (width,))` when the Add is the MatMul's only consumer."""
    users = call.ctx.consumers.get(call.node.output[0], [])
    if len(users) != 1 or users[0] is None or users[0].op_type != "Add":
        return None, None
    add = users[0]
    other = add.input[1] if add.input[0] == call.node.output[0] else add.input[0]
    value = call.ctx.env.get(other)
    if not isinstance(value, Const) or value.value.shape != (width,):
        return None, None
    return value.value, add


def batch_norm_training(x, scale, bias, mean, var, eps: float, momentum: float):
    """BatchNormalization with training_mode=1: normalised by the batch's own mean and (biased) variance,
    with the running statistics updated by `momentum` — deterministic, so it converts too."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    batch_mean, batch_var = x.mean(dims), x.var(dims, unbiased=False)
    y = (x - batch_mean.reshape(shape)) / torch.sqrt(batch_var.reshape(shape) + eps) * scale.reshape(shape) \
        + bias.reshape(shape)
    return y, mean * momentum + batch_mean * (1 - momentum), var * momentum + batch_var * (1 - momentum)


@onnx_to_torch("BatchNormalization")
def batch_norm(call: OnnxCall):
    if call.attrs.get("training_mode", 0):
        eps, momentum = float(call.attrs.get("epsilon", 1e-5)), float(call.attrs.get("momentum", 0.9))
        y = call.call(batch_norm_training, call.value(0), *[call.tensor(i) for i in range(1, 5)], eps, momentum)
        return call.unpack(y, 3)
    scale, bias, mean, var = (call.const(i) for i in range(1, 5))
    rank = len(call.shape(0) or (0, 0, 0, 0))
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank, nn.BatchNorm2d)
    layer = cls(scale.shape[0], eps=float(call.attrs.get("epsilon", 1e-5)),
                momentum=1.0 - float(call.attrs.get("momentum", 0.9)))
    layer.weight, layer.bias = _param(scale), _param(bias)
    layer.running_mean.copy_(torch.from_numpy(np.array(mean, copy=True)))
    layer.running_var.copy_(torch.from_numpy(np.array(var, copy=True)))
    layer.eval()
    return _module(call, layer, 1, "batch_norm", call.value(0))


@onnx_to_torch("LayerNormalization", since=17)
def layer_norm(call: OnnxCall):
    axis = int(call.attrs.get("axis", -1))
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    axis %= len(shape)
    normalized = tuple(shape[axis:])
    eps = float(call.attrs.get("epsilon", 1e-5))
    if any(call.node.output[1:]):  # Mean / InvStdDev wanted too (training exporters keep them)
        bias = call.tensor(2) if call.has(2) else None
        return call.unpack(call.call(layer_norm_with_stats, call.value(0), call.tensor(1), bias, axis, eps), 3)
    scale = call.const(1)
    bias = call.const(2) if call.has(2) else None
    layer = nn.LayerNorm(normalized, eps=eps, bias=bias is not None)
    layer.weight = _param(np.broadcast_to(scale, normalized).copy())
    if bias is not None:
        layer.bias = _param(np.broadcast_to(bias, normalized).copy())
    return _module(call, layer, 1, "layer_norm", call.value(0))


def layer_norm_with_stats(x, scale, bias, axis: int, eps: float):
    """ONNX LayerNormalization with its optional outputs: (Y, Mean, InvStdDev), the statistics kept with
    the reduced axes as size 1 and computed in float32 (the default stash_type)."""
    dims = tuple(range(axis, x.dim()))
    wide = x.to(torch.float32)
    mean = wide.mean(dims, keepdim=True)
    inv_std = torch.rsqrt((wide - mean).square().mean(dims, keepdim=True) + eps)
    y = ((wide - mean) * inv_std).to(x.dtype) * scale
    return (y + bias if bias is not None else y), mean, inv_std


def window_sum(x, kernel: list[int], strides: list[int], dilations: list[int], pads: list[int], ceil: bool):
    """Sums over ONNX pooling windows of x zero-padded by `pads` (begins then ends); ceil_mode windows that
    overhang the padded input add nothing for the overhang. A depthwise convolution with a kernel of ones,
    so any dilation, stride and padding works (torch's avg_pool takes no dilation and at most half-kernel
    pads)."""
    rank = len(kernel)
    spatial = x.shape[2:]
    ends = list(pads[rank:])
    for i in range(rank):
        reach = dilations[i] * (kernel[i] - 1) + 1
        padded = spatial[i] + pads[i] + pads[rank + i]
        out = _pool_out(spatial[i], pads[i], pads[rank + i], reach, strides[i], ceil)
        ends[i] += max(0, (out - 1) * strides[i] + reach - padded)
    flat: list[int] = []
    for i in reversed(range(rank)):
        flat += [pads[i], ends[i]]
    n, c = x.shape[0], x.shape[1]
    planes = F.pad(x.reshape(n * c, 1, *spatial), flat)
    conv = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    ones = torch.ones((1, 1, *kernel), dtype=x.dtype, device=x.device)
    y = conv(planes, ones, stride=strides, dilation=dilations)
    return y.reshape(n, c, *y.shape[2:])


def _pool_out(size: int, begin: int, end: int, reach: int, stride: int, ceil: bool) -> int:
    """Output length of an ONNX pool; with ceil_mode the last window must start inside the input or the
    begin padding (torch's rule, which ONNX's reference follows)."""
    span = size + begin + end - reach
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + begin:
        out -= 1
    return out


def average_pool(x, kernel: list[int], strides: list[int], dilations: list[int], pads: list[int], ceil: bool,
                 count_pad: bool):
    """ONNX AveragePool where torch's avg_pool cannot express it: window sums divided by how many input
    (and, with count_include_pad, padding) elements each window covers."""
    sums = window_sum(x, kernel, strides, dilations, pads, ceil)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    if count_pad:
        rank = len(kernel)
        flat: list[int] = []
        for i in reversed(range(rank)):
            flat += [pads[i], pads[rank + i]]
        ones = F.pad(ones, flat, value=1.0)
        pads = [0] * 2 * rank
    counts = window_sum(ones, kernel, strides, dilations, pads, ceil)
    return sums / counts


def _pool_args(call: OnnxCall):
    kernel = list(call.attrs["kernel_shape"])
    rank = len(kernel)
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    pads = _same_pads(call, kernel, strides, dilations)
    return kernel, strides, dilations, pads, rank


@onnx_to_torch("MaxPool")
def max_pool(call: OnnxCall):
    kernel, strides, dilations, pads, rank = _pool_args(call)
    x = call.value(0)
    ceil = bool(call.attrs.get("ceil_mode", 0))
    padded = pads[:rank] != pads[rank:] or any(p > k // 2 for p, k in zip(pads, kernel * 2))
    if padded:
        x = _pad_input(call, x, pads, value=float("-inf"))
        pads = [0] * 2 * rank
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
    if len(call.node.output) < 2 or not call.node.output[1]:
        return call.call(fn, x, kernel, strides, pads[:rank], dilations, ceil)
    if padded:
        raise call.unsupported("the Indices output with pads torch's max_pool cannot take (asymmetric, or more than "
                               "half the kernel)")
    values, plane = call.unpack(call.call(fn, x, kernel, strides, pads[:rank], dilations, ceil, True), 2)
    return [values, call.call(onnx_pool_indices, plane, call.shape(0), int(call.attrs.get("storage_order", 0)))]


def onnx_pool_indices(plane, shape: tuple[int, ...], storage_order: int):
    """torch's max-pool indices count within each (n, c) plane, row-major; ONNX's count over the whole
    tensor, row-major (storage_order 0) or with the spatial axes column-major (1, 2-D only)."""
    n, c, *spatial = shape
    size = int(np.prod(spatial))
    if storage_order:
        h, w = spatial
        plane = (plane % w) * h + plane // w
    offsets = torch.arange(n * c, device=plane.device).reshape(n, c, *([1] * len(spatial))) * size
    return plane + offsets


@onnx_to_torch("AveragePool")
def avg_pool(call: OnnxCall):
    kernel, strides, dilations, pads, rank = _pool_args(call)
    x = call.value(0)
    count_pad = bool(call.attrs.get("count_include_pad", 0))
    ceil = bool(call.attrs.get("ceil_mode", 0))
    symmetric = pads[:rank] == pads[rank:] and all(p <= k // 2 for p, k in zip(pads, kernel))
    if not symmetric or any(d != 1 for d in dilations):
        return call.call(average_pool, x, kernel, strides, dilations, pads, ceil, count_pad)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
    return call.call(fn, x, kernel, strides, pads[:rank], ceil, count_pad)


@onnx_to_torch("GlobalAveragePool", "GlobalMaxPool")
def global_pool(call: OnnxCall):
    shape = call.shape(0)
    dims = list(range(2, len(shape))) if shape else [2, 3]
    fn = torch.mean if call.op == "GlobalAveragePool" else torch.amax
    return call.call(fn, call.value(0), dims, True)


@onnx_to_torch("Einsum", since=12)
def einsum(call: OnnxCall):
    return call.call(torch.einsum, call.attrs["equation"], *[call.value(i) for i in range(len(call.inputs))])

