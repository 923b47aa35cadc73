"""MLP reference model: the simplest graph a converter must get right (Linear, LayerNorm, activation,
Dropout that vanishes in eval mode)."""

from __future__ import annotations

import torch
from torch import nn

from .configs import MLPConfig

__all__ = ["MLP", "MLPBlock", "MLPConfig", "make_activation"]


def make_activation(name: str) -> nn.Module:
    """Activation modules by config name; GELU is the exact (erf) form, so converters must not approximate it."""
    return {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}[name]()


class MLPBlock(nn.Module):
    """Linear -> LayerNorm -> activation -> Dropout, one hidden layer."""

    def __init__(self, in_features: int, out_features: int, config: MLPConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.LayerNorm(out_features, eps=config.layer_norm_eps) if config.layer_norm else nn.Identity()
        self.act = make_activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.norm(self.linear(x))))


class MLP(nn.Module):
    """Hidden blocks then a plain Linear head; returns logits (batch, out_features)."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        sizes = (config.in_features, *config.hidden_sizes)
        self.layers = nn.ModuleList(MLPBlock(a, b, config) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], config.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)
