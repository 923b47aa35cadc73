"""Attention layers: MultiHeadAttention, Attention (Luong, dot or concat scores) and AdditiveAttention (Bahdanau).

MultiHeadAttention becomes the module below, with `query`, `key`, `value` (and `gate`) and `output`
`nn.Linear` children, so its state_dict reads `mha.query.weight`, … Keras keeps each projection as an
EinsumDense with a (features, heads, head_dim) kernel; flattened to (features, heads·head_dim) and
transposed it is the Linear weight, and the heads are split off the Linear's output. The attention is
computed as Keras computes it: q scaled by 1/sqrt(key_dim) before q·kᵀ, masked positions set to a
large negative number before the softmax.

One corner needs care: a query row whose every key is masked. Keras' fused path (used when scores are
not returned and dropout is 0) gives it a uniform softmax; its explicit path (scores returned, or
dropout > 0) zeroes it. The module does the same, so even those rows match.

GroupedQueryAttention becomes a module of the same shape (`GroupedQueryAttention` below): fewer key/value
heads than query heads, each key/value head repeated for its group of query heads as Keras repeats it;
the same masks (attention_mask, use_causal_mask, sliding_window) and the same fully-masked-row rule.

Attention and AdditiveAttention become one small module (`Attention` below) holding their learned scale(s);
their explicit `mask=[query_mask, value_mask]` and `use_causal_mask` are applied as Keras applies them.

Refused: MultiHeadAttention and GroupedQueryAttention over inputs other than (batch, seq, features), MHA
over other axes (`attention_axes`), their `query_mask` / `value_mask` / `key_mask` arguments (Keras masks
carried from earlier layers), and subclasses that redefine how attention is computed.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence


from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal, live
from porttax.converters.transforms import Identity, Reshape, Transform, Transpose

torch = import_torch()
nn = torch.nn

_MASKED = -1e9  # what Keras writes into masked scores (its softmax and Attention layers use this value)


def _mask_4d(mask: Any) -> Any:
    """A (batch, T, S) (or (T, S)) boolean mask broadcast over heads, as Keras expands it."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(-3)
    return mask


def attention_weights(scores: Any, attention_mask: Any, causal: bool, sliding_window: int | None,
                      zero_masked: bool) -> Any:
    """softmax over the keys of (batch, heads, T, S) scores, masked as Keras' attention layers mask them.

    Masked scores become -1e9 before the softmax. A query row with every key masked then comes out
    uniform, as on Keras' fused path; Keras' explicit path (`zero_masked`: scores returned, or dropout > 0)
    multiplies the softmax by the mask afterwards, which zeroes such a row.
    """
    mask = None if attention_mask is None else _mask_4d(attention_mask.bool())
    t, s = scores.shape[-2], scores.shape[-1]
    if causal:
        mask = _combine(mask, torch.ones(t, s, dtype=torch.bool, device=scores.device).tril())
    if sliding_window is not None:
        rows = torch.arange(t, device=scores.device)[:, None]
        cols = torch.arange(s, device=scores.device)[None, :]
        mask = _combine(mask, (rows - cols).abs() < sliding_window)
    if mask is not None:
        scores = scores.masked_fill(~mask, _MASKED)
    weights = scores.softmax(dim=-1)
    if mask is not None and zero_masked:
        weights = weights.masked_fill(~mask, 0.0)
    return weights


def _combine(mask: Any, extra: Any) -> Any:
    return extra if mask is None else mask & extra


class MultiHeadAttention(nn.Module):
    """Keras MultiHeadAttention over (batch, seq, features) inputs.

    Called like the Keras layer: `mha(query, value, key=None, attention_mask=None, ...)`, with
    `attention_mask` a (batch, T, S) tensor whose non-zero entries may be attended to. Returns the
    output, and the (batch, heads, T, S) attention weights when `return_attention_scores`.
    """

    def __init__(self, query_features: int, key_features: int, value_features: int, num_heads: int, key_dim: int,
                 value_dim: int, output_shape: Sequence[int], use_bias: bool = True, use_gate: bool = False,
                 sliding_window: int | None = None, zero_fully_masked_rows: bool = False) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.output_shape = tuple(output_shape)
        self.sliding_window = sliding_window
        self.zero_fully_masked_rows = zero_fully_masked_rows  # Keras' explicit (dropout > 0) path
        self.query = nn.Linear(query_features, num_heads * key_dim, bias=use_bias)
        self.key = nn.Linear(key_features, num_heads * key_dim, bias=use_bias)
        self.value = nn.Linear(value_features, num_heads * value_dim, bias=use_bias)
        self.gate = nn.Linear(query_features, num_heads * value_dim, bias=use_bias) if use_gate else None
        self.output = nn.Linear(num_heads * value_dim, math.prod(self.output_shape), bias=use_bias)

    def _heads(self, x: Any, dim: int) -> Any:
        return x.unflatten(-1, (self.num_heads, dim)).transpose(1, 2)  # (batch, heads, seq, dim)

    def forward(self, query: Any, value: Any, key: Any = None, attention_mask: Any = None,
                use_causal_mask: bool = False, return_attention_scores: bool = False) -> Any:
        if key is None:
            key = value
        q = self._heads(self.query(query), self.key_dim)
        k = self._heads(self.key(key), self.key_dim)
        v = self._heads(self.value(value), self.value_dim)
        scores = (q * (1.0 / math.sqrt(self.key_dim))) @ k.transpose(-1, -2)  # (batch, heads, T, S)
        weights = attention_weights(scores, attention_mask, use_causal_mask, self.sliding_window,
                                    return_attention_scores or self.zero_fully_masked_rows)
        out = (weights @ v).transpose(1, 2).flatten(2)  # (batch, T, heads·value_dim)
        if self.gate is not None:
            out = out * torch.sigmoid(self.gate(query))
        out = self.output(out)
        if len(self.output_shape) > 1:
            out = out.unflatten(-1, self.output_shape)
        return (out, weights) if return_attention_scores else out

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, key_dim={self.key_dim}, value_dim={self.value_dim}"


def _bind(call: LayerCall) -> dict[str, Any]:
    """The call's arguments by name, as the Keras layer's `call` would receive them."""
    sig = inspect.signature(type(call.layer).call)
    bound = sig.bind(None, *call.args, **call.kwargs)
    args = dict(bound.arguments)
    args.pop(next(iter(sig.parameters)))  # self
    return args


def _projection(kernel_shape: Sequence[int]) -> Transform:
    """A (features, heads, dim) EinsumDense kernel as a Linear weight (heads·dim, features)."""
    features, *rest = (int(d) for d in kernel_shape)
    return Reshape((features, math.prod(rest)), (features, *rest)).then(Transpose((1, 0)))


def _flat(shape: Sequence[int]) -> Transform:
    shape = tuple(int(d) for d in shape)
    return Identity() if len(shape) == 1 else Reshape((math.prod(shape),), shape)


@keras_to_torch("MultiHeadAttention")
def multi_head_attention(call: LayerCall) -> TVal | list[TVal]:
    layer = call.layer
    overridden = _overridden_internals(type(layer))
    if overridden:
        raise call.unsupported(f"a MultiHeadAttention subclass that overrides {', '.join(overridden)} computes "
                               "something porttax cannot see", hint="register a converter for the subclass")
    args = _bind(call)
    _refuse_keras_masks(call, args)
    query, value, key = args["query"], args["value"], args.get("key")
    _refuse_non_sequence(call, {"query": query, "value": value, "key": key})
    if tuple(layer._attention_axes) != (1,):
        raise call.unsupported(f"attention_axes={layer._attention_axes}: porttax converts attention over the "
                               "sequence axis (the default) only")
    returns_scores = bool(args.get("return_attention_scores", False))
    causal = bool(args.get("use_causal_mask", False))
    qd, kd, vd, od = layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense
    gd = getattr(layer, "_gate_dense", None) if getattr(layer, "_use_gate", False) else None
    out_shape = tuple(int(d) for d in od.kernel.shape[2:])
    module = call.module() or MultiHeadAttention(
        int(qd.kernel.shape[0]), int(kd.kernel.shape[0]), int(vd.kernel.shape[0]), int(layer.num_heads),
        int(layer.key_dim), int(layer.value_dim), out_shape, use_bias=bool(layer.use_bias), use_gate=gd is not None,
        sliding_window=getattr(layer, "_sliding_window", None),
        zero_fully_masked_rows=float(layer.dropout) > 0.0,
    )
    dense = [("query", qd), ("key", kd), ("value", vd)] + ([("gate", gd)] if gd is not None else [])
    for name, sub in dense:
        linear = getattr(module, name)
        call.port(sub.kernel, linear, "weight", _projection(sub.kernel.shape), suffix=name)
        if sub.bias is not None:
            call.port(sub.bias, linear, "bias", _flat(sub.bias.shape), suffix=name)
    heads_by_dim = int(od.kernel.shape[0]) * int(od.kernel.shape[1])
    call.port(od.kernel, module.output, "weight",
              Reshape((heads_by_dim, math.prod(out_shape)), tuple(int(d) for d in od.kernel.shape)).then(
                  Transpose((1, 0))), suffix="output")
    if od.bias is not None:
        call.port(od.bias, module.output, "bias", _flat(od.bias.shape), suffix="output")

    inputs = [call.ctx.operand(query), call.ctx.operand(value)]
    kwargs: dict[str, Any] = {}
    if key is not None and key is not value:
        kwargs["key"] = call.ctx.operand(key)
    if args.get("attention_mask") is not None:
        kwargs["attention_mask"] = call.ctx.operand(args["attention_mask"])
    if causal:
        kwargs["use_causal_mask"] = True
    if returns_scores:
        kwargs["return_attention_scores"] = True
    out = call.add_module(module)(*inputs, **kwargs)
    if not returns_scores:
        return call.result(out)
    # Keras' symbolic scores shape uses the query length twice; the real one is (batch, heads, T, S).
    t, s = query.shape[1], (value.shape[1] if isinstance(value, TVal) else None)
    return [call.result(out[0]), live(out[1], (None, int(layer.num_heads), t, s))]


_MHA_INTERNALS = ("_compute_attention", "_masked_softmax", "_compute_attention_mask", "_compute_causal_mask",
                  "_compute_sliding_window_mask", "_build_attention")


def _overridden_internals(cls: type) -> list[str]:
    """The attention internals a MultiHeadAttention subclass redefines (its `call` is checked by the driver)."""
    from keras.src.layers.attention.multi_head_attention import MultiHeadAttention as KerasMHA

    below = cls.__mro__[: cls.__mro__.index(KerasMHA)]
    return [name for name in _MHA_INTERNALS if any(name in vars(k) for k in below)]


# ---- GroupedQueryAttention -------------------------------------------------------------------------------
class GroupedQueryAttention(nn.Module):
    """Keras GroupedQueryAttention over (batch, seq, features) inputs: `num_query_heads` query heads share
    `num_key_value_heads` key/value heads, each key/value head serving `num_query_heads / num_key_value_heads`
    consecutive query heads (Keras' `ops.repeat(..., axis=2)`, torch's `repeat_interleave`).

    Called like the Keras layer: `gqa(query, value, key=None, attention_mask=None, ...)`. The output
    projection maps back to the query's feature size, as in Keras.
    """

    def __init__(self, query_features: int, key_features: int, value_features: int, num_query_heads: int,
                 num_key_value_heads: int, head_dim: int, use_bias: bool = True, use_gate: bool = False,
                 sliding_window: int | None = None, zero_fully_masked_rows: bool = False) -> None:
        super().__init__()
        self.num_query_heads, self.num_key_value_heads, self.head_dim = num_query_heads, num_key_value_heads, head_dim
        self.sliding_window = sliding_window
        self.zero_fully_masked_rows = zero_fully_masked_rows  # Keras' explicit (dropout > 0) path
        self.query = nn.Linear(query_features, num_query_heads * head_dim, bias=use_bias)
        self.key = nn.Linear(key_features, num_key_value_heads * head_dim, bias=use_bias)
        self.value = nn.Linear(value_features, num_key_value_heads * head_dim, bias=use_bias)
        self.gate = nn.Linear(query_features, num_query_heads * head_dim, bias=use_bias) if use_gate else None
        self.output = nn.Linear(num_query_heads * head_dim, query_features, bias=use_bias)

    def _heads(self, x: Any, heads: int) -> Any:
        x = x.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)  # (batch, heads, seq, head_dim)
        repeats = self.num_query_heads // heads
        return x if repeats == 1 else x.repeat_interleave(repeats, dim=1)

    def forward(self, query: Any, value: Any, key: Any = None, attention_mask: Any = None,
                use_causal_mask: bool = False, return_attention_scores: bool = False) -> Any:
        if key is None:
            key = value
        q = self._heads(self.query(query), self.num_query_heads)
        k = self._heads(self.key(key), self.num_key_value_heads)
        v = self._heads(self.value(value), self.num_key_value_heads)
        scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-1, -2)  # (batch, query heads, T, S)
        weights = attention_weights(scores, attention_mask, use_causal_mask, self.sliding_window,
                                    return_attention_scores or self.zero_fully_masked_rows)
        out = (weights @ v).transpose(1, 2).flatten(2)  # (batch, T, query heads·head_dim)
        if self.gate is not None:
            out = out * torch.sigmoid(self.gate(query))
        out = self.output(out)
        return (out, weights) if return_attention_scores else out

    def extra_repr(self) -> str:
        return (f"num_query_heads={self.num_query_heads}, num_key_value_heads={self.num_key_value_heads}, "
                f"head_dim={self.head_dim}")


_GQA_INTERNALS = ("_compute_attention", "_masked_softmax", "_compute_attention_mask", "_compute_causal_mask",
                  "_compute_sliding_window_mask")


def _refuse_keras_masks(call: LayerCall, args: dict[str, Any]) -> None:
    for name in ("query_mask", "value_mask", "key_mask"):
        if args.get(name) is not None:
            raise call.unsupported(
                f"{name}: a Keras mask reaches this layer from an earlier one; porttax does not carry masks",
                hint="pass an explicit attention_mask tensor instead",
            )


def _refuse_non_sequence(call: LayerCall, tensors: dict[str, Any]) -> None:
    for name, t in tensors.items():
        if isinstance(t, TVal) and t.rank != 3:
            raise call.unsupported(f"{name} of shape {t.shape}: porttax converts attention over (batch, seq, "
                                   "features) inputs only", hint="reshape to (batch, seq, features) around the layer")


def _port_dense(call: LayerCall, dense: Any, linear: Any, suffix: str, weight: Transform) -> None:
    """One EinsumDense projection into an nn.Linear child (`suffix`): kernel as the weight, bias flattened."""
    call.port(dense.kernel, linear, "weight", weight, suffix=suffix)
    if dense.bias is not None:
        call.port(dense.bias, linear, "bias", _flat(dense.bias.shape), suffix=suffix)


def _output_weight(kernel_shape: Sequence[int]) -> Transform:
    """A (heads, head_dim, out...) output EinsumDense kernel as a Linear weight (out, heads·head_dim)."""
    shape = tuple(int(d) for d in kernel_shape)
    return Reshape((shape[0] * shape[1], math.prod(shape[2:])), shape).then(Transpose((1, 0)))


@keras_to_torch("GroupedQueryAttention")
def grouped_query_attention(call: LayerCall) -> TVal | list[TVal]:
    layer = call.layer
    overridden = _overridden_gqa_internals(type(layer))
    if overridden:
        raise call.unsupported(f"a GroupedQueryAttention subclass that overrides {', '.join(overridden)} computes "
                               "something porttax cannot see", hint="register a converter for the subclass")
    args = _bind(call)
    _refuse_keras_masks(call, args)
    query, value, key = args["query"], args["value"], args.get("key")
    _refuse_non_sequence(call, {"query": query, "value": value, "key": key})
    returns_scores = bool(args.get("return_attention_scores", False))
    qd, kd, vd, od = layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense
    gd = layer._gate_dense if layer.use_gate else None
    module = call.module() or GroupedQueryAttention(
        int(qd.kernel.shape[0]), int(kd.kernel.shape[0]), int(vd.kernel.shape[0]), int(layer.num_query_heads),
        int(layer.num_key_value_heads), int(layer.head_dim), use_bias=bool(layer.use_bias), use_gate=gd is not None,
        sliding_window=layer.sliding_window, zero_fully_masked_rows=float(layer.dropout) > 0.0,
    )
    for name, sub in [("query", qd), ("key", kd), ("value", vd)] + ([("gate", gd)] if gd is not None else []):
        _port_dense(call, sub, getattr(module, name), name, _projection(sub.kernel.shape))
    _port_dense(call, od, module.output, "output", _output_weight(od.kernel.shape))

    kwargs: dict[str, Any] = {}
    if key is not None and key is not value:
        kwargs["key"] = call.ctx.operand(key)
    if args.get("attention_mask") is not None:
        kwargs["attention_mask"] = call.ctx.operand(args["attention_mask"])
    if args.get("use_causal_mask"):
        kwargs["use_causal_mask"] = True
    if returns_scores:
        kwargs["return_attention_scores"] = True
    out = call.add_module(module)(call.ctx.operand(query), call.ctx.operand(value), **kwargs)
    if not returns_scores:
        return call.result(out)
    return [call.result(out[0], index=0), call.result(out[1], index=1)]


def _overridden_gqa_internals(cls: type) -> list[str]:
    """The attention internals a GroupedQueryAttention subclass redefines (its `call` is checked by the driver)."""
    from keras.src.layers.attention.grouped_query_attention import GroupedQueryAttention as KerasGQA

    below = cls.__mro__[: cls.__mro__.index(KerasGQA)]
    return [name for name in _GQA_INTERNALS if any(name in vars(k) for k in below)]


# ---- Attention and AdditiveAttention ---------------------------------------------------------------------
class Attention(nn.Module):
    """Keras `Attention` (Luong) and `AdditiveAttention` (Bahdanau): softmax(scores(q, k)) · v.

    Scores, as Keras computes them:
    - "dot": q·kᵀ, times the learned scalar `scale` when use_scale;
    - "concat": concat_score_weight · Σ tanh(scale · (q + k)) over features;
    - "additive" (AdditiveAttention): Σ scale · tanh(q + k), `scale` a learned (features,) vector.
    Masked keys get `scores - 1e9` (Keras' own formula), and masked query rows output zeros.
    """

    def __init__(self, score_mode: str, use_scale: bool, features: int | None = None) -> None:
        super().__init__()
        self.score_mode = score_mode
        if score_mode == "additive":
            self.scale = nn.Parameter(torch.ones(features)) if use_scale else None
        else:
            self.scale = nn.Parameter(torch.ones(())) if use_scale else None
        self.concat_score_weight = nn.Parameter(torch.ones(())) if score_mode == "concat" else None

    def scores(self, query: Any, key: Any) -> Any:
        if self.score_mode == "dot":
            scores = query @ key.transpose(-1, -2)
            return scores if self.scale is None else scores * self.scale
        pairs = query.unsqueeze(-2) + key.unsqueeze(-3)  # (..., Tq, Tv, features)
        if self.score_mode == "concat":
            pairs = pairs if self.scale is None else self.scale * pairs
            return self.concat_score_weight * torch.tanh(pairs).sum(dim=-1)
        return (torch.tanh(pairs) if self.scale is None else self.scale * torch.tanh(pairs)).sum(dim=-1)

    def forward(self, query: Any, value: Any, key: Any = None, query_mask: Any = None, value_mask: Any = None,
                use_causal_mask: bool = False, return_attention_scores: bool = False) -> Any:
        if key is None:
            key = value
        scores = self.scores(query, key)
        mask = None if value_mask is None else value_mask.bool()
        if use_causal_mask:
            causal = torch.ones(scores.shape[-2], scores.shape[-1], dtype=torch.bool, device=scores.device).tril()
            mask = causal if mask is None else mask.unsqueeze(-2) & causal
        elif mask is not None and mask.dim() == 2:
            mask = mask.unsqueeze(-2)  # (batch, Tv) → (batch, 1, Tv), as Keras expands it
        if mask is not None:
            scores = torch.where(mask, scores, scores + _MASKED)
        weights = scores.softmax(dim=-1)
        out = weights @ value
        if query_mask is not None:
            out = torch.where(query_mask.bool().unsqueeze(-1), out, 0.0)
        return (out, weights) if return_attention_scores else out

    def extra_repr(self) -> str:
        return f"score_mode={self.score_mode!r}"


def _attention_like(call: LayerCall, module_fn: Any) -> TVal | list[TVal]:
    layer = call.layer
    args = _bind(call)
    inputs = args["inputs"]
    mask = args.get("mask")
    module = call.module() or module_fn()
    if getattr(layer, "scale", None) is not None:
        call.port(layer.scale, module, "scale", Identity())
    if getattr(layer, "concat_score_weight", None) is not None:
        call.port(layer.concat_score_weight, module, "concat_score_weight", Identity())
    operands = [call.ctx.operand(t) for t in inputs]
    kwargs: dict[str, Any] = {}
    if len(operands) > 2:
        kwargs["key"] = operands[2]
    for name, m in zip(("query_mask", "value_mask"), mask or ()):
        if m is not None:
            kwargs[name] = call.ctx.operand(m)
    if args.get("use_causal_mask"):
        kwargs["use_causal_mask"] = True
    returns_scores = bool(args.get("return_attention_scores", False))
    if returns_scores:
        kwargs["return_attention_scores"] = True
    out = call.add_module(module)(operands[0], operands[1], **kwargs)
    if not returns_scores:
        return call.result(out)
    return [call.result(out[0], index=0), call.result(out[1], index=1)]


@keras_to_torch("Attention")
def attention(call: LayerCall) -> TVal | list[TVal]:
    layer = call.layer
    return _attention_like(call, lambda: Attention(layer.score_mode, bool(layer.use_scale)))


@keras_to_torch("AdditiveAttention")
def additive_attention(call: LayerCall) -> TVal | list[TVal]:
    layer = call.layer
    features = int(layer.scale.shape[0]) if getattr(layer, "scale", None) is not None else None
    return _attention_like(call, lambda: Attention("additive", bool(layer.use_scale), features))
