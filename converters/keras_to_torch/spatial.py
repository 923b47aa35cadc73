"""Spatial reshaping layers: ZeroPadding1D/2D/3D, Cropping1D/2D/3D, UpSampling1D/2D/3D.

They act on the spatial axes wherever the input is held, so they add no transposes: when the input is
held channels-first (after a convolution) they become the `torch.nn` module a person would write
(`nn.ZeroPad2d`, `nn.Upsample`), otherwise the same operation on the held axes (`F.pad`, slicing,
`repeat_interleave`). Bilinear upsampling needs channels-first and takes it.

Keras' bilinear upsampling is `tf.image.resize` with half-pixel centres and no antialiasing (it only
enlarges), which is torch's `align_corners=False`; nearest upsampling repeats cells, as does torch's.
"""

from __future__ import annotations

from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first, is_identity

torch = import_torch()
nn = torch.nn
F = torch.nn.functional

_ZERO_PAD = {1: nn.ZeroPad1d, 2: nn.ZeroPad2d, 3: nn.ZeroPad3d}


def spatial_axes(rank: int, data_format: str | None) -> list[int]:
    """The Keras axes of the spatial dims of a rank-`rank` tensor."""
    return list(range(2, rank)) if data_format == "channels_first" else list(range(1, rank - 1))


def held_channels_first(v: TVal, spatial: Sequence[int]) -> bool:
    """Whether `v` is held as (batch, channels, spatial...) with the spatial axes in Keras order."""
    held = tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)
    return held[0] == 0 and list(held[2:]) == list(spatial)


def _data_format(layer: Any) -> str:
    return getattr(layer, "data_format", None) or "channels_last"


@keras_to_torch("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    spatial = spatial_axes(v.rank, _data_format(layer))
    pairs = layer.padding if isinstance(layer.padding[0], (list, tuple)) else (layer.padding,)  # 1D: one pair
    widths = {axis: (int(a), int(b)) for axis, (a, b) in zip(spatial, pairs)}
    if v.rank >= 4 and is_identity(v.perm) and _data_format(layer) == "channels_last":
        # An image in Keras' layout, typically a CNN's input padded for its first convolution: move it
        # channels-first here (the convolution would anyway), so the padding is torch's own module.
        x = call.ctx.channels_first(v)
        v = TVal(proxy=x, shape=v.shape, perm=channels_first(v.rank), dtype=v.dtype)
    x = call.ctx.in_layout(v, v.perm)
    if held_channels_first(v, spatial):
        flat = [w for axis in reversed(spatial) for w in widths[axis]]
        return call.result(call.add_module(_ZERO_PAD[len(spatial)](tuple(flat)))(x), v.perm)
    held = tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)
    flat = []
    for axis in reversed(held):  # F.pad lists the last held axis first
        flat.extend(widths.get(axis, (0, 0)))
    while flat[-2:] == [0, 0]:
        flat = flat[:-2]
    return call.result(F.pad(x, flat), v.perm)


@keras_to_torch("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    spatial = spatial_axes(v.rank, _data_format(layer))
    pairs = layer.cropping if isinstance(layer.cropping[0], (list, tuple)) else (layer.cropping,)
    crops = {axis: (int(a), int(b)) for axis, (a, b) in zip(spatial, pairs)}
    held = tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)
    index = []
    for axis in held:
        a, b = crops.get(axis, (0, 0))
        index.append(slice(a or None, -b if b else None))
    while index and index[-1] == slice(None):
        index.pop()
    x = call.ctx.in_layout(v, v.perm)
    return call.result(x[tuple(index)] if index else x, v.perm)


def _repeat(call: LayerCall, v: TVal, sizes: dict[int, int]) -> TVal:
    """Nearest-neighbour upsampling by whole factors: repeat each cell along the held spatial axes."""
    x = call.ctx.in_layout(v, v.perm)
    for axis, n in sizes.items():
        if n != 1:
            x = x.repeat_interleave(n, dim=call.ctx.held_axis(v, axis))
    return call.result(x, v.perm)


@keras_to_torch("UpSampling1D")
def up_sampling_1d(call: LayerCall) -> TVal:
    return _repeat(call, call.x, {1: int(call.layer.size)})


@keras_to_torch("UpSampling2D", "UpSampling3D")
def up_sampling(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    data_format = _data_format(layer)
    spatial = spatial_axes(v.rank, data_format)
    size = tuple(int(s) for s in layer.size)
    mode = getattr(layer, "interpolation", "nearest")
    if mode not in ("nearest", "bilinear"):
        raise call.unsupported(f"{mode!r} interpolation: TensorFlow's kernel differs from torch's "
                               "(bicubic uses a = -0.5, torch -0.75; torch has no lanczos)",
                               hint="use 'nearest' or 'bilinear'")
    if held_channels_first(v, spatial):
        x = call.ctx.in_layout(v, v.perm)
        perm = v.perm
    elif mode == "nearest":
        return _repeat(call, v, dict(zip(spatial, size)))
    elif data_format == "channels_first":
        x, perm = call.ctx.keras_layout(v), None
    else:
        x, perm = call.ctx.channels_first(v), channels_first(v.rank)
    module = nn.Upsample(scale_factor=tuple(float(s) for s in size), mode=mode,
                         **({"align_corners": False} if mode == "bilinear" else {}))
    return call.result(call.add_module(module)(x), perm)
