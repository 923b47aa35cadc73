"""scaled_dot_product_attention, written out in keras.ops.

Keras' own dot_product_attention uses a (batch, seq, heads, dim) layout and its own masking rules;
spelling the computation out keeps PyTorch's semantics exactly: boolean masks select, float masks
add, `is_causal` is a lower-triangular mask aligned to the top left, and grouped-query attention
repeats each key/value head for its group of query heads.
"""

from __future__ import annotations

import math

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, live_val


@torch_to_keras("aten.scaled_dot_product_attention")
def sdpa(call: Call) -> Val:
    ops = call.ctx.ops
    if call.args.get("dropout_p"):
        raise call.unsupported("attention dropout > 0", hint="convert the model in eval() mode")
    q, k, v = call.tensor("query"), call.tensor("key"), call.tensor("value")
    qv, kv = call.val("query"), call.val("key")
    L, E = qv.shape[-2], qv.shape[-1]
    S = kv.shape[-2]
    scale = call.args.get("scale")
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    if call.args.get("enable_gqa") and kv.shape[-3] != qv.shape[-3]:
        rep = qv.shape[-3] // kv.shape[-3]
        k = ops.repeat(k, rep, axis=-3)
        v = ops.repeat(v, rep, axis=-3)
    scores = ops.multiply(ops.matmul(q, ops.swapaxes(k, -1, -2)), scale)
    neg = np.float32(-np.inf)
    if call.args.get("is_causal"):
        causal = np.tril(np.ones((L, S), dtype=bool))
        scores = ops.where(causal, scores, neg)
    if call.has("attn_mask"):
        m = call.val("attn_mask")
        mask = call.ctx.torch_layout(m) if isinstance(m, Val) and m.live else const_to_numpy(m.const)
        if "bool" in str(mask.dtype):  # a bool mask selects, a float mask adds
            scores = ops.where(mask, scores, neg)
        else:
            scores = ops.add(scores, mask)
    weights = ops.softmax(scores, axis=-1)
    return live_val(ops.matmul(weights, v), call.out_shape)
