"""Layer-mapping converters: the registry, weight transforms, the mapping log, and one package of
converter families per direction (torch_to_keras/, keras_to_torch/).

`register_torch_to_keras("aten.my_op")`, `register_keras_to_torch("MyLayer")` and
`register_onnx_to_torch("MyOp", since=13)` are how a user teaches
porttax an op or layer it refuses: decorate a function taking a `Call` / `LayerCall` and returning the
converted value; registering the same key twice raises.
"""

from porttax.converters.keras_to_torch._register import keras_to_torch as register_keras_to_torch
from porttax.converters.onnx_to_torch._register import onnx_to_torch as register_onnx_to_torch
from porttax.converters.registry import REGISTRY, Converter, ConverterKey, DuplicateConverterError
from porttax.converters.torch_to_keras._register import torch_to_keras as register_torch_to_keras

__all__ = ["REGISTRY", "Converter", "ConverterKey", "DuplicateConverterError", "register_keras_to_torch",
           "register_onnx_to_torch", "register_torch_to_keras"]
