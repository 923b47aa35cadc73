"""Convolutions: Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D and Conv1D/2D/3DTranspose.

Each becomes the `torch.nn` convolution a person would write, named after the Keras layer, taking its
input channels-first and leaving its output held channels-first, so a CNN runs without transposes
between layers (the layout travels with the value, see context.TVal).

Kernels move once, at conversion: a Keras kernel (k..., in/groups, out) is torch's (out, in/groups, k...),
a depthwise kernel (k..., in, multiplier) is a grouped torch kernel (in*multiplier, 1, k...), and a
transposed-convolution kernel (k..., out, in) is torch's (in, out, k...).

Padding is where the frameworks differ. TensorFlow's "same" pads `max((ceil(n/s) - 1)*s + k - n, 0)`
cells in total and puts the odd one at the end; torch's `padding=` is symmetric (and its "same" refuses
strides). Symmetric cases use the module's own padding; the others pad explicitly first (`F.pad` with the
pads computed from the static size, or `SamePad` when the size is only known at run time).
"""

from __future__ import annotations

from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.activation import apply_activation
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first
from porttax.converters.keras_to_torch.dense import refuse_quantized
from porttax.converters.transforms import Chain, Identity, Reshape, Transpose

torch = import_torch()
nn = torch.nn
F = torch.nn.functional

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class SamePad(nn.Module):
    """TensorFlow's "same" padding for a channels-first input whose spatial size is known only at run
    time: each spatial dim of size n gets `max((ceil(n/s) - 1)*s + k - n, 0)` cells, the odd one at the
    end, filled with `value` (0 for convolutions, -inf for max pooling)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int] | None = None,
                 value: float = 0.0) -> None:
        super().__init__()
        self.kernel = tuple(int(k) for k in kernel)
        self.stride = tuple(int(s) for s in stride)
        self.dilation = tuple(int(d) for d in (dilation or (1,) * len(self.kernel)))
        self.value = float(value)

    def forward(self, x: Any) -> Any:
        pads: list[Any] = []
        for i in reversed(range(len(self.kernel))):  # F.pad lists the last dim first
            n = x.shape[2 + i]
            k = (self.kernel[i] - 1) * self.dilation[i] + 1
            s = self.stride[i]
            total = torch.sym_max(((n + s - 1) // s - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, dilation={self.dilation}, value={self.value}"


def same_pads(size: int | None, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int] | None:
    """(before, after) of TensorFlow's "same" padding for one dim; None when it depends on an unknown size."""
    k = (kernel - 1) * dilation + 1
    if stride == 1:
        total = k - 1  # the output keeps the size, whatever it is
    elif size is None:
        return None
    else:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def flat_pads(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """(before, after) per spatial dim, first dim first, as F.pad wants them (last dim first)."""
    out: list[int] = []
    for before, after in reversed(pairs):
        out += [int(before), int(after)]
    return out


def spatial_sizes(v: TVal, data_format: str) -> list[int | None]:
    shape = v.shape or ()
    return list(shape[2:] if data_format == "channels_first" else shape[1:-1])


def channels_first_input(call: LayerCall, data_format: str) -> tuple[Any, Any]:
    """The input as torch wants it (N, C, spatial...) and the layout the result is held in."""
    v = call.x
    if data_format == "channels_first":
        return call.ctx.keras_layout(v), None
    return call.ctx.channels_first(v), channels_first(v.rank)


def pad_input(call: LayerCall, x: Any, padding: str, sizes: Sequence[int | None], kernel: Sequence[int],
              strides: Sequence[int], dilation: Sequence[int], value: float = 0.0) -> tuple[Any, tuple[int, ...]]:
    """Pad a channels-first input as Keras `padding` does; returns it and the symmetric padding left for
    the torch module itself to apply."""
    n = len(kernel)
    padding = str(padding).lower()
    if padding == "valid":
        return x, (0,) * n
    if padding == "causal":  # Conv1D: everything before, so output t sees inputs ≤ t
        pairs = [((kernel[0] - 1) * dilation[0], 0)]
    elif padding == "same":
        found = [same_pads(sz, k, s, d) for sz, k, s, d in zip(sizes, kernel, strides, dilation)]
        if any(p is None for p in found):
            pad = call.add_module(SamePad(kernel, strides, dilation, value), "pad")
            return pad(x), (0,) * n
        pairs = [p for p in found if p is not None]
    else:
        raise call.unsupported(f"padding {padding!r}")
    if all(before == after for before, after in pairs):
        return x, tuple(before for before, _ in pairs)
    return F.pad(x, flat_pads(pairs), value=value) if value else F.pad(x, flat_pads(pairs)), (0,) * n


def _finish(call: LayerCall, out: Any, perm: Any) -> TVal:
    held = call.result(out, perm)
    return call.result(apply_activation(call, call.layer.activation, out, held), perm)


def _kernel_to_torch(rank: int) -> Transpose:
    """Keras (k..., a, b) → torch (b, a, k...)."""
    return Transpose((rank + 1, rank, *range(rank)))


@keras_to_torch("Conv1D", "Conv2D", "Conv3D")
def conv(call: LayerCall) -> TVal:
    refuse_quantized(call)
    layer = call.layer
    rank = int(layer.rank)
    x, perm = channels_first_input(call, layer.data_format)
    kernel, strides, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    x, padding = pad_input(call, x, layer.padding, spatial_sizes(call.x, layer.data_format), kernel, strides,
                           dilation)
    weight = layer.kernel
    groups = int(layer.groups)
    in_channels = int(weight.shape[-2]) * groups
    module = call.module() or _CONV[rank](in_channels, int(layer.filters), kernel, stride=strides, padding=padding,
                                          dilation=dilation, groups=groups, bias=bool(layer.use_bias))
    call.port(weight, module, "weight", _kernel_to_torch(rank))
    if layer.use_bias:
        call.port(layer.bias, module, "bias", Identity())
    return _finish(call, call.add_module(module)(x), perm)


def _depthwise_module(call: LayerCall, kernel_var: Any, rank: int, padding: tuple[int, ...], bias: bool) -> Any:
    """A grouped convolution (groups = input channels) computing Keras' depthwise step.

    Keras output channel c*multiplier + m reads input channel c with kernel[..., c, m]; torch's group c
    produces output channels c*multiplier .. c*multiplier + multiplier - 1 from input channel c, so the
    kernel becomes (in, multiplier, k...) flattened to (in*multiplier, 1, k...).
    """
    layer = call.layer
    shape = tuple(int(d) for d in kernel_var.shape)
    channels, mult = shape[-2], shape[-1]
    suffix = "depthwise" if hasattr(layer, "pointwise_kernel") else ""
    module = call.module(suffix) or _CONV[rank](channels, channels * mult, shape[:-2], stride=tuple(layer.strides),
                                                padding=padding, dilation=tuple(layer.dilation_rate),
                                                groups=channels, bias=bias)
    transform = Chain((Transpose((rank, rank + 1, *range(rank))),
                       Reshape((channels * mult, 1, *shape[:-2]), (channels, mult, *shape[:-2]))))
    call.port(kernel_var, module, "weight", transform, suffix=suffix)
    return module


@keras_to_torch("DepthwiseConv1D", "DepthwiseConv2D")
def depthwise_conv(call: LayerCall) -> TVal:
    refuse_quantized(call)
    layer = call.layer
    rank = int(layer.rank)
    x, perm = channels_first_input(call, layer.data_format)
    x, padding = pad_input(call, x, layer.padding, spatial_sizes(call.x, layer.data_format),
                           tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate))
    module = _depthwise_module(call, layer.kernel, rank, padding, bool(layer.use_bias))
    if layer.use_bias:
        call.port(layer.bias, module, "bias", Identity())
    return _finish(call, call.add_module(module)(x), perm)


@keras_to_torch("SeparableConv1D", "SeparableConv2D")
def separable_conv(call: LayerCall) -> TVal:
    """A depthwise convolution (`<name>.depthwise`, no bias) then a 1x1 one (`<name>.pointwise`)."""
    refuse_quantized(call)
    layer = call.layer
    rank = int(layer.rank)
    x, perm = channels_first_input(call, layer.data_format)
    x, padding = pad_input(call, x, layer.padding, spatial_sizes(call.x, layer.data_format),
                           tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate))
    depthwise = _depthwise_module(call, layer.depthwise_kernel, rank, padding, False)
    pw = layer.pointwise_kernel
    pointwise = call.module("pointwise") or _CONV[rank](int(pw.shape[-2]), int(pw.shape[-1]), 1,
                                                        bias=bool(layer.use_bias))
    call.port(pw, pointwise, "weight", _kernel_to_torch(rank), suffix="pointwise")
    if layer.use_bias:
        call.port(layer.bias, pointwise, "bias", Identity(), suffix="pointwise")
    out = call.add_module(depthwise, "depthwise")(x)
    out = call.add_module(pointwise, "pointwise")(out)
    return _finish(call, out, perm)


def transpose_crops(size: int, kernel: int, stride: int, dilation: int, padding: str,
                    output_padding: int | None) -> tuple[int, int]:
    """How many cells Keras' transposed convolution drops from each end of the full result.

    The full result of a transposed convolution has (n - 1)*s + k_eff cells. TensorFlow computes the
    adjoint of a forward convolution over an output of Keras' chosen size (see Keras'
    `_get_output_shape_given_tf_padding`) with that convolution's padding, so it drops the forward
    conv's `before` padding at the start and whatever is left at the end; a negative count at the end
    means zero cells appended (they get the bias).
    """
    k = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        out = (size - 1) * stride + k + extra
        before = 0
    else:
        out = size * stride if output_padding is None else (size - 1) * stride + k % 2 + output_padding
        before = max((-(-out // stride) - 1) * stride + k - out, 0) // 2
    full = (size - 1) * stride + k
    return before, full - before - out


@keras_to_torch("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def conv_transpose(call: LayerCall) -> TVal:
    """nn.ConvTransposeNd with `padding` = cells dropped at the start and `output_padding` = how many
    fewer are dropped at the end; when the end loses more than the start (even kernels with "same"), the
    extra cells are sliced off after the convolution."""
    refuse_quantized(call)
    layer = call.layer
    rank = int(layer.rank)
    x, perm = channels_first_input(call, layer.data_format)
    kernel, strides, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    out_pad = layer.output_padding or (None,) * rank
    pads, extras, trims = [], [], []
    for k, s, d, op in zip(kernel, strides, dilation, out_pad):
        # The crops do not depend on the input size (checked at two sizes), so unknown sizes are fine.
        found = {transpose_crops(n, k, s, d, layer.padding, op) for n in (5, 6)}
        if len(found) != 1:
            raise call.unsupported("transposed-convolution cropping that depends on the input size")
        before, after = found.pop()
        if before < 0:
            raise call.unsupported(f"a transposed convolution that pads {-before} cells before its output")
        extra = before - after
        if extra >= max(s, d):
            raise call.unsupported(f"a transposed convolution with {extra} extra output cells at the end; torch's "
                                   "output_padding must be smaller than the stride or the dilation")
        pads.append(before)
        extras.append(max(extra, 0))
        trims.append(max(-extra, 0))
    weight = layer.kernel
    module = call.module() or _CONV_T[rank](int(weight.shape[-1]), int(weight.shape[-2]), kernel, stride=strides,
                                            padding=tuple(pads), output_padding=tuple(extras),
                                            dilation=dilation, bias=bool(layer.use_bias))
    call.port(weight, module, "weight", _kernel_to_torch(rank))
    if layer.use_bias:
        call.port(layer.bias, module, "bias", Identity())
    out = call.add_module(module)(x)
    if any(trims):
        out = out[(slice(None), slice(None), *(slice(0, -t) if t else slice(None) for t in trims))]
    return _finish(call, out, perm)
