"""Resize, GridSample and AffineGrid. (Upsample, deprecated since opset 10, only occurs in files the driver
upgrades to opset 13 first, where it has become Resize with asymmetric coordinates.)

Resize maps to F.interpolate where torch computes exactly ONNX's function (linear with half_pixel,
pytorch_half_pixel or align_corners; 2-D cubic with a = -0.75 and half_pixel). Every other combination —
nearest with any nearest_mode, asymmetric and half_pixel_symmetric coordinates, tf_crop_and_resize with its
extrapolation value, exclude_outside, another cubic_coeff_a, antialias, axes, keep_aspect_ratio_policy — is
ONNX's separable definition written out: per resized axis, the source indices and weights of every output
position are computed at conversion time (the sizes are static) and applied as an index_select and a
weighted sum. Nearest is a pure index_select, so it is exact for every dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_TORCH_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


# ---------------------------------------------------------------- per-axis weights (ONNX's definition)


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float] | None):
    """(x_ori of every output index, mask of outputs outside the input for tf_crop_and_resize or None)."""
    y = np.arange(out_len, dtype=np.float64)
    out_f = scale * in_len
    if mode == "align_corners":
        return (np.zeros(out_len) if out_f == 1 else y * (in_len - 1) / (out_f - 1)), None
    if mode == "asymmetric":
        return y / scale, None
    if mode == "pytorch_half_pixel":
        return (np.full(out_len, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_f)
        return offset + (y + 0.5) / scale - 0.5, None
    if mode == "tf_crop_and_resize":
        start, end = roi
        x = (np.full(out_len, (end - start) * (in_len - 1) / 2) if out_f == 1
             else y * (end - start) * (in_len - 1) / (out_f - 1)) + start * (in_len - 1)
        return x, (x < 0) | (x > in_len - 1)
    raise ValueError(mode)


def _cubic_tap(t: float, a: float) -> float:
    """The cubic convolution kernel with coefficient a (Keys; ONNX's cubic_coeff_a, -0.75 by default)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0


def _antialias(ratio: float, scale: float, kernel, reach: float) -> list[float]:
    """Kernel taps stretched by 1/scale when downscaling, normalised to sum 1 (ONNX's antialias)."""
    scale = min(scale, 1.0)
    start = int(math.floor(-reach / scale) + 1)
    taps = [kernel(scale * (i - ratio)) for i in range(start, 2 - start)]
    total = sum(taps)
    return [t / total for t in taps]


def _coefficients(mode: str, ratio: float, scale: float, a: float, antialias: bool) -> list[float]:
    """Weights of the taps around a source position whose fractional part is `ratio` (1 at an integer)."""
    if mode == "linear":
        return _antialias(ratio, scale, lambda t: max(0.0, 1 - abs(t)), 1.0) if antialias else [1 - ratio, ratio]
    if antialias:
        return _antialias(ratio, scale, lambda t: _cubic_tap(t, a), 2.0)
    return [_cubic_tap(ratio + 1, a), _cubic_tap(ratio, a), _cubic_tap(1 - ratio, a), _cubic_tap(2 - ratio, a)]


def _nearest_index(x: np.ndarray, rule: str) -> np.ndarray:
    floor = np.floor(x)
    frac = x - floor
    if rule == "round_prefer_floor":
        up = frac > 0.5
    elif rule == "round_prefer_ceil":
        up = frac >= 0.5
    elif rule == "floor":
        up = np.zeros_like(frac, dtype=bool)
    elif rule == "ceil":
        up = frac > 0
    else:
        raise ValueError(rule)
    return np.where(frac == 0, x, floor + up).astype(np.int64)


def axis_weights(attrs: dict, in_len: int, out_len: int, scale: float, roi: tuple[float, float] | None):
    """(index (out, taps), weights (out, taps) or None for nearest, outside mask or None) for one axis."""
    mode = attrs.get("mode", "nearest")
    x, outside = _source_coords(attrs.get("coordinate_transformation_mode", "half_pixel"), out_len, in_len, scale, roi)
    if mode == "nearest":
        index = _nearest_index(x, attrs.get("nearest_mode", "round_prefer_floor"))
        return np.clip(index, 0, in_len - 1)[:, None], None, outside
    a, antialias = float(attrs.get("cubic_coeff_a", -0.75)), bool(attrs.get("antialias", 0))
    floor = np.floor(x)
    ratios = np.where(x == floor, 1.0, x - floor)
    weights = np.array([_coefficients(mode, float(r), scale, a, antialias) for r in ratios], dtype=np.float64)
    taps = weights.shape[1]
    start = floor.astype(np.int64) - taps // 2 + (x != floor)
    index = start[:, None] + np.arange(taps)[None, :]
    if attrs.get("exclude_outside", 0):
        weights = np.where((index < 0) | (index >= in_len), 0.0, weights)
        total = weights.sum(-1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, in_len - 1), weights, outside


def resize_axis(x: torch.Tensor, axis: int, index: torch.Tensor, weights: torch.Tensor | None,
                outside: torch.Tensor | None, fill: float) -> torch.Tensor:
    """One axis of ONNX Resize: gather the taps of every output position and weight them (nearest: take
    the one index). Integer inputs are weighted in float64 and rounded back with saturation."""
    out_len, taps = index.shape
    gathered = torch.index_select(x, axis, index.reshape(-1))
    if weights is None:
        y = gathered
    else:
        shape = list(x.shape)
        shape[axis:axis + 1] = [out_len, taps]
        work = x.dtype if x.dtype.is_floating_point else torch.float64
        w = weights.to(work).reshape([out_len, taps] + [1] * (x.dim() - axis - 1))
        y = (gathered.to(work).reshape(shape) * w).sum(axis + 1)
        if not x.dtype.is_floating_point:
            info = torch.iinfo(x.dtype)
            y = torch.clamp(torch.round(y), info.min, info.max).to(x.dtype)
    if outside is not None:
        mask = outside.reshape([out_len] + [1] * (x.dim() - axis - 1))
        y = torch.where(mask, torch.tensor(fill, dtype=y.dtype), y)
    return y


# ---------------------------------------------------------------- sizes


def _plan(call: OnnxCall, shape: tuple[int, ...], scales: np.ndarray | None, sizes: np.ndarray | None,
          roi: np.ndarray | None):
    """(output sizes, scales, roi per axis) over all axes, as ONNX's reference computes them."""
    rank = len(shape)
    axes = [a % rank for a in call.attrs.get("axes", range(rank))]
    full_scales = np.ones(rank, dtype=np.float64)
    out = list(shape)
    if sizes is not None and sizes.size:
        for a, s in zip(axes, sizes):
            out[a] = int(s)
        full_scales = np.array([o / i if i else 1.0 for o, i in zip(out, shape)], dtype=np.float64)
        policy = call.attrs.get("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            common = pick(full_scales[a] for a in axes)
            full_scales = np.array([common if i in axes else 1.0 for i in range(rank)])
            out = [int(common * shape[i] + 0.5) if i in axes else shape[i] for i in range(rank)]
    elif scales is not None and scales.size:
        for a, s in zip(axes, scales.astype(np.float32)):
            full_scales[a] = float(s)
        out = [int(s * d) for s, d in zip(full_scales, shape)]
    else:
        raise call.unsupported("neither scales nor sizes given")
    rois = [None] * rank
    if call.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        if roi is None or not roi.size:
            raise call.unsupported("tf_crop_and_resize without a roi input")
        n = len(axes)
        for j, a in enumerate(axes):
            rois[a] = (float(roi[j]), float(roi[n + j]))
    return out, full_scales, rois


def _native(call: OnnxCall, shape, out, scales, rois) -> dict | None:
    """F.interpolate arguments where torch computes ONNX's function exactly, else None."""
    attrs = call.attrs
    mode = attrs.get("mode", "nearest")
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    spatial = len(shape) - 2
    if (mode == "nearest" or attrs.get("antialias", 0) or attrs.get("exclude_outside", 0) or spatial < 1
            or out[:2] != list(shape[:2]) or any(s != 1.0 for s in scales[:2]) or any(r is not None for r in rois)):
        return None
    if mode == "cubic" and (spatial != 2 or float(attrs.get("cubic_coeff_a", -0.75)) != -0.75):
        return None
    if ctm == "align_corners":
        align = True
    elif ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and all(o > 1 for o in out[2:])):
        align = False
    else:
        return None
    torch_mode = "bicubic" if mode == "cubic" else _TORCH_MODES.get(spatial)
    return {"size": tuple(out[2:]), "mode": torch_mode, "align_corners": align} if torch_mode else None


def _resize(call: OnnxCall, scales: np.ndarray | None, sizes: np.ndarray | None, roi: np.ndarray | None):
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    out, full_scales, rois = _plan(call, shape, scales, sizes, roi)
    if call.attrs.get("mode", "nearest") == "nearest" and call.attrs.get("antialias", 0):
        raise call.unsupported("antialias with mode=nearest (ONNX defines antialias for linear and cubic)")
    x = call.value(0)
    native = _native(call, shape, out, full_scales, rois)
    if native is not None and scales is not None and scales.size and (sizes is None or not sizes.size):
        # given scales, ONNX's source coordinates use them (not out/in); torch's scale_factor does the same,
        # except that align_corners divides by the fractional output width ONNX keeps, so it needs whole ones
        whole = all(float(s) * d == o for s, d, o in zip(full_scales[2:], shape[2:], out[2:]))
        native = None if native["align_corners"] and not whole else {
            "scale_factor": tuple(float(s) for s in full_scales[2:]), "mode": native["mode"],
            "align_corners": native["align_corners"]}
    if native is not None:
        return call.call(F.interpolate, x, **native)
    fill = float(call.attrs.get("extrapolation_value", 0.0))
    for axis in range(len(shape)):
        identity = math.isclose(full_scales[axis], 1.0) and out[axis] == shape[axis] and (
            rois[axis] is None or (math.isclose(rois[axis][0], 0.0) and math.isclose(rois[axis][1], 1.0)))
        if identity:
            continue
        index, weights, outside = axis_weights(call.attrs, shape[axis], out[axis], float(full_scales[axis]), rois[axis])
        x = call.call(resize_axis, x, axis, call.ctx.tensor(index, "resize_index"),
                      None if weights is None else call.ctx.tensor(weights, "resize_weights"),
                      None if outside is None else call.ctx.tensor(outside, "resize_outside"), fill)
    return x


def _optional_const(call: OnnxCall, i: int) -> np.ndarray | None:
    return call.const(i) if call.has(i) else None


@onnx_to_torch("Resize", since=11)
def resize(call: OnnxCall):
    return _resize(call, _optional_const(call, 2), _optional_const(call, 3), _optional_const(call, 1))


# ---------------------------------------------------------------- GridSample, AffineGrid

_GRID_MODES = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest", "cubic": "bicubic",
               "bicubic": "bicubic"}


@onnx_to_torch("GridSample", since=16)
def grid_sample(call: OnnxCall):
    mode = _GRID_MODES.get(call.attrs.get("mode", "bilinear"))
    rank = len(call.shape(0) or ())
    if mode is None:
        raise call.unsupported(f"mode={call.attrs.get('mode')!r}")
    if rank not in (4, 5) or (rank == 5 and mode == "bicubic"):
        raise call.unsupported(f"mode {mode} on a rank-{rank} input: torch's grid_sample takes 4-D, and 5-D for "
                               "linear and nearest")
    return call.call(F.grid_sample, call.value(0), call.value(1), mode=mode,
                     padding_mode=call.attrs.get("padding_mode", "zeros"),
                     align_corners=bool(call.attrs.get("align_corners", 0)))


@onnx_to_torch("AffineGrid", since=20)
def affine_grid(call: OnnxCall):
    size = [int(v) for v in call.const(1).reshape(-1)]
    return call.call(F.affine_grid, call.value(0), size, align_corners=bool(call.attrs.get("align_corners", 0)))
