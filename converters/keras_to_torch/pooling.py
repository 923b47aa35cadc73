"""Pooling: MaxPooling1D/2D/3D, AveragePooling1D/2D/3D and the global poolings.

Windowed pools take their input channels-first and leave it there, like convolutions. Global pools
reduce the spatial axes wherever the input is held, so a CNN's final pooling needs no transpose.

TensorFlow's "same" pooling pads like its convolutions (the odd cell at the end) and never counts
padding: max pooling pads with -inf, and average pooling divides each window's sum by its number of
real cells. torch's pools do both only for symmetric padding (`count_include_pad=False`), so asymmetric
average pooling uses `SameAvgPool`.
"""

from __future__ import annotations

from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, is_identity
from porttax.converters.keras_to_torch.conv import (
    SamePad,
    channels_first_input,
    pad_input,
    same_pads,
    spatial_sizes,
)

torch = import_torch()
nn = torch.nn

_MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


class SameAvgPool(nn.Module):
    """TensorFlow's "same" average pooling when the padding is asymmetric (or known only at run time):
    pool the zero-padded input, then divide by the same pooling of a padded tensor of ones, which is the
    fraction of each window that lies inside the input. Padding never counts, as in TensorFlow."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.pad = SamePad(kernel, stride)
        self.pool = _AVG[len(kernel)](tuple(kernel), tuple(stride))

    def forward(self, x: Any) -> Any:
        ones = x.new_ones((1, 1, *x.shape[2:]))
        return self.pool(self.pad(x)) / self.pool(self.pad(ones))


def _pool_args(layer: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    kernel = tuple(int(k) for k in layer.pool_size)
    strides = tuple(int(s) for s in (layer.strides or kernel))
    return len(kernel), kernel, strides


@keras_to_torch("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")
def max_pool(call: LayerCall) -> TVal:
    layer = call.layer
    rank, kernel, strides = _pool_args(layer)
    x, perm = channels_first_input(call, layer.data_format)
    x, padding = pad_input(call, x, layer.padding, spatial_sizes(call.x, layer.data_format), kernel, strides,
                           (1,) * rank, value=float("-inf"))
    module = _MAX[rank](kernel, strides, padding=padding)
    return call.result(call.add_module(module)(x), perm)


@keras_to_torch("AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
def average_pool(call: LayerCall) -> TVal:
    layer = call.layer
    rank, kernel, strides = _pool_args(layer)
    x, perm = channels_first_input(call, layer.data_format)
    padding: tuple[int, ...] = (0,) * rank
    mode = str(layer.padding).lower()
    if mode == "same":
        pairs = [same_pads(n, k, s) for n, k, s in zip(spatial_sizes(call.x, layer.data_format), kernel, strides)]
        if any(p is None or p[0] != p[1] for p in pairs):
            return call.result(call.add_module(SameAvgPool(kernel, strides))(x), perm)
        padding = tuple(p[0] for p in pairs if p is not None)
    elif mode != "valid":
        raise call.unsupported(f"padding {layer.padding!r}")
    module = _AVG[rank](kernel, strides, padding=padding, count_include_pad=False)
    return call.result(call.add_module(module)(x), perm)


def _global_pool(call: LayerCall, reduce: Any) -> TVal:
    """Reduce the spatial axes in the layout the input is held in; without keepdims, the remaining
    (batch, channels) axes keep their held order."""
    layer = call.layer
    v = call.x
    spatial = list(range(2, v.rank)) if layer.data_format == "channels_first" else list(range(1, v.rank - 1))
    x = call.ctx.in_layout(v, v.perm)
    dims = tuple(call.ctx.held_axis(v, a) for a in spatial)
    out = reduce(x, dim=dims, keepdim=bool(layer.keepdims))
    if layer.keepdims:
        return call.result(out, v.perm)
    held = tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)
    kept = [a for a in held if a not in spatial]  # Keras axes, in held order
    order = sorted(kept)
    return call.result(out, tuple(order.index(a) for a in kept))


@keras_to_torch("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def global_average_pool(call: LayerCall) -> TVal:
    if call.kwargs.get("mask") is not None or (len(call.args) > 1 and call.args[1] is not None):
        raise call.unsupported("masked global average pooling", hint="porttax does not carry Keras masks yet")
    return _global_pool(call, torch.mean)


@keras_to_torch("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D")
def global_max_pool(call: LayerCall) -> TVal:
    return _global_pool(call, torch.amax)


_ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


def _adaptive(call: LayerCall, table: dict) -> TVal:
    """Keras' adaptive pools use torch's windows (start floor(i*n/out), end ceil((i+1)*n/out))."""
    layer = call.layer
    size = tuple(int(s) for s in layer.output_size)
    x, perm = channels_first_input(call, layer.data_format)
    return call.result(call.add_module(table[len(size)](size))(x), perm)


@keras_to_torch("AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D")
def adaptive_average_pool(call: LayerCall) -> TVal:
    return _adaptive(call, _ADAPTIVE_AVG)


@keras_to_torch("AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D")
def adaptive_max_pool(call: LayerCall) -> TVal:
    return _adaptive(call, _ADAPTIVE_MAX)
