"""Linear layers and matrix products. A Linear with a parameter weight becomes a Keras Dense layer
(kernel = weightᵀ); products of computed tensors stay `keras.ops.matmul`."""

from __future__ import annotations

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.transforms import Identity, Transpose


@torch_to_keras("aten.linear")
def linear(call: Call) -> Val:
    ops = call.ctx.ops
    x = call.tensor("input")
    w = call.val("weight")
    b = call.val("bias") if call.has("bias") else None
    if w.live or (b is not None and isinstance(b, Val) and b.live):
        out = ops.matmul(x, ops.transpose(call.ctx.torch_layout(w)))
        if b is not None:
            out = ops.add(out, call.ctx.torch_layout(b))
        return live_val(out, call.out_shape)
    units = int(w.shape[0])
    layer = call.ctx.keras.layers.Dense(units, use_bias=b is not None, name=call.layer_name(), kernel_initializer="zeros")
    weights = {"kernel": (w, Transpose((1, 0)))}
    if b is not None:
        weights["bias"] = (b, Identity())
    return live_val(call.ctx.apply_layer(layer, x, weights), call.out_shape)


@torch_to_keras("aten.addmm")
def addmm(call: Call) -> Val:
    ops = call.ctx.ops
    beta, alpha = call.args.get("beta", 1), call.args.get("alpha", 1)
    w, b = call.val("mat2"), call.val("self")
    x = call.tensor("mat1")
    if not w.live and not b.live and beta == 1 and alpha == 1 and b.rank == 1:
        layer = call.ctx.keras.layers.Dense(int(w.shape[1]), name=call.layer_name(), kernel_initializer="zeros")
        return live_val(call.ctx.apply_layer(layer, x, {"kernel": (w, Identity()), "bias": (b, Identity())}),
                        call.out_shape)
    out = ops.matmul(x, call.ctx.torch_layout(w))
    if alpha != 1:
        out = ops.multiply(out, alpha)
    bias = call.ctx.torch_layout(b)
    return live_val(ops.add(out, bias if beta == 1 else ops.multiply(bias, beta)), call.out_shape)


@torch_to_keras("aten.matmul", "aten.mm", "aten.bmm")
def matmul(call: Call) -> Val:
    a = call.tensor("self")
    b = call.tensor("other" if "other" in call.args else "mat2")
    return live_val(call.ctx.ops.matmul(a, b), call.out_shape)


@torch_to_keras("aten.baddbmm")
def baddbmm(call: Call) -> Val:
    ops = call.ctx.ops
    out = ops.matmul(call.tensor("batch1"), call.tensor("batch2"))
    alpha, beta = call.args.get("alpha", 1), call.args.get("beta", 1)
    if alpha != 1:
        out = ops.multiply(out, alpha)
    bias = call.tensor("self")
    return live_val(ops.add(out, bias if beta == 1 else ops.multiply(bias, beta)), call.out_shape)


@torch_to_keras("aten.einsum")
def einsum(call: Call) -> Val:
    tensors = [call.ctx.torch_layout(v) if isinstance(v, Val) else v for v in call.val("tensors")]
    return live_val(call.ctx.ops.einsum(call.args["equation"], *tensors), call.out_shape)
