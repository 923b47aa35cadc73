"""Llama-style decoder, written like Hugging Face's `LlamaForCausalLM` but self-contained.

Parameter names match HF (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`,
..., `model.norm.weight`, `lm_head.weight`), so an HF Llama checkpoint loads with `load_state_dict`
and the weight maps written against this file also serve real checkpoints. It covers the pieces
converters find hard: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, causal SDPA and
tied embeddings.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configs import LlamaConfig

__all__ = [
    "LlamaAttention", "LlamaConfig", "LlamaDecoderLayer", "LlamaForCausalLM", "LlamaMLP", "LlamaModel",
    "LlamaRotaryEmbedding", "apply_rotary_pos_emb", "rotate_half", "window_mask",
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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                store: list | None = None) -> Any:
        """`mask` (bool, True = attend) replaces the causal/window rule when given. With `cache`
        (past keys, past values: (batch, kv_heads, max_len, head_dim); slot: (1 or batch, max_len)
        one-hot of the position each row writes), the new keys and values are written into their slot
        and attention runs over the whole cache; returns (output, (keys, values)) then. `store`, a
        list, receives this pass's (keys, values) after the rotary embedding (a prefill's cache)."""
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        present = None
        if cache is not None:
            # a static cache: x * 1 + new * 0 keeps every other slot bit for bit, and no op depends on
            # a data-dependent index (scatter), so every runtime and converter takes it
            past_k, past_v, slot = cache
            keep, put = (1 - slot)[:, None, :, None], slot[:, None, :, None]
            k, v = past_k * keep + k * put, past_v * keep + v * put
            present = (k, v)
        if store is not None:
            store.append((k, v))
        if self.num_kv_groups > 1:
            # kv head j serves query heads j*groups ... (j+1)*groups-1, as HF's repeat_kv
            k = k.repeat_interleave(self.num_kv_groups, dim=1)
            v = v.repeat_interleave(self.num_kv_groups, dim=1)
        if mask is not None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif self.sliding_window is not None and seq > self.sliding_window:
            # query i sees keys i - window < j <= i (Mistral's window); a constant the converters fold
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(seq, self.sliding_window, x.device))
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.num_heads * self.head_dim))
        return out if cache is None else (out, present)


def window_mask(seq: int, window: int | None, device: Any = None) -> torch.Tensor:
    """(seq, seq) bool: query i sees keys j with i - window < j <= i (all j <= i without a window)."""
    i = torch.arange(seq, device=device)
    offset = i[:, None] - i[None, :]
    return (offset >= 0) & (offset < window) if window is not None else offset >= 0


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                store: list | None = None) -> Any:
        attended = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, store)
        present = None
        if cache is not None:
            attended, present = attended
        x = x + attended
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x if cache is None else (x, present)


class LlamaModel(nn.Module):
    """Embeddings, decoder layers and final norm: input_ids (batch, seq) -> hidden (batch, seq, hidden)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self.windows = [config.window_of(i) for i in range(config.num_hidden_layers)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache_position: torch.Tensor | None = None, past_keys: torch.Tensor | None = None,
                past_values: torch.Tensor | None = None) -> Any:
        """input_ids (batch, seq) -> hidden (batch, seq, hidden).

        `attention_mask` (batch, keys), 1 = a real token, 0 = padding, masks keys as HF's does (a padded
        query still sees itself, so no row is empty; its output means nothing). With `past_keys` /
        `past_values` (layers, batch, kv_heads, max_len, head_dim) and `cache_position` (1,), this is
        one decode step: input_ids (batch, 1) is the token at that position, `attention_mask` covers
        the max_len cache slots, and the updated caches come back beside the hidden state."""
        if past_keys is not None:
            return self._decode(input_ids, attention_mask, cache_position, past_keys, past_values)
        return self._full(input_ids, attention_mask)

    def _full(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, store: list | None = None) -> Any:
        x = self.embed_tokens(input_ids)
        seq = input_ids.shape[1]
        cos, sin = self.rotary_emb(seq, x.dtype)
        masks: list[torch.Tensor | None] = [None] * len(self.layers)
        if attention_mask is not None:
            keys = attention_mask[:, None, None, :].bool()
            self_only = torch.eye(seq, dtype=torch.bool, device=x.device)
            masks = [(window_mask(seq, w, x.device) & keys) | self_only for w in self.windows]
        for layer, mask in zip(self.layers, masks):
            x = layer(x, cos, sin, mask, None, store)
        return self.norm(x)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole prompt (batch, seq) in one pass: hidden (batch, seq, hidden) and the caches (layers,
        batch, kv_heads, slots, head_dim) with positions 0 … seq-1 filled, the rest zero, ready for
        decode steps from each row's own length (rows padded on the right, `attention_mask` 0 there).

        The keys are placed into their slots by a one-hot product (seq × slots): exact, and no op
        depends on a data-dependent index or a computed pad length, so every converter takes it; it
        costs about 2% of the prefill itself at 500 tokens and 4096 slots."""
        seq = input_ids.shape[1]
        if seq > slots:
            raise ValueError(f"a prompt of {seq} tokens does not fit a cache of {slots} slots")
        store: list = []
        hidden = self._full(input_ids, attention_mask, store)
        place = (torch.arange(seq, device=input_ids.device)[:, None]
                 == torch.arange(slots, device=input_ids.device)[None, :]).to(hidden.dtype)
        keys = torch.stack([torch.einsum("bhsd,sm->bhmd", k, place) for k, _ in store])
        values = torch.stack([torch.einsum("bhsd,sm->bhmd", v, place) for _, v in store])
        return hidden, keys, values

    def _decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache_position: torch.Tensor | None,
                past_keys: torch.Tensor, past_values: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if cache_position is None or past_values is None or input_ids.shape[1] != 1:
            raise ValueError("a decode step takes one token per row, cache_position and both caches")
        # cache_position: (1,) for every row, or (batch,): each row at its own position, so prompts of
        # different lengths decode together
        x = self.embed_tokens(input_ids)
        max_len = past_keys.shape[-2]
        if max_len > self.rotary_emb.cos_cached.shape[0]:
            raise ValueError(f"a cache of {max_len} slots is longer than max_position_embeddings")
        cos = self.rotary_emb.cos_cached.index_select(0, cache_position).to(x.dtype)[:, None, None, :]
        sin = self.rotary_emb.sin_cached.index_select(0, cache_position).to(x.dtype)[:, None, None, :]
        slots = torch.arange(max_len, device=x.device)[None, :]
        position = cache_position[:, None]
        slot = (slots == position).to(x.dtype)
        seen = slots <= position
        if attention_mask is not None:
            seen = seen & attention_mask.bool()
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            window = self.windows[i]
            mask = seen if window is None else seen & (slots > position - window)
            x, (k, v) = layer(x, cos, sin, mask[:, None, None, :], (past_keys[i], past_values[i], slot))
            keys.append(k)
            values.append(v)
        return self.norm(x), torch.stack(keys), torch.stack(values)


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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache_position: torch.Tensor | None = None, past_keys: torch.Tensor | None = None,
                past_values: torch.Tensor | None = None, prefill_slots: int | None = None) -> Any:
        """logits (batch, seq, vocab); a decode step (see LlamaModel.forward) returns
        (logits, present_keys, present_values). With `prefill_slots`, a whole prompt: (logits at each
        row's last token (batch, vocab), keys, values) with caches of that many slots (see
        LlamaModel.prefill)."""
        if prefill_slots is not None:
            hidden, keys, values = self.model.prefill(input_ids, attention_mask, prefill_slots)
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            last = mask.sum(-1, keepdim=True) - 1  # each row's last real token (right padding)
            pick = (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] == last).to(hidden.dtype)
            return self.lm_head(torch.einsum("bs,bsh->bh", pick, hidden)), keys, values
        if past_keys is None:
            return self.lm_head(self.model(input_ids, attention_mask))
        hidden, keys, values = self.model(input_ids, attention_mask, cache_position, past_keys, past_values)
        return self.lm_head(hidden), keys, values

    def empty_cache(self, batch: int, max_len: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed (past_keys, past_values) for a decode loop of up to `max_len` positions."""
        c = self.config
        shape = (c.num_hidden_layers, batch, c.num_key_value_heads, max_len, c.resolved_head_dim)
        return torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)
