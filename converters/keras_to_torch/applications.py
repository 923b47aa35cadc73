"""Layers keras.applications defines for itself, outside `keras.layers`: ConvNeXt's `LayerScale` and
`StochasticDepth`. Without them every ConvNeXt (and the architectures that copy its blocks) stops at
the first block.

`LayerScale` multiplies by a learned per-channel `gamma` over the last axis: a readable `LayerScale`
module in the Keras layout. `StochasticDepth` drops whole residual paths while training and is the
identity at inference, so it maps to no module. Both are matched on their keras.applications classes;
a same-named layer from another package (keras_cv's StochasticDepth adds two inputs) is not
silently taken for them.
"""

from __future__ import annotations

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.transforms import Identity

torch = import_torch()


class LayerScale(torch.nn.Module):
    """x * gamma, gamma one value per channel of the last axis (keras.applications.convnext.LayerScale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _from_applications(call: LayerCall) -> None:
    module = type(call.layer).__module__
    if not module.startswith("keras.src.applications") or len(call.inputs()) != 1:
        raise call.unsupported(f"a {call.kind} from {module} with {len(call.inputs())} input(s); porttax converts "
                               f"keras.applications' {call.kind}", hint="open an issue with the layer's package")


@keras_to_torch("LayerScale")
def layer_scale(call: LayerCall) -> TVal:
    _from_applications(call)
    layer = call.layer
    x = call.ctx.keras_layout(call.x)
    module = call.module() or LayerScale(int(layer.gamma.shape[0]))
    call.port(layer.gamma, module, "gamma", Identity())
    return call.result(call.add_module(module)(x))


@keras_to_torch("StochasticDepth")
def stochastic_depth(call: LayerCall) -> TVal:
    _from_applications(call)
    return call.x  # inference: every path kept, nothing rescaled
