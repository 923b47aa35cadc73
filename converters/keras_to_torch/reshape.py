"""Flatten, Reshape, Permute, RepeatVector.

Flatten and Reshape run in the Keras layout (an NHWC flatten order is part of the function a Dense after
it computes, so the order is preserved exactly). Permute costs nothing: it only changes which layout
the value is said to be held in, and a transpose is emitted later only where a layer needs one.
"""

from __future__ import annotations

from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, is_identity, live


def held_permute(v: TVal, keras_perm: tuple[int, ...], shape) -> TVal:
    """`keras_out = keras_in.permute(keras_perm)` without moving data: the same torch tensor, held in a
    different layout relative to the new Keras value."""
    have = tuple(range(v.rank)) if is_identity(v.perm) else tuple(v.perm)
    held = tuple(keras_perm.index(p) for p in have)
    return live(v.proxy, shape, held, v.dtype)


@keras_to_torch("Flatten")
def flatten(call: LayerCall) -> TVal:
    x = call.ctx.keras_layout(call.x)
    return call.result(x.flatten(1) if call.x.rank > 2 else x)


@keras_to_torch("Reshape")
def reshape(call: LayerCall) -> TVal:
    x = call.ctx.keras_layout(call.x)
    target = [int(d) for d in call.layer.target_shape]
    batch = call.out_shape()[0]
    lead = int(batch) if batch is not None else (-1 if -1 not in target else x.size(0))
    return call.result(x.reshape(lead, *target))


@keras_to_torch("Permute")
def permute(call: LayerCall) -> TVal:
    dims = (0, *(int(d) for d in call.layer.dims))
    return held_permute(call.x, dims, call.out_shape())


@keras_to_torch("RepeatVector")
def repeat_vector(call: LayerCall) -> TVal:
    x = call.ctx.keras_layout(call.x)
    n = int(call.layer.n)
    return call.result(x.unsqueeze(1).expand(-1, n, -1))
