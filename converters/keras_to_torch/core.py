"""Layers that compute nothing at inference: Dropout and its family, noise layers, Identity, and
ActivityRegularization. They map to no module; their output is their input, in whatever layout it is
held, so they cost nothing in the converted model."""

from __future__ import annotations

from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal


@keras_to_torch(
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout", "ActivityRegularization", "Identity",
)
def identity_at_inference(call: LayerCall) -> TVal:
    return call.x


@keras_to_torch("Masking")
def masking(call: LayerCall) -> TVal:
    raise call.unsupported("Keras masks change how later layers compute (skipped time steps); porttax does "
                           "not carry masks to PyTorch yet",
                           hint="remove the Masking layer and pad with values the model tolerates, or open an issue")
