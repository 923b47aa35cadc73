"""Pre-LN transformer encoder: token + learned position embeddings, multi-head self attention with
explicit q/k/v/o projections (so weight ports are one Linear each, no fused qkv) and a GELU MLP.

Attention goes through `F.scaled_dot_product_attention`, the op torch.export records and converters
must map; an optional padding mask shows how masks travel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import EncoderConfig

__all__ = ["EncoderConfig", "EncoderLayer", "SelfAttention", "TransformerEncoder"]


class SelfAttention(nn.Module):
    """Multi-head self attention; `attention_mask` (batch, seq) is 1 for real tokens, 0 for padding."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, seq, hidden = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        mask = None
        if attention_mask is not None:
            # (batch, 1, 1, seq) bool: True keys take part; broadcasts over heads and query positions
            mask = attention_mask.to(torch.bool)[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, hidden))


class EncoderMLP(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """x + attn(LN(x)), then x + mlp(LN(x)): pre-LN, as in GPT-2/ViT, so the residual stream is unnormalised."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EncoderMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), attention_mask))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """input_ids (batch, seq) int64 -> last hidden states (batch, seq, hidden_size), final LayerNorm applied."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        seq = input_ids.shape[1]
        # tells torch.export the valid range of a dynamic seq dim; in eager, a clear error past the table
        torch._check(
            seq <= self.config.max_position_embeddings,
            lambda: f"seq {seq} exceeds max_position_embeddings {self.config.max_position_embeddings}",
        )
        positions = torch.arange(seq, device=input_ids.device)
        x = self.dropout(self.embed_tokens(input_ids) + self.embed_positions(positions)[None])
        for layer in self.layers:
            x = layer(x, attention_mask)
        return self.norm(x)
