"""Importing this module registers every ONNX → PyTorch converter family."""

from porttax.converters.onnx_to_torch import elementwise, layers, reduce, shape, transformer  # noqa: F401
