"""Normalisation layers. Batch and group norm work on whichever axis holds the channels in the
value's current layout, so they never force a transpose."""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.transforms import Identity


def _channel_axis(v: Val) -> int:
    axis = v.perm.index(1) if v.perm else 1
    return -1 if axis == v.rank - 1 else axis


def _require_const(call: Call, *names: str) -> None:
    for n in names:
        val = call.val(n) if call.has(n) else None
        if isinstance(val, Val) and val.live:
            raise call.unsupported(f"{n} computed from the model inputs")


def _batch_norm(call: Call, momentum: float, eps: float) -> Val:
    keras = call.ctx.keras
    _require_const(call, "weight", "bias", "running_mean", "running_var")
    v = call.val("input")
    if not call.has("running_mean"):
        raise call.unsupported("batch norm without running statistics (track_running_stats=False)",
                               hint="such a layer normalises with batch statistics even in eval mode")
    w = call.val("weight") if call.has("weight") else None
    b = call.val("bias") if call.has("bias") else None
    layer = keras.layers.BatchNormalization(axis=_channel_axis(v), epsilon=float(eps),
                                            momentum=1.0 - float(momentum or 0.1),
                                            center=b is not None, scale=w is not None,
                                            name=call.layer_name())
    weights: dict[str, Any] = {"moving_mean": (call.val("running_mean"), Identity()),
                               "moving_variance": (call.val("running_var"), Identity())}
    if w is not None:
        weights["gamma"] = (w, Identity())
    if b is not None:
        weights["beta"] = (b, Identity())
    return live_val(call.ctx.apply_layer(layer, v.tensor, weights), v.shape, v.perm)


@torch_to_keras("aten._native_batch_norm_legit_no_training")
def batch_norm_inference(call: Call) -> list:
    """What an eval-mode batch norm exports as (aten.batch_norm itself never reaches the graph)."""
    return [_batch_norm(call, call.args["momentum"], call.args["eps"]), None, None]


@torch_to_keras("aten.layer_norm")
def layer_norm(call: Call) -> Val:
    keras = call.ctx.keras
    _require_const(call, "weight", "bias")
    v = call.val("input")
    shape = [int(s) for s in call.args["normalized_shape"]]
    x = call.ctx.torch_layout(v)
    axes = list(range(v.rank - len(shape), v.rank))
    w = call.val("weight") if call.has("weight") else None
    b = call.val("bias") if call.has("bias") else None
    layer = keras.layers.LayerNormalization(axis=axes if len(axes) > 1 else -1,
                                            epsilon=float(call.args["eps"]), center=b is not None,
                                            scale=w is not None, name=call.layer_name())
    weights: dict[str, Any] = {}
    if w is not None:
        weights["gamma"] = (w, Identity())
    if b is not None:
        weights["beta"] = (b, Identity())
    return live_val(call.ctx.apply_layer(layer, x, weights), call.out_shape)


@torch_to_keras("aten.group_norm")
def group_norm(call: Call) -> Val:
    keras = call.ctx.keras
    _require_const(call, "weight", "bias")
    v = call.val("input")
    axis = _channel_axis(v)
    x = v.tensor
    w = call.val("weight") if call.has("weight") else None
    b = call.val("bias") if call.has("bias") else None
    if axis != -1:
        # Keras GroupNormalization groups along its axis correctly only when channels come last.
        from porttax.converters.torch_to_keras.context import channels_last

        x = call.ctx.in_layout(v, channels_last(v.rank))
        v = live_val(x, v.shape, channels_last(v.rank))
    layer = keras.layers.GroupNormalization(groups=int(call.args["num_groups"]), axis=-1,
                                            epsilon=float(call.args["eps"]), center=b is not None,
                                            scale=w is not None, name=call.layer_name())
    weights: dict[str, Any] = {}
    if w is not None:
        weights["gamma"] = (w, Identity())
    if b is not None:
        weights["beta"] = (b, Identity())
    return live_val(call.ctx.apply_layer(layer, x, weights), v.shape, v.perm)


@torch_to_keras("aten.rms_norm")
def rms_norm(call: Call) -> Val:
    keras = call.ctx.keras
    _require_const(call, "weight")
    v = call.val("input")
    shape = [int(s) for s in call.args["normalized_shape"]]
    if len(shape) != 1:
        raise call.unsupported("RMSNorm over more than one trailing dimension")
    eps = call.args.get("eps")
    if eps is None:
        eps = float(np.finfo(np.float32).eps)
    x = call.ctx.torch_layout(v)
    layer = keras.layers.RMSNormalization(axis=-1, epsilon=float(eps), name=call.layer_name())
    w = call.val("weight") if call.has("weight") else Val(const=np.ones(shape, np.float32))
    return live_val(call.ctx.apply_layer(layer, x, {"scale": (w, Identity())}), call.out_shape)
