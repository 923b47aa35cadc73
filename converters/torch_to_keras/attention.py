"""scaled_dot_product_attention, written out in keras.ops.

Keras' own dot_product_attention uses a (batch, seq, heads, dim) layout and its own masking rules;
spelling the computation out keeps PyTorch's semantics exactly: boolean masks select, float masks
add, `is_causal` is a lower-triangular mask aligned to the top left, and grouped-query attention
repeats each key/value head for its group of query heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, layout_letters, live_val
from porttax.converters.torch_to_keras.symbolic import is_symbolic


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
        q = call.ctx.reshape(q, held, held[:h_at] + [held[h_at] // groups, groups] + held[h_at + 1:], what=call.op)
    elif call.args.get("enable_gqa") and kv.shape[-3] != qv.shape[-3]:
        rep = qv.shape[-3] // kv.shape[-3]
        k = ops.repeat(k, rep, axis=k_in.index("h"))
        v = ops.repeat(v, rep, axis=v_in.index("h"))
    additive = _additive_mask(call, mask, batch, groups, qv.dims[-2] if qv.dims else L, kv.dims[-2] if kv.dims else S)
    heads = _PerHead(q_in, k_in, v_in, split="".join(c for c in q_in if c in batch or c == kv_head))
    if heads.worthwhile(qv, S, groups) and not any(d is None for t in (q, k, v) for d in tuple(t.shape)):
        out = heads.attention(ops, q, k, v, scale, additive)
    else:
        scores_sub = batch + q_heads + "ls"
        # The empty "..." keeps Keras' TF backend from rewriting these equations into Transpose + MatMul
        # (it does for a fixed list of spellings); TF's own Einsum kernel is several times faster here.
        scores = ops.multiply(ops.einsum(f"...{q_in},...{k_in}->...{scores_sub}", q, k), scale)
        if additive is not None:
            scores = ops.add(scores, additive.arranged(ops, scores_sub))
        weights = ops.softmax(scores, axis=-1)
        # The output keeps the query's layout, so the source's usual `.transpose(1, 2).reshape(...)` after
        # attention becomes a free relabelling instead of a transpose.
        out_sub = layout_letters(batch + "hlv", qv.perm).replace("h", q_heads)
        out = ops.einsum(f"...{scores_sub},...{v_in}->...{out_sub}", weights, v)
    if groups > 1:
        held_out = [call.out_shape[p] for p in (qv.perm or range(len(call.out_shape)))]
        h_at = layout_letters(batch + "hle", qv.perm).index("h")
        grouped = held_out[:h_at] + [held_out[h_at] // groups, groups] + held_out[h_at + 1:]
        out = call.ctx.reshape(out, grouped, held_out, what=call.op)
    return live_val(out, call.out_shape, qv.perm)


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


# Attention at most this small (multiply-adds per batch and key/value head, and that many heads) is
# written per head (see _PerHead); larger attention keeps the batched Einsum, whose threading pays.
_PER_HEAD_MAX_MACS = 1 << 20
_PER_HEAD_MAX_HEADS = 16


@dataclass(frozen=True)
class _PerHead:
    """Attention as one 2-D MatMul per (batch, key/value head), with one mask add and one softmax.

    The same arithmetic as the batched Einsum form. Why: on TensorFlow's CPU build (oneDNN) a batched
    MatMul or Einsum always splits its batch over the intra-op threads, and handing microseconds of
    work to another thread costs tens of microseconds, where a 2-D MatMul this small runs on the
    calling thread. On the llama-tiny preset (a sub-millisecond call) the four attention Einsums were a
    third of the SavedModel's time at two threads. The per-head scores are stacked into one matrix so
    the scale, the mask and the softmax stay one op each, whatever the number of heads.

    Letters: `split` names the axes cut into heads (batch axes and the key/value head, in the query's
    held order); every operand is held in its own layout, and what remains after the cut must be
    (rows..., e) for the query, (s, e) or (e, s) for keys and (s, v) or (v, s) for values.
    """

    q_in: str
    k_in: str
    v_in: str
    split: str

    def _rest(self, held: str) -> str:
        return "".join(c for c in held if c not in self.split)

    def worthwhile(self, qv: Val, keys_len: int, groups: int) -> bool:
        if self._rest(self.q_in)[-1:] != "e" or sorted(self._rest(self.k_in)) != ["e", "s"]:
            return False
        if sorted(self._rest(self.v_in)) != ["s", "v"]:
            return False
        products = int(np.prod(qv.shape[:-2])) // groups  # batch x key/value heads
        macs = groups * int(np.prod(qv.shape[-2:])) * keys_len  # query rows x features x keys, per product
        return products <= _PER_HEAD_MAX_HEADS and macs <= _PER_HEAD_MAX_MACS

    def attention(self, ops: Any, q: Any, k: Any, v: Any, scale: float, additive: "_Mask | None") -> Any:
        qs, ks, vs = (_unstack(ops, t, held, self.split)
                      for t, held in ((q, self.q_in), (k, self.k_in), (v, self.v_in)))
        keys = sorted(qs)
        k_rest, v_rest = self._rest(self.k_in), self._rest(self.v_in)
        scores = []
        for key in keys:
            rows = ops.reshape(qs[key], (-1, q.shape[self.q_in.index("e")]))
            scores.append(ops.matmul(rows, ks[key] if k_rest == "es" else ops.transpose(ks[key])))
        stacked = ops.concatenate(scores, axis=0) if len(scores) > 1 else scores[0]
        stacked = ops.multiply(stacked, scale)
        if additive is not None:
            # The mask broadcasts over heads and rows it does not vary with: scores viewed as
            # (split axes..., row axes..., s) for the add, then flat again.
            shape = [q.shape[self.q_in.index(c)] for c in self.split + self._rest(self.q_in)[:-1]]
            flat = stacked.shape
            stacked = ops.reshape(ops.add(ops.reshape(stacked, (*shape, flat[-1])),
                                          additive.arranged(ops, self.split + self._rest(self.q_in)[:-1] + "s")),
                                  flat)
        weights = ops.softmax(stacked, axis=-1)
        parts = ops.split(weights, len(keys), axis=0) if len(keys) > 1 else [weights]
        outs = {}
        for key, w in zip(keys, parts):
            vals = vs[key] if v_rest == "sv" else ops.transpose(vs[key])
            outs[key] = ops.reshape(ops.matmul(w, vals), (*qs[key].shape[:-1], vals.shape[-1]))
        return _stack(ops, outs, self.q_in, self.split)


@dataclass(frozen=True)
class _Mask:
    """An additive attention mask (NumPy constant or Keras tensor) and the letters of its axes."""

    values: Any
    letters: str  # source order: batch..., heads ("h", or "kg" for grouped heads), "l", "s"

    def arranged(self, ops: Any, order: str) -> Any:
        """The mask with its axes in `order` (sizes 1 where it broadcasts): a transpose of a constant,
        and for a computed mask a free reshape whenever only its size-1 axes move."""
        perm = [self.letters.index(c) for c in order]
        if perm == sorted(perm):
            return self.values
        if isinstance(self.values, np.ndarray):
            return np.transpose(self.values, perm)
        shape = self.values.shape
        moved = [p for p in perm if shape[p] != 1]
        if moved == sorted(moved) and None not in tuple(shape):
            return ops.reshape(self.values, [shape[p] for p in perm])
        return ops.transpose(self.values, perm)


def _additive_mask(call: Call, mask: Any, batch: str, groups: int, L: Any, S: Any) -> _Mask | None:
    """The causal flag and the attention mask as one additive mask (0 / -inf where a bool mask is False).

    Added rather than selected: the same numbers (x + 0 == x), and TF's broadcasting SelectV2 over the
    scores is an order of magnitude slower than a broadcast add; a computed bool mask is turned into
    0 / -inf once, at its own (smaller) size.
    """
    ops = call.ctx.ops
    neg = np.float32(-np.inf)
    total = None
    if call.args.get("is_causal") and (is_symbolic(L) or is_symbolic(S)):  # built at run time from the sizes
        rows = ops.expand_dims(call.ctx.sizes.arange(L, "int32"), 1)
        cols = ops.expand_dims(call.ctx.sizes.arange(S, "int32"), 0)
        total = ops.where(ops.less_equal(cols, rows), np.float32(0), neg)
    elif call.args.get("is_causal"):
        total = np.where(np.tril(np.ones((L, S), dtype=bool)), np.float32(0), neg)
    if mask is not None:
        if "bool" in str(mask.dtype):
            m = np.where(mask, np.float32(0), neg) if isinstance(mask, np.ndarray) else ops.where(mask, 0.0, neg)
        else:
            m = mask
        total = m if total is None else (total + m if isinstance(m, np.ndarray) else ops.add(m, total))
    if total is None:
        return None
    rank = len(batch) + 3
    shape = (1,) * (rank - len(total.shape)) + tuple(total.shape)
    if isinstance(total, np.ndarray):
        total = np.reshape(total, shape)
    else:
        for _ in range(rank - len(total.shape)):  # expand_dims keeps open sizes open, where a reshape fixes them
            total = ops.expand_dims(total, 0)
    letters = batch + "hls"
    if groups > 1:  # grouped heads share a mask without per-head values (_shared_kv_heads)
        total = np.expand_dims(total, -3) if isinstance(total, np.ndarray) else ops.expand_dims(total, -3)
        letters = batch + "kgls"
    return _Mask(total, letters)


def _unstack(ops: Any, x: Any, held: str, split: str) -> dict[tuple[int, ...], Any]:
    """x cut along the axes named in `split`: {indices in `split` order: piece, its other axes in held order}."""
    pieces: dict[tuple[int, ...], tuple[Any, str]] = {(): (x, held)}
    for letter in split:
        cut = {}
        for key, (t, letters) in pieces.items():
            axis = letters.index(letter)
            for i, part in enumerate(ops.unstack(t, axis=axis)):
                cut[key + (i,)] = (part, letters[:axis] + letters[axis + 1:])
        pieces = cut
    return {key: t for key, (t, _) in pieces.items()}


def _stack(ops: Any, outs: dict[tuple[int, ...], Any], held: str, split: str) -> Any:
    """The inverse of _unstack: pieces put back along the `split` axes, in the held layout."""

    def build(prefix: tuple[int, ...]) -> Any:
        level = len(prefix)
        if level == len(split):
            return outs[prefix]
        count = 1 + max(key[level] for key in outs if key[:level] == prefix)
        present = [c for c in held if c not in split[:level]]
        return ops.stack([build(prefix + (i,)) for i in range(count)], axis=present.index(split[level]))

    return build(())
