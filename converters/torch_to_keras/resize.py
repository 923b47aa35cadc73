"""Upsampling (`F.interpolate`, `nn.Upsample`): nearest, nearest-exact and (bi/tri)linear over 1-3
spatial dims, as every UNet, FPN, segmentation head and diffusion model uses it.

Keras' `Resizing`/`UpSampling2D` place their samples by other rules than torch (half-pixel centres
without torch's clamping, no align_corners=True, integer factors only), so the layer would drift at
the borders. Instead the source positions and blend weights are computed here, at conversion time,
with torch's own formulas (`area_pixel_compute_scale` and friends): each spatial axis is one gather
(nearest) or two gathers and a blend (linear), exact to torch's float32 arithmetic, in whatever layout
the value is kept in.
"""

from __future__ import annotations

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val

_NEAREST = ("aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d")
_NEAREST_EXACT = ("aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d",
                  "aten._upsample_nearest_exact3d")
_LINEAR = ("aten.upsample_linear1d", "aten.upsample_bilinear2d", "aten.upsample_trilinear3d")


def _scales(call: Call, nd: int) -> list[float | None]:
    """The scale factors torch's kernel uses (None: derive from the sizes), per spatial axis."""
    if call.has("scale_factors"):  # the .vec overloads
        factors = call.args.get("scale_factors")
        return [float(f) for f in factors] if factors else [None] * nd
    names = {1: ("scales",), 2: ("scales_h", "scales_w"), 3: ("scales_d", "scales_h", "scales_w")}[nd]
    return [None if call.args.get(n) is None else float(call.args[n]) for n in names]


def _source_scale(size_in: int, size_out: int, align_corners: bool, scale: float | None) -> float:
    """torch's area_pixel_compute_scale: the step between source positions of adjacent outputs."""
    if align_corners:
        return (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else size_in / size_out


def nearest_indices(size_in: int, size_out: int, scale: float | None, exact: bool) -> np.ndarray:
    """Input index read by each output index: floor(dst * s), or floor((dst + 0.5) * s) for nearest-exact."""
    step = np.float32(_source_scale(size_in, size_out, False, scale))
    dst = np.arange(size_out, dtype=np.float32) + (np.float32(0.5) if exact else np.float32(0))
    return np.minimum(np.floor(dst * step).astype(np.int64), size_in - 1).astype(np.int32)


def linear_taps(size_in: int, size_out: int, align_corners: bool,
                scale: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, weight of the upper one) per output index, as torch computes them:
    half-pixel centres clamped at 0 unless align_corners, where the corners map onto each other."""
    step = np.float32(_source_scale(size_in, size_out, align_corners, scale))
    dst = np.arange(size_out, dtype=np.float32)
    src = dst * step if align_corners else np.maximum((dst + np.float32(0.5)) * step - np.float32(0.5), 0)
    lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    return lo.astype(np.int32), hi.astype(np.int32), (src - lo).astype(np.float32)


def _weights_along(weights: np.ndarray, axis: int, rank: int) -> np.ndarray:
    shape = [1] * rank
    shape[axis] = weights.size
    return weights.reshape(shape)


def _upsample(call: Call, mode: str) -> Val:
    ops = call.ctx.ops
    v = call.val("input" if call.has("input") else "self")
    nd = v.rank - 2
    scales = _scales(call, nd)
    align = bool(call.args.get("align_corners") or False)
    x = v.tensor
    for i in range(nd):
        dim, size_in, size_out = 2 + i, v.shape[2 + i], call.out_shape[2 + i]
        if size_in == size_out and scales[i] in (None, 1.0):
            continue  # every mode reads each position from itself
        axis = v.axis(dim)
        if mode == "linear":
            lo, hi, w = linear_taps(size_in, size_out, align, scales[i])
            below, above = ops.take(x, lo, axis=axis), ops.take(x, hi, axis=axis)
            x = below + (above - below) * ops.cast(_weights_along(w, axis, v.rank), x.dtype)
        else:
            x = ops.take(x, nearest_indices(size_in, size_out, scales[i], exact=mode == "nearest-exact"), axis=axis)
    return live_val(x, call.out_shape, v.perm)


@torch_to_keras(*_NEAREST)
def upsample_nearest(call: Call) -> Val:
    return _upsample(call, "nearest")


@torch_to_keras(*_NEAREST_EXACT)
def upsample_nearest_exact(call: Call) -> Val:
    return _upsample(call, "nearest-exact")


@torch_to_keras(*_LINEAR)
def upsample_linear(call: Call) -> Val:
    return _upsample(call, "linear")
