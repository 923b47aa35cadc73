"""Pooling, channels-last like the convolutions around it.

PyTorch pads max-pooling with -inf (here: a copied edge where the border is one wide, which gives the
same maxima) and average pooling with zeros (counted in the divisor unless
count_include_pad=False); Keras pooling only knows "valid"/"same", so padding is explicit here and
the divisor correction, which depends only on shapes, is folded into a constant.
"""

from __future__ import annotations

import math

import numpy as np

from porttax._frameworks import import_torch
from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, channels_last, live_val
from porttax.converters.torch_to_keras.conv import _pad_spatial, _tuple


def _pool_pads(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int, int]:
    span = d * (k - 1) + 1
    if ceil_mode:
        out = math.ceil((size + 2 * p - span) / s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
    else:
        out = (size + 2 * p - span) // s + 1
    extra = max(0, (out - 1) * s + span - (size + 2 * p))
    return p, p + extra, out


def _pooled_shape(v: Val, pads: list, k: tuple, stride: tuple) -> tuple[int, ...]:
    spatial = [(v.shape[2 + i] + a + b - k[i]) // stride[i] + 1 for i, (a, b) in enumerate(pads)]
    return (*v.shape[:2], *spatial)


def _pool(call: Call, kind: str) -> Val:
    keras = call.ctx.keras
    v = call.val("self")
    k = _tuple(call.args["kernel_size"], v.rank - 2)
    nd = len(k)
    stride = _tuple(call.args.get("stride") or k, nd)
    padding = _tuple(call.args.get("padding", 0), nd)
    dilation = _tuple(call.args.get("dilation", 1), nd)
    if any(d != 1 for d in dilation):
        raise call.unsupported("dilated pooling")
    ceil_mode = bool(call.args.get("ceil_mode", False))
    x = call.ctx.in_layout(v, channels_last(v.rank))
    spatial = v.shape[2:]
    pads = [_pool_pads(spatial[i], k[i], stride[i], padding[i], 1, ceil_mode)[:2] for i in range(nd)]
    name = call.layer_name()
    if kind == "max":
        if all(a <= 1 and b <= 1 for a, b in pads):
            # A one-wide border copied from the edge leaves every window's max unchanged (each padded
            # window also holds the edge element it copies), and unlike -inf it survives int8
            # quantisation (TFLite) and backends without infinities.
            widths = [[0, 0], *[list(p) for p in pads], [0, 0]]
            x = call.ctx.ops.pad(x, widths, mode="symmetric") if any(a or b for a, b in pads) else x
        else:
            x = _pad_spatial(call, x, pads, value=-np.inf)
        cls = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}[nd]
        out = call.ctx.apply_layer(cls(pool_size=k, strides=stride, padding="valid", name=name), x, {})
        return live_val(out, _pooled_shape(v, pads, k, stride), channels_last(v.rank))
    if call.args.get("divisor_override"):
        raise call.unsupported("avg_pool with divisor_override")
    x = _pad_spatial(call, x, pads)
    cls = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D,
           3: keras.layers.AveragePooling3D}[nd]
    out = call.ctx.apply_layer(cls(pool_size=k, strides=stride, padding="valid", name=name), x, {})
    count_include_pad = call.args.get("count_include_pad", True)
    ceil_extra = any(b != a for a, b in pads)
    if not count_include_pad or ceil_extra:
        # Divisor correction per output position. Keras divided every window by k^nd; torch divides by
        # its own count d. Pooling ones gives n/d in torch and n/k^nd over the zero-padded input
        # (n: input positions in the window), so torch = keras * (k^nd / d) = keras * torch_ones / keras_like.
        torch = import_torch()

        ones = torch.ones((1, 1, *spatial))
        fn = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d,
              3: torch.nn.functional.avg_pool3d}[nd]
        torch_ones = fn(ones, k, stride, padding, ceil_mode, count_include_pad)
        padded = torch.nn.functional.pad(ones, [q for pair in reversed(pads) for q in pair])
        keras_like = fn(padded, k, stride, 0, False, True)
        factor = (torch_ones / keras_like).numpy()[0, 0][..., None].astype(np.float32)
        out = call.ctx.ops.multiply(out, factor[None])
    return live_val(out, call.out_shape, channels_last(v.rank))


@torch_to_keras("aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d")
def max_pool(call: Call) -> Val:
    return _pool(call, "max")


@torch_to_keras("aten.max_pool2d_with_indices", "aten.max_pool1d_with_indices",
                "aten.max_pool3d_with_indices")
def max_pool_with_indices(call: Call) -> list:
    return [_pool(call, "max"), None]


@torch_to_keras("aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d")
def avg_pool(call: Call) -> Val:
    return _pool(call, "avg")


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """Adaptive average pooling along one axis is linear: a (size, out) averaging matrix."""
    m = np.zeros((size, out), np.float32)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[start:end, i] = 1.0 / (end - start)
    return m


def _adaptive(call: Call, kind: str) -> Val:
    keras, ops = call.ctx.keras, call.ctx.ops
    v = call.val("self")
    nd = v.rank - 2
    out_size = [int(o) if o is not None else v.shape[2 + i]
                for i, o in enumerate(_tuple(call.args["output_size"], nd))]
    x = call.ctx.in_layout(v, channels_last(v.rank))
    spatial = v.shape[2:]
    name = call.layer_name()
    if all(o == 1 for o in out_size):
        cls = {("avg", 1): keras.layers.GlobalAveragePooling1D, ("avg", 2): keras.layers.GlobalAveragePooling2D,
               ("avg", 3): keras.layers.GlobalAveragePooling3D, ("max", 1): keras.layers.GlobalMaxPooling1D,
               ("max", 2): keras.layers.GlobalMaxPooling2D, ("max", 3): keras.layers.GlobalMaxPooling3D}[(kind, nd)]
        out = call.ctx.apply_layer(cls(keepdims=True, name=name), x, {})
    elif all(s % o == 0 for s, o in zip(spatial, out_size)):
        k = tuple(s // o for s, o in zip(spatial, out_size))
        table = {"avg": [keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D],
                 "max": [keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D]}
        out = call.ctx.apply_layer(table[kind][nd - 1](pool_size=k, strides=k, name=name), x, {})
    elif kind == "avg":
        # one averaging matrix per spatial axis: "nhwc,hi,wj->nijc" in 2-D, the same pattern in 1-D and 3-D
        src, dst = "dhw"[3 - nd:], "ijk"[:nd]
        spec = f"n{src}c," + ",".join(f"{a}{b}" for a, b in zip(src, dst)) + f"->n{dst}c"
        out = ops.einsum(spec, x, *(_adaptive_matrix(s, o) for s, o in zip(spatial, out_size)))
    else:
        raise call.unsupported(f"adaptive {kind} pooling from {tuple(spatial)} to {tuple(out_size)}")
    return live_val(out, tuple(v.shape[:2]) + tuple(out_size), channels_last(v.rank))


@torch_to_keras("aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool3d",
                "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d")
def adaptive_avg_pool(call: Call) -> Val:
    return _adaptive(call, "avg")


@torch_to_keras("aten.adaptive_max_pool1d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d")
def adaptive_max_pool(call: Call) -> list:
    return [_adaptive(call, "max"), None]
