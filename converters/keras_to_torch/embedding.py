"""Embedding → nn.Embedding (the table is the same matrix in both frameworks); ReversibleEmbedding → the
`ReversibleEmbedding` module below, which embeds token ids and, called with `reverse=True`, projects hidden
states back onto the vocabulary with the same (tied) table or its own reverse matrix.

A language model calls one ReversibleEmbedding twice (embed at the start, logits at the end); both calls
go to one torch module under the layer's name, so the tied table is one parameter in torch as in Keras.
"""

from __future__ import annotations

import inspect
from typing import Any

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.transforms import Identity

torch = import_torch()
nn = torch.nn


class ReversibleEmbedding(nn.Module):
    """Keras ReversibleEmbedding: `forward(ids)` looks ids up in `weight` (vocab, dim), as nn.Embedding;
    `forward(hidden, reverse=True)` is `hidden @ weight.T` when the weights are tied, `hidden @ reverse_weight`
    (dim, vocab) otherwise, then `tanh(logits / cap) * cap` when Keras' `logit_soft_cap` is set."""

    def __init__(self, vocab: int, dim: int, tie_weights: bool = True, logit_soft_cap: float | None = None,
                 reverse_dtype: Any = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(vocab, dim))
        self.reverse_weight = None if tie_weights else nn.Parameter(torch.zeros(dim, vocab))
        self.logit_soft_cap = logit_soft_cap
        self.reverse_dtype = reverse_dtype  # a torch dtype the projection runs in, as Keras' reverse_dtype

    def forward(self, x: Any, reverse: bool = False) -> Any:
        if not reverse:
            return nn.functional.embedding(x, self.weight)
        kernel = self.weight.t() if self.reverse_weight is None else self.reverse_weight
        if self.reverse_dtype is not None:
            x, kernel = x.to(self.reverse_dtype), kernel.to(self.reverse_dtype)
        logits = x @ kernel
        if self.logit_soft_cap is not None:
            logits = torch.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits

    def extra_repr(self) -> str:
        tied = "tied" if self.reverse_weight is None else "untied"
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, {tied}, logit_soft_cap={self.logit_soft_cap}"


def _refuse_masks_and_quantized(call: LayerCall) -> None:
    layer = call.layer
    if layer.mask_zero:
        raise call.unsupported(
            "mask_zero=True: Keras then skips padded steps in later layers (LSTM, attention, pooling), "
            "and porttax does not carry masks to PyTorch yet",
            hint="convert a copy built with mask_zero=False if padding is handled another way, or open an issue",
        )
    if getattr(layer, "quantization_mode", None):
        raise call.unsupported("quantized embeddings are not converted",
                               hint="convert the float model, then quantize in PyTorch")


def _ids(call: LayerCall) -> Any:
    ids = call.ctx.keras_layout(call.x)
    if call.x.dtype not in ("int32", "int64"):
        ids = ids.long()  # Keras casts float ids to int; torch needs integer indices
    return ids


@keras_to_torch("Embedding")
def embedding(call: LayerCall) -> TVal:
    layer = call.layer
    _refuse_masks_and_quantized(call)
    table = layer.embeddings
    module = call.module() or nn.Embedding(int(table.shape[0]), int(table.shape[1]))
    call.port(table, module, "weight", Identity())
    return call.result(call.add_module(module)(_ids(call)))


def _reverse_flag(call: LayerCall) -> bool:
    sig = inspect.signature(type(call.layer).call)
    bound = sig.bind(None, *call.args, **call.kwargs)
    return bool(bound.arguments.get("reverse", False))


@keras_to_torch("ReversibleEmbedding")
def reversible_embedding(call: LayerCall) -> TVal:
    layer = call.layer
    _refuse_masks_and_quantized(call)
    table = layer.embeddings
    reverse_dtype = getattr(torch, str(layer.reverse_dtype)) if layer.reverse_dtype is not None else None
    cap = float(layer.logit_soft_cap) if layer.logit_soft_cap is not None else None
    module = call.module() or ReversibleEmbedding(int(table.shape[0]), int(table.shape[1]), bool(layer.tie_weights),
                                                  cap, reverse_dtype)
    call.port(table, module, "weight", Identity())
    if not layer.tie_weights:
        call.port(layer.reverse_embeddings, module, "reverse_weight", Identity())
    run = call.add_module(module)
    if _reverse_flag(call):
        return call.result(run(call.ctx.keras_layout(call.x), reverse=True))
    return call.result(run(_ids(call)))
