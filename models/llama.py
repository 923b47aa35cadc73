"""Llama-style decoder, written like Hugging Face's `LlamaForCausalLM` but self-contained.

Parameter names match HF (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`,
..., `model.norm.weight`, `lm_head.weight`), so an HF Llama checkpoint loads with `load_state_dict`
and the weight maps written against this file also serve real checkpoints. It covers the pieces
converters find hard: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, causal SDPA and
tied embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import LlamaConfig

__all__ = [
    "LlamaAttention", "LlamaConfig", "LlamaDecoderLayer", "LlamaForCausalLM", "LlamaMLP", "LlamaModel",
    "LlamaRotaryEmbedding", "apply_rotary_pos_emb", "rotate_half",
]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's rotation: the last dim split in two halves (x1, x2) -> (-x2, x1), not interleaved pairs."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: (batch, heads, seq, head_dim); cos, sin: (seq, head_dim), broadcast over batch and heads."""
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def scaled_inv_freq(inv_freq: torch.Tensor, scaling: dict | None) -> torch.Tensor:
    """Rotary frequencies under a context-extension rule.

    linear: every frequency divided by `factor` (positions stretched). llama3 (Llama 3.1+): wavelengths
    longer than original_max_position_embeddings / low_freq_factor are divided by `factor`, those
    shorter than original / high_freq_factor are kept, and the band between is blended linearly in
    original / wavelength. Computed once, in float32, into the cos/sin tables.
    """
    if scaling is None:
        return inv_freq
    factor = float(scaling["factor"])
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    original = float(scaling["original_max_position_embeddings"])
    wavelength = 2 * math.pi / inv_freq
    stretched = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    blend = (original / wavelength - low) / (high - low)
    between = (wavelength >= original / high) & (wavelength <= original / low)
    return torch.where(between, (1 - blend) * inv_freq / factor + blend * inv_freq, stretched)


class LlamaRotaryEmbedding(nn.Module):
    """cos/sin tables for every position up to max_position_embeddings, computed once in float32.

    Buffers are non-persistent: they derive from the config, HF checkpoints do not hold them, and
    slicing a precomputed table keeps the exported graph free of trig on positions.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        dim = config.resolved_head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        inv_freq = scaled_inv_freq(inv_freq, config.rope_scaling)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos_cached[:seq_len].to(dtype), self.sin_cached[:seq_len].to(dtype)


class LlamaAttention(nn.Module):
    """Grouped-query causal self attention: num_key_value_heads k/v heads, each shared by
    num_attention_heads // num_key_value_heads query heads (k/v repeated before SDPA)."""

    def __init__(self, config: LlamaConfig, layer: int = 0) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.num_kv_groups = self.num_heads // self.num_kv_heads
        self.head_dim = config.resolved_head_dim
        self.sliding_window = config.window_of(layer)
        bias = config.attention_bias
        qkv_bias = bias or config.qkv_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if self.num_kv_groups > 1:
            # kv head j serves query heads j*groups ... (j+1)*groups-1, as HF's repeat_kv
            k = k.repeat_interleave(self.num_kv_groups, dim=1)
            v = v.repeat_interleave(self.num_kv_groups, dim=1)
        if self.sliding_window is not None and seq > self.sliding_window:
            # query i sees keys i - window < j <= i (Mistral's window); a constant the converters fold
            i = torch.arange(seq, device=x.device)
            offset = i[:, None] - i[None, :]
            mask = (offset >= 0) & (offset < self.sliding_window)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    """SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        bias = config.mlp_bias
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int = 0) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Embeddings, decoder layers and final norm: input_ids (batch, seq) -> hidden (batch, seq, hidden)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(input_ids.shape[1], x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """input_ids (batch, seq) int64 -> logits (batch, seq, vocab_size); no KV cache (one full pass).

    With `tie_word_embeddings`, `lm_head.weight` *is* `model.embed_tokens.weight` (one Parameter),
    and `tied_weight_keys` names the duplicate key that checkpoints leave out, as HF does.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tied_weight_keys: dict[str, str] = {}
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
            self.tied_weight_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model(input_ids))
