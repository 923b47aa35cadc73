"""`pixel_shuffle` / `pixel_unshuffle` (nn.PixelShuffle: ESPCN-style super-resolution, some decoders).

Keras has `depth_to_space` only through TensorFlow, and it orders the channel blocks the other way
(TF reads channel (i·r + j)·C + c, torch c·r² + i·r + j), so the shuffle is written as what it is — a
reshape, one permutation and a reshape — in the layout the value is held in: channels-last after a
convolution (no transpose inserted), the source layout otherwise.
"""

from __future__ import annotations

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, channels_last, live_val, permute
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT
from porttax.torch_ir import is_open


def _input(call: Call) -> tuple[Val, bool]:
    v = call.val("self")
    if v.rank != 4:
        raise call.unsupported(f"a {v.rank}-d input (porttax converts the 4-d (N, C, H, W) case)")
    if v.dims is not None and any(is_open(d) for d in v.dims[1:]):
        raise call.unsupported("open channel or spatial sizes", hint=STATIC_HINT)
    return v, v.perm == channels_last(4)


@torch_to_keras("aten.pixel_shuffle")
def pixel_shuffle(call: Call) -> Val:
    """(N, C·r², H, W) → (N, C, H·r, W·r): out[n, c, h·r + i, w·r + j] = in[n, c·r² + i·r + j, h, w]."""
    ops = call.ctx.ops
    v, nhwc = _input(call)
    r = int(call.args["upscale_factor"])
    _, cin, h, w = v.shape
    c = cin // (r * r)
    if nhwc:  # (N, H, W, C, r, r) → (N, H, r, W, r, C)
        x = ops.reshape(v.tensor, (-1, h, w, c, r, r))
        x = ops.reshape(permute(ops, x, (0, 1, 4, 2, 5, 3)), (-1, h * r, w * r, c))
        return live_val(x, call.out_shape, v.perm)
    x = ops.reshape(call.ctx.in_layout(v, None), (-1, c, r, r, h, w))  # → (N, C, H, r, W, r)
    return live_val(ops.reshape(permute(ops, x, (0, 1, 4, 2, 5, 3)), (-1, c, h * r, w * r)), call.out_shape)


@torch_to_keras("aten.pixel_unshuffle")
def pixel_unshuffle(call: Call) -> Val:
    """(N, C, H·r, W·r) → (N, C·r², H, W), the inverse of pixel_shuffle."""
    ops = call.ctx.ops
    v, nhwc = _input(call)
    r = int(call.args["downscale_factor"])
    _, c, hr, wr = v.shape
    h, w = hr // r, wr // r
    if nhwc:  # (N, H, r, W, r, C) → (N, H, W, C, r, r)
        x = ops.reshape(v.tensor, (-1, h, r, w, r, c))
        x = ops.reshape(permute(ops, x, (0, 1, 3, 5, 2, 4)), (-1, h, w, c * r * r))
        return live_val(x, call.out_shape, v.perm)
    x = ops.reshape(call.ctx.in_layout(v, None), (-1, c, h, r, w, r))  # → (N, C, r, r, H, W)
    return live_val(ops.reshape(permute(ops, x, (0, 1, 3, 5, 2, 4)), (-1, c * r * r, h, w)), call.out_shape)
