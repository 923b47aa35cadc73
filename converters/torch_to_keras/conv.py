"""Convolutions, run channels-last inside the Keras model.

Keras' channels-first convolutions are not supported by TensorFlow's CPU kernels, and channels-last
is what TF Serving and LiteRT run fastest, so the value moves to channels-last once and stays there
until an op needs the source layout (see context.py). Explicit padding is emitted as a separate
zero-pad because Keras' "same" pads asymmetrically for strided convolutions while PyTorch pads
symmetrically.
"""

from __future__ import annotations

from typing import Any

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, channels_last, live_val
from porttax.converters.transforms import Chain, Identity, Reshape, Transpose


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = [int(v) for v in value]
    return tuple(value * n) if len(value) == 1 else tuple(value)


def _pad_spatial(call: Call, x: Any, pads: list[tuple[int, int]], value: float = 0.0) -> Any:
    if not any(a or b for a, b in pads):
        return x
    widths = [[0, 0], *[list(p) for p in pads], [0, 0]]
    return call.ctx.ops.pad(x, widths, constant_values=value)


def _conv(call: Call, *, stride: Any, padding: Any, dilation: Any, groups: int, transposed: bool,
          output_padding: Any = 0) -> Val:
    keras = call.ctx.keras
    v, w = call.val("input"), call.val("weight")
    b = call.val("bias") if call.has("bias") else None
    if w.live or (isinstance(b, Val) and b.live):
        raise call.unsupported("convolution weights computed from the inputs")
    nd = w.rank - 2
    if nd not in (1, 2, 3):
        raise call.unsupported(f"{nd}-d convolution")
    rank = nd + 2
    unbatched = v.rank == nd + 1
    if unbatched:
        raise call.unsupported("unbatched convolution input", hint="add a batch dimension")
    x = call.ctx.in_layout(v, channels_last(rank))
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    kernel = tuple(int(k) for k in w.shape[2:])
    name = call.layer_name()
    weights: dict[str, Any] = {}
    if transposed:
        return _conv_transpose(call, x, w, b, stride, padding, dilation, groups, output_padding, name)
    # Keras refuses strides > 1 together with dilation > 1. A strided convolution is the stride-1
    # one sampled every `stride` positions, so run at stride 1 and subsample (exact; costs compute).
    subsample = stride if any(s > 1 for s in stride) and any(d > 1 for d in dilation) else None
    if subsample:
        stride = (1,) * nd
    if isinstance(padding, str):
        mode = padding
        pads = [(0, 0)] * nd
    else:
        pads = [(p, p) for p in _tuple(padding, nd)]
        mode = "valid"
        if all(s == 1 for s in stride) and all(
            p == (d * (k - 1)) // 2 and (d * (k - 1)) % 2 == 0 for (p, _), d, k in zip(pads, dilation, kernel)
        ):
            mode, pads = "same", [(0, 0)] * nd
    x = _pad_spatial(call, x, pads)
    c_in = int(w.shape[1]) * groups
    c_out = int(w.shape[0])
    spatial = tuple(range(2, rank))
    if groups > 1 and groups == c_in and nd in (1, 2):
        mult = c_out // c_in
        cls = keras.layers.DepthwiseConv2D if nd == 2 else keras.layers.DepthwiseConv1D
        layer = cls(kernel_size=kernel, strides=stride, padding=mode, dilation_rate=dilation,
                    depth_multiplier=mult, use_bias=b is not None, name=name,
                    depthwise_initializer="zeros")
        # torch (C*mult, 1, *k) -> (C, mult, *k) -> Keras (*k, C, mult)
        transform = Chain((Reshape((c_in, mult, *kernel), tuple(int(s) for s in w.shape)),
                           Transpose((*spatial, 0, 1))))
        weights["kernel"] = (w, transform)
    else:
        cls = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[nd]
        layer = cls(c_out, kernel, strides=stride, padding=mode, dilation_rate=dilation, groups=groups,
                    use_bias=b is not None, name=name, kernel_initializer="zeros")
        weights["kernel"] = (w, Transpose((*spatial, 1, 0)))  # (out, in/g, *k) -> (*k, in/g, out)
    if b is not None:
        weights["bias"] = (b, Identity())
    out = call.ctx.apply_layer(layer, x, weights)
    if subsample:
        out = out[(slice(None), *(slice(None, None, s) for s in subsample), slice(None))]
    return live_val(out, call.out_shape, channels_last(rank))


def _conv_transpose(call: Call, x: Any, w: Val, b: Any, stride: tuple, padding: Any, dilation: tuple,
                    groups: int, output_padding: Any, name: str) -> Val:
    keras = call.ctx.keras
    nd = w.rank - 2
    if groups != 1:
        raise call.unsupported("grouped transposed convolution (Keras ConvTranspose has no groups)")
    if any(d != 1 for d in dilation):
        raise call.unsupported("dilated transposed convolution")
    kernel = tuple(int(k) for k in w.shape[2:])
    out_pad = _tuple(output_padding, nd)
    pads = _tuple(padding, nd)
    cls = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose,
           3: keras.layers.Conv3DTranspose}[nd]
    layer = cls(int(w.shape[1]), kernel, strides=stride, padding="valid",
                output_padding=out_pad if any(out_pad) else None, use_bias=b is not None, name=name,
                kernel_initializer="zeros")
    spatial = tuple(range(2, nd + 2))
    weights: dict[str, Any] = {"kernel": (w, Transpose((*spatial, 1, 0)))}  # (in, out, *k) -> (*k, out, in)
    if b is not None:
        weights["bias"] = (b, Identity())
    out = call.ctx.apply_layer(layer, x, weights)
    if any(pads):
        shape = out.shape
        begin = [0] + list(pads) + [0]
        size = [shape[0]] + [int(shape[1 + i]) - 2 * pads[i] for i in range(nd)] + [shape[-1]]
        out = call.ctx.ops.slice(out, begin, size)
    return live_val(out, call.out_shape, channels_last(nd + 2))


@torch_to_keras("aten.conv1d", "aten.conv2d", "aten.conv3d")
def conv(call: Call) -> Val:
    return _conv(call, stride=call.args["stride"], padding=call.args["padding"],
                 dilation=call.args["dilation"], groups=int(call.args["groups"]), transposed=False)


@torch_to_keras("aten.conv_transpose1d", "aten.conv_transpose2d.input", "aten.conv_transpose3d")
def conv_transpose(call: Call) -> Val:
    return _conv(call, stride=call.args["stride"], padding=call.args["padding"],
                 dilation=call.args["dilation"], groups=int(call.args["groups"]), transposed=True,
                 output_padding=call.args["output_padding"])


@torch_to_keras("aten.convolution")
def convolution(call: Call) -> Val:
    return _conv(call, stride=call.args["stride"], padding=call.args["padding"],
                 dilation=call.args["dilation"], groups=int(call.args["groups"]),
                 transposed=bool(call.args["transposed"]), output_padding=call.args["output_padding"])
