"""Embedding lookups become Keras Embedding layers; the table needs no layout change."""

from __future__ import annotations

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.transforms import Identity


@torch_to_keras("aten.embedding")
def embedding(call: Call) -> Val:
    w = call.val("weight")
    ids = call.tensor("indices")
    if w.live:
        return live_val(call.ctx.ops.take(call.ctx.torch_layout(w), ids, axis=0), call.out_shape)
    num, dim = (int(s) for s in w.shape)
    layer = call.ctx.keras.layers.Embedding(num, dim, name=call.layer_name(), embeddings_initializer="zeros")
    return live_val(call.ctx.apply_layer(layer, ids, {"embeddings": (w, Identity())}), call.out_shape)
