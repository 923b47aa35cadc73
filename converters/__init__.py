"""Layer-mapping converters: the registry, weight transforms, the mapping log, and one package of
converter families per direction (torch_to_keras/ today).

`register_torch_to_keras("aten.my_op")` is how a user teaches porttax an op it refuses: decorate a
function taking a `Call` and returning the Keras tensor; registering an op twice raises.
"""

from porttax.converters.registry import REGISTRY, Converter, ConverterKey, DuplicateConverterError
from porttax.converters.torch_to_keras._register import torch_to_keras as register_torch_to_keras

__all__ = ["REGISTRY", "Converter", "ConverterKey", "DuplicateConverterError", "register_torch_to_keras"]
