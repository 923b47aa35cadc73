"""Preprocessing layers that are part of a model's function: Rescaling, Normalization, Resizing, CenterCrop,
and the categorical ones (Discretization, CategoryEncoding, IntegerLookup; see their section below).

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
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first, is_identity, live
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


# ---- categorical preprocessing: Discretization, CategoryEncoding, IntegerLookup ------------------
#
# Keras' TensorFlow kernels, written with torch ops that torch.export takes: Bucketize is
# `torch.bucketize(right=True)` (index i with boundaries[i-1] <= x < boundaries[i]), a StaticHashTable
# lookup is `torch.searchsorted` on the sorted keys, and one-hot / multi-hot / count encodings compare
# ids with `arange(depth)`, so an id outside [0, depth) counts nowhere, as in tf.one_hot and bincount.
# Where Keras raises on bad ids (an unknown id with no OOV index, a negative id in bincount) the module
# raises too, with `torch._assert_async`, instead of returning a number Keras never returns.

_INT64_MAX = int(np.iinfo(np.int64).max)


class Bucketize(nn.Module):
    """tf.raw_ops.Bucketize: how many boundaries are <= x. Integers compare as float32, as in TensorFlow's
    kernel (int compared with float boundaries); float64 inputs compare with the float32 boundaries widened."""

    def __init__(self, boundaries: Sequence[float], dtype: str = "int32") -> None:
        super().__init__()
        self.register_buffer("boundaries", torch.tensor(np.asarray(boundaries, np.float32)), persistent=False)
        self.dtype = getattr(torch, dtype)

    def forward(self, x: Any) -> Any:
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.float32)
        return torch.bucketize(x, self.boundaries.to(x.dtype), right=True).to(self.dtype)

    def extra_repr(self) -> str:
        return f"boundaries={self.boundaries.tolist()}"


class CategoryEncode(nn.Module):
    """Keras' `encode_categorical_inputs` for one_hot, multi_hot and count over ids in [0, depth).

    one_hot adds a depth axis (replacing a trailing axis of size 1); multi_hot and count reduce over axis
    1 (axis 0 of a rank-1 input), as TensorFlow's bincount does per row; count sums `weights` when given.
    `check_negative`: Keras' bincount path (inputs of rank <= 2) raises on a negative id."""

    def __init__(self, mode: str, depth: int, dtype: str, squeeze_last: bool, reduce_dim: int,
                 check_negative: bool = False) -> None:
        super().__init__()
        self.mode = mode
        self.depth = int(depth)
        self.dtype = getattr(torch, dtype)
        self.squeeze_last = bool(squeeze_last)
        self.reduce_dim = int(reduce_dim)
        self.check_negative = bool(check_negative)
        self.register_buffer("ids", torch.arange(self.depth), persistent=False)

    def forward(self, x: Any, weights: Any = None) -> Any:
        x = x.to(torch.int64)
        if self.check_negative:
            torch._assert_async((x >= 0).all(), "CategoryEncoding: ids must be non-negative (Keras' bincount raises)")
        if self.squeeze_last:
            x = x.squeeze(-1)
        hot = x.unsqueeze(-1) == self.ids
        if self.mode == "one_hot":
            return hot.to(self.dtype)
        if self.mode == "multi_hot":
            return hot.any(dim=self.reduce_dim).to(self.dtype)
        if weights is None:
            return hot.to(self.dtype).sum(dim=self.reduce_dim)
        return (hot.to(weights.dtype) * weights.unsqueeze(-1)).sum(dim=self.reduce_dim)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, depth={self.depth}, dtype={self.dtype}"


class IntegerLookupTable(nn.Module):
    """IntegerLookup's table: each key's value, `default` for keys not in the table, the mask token's own
    value, and (with several OOV indices) unknown keys spread over them by `key mod num_oov`.

    `require_known` (no OOV index): Keras raises on an unknown key, so the module raises too."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, default: int, mask_key: int | None,
                 mask_value: int | None, num_oov: int, oov_start: int, require_known: bool) -> None:
        super().__init__()
        order = np.argsort(keys, kind="stable")
        self.register_buffer("keys", torch.from_numpy(np.ascontiguousarray(keys[order], np.int64)), persistent=False)
        self.register_buffer("values", torch.from_numpy(np.ascontiguousarray(values[order], np.int64)),
                             persistent=False)
        self.default = int(default)
        self.mask_key = None if mask_key is None else int(mask_key)
        self.mask_value = None if mask_value is None else int(mask_value)
        self.num_oov = int(num_oov)
        self.oov_start = int(oov_start)
        self.require_known = bool(require_known)

    def forward(self, x: Any) -> Any:
        x = x.to(torch.int64)
        pos = torch.searchsorted(self.keys, x).clamp(max=self.keys.shape[0] - 1)
        found = self.keys[pos] == x
        out = torch.where(found, self.values[pos], self.default)
        if self.mask_key is not None:
            out = torch.where(x == self.mask_key, self.mask_value, out)
        if self.require_known:
            torch._assert_async((out != -1).all(), "IntegerLookup: with num_oov_indices=0 every input must be "
                                "in the vocabulary (Keras raises)")
        if self.num_oov > 1:
            out = torch.where(out == self.default, torch.remainder(x, self.num_oov) + self.oov_start, out)
        return out

    def extra_repr(self) -> str:
        return (f"size={self.keys.shape[0]}, default={self.default}, mask_key={self.mask_key}, "
                f"num_oov={self.num_oov}")


def _encoder(call: LayerCall, v: TVal, mode: str, depth: int, dtype: str, check_negative: bool) -> CategoryEncode:
    """The encoding module, after checking the shape Keras computes is the one it declares (for rank-3+
    multi_hot/count CategoryEncoding and IntegerLookup declare (batch, d1, depth) but reduce d1 away)."""
    shape = tuple(v.shape or ())
    if not shape:
        raise call.unsupported("a scalar input")
    squeeze = mode == "one_hot" and len(shape) > 1 and shape[-1] == 1
    if mode == "one_hot":
        computed = (shape[:-1] if squeeze else shape) + (depth,)
    elif len(shape) > 1:
        computed = (shape[0],) + shape[2:] + (depth,)
    else:
        computed = (depth,)
    declared = call.out_shape()
    if len(declared) != len(computed) or any(a is not None and b is not None and a != b
                                             for a, b in zip(declared, computed)):
        raise call.unsupported(f"output_mode {mode!r} on a {shape} input: Keras computes shape {computed} but "
                               f"declares {declared}", hint="encode inputs of rank <= 2 (batch, ids)")
    check = check_negative and mode in ("multi_hot", "count") and len(shape) <= 2
    return CategoryEncode(mode, depth, dtype, squeeze, 1 if len(shape) > 1 else 0, check)


@keras_to_torch("Discretization")
def discretization(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    if layer.bin_boundaries is None:
        raise call.unsupported("no bin_boundaries (the layer was never adapted)",
                               hint="pass bin_boundaries or call adapt() before saving the model")
    if layer.sparse:
        raise call.unsupported("sparse=True output", hint="use sparse=False; torch modules return dense tensors")
    x = call.ctx.keras_layout(v)
    bucketize = call.add_module(Bucketize(layer.bin_boundaries, "int32"), "bucketize" if layer.output_mode != "int"
                                else "")
    ids = bucketize(x)
    if layer.output_mode == "int":
        return call.result(ids)
    dtype = str(layer.output_dtype)
    encode = _encoder(call, v, layer.output_mode, len(layer.bin_boundaries) + 1, dtype, check_negative=False)
    return call.result(call.add_module(encode, "encode")(ids))


def _count_weights(call: LayerCall) -> TVal | None:
    weights = call.kwargs.get("count_weights")
    if weights is None and len(call.args) > 1:
        weights = call.args[1]
    if weights is not None and not (isinstance(weights, TVal) and weights.live):
        raise call.unsupported("count_weights that are not a model tensor")
    return weights


@keras_to_torch("CategoryEncoding")
def category_encoding(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    if layer.sparse:
        raise call.unsupported("sparse=True output", hint="use sparse=False; torch modules return dense tensors")
    weights = _count_weights(call)
    encode = _encoder(call, v, layer.output_mode, int(layer.num_tokens), str(layer.dtype), check_negative=True)
    module = call.add_module(call.module() or encode)
    x = call.ctx.keras_layout(v)
    if weights is None:
        return call.result(module(x))
    w = call.ctx.keras_layout(weights)
    dtype = str(layer.compute_dtype)
    w = w if weights.dtype == dtype else w.to(getattr(torch, dtype))  # Keras converts them to compute_dtype
    return call.result(module(x, w))


def _lookup_table(call: LayerCall) -> IntegerLookupTable:
    layer = call.layer
    keys, values = (np.asarray(t.numpy()) for t in layer.lookup_table.export())
    if keys.size == 0:
        raise call.unsupported("an empty vocabulary", hint="pass vocabulary= or call adapt() before saving")
    if layer.invert:
        return IntegerLookupTable(keys, values, int(layer.oov_token), 0 if layer.mask_token is not None else None,
                                  layer.mask_token, 0, 0, False)
    if layer.num_oov_indices > 1 and layer.oov_method != "floormod":
        raise call.unsupported(f"oov_method {layer.oov_method!r} (a FarmHash of the key's decimal string)",
                               hint="use oov_method='floormod', or num_oov_indices=1")
    int_mode = layer.output_mode == "int"
    mask_value = 0 if int_mode else _INT64_MAX  # Keras' mask value; out of every encoding's range
    return IntegerLookupTable(keys, values, int(layer._default_value), layer.mask_token, mask_value,
                              int(layer.num_oov_indices), int(layer._oov_start_index()),
                              require_known=layer.num_oov_indices == 0)


@keras_to_torch("IntegerLookup")
def integer_lookup(call: LayerCall) -> TVal:
    """Lookup, then the output mode's encoding. Keras returns int64 for every mode but tf_idf (its own
    output spec says float32 for one_hot/multi_hot/count; the layer's result is int64, and so is this)."""
    layer = call.layer
    v = call.x
    if layer.sparse:
        raise call.unsupported("sparse=True output", hint="use sparse=False; torch modules return dense tensors")
    x = call.ctx.keras_layout(v)
    int_mode = layer.output_mode == "int"
    table = call.module("" if int_mode else "lookup") or _lookup_table(call)
    ids = call.add_module(table, "" if int_mode else "lookup")(x)
    if int_mode:
        return live(ids, call.out_shape(), None, "int64")
    depth = int(layer.max_tokens if layer.pad_to_max_tokens else layer._frozen_vocab_size)
    mode = "count" if layer.output_mode == "tf_idf" else layer.output_mode
    encode = call.module("encode") or _encoder(call, v, mode, depth, "int64", check_negative=False)
    out = call.add_module(encode, "encode")(ids)
    if layer.output_mode != "tf_idf":
        return live(out, call.out_shape(), None, "int64")
    idf = np.asarray(layer.idf_weights_const.numpy())
    return call.result(out.to(getattr(torch, str(idf.dtype))) * call.ctx.constant(idf, "idf_weights"))
