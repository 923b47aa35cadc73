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
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, layout_letters, live_val


@torch_to_keras("aten.scaled_dot_product_attention")
def sdpa(call: Call) -> Val:
    ops = call.ctx.ops
    if call.args.get("dropout_p"):
        raise call.unsupported("attention dropout > 0", hint="convert the model in eval() mode")
    qv, kv, vv = call.val("query"), call.val("key"), call.val("value")
    if not (qv.live and kv.live and vv.live) or not (qv.rank == kv.rank == vv.rank >= 3):
        raise call.unsupported("query, key and value must be computed tensors of the same rank (>= 3)")
    L, E = qv.shape[-2], qv.shape[-1]
    S = kv.shape[-2]
    scale = call.args.get("scale")
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    # Each operand is used in the layout it is already held in (heads after sequence, typically, as the
    # q/k/v projections produce them): einsum subscripts absorb the permutation, so the head transposes
    # the source model computes are never materialised.
    batch = "zyxw"[: qv.rank - 3]
    head, q_sub, k_sub, v_sub = batch + "h", batch + "hle", batch + "hse", batch + "hsv"
    q, k, v = qv.tensor, kv.tensor, vv.tensor
    q_in, k_in, v_in = (layout_letters(sub, val.perm) for sub, val in ((q_sub, qv), (k_sub, kv), (v_sub, vv)))
    if call.args.get("enable_gqa") and kv.shape[-3] != qv.shape[-3]:
        rep = qv.shape[-3] // kv.shape[-3]
        k = ops.repeat(k, rep, axis=k_in.index("h"))
        v = ops.repeat(v, rep, axis=v_in.index("h"))
    scores_sub = head + "ls"
    # The empty "..." keeps Keras' TF backend from rewriting these equations into Transpose + MatMul
    # (it does for a fixed list of spellings); TF's own Einsum kernel is several times faster here.
    scores = ops.multiply(ops.einsum(f"...{q_in},...{k_in}->...{scores_sub}", q, k), scale)
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
    # The output keeps the query's layout, so the source's usual `.transpose(1, 2).reshape(...)` after
    # attention becomes a free relabelling instead of a transpose.
    out_perm = qv.perm
    out_sub = layout_letters(batch + "hlv", out_perm)
    return live_val(ops.einsum(f"...{scores_sub},...{v_in}->...{out_sub}", weights, v), call.out_shape, out_perm)
