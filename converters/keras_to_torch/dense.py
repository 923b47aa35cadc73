"""Dense and EinsumDense. A Dense becomes `nn.Linear` (weight = kernelᵀ) applied to the last axis, as
Keras applies it; EinsumDense keeps its equation and its kernel layout (see modules.EinsumDense)."""

from __future__ import annotations

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.activation import apply_activation
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.keras_to_torch.modules import EinsumDense
from porttax.converters.transforms import Identity, Transpose


def refuse_quantized(call: LayerCall) -> None:
    mode = getattr(call.layer, "quantization_mode", None)
    if mode:
        raise call.unsupported(f"quantized ({mode}) layers are not converted",
                               hint="convert the float model, then quantize in PyTorch")


@keras_to_torch("Dense")
def dense(call: LayerCall) -> TVal:
    nn = import_torch().nn
    refuse_quantized(call)
    layer = call.layer
    v = call.x
    x = call.ctx.keras_layout(v)
    kernel = layer.kernel
    module = call.module() or nn.Linear(int(kernel.shape[0]), int(kernel.shape[1]), bias=layer.use_bias)
    call.port(kernel, module, "weight", Transpose((1, 0)))
    if layer.use_bias:
        call.port(layer.bias, module, "bias", Identity())
    out = call.add_module(module)(x)
    return call.result(apply_activation(call, layer.activation, out, v))


@keras_to_torch("EinsumDense")
def einsum_dense(call: LayerCall) -> TVal:
    refuse_quantized(call)
    layer = call.layer
    x = call.ctx.keras_layout(call.x)
    bias = getattr(layer, "bias", None)
    module = call.module() or EinsumDense(layer.equation, tuple(layer.kernel.shape),
                                          tuple(bias.shape) if bias is not None else None)
    call.port(layer.kernel, module, "weight", Identity())
    if bias is not None:
        call.port(bias, module, "bias", Identity())
    out = call.add_module(module)(x)
    return call.result(apply_activation(call, layer.activation, out, call.x))
