"""Reading an image at computed places: `F.grid_sample` (aten.grid_sampler_2d) and `nn.Fold` (aten.col2im).

grid_sample is written from gathers: the image is held channels-last and flattened to
(N, H*W, C), and the taps of the interpolation (1 nearest, 2 x 2 bilinear, 4 x 4 bicubic) are read
by one `take_along_axis` of their flat pixel indices, masked to zero where a tap falls outside the
image (padding_mode="zeros"). Coordinates, padding and weights follow torch's CPU kernel step by step
(the same unnormalisation, reflection and tap order), so the results agree to rounding.

col2im sums overlapping blocks back into an image. Each kernel offset's block is spread to the
stride (zeros between) and shifted into place; adding them in torch's order (kernel row, then
column) gives torch's sums exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, channels_last, live_val, permute
from porttax.converters.torch_to_keras.conv import _tuple
from porttax.converters.torch_to_keras.elementwise import broadcast_add

_INTERPOLATION = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_PADDING = {0: "zeros", 1: "border", 2: "reflection"}
_CUBIC_A = -0.75  # torch's bicubic constant (as in its upsampling)


class _Axis:
    """How grid coordinates along one image axis become pixel positions (torch's ComputeLocation)."""

    def __init__(self, ops: Any, size: int, padding: str, align_corners: bool) -> None:
        self.ops, self.size, self.padding, self.align = ops, size, padding, align_corners

    def unnormalize(self, coord: Any) -> Any:
        """-1 and +1 are the centres of the edge pixels (align_corners) or the image's outer edges."""
        ops = self.ops
        if self.align:
            return ops.multiply(ops.add(coord, 1.0), (self.size - 1) / 2)
        return ops.subtract(ops.multiply(ops.add(coord, 1.0), self.size / 2), 0.5)

    def bound(self, pos: Any) -> Any:
        """The position padding_mode reads instead: clipped (border), mirrored then clipped (reflection)."""
        if self.padding == "reflection":
            pos = self._reflect(pos)
        if self.padding in ("border", "reflection"):
            pos = self.ops.minimum(self.ops.maximum(pos, 0.0), float(self.size - 1))
        return pos

    def _reflect(self, pos: Any) -> Any:
        ops = self.ops
        if self.align:
            if self.size <= 1:
                return ops.zeros_like(pos)
            low, twice_span = 0.0, 2.0 * (self.size - 1)
        else:
            low, twice_span = -0.5, 2.0 * self.size
        distance = ops.abs(ops.subtract(pos, low))
        extra = ops.subtract(distance, ops.multiply(ops.trunc(ops.divide(distance, twice_span)), twice_span))
        return ops.add(ops.minimum(extra, ops.subtract(twice_span, extra)), low)


class _Image:
    """An (N, H, W, C) image flattened for gathers of whole pixels (all channels at once)."""

    def __init__(self, call: Call, v: Val, grid_hw: tuple[int, int]) -> None:
        self.n, self.c, self.h, self.w = v.shape
        self.ho, self.wo = grid_hw
        self.call, self.ops = call, call.ctx.ops
        held = call.ctx.in_layout(v, channels_last(4))
        self.flat = call.ctx.reshape(held, [self.n, self.h, self.w, self.c], [self.n, self.h * self.w, self.c])

    def read(self, x: Any, y: Any) -> Any:
        """The pixels at every pair of tap positions: x (N, Ho, Wo, Tx) and y (N, Ho, Wo, Ty) hold
        integer-valued floats; the result is (N, Ho, Wo, Ty, Tx, C), zero where a tap lies outside the
        image. One gather reads every tap."""
        ops = self.ops
        tx, ty = int(x.shape[-1]), int(y.shape[-1])
        x, y = ops.expand_dims(x, -2), ops.expand_dims(y, -1)  # broadcast to (N, Ho, Wo, Ty, Tx)
        inside = ops.logical_and(ops.logical_and(ops.greater(x, -1.0), ops.less(x, float(self.w))),
                                 ops.logical_and(ops.greater(y, -1.0), ops.less(y, float(self.h))))
        xi = ops.cast(ops.minimum(ops.maximum(x, 0.0), float(self.w - 1)), "int32")
        yi = ops.cast(ops.minimum(ops.maximum(y, 0.0), float(self.h - 1)), "int32")
        # a NaN position casts to an arbitrary integer: the clip keeps the gather in range, `inside` zeroes it
        index = ops.clip(broadcast_add(ops, ops.multiply(yi, self.w), xi), 0, self.h * self.w - 1)
        taps = [self.n, self.ho, self.wo, ty, tx]
        index = self.call.ctx.reshape(index, taps, [self.n, self.ho * self.wo * ty * tx, 1])
        pixels = ops.take_along_axis(self.flat, index, axis=1)
        pixels = self.call.ctx.reshape(pixels, [self.n, self.ho * self.wo * ty * tx, self.c], [*taps, self.c])
        return ops.where(ops.expand_dims(inside, -1), pixels, 0.0)


def _cubic_weights(ops: Any, t: Any) -> Any:
    """Weights of the taps at -1, 0, 1, 2 around a fraction t (torch's cubic convolution, A = -0.75),
    stacked on a last axis."""
    a = _CUBIC_A

    def near(x: Any) -> Any:  # |x| <= 1
        return ops.add(ops.multiply(ops.multiply(ops.subtract(ops.multiply(x, a + 2), a + 3), x), x), 1.0)

    def far(x: Any) -> Any:  # 1 < |x| < 2
        inner = ops.add(ops.multiply(ops.subtract(ops.multiply(x, a), 5 * a), x), 8 * a)
        return ops.subtract(ops.multiply(inner, x), 4 * a)

    return ops.stack([far(ops.add(t, 1.0)), near(t), near(ops.subtract(1.0, t)), far(ops.subtract(2.0, t))], -1)


def _interpolate(ops: Any, pixels: Any, wy: Any, wx: Any) -> Any:
    """Σ_i wy[i] · Σ_j wx[j] · pixels[i, j], as torch sums along x first: pixels (N, Ho, Wo, Ty, Tx, C),
    weights (N, Ho, Wo, Ty) and (N, Ho, Wo, Tx)."""
    rows = ops.sum(ops.multiply(pixels, ops.expand_dims(ops.expand_dims(wx, -2), -1)), axis=-2)
    return ops.sum(ops.multiply(rows, ops.expand_dims(wy, -1)), axis=-2)


@torch_to_keras("aten.grid_sampler_2d", "aten.grid_sampler")
def grid_sampler_2d(call: Call) -> Val:
    """F.grid_sample on a 4-D input: bilinear, nearest or bicubic; zeros, border or reflection padding."""
    ops = call.ctx.ops
    v, grid_val = call.val("input"), call.val("grid")
    if v.rank != 4:
        raise call.unsupported(f"grid_sample of a {v.rank}-D input (grid_sampler_3d); only (N, C, H, W) converts",
                               hint="sample 3-D volumes slice by slice, or open an issue with the model")
    mode = _INTERPOLATION.get(int(call.args["interpolation_mode"]))
    padding = _PADDING.get(int(call.args["padding_mode"]))
    if mode is None or padding is None:
        raise call.unsupported(f"interpolation_mode {call.args['interpolation_mode']} / padding_mode "
                               f"{call.args['padding_mode']} (bilinear, nearest, bicubic / zeros, border, "
                               "reflection convert)")
    align = bool(call.args["align_corners"])
    hw = (int(grid_val.shape[1]), int(grid_val.shape[2]))
    image = _Image(call, v, hw)
    along_x = _Axis(ops, image.w, padding, align)
    along_y = _Axis(ops, image.h, padding, align)
    grid = call.tensor("grid")
    gx, gy = grid[..., 0:1], grid[..., 1:2]  # (N, Ho, Wo, 1): one tap
    if mode == "nearest":  # round half to even, as torch's nearbyint
        pixels = image.read(ops.round(along_x.bound(along_x.unnormalize(gx))),
                            ops.round(along_y.bound(along_y.unnormalize(gy))))
        out = ops.squeeze(pixels, (3, 4))
    elif mode == "bilinear":
        x, y = along_x.bound(along_x.unnormalize(gx)), along_y.bound(along_y.unnormalize(gy))
        west, north = ops.floor(x), ops.floor(y)
        to_w, to_n = ops.subtract(x, west), ops.subtract(y, north)
        pixels = image.read(ops.concatenate([west, ops.add(west, 1.0)], -1),
                            ops.concatenate([north, ops.add(north, 1.0)], -1))
        out = _interpolate(ops, pixels, ops.concatenate([ops.subtract(1.0, to_n), to_n], -1),
                           ops.concatenate([ops.subtract(1.0, to_w), to_w], -1))
    else:  # bicubic: 4 x 4 taps around the unpadded position, each tap padded on its own
        x, y = along_x.unnormalize(gx), along_y.unnormalize(gy)
        x0, y0 = ops.floor(x), ops.floor(y)
        steps = np.arange(-1.0, 3.0, dtype=np.float32)
        taps_x, taps_y = broadcast_add(ops, x0, steps), broadcast_add(ops, y0, steps)  # (N, Ho, Wo, 4)
        pixels = image.read(along_x.bound(taps_x), along_y.bound(taps_y))
        out = _interpolate(ops, pixels, _cubic_weights(ops, ops.subtract(y[..., 0], y0[..., 0])),
                           _cubic_weights(ops, ops.subtract(x[..., 0], x0[..., 0])))
    return live_val(out, (v.shape[0], v.shape[1], *hw), channels_last(4))


def _spread(ops: Any, x: Any, axis: int, stride: int) -> Any:
    """stride - 1 zeros after every element along `axis` (static size), so element b lands at b * stride."""
    if stride == 1:
        return x
    size = int(x.shape[axis])
    x = ops.expand_dims(x, axis + 1)
    widths = [[0, 0]] * len(x.shape)
    widths[axis + 1] = [0, stride - 1]
    x = ops.pad(x, widths)
    shape = [-1 if d is None else int(d) for d in x.shape]
    return ops.reshape(x, shape[:axis] + [size * stride] + shape[axis + 2:])


def _place(ops: Any, x: Any, axis: int, offset: int, length: int) -> Any:
    """x shifted by `offset` along `axis` and cut or zero-padded to `length`: out[i] = x[i - offset]."""
    size = int(x.shape[axis])
    start, stop = max(0, -offset), min(size, length - offset)
    index = [slice(None)] * len(x.shape)
    if stop <= start:  # the block lies wholly in the padding: it adds nothing
        index[axis] = slice(0, 1)
        return ops.repeat(ops.zeros_like(x[tuple(index)]), length, axis=axis)
    index[axis] = slice(start, stop)
    x = x[tuple(index)] if (start, stop) != (0, size) else x
    before = offset + start
    after = length - before - (stop - start)
    if before or after:
        widths = [[0, 0]] * len(x.shape)
        widths[axis] = [before, after]
        x = ops.pad(x, widths)
    return x


@torch_to_keras("aten.col2im")
def col2im(call: Call) -> Val:
    """nn.Fold: (N, C*kh*kw, L) blocks summed into an (N, C, H, W) image, held channels-last."""
    ops = call.ctx.ops
    v = call.val("self")
    if v.rank not in (2, 3):
        raise call.unsupported(f"col2im of a {v.rank}-D input (it takes (N, C*kh*kw, L) or (C*kh*kw, L))")
    (h, w), (kh, kw) = _tuple(call.args["output_size"], 2), _tuple(call.args["kernel_size"], 2)
    (dh, dw), (ph, pw), (sh, sw) = (_tuple(call.args[k], 2) for k in ("dilation", "padding", "stride"))
    x = call.ctx.torch_layout(v)
    batched = v.rank == 3
    shape = tuple(v.shape) if batched else (1, *v.shape)
    if not batched:
        x = ops.expand_dims(x, 0)
    n, ck, blocks = shape
    c = ck // (kh * kw)
    lh, lw = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if c * kh * kw != ck or lh * lw != blocks:
        raise call.unsupported(f"input of shape {tuple(v.shape)} does not hold {lh} x {lw} blocks of "
                               f"C x {kh} x {kw} for output_size {(h, w)}")
    x = call.ctx.reshape(x, list(shape), [n, c, kh, kw, lh, lw])
    x = permute(ops, x, (0, 2, 3, 4, 5, 1))  # (N, kh, kw, Lh, Lw, C): each kernel offset's block channels-last
    out = None
    for i in range(kh):
        for j in range(kw):
            block = _spread(ops, _spread(ops, x[:, i, j], 1, sh), 2, sw)
            block = _place(ops, _place(ops, block, 1, i * dh - ph, h), 2, j * dw - pw, w)
            out = block if out is None else ops.add(out, block)
    if not batched:
        return live_val(ops.squeeze(out, 0), (c, h, w), (1, 2, 0))
    return live_val(out, (n, c, h, w), channels_last(4))
