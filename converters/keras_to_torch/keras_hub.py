"""keras-hub's Llama backbone: its decoder block, its RMS norm and its rotary embedding as readable torch
modules. (Its token embedding is `keras.layers.ReversibleEmbedding`, converted in embedding.py.)

keras-hub is optional: nothing here imports it. The converters are registered by class name and check
that the layer's class comes from keras_hub's Llama package, so a same-named layer from elsewhere is
refused instead of being taken for it.

A `LlamaTransformerDecoder` is one Keras layer with the whole block inside (norms, attention, the gated
feed-forward), so it becomes one `LlamaTransformerDecoder` module whose children carry the Keras
sublayers' names (`self_attention.query`, `feedforward_gate_dense`, ...), computed as keras-hub computes
them on the TensorFlow backend:
- RMS norm: x · rsqrt(mean(x²) + ε) · scale.
- attention: q, k, v projections (EinsumDense, as nn.Linear), rotary embedding on q and k, each key/value
  head repeated for its group of query heads, scores (q·kᵀ)/sqrt(head_dim), the decoder's mask (causal,
  and the padding mask on the keys) applied as Keras' Softmax applies it (masked scores -1e9, then the
  masked weights zeroed, so a fully masked row is zero), then the output projection.
- feed-forward: output(intermediate(x) · silu(gate(x))), each residual added after its sublayer.
- rotary embedding: the inverse frequencies are the Keras layer's own (`_get_inverse_freq`, which holds
  Llama 3's frequency smoothing and every rope scaling type), computed once at conversion as a buffer;
  the angles are position · inverse frequency, the rotation rotate-half, as keras-hub's RotaryEmbedding.

Refused: a key/value cache passed to a block (generation-time state; the backbone has none), rotary
embeddings over other axes, a start index or explicit positions, and compute dtypes other than float32
(keras-hub then casts inside the block, which these modules do not copy).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.activation import activation_module, activation_name
from porttax.converters.keras_to_torch.attention import _output_weight, _projection, attention_weights
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.transforms import Identity, Transpose

torch = import_torch()
nn = torch.nn


class LlamaLayerNorm(nn.Module):
    """RMS normalisation over the last axis with a learned `scale`, as keras-hub's LlamaLayerNorm."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Any) -> Any:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.scale

    def extra_repr(self) -> str:
        return f"{self.scale.shape[0]}, eps={self.eps}"


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of (batch, seq, ..., dim) inputs: x·cos + rotate_half(x)·sin with angles
    position · inverse_freq, each angle used for feature j and j + dim/2 (keras-hub's layout)."""

    def __init__(self, inverse_freq: np.ndarray, factor: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("inverse_freq", torch.from_numpy(np.asarray(inverse_freq, np.float32)), persistent=False)
        self.factor = factor  # YaRN's attention factor on cos and sin; 1 otherwise

    def forward(self, x: Any) -> Any:
        positions = torch.arange(x.shape[1], dtype=torch.float32, device=x.device)
        freq = positions[:, None] * self.inverse_freq[None, :]
        angles = torch.cat([freq, freq], dim=-1)  # (seq, dim)
        angles = angles.reshape(1, x.shape[1], *([1] * (x.dim() - 3)), x.shape[-1])
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        if self.factor != 1.0:
            cos, sin = cos * self.factor, sin * self.factor
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with rotary embeddings on q and k (keras-hub's LlamaAttention)."""

    def __init__(self, hidden: int, num_query_heads: int, num_key_value_heads: int, head_dim: int,
                 rotary: RotaryEmbedding, use_bias: bool = False) -> None:
        super().__init__()
        self.num_query_heads, self.num_key_value_heads, self.head_dim = num_query_heads, num_key_value_heads, head_dim
        self.query = nn.Linear(hidden, num_query_heads * head_dim, bias=use_bias)
        self.key = nn.Linear(hidden, num_key_value_heads * head_dim, bias=use_bias)
        self.value = nn.Linear(hidden, num_key_value_heads * head_dim, bias=use_bias)
        self.attention_output = nn.Linear(num_query_heads * head_dim, hidden, bias=use_bias)
        self.rotary_embedding = rotary

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        groups = self.num_query_heads // self.num_key_value_heads
        q = self.rotary_embedding(self.query(x).unflatten(-1, (self.num_query_heads, self.head_dim)))
        k = self.rotary_embedding(self.key(x).unflatten(-1, (self.num_key_value_heads, self.head_dim)))
        v = self.value(x).unflatten(-1, (self.num_key_value_heads, self.head_dim))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (batch, heads, seq, head_dim)
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        weights = attention_weights(scores, attention_mask, False, None, zero_masked=True)
        return self.attention_output((weights @ v).transpose(1, 2).flatten(2))

    def extra_repr(self) -> str:
        return (f"num_query_heads={self.num_query_heads}, num_key_value_heads={self.num_key_value_heads}, "
                f"head_dim={self.head_dim}")


class LlamaTransformerDecoder(nn.Module):
    """One keras-hub Llama decoder block: pre-norm causal self-attention and a gated feed-forward, each
    with a residual. `padding_mask` (batch, seq) marks real tokens; padded keys are not attended to."""

    def __init__(self, hidden: int, intermediate: int, eps: float, attention: LlamaAttention,
                 activation: nn.Module) -> None:
        super().__init__()
        self.self_attention_layernorm = LlamaLayerNorm(hidden, eps)
        self.self_attention = attention
        self.feedforward_layernorm = LlamaLayerNorm(hidden, eps)
        self.feedforward_gate_dense = nn.Linear(hidden, intermediate, bias=False)
        self.feedforward_intermediate_dense = nn.Linear(hidden, intermediate, bias=False)
        self.feedforward_output_dense = nn.Linear(intermediate, hidden, bias=False)
        self.activation = activation

    def forward(self, x: Any, padding_mask: Any = None, attention_mask: Any = None) -> Any:
        seq = x.shape[1]
        mask = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()[None]  # (1, seq, seq)
        if padding_mask is not None:
            mask = mask & padding_mask.bool()[:, None, :]
        if attention_mask is not None:
            mask = mask & attention_mask.bool()
        x = x + self.self_attention(self.self_attention_layernorm(x), mask)
        h = self.feedforward_layernorm(x)
        gate = self.activation(self.feedforward_gate_dense(h))
        return x + self.feedforward_output_dense(self.feedforward_intermediate_dense(h) * gate)


# ---- converters ------------------------------------------------------------------------------------------
def _from_keras_hub(call: LayerCall, package: str) -> None:
    module = type(call.layer).__module__
    if not module.startswith(f"keras_hub.src.{package}"):
        raise call.unsupported(f"a {call.kind} from {module}; porttax converts keras-hub's {call.kind}",
                               hint="register a converter for this layer's class")
    if str(call.layer.compute_dtype) != "float32":
        raise call.unsupported(f"compute dtype {call.layer.compute_dtype}: porttax converts keras-hub blocks "
                               "in float32", hint="load the model with dtype='float32', convert, then cast in torch")


def _bind(call: LayerCall) -> dict[str, Any]:
    sig = inspect.signature(type(call.layer).call)
    args = dict(sig.bind(None, *call.args, **call.kwargs).arguments)
    args.pop(next(iter(sig.parameters)))  # self
    return args


def _rotary(call: LayerCall, layer: Any, head_dim: int) -> RotaryEmbedding:
    """The torch module for a keras-hub RotaryEmbedding acting on (batch, seq, ..., head_dim) values."""
    keras = import_keras()
    if int(layer.sequence_axis) != 1 or int(layer.feature_axis) not in (-1,):
        raise call.unsupported(f"a rotary embedding over sequence_axis={layer.sequence_axis}, feature_axis="
                               f"{layer.feature_axis}; porttax converts sequence axis 1 and the last feature axis")
    inverse = np.asarray(keras.ops.convert_to_numpy(layer._get_inverse_freq(head_dim)), np.float32)
    factor = 1.0
    if getattr(layer, "rope_type", None) == "yarn":
        factor = float(np.float32(0.1) * np.log(np.float32(layer.scaling_factor)) + np.float32(1.0))
    return RotaryEmbedding(inverse, factor)


def _port_attention(call: LayerCall, layer: Any, module: LlamaAttention) -> None:
    projections = {"query": layer._query_dense, "key": layer._key_dense, "value": layer._value_dense,
                   "attention_output": layer._output_dense}
    for name, dense in projections.items():
        shape = dense.kernel.shape
        weight = _output_weight(shape) if name == "attention_output" else _projection(shape)
        linear = getattr(module, name)
        call.port(dense.kernel, linear, "weight", weight, suffix=f"self_attention.{name}")
        if dense.bias is not None:
            call.port(dense.bias, linear, "bias", Identity(), suffix=f"self_attention.{name}")


def _decoder_module(call: LayerCall) -> LlamaTransformerDecoder:
    layer = call.layer
    attn = layer._self_attention_layer
    hidden = int(attn._query_dense.kernel.shape[0])
    head_dim = int(attn._query_dense.kernel.shape[-1])
    use_bias = attn._query_dense.bias is not None
    attention = LlamaAttention(hidden, int(attn.num_query_heads), int(attn.num_key_value_heads), head_dim,
                               _rotary(call, attn.rotary_embedding_layer, head_dim), use_bias)
    act = activation_module(activation_name(layer.activation), TVal(shape=(None, None, hidden)), call.ctx,
                            f"Keras layer {call.name!r} ({call.kind})")
    intermediate = int(layer._feedforward_gate_dense.kernel.shape[1])
    return LlamaTransformerDecoder(hidden, intermediate, float(layer.layer_norm_epsilon), attention, act)


@keras_to_torch("LlamaTransformerDecoder")
def llama_decoder(call: LayerCall) -> TVal:
    _from_keras_hub(call, "models.llama")
    layer = call.layer
    args = _bind(call)
    if args.get("self_attention_cache") is not None or args.get("self_attention_cache_update_index") is not None:
        raise call.unsupported("a key/value cache reaches this decoder block (cached generation)",
                               hint="convert the backbone, which runs the blocks without a cache")
    module = call.module() or _decoder_module(call)
    for norm in ("self_attention_layernorm", "feedforward_layernorm"):
        call.port(getattr(layer, f"_{norm}").scale, getattr(module, norm), "scale", Identity(), suffix=norm)
    _port_attention(call, layer._self_attention_layer, module.self_attention)
    for name in ("feedforward_gate_dense", "feedforward_intermediate_dense", "feedforward_output_dense"):
        call.port(getattr(layer, f"_{name}").kernel, getattr(module, name), "weight", Transpose((1, 0)), suffix=name)
    kwargs: dict[str, Any] = {}
    if args.get("decoder_padding_mask") is not None:
        kwargs["padding_mask"] = call.ctx.operand(args["decoder_padding_mask"])
    if args.get("decoder_attention_mask") is not None:
        kwargs["attention_mask"] = call.ctx.operand(args["decoder_attention_mask"])
    return call.result(call.add_module(module)(call.ctx.operand(args["decoder_sequence"]), **kwargs))


@keras_to_torch("LlamaLayerNorm")
def llama_layer_norm(call: LayerCall) -> TVal:
    _from_keras_hub(call, "models.llama")
    layer = call.layer
    module = call.module() or LlamaLayerNorm(int(layer.scale.shape[0]), float(layer.epsilon))
    call.port(layer.scale, module, "scale", Identity())
    return call.result(call.add_module(module)(call.ctx.keras_layout(call.x)))


@keras_to_torch("RotaryEmbedding")
def rotary_embedding(call: LayerCall) -> TVal:
    """keras-hub's RotaryEmbedding (and LlamaRotaryEmbedding, its subclass) used as a layer of its own."""
    _from_keras_hub(call, "")
    args = _bind(call)
    if args.get("positions") is not None or not (isinstance(args.get("start_index", 0), int)
                                                 and args.get("start_index", 0) == 0):
        raise call.unsupported("a rotary embedding called with a start index or explicit positions",
                               hint="porttax converts positions 0 .. seq-1 (no cached decoding)")
    v = call.x
    module = call.module() or _rotary(call, call.layer, int(v.shape[-1]))
    return call.result(call.add_module(module)(call.ctx.keras_layout(v)))
