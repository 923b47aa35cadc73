"""Normalisation layers. Batch and group norm work on whichever axis holds the channels in the
value's current layout, so they never force a transpose.

The `native_*` spellings (core ATen) also return the statistics they normalised with (mean and
1/sqrt(var + eps)); those are computed only where the graph reads them. A batch norm in training
mode normalises with the statistics of the batch itself: deterministic, so it converts too.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, channels_last, live_val
from porttax.converters.torch_to_keras.elementwise import broadcast_add
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


def _used(call: Call, index: int) -> bool:
    """Whether the graph reads result `index` of a multi-output op (unread getitems are pruned by export)."""
    return any(u.target is operator.getitem and u.args[1] == index for u in call.node.users)


def _refuse_used(call: Call, indices: range, what: str) -> None:
    for i in indices:
        if _used(call, i):
            raise call.unsupported(f"the model reads its result {i} ({what}), which porttax does not compute",
                                   hint="use only the normalised output, or open an issue with the model")


@torch_to_keras("aten._native_batch_norm_legit_no_training")
def batch_norm_inference(call: Call) -> list:
    """What an eval-mode batch norm exports as (aten.batch_norm itself never reaches the graph)."""
    _refuse_used(call, range(1, 3), "the empty saved statistics of an eval-mode batch norm")
    return [_batch_norm(call, call.args["momentum"], call.args["eps"]), None, None]


def _per_channel(call: Call, name: str, v: Val) -> Any:
    """Argument `name` (a (C,) tensor) shaped to broadcast along `v`'s channel axis in `v`'s layout."""
    shape = [1] * v.rank
    shape[v.axis(1)] = v.shape[1]
    w = call.val(name)
    if w.live:
        return call.ctx.ops.reshape(call.ctx.torch_layout(w), shape)
    return np.asarray(call.tensor(name), dtype=np.float32).reshape(shape)


def _batch_statistics(call: Call) -> list:
    """Training-mode batch norm: mean and biased variance over every axis but the channels, in the
    input's own layout; y = x * a + (b - mean * a) with a = w / sqrt(var + eps), as torch's CPU kernel."""
    ops = call.ctx.ops
    v = call.val("input")
    if v.rank < 2:
        raise call.unsupported(f"batch norm of a {v.rank}-D input (it needs (N, C, ...))")
    channel = v.axis(1)
    axes = [a for a in range(v.rank) if a != channel]
    x = v.tensor
    mean, var = ops.moments(x, axes, keepdims=True)
    rstd = ops.rsqrt(ops.add(var, float(call.args["eps"])))
    alpha = ops.multiply(rstd, _per_channel(call, "weight", v)) if call.has("weight") else rstd
    beta = ops.negative(ops.multiply(mean, alpha))
    if call.has("bias"):
        beta = broadcast_add(ops, _per_channel(call, "bias", v), beta)
    out = live_val(broadcast_add(ops, ops.multiply(x, alpha), beta), v.shape, v.perm)
    c = v.shape[1]
    results: list[Any] = [out, live_val(ops.reshape(mean, (c,)), (c,)), live_val(ops.reshape(rstd, (c,)), (c,))]
    if "running_mean" in call.args:  # the functional form also returns the updated running statistics
        results += [_running_update(call, i, stat, x, axes) for i, stat in ((3, mean), (4, var))]
    return results


def _running_update(call: Call, index: int, stat: Any, x: Any, axes: list[int]) -> Val | None:
    """momentum * batch statistic + (1 - momentum) * running one; the variance unbiased (n / (n - 1))."""
    if not _used(call, index):
        return None
    ops = call.ctx.ops
    v = call.val("input")
    c = v.shape[1]
    stat = ops.reshape(stat, (c,))
    if index == 4:
        # n counted at run time, so an open batch or length gives its own count
        n = ops.reshape(ops.sum(ops.ones_like(x), axis=axes, keepdims=True), (c,))
        stat = ops.divide(ops.multiply(stat, n), ops.subtract(n, 1.0))
    momentum = float(call.args["momentum"])
    old = call.tensor("running_mean" if index == 3 else "running_var")
    return live_val(ops.add(ops.multiply(stat, momentum), ops.multiply(old, 1.0 - momentum)), (c,))


@torch_to_keras("aten._native_batch_norm_legit", "aten._native_batch_norm_legit_functional")
def batch_norm_legit(call: Call) -> list:
    """Batch norm as core ATen spells it: `training` picks batch statistics or the running ones.

    A running-statistics update (what training mode also does) is a buffer mutation, which
    torch.export turns into `_native_batch_norm_legit_functional`; its two extra results are the
    updated statistics. The `no_stats` overload (track_running_stats=False) normalises with batch
    statistics; torch itself has no meaning for it in eval mode.
    """
    functional = str(call.node.target.overloadpacket).endswith("_functional")
    if call.args["training"]:
        return _batch_statistics(call)
    if "running_mean" not in call.args:
        raise call.unsupported("batch norm without running statistics and training=False",
                               hint="such a layer has no statistics to normalise with; use training=True")
    _refuse_used(call, range(1, 3), "the empty saved statistics of an eval-mode batch norm")
    out = _batch_norm(call, call.args["momentum"], call.args["eps"])
    kept = [call.val("running_mean"), call.val("running_var")] if functional else []
    return [out, None, None, *kept]


def _layer_norm(call: Call) -> Val:
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
    return live_val(call.ctx.apply_layer(layer, x, weights), v.shape)


@torch_to_keras("aten.layer_norm")
def layer_norm(call: Call) -> Val:
    return _layer_norm(call)


@torch_to_keras("aten.native_layer_norm")
def native_layer_norm(call: Call) -> list:
    """layer_norm plus its statistics, shaped as torch's: the leading dims, then 1 per normalised dim."""
    out = _layer_norm(call)
    if not (_used(call, 1) or _used(call, 2)):
        return [out, None, None]
    ops = call.ctx.ops
    v = call.val("input")
    k = len(call.args["normalized_shape"])
    mean, var = ops.moments(call.ctx.torch_layout(v), list(range(v.rank - k, v.rank)), keepdims=True)
    shape = tuple(v.shape[: v.rank - k]) + (1,) * k
    rstd = ops.rsqrt(ops.add(var, float(call.args["eps"])))
    return [out, live_val(mean, shape), live_val(rstd, shape)]


def _group_norm(call: Call, groups: int, eps: float) -> Val:
    keras = call.ctx.keras
    _require_const(call, "weight", "bias")
    v = call.val("input")
    axis = _channel_axis(v)
    x = v.tensor
    w = call.val("weight") if call.has("weight") else None
    b = call.val("bias") if call.has("bias") else None
    if axis != -1:
        # Keras GroupNormalization groups along its axis correctly only when channels come last.
        x = call.ctx.in_layout(v, channels_last(v.rank))
        v = live_val(x, v.shape, channels_last(v.rank))
    layer = keras.layers.GroupNormalization(groups=groups, axis=-1, epsilon=eps, center=b is not None,
                                            scale=w is not None, name=call.layer_name())
    weights: dict[str, Any] = {}
    if w is not None:
        weights["gamma"] = (w, Identity())
    if b is not None:
        weights["beta"] = (b, Identity())
    return live_val(call.ctx.apply_layer(layer, x, weights), v.shape, v.perm)


@torch_to_keras("aten.group_norm")
def group_norm(call: Call) -> Val:
    return _group_norm(call, int(call.args["num_groups"]), float(call.args["eps"]))


@torch_to_keras("aten.native_group_norm")
def native_group_norm(call: Call) -> list:
    """group_norm plus its per-(sample, group) statistics, each of shape (N, group)."""
    groups, eps = int(call.args["group"]), float(call.args["eps"])
    out = _group_norm(call, groups, eps)
    if not (_used(call, 1) or _used(call, 2)):
        return [out, None, None]
    ops = call.ctx.ops
    v = call.val("input")
    n, c = v.shape[0], v.shape[1]
    spatial = int(np.prod(v.shape[2:]))
    # channels last (where _group_norm put the input), channel c = group * (C / G) + member
    x = call.ctx.in_layout(v, channels_last(v.rank))
    held = [v.shape[d] for d in channels_last(v.rank)]
    grouped = call.ctx.reshape(x, held, [n, spatial, groups, c // groups])
    mean, var = ops.moments(grouped, [1, 3])
    rstd = ops.rsqrt(ops.add(var, eps))
    return [out, live_val(mean, (n, groups)), live_val(rstd, (n, groups))]


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
