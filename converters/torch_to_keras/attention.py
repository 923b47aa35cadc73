"""scaled_dot_product_attention, written out in keras.ops.

Keras' own dot_product_attention uses a (batch, seq, heads, dim) layout and its own masking rules;
spelling the computation out keeps PyTorch's semantics exactly: boolean masks select, float masks
add, `is_causal` is a lower-triangular mask aligned to the top left, and grouped-query attention
repeats each key/value head for its group of query heads.
"""

from __future__ import annotations

import math
from typing import Any

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
    mask = None
    if call.has("attn_mask"):
        m = call.val("attn_mask")
        mask = call.ctx.torch_layout(m) if isinstance(m, Val) and m.live else const_to_numpy(m.const)
    kv, vv, groups = _shared_kv_heads(call, qv, kv, vv, mask)
    # Query heads sharing one key/value head become an extra "g" axis beside that head's "k" axis, so
    # grouped-query attention reads each key/value head once instead of repeating it per query head.
    q_heads = "kg" if groups > 1 else "h"
    kv_head = "k" if groups > 1 else "h"
    q_in = layout_letters(batch + "hle", qv.perm).replace("h", q_heads)
    k_in = layout_letters(batch + "hse", kv.perm).replace("h", kv_head)
    v_in = layout_letters(batch + "hsv", vv.perm).replace("h", kv_head)
    q, k, v = qv.tensor, kv.tensor, vv.tensor
    if groups > 1:
        held = [qv.shape[p] for p in (qv.perm or range(qv.rank))]
        h_at = layout_letters(batch + "hle", qv.perm).index("h")
        q = ops.reshape(q, held[:h_at] + [held[h_at] // groups, groups] + held[h_at + 1:])
        if mask is not None and len(mask.shape) >= 3:
            mask = ops.expand_dims(mask, -3) if not isinstance(mask, np.ndarray) else np.expand_dims(mask, -3)
    elif call.args.get("enable_gqa") and kv.shape[-3] != qv.shape[-3]:
        rep = qv.shape[-3] // kv.shape[-3]
        k = ops.repeat(k, rep, axis=k_in.index("h"))
        v = ops.repeat(v, rep, axis=v_in.index("h"))
    scores_sub = batch + q_heads + "ls"
    # The empty "..." keeps Keras' TF backend from rewriting these equations into Transpose + MatMul
    # (it does for a fixed list of spellings); TF's own Einsum kernel is several times faster here.
    scores = ops.multiply(ops.einsum(f"...{q_in},...{k_in}->...{scores_sub}", q, k), scale)
    neg = np.float32(-np.inf)
    if call.args.get("is_causal"):
        # A constant mask is added as 0 / -inf rather than selected: the same numbers (x + 0 == x), and
        # TF's broadcasting SelectV2 kernel is an order of magnitude slower than a broadcast add.
        scores = ops.add(scores, np.where(np.tril(np.ones((L, S), dtype=bool)), np.float32(0), neg))
    if mask is not None:
        if "bool" in str(mask.dtype):  # a bool mask selects, a float mask adds
            if isinstance(mask, np.ndarray):
                scores = ops.add(scores, np.where(mask, np.float32(0), neg))
            else:
                scores = ops.where(mask, scores, neg)
        else:
            scores = ops.add(scores, mask)
    weights = ops.softmax(scores, axis=-1)
    # The output keeps the query's layout, so the source's usual `.transpose(1, 2).reshape(...)` after
    # attention becomes a free relabelling instead of a transpose.
    out_perm = qv.perm
    out_sub = layout_letters(batch + "hlv", out_perm).replace("h", q_heads)
    out = ops.einsum(f"...{scores_sub},...{v_in}->...{out_sub}", weights, v)
    if groups > 1:
        out = ops.reshape(out, [call.out_shape[p] for p in (out_perm or range(len(call.out_shape)))])
    return live_val(out, call.out_shape, out_perm)


def _shared_kv_heads(call: Call, qv: Val, kv: Val, vv: Val, mask: Any) -> tuple[Val, Val, int]:
    """(keys, values, query heads per key/value head) for attention computed without repeated heads.

    Keys and values the source repeated with `repeat_interleave` along the head axis are read from
    before the repeat (kv head j serves query heads j*g ... j*g+g-1, the order the split "kg" axis
    keeps); `enable_gqa` needs no repeat at all. A mask with its own per-head values keeps the plain
    path, as it would need splitting too.
    """
    head_axis = qv.rank - 3
    if mask is not None and len(mask.shape) >= 3 and mask.shape[-3] not in (1, None):
        return kv, vv, 1
    if kv.repeat_of and vv.repeat_of:
        (k_src, k_rep, k_axis), (v_src, v_rep, v_axis) = kv.repeat_of, vv.repeat_of
        if (k_rep == v_rep and k_axis == v_axis == head_axis and k_src.rank == qv.rank
                and k_src.shape[head_axis] * k_rep == qv.shape[head_axis] == kv.shape[head_axis]):
            return k_src, v_src, k_rep
    if call.args.get("enable_gqa") and kv.shape[head_axis] != qv.shape[head_axis]:
        return kv, vv, qv.shape[head_axis] // kv.shape[head_axis]
    return kv, vv, 1
