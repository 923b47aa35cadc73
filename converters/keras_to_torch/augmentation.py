"""Keras image augmentation layers, as a model runs them at inference (`training=False`).

Most augmentation layers draw a random transformation while training and return their input at
inference, so they map to no module: the input passes through, as StochasticDepth's does. Which ones
do, and whether they first cast the image to their compute dtype (a uint8 image comes out float32 from
RandomFlip but uint8 from RandomBrightness), was read from the Keras 3.15 source and is checked against
Keras itself by the tests for every layer in `PASS_THROUGH`, so a release that changes one fails loudly.

The rest compute something at inference too. AutoContrast stretches each image channel over the value
range; ContrastLimitedAdaptiveHistogramEqualization equalises tile histograms (both readable modules that
follow Keras' arithmetic op for op, so they match it bit for bit in float32). RandomCrop documents a
centred crop at inference, but Keras 3.15 skips it (keras-team/keras#21868: the image comes back
uncropped although the layer declares the cropped size); its converter reproduces what the installed
Keras does and refuses when that contradicts the layer's own output shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first, live

torch = import_torch()
nn = torch.nn
F = torch.nn.functional

# Layer class -> whether its inference call casts the image to the layer's compute dtype (Keras 3.15).
PASS_THROUGH: dict[str, bool] = {
    "AugMix": True,
    "CutMix": True,
    "MixUp": False,
    "RandAugment": True,
    "RandomBrightness": False,
    "RandomColorDegeneration": False,
    "RandomColorJitter": False,
    "RandomContrast": False,
    "RandomElasticTransform": True,
    "RandomErasing": True,
    "RandomFlip": True,
    "RandomGaussianBlur": True,
    "RandomGrayscale": False,
    "RandomHue": False,
    "RandomInvert": False,
    "RandomPerspective": True,
    "RandomPosterization": False,
    "RandomRotation": True,
    "RandomSaturation": False,
    "RandomSharpness": True,
    "RandomShear": True,
    "RandomTranslation": True,
    "RandomZoom": True,
    "Solarization": True,
    # Equalization only equalises when called with training=True (keras/src/.../equalization.py).
    "Equalization": False,
}


def _image(call: LayerCall) -> TVal:
    """The layer's image input; a dict of images, labels and boxes is a data pipeline, not a model."""
    first = call.args[0] if call.args else None
    if not isinstance(first, TVal):
        raise call.unsupported("an input that is not a single image tensor (a dict of images, labels or "
                               "bounding boxes)", hint="keep augmentation of labels and boxes in the data "
                               "pipeline; porttax converts layers applied to image batches")
    return first


@keras_to_torch(*PASS_THROUGH)
def identity_at_inference(call: LayerCall) -> TVal:
    """No module: at inference the image passes through, cast to the compute dtype where Keras casts it."""
    v = _image(call)
    dtype = str(call.layer.compute_dtype)
    if not PASS_THROUGH[call.kind] or v.dtype == dtype:
        return v
    x = call.ctx.in_layout(v, v.perm).to(getattr(torch, dtype))
    return live(x, v.shape, v.perm, dtype)


# ---- RandomCrop ---------------------------------------------------------------------------------

def _nchw(call: LayerCall, v: TVal) -> tuple[Any, Any, int, int]:
    """A rank-4 image batch as (N, C, H, W) in the compute dtype, the layout of the result, and the
    static height and width (Keras' RandomCrop requires them too)."""
    layer = call.layer
    if v.rank != 4:
        raise call.unsupported(f"a rank-{v.rank} input; porttax converts batches of images (rank 4)")
    if layer.data_format == "channels_first":
        x, perm, (h, w) = call.ctx.keras_layout(v), None, v.shape[2:4]
    else:
        x, perm, (h, w) = call.ctx.channels_first(v), channels_first(4), v.shape[1:3]
    if h is None or w is None:
        raise call.unsupported("an image size this model leaves unknown; the crop window depends on it",
                               hint="give the model input a static height and width")
    dtype = str(layer.compute_dtype)
    return (x if v.dtype == dtype else x.to(getattr(torch, dtype))), perm, int(h), int(w)


def _crops_at_inference(layer: Any, shape: tuple[int, ...], dtype: str) -> bool:
    """Whether this Keras' RandomCrop returns its declared (height, width) when not training.

    Keras 3.15 returns the image uncropped (keras-team/keras#21868); a fixed release crops. The layer is
    run once on a zero image of the model's input size, which draws no random numbers."""
    keras = import_keras()
    out = layer(np.zeros((1, *shape[1:]), dtype=dtype), training=False)
    axes = (2, 3) if layer.data_format == "channels_first" else (1, 2)
    got = tuple(int(d) for d in keras.ops.shape(out))
    return (got[axes[0]], got[axes[1]]) == (int(layer.height), int(layer.width))


def inference_crop_window(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """(top, left) of RandomCrop's inference window: where the largest window of the target aspect
    ratio starts, computed in Python floats and truncated, as Keras computes it."""
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2)


@keras_to_torch("RandomCrop")
def random_crop(call: LayerCall) -> TVal:
    """Keras' inference crop: a (height, width) slice from where the centred window of the target aspect
    ratio starts (cut short by the image edge), resized bilinearly when that leaves it smaller."""
    layer = call.layer
    v = _image(call)
    th, tw = int(layer.height), int(layer.width)
    x, perm, h, w = _nchw(call, v)
    if not _crops_at_inference(layer, tuple(d or 1 for d in v.shape), v.dtype):
        raise call.unsupported(
            f"this Keras ({import_keras().__version__}) returns RandomCrop's input uncropped at inference "
            f"(keras-team/keras#21868) although the layer declares a {th}x{tw} output, so no torch module can "
            "match both what Keras computes and the shape it promises",
            hint=f"for the centred crop RandomCrop documents at inference, use keras.layers.Resizing({th}, {tw}, "
            "crop_to_aspect_ratio=True) in the inference model; a Keras release that crops at inference converts "
            "as it is")
    top, left = inference_crop_window(h, w, th, tw)
    x = x[:, :, top:top + th, left:left + tw]
    if min(h - top, th) != th or min(w - left, tw) != tw:
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    return call.result(x, perm)


# ---- AutoContrast -------------------------------------------------------------------------------

class AutoContrast(nn.Module):
    """Keras AutoContrast: each image channel stretched so its minimum and maximum span the value range.

    Computed as Keras does: mapped to [0, 255], `x * scale + offset` with scale = 255 / (max - min), clipped,
    mapped back; where that is NaN (a flat channel) the input is kept. `dims` are the axes Keras reduces
    over: 1 and 2, whatever the data format (so a channels-first image is reduced over channels and rows,
    as Keras 3.15 does)."""

    def __init__(self, value_range: tuple[float, float], dims: tuple[int, int]) -> None:
        super().__init__()
        self.low, self.high = float(value_range[0]), float(value_range[1])
        self.dims = tuple(dims)

    def _to_range(self, x: Any, low: float, high: float, new_low: float, new_high: float) -> Any:
        if (low, high) == (new_low, new_high):
            return x
        return (x - low) / (high - low) * (new_high - new_low) + new_low

    def forward(self, x: Any) -> Any:
        images = self._to_range(x, self.low, self.high, 0.0, 255.0)
        lowest = images.amin(dim=self.dims, keepdim=True)
        highest = images.amax(dim=self.dims, keepdim=True)
        scale = 255.0 / (highest - lowest)
        offset = -lowest * scale
        out = torch.clamp(images * scale + offset, 0.0, 255.0)
        out = self._to_range(out, 0.0, 255.0, self.low, self.high)
        return torch.where(torch.isnan(out), x, out)

    def extra_repr(self) -> str:
        return f"value_range=({self.low}, {self.high}), dims={self.dims}"


@keras_to_torch("AutoContrast")
def auto_contrast(call: LayerCall) -> TVal:
    layer = call.layer
    v = _image(call)
    if v.rank != 4:
        raise call.unsupported(f"a rank-{v.rank} input; porttax converts batches of images (rank 4)")
    dtype = str(layer.compute_dtype)
    if "float" not in dtype:
        raise call.unsupported(f"compute dtype {dtype}")
    # The Keras layout: the reduced axes are then Keras' own (1, 2) on every call of a shared layer.
    x = call.ctx.keras_layout(v)
    if v.dtype != dtype:
        x = x.to(getattr(torch, dtype))  # Keras' output is float even where it keeps the input (NaN)
    module = call.module() or AutoContrast(tuple(layer.value_range), (1, 2))
    return call.result(call.add_module(module)(x))


# ---- ContrastLimitedAdaptiveHistogramEqualization -----------------------------------------------

class CLAHE(nn.Module):
    """Keras' ContrastLimitedAdaptiveHistogramEqualization, step for step on (N, H, W, C) images.

    The image (mapped to [0, 255]) is padded symmetrically to whole tiles; each tile's 256-bin histogram
    per channel is clipped at `clip_limit * tile_pixels / 256` with the excess spread evenly, turned into
    a normalised CDF, and every pixel reads the CDFs of its four nearest tiles (edge tiles repeated) and
    blends them bilinearly. Sizes are static, as Keras' own reshapes need them."""

    def __init__(self, value_range: tuple[float, float], clip_limit: float, grid: tuple[int, int],
                 size: tuple[int, int], channels_first: bool) -> None:
        super().__init__()
        self.low, self.high = float(value_range[0]), float(value_range[1])
        self.clip_limit = float(clip_limit)
        self.grid = (int(grid[0]), int(grid[1]))
        self.size = (int(size[0]), int(size[1]))
        self.channels_first = bool(channels_first)
        (gh, gw), (h, w) = self.grid, self.size
        self.tile = ((h + gh - 1) // gh, (w + gw - 1) // gw)
        for name, (length, tile, cells) in {"y": (h, self.tile[0], gh), "x": (w, self.tile[1], gw)}.items():
            coord = (np.arange(tile * cells, dtype=np.float32) - np.float32(tile / 2.0)) / np.float32(tile)
            coord = coord + np.float32(1.0)
            low = np.floor(coord)
            self.register_buffer(f"{name}_weight", torch.from_numpy(coord - low), persistent=False)
            self.register_buffer(f"{name}0", torch.from_numpy(np.clip(low, 0, cells + 1).astype(np.int64)),
                                 persistent=False)
            self.register_buffer(f"{name}1", torch.from_numpy(np.clip(low + 1, 0, cells + 1).astype(np.int64)),
                                 persistent=False)

    def _to_range(self, x: Any, low: float, high: float, new_low: float, new_high: float) -> Any:
        if (low, high) == (new_low, new_high):
            return x
        x = x.to(torch.float32)
        return (x - low) / (high - low) * (new_high - new_low) + new_low

    def _pad(self, x: Any) -> Any:
        """np.pad(mode="symmetric") at the bottom and right: the edge rows mirrored, edge included."""
        (th, tw), (gh, gw), (h, w) = self.tile, self.grid, self.size
        pad_h, pad_w = th * gh - h, tw * gw - w
        if pad_h:
            x = torch.cat([x, x[:, h - pad_h:].flip(1)], dim=1)
        if pad_w:
            x = torch.cat([x, x[:, :, w - pad_w:].flip(2)], dim=2)
        return x

    def _cdfs(self, images: Any) -> Any:
        """Each tile's clipped, normalised CDF, edge tiles repeated: (N, gh + 2, gw + 2, C, 256)."""
        (th, tw), (gh, gw) = self.tile, self.grid
        n, channels = images.shape[0], images.shape[3]
        tiles = images.reshape(n, gh, th, gw, tw, channels).permute(0, 1, 3, 5, 2, 4)
        bins = tiles.reshape(n, gh, gw, channels, th * tw).to(torch.int32).clamp(0, 255).to(torch.int64)
        hists = torch.zeros(n, gh, gw, channels, 256, dtype=torch.float32, device=images.device)
        hists = hists.scatter_add(-1, bins, torch.ones(bins.shape, dtype=torch.float32, device=images.device))
        if self.clip_limit > 0:
            limit = float(np.float32(self.clip_limit * (th * tw) / 256.0))
            clipped = hists.clamp(0.0, limit)
            hists = clipped + (hists - clipped).sum(dim=-1, keepdim=True) / 256.0
        cdf = hists.cumsum(dim=-1)
        cdf_min = cdf.amin(dim=-1, keepdim=True)
        denominator = float(th * tw) - cdf_min
        denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        cdf = torch.clamp((cdf - cdf_min) * 255.0 / denominator, 0.0, 255.0)
        cdf = torch.cat([cdf[:, :1], cdf, cdf[:, -1:]], dim=1)
        return torch.cat([cdf[:, :, :1], cdf, cdf[:, :, -1:]], dim=2)

    def forward(self, x: Any) -> Any:
        dtype = x.dtype
        if self.channels_first:
            x = x.permute(0, 2, 3, 1)
        images = self._pad(self._to_range(x, self.low, self.high, 0.0, 255.0))
        cdf = self._cdfs(images)
        n, channels = images.shape[0], images.shape[3]
        pixels = images.clamp(0, 255).to(torch.int32).to(torch.int64)
        b = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        c = torch.arange(channels, device=x.device).view(1, 1, 1, channels)
        y0, y1, x0, x1 = (t.view(*shape) for t, shape in ((self.y0, (1, -1, 1, 1)), (self.y1, (1, -1, 1, 1)),
                                                         (self.x0, (1, 1, -1, 1)), (self.x1, (1, 1, -1, 1))))
        wy, wx = self.y_weight.view(1, -1, 1, 1), self.x_weight.view(1, 1, -1, 1)
        top = cdf[b, y0, x0, c, pixels] * (1.0 - wx) + cdf[b, y0, x1, c, pixels] * wx
        bottom = cdf[b, y1, x0, c, pixels] * (1.0 - wx) + cdf[b, y1, x1, c, pixels] * wx
        out = (top * (1.0 - wy) + bottom * wy)[:, : self.size[0], : self.size[1]]
        out = self._to_range(out, 0.0, 255.0, self.low, self.high).to(dtype)
        return out.permute(0, 3, 1, 2) if self.channels_first else out

    def extra_repr(self) -> str:
        return (f"value_range=({self.low}, {self.high}), clip_limit={self.clip_limit}, grid={self.grid}, "
                f"size={self.size}")


@keras_to_torch("ContrastLimitedAdaptiveHistogramEqualization")
def clahe(call: LayerCall) -> TVal:
    layer = call.layer
    v = _image(call)
    if v.rank != 4:
        raise call.unsupported(f"a rank-{v.rank} input; porttax converts batches of images (rank 4)")
    first = layer.data_format == "channels_first"
    h, w, c = (v.shape[2], v.shape[3], v.shape[1]) if first else (v.shape[1], v.shape[2], v.shape[3])
    if h is None or w is None or c is None:
        raise call.unsupported("an image size this model leaves unknown; the tiles depend on it",
                               hint="give the model input a static height, width and channel count")
    grid = tuple(int(g) for g in layer.tile_grid_size)
    if any((size + g - 1) // g * g - size > size for size, g in zip((h, w), grid)):
        raise call.unsupported(f"a {h}x{w} image with a {grid} tile grid (padding to whole tiles would mirror "
                               "more rows than the image has)")
    module = call.module() or CLAHE(tuple(layer.value_range), float(layer.clip_limit), grid, (int(h), int(w)), first)
    return live(call.add_module(module)(call.ctx.keras_layout(v)), v.shape, None, v.dtype)
