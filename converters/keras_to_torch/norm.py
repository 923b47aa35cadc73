"""Normalisation layers: BatchNormalization, LayerNormalization, RMSNormalization, GroupNormalization,
UnitNormalization.

BatchNormalization and GroupNormalization work on the channel axis wherever the input is held, so in a
CNN they stay in torch's channels-first layout (nn.BatchNorm2d / nn.GroupNorm); Keras' momentum m is
torch's 1 - m. Layer and RMS norms act on trailing Keras axes and run in the Keras layout.
"""

from __future__ import annotations

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, channels_first
from porttax.converters.keras_to_torch.modules import LayerNorm
from porttax.converters.transforms import Identity, Reshape


def _axes(axis, rank: int) -> list[int]:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return sorted(int(a) % rank for a in axes)


def _channel_axis_at_1(call: LayerCall, v: TVal, axis: int):
    """The input held so that Keras axis `axis` sits at position 1 (where torch norms want channels)."""
    if v.rank == 2 and axis == 1:
        return call.ctx.keras_layout(v), None
    if axis == v.rank - 1:
        perm = channels_first(v.rank)
    else:
        rest = [a for a in range(1, v.rank) if a != axis]
        perm = (0, axis, *rest)
    return call.ctx.in_layout(v, perm), perm


@keras_to_torch("BatchNormalization")
def batch_norm(call: LayerCall) -> TVal:
    nn = import_torch().nn
    layer = call.layer
    v = call.x
    axes = _axes(layer.axis, v.rank)
    if len(axes) != 1 or axes[0] == 0:
        raise call.unsupported(f"batch normalisation over axes {layer.axis}", hint="normalise one channel axis")
    x, perm = _channel_axis_at_1(call, v, axes[0])
    channels = int(layer.moving_mean.shape[0])
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(v.rank)
    if cls is None:
        raise call.unsupported(f"batch normalisation of a rank-{v.rank} tensor")
    module = call.module() or cls(channels, eps=float(layer.epsilon), momentum=1.0 - float(layer.momentum))
    if layer.scale:
        call.port(layer.gamma, module, "weight", Identity())
    if layer.center:
        call.port(layer.beta, module, "bias", Identity())
    call.port(layer.moving_mean, module, "running_mean", Identity())
    call.port(layer.moving_variance, module, "running_var", Identity())
    return call.result(call.add_module(module)(x), perm)


@keras_to_torch("LayerNormalization")
def layer_norm(call: LayerCall) -> TVal:
    nn = import_torch().nn
    layer = call.layer
    v = call.x
    x = call.ctx.keras_layout(v)
    axes = _axes(layer.axis, v.rank)
    shape = call.out_shape()
    dims = tuple(int(shape[a]) for a in axes)
    trailing = axes == list(range(v.rank - len(axes), v.rank))
    rms = bool(getattr(layer, "rms_scaling", False))
    param_shape = [int(shape[a]) if a in axes else 1 for a in range(v.rank)][min(axes):]
    if trailing and not rms and (layer.scale or not layer.center):
        module = call.module() or nn.LayerNorm(dims, eps=float(layer.epsilon), elementwise_affine=layer.scale,
                                               bias=layer.center)
        reshape = None
    else:
        module = call.module() or LayerNorm([a - v.rank for a in axes], param_shape, float(layer.epsilon),
                                            layer.scale, layer.center, rms)
        reshape = Reshape(tuple(param_shape), dims) if tuple(param_shape) != dims else None
    for var, param in ((getattr(layer, "gamma", None), "weight"), (getattr(layer, "beta", None), "bias")):
        if var is not None and getattr(module, param, None) is not None:
            call.port(var, module, param, reshape or Identity())
    return call.result(call.add_module(module)(x))


@keras_to_torch("RMSNormalization")
def rms_norm(call: LayerCall) -> TVal:
    nn = import_torch().nn
    layer = call.layer
    v = call.x
    axes = _axes(layer.axis, v.rank)
    if axes != list(range(v.rank - len(axes), v.rank)):
        raise call.unsupported(f"RMS normalisation over non-trailing axes {layer.axis}")
    dims = tuple(int(call.out_shape()[a]) for a in axes)
    module = call.module() or nn.RMSNorm(dims, eps=float(layer.epsilon))
    call.port(layer.scale, module, "weight", Identity())
    return call.result(call.add_module(module)(call.ctx.keras_layout(v)))


@keras_to_torch("GroupNormalization")
def group_norm(call: LayerCall) -> TVal:
    nn = import_torch().nn
    layer = call.layer
    v = call.x
    axis = int(layer.axis) % v.rank
    x, perm = _channel_axis_at_1(call, v, axis)
    channels = int(call.out_shape()[axis])
    affine = bool(layer.scale or layer.center)
    module = call.module() or nn.GroupNorm(int(layer.groups), channels, eps=float(layer.epsilon), affine=affine)
    if layer.scale:
        call.port(layer.gamma, module, "weight", Identity())
    if layer.center:
        call.port(layer.beta, module, "bias", Identity())
    if affine and not layer.center:
        import_torch().nn.init.zeros_(module.bias)
    if affine and not layer.scale:
        import_torch().nn.init.ones_(module.weight)
    return call.result(call.add_module(module)(x), perm)


@keras_to_torch("UnitNormalization")
def unit_norm(call: LayerCall) -> TVal:
    """x / sqrt(max(sum(x²), 1e-12)) over `axis`, as Keras computes it (no module: nothing to hold)."""
    torch = import_torch()
    v = call.x
    x = call.ctx.in_layout(v, v.perm)
    dims = [call.ctx.held_axis(v, a) for a in _axes(call.layer.axis, v.rank)]
    square_sum = x.square().sum(dim=dims, keepdim=True)
    return call.result(x * torch.rsqrt(torch.clamp(square_sum, min=1e-12)), v.perm)
