from __future__ import annotations

from typing import Callable

from porttax.converters.registry import REGISTRY


def onnx_to_torch(*op_types: str, since: int = 1) -> Callable[[Callable], Callable]:
    """Register a converter for ONNX op types (default domain), valid from opset `since` on; the
    driver picks the highest `since` not above the model's opset. The function takes an `OnnxCall`
    and returns one value per node output (a list when the node has several)."""
    return REGISTRY.register("onnx", "torch", op_types, version=since)
