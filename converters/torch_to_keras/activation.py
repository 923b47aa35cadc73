"""Activations. Each becomes a Keras layer named after its source module, so a reader of the converted
model sees `features.3.act` where the PyTorch model had it."""

from __future__ import annotations

import math
from typing import Any

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val


def _activation(call: Call, fn: Any, arg: str = "self") -> Val:
    keras = call.ctx.keras
    v = call.val(arg)
    layer = keras.layers.Activation(fn, name=call.layer_name())
    out = call.ctx.apply_layer(layer, v.tensor, {})
    return live_val(out, call.out_shape, v.perm)


_SIMPLE = {
    "aten.relu": "relu", "aten.sigmoid": "sigmoid", "aten.tanh": "tanh", "aten.silu": "silu",
    "aten.hardswish": "hard_swish", "aten.hardsigmoid": "hard_sigmoid", "aten.mish": "mish",
    "aten.relu6": "relu6",
}


# At most this many elements, SiLU is written as arithmetic rather than an Activation layer (see silu).
_SMALL_SILU = 1 << 16


@torch_to_keras(*_SIMPLE)
def simple(call: Call) -> Val:
    op = str(call.node.target.overloadpacket)
    if op == "aten.silu" and math.prod(call.out_shape) <= _SMALL_SILU:
        return _small_silu(call)
    return _activation(call, _SIMPLE[op])


def _small_silu(call: Call) -> Val:
    """SiLU on a small tensor as h + h·tanh(h), h = x/2 (the same function: x·sigmoid(x)).

    TensorFlow's CPU build fuses x·sigmoid(x) into one oneDNN Swish kernel that splits even 10k
    elements over the intra-op threads; the hand-off costs 3x the work (23 against 7 µs at two threads
    on the llama-tiny MLP). Eigen's tanh, multiply and add run such tensors on the calling thread.
    The price is in the far negative tail only: below x ≈ -17 the result is 0 where x·sigmoid(x) is a
    few 1e-8, an absolute error under 1e-7. Larger tensors keep the Activation("silu") layer, where
    one fused pass over memory is worth more than the hand-off.
    """
    ops = call.ctx.ops
    v = call.val("self")
    half = ops.multiply(v.tensor, 0.5)
    return live_val(ops.add(half, ops.multiply(half, ops.tanh(half))), call.out_shape, v.perm)


@torch_to_keras("aten.gelu")
def gelu(call: Call) -> Val:
    ops = call.ctx.ops
    approximate = call.args.get("approximate", "none") == "tanh"
    if not approximate:
        return _activation(call, "gelu")
    v = call.val("self")
    return live_val(ops.gelu(v.tensor, approximate=True), call.out_shape, v.perm)


@torch_to_keras("aten.leaky_relu")
def leaky_relu(call: Call) -> Val:
    keras = call.ctx.keras
    v = call.val("self")
    layer = keras.layers.LeakyReLU(negative_slope=float(call.args.get("negative_slope", 0.01)),
                                   name=call.layer_name())
    return live_val(call.ctx.apply_layer(layer, v.tensor, {}), call.out_shape, v.perm)


@torch_to_keras("aten.elu")
def elu(call: Call) -> Val:
    ops = call.ctx.ops
    v = call.val("self")
    alpha = float(call.args.get("alpha", 1.0))
    if call.args.get("scale", 1) != 1 or call.args.get("input_scale", 1) != 1:
        raise call.unsupported("elu with scale/input_scale (SELU-style) is not mapped yet")
    return live_val(ops.elu(v.tensor, alpha=alpha), call.out_shape, v.perm)


@torch_to_keras("aten.softplus")
def softplus(call: Call) -> Val:
    ops = call.ctx.ops
    v = call.val("self")
    beta, threshold = float(call.args.get("beta", 1)), float(call.args.get("threshold", 20))
    x = v.tensor
    soft = ops.divide(ops.softplus(ops.multiply(x, beta)), beta)
    return live_val(ops.where(ops.greater(ops.multiply(x, beta), threshold), x, soft), call.out_shape, v.perm)


@torch_to_keras("aten._softmax", "aten.softmax")
def softmax(call: Call) -> Val:
    keras = call.ctx.keras
    v = call.val("self")
    layer = keras.layers.Softmax(axis=v.axis(int(call.args["dim"])), name=call.layer_name())
    return live_val(call.ctx.apply_layer(layer, v.tensor, {}), call.out_shape, v.perm)


@torch_to_keras("aten._log_softmax", "aten.log_softmax")
def log_softmax(call: Call) -> Val:
    v = call.val("self")
    return live_val(call.ctx.ops.log_softmax(v.tensor, axis=v.axis(int(call.args["dim"]))),
                    call.out_shape, v.perm)
