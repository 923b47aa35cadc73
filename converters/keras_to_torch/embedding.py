"""Embedding → nn.Embedding (the table is the same matrix in both frameworks)."""

from __future__ import annotations

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.transforms import Identity


@keras_to_torch("Embedding")
def embedding(call: LayerCall) -> TVal:
    torch = import_torch()
    layer = call.layer
    if layer.mask_zero:
        raise call.unsupported(
            "mask_zero=True: Keras then skips padded steps in later layers (LSTM, attention, pooling), "
            "and porttax does not carry masks to PyTorch yet",
            hint="convert a copy built with mask_zero=False if padding is handled another way, or open an issue",
        )
    if getattr(layer, "quantization_mode", None):
        raise call.unsupported("quantized embeddings are not converted")
    table = layer.embeddings
    module = call.module() or torch.nn.Embedding(int(table.shape[0]), int(table.shape[1]))
    call.port(table, module, "weight", Identity())
    ids = call.ctx.keras_layout(call.x)
    if call.x.dtype not in ("int32", "int64"):
        ids = ids.long()  # Keras casts float ids to int; torch needs integer indices
    return call.result(call.add_module(module)(ids))
