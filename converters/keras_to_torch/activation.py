"""Activations: the `Activation` layer, the activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax) and
the `activation=` argument of Dense/Conv layers.

A standalone activation layer becomes the matching `torch.nn` module under the layer's name; an
activation folded into a Dense or Conv layer becomes a functional call after it, as a person would
write it. Elementwise activations work in whatever layout their input is held in.
"""

from __future__ import annotations

from typing import Any, Callable

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.keras_to_torch.modules import Exp, PReLU
from porttax.converters.transforms import Identity
from porttax.errors import UnsupportedError


def activation_name(fn: Any) -> str:
    """The Keras name of an activation given as a function, a string or None."""
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        return fn
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)


def _modules() -> dict[str, Callable[[], Any]]:
    nn = import_torch().nn
    return {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "celu": nn.CELU,
        "softplus": nn.Softplus,
        "softsign": nn.Softsign,
        "silu": nn.SiLU,
        "gelu": lambda: nn.GELU(approximate="none"),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "hard_sigmoid": nn.Hardsigmoid,
        "hard_silu": nn.Hardswish,
        "mish": nn.Mish,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "log_sigmoid": nn.LogSigmoid,
        "tanh_shrink": nn.Tanhshrink,
        "soft_shrink": lambda: nn.Softshrink(0.5),
        "hard_shrink": lambda: nn.Hardshrink(0.5),
        "hard_tanh": nn.Hardtanh,
        "linear": nn.Identity,
    }


_AXIS_WISE = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}


def activation_module(name: str, v: TVal, ctx: Any, where: str) -> Any:
    """A torch module computing Keras activation `name` on `v` as held (softmax axes follow the layout)."""
    nn = import_torch().nn
    if name in _AXIS_WISE:
        return getattr(nn, _AXIS_WISE[name])(dim=ctx.held_axis(v, -1))
    table = _modules()
    if name == "exponential":
        return Exp()
    if name not in table:
        raise UnsupportedError(f"{where}: activation {name!r} has no torch equivalent in porttax",
                               hint=f"supported: {', '.join(sorted([*table, *_AXIS_WISE, 'exponential']))}")
    return table[name]()


def apply_activation(call: LayerCall, fn: Any, proxy: Any, v: TVal) -> Any:
    """Apply the `activation=` of a Dense/Conv layer to its (held-layout) output as a functional call."""
    torch = import_torch()
    F = torch.nn.functional
    name = activation_name(fn)
    where = f"Keras layer {call.name!r} ({call.kind})"
    simple: dict[str, Callable[[Any], Any]] = {
        "linear": lambda x: x,
        "relu": F.relu, "relu6": F.relu6, "elu": F.elu, "selu": F.selu, "celu": F.celu,
        "softplus": F.softplus, "softsign": F.softsign, "silu": F.silu, "gelu": F.gelu,
        "tanh": torch.tanh, "sigmoid": torch.sigmoid, "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish,
        "mish": F.mish, "log_sigmoid": F.logsigmoid, "tanh_shrink": F.tanhshrink, "exponential": torch.exp,
        "hard_tanh": F.hardtanh,
    }
    if name in simple:
        return simple[name](proxy)
    if name == "leaky_relu":
        return F.leaky_relu(proxy, 0.2)
    if name == "softmax":
        return F.softmax(proxy, dim=call.ctx.held_axis(v, -1))
    if name == "log_softmax":
        return F.log_softmax(proxy, dim=call.ctx.held_axis(v, -1))
    raise UnsupportedError(f"{where}: activation {name!r} has no torch equivalent in porttax")


@keras_to_torch("Activation")
def activation(call: LayerCall) -> TVal:
    v = call.x
    name = activation_name(call.layer.activation)
    module = activation_module(name, v, call.ctx, f"Keras layer {call.name!r}")
    return call.result(call.add_module(module)(call.ctx.in_layout(v, v.perm)), v.perm)


@keras_to_torch("ReLU")
def relu(call: LayerCall) -> TVal:
    torch = import_torch()
    nn = torch.nn
    v = call.x
    layer = call.layer
    slope, max_value, threshold = float(layer.negative_slope), layer.max_value, float(layer.threshold)
    x = call.ctx.in_layout(v, v.perm)
    if threshold == 0.0 and slope == 0.0 and max_value is None:
        return call.result(call.add_module(nn.ReLU())(x), v.perm)
    if threshold == 0.0 and slope == 0.0 and float(max_value) == 6.0:
        return call.result(call.add_module(nn.ReLU6())(x), v.perm)
    if threshold == 0.0 and max_value is None:
        return call.result(call.add_module(nn.LeakyReLU(slope))(x), v.perm)
    if threshold == 0.0 and slope == 0.0:
        return call.result(call.add_module(nn.Hardtanh(0.0, float(max_value)))(x), v.perm)
    # The general form, as Keras computes it: slope * (x - threshold) below the threshold, capped above.
    out = torch.where(x >= threshold, x, slope * (x - threshold) if slope else x * 0.0)
    if max_value is not None:
        out = torch.clamp(out, max=float(max_value))
    return call.result(out, v.perm)


@keras_to_torch("LeakyReLU")
def leaky_relu(call: LayerCall) -> TVal:
    nn = import_torch().nn
    v = call.x
    module = nn.LeakyReLU(float(call.layer.negative_slope))
    return call.result(call.add_module(module)(call.ctx.in_layout(v, v.perm)), v.perm)


@keras_to_torch("ELU")
def elu(call: LayerCall) -> TVal:
    nn = import_torch().nn
    v = call.x
    module = nn.ELU(float(call.layer.alpha))
    return call.result(call.add_module(module)(call.ctx.in_layout(v, v.perm)), v.perm)


@keras_to_torch("Softmax")
def softmax(call: LayerCall) -> TVal:
    nn = import_torch().nn
    v = call.x
    axis = call.layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise call.unsupported(f"softmax over several axes {axis}")
        axis = axis[0]
    if call.kwargs.get("mask") is not None or (len(call.args) > 1 and call.args[1] is not None):
        raise call.unsupported("a masked softmax", hint="apply the mask as a large negative bias instead")
    module = nn.Softmax(dim=call.ctx.held_axis(v, int(axis)))
    return call.result(call.add_module(module)(call.ctx.in_layout(v, v.perm)), v.perm)


@keras_to_torch("PReLU")
def prelu(call: LayerCall) -> TVal:
    """PReLU's alpha has the input's per-sample shape (with shared axes set to 1); it is kept as a
    parameter of that shape and broadcast, in the Keras layout."""
    v = call.x
    x = call.ctx.keras_layout(v)
    alpha = call.layer.alpha
    module = PReLU(tuple(alpha.shape))
    call.port(alpha, module, "alpha", Identity())
    return call.result(call.add_module(module)(x))
