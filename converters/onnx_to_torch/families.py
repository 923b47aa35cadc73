"""Importing this module registers every ONNX → PyTorch converter family."""

from porttax.converters.onnx_to_torch import (  # noqa: F401
    control, detection, elementwise, indexing, layers, losses, normalization, quantize, recurrent, reduce, resize,
    shape, spatial, spectral, transformer)
