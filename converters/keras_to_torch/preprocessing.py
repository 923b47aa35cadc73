"""Preprocessing layers that are part of a model's function: Rescaling, Normalization, Resizing, CenterCrop.

Rescaling and Normalization are elementwise, so they run in whatever layout their input is held in
(their constants are permuted at conversion time to match). Normalization keeps its mean and variance
as buffers of a small module, so they are part of the state_dict and move with the model.

Resizing is `tf.image.resize`: bilinear with half-pixel centres is torch's `align_corners=False` (with or
without antialiasing, which both frameworks implement as a triangle filter), and TensorFlow's nearest
neighbour with half-pixel centres is torch's "nearest-exact". Cropping or padding to the aspect ratio
is computed from the static image size, as Keras computes it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first, is_identity
from porttax.converters.transforms import Chain, Identity, Reshape, Transform, Transpose

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


class Normalize(nn.Module):
    """Keras Normalization: (x - mean) / max(sqrt(variance), epsilon), or with `invert`
    mean + x * max(sqrt(variance), epsilon). mean and variance are buffers shaped to broadcast
    against the input as it is held."""

    def __init__(self, shape: Sequence[int], epsilon: float, invert: bool = False) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        self.invert = bool(invert)
        self.register_buffer("mean", torch.zeros(tuple(shape)))
        self.register_buffer("variance", torch.ones(tuple(shape)))

    def forward(self, x: Any) -> Any:
        std = torch.clamp(self.variance.sqrt(), min=self.epsilon)
        return self.mean + x * std if self.invert else (x - self.mean) / std

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}, epsilon={self.epsilon}, invert={self.invert}"


def _held(v: TVal) -> tuple[int, ...]:
    return tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)


def _as_compute_dtype(call: LayerCall, v: TVal) -> Any:
    """The input as held, cast to the layer's compute dtype as Keras casts it."""
    x = call.ctx.in_layout(v, v.perm)
    dtype = str(call.layer.compute_dtype)
    return x if v.dtype == dtype else x.to(getattr(torch, dtype))


def _held_constant(call: LayerCall, v: TVal, value: Any, what: str) -> Any:
    """A NumPy constant broadcast against `v` in the Keras layout, moved into the layout `v` is held in."""
    array = np.asarray(value, dtype=str(call.layer.compute_dtype))
    if array.ndim == 0 or array.size == 1:
        return float(array.reshape(()))
    if array.ndim > v.rank:
        raise call.unsupported(f"{what} of shape {array.shape} has more axes than the rank-{v.rank} input")
    array = array.reshape((1,) * (v.rank - array.ndim) + array.shape)
    return call.ctx.constant(np.transpose(array, _held(v)), hint=what)


@keras_to_torch("Rescaling")
def rescaling(call: LayerCall) -> TVal:
    """x * scale + offset, with a per-channel scale reshaped as Keras does when images are channels-first."""
    layer = call.layer
    v = call.x
    scale = np.asarray(layer.scale, dtype=str(layer.compute_dtype))
    if scale.ndim and import_keras().config.image_data_format() == "channels_first":
        scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
    x = _as_compute_dtype(call, v)
    out = x * _held_constant(call, v, scale, "scale")
    offset = _held_constant(call, v, layer.offset, "offset")
    if not (isinstance(offset, float) and offset == 0.0):
        out = out + offset
    return call.result(out, v.perm)


@keras_to_torch("Normalization")
def normalization(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    keras = import_keras()
    mean = keras.ops.convert_to_numpy(layer.mean)
    if mean.ndim != v.rank:
        raise call.unsupported(f"normalisation statistics of rank {mean.ndim} for a rank-{v.rank} input")
    held = _held(v)
    broadcast = tuple(int(d) for d in mean.shape)
    module = call.module() or Normalize(tuple(broadcast[a] for a in held), keras.backend.epsilon(),
                                        bool(layer.invert))
    to_held: Transform = Identity() if is_identity(v.perm) else Transpose(held)
    if getattr(layer, "adapt_mean", None) is not None and layer.input_mean is None:
        # Adapted statistics live in Keras variables of the kept axes' shape.
        stats = [(layer.adapt_mean, "mean"), (layer.adapt_variance, "variance")]
        reshape = Reshape(broadcast, tuple(int(d) for d in layer.adapt_mean.shape))
        transform = Chain((reshape, to_held)) if not isinstance(to_held, Identity) else reshape
    else:  # given to the constructor: constants, already broadcast
        stats = [(mean, "mean"), (keras.ops.convert_to_numpy(layer.variance), "variance")]
        transform = to_held
    for value, name in stats:
        call.port(value, module, name, transform)
    return call.result(call.add_module(module)(_as_compute_dtype(call, v)), v.perm)


def _image_input(call: LayerCall) -> tuple[Any, Any, tuple[int | None, int | None]]:
    """A rank-4 image batch as (N, C, H, W), the layout of the result, and the static (H, W)."""
    layer = call.layer
    v = call.x
    if v.rank != 4:
        raise call.unsupported(f"a rank-{v.rank} input; porttax converts batches of images (rank 4)")
    if "float" not in v.dtype:
        raise call.unsupported(f"{v.dtype} images (Keras rounds and saturates integer results)",
                               hint="cast the images to float before this layer")
    if layer.data_format == "channels_first":
        x, perm = call.ctx.keras_layout(v), None
        size = (v.shape[2], v.shape[3])
    else:
        x, perm = call.ctx.channels_first(v), channels_first(4)
        size = (v.shape[1], v.shape[2])
    dtype = str(layer.compute_dtype)
    if v.dtype != dtype:
        x = x.to(getattr(torch, dtype))
    return x, perm, size


def _static_size(call: LayerCall, size: tuple[int | None, int | None], why: str) -> tuple[int, int]:
    if size[0] is None or size[1] is None:
        raise call.unsupported(f"{why} depends on the image size, which this model leaves unknown",
                               hint="give the model input a static height and width")
    return int(size[0]), int(size[1])


def aspect_crop(height: int, width: int, target_h: int, target_w: int, float32: bool) -> tuple[int, int, int, int]:
    """(top, crop height, left, crop width) of Keras' centred crop to the target aspect ratio.

    `tf.image.resize`'s `crop_to_aspect_ratio` computes it in float32; `smart_resize` (CenterCrop of a
    small image) in Python floats. Both truncate."""
    f = np.float32 if float32 else float
    crop_h = max(min(height, int(f(width * target_h) / f(target_w))), 1)
    crop_w = max(min(width, int(f(height * target_w) / f(target_h))), 1)
    return int(f(height - crop_h) / f(2)), crop_h, int(f(width - crop_w) / f(2)), crop_w


def _resize(call: LayerCall, x: Any, size: tuple[int, int], mode: str, antialias: bool) -> Any:
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    raise call.unsupported(f"{mode!r} interpolation: TensorFlow's kernel differs from torch's (bicubic uses "
                           "a = -0.5, torch -0.75; area, lanczos, gaussian and mitchellcubic have no torch "
                           "counterpart)", hint="use 'bilinear' or 'nearest'")


@keras_to_torch("Resizing")
def resizing(call: LayerCall) -> TVal:
    layer = call.layer
    x, perm, size = _image_input(call)
    target = (int(layer.height), int(layer.width))
    if layer.crop_to_aspect_ratio:
        h, w = _static_size(call, size, "cropping to the aspect ratio")
        top, ch, left, cw = aspect_crop(h, w, *target, float32=True)
        x = x[:, :, top:top + ch, left:left + cw]
    elif layer.pad_to_aspect_ratio:
        if layer.fill_mode != "constant":
            raise call.unsupported(f"fill_mode {layer.fill_mode!r}")
        h, w = _static_size(call, size, "padding to the aspect ratio")
        f = np.float32
        pad_h = max(h, int(f(w * target[0]) / f(target[1])))
        pad_w = max(w, int(f(h * target[1]) / f(target[0])))
        # TensorFlow pads the same number of cells on both sides (an odd remainder is dropped).
        top, left = int(f(pad_h - h) / f(2)), int(f(pad_w - w) / f(2))
        if top or left:
            x = F.pad(x, [left, left, top, top], value=float(layer.fill_value))
    return call.result(_resize(call, x, target, str(layer.interpolation), bool(layer.antialias)), perm)


@keras_to_torch("CenterCrop")
def center_crop(call: LayerCall) -> TVal:
    """A centred slice; an image smaller than the target is cropped to its aspect ratio and resized
    bilinearly instead, as Keras' smart_resize does (so the image size must be static)."""
    layer = call.layer
    x, perm, size = _image_input(call)
    h, w = _static_size(call, size, "which of CenterCrop's two behaviours applies")
    th, tw = int(layer.height), int(layer.width)
    if h >= th and w >= tw:
        top, left = (h - th) // 2, (w - tw) // 2
        return call.result(x[:, :, top:top + th, left:left + tw], perm)
    top, ch, left, cw = aspect_crop(h, w, th, tw, float32=False)
    x = x[:, :, top:top + ch, left:left + cw]
    return call.result(_resize(call, x, (th, tw), "bilinear", False), perm)
