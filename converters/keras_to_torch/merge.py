"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

They run in their inputs' common layout when they share one (a ResNet's residual adds stay
channels-first), with the concatenation axis translated to that layout.
"""

from __future__ import annotations

import functools
import operator

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal


def _reduce(call: LayerCall, combine) -> TVal:
    vals, perm = call.ctx.align(call.inputs())
    return call.result(functools.reduce(combine, vals), perm)


@keras_to_torch("Add")
def add(call: LayerCall) -> TVal:
    return _reduce(call, operator.add)


@keras_to_torch("Subtract")
def subtract(call: LayerCall) -> TVal:
    if len(call.inputs()) != 2:
        raise call.unsupported("Subtract takes exactly two inputs")
    return _reduce(call, operator.sub)


@keras_to_torch("Multiply")
def multiply(call: LayerCall) -> TVal:
    return _reduce(call, operator.mul)


@keras_to_torch("Maximum")
def maximum(call: LayerCall) -> TVal:
    return _reduce(call, import_torch().maximum)


@keras_to_torch("Minimum")
def minimum(call: LayerCall) -> TVal:
    return _reduce(call, import_torch().minimum)


@keras_to_torch("Average")
def average(call: LayerCall) -> TVal:
    vals, perm = call.ctx.align(call.inputs())
    return call.result(functools.reduce(operator.add, vals) / len(vals), perm)


@keras_to_torch("Concatenate")
def concatenate(call: LayerCall) -> TVal:
    torch = import_torch()
    inputs = call.inputs()
    vals, perm = call.ctx.align(inputs)
    rank = inputs[0].rank
    axis = int(call.layer.axis) % rank
    held = axis if perm is None else tuple(perm).index(axis)
    return call.result(torch.cat(vals, dim=held), perm)


@keras_to_torch("Dot")
def dot(call: LayerCall) -> TVal:
    """Keras Dot: batched dot product over `axes` (one per input), optionally of L2-normalised inputs."""
    torch = import_torch()
    F = torch.nn.functional
    a_val, b_val = call.inputs()
    a, b = call.ctx.keras_layout(a_val), call.ctx.keras_layout(b_val)
    axes = call.layer.axes
    axes = (axes, axes) if isinstance(axes, int) else tuple(axes)
    ax = [int(axes[0]) % a_val.rank, int(axes[1]) % b_val.rank]
    if call.layer.normalize:
        a = F.normalize(a, p=2.0, dim=ax[0], eps=1e-6)
        b = F.normalize(b, p=2.0, dim=ax[1], eps=1e-6)
    letters = "abcdefghijklmnop"
    sa = ["z"] + [letters[i] for i in range(a_val.rank - 1)]
    sb = ["z"] + [letters[8 + i] for i in range(b_val.rank - 1)]
    sb[ax[1]] = sa[ax[0]]
    result = [s for i, s in enumerate(sa) if i != ax[0]] + [s for i, s in enumerate(sb) if i not in (0, ax[1])]
    equation = f"{''.join(sa)},{''.join(sb)}->{''.join(result)}"
    out = torch.einsum(equation, a, b)
    if len(call.out_shape()) == 2 and len(result) == 1:
        out = out.unsqueeze(1)  # Keras returns (batch, 1) for two rank-2 inputs
    return call.result(out)
