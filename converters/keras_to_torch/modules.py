"""torch modules for Keras layers that `torch.nn` has no exact counterpart for.

Each is small and written to be read: a converted model's `forward` calls them by the Keras layer's
name, and `torch.export` traces through them, so a `.pt2` needs none of this code to load.
"""

from __future__ import annotations

from typing import Any, Sequence

from porttax._frameworks import import_torch

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


class Exp(nn.Module):
    """exp(x): Keras' "exponential" activation."""

    def forward(self, x: Any) -> Any:
        return x.exp()


class PReLU(nn.Module):
    """max(x, 0) + alpha * min(x, 0), with Keras' per-element (shareable) alpha."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(tuple(shape)))

    def forward(self, x: Any) -> Any:
        return x.clamp(min=0) + self.alpha * x.clamp(max=0)


class EinsumDense(nn.Module):
    """einsum(equation, x, weight) + bias: Keras' EinsumDense, weight kept in Keras' own layout."""

    def __init__(self, equation: str, weight_shape: Sequence[int], bias_shape: Sequence[int] | None) -> None:
        super().__init__()
        self.equation = equation
        self.weight = nn.Parameter(torch.zeros(tuple(weight_shape)))
        self.bias = nn.Parameter(torch.zeros(tuple(bias_shape))) if bias_shape is not None else None

    def forward(self, x: Any) -> Any:
        out = torch.einsum(self.equation, x, self.weight)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"equation={self.equation!r}, weight={tuple(self.weight.shape)}"


class LayerNorm(nn.Module):
    """Keras LayerNormalization over any set of axes (nn.LayerNorm covers only trailing ones), with
    optional scale/offset and Keras' `rms_scaling` mode."""

    def __init__(self, dims: Sequence[int], param_shape: Sequence[int], eps: float, scale: bool, center: bool,
                 rms_scaling: bool = False) -> None:
        super().__init__()
        self.dims = tuple(dims)
        self.eps = eps
        self.rms_scaling = rms_scaling
        self.weight = nn.Parameter(torch.ones(tuple(param_shape))) if scale else None
        self.bias = nn.Parameter(torch.zeros(tuple(param_shape))) if center else None

    def forward(self, x: Any) -> Any:
        if self.rms_scaling:
            out = x * torch.rsqrt(x.pow(2).mean(dim=self.dims, keepdim=True) + self.eps)
        else:
            mean = x.mean(dim=self.dims, keepdim=True)
            var = (x - mean).pow(2).mean(dim=self.dims, keepdim=True)
            out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out
