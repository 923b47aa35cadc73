"""Spatial ops: ConvTranspose → nn.ConvTranspose1d/2d/3d, LpPool and GlobalLpPool, DepthToSpace (CRD is
torch's pixel_shuffle; DCR a reshape-permute), SpaceToDepth, Col2Im (torch's fold for 2-D), MaxUnpool and
CenterCropPad. Shapes must be static: every size is fixed at conversion time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall
from porttax.converters.onnx_to_torch.layers import _module, _param, _same_pads, window_sum


def _ints(call: OnnxCall, i: int) -> list[int]:
    return [int(v) for v in call.const(i).reshape(-1)]


def _static_shape(call: OnnxCall, i: int = 0) -> tuple[int, ...]:
    shape = call.shape(i)
    if shape is None:
        raise call.unsupported(f"input {i} needs a static shape (ONNX shape inference could not give one)")
    return shape


# ---------------------------------------------------------------- ConvTranspose


def _transpose_pads(call: OnnxCall, in_sizes, kernel, strides, dilations, out_pad) -> tuple[list[int], list[int]]:
    """(begins, ends) to crop from the full transposed-convolution output (negative: extend), following
    ONNX: explicit pads, or pads derived from output_shape / auto_pad SAME_* (SAME_UPPER puts the odd one
    at the end), as ONNX's reference distributes them."""
    rank = len(kernel)
    full = [s * (n - 1) + op + (k - 1) * d + 1 for n, k, s, d, op in zip(in_sizes, kernel, strides, dilations, out_pad)]
    auto_pad = call.attrs.get("auto_pad", "NOTSET")
    output_shape = call.attrs.get("output_shape")
    pads = call.attrs.get("pads")
    if output_shape is not None:
        output_shape = list(output_shape)[-rank:]
    if pads is not None and auto_pad in ("NOTSET", "VALID"):
        begins = list(pads[:rank])
        ends = [f - b - o for f, b, o in zip(full, begins, output_shape)] if output_shape else list(pads[rank:])
        return begins, ends
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [n * s for n, s in zip(in_sizes, strides)]
    if output_shape is None:
        return [0] * rank, [0] * rank
    total = [f - o for f, o in zip(full, output_shape)]
    if auto_pad == "SAME_UPPER":
        return [t // 2 for t in total], [t - t // 2 for t in total]
    return [t - t // 2 for t in total], [t // 2 for t in total]


@onnx_to_torch("ConvTranspose")
def conv_transpose(call: OnnxCall):
    weight = call.const(1)
    bias = call.const(2) if call.has(2) else None
    rank = weight.ndim - 2
    kernel = list(call.attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    out_pad = list(call.attrs.get("output_padding", [0] * rank))
    groups = int(call.attrs.get("group", 1))
    in_sizes = _static_shape(call)[2:]
    begins, ends = _transpose_pads(call, in_sizes, kernel, strides, dilations, out_pad)
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[rank]
    # Crops are counted from the full output, output_padding included. torch's layer crops `padding` from
    # both ends itself and takes output_padding only below max(stride, dilation); otherwise the layer runs
    # without either and an F.pad crops (negative) or extends (positive, bias only there) afterwards.
    native = begins == ends and min(begins) >= 0 and all(
        op < max(s, d) for op, s, d in zip(out_pad, strides, dilations))
    extend = any(b < 0 for b in begins) or any(op > e for op, e in zip(out_pad, ends))
    layer = cls(weight.shape[0], weight.shape[1] * groups, kernel, stride=strides,
                padding=begins if native else 0, output_padding=out_pad if native else 0, groups=groups,
                dilation=dilations, bias=bias is not None and not extend)
    layer.weight = _param(weight)
    if bias is not None and not extend:
        layer.bias = _param(bias)
    y = _module(call, layer, 1, "conv_transpose", call.value(0))
    if native:
        return y
    flat: list[int] = []
    for i in reversed(range(rank)):
        flat += [-begins[i], out_pad[i] - ends[i]]
    y = call.call(F.pad, y, flat)
    if bias is not None and extend:  # extended rows and columns hold the bias alone
        y = call.call(torch.add, y, call.ctx.tensor(bias.reshape(-1, *([1] * rank)), call.node.input[2]))
    return y


# ---------------------------------------------------------------- Lp pooling


def lp_pool(x: torch.Tensor, p: float, kernel: list[int], strides: list[int], dilations: list[int], pads: list[int],
            ceil: bool) -> torch.Tensor:
    """ONNX LpPool: (Σ |x|^p over each window)^(1/p), zero padding adding nothing."""
    return window_sum(x.abs() ** p, kernel, strides, dilations, pads, ceil) ** (1.0 / p)


@onnx_to_torch("LpPool")
def lp_pool_node(call: OnnxCall):
    kernel = list(call.attrs["kernel_shape"])
    rank = len(kernel)
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    pads = _same_pads(call, kernel, strides, dilations)
    return call.call(lp_pool, call.value(0), float(call.attrs.get("p", 2)), kernel, strides, dilations, pads,
                     bool(call.attrs.get("ceil_mode", 0)))


@onnx_to_torch("GlobalLpPool")
def global_lp_pool(call: OnnxCall):
    dims = list(range(2, len(_static_shape(call))))
    return call.call(torch.linalg.vector_norm, call.value(0), float(call.attrs.get("p", 2)), dims, True)


# ---------------------------------------------------------------- depth <-> space


@onnx_to_torch("DepthToSpace")
def depth_to_space(call: OnnxCall):
    b = int(call.attrs["blocksize"])
    if call.attrs.get("mode", "DCR") == "CRD":
        return call.call(F.pixel_shuffle, call.value(0), b)
    n, c, h, w = _static_shape(call)
    x = call.call(torch.reshape, call.value(0), (n, b, b, c // (b * b), h, w))
    x = call.call(torch.permute, x, (0, 3, 4, 1, 5, 2))
    return call.call(torch.reshape, x, (n, c // (b * b), h * b, w * b))


@onnx_to_torch("SpaceToDepth")
def space_to_depth(call: OnnxCall):
    """The default DCR mode orders the new channels (block row, block column, channel), its own
    reshape-permute; CRD (opset 25) orders them (channel, row, column), which is torch's pixel_unshuffle."""
    b = int(call.attrs["blocksize"])
    if call.attrs.get("mode", "DCR") == "CRD":
        return call.call(F.pixel_unshuffle, call.value(0), b)
    n, c, h, w = _static_shape(call)
    x = call.call(torch.reshape, call.value(0), (n, c, h // b, b, w // b, b))
    x = call.call(torch.permute, x, (0, 3, 5, 1, 2, 4))
    return call.call(torch.reshape, x, (n, c * b * b, h // b, w // b))


# ---------------------------------------------------------------- Col2Im, MaxUnpool, CenterCropPad


def _col2im_index(image: list[int], block: list[int], strides, dilations, pads) -> np.ndarray:
    """For every (block offset, sliding position) column entry, the flat image index it lands on, or
    prod(image) (a slot dropped afterwards) where it falls into the padding."""
    rank = len(image)
    positions = [(image[i] + pads[i] + pads[rank + i] - (dilations[i] * (block[i] - 1) + 1)) // strides[i] + 1
                 for i in range(rank)]
    offsets = np.stack(np.meshgrid(*[np.arange(b) for b in block], indexing="ij"), -1).reshape(-1, rank)
    starts = np.stack(np.meshgrid(*[np.arange(p) for p in positions], indexing="ij"), -1).reshape(-1, rank)
    coords = starts[None, :, :] * np.array(strides) - np.array(pads[:rank]) + offsets[:, None, :] * np.array(dilations)
    inside = np.all((coords >= 0) & (coords < np.array(image)), axis=-1)
    flat = np.ravel_multi_index(tuple(np.clip(coords, 0, np.array(image) - 1).transpose(2, 0, 1)), image)
    return np.where(inside, flat, int(np.prod(image))).reshape(-1).astype(np.int64)


def col2im(x: torch.Tensor, index: torch.Tensor, image: list[int]) -> torch.Tensor:
    """Sum each column entry into its image position (`index` from _col2im_index)."""
    n, c = x.shape[0], x.shape[1] // (index.numel() // x.shape[2])
    values = x.reshape(n, c, -1)
    out = torch.zeros((n, c, int(np.prod(image)) + 1), dtype=x.dtype, device=x.device)
    out = out.index_add(2, index, values)
    return out[:, :, :-1].reshape(n, c, *image)


@onnx_to_torch("Col2Im")
def col2im_node(call: OnnxCall):
    image, block = _ints(call, 1), _ints(call, 2)
    rank = len(image)
    strides = list(call.attrs.get("strides", [1] * rank))
    dilations = list(call.attrs.get("dilations", [1] * rank))
    pads = list(call.attrs.get("pads", [0] * 2 * rank))
    if rank == 2 and pads[:2] == pads[2:]:
        return call.call(F.fold, call.value(0), image, block, dilations, pads[:2], strides)
    index = _col2im_index(image, block, strides, dilations, pads)
    return call.call(col2im, call.value(0), call.ctx.tensor(index, "col2im_index"), image)


def max_unpool(x: torch.Tensor, indices: torch.Tensor, out_shape: list[int]) -> torch.Tensor:
    """ONNX MaxUnpool: each value goes to its flat index in the (N, C, ...) output, the rest is 0. With an
    output_shape input the indices count in that shape, as onnxruntime reads them (ONNX's reference, and so
    its conformance case, count them in the inferred shape and pad that at the end instead)."""
    out = torch.zeros(int(np.prod(out_shape)), dtype=x.dtype, device=x.device)
    return out.scatter(0, indices.reshape(-1), x.reshape(-1)).reshape(out_shape)


@onnx_to_torch("MaxUnpool")
def max_unpool_node(call: OnnxCall):
    shape = _static_shape(call)
    kernel = list(call.attrs["kernel_shape"])
    rank = len(kernel)
    strides = list(call.attrs.get("strides", [1] * rank))
    pads = list(call.attrs.get("pads", [0] * 2 * rank))
    out_shape = _ints(call, 2) if call.has(2) else [shape[0], shape[1]] + [
        (shape[i + 2] - 1) * strides[i] - pads[i] - pads[rank + i] + kernel[i] for i in range(rank)]
    return call.call(max_unpool, call.value(0), call.value(1), out_shape)


@onnx_to_torch("CenterCropPad")
def center_crop_pad(call: OnnxCall):
    """One F.pad: negative amounts crop, positive pad with zeros; an odd difference crops or pads one more
    at the end, as ONNX says."""
    shape = _static_shape(call)
    target = _ints(call, 1)
    rank = len(shape)
    axes = [a % rank for a in call.attrs.get("axes", range(rank))]
    amounts = [(0, 0)] * rank
    for axis, size in zip(axes, target):
        diff = size - shape[axis]
        half = abs(diff) // 2
        amounts[axis] = (half, abs(diff) - half) if diff > 0 else (-half, -(abs(diff) - half))
    flat: list[int] = []
    for before, after in reversed(amounts):
        flat += [before, after]
    return call.call(F.pad, call.value(0), flat)
